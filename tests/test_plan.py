"""Plans: runs done and pending, step time measured or configured, runtime and cost."""

import copy
import json

import pytest
import yaml

from conftest import REPO
from speedlab.config import config_hash, run_config, validate
from speedlab.plan import finished_runs, format_plan, main, plan_table, runtime_minutes

BASE = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


pytestmark = pytest.mark.usefixtures("probe_here")


def config(**top):
    c = copy.deepcopy(BASE)
    c.update(top)
    return validate(c)


def finish(root, c, condition, seed, train_time_s, steps=200):
    """A finished run as speedlab.train.loop leaves it: summary.json and provenance.json."""
    cfg = run_config(c, "quickstart", condition)
    d = root / "results/runs/quickstart" / condition / f"seed{seed}"
    d.mkdir(parents=True)
    summary = {"config_hash": config_hash(cfg), "steps": steps, "train_time_s": train_time_s}
    (d / "summary.json").write_text(json.dumps({**summary, "diverged": False}))
    (d / "provenance.json").write_text(json.dumps({"config": cfg}))


def test_nothing_run_yet_uses_the_configured_step_time(tmp_path):
    c = config(scale="full")
    t = plan_table(c, tmp_path).set_index("condition")
    assert list(t["pending"]) == [3, 3] and list(t["done"]) == [0, 0]
    assert t.loc["uniform", "step_time_from"] == "plan.step_time_s.full"
    # full: 20,000 steps at the configured 43.54 ms would take 871 s; the 600 s cap stops them
    hours = 600 / 3600
    assert t.loc["uniform", "gpu_hours_pending"] == pytest.approx(3 * hours * 8)  # 8 GPUs
    assert t.loc["uniform", "usd_pending"] == pytest.approx(3 * hours * 8 * 2.5)
    # runtime: 600 s x 1.5 margin = 15 min, + 10 min overhead; doubled on the second attempt
    assert runtime_minutes(c, "quickstart", "uniform") == 25
    assert runtime_minutes(c, "quickstart", "uniform", attempt=2) == 50
    # one GPU: the same cap (full1gpu)
    one = plan_table(config(scale="full1gpu"), tmp_path).set_index("condition")
    assert one.loc["uniform", "gpu_hours_pending"] == pytest.approx(3 * hours)


def test_finished_runs_count_and_measure_the_step_time(tmp_path):
    c = config()
    finish(tmp_path, c, "uniform", 0, train_time_s=40.0)
    finish(tmp_path, c, "uniform", 1, train_time_s=60.0)
    t = plan_table(c, tmp_path).set_index("condition")
    assert t.loc["uniform", "done"] == 2 and t.loc["uniform", "pending"] == 1
    assert t.loc["uniform", "step_s"] == pytest.approx(0.25)  # (0.2 + 0.3) / 2
    assert t.loc["uniform", "step_time_from"] == "measured (2 runs)"
    # layerwise has the same model and batch: its step time is measured by uniform's runs
    assert t.loc["layerwise", "step_time_from"] == "measured, same shape (2 runs)"
    assert t.loc["uniform", "gpu_hours_pending"] == 0  # CPU runs cost no GPU-hours
    # 200 steps x 0.25 s x 1.5 / 60 + 10 = 11.25 -> 12 minutes
    assert runtime_minutes(c, "quickstart", "uniform", 1, finished_runs(tmp_path)) == 12


def test_an_edited_condition_is_pending_again(tmp_path):
    c = config()
    finish(tmp_path, c, "layerwise", 0, train_time_s=40.0)
    edited = copy.deepcopy(BASE)
    edited["studies"]["quickstart"]["conditions"]["layerwise"]["optim.momentum_last"] = 0.85
    t = plan_table(validate(edited), tmp_path).set_index("condition")
    assert t.loc["layerwise", "done"] == 0 and t.loc["layerwise", "pending"] == 3
    assert t.loc["layerwise", "step_time_from"] == "measured, same shape (1 runs)"


def test_no_step_time_anywhere_is_a_clear_error(tmp_path):
    c = config(scale="smoke")
    c["plan"]["step_time_s"] = {"full": 0.3}
    with pytest.raises(ValueError, match="plan.step_time_s has no entry for scale 'smoke'"):
        plan_table(c, tmp_path)


