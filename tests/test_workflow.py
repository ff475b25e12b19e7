"""The quickstart study through snakemake itself, at smoke scale, on real FineWeb text."""

import subprocess

import pandas as pd
import pytest
import yaml
from scipy import stats as sps
from test_import_logs import GOLF_DATA, golf_log

from conftest import REPO, external_study, smoke_quickstart_config, snakemake_cmd

STUDY = "results/studies/quickstart"
pytestmark = pytest.mark.slow  # snakemake end to end


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("quickstart")
    config = smoke_quickstart_config()
    # A sweep study, and a study whose baseline is two runs imported from parameter-golf logs.
    config["studies"]["lr"] = {
        "baseline": "lr04",
        "seeds": [0, 1],
        "sweep": {"key": "optim.matrix_lr", "default": 0.04},
        "conditions": {"lr01": {"optim.matrix_lr": 0.01}, "lr04": {}},
    }
    for seed, bpb in ((1337, "1.2244"), (1338, "1.2261")):
        data = GOLF_DATA.replace("1.22436570", bpb).replace("seed:1337", f"seed:{seed}")
        (d / f"pg{seed}.log").write_text(golf_log(data))
    config["studies"]["vs_pg"] = {
        "baseline": "parameter_golf",
        "seeds": [0],
        "conditions": {"speedlab": {}},
        "imports": [
            {"log": f"pg{seed}.log", "condition": "parameter_golf", "seed": seed}
            for seed in (1337, 1338)
        ],
    }
    # A study trained by an external script, and one made only of a published per-seed table.
    config["studies"]["external"] = external_study()
    (d / "published.csv").write_text(
        "condition,seed,q_val_bpb,steps,train_time_s\n"
        + "".join(
            f"{c},{s},{v + 0.01 * s + 0.003 * ((c, s) == ('new', 1)):.4f},5100,{600 + s}\n"
            for c, v in (("base", 3.28), ("new", 3.26))
            for s in (0, 1, 2)
        )  # fmt: skip
    )
    config["studies"]["published"] = {"baseline": "base", "imports": [{"table": "published.csv"}]}
    (d / "config.yaml").write_text(yaml.safe_dump(config))
    return d


def snakemake(workdir, *args, env):
    cmd = snakemake_cmd(workdir, "--cores", "2", *args)
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p.stdout + p.stderr


@pytest.fixture(scope="module")
def built(workdir):
    import os
    import sys
    from pathlib import Path

    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env["PATH"]
    log = snakemake(workdir, env=env)
    return workdir, env, log


def test_quickstart_builds_report_stats_and_figures(built):
    workdir, _, _ = built
    for name in (
        "report.md",
        "stats.csv",
        "runs.parquet",
        "curves.parquet",
        "figures/val_bpb_vs_step.png",
        "figures/final_q_val_bpb.png",
        "figures/val_bpb_vs_time_s.png",
        "figures/train_loss_vs_step.png",
        "figures/quantization_cost.png",
        "figures/final_train_time_s.png",
        "figures/momentum_per_layer.png",
    ):
        assert (workdir / STUDY / name).stat().st_size > 0, name
    runs = pd.read_parquet(workdir / STUDY / "runs.parquet")
    assert sorted(zip(runs.condition, runs.seed, strict=True)) == [
        (c, s) for c in ("layerwise", "uniform") for s in (0, 1, 2)
    ]
    assert runs["compressed_bytes"].gt(0).all() and not runs["diverged"].any()
    stats = pd.read_csv(workdir / STUDY / "stats.csv")
    assert set(stats["condition"]) == {"uniform", "layerwise"}
    # Matched seeds: the primary test is the paired t, scipy's ttest_rel on runs.parquet.
    row = stats[(stats["metric"] == "q_val_bpb") & (stats["condition"] == "layerwise")].iloc[0]
    arm = {
        c: runs[runs.condition == c].sort_values("seed")["q_val_bpb"]
        for c in ("layerwise", "uniform")
    }
    want = sps.ttest_rel(arm["layerwise"].to_numpy(), arm["uniform"].to_numpy()).pvalue
    assert row["design"] == "paired" and row["test"] == "paired t"
    assert abs(row["p"] - want) < 1e-12
    report = (workdir / STUDY / "report.md").read_text()
    assert "paired by seed" in report and "paired t" in report
    assert "layerwise" in report and "figures/final_q_val_bpb.png" in report
    assert "figures/quantization_cost.png" in report


def test_val_bpb_falls_in_every_run(built):
    workdir, _, _ = built
    curves = pd.read_parquet(workdir / STUDY / "curves.parquet")
    bpb = curves[curves.metric == "val_bpb"].sort_values("step")
    for (cond, seed), run in bpb.groupby(["condition", "seed"]):
        first, last = run["value"].iloc[0], run["value"].iloc[-1]
        assert last < first - 0.3, (cond, seed, first, last)


