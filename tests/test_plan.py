"""Plans: runs done and pending, step time measured or configured, runtime and cost."""

import copy
import json

import pytest
import yaml

from conftest import REPO
from speedlab.config import config_hash, run_config, validate
from speedlab.plan import finished_runs, format_plan, main, plan_table, runtime_minutes

BASE = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


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
    hours = 20000 * 0.35 / 3600  # full: 20,000 steps at the configured 0.35 s, one GPU
    assert t.loc["uniform", "gpu_hours_pending"] == pytest.approx(3 * hours)
    assert t.loc["uniform", "usd_pending"] == pytest.approx(3 * hours * 2.5)
    # runtime: 7,000 s x 1.5 margin = 175 min, + 10 min overhead; doubled on the second attempt
    assert runtime_minutes(c, "quickstart", "uniform") == 185
    assert runtime_minutes(c, "quickstart", "uniform", attempt=2) == 370


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
    assert "quickstart: 0 of 6 runs done, 6 pending: 11.7 GPU-hours, $29" in out
    assert "$2.5/GPU-hour (h100)" in out
    assert format_plan(plan_table(validate(c), tmp_path), c).splitlines()[0].startswith("| study")
