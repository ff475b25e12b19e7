"""The study catalogue (config/studies/*.yaml): each full config against the published numbers,
and what each plans at full scale."""

import copy

import pytest
import yaml
from snakemake.utils import update_config

from conftest import REPO
from speedlab.config import (
    apply_command_line,
    condition_seeds,
    planned_seeds,
    run_config,
    validate,
)
from speedlab.data.documents import corpus_params
from speedlab.plan import plan_table

BASE = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
CATALOGUE = ["lmd_sweep", "lmd_ablation", "lr_sweep", "muon_upgrades", "wd_scaling", "ngpt_alpha"]
# GPUs per run as published: 64 sequences per GPU on 2 (lmd_sweep) or 8 GPUs, parameter-golf's
# 8 x H100, nanochat's 8-GPU node, and the nGPT sweep's single GPU.
PUBLISHED_GPUS = {"lmd_sweep": 2, "lmd_ablation": 8, "lr_sweep": 8, "muon_upgrades": 8,
                  "wd_scaling": 8, "ngpt_alpha": 1}  # fmt: skip


pytestmark = pytest.mark.usefixtures("probe_here")


def study_config(name: str, scale: str = "full") -> dict:
    """The config of `--configfile config/studies/<name>.yaml --config scale=<scale>`."""
    config = copy.deepcopy(BASE)
    update_config(config, yaml.safe_load((REPO / "config/studies" / f"{name}.yaml").read_text()))
    update_config(config, {"scale": scale})  # as snakemake merges it
    return validate(apply_command_line(config, {"scale": scale}))


def resolved(config, study):
    return {c: run_config(config, study, c) for c in config["studies"][study]["conditions"]}


# Studies run by the users' own scripts (trainer.kind: command): no smoke scale (the script is
# theirs), no memory plan (its memory is its own).
EXTERNAL = ["lr_sweep_pg", "wd_scaling_nanochat", "my_fork"]
# Studies with no published numbers to meet (tested in tests/test_compute.py).
UNPUBLISHED = ["scaling_ladder"]


def test_the_catalogue_is_complete():
    found = sorted(p.stem for p in (REPO / "config/studies").glob("*.yaml"))
    assert found == sorted(CATALOGUE + EXTERNAL + UNPUBLISHED)


@pytest.mark.parametrize("name", EXTERNAL)
def test_external_examples_plan_without_their_source(name, tmp_path, capsys):
    """`speedlab plan` on each example of an external trainer, with no clone and no fork
    folder present: every run is a command run with its GPUs, step time and cost."""
    from speedlab.plan import main

    config = study_config(name, scale=None)
    runs = resolved(config, name)
    assert all(cfg["trainer"]["kind"] == "command" for cfg in runs.values())
    table = plan_table(config, tmp_path)
    assert (table["gpus"] == 8).all() and table["micro_batch"].isna().all()
    assert (table["gpu_hours_pending"] > 0).all()
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(BASE))
    main(["--configfile", str(REPO / "config/studies" / f"{name}.yaml"), "--root", str(tmp_path)])
    assert f"{name}: 0 of {table['runs'].sum()} runs done" in capsys.readouterr().out


def test_lr_sweep_pg_is_lr_sweep_through_train_gpt():
    """The same conditions, seeds, sweep and published values as lr_sweep; the learning rates
    reach train_gpt.py as its environment variables, and the script is pinned."""
    config, ours = study_config("lr_sweep_pg", scale=None), study_config("lr_sweep")
    study, base = config["studies"]["lr_sweep_pg"], ours["studies"]["lr_sweep"]
    for key in ("baseline", "seeds", "metric", "published"):
        assert study[key] == base[key], key
    assert study["sweep"]["conditions"] == base["sweep"]["conditions"]
    runs, speedlab_runs = resolved(config, "lr_sweep_pg"), resolved(ours, "lr_sweep")
    for condition, cfg in runs.items():
        o = speedlab_runs[condition]["optim"]
        assert cfg["params"] == {"matrix_lr": o["matrix_lr"], "scalar_lr": o["scalar_lr"],
                                 "tied_embed_lr": o["embed_lr"]}  # fmt: skip
        t = cfg["trainer"]
        assert t["env"]["MATRIX_LR"] == "{matrix_lr}" and t["seed"] == "SEED"
        assert t["source"]["commit"].startswith("4908dc46f")


