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
import threading
import time
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
    """metrics.jsonl: the steps at which each metric was logged."""
    out: dict[str, list[int]] = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)):
                out.setdefault(key, []).append(row["step"])
    return out


def tb_scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series of a TensorBoard run, as tensorboard itself reads it."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    series = {}
    for tag in acc.Tags()["tensors"]:
        events = acc.Tensors(tag)
        if events and events[0].tensor_proto.dtype == 1:  # DT_FLOAT: scalars (text is strings)
            series[tag] = [(e.step, float(e.tensor_proto.float_val[0])) for e in events]
    return series


def tb_text(logdir: Path, tag: str) -> list[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"tensors": 0})
    acc.Reload()
    return [e.tensor_proto.string_val[0].decode() for e in acc.Tensors(tag)]


def test_tensorboard_holds_every_step_of_a_real_run(tmp_path, shards):
    track = {"backend": "tensorboard", "project": "p", "dir": str(tmp_path / "tracking")}
    run(shards, tmp_path / "run", smoke_cfg(), track)
    logdir = tmp_path / "tracking/p/trk/base/seed1"
    series = tb_scalars(logdir)
    expected = metric_steps(tmp_path / "run/metrics.jsonl")
    assert {k: [s for s, _ in v] for k, v in series.items()} == expected
    assert expected["train_loss"] == list(range(1, STEPS + 1))
    assert expected["val_bpb"] == [0, 10, 20]
    config = json.loads(tb_text(logdir, "config")[0].strip("`\n"))
    assert config["config"]["train"]["steps"] == STEPS
    assert config["provenance"]["seed"] == 1 and "git_commit" in config["provenance"]
    summary = json.loads(tb_text(logdir, "summary")[-1].strip("`\n"))
    assert "q_val_bpb" in summary
