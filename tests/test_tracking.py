"""Experiment trackers (tracking.backend): every metrics.jsonl step of a real smoke run reaches
W&B (offline, read back with `wandb leet inspect`, wandb's own reader of .wandb files),
TensorBoard (read back with tensorboard's EventAccumulator) and trackio (its SQLite store); a
resumed run continues the same tracker run; the external trainer's steps and the study's
verdicts get there too; a bad backend or a missing package is a clear error."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from speedlab.config import run_config, validate
from speedlab.train import tracking
from speedlab.train.loop import train

STEPS = 20
META = {"study": "trk", "condition": "base"}


def smoke_cfg(**train_edits) -> dict:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["scale"] = "smoke"
    cfg = run_config(validate(config), "quickstart", "layerwise")
    cfg["train"].update(steps=STEPS, val_every=10, log_every=5, **train_edits)
    return cfg


def run(shards, out, cfg, track, ckpt=None, seed=1):
    return train(
        cfg, seed, shards / "fineweb_train.json", shards / "fineweb_val.json",
        shards / "token_bytes.npy", out, META, ckpt, track,
    )  # fmt: skip


def metric_steps(path: Path) -> dict[str, list[int]]:
    """metrics.jsonl: the steps at which each metric was logged (a step's training and
    validation rows both carry tokens and time_s: once per step)."""
    out: dict[str, list[int]] = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)):
                out.setdefault(key, []).append(row["step"])
    return {k: sorted(set(v)) for k, v in out.items()}


def tb_steps(series: dict[str, list[tuple[int, float]]]) -> dict[str, list[int]]:
    """The steps of each series, once each; the losses must not repeat a step at all."""
    for tag in ("train_loss", "val_loss"):
        steps = [s for s, _ in series[tag]]
        assert len(steps) == len(set(steps)), (tag, steps)
    return {k: sorted({s for s, _ in v}) for k, v in series.items()}


def tb_scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series of a TensorBoard run, as tensorboard itself reads it."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def tb_text(logdir: Path, tag: str) -> list[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"tensors": 0})
    acc.Reload()
    return [e.tensor_proto.string_val[0].decode() for e in acc.Tensors(tag)]


def test_tensorboard_holds_every_step_of_a_real_run(tmp_path, shards):
    track = {"backend": "tensorboard", "project": "p", "dir": str(tmp_path / "tracking")}
    run(shards, tmp_path / "run", smoke_cfg(), track)
    logdir = tmp_path / "tracking/p/trk/base/seed1"
    expected = metric_steps(tmp_path / "run/metrics.jsonl")
    assert tb_steps(tb_scalars(logdir)) == expected
    assert expected["train_loss"] == list(range(1, STEPS + 1))
    assert expected["val_bpb"] == [0, 10, 20]
    config = json.loads(tb_text(logdir, "config")[0].strip("`\n"))
    assert config["config"]["train"]["steps"] == STEPS
    assert config["provenance"]["seed"] == 1 and "git_commit" in config["provenance"]
    summary = json.loads(tb_text(logdir, "summary")[-1].strip("`\n"))
    assert "q_val_bpb" in summary


def wandb_runs(root: Path) -> list[list[dict]]:
    """Each offline W&B run under root (oldest first) as its records, read by wandb's own
    reader of .wandb transaction logs (`wandb leet inspect --json`)."""
    runs = []
    for run_dir in sorted((root / "wandb").glob("offline-run-*")):
        out = subprocess.run(
            [sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(run_dir)],
            capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        runs.append([json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")])
    return runs


def wandb_history(records: list[dict]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for r in records:
        if r["type"] == "history":
            step = int(r["history"]["step"].get("num", 0))
            for key in r["history"]["item"]:
                if not key.startswith("_"):
                    out.setdefault(key, []).append(step)
    return out


def record(records: list[dict], kind: str) -> dict:
    return next(r[kind] for r in records if r["type"] == kind)


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)  # the default: offline
    monkeypatch.setenv("WANDB_SILENT", "true")


def test_wandb_offline_run_holds_the_history_of_every_step(tmp_path, shards, offline):
    root = tmp_path / "tracking"
    track = {"backend": "wandb", "project": "p", "group": "g1", "dir": str(root)}
    summary = run(shards, tmp_path / "run", smoke_cfg(), track)
    (records,) = wandb_runs(root)
    assert wandb_history(records) == metric_steps(tmp_path / "run/metrics.jsonl")
    info = record(records, "run")
    assert (info["project"], info["run_group"], info["display_name"]) == ("p", "g1", "base/seed1")
    config = info["config"]["update"]
    assert config["config"]["train"]["steps"] == STEPS
    assert config["provenance"]["config_hash"] == summary["config_hash"]
    finals = {}
    for r in records:
        if r["type"] == "summary":
            finals.update(r["summary"]["update"])
    assert finals["val_bpb"] == summary["val_bpb"] and "q_val_bpb" in finals
    assert record(records, "exit")["exit_code"] in (0, None)


def stop_at_step(monkeypatch, step: int) -> None:
    """SIGUSR1 (SLURM's warning) to this process when the row of `step` is written: the run
    checkpoints at its next log point and exits."""
    from speedlab.train import loop

    record_row = loop.Metrics.record

    def record_and_signal(self, **row):
        record_row(self, **row)
        if row["step"] == step and "train_loss" in row:
            os.kill(os.getpid(), signal.SIGUSR1)

    monkeypatch.setattr(loop.Metrics, "record", record_and_signal)


@pytest.mark.parametrize("backend", ["wandb", "tensorboard"])
def test_a_resumed_run_continues_the_same_tracker_run(tmp_path, shards, offline, monkeypatch,
                                                      backend):  # fmt: skip
    root, ckpt, out = tmp_path / "tracking", tmp_path / "ckpt", tmp_path / "run"
    track = {"backend": backend, "project": "p", "dir": str(root)}
    cfg = smoke_cfg()
    with monkeypatch.context() as m:
        stop_at_step(m, 5)
        with pytest.raises(SystemExit) as stopped:
            run(shards, out, cfg, track, ckpt)
    assert stopped.value.code == 143 and (ckpt / "checkpoint.pt").exists()
    import torch

    saved = torch.load(ckpt / "checkpoint.pt", weights_only=False)
    assert saved["step"] == 10 and saved["tracker_id"]
    run(shards, out, cfg, track, ckpt)
    expected = metric_steps(out / "metrics.jsonl")
    assert expected["train_loss"] == list(range(1, STEPS + 1))
    if backend == "tensorboard":
        assert saved["tracker_id"] == str(root / "p/trk/base/seed1")
        assert tb_steps(tb_scalars(Path(saved["tracker_id"]))) == expected
        return
    first, second = wandb_runs(root)
    ids = {record(r, "run")["run_id"] for r in (first, second)}
    assert ids == {saved["tracker_id"]} and record(second, "run")["resume"]
    a, b = wandb_history(first), wandb_history(second)
    assert max(a["train_loss"]) == 10 and min(b["train_loss"]) == 11
    joined = {k: a.get(k, []) + b.get(k, []) for k in expected}
    assert joined == expected  # every step once, in order
    assert record(first, "exit")["exit_code"] == 143


def test_tensorboard_purges_steps_logged_past_the_checkpoint(tmp_path):
    """A job killed at step 15 had sent steps 11-15 after its step-10 checkpoint: the resumed
    run sends them again and every reader keeps only the new ones."""
    track = {"backend": "tensorboard", "project": "p", "dir": str(tmp_path)}
    first = tracking.start(track, META, 1, {})
    for step in range(1, 16):
        first.log_row({"step": step, "train_loss": 1.0})
    first.finish(exit_code=137)
    again = tracking.start(track, META, 1, {}, run_id=first.run_id, resume_step=10)
    for step in range(1, 21):  # the replayed rows up to the checkpoint are not sent again
        again.log_row({"step": step, "train_loss": 2.0})
    again.finish()
    (series,) = tb_scalars(Path(first.run_id)).values()
    assert [s for s, _ in series] == list(range(1, 21))
    assert [v for _, v in series] == [1.0] * 10 + [2.0] * 10
    fresh = tracking.start(track, META, 1, {})  # a new run of the condition replaces the old
    fresh.log_row({"step": 1, "train_loss": 3.0})
    fresh.finish()
    assert list(tb_scalars(Path(first.run_id)).values()) == [[(1, 3.0)]]


def test_trackio_run_holds_every_step(tmp_path, shards, monkeypatch):
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "trackio"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no Space, no hub: the local store only
    monkeypatch.delenv("HF_TOKEN", raising=False)
    trackio = pytest.importorskip(
        "trackio",
        reason="trackio is not in the dev extra (it pins pillow<13, which would downgrade the "
        "pillow everything else uses); pip install 'speedlab[trackio]' to run this test",
    )
    track = {"backend": "trackio", "project": "p", "dir": str(tmp_path)}
    run(shards, tmp_path / "run", smoke_cfg(), track)
    logs = trackio.SQLiteStorage.get_logs("p", "base/seed1")
    got: dict[str, set[int]] = {}
    for entry in logs:
        for key in entry:
            if key not in ("step", "timestamp") and not key.startswith("final/"):
                got.setdefault(key, set()).add(entry["step"])
    assert {k: sorted(v) for k, v in got.items()} == metric_steps(tmp_path / "run/metrics.jsonl")
    assert any("final/q_val_bpb" in entry for entry in logs)


@pytest.mark.parametrize(
    ("backend", "module"),
    [("wandb", "wandb"), ("tensorboard", "tensorboard.summary.writer.event_file_writer"),
     ("trackio", "trackio")],
)  # fmt: skip
def test_a_backend_whose_package_is_missing_names_the_key_and_the_extra(
    tmp_path, monkeypatch, backend, module
):
    monkeypatch.setitem(sys.modules, module, None)  # what `import` meets without the package
    with pytest.raises(RuntimeError) as e:
        tracking.start({"backend": backend, "dir": str(tmp_path)}, META, 1, {})
    assert f"tracking.backend is {backend!r}" in str(e.value)
    assert f"pip install 'speedlab[{backend}]'" in str(e.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"backend": "mlflow"}', "tracking.backend: 'mlflow' is not one of none, wandb"),
        ('{"backend": "wandb", "projct": "x"}', "tracking: unknown key(s) ['projct']"),
        ("{not json", "--tracking: not JSON"),
        ('["wandb"]', "--tracking: expected a JSON object"),
    ],
)
def test_bad_tracking_settings_are_refused_before_training(capsys, text, message):
    from speedlab.train import loop

    with pytest.raises(SystemExit) as e:
        loop.main(["--config", "{}", "--seed", "1", "--train", "t", "--val", "v",
                   "--token-bytes", "b", "--out-dir", "o", "--tracking", text])  # fmt: skip
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_no_tracking_is_the_default_and_sends_nothing(tmp_path):
    assert tracking.start(None, META, 1, {}) is tracking.OFF
    assert tracking.start({"backend": "none"}, META, 1, {}) is tracking.OFF
    tracking.OFF.log_row({"step": 1, "train_loss": 1.0})  # nothing, nowhere
    assert tracking.OFF.run_id is None and not list(tmp_path.iterdir())


def test_an_external_trainer_s_steps_reach_the_same_run_across_a_restart(tmp_path, offline):
    """The script fails at step 5 once (a preempted job), the retry finishes: one W&B run id for
    both attempts (kept in the work folder); the first holds the 4 steps it logged, the second
    every step of the run's metrics.jsonl."""
    import golden_pg

    from conftest import EXTERNAL_TRAINER, external_study
    from speedlab.train import external

    data = golden_pg.write_data(tmp_path / "shards")["train"].parent
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    study = external_study()
    study["trainer"]["env"].update(FAIL_AT="5")
    study["trainer"]["resume_env"] = {"FAIL_AT": "-1"}
    config["studies"] = {"ext": study}
    cfg = run_config(validate(config), "ext", "lr_high")
    paths = {"out_dir": str(tmp_path / "out"), "work_dir": str(tmp_path / "work"),
             "source": str(EXTERNAL_TRAINER), "data_dir": str(data)}  # fmt: skip
    root = tmp_path / "tracking"
    track = {"backend": "wandb", "dir": str(root)}
    meta = {"study": "ext", "condition": "lr_high"}
    with pytest.raises(SystemExit):
        external.train(cfg, 3, meta, paths, "q_val_bpb", track)
    values = external.train(cfg, 3, meta, paths, "q_val_bpb", track)
    first, second = wandb_runs(root)
    assert record(first, "run")["run_id"] == record(second, "run")["run_id"]
    assert record(second, "run")["display_name"] == "lr_high/seed3"
    assert record(first, "exit")["exit_code"] == 1
    assert wandb_history(first)["train_loss"] == [1, 2, 3, 4]
    expected = metric_steps(tmp_path / "out/metrics.jsonl")
    assert wandb_history(second) == expected and len(expected["train_loss"]) > 5
    finals = {}
    for r in second:
        if r["type"] == "summary":
            finals.update(r["summary"]["update"])
    assert finals["q_val_bpb"] == values["q_val_bpb"]


def study_tables(tmp_path):
    """runs.parquet and stats.csv of a small paired study, made by speedlab's own collect and
    stats code from per-seed values (what compute_stats reads and writes)."""
    import pandas as pd

    from speedlab.analysis.stats import write_stats

    values = {"base": [3.30, 3.31, 3.29, 3.32], "better": [3.25, 3.27, 3.24, 3.26]}
    runs = pd.DataFrame(
        [{"condition": c, "seed": s, "q_val_bpb": v, "diverged": False, "source": "speedlab"}
         for c, vs in values.items() for s, v in enumerate(vs)]
    )  # fmt: skip
    runs.to_parquet(tmp_path / "runs.parquet")
    write_stats(runs, "q_val_bpb", "base", ["base", "better"], 4, tmp_path / "stats.csv")
    return values


def run_tracked(tmp_path, options: dict) -> None:
    from speedlab.analysis import tracked

    files = {"--runs": "runs.parquet", "--stats": "stats.csv", "--out": "t.json"}
    args = [a for flag, name in files.items() for a in (flag, str(tmp_path / name))]
    tracked.main(["--options", json.dumps(options), *args])


def test_track_study_logs_verdicts_and_per_seed_deltas_to_the_group(tmp_path):
    values = study_tables(tmp_path)
    root = tmp_path / "tracking"
    options = {"tracking": {"backend": "tensorboard", "project": "p", "dir": str(root)},
               "study": "trk", "metric": "q_val_bpb", "baseline": "base",
               "conditions": ["base", "better"]}  # fmt: skip
    run_tracked(tmp_path, options)
    doc = json.loads((tmp_path / "t.json").read_text())
    assert (doc["group"], doc["name"]) == ("trk", "trk/analysis")
    assert [v["condition"] for v in doc["verdicts"]] == ["better"]
    assert doc["verdicts"][0]["verdict"] == "better" and doc["per_seed_deltas"] == 4
    logdir = root / "p/trk/trk/analysis"
    (table,) = tb_text(logdir, "verdicts")
    assert "| better | base |" in table and table.rstrip().endswith("| better |")
    (per_seed,) = tb_text(logdir, "per_seed_deltas")
    for seed, (b, x) in enumerate(zip(values["base"], values["better"], strict=True)):
        assert f"| better | {seed} | {x} | {b} | {x - b} |" in per_seed
    summary = json.loads(tb_text(logdir, "summary")[0].strip("`\n"))
    assert summary["better/diff"] == pytest.approx(-0.05)


def test_track_study_with_wandb_logs_the_tables(tmp_path, offline):
    study_tables(tmp_path)
    root = tmp_path / "tracking"
    options = {"tracking": {"backend": "wandb", "dir": str(root)}, "study": "trk",
               "metric": "q_val_bpb", "baseline": "base",
               "conditions": ["base", "better"]}  # fmt: skip
    run_tracked(tmp_path, options)
    (records,) = wandb_runs(root)
    info = record(records, "run")
    assert (info["run_group"], info["display_name"]) == ("trk", "trk/analysis")
    (run_dir,) = (root / "wandb").glob("offline-run-*")
    tables = {p.name.split("_")[0]: json.loads(p.read_text())
              for p in run_dir.glob("files/media/table/*.table.json")}  # fmt: skip
    assert tables["verdicts"]["data"][0][0] == "better"
    verdict = tables["verdicts"]["columns"].index("verdict")
    assert tables["verdicts"]["data"][0][verdict] == "better"
    assert len(tables["per"]["data"]) == 4


def test_track_study_without_a_tracker_or_the_metric_is_refused(tmp_path, capsys):
    from speedlab.analysis import tracked

    study_tables(tmp_path)
    args = ["--runs", str(tmp_path / "runs.parquet"), "--stats", str(tmp_path / "stats.csv"),
            "--out", str(tmp_path / "t.json")]  # fmt: skip
    base = {"study": "trk", "metric": "q_val_bpb", "baseline": "base", "conditions": ["base"]}
    with pytest.raises(SystemExit, match="tracking.backend is none"):
        tracked.main(["--options", json.dumps({**base, "tracking": {"backend": "none"}}), *args])
    other = {**base, "metric": "val_loss", "tracking": {"backend": "tensorboard"}}
    with pytest.raises(SystemExit, match="no rows of the study's metric 'val_loss'"):
        tracked.main(["--options", json.dumps(other), *args])
    assert not (tmp_path / "t.json").exists()


@pytest.mark.slow
def test_a_tracked_study_through_snakemake_and_toggling_tracking_reruns_nothing(tmp_path):
    """A two-arm smoke study with tracking.backend tensorboard: every run's steps in its event
    files, the verdicts in the group's analysis run; then tracking off, or another backend,
    retrains nothing (the settings reach the trainers outside params and config_hash)."""
    from conftest import smoke_quickstart_config, snakemake_cmd

    config = smoke_quickstart_config()
    config["studies"] = {"trk": {
        "baseline": "uniform", "seeds": [0, 1], "metric": "val_bpb",
        "conditions": {"uniform": {}, "low_lr": {"optim.matrix_lr": 0.01}},
        "overrides": {"train.steps": 10, "train.val_every": 5, "train.log_every": 5},
    }}  # fmt: skip
    config["tracking"] = {"backend": "tensorboard", "project": "lab"}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    def snakemake(*args, config_file=None):
        extra = ["--configfile", str(config_file)] if config_file else []
        cmd = snakemake_cmd(tmp_path, "--cores", "2", *extra, *args)
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
        return p.stdout + p.stderr

    snakemake()
    for cond in ("uniform", "low_lr"):
        for seed in (0, 1):
            expected = metric_steps(tmp_path / f"results/runs/trk/{cond}/seed{seed}/metrics.jsonl")
            logdir = tmp_path / f"results/tracking/lab/trk/{cond}/seed{seed}"
            assert tb_steps(tb_scalars(logdir)) == expected
    doc = json.loads((tmp_path / "results/studies/trk/tracking.json").read_text())
    assert [v["condition"] for v in doc["verdicts"]] == ["low_lr"] and doc["per_seed_deltas"] == 2
    assert tb_text(tmp_path / "results/tracking/lab/trk/trk/analysis", "verdicts")

    for backend, planned in (("none", None), ("wandb", "track_study")):
        edited = tmp_path / f"{backend}.yaml"
        edited.write_text(yaml.safe_dump({**config, "tracking": {"backend": backend}}))
        plan = snakemake("-n", config_file=edited)
        if planned is None:
            assert "Nothing to be done" in plan, plan
        else:
            assert "track_study" in plan and "train_run" not in plan, plan


def test_a_running_script_s_finished_steps_go_live(tmp_path):
    """The external trainer's live reader on a log as a script writes it: each read sends the
    steps before the last (maybe half-printed), the exit sends the rest, none twice."""
    from speedlab.train import external

    cfg = {"trainer": {"log_format": "parameter_golf"}}
    track = {"backend": "tensorboard", "project": "p", "dir": str(tmp_path / "tracking")}
    tracker = tracking.start(track, META, 1, {})
    log = tmp_path / "train.log"
    log.write_text("seed:1\ntrain_batch_tokens:512 train_seq_len:64 iterations:9\n")

    def steps(*numbers, tail=""):
        lines = [f"step:{s}/9 train_loss:{5 - s / 10:.4f} train_time:{10 * s}ms step_avg:10ms"
                 for s in numbers]  # fmt: skip
        with log.open("a") as f:
            f.write("".join(line + "\n" for line in lines) + tail)

    live = external.LiveSteps(tracker, cfg, log)
    live.tick(final=False)  # no step yet
    steps(1, 2, 3, tail="step:4/9 train_lo")
    live.tick(final=False)
    assert tracker.after == 2  # step 3 may still get a val line
    steps(tail="ss:4.6000 train_time:40ms step_avg:10ms\n")
    steps(5, 6)
    live.tick(final=False)
    live.tick(final=True)  # the script exited
    live.tick(final=True)
    tracker.finish()
    series = tb_scalars(tracker.logdir)
    for tag in ("train_loss", "tokens", "time_s"):
        assert [s for s, _ in series[tag]] == [1, 2, 3, 4, 5, 6], tag
    assert series["train_loss"][3] == (4, pytest.approx(4.6))


@pytest.mark.slow
def test_under_torchrun_rank_0_alone_sends_the_steps(tmp_path, shards, cli_env):
    out, logdir = tmp_path / "run", tmp_path / "tracking/p/trk/base/seed1"
    track = {"backend": "tensorboard", "project": "p", "dir": str(tmp_path / "tracking")}
    torchrun = Path(sys.executable).parent / "torchrun"
    args = [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "speedlab.train.loop",
            "--config", json.dumps(smoke_cfg()), "--seed", "1",
            "--train", str(shards / "fineweb_train.json"),
            "--val", str(shards / "fineweb_val.json"),
            "--token-bytes", str(shards / "token_bytes.npy"), "--out-dir", str(out),
            "--study", "trk", "--condition", "base", "--tracking", json.dumps(track)]  # fmt: skip
    p = subprocess.run(args, env=cli_env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert len(list(logdir.glob("events.out.tfevents.*"))) == 1  # one writer: rank 0
    assert tb_steps(tb_scalars(logdir)) == metric_steps(out / "metrics.jsonl")


def test_a_tracker_failing_mid_run_warns_once_and_the_run_goes_on(tmp_path, offline, capsys):
    tracker = tracking.start({"backend": "wandb", "dir": str(tmp_path)}, META, 1, {})
    tracker.run.finish()  # the W&B run ends under the trainer (as when its service dies)
    for step in (1, 2):
        tracker.log_row({"step": step, "train_loss": 1.0})
    tracker.log_summary({"val_bpb": 1.0})
    tracker.finish()
    err = capsys.readouterr().err
    assert err.count("warning: tracking.backend wandb: UsageError") == 1
    assert "the run goes on without its tracker" in err
    tracker = tracking.start({"backend": "wandb", "dir": str(tmp_path)}, META, 1, {})
    tracker.strict = True  # track_study: logging is the job
    tracker.run.finish()
    with pytest.raises(Exception, match="is finished"):
        tracker.log_table("verdicts", ["a"], [[1]])