def test_nanochat_example_passes_its_grid_as_flags():
    config = study_config("wd_scaling_nanochat", scale=None)
    runs = resolved(config, "wd_scaling_nanochat")
    grid = {(cfg["params"]["depth"], cfg["params"]["weight_decay"]) for cfg in runs.values()}
    assert len(grid) == 20 and {d for d, _ in grid} == {8, 12, 16, 20}
    args = runs["d12_wd0p2"]["trainer"]["args"]
    assert "--depth={depth}" in args and "--weight-decay={weight_decay}" in args
    assert "--model-tag={run_id}" in args  # each run its own checkpoint folder


@pytest.mark.parametrize("name", ["lr_sweep_pg", "wd_scaling_nanochat"])
def test_external_examples_dry_run_with_their_clone_as_a_job(name, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    study = REPO / "config/studies" / f"{name}.yaml"
    p = subprocess.run(
        [str(Path(sys.executable).parent / "snakemake"), "-n", "--snakefile",
         str(REPO / "Snakefile"), "--directory", str(tmp_path), "--configfile",
         str(REPO / "config" / "config.yaml"), str(study), "--cores", "1"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "fetch_trainer" in p.stdout and "run_trainer_command" in p.stdout


@pytest.mark.parametrize("name", ["lmd_sweep", "lmd_ablation"])
def test_lmd_studies_as_published(name):
    config = study_config(name)
    study = config["studies"][name]
    runs = resolved(config, name)
    assert config["data"]["source"] == "pretokenized"
    pretok = config["data"]["pretokenized"]
    # modded-nanogpt's GPT-2 shards hold 100M tokens each: enough train shards for every step.
    batch = 128 if name == "lmd_sweep" else 512
    assert pretok["preset"] == "gpt2" and pretok["train_shards"] * 10**8 >= 5100 * batch * 1024
    for cfg in runs.values():
        m, o, t = cfg["model"], cfg["optim"], cfg["train"]
        assert (m["n_layer"], m["d_model"], m["n_head"], m["vocab_size"]) == (12, 768, 6, 50304)
        assert (o["matrix_lr"], o["embed_lr"], o["scalar_lr"]) == (0.00036, 0.0036, 0.0036)
        assert (t["steps"], t["seq_len"], t["val_every"]) == (5100, 1024, 125)
    schedule = {
        c: (
            (cfg["optim"]["momentum_first"], cfg["optim"]["momentum_last"])
            if cfg["optim"]["momentum_schedule"] == "linear"
            else (cfg["optim"]["momentum"],) * 2
        )
        for c, cfg in runs.items()
    }
    seeds = {c: condition_seeds(study, c) for c in study["conditions"]}
    if name == "lmd_sweep":
        assert all(
            cfg["train"]["batch_seqs"] == 128 and cfg["train"]["gpus"] == 2 for cfg in runs.values()
        )
        assert schedule == {
            "baseline": (0.95, 0.95),
            "conservative": (0.96, 0.94),
            "moderate": (0.98, 0.90),
            "aggressive": (0.99, 0.85),
            "inverse": (0.90, 0.98),
        }
        assert seeds == {
            "baseline": [983],
            "conservative": [41512, 54740, 57754],
            "moderate": [42, 112, 25392, 86050],
            "aggressive": [32514, 79280, 91359],
            "inverse": [12564, 71486, 82214],
        }
    else:
        assert all(
            cfg["train"]["batch_seqs"] == 512 and cfg["train"]["gpus"] == 8 for cfg in runs.values()
        )
        assert schedule == {
            "baseline": (0.95, 0.95),
            "moderate": (0.98, 0.90),
            "fixed_high": (0.98, 0.98),
            "fixed_low": (0.90, 0.90),
        }
        # The design the study wanted: looks at 2, 4, 7 and 10 shared seeds per arm ...
        assert all(s == list(range(10)) for s in seeds.values())
        assert study["adaptive"]["looks"] == [2, 4, 7, 10] and study["adaptive"]["futility"]
        assert planned_seeds(study) == 10 and study["published"]["seeds"]["moderate"] == 4
        # ... and the one it ran: the published arms at their published seeds.
        published = config["studies"]["lmd_ablation_published"]
        assert {c: condition_seeds(published, c) for c in published["conditions"]} == {
            "baseline": [92605, 923],
            "moderate": [23513, 38685, 62289, 32437],
            "fixed_high": [67440],
            "fixed_low": [2075],
        }
        assert planned_seeds(published) == 10
        assert resolved(config, "lmd_ablation_published") == runs
    assert study["metric"] == "val_loss"


def test_lr_sweep_as_published():
    config = study_config("lr_sweep")
    study = config["studies"]["lr_sweep"]
    runs = resolved(config, "lr_sweep")
    lrs = {
        c: cfg["optim"]["matrix_lr"] for c, cfg in runs.items() if c in study["sweep"]["conditions"]
    }
    assert sorted(lrs.values()) == [0.015, 0.02, 0.025, 0.03, 0.04, 0.06]
    assert (
        study["sweep"]["default"] == 0.04 and runs[study["baseline"]]["optim"]["matrix_lr"] == 0.04
    )
    tuned = runs["lr0p02_tuned"]["optim"]
    assert (tuned["matrix_lr"], tuned["scalar_lr"], tuned["embed_lr"]) == (0.02, 0.02, 0.03)
    default = runs["lr0p04"]
    assert (default["optim"]["scalar_lr"], default["optim"]["embed_lr"]) == (0.04, 0.05)
    for cfg in runs.values():
        m, t = cfg["model"], cfg["train"]
        assert (m["n_layer"], m["d_model"], m["n_kv_head"], m["mlp_mult"]) == (9, 512, 4, 2)
        assert t["batch_seqs"] * t["seq_len"] == 524_288 and t["seq_len"] == 1024
        assert (t["max_wallclock_s"], t["steps"], t["val_every"], t["gpus"]) == (600, 20000, 200, 8)
        assert cfg["quant"]["scheme"] == "parameter_golf"
        # train_gpt.py's own run: one micro-batch of 64 per GPU, its data order, arithmetic and
        # warmdown (WARMDOWN_ITERS 1,200 x the measured step time)
        assert (t["micro_batch_seqs"], t["data_order"], t["arithmetic"]) == (
            64, "parameter_golf", "parameter_golf"
        )  # fmt: skip
        assert (cfg["optim"]["warmdown"], cfg["optim"]["warmdown_iters"]) == (
            "parameter_golf",
            1200,
        )
    assert config["plan"]["step_time_s"]["full"] == 0.04354  # the baseline record's step_avg
    assert study["metric"] == "q_val_bpb"
    published = study["published"]  # the report sets these next to ours
    assert published["values"] == {"lr0p04": 1.2286, "lr0p02_tuned": 1.2230}
    assert published["seeds"] == {"lr0p04": 1, "lr0p02_tuned": 1}
    assert all(study_config(n)["studies"][n]["published"]["source"] for n in CATALOGUE)


def test_muon_upgrades_and_wd_scaling():
    config = study_config("muon_upgrades")
    runs = resolved(config, "muon_upgrades")
    o = {c: cfg["optim"] for c, cfg in runs.items()}
    assert o["polar_express"]["orthogonalize"] == "polar_express"
    assert o["baseline"]["orthogonalize"] == "newton_schulz5" and o["baseline"]["grad_clip"] is None
    assert o["normuon"]["normuon"] and o["cautious_wd"]["cautious_wd"]
    assert o["wd_linear_to_zero"]["wd_schedule"] == "linear_to_zero"
    assert sorted(v["grad_clip"] for v in o.values() if v["grad_clip"]) == [0.25, 0.5, 1.0, 2.0]

    config = study_config("wd_scaling")
    study = config["studies"]["wd_scaling"]
    runs = resolved(config, "wd_scaling")
    shapes = {(c["model"]["n_layer"], c["model"]["d_model"]) for c in runs.values()}
    assert shapes == {(8, 512), (12, 768), (16, 1024), (20, 1280)}
    for width in (512, 768, 1024, 1280):  # the published optima lie inside each width's grid
        grid = sorted(
            c["optim"]["weight_decay"] for c in runs.values() if c["model"]["d_model"] == width
        )
        assert grid[0] < 0.08 and grid[-1] > 0.40
    sweep = study["sweep"]
    assert (sweep["key"], sweep["group"]) == ("optim.weight_decay", "model.d_model")
    assert sweep["fit"] and sweep["expect_exponent"] == -2
    assert study["published"]["best"] == {512: 0.40, 768: 0.22, 1024: 0.10, 1280: 0.08}
    smoke = resolved(study_config("wd_scaling", "smoke"), "wd_scaling")
    assert {c["model"]["d_model"] for c in smoke.values()} == {32, 48, 64, 96}


def test_ngpt_alpha_as_published():
    config = study_config("ngpt_alpha")
    runs = resolved(config, "ngpt_alpha")
    alphas = sorted(cfg["model"]["ngpt"]["alpha_init"] for cfg in runs.values())
    assert alphas == [0.05, 0.08, 0.10, 0.12, 0.15, 0.18, 0.20, 0.22, 0.25, 0.28, 0.30, 0.35]
    for cfg in runs.values():
        m, o, t = cfg["model"], cfg["optim"], cfg["train"]
        assert m["kind"] == "ngpt" and (m["n_layer"], m["d_model"], m["n_head"]) == (6, 256, 8)
        assert (t["seq_len"], t["steps"], t["batch_seqs"]) == (128, 500, 16)
        assert (o["matrix_lr"], o["scalar_lr"], m["ngpt"]["sz_init"]) == (0.001, 0.0003, 10.0)
        assert o["matrix_optimizer"] == "adam" and o["embed_lr"] == 0.001  # Adam, as published
    assert len(config["studies"]["ngpt_alpha"]["seeds"]) >= 3


@pytest.mark.parametrize(
    "name, runs",
    [("lmd_sweep", 14), ("lmd_ablation", 40), ("lr_sweep", 21), ("muon_upgrades", 27),
     ("wd_scaling", 40), ("ngpt_alpha", 36)],
)  # fmt: skip
def test_full_scale_plan_counts_the_runs_and_their_gpu_hours(name, runs, tmp_path):
    table = plan_table(study_config(name), tmp_path)
    assert set(table["study"]) == {name} and table["runs"].sum() == runs
    assert table["pending"].sum() == runs and (table["gpu_hours_pending"] > 0).all()


@pytest.mark.parametrize("name", CATALOGUE)
def test_at_smoke_scale_a_study_reads_the_quickstarts_documents(name):
    """Offline included: the quickstart's corpus (hub, else its fallback), not official shards;
    the same corpus parameters, so the smoke studies and the quickstart share one corpus."""
    assert study_config(name)["data"]["source"] == "pretokenized"  # full scale: as published
    smoke = study_config(name, "smoke")
    quickstart = validate(apply_command_line(copy.deepcopy(BASE), {"scale": "smoke"}))
    assert smoke["data"]["source"] == "hf" and smoke["data"]["offline_fallback"]
    assert corpus_params(smoke["data"]) == corpus_params(quickstart["data"])
    assert smoke["tokenizer"] == quickstart["tokenizer"]


@pytest.mark.parametrize("name", CATALOGUE)
def test_full_scale_runs_fit_their_gpus_by_plan(name, tmp_path, capsys):
    """Every full-scale run has its published GPU count and a micro-batch that fits one GPU,
    and `speedlab plan --configfile ... --config scale=full` prints both."""
    from speedlab.plan import main

    config = study_config(name)
    table = plan_table(config, tmp_path)
    assert (table["gpus"] == PUBLISHED_GPUS[name]).all()
    assert table["micro_batch"].notna().all() and (table["peak_gb"] <= table["gpu_mem_gb"]).all()
    for cfg in resolved(config, name).values():
        t = cfg["train"]
        assert (t["batch_seqs"] // t["gpus"]) % t["micro_batch_seqs"] == 0
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(BASE))
    study = str(REPO / "config" / "studies" / f"{name}.yaml")
    main(["--configfile", study, "--config", "scale=full", "--root", str(tmp_path)])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(f"| {name} ")]
    assert len(rows) == len(table)
    assert all(" / 80 " in row for row in rows) and "memory: estimated peak per GPU" in out