def test_nothing_to_do_then_one_figure_rebuilds_alone(built):
    workdir, env, _ = built
    assert "Nothing to be done" in snakemake(workdir, "-n", env=env)
    figure = workdir / STUDY / "figures/final_q_val_bpb.png"
    figure.unlink()
    log = snakemake(workdir, f"{STUDY}/figures/final_q_val_bpb.png", env=env)
    assert figure.exists()
    jobs = [line.split()[1] for line in log.splitlines() if line.startswith("localrule ")]
    assert jobs == ["plot_figure:"], log


def test_sweep_study_gets_its_table_figure_and_section(built):
    workdir, _, _ = built
    study = workdir / "results/studies/lr"
    sweep = pd.read_csv(study / "sweep.csv")
    assert list(sweep["value"]) == [0.01, 0.04] and list(sweep["n"]) == [2, 2]
    assert sweep.loc[sweep["value"] == 0.04, "verdict"].item() == "is the default"
    for name in ("sweep.png", "sweep.pdf", "final_q_val_bpb.pdf"):
        assert (study / "figures" / name).stat().st_size > 5_000, name
    report = (study / "report.md").read_text()
    assert "## Sweep over `optim.matrix_lr`" in report and "figures/sweep.png" in report


def test_imported_runs_sit_beside_speedlab_runs(built):
    workdir, _, _ = built
    study = workdir / "results/studies/vs_pg"
    runs = pd.read_parquet(study / "runs.parquet").set_index(["condition", "seed"])
    assert runs.loc[("parameter_golf", 1338), "q_val_bpb"] == 1.2261
    assert runs.loc[("parameter_golf", 1337), "source"] == "parameter_golf"
    assert runs.loc[("speedlab", 0), "source"] == "speedlab"
    assert runs.loc[("parameter_golf", 1337), "is_baseline"]
    stats = pd.read_csv(study / "stats.csv")
    assert set(stats["metric"]) == {"q_val_bpb", "train_time_s"}
    assert "`parameter_golf` 2" in (study / "report.md").read_text()


def test_an_external_trainer_study_reaches_its_report(built):
    """The script ran once per (condition, seed) with its settings and seed by environment
    variable; its logs became runs.parquet rows like speedlab's, and the study has its
    statistics and report."""
    workdir, _, _ = built
    study = workdir / "results/studies/external"
    runs = pd.read_parquet(study / "runs.parquet")
    assert sorted(zip(runs.condition, runs.seed, strict=True)) == [
        (c, s) for c in ("lr_high", "lr_low") for s in (1, 2)
    ]
    assert set(runs["source"]) == {"command"} and runs["q_val_bpb"].notna().all()
    assert (runs["step_avg_ms"] > 0).all() and (runs["artifact_bytes"] > 0).all()
    assert runs["log.final_int8_zlib_roundtrip_exact.val_bpb"].equals(runs["q_val_bpb"])
    for seed in (1, 2):
        log = workdir / f"results/external/external/lr_high/seed{seed}/train.log"
        assert f"seed:{seed}" in log.read_text()
    high = runs[runs.condition == "lr_high"]["cfg.params.lr"]
    assert set(high) == {0.05}
    stats = pd.read_csv(study / "stats.csv")
    primary = stats[(stats["metric"] == "q_val_bpb") & (stats["condition"] == "lr_high")]
    assert primary["design"].item() == "paired" and primary["n_pairs"].item() == 2
    assert (study / "report.html").stat().st_size > 10_000
    report = (study / "report.md").read_text()
    assert "as far as its script derives both from the seed" in report  # paired, with care
    other = report.split("### Runs speedlab did not train")[1].split("##")[0]
    assert other.count("| train.log ") == 4 and "<NA>" not in report


def test_a_study_of_a_published_table_alone(built):
    workdir, _, _ = built
    study = workdir / "results/studies/published"
    runs = pd.read_parquet(study / "runs.parquet")
    assert len(runs) == 6 and set(runs["source"]) == {"table"}
    assert runs.set_index(["condition", "seed"]).loc[("new", 2), "q_val_bpb"] == 3.28
    assert runs.set_index(["condition", "seed"]).loc[("new", 1), "q_val_bpb"] == 3.273
    assert list(runs["steps"].unique()) == [5100]
    stats = pd.read_csv(study / "stats.csv")
    new = stats[(stats["metric"] == "q_val_bpb") & (stats["condition"] == "new")]
    # A table states seeds, not that a seed fixed the same weights and data: not paired.
    assert new["design"].item() == "independent" and new["n"].item() == 3
    assert (study / "report.html").stat().st_size > 10_000


def test_editing_plotting_code_reruns_only_plots_and_the_reports(built):
    import os

    workdir, env, _ = built
    code = REPO / "src/speedlab/analysis/figures.py"
    text, before = code.read_bytes(), code.stat()
    # An edit (snakemake compares content too: touching the file alone reruns nothing).
    code.write_bytes(text + b"# an edit\n")
    try:
        plan = snakemake(workdir, "-n", env=env)
    finally:
        code.write_bytes(text)
        os.utime(code, ns=(before.st_atime_ns, before.st_mtime_ns))
    table = plan.split("Job stats:")[1].split("total")[0]
    jobs = {line.split()[0] for line in table.splitlines()[3:] if line.strip()}
    assert jobs == {"plot_figure", "write_report", "all"}, plan