def test_cli_prints_the_table_and_totals(tmp_path, capsys):
    c = copy.deepcopy(BASE)
    c["execution"]["gpu_model"] = "h100"
    main(["--config-json", json.dumps({**c, "scale": "full"}), "--root", str(tmp_path)])
    out = capsys.readouterr().out
    assert "quickstart: 0 of 6 runs done, 6 pending: 8.0 GPU-hours, $20" in out
    assert "$2.5/GPU-hour (h100)" in out
    assert format_plan(plan_table(validate(c), tmp_path), c).splitlines()[0].startswith("| study")


def test_gpu_runs_show_their_micro_batch_and_memory_estimate(tmp_path, capsys):
    from speedlab.train import memory

    c = config(scale="full")
    t = plan_table(c, tmp_path).set_index("condition")
    cfg = run_config(c, "quickstart", "uniform")
    e = memory.estimate(cfg, vocab_size=1024)
    assert t.loc["uniform", "micro_batch"] == 64 == e["micro_batch_seqs"]
    assert t.loc["uniform", "peak_gb"] == pytest.approx(e["peak_gb"]) and 10 < e["peak_gb"] < 80
    assert t.loc["uniform", "gpu_mem_gb"] == 80
    main(["--config-json", json.dumps({**copy.deepcopy(BASE), "scale": "full"}), "--root",
          str(tmp_path)])  # fmt: skip
    out = capsys.readouterr().out
    header, _, row = out.splitlines()[:3]
    assert "micro_batch" in header and "mem_gb (est. / GPU)" in header
    assert f"| {e['peak_gb']:.1f} / 80 " in row and "|            64 |" in row
    cpu = plan_table(config(), tmp_path)  # CPU runs: no micro-batch, no GPU memory
    assert cpu["micro_batch"].isna().all() and cpu["peak_gb"].isna().all()
    h200 = {**copy.deepcopy(BASE), "scale": "full", "execution": {"gpu_model": "h200"}}
    assert plan_table(validate(h200), tmp_path)["gpu_mem_gb"].eq(141).all()


def test_plan_refuses_a_run_that_cannot_fit_before_any_job(tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(BASE))
    big = [f"studies.quickstart.conditions.{c}.{k}" for c in ("uniform", "layerwise")
           for k in ("model.n_layer=48", "model.d_model=2048")]  # fmt: skip
    items = ["scale=full", "execution.gpu_mem_gb=16", *big]
    with pytest.raises(SystemExit) as e:
        main(["--config", *items, "--root", str(tmp_path)], prog="speedlab plan")
    message = str(e.value)
    assert message.startswith("speedlab plan: invalid configuration:\n  studies.quickstart.")
    assert "does not fit one GPU even at 1 sequence per micro-batch" in message
    for key in ("train.seq_len", "model.n_layer", "model.d_model", "train.gpus",
                "execution.gpu_mem_gb", "train.micro_batch_seqs"):  # fmt: skip
        assert key in message
    assert not (tmp_path / "results" / "runs").exists()


def test_the_noise_sd_comes_only_from_runs_of_the_current_config(tmp_path):
    """Runs of an edited condition measured another config's noise: the plan pools only the
    runs of each condition's current config (else plan.noise_sd)."""
    from speedlab.plan import finished_values

    c = config()
    for seed, value in ((0, 1.50), (1, 1.60)):
        finish(tmp_path, c, "uniform", seed, train_time_s=40.0)
        summary = tmp_path / f"results/runs/quickstart/uniform/seed{seed}/summary.json"
        summary.write_text(json.dumps({**json.loads(summary.read_text()), "q_val_bpb": value}))
    current = {"uniform": config_hash(run_config(c, "quickstart", "uniform"))}
    values = finished_values(tmp_path, "quickstart", "q_val_bpb", current)
    assert sorted(values["value"]) == [1.50, 1.60]
    edited = finished_values(tmp_path, "quickstart", "q_val_bpb", {"uniform": "another"})
    assert edited.empty