def _planned_jobs(log: str) -> dict[str, int]:
    table = log.split("Job stats:")[1].split("total")[0]
    rows = [line.split() for line in table.splitlines()[3:] if line.strip()]
    return {name: int(count) for name, count in rows}


def test_editing_one_condition_reruns_only_its_runs(built, tmp_path):
    workdir, env, _ = built
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["studies"]["quickstart"]["conditions"]["layerwise"]["optim.momentum_last"] = 0.85
    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml.safe_dump(config))
    plan = snakemake(workdir, "-n", "--configfile", str(edited), env=env)
    jobs = _planned_jobs(plan)
    assert jobs["train_run"] == 3, plan  # layerwise only; each training job scores its roundtrip
    assert "quantize_roundtrip" not in jobs
    assert "prepare_corpus" not in jobs and "train_tokenizer" not in jobs
    assert "results/runs/quickstart/uniform" not in plan.split("Job stats:")[0]


def test_data_settings_the_corpus_does_not_read_rerun_nothing(built, tmp_path):
    """Study configs differ in their pretokenized shards (each catalogue file sets its own);
    with documents from the hub or local files that decides nothing, so nothing reruns."""
    workdir, env, _ = built
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["data"]["pretokenized"] = {"preset": "gpt2", "train_shards": 27}
    if config["data"]["source"] == "local":
        config["data"]["hf"] = {"repo": "someone/else", "name": "other"}
    else:
        config["data"]["local"] = "unread/*.jsonl"
    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml.safe_dump(config))
    # (An earlier test may have rebuilt one figure alone, leaving only the reports pending.)
    before = snakemake(workdir, "-n", env=env)
    after = snakemake(workdir, "-n", "--configfile", str(edited), env=env)
    if "Nothing to be done" in before:
        assert "Nothing to be done" in after, after
    else:
        assert _planned_jobs(after) == _planned_jobs(before), after
        assert "prepare_corpus" not in after and "train_run" not in after


def test_a_multi_gpu_run_is_one_torchrun_launch_asking_for_its_gpus(built, tmp_path):
    workdir, env, _ = built
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    layerwise = config["studies"]["quickstart"]["conditions"]["layerwise"]
    layerwise["train.gpus"] = 4  # the smoke batch is 4 sequences: one per GPU
    config["execution"]["gpu_model"] = "h100"
    edited = tmp_path / "gpus.yaml"
    edited.write_text(yaml.safe_dump(config))
    target = "results/runs/quickstart/layerwise/seed0/summary.json"
    plan = snakemake(workdir, target, "-n", "-p", "--configfile", str(edited), env=env)
    launch = (
        "python -m torch.distributed.run --standalone --nproc-per-node=4 -m speedlab.train.loop"
    )
    assert plan.count(launch) == 1
    assert "gpu=4" in plan and "gpu_model=h100" in plan and "--signal=USR1@300" in plan
    assert "mem_mb=260000" in plan  # 4,000 + 4 x execution.mem_mb_per_gpu


def test_a_roundtrip_is_recomputed_under_a_named_scheme(built):
    """The training job wrote roundtrip.json; roundtrip_<scheme>.json recomputes it from
    model.pt (one quantize_roundtrip job, nothing retrained), for the schemes that exist."""
    workdir, env, _ = built
    run_dir = "results/runs/quickstart/uniform/seed0"
    plan = snakemake(workdir, f"{run_dir}/roundtrip_parameter_golf.json", "-n", env=env)
    assert _planned_jobs(plan) == {"quantize_roundtrip": 1}, plan
    bad = subprocess.run(
        snakemake_cmd(workdir, f"{run_dir}/roundtrip_int4.json", "-n"),
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert bad.returncode != 0 and "roundtrip_int4.json" in bad.stdout + bad.stderr


def test_compute_multipliers_and_the_flops_figure(built):
    """compute.csv for the studies speedlab trains the baseline of (not for an imported
    baseline, a command trainer or a published table), its FLOPs those of runs.parquet."""
    workdir, _, _ = built
    table = pd.read_csv(workdir / STUDY / "compute.csv")
    runs = pd.read_parquet(workdir / STUDY / "runs.parquet")
    (row,) = table.itertuples()
    assert row.condition == "layerwise" and row.n_seeds == 3 and row.lo <= row.multiplier <= row.hi
    assert row.flops == pytest.approx(runs.loc[runs.condition == "layerwise", "model_flops"].mean())
    assert (workdir / STUDY / "figures/metric_vs_flops.png").stat().st_size > 0
    assert "## Compute multiplier" in (workdir / STUDY / "report.md").read_text()
    studies = workdir / "results/studies"
    assert (studies / "lr/compute.csv").exists()
    for study in ("vs_pg", "external", "published"):
        assert not (studies / study / "compute.csv").exists(), study
