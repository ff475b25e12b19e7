import json

import numpy as np
import pytest
import yaml

from conftest import REPO
from speedlab.config import run_config, validate
from speedlab.train.loop import train


def smoke_config(condition="layerwise", **train_edits):
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["scale"] = "smoke"
    cfg = run_config(validate(config), "quickstart", condition)
    cfg["train"].update(train_edits)
    return cfg


def run(shards, out, cfg, seed):
    return train(
        cfg,
        seed,
        shards / "fineweb_train.json",
        shards / "fineweb_val.json",
        shards / "token_bytes.npy",
        out,
        {"study": "t", "condition": "c"},
    )


def read_metrics(path):
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for r in rows:
        for timing in ("time_s", "step_ms", "tok_s", "schedule_time_s"):
            r.pop(timing, None)
    return rows


@pytest.mark.slow
def test_same_seed_same_run_and_loss_falls(tmp_path, shards):
    cfg = smoke_config(steps=30, val_every=15)
    a = run(shards, tmp_path / "a", cfg, seed=3)
    b = run(shards, tmp_path / "b", cfg, seed=3)
    assert read_metrics(tmp_path / "a/metrics.jsonl") == read_metrics(tmp_path / "b/metrics.jsonl")
    assert a["val_bpb"] == b["val_bpb"]
    vals = [r["val_bpb"] for r in read_metrics(tmp_path / "a/metrics.jsonl") if "val_bpb" in r]
    assert len(vals) == 3 and vals[-1] < vals[0] - 0.2
    c = run(shards, tmp_path / "c", cfg, seed=4)
    assert c["val_bpb"] != a["val_bpb"]  # the seed changes the initialisation
    prov = json.loads((tmp_path / "a/provenance.json").read_text())
    assert prov["config"] == cfg and prov["config_hash"] == a["config_hash"]
    assert (
        a["steps"] == 30
        and a["tokens"] == 30 * cfg["train"]["batch_seqs"] * cfg["train"]["seq_len"]
    )


def test_seeded_data_order_differs_by_seed_fixed_does_not(tmp_path, shards):
    from speedlab.data.shards import SplitReader
    from speedlab.train.batches import Batches

    reader = SplitReader(shards / "fineweb_train.json")

    def batches(order, seed):
        tcfg = {"data_order": order, "seq_len": 32, "batch_seqs": 4}
        return Batches(reader, tcfg, (4, 1, 4), 1, seed)

    fixed = [batches("fixed", s).get(7, 0, 0)[0] for s in (0, 1)]
    np.testing.assert_array_equal(*fixed)
    seeded = [batches("seeded", s).get(7, 0, 0)[0] for s in (0, 1)]
    assert not np.array_equal(*seeded)
    x, y = batches("fixed", 0).get(0, 0, 0)
    np.testing.assert_array_equal(x[0, 1:], y[0, :-1])  # targets are inputs shifted by one


def test_divergence_is_recorded_not_hidden(tmp_path, shards, monkeypatch):
    # This architecture (norms everywhere, softcapped logits) saturates rather than overflows
    # even at absurd learning rates, so the NaN is injected: the point is what train() does.
    from speedlab.train.models.gpt import GPT

    forward, calls = GPT.forward, []

    def nan_after_five(self, idx, targets, reduction="mean"):
        calls.append(self.training)
        loss = forward(self, idx, targets, reduction)
        return loss * float("nan") if sum(calls) > 5 else loss

    monkeypatch.setattr(GPT, "forward", nan_after_five)
    s = run(shards, tmp_path / "d", smoke_config(steps=20), seed=0)
    assert s["diverged"] and s["steps"] == 6
    assert (tmp_path / "d/model.pt").exists() and (tmp_path / "d/summary.json").exists()


def _launch(shards, out, ckpt, cfg, env, nproc=1):
    import subprocess
    import sys
    from pathlib import Path

    python = [sys.executable]
    if nproc > 1:
        torchrun = Path(sys.executable).parent / "torchrun"
        python = [str(torchrun), "--standalone", f"--nproc_per_node={nproc}"]
    args = [*python, "-m", "speedlab.train.loop", "--config", json.dumps(cfg), "--seed", "1",
            "--train", str(shards / "fineweb_train.json"),
            "--val", str(shards / "fineweb_val.json"),
            "--token-bytes", str(shards / "token_bytes.npy"), "--out-dir", str(out),
            "--checkpoint-dir", str(ckpt)]  # fmt: skip
    return subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _wait_for_step(proc, metrics, step, timeout=60):
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if metrics.exists():
            done = [json.loads(x) for x in metrics.read_text().splitlines() if x.endswith("}")]
            if any("train_loss" in r and r["step"] >= step for r in done):
                return
        time.sleep(0.01)
    raise AssertionError(f"run never reached step {step}: {proc.poll()}")


@pytest.fixture(scope="module")
def long_cfg():
    return smoke_config(steps=200, val_every=50, log_every=50, checkpoint_every=40)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, shards, long_cfg):
    out = tmp_path_factory.mktemp("full")
    run(shards, out, long_cfg, seed=1)
    return read_metrics(out / "metrics.jsonl")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "SIGKILL"])
def test_preempted_run_resumes_to_the_same_metrics(
    tmp_path, shards, long_cfg, uninterrupted, cli_env, how
):
    """SLURM's SIGTERM and Ctrl-C's SIGINT save a checkpoint at the next log point; after a
    SIGKILL the rerun starts from the last periodic checkpoint. Either way: the same metrics."""
    import random
    import signal

    out, ckpt = tmp_path / "run", tmp_path / "ckpt"
    at = random.Random(how).randrange(45, 150)  # acted on at the next log point (<200)
    proc = _launch(shards, out, ckpt, long_cfg, cli_env)
    _wait_for_step(proc, out / "metrics.jsonl", at)
    proc.send_signal(getattr(signal, how))
    log = proc.communicate(timeout=60)[0]
    if how == "SIGKILL":
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 143 and f"{how}: checkpoint saved at step" in log, log
    assert (ckpt / "checkpoint.pt").exists() and not (out / "summary.json").exists()
    proc = _launch(shards, out, ckpt, long_cfg, cli_env)
    log = proc.communicate(timeout=120)[0]
    assert proc.returncode == 0 and "resumed from" in log, log
    assert read_metrics(out / "metrics.jsonl") == uninterrupted
    assert not (ckpt / "checkpoint.pt").exists()  # done: model.pt supersedes it
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["resumed_from_step"] >= (at if how == "SIGTERM" else 40)


@pytest.mark.slow
def test_ctrl_c_under_torchrun_checkpoints_every_rank_at_the_same_step(tmp_path, shards, cli_env):
    """Ctrl-C reaches torchrun, which forwards SIGINT to both ranks: they stop after the same
    step, rank 0 saves, and the rerun ends with the uninterrupted run's metrics, bit for bit."""
    import random
    import signal

    cfg = smoke_config(steps=80, val_every=40, log_every=20, micro_batch_seqs=1)
    full = _launch(shards, tmp_path / "full", tmp_path / "full_ckpt", cfg, cli_env, nproc=2)
    assert full.wait(timeout=300) == 0, full.communicate()[0]
    out, ckpt = tmp_path / "run", tmp_path / "ckpt"
    at = random.Random("torchrun").randrange(10, 40)  # acted on at the next log point (<80)
    proc = _launch(shards, out, ckpt, cfg, cli_env, nproc=2)
    _wait_for_step(proc, out / "metrics.jsonl", at, timeout=300)
    proc.send_signal(signal.SIGINT)
    log = proc.communicate(timeout=120)[0]
    assert proc.returncode != 0 and "SIGINT: checkpoint saved at step" in log, log
    assert (ckpt / "checkpoint.pt").exists() and not (out / "summary.json").exists()
    proc = _launch(shards, out, ckpt, cfg, cli_env, nproc=2)
    log = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0 and "resumed from" in log, log
    rows = read_metrics(out / "metrics.jsonl")
    assert rows == read_metrics(tmp_path / "full/metrics.jsonl") and rows[-1]["step"] == 80
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["world_size"] == 2 and prov["resumed_from_step"] >= at


def test_stop_flag_takes_the_signals_and_gives_them_back():
    import signal

    from speedlab.train.checkpoint import StopFlag

    before = signal.getsignal(signal.SIGINT)
    flag = StopFlag()
    signal.raise_signal(signal.SIGINT)  # Ctrl-C: noted, not a KeyboardInterrupt
    assert flag.signal == signal.SIGINT
    flag.restore()
    assert signal.getsignal(signal.SIGINT) is before
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # started as a background job of a script
    try:
        flag = StopFlag()
        signal.raise_signal(signal.SIGINT)
        assert not flag  # such a job ignores Ctrl-C, and keeps doing so
        signal.raise_signal(signal.SIGTERM)
        assert flag.signal == signal.SIGTERM
        flag.restore()
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_checkpoint_of_another_config_is_not_resumed(tmp_path, shards):
    import signal

    from speedlab.train import checkpoint

    checkpoint.save(tmp_path / "ckpt" / "checkpoint.pt", {"identity": {"other": 1}, "step": 5})
    sigint = signal.getsignal(signal.SIGINT)
    s = train(
        smoke_config(steps=10), 0, shards / "fineweb_train.json", shards / "fineweb_val.json",
        shards / "token_bytes.npy", tmp_path / "out", {}, tmp_path / "ckpt",
    )  # fmt: skip
    prov = json.loads((tmp_path / "out/provenance.json").read_text())
    assert s["steps"] == 10 and prov["resumed_from_step"] is None
    assert signal.getsignal(signal.SIGINT) is sigint  # Ctrl-C interrupts the caller again


def test_wallclock_budget_stops_training(tmp_path, shards):
    from speedlab.train.schedules import lr_multiplier

    budget = 2.0
    cfg = smoke_config(steps=100_000, val_every=10_000, max_wallclock_s=budget)
    cfg["optim"]["warmdown_frac"] = 0.9  # any step after the first 10% of the budget warms down
    s = run(shards, tmp_path / "w", cfg, seed=0)
    assert 1 < s["steps"] < 100_000 and s["train_time_s"] >= budget
    raw = [json.loads(x) for x in (tmp_path / "w/metrics.jsonl").read_text().splitlines()]
    assert raw[-1]["step"] == s["steps"] and "val_bpb" in raw[-1]  # the final validation
    steps = [r for r in raw if "lr_mult" in r]
    # It stopped at the first step past the budget (by the host clock, as train_gpt.py does).
    assert steps[-1]["time_s"] >= budget > steps[-2]["schedule_time_s"]
    # The warmdown followed the clock, not the step count: each step's lr multiplier is the
    # schedule's at the training time before it, exactly (whatever the machine's speed).
    warmup, warmdown = cfg["optim"]["warmup_steps"], cfg["optim"]["warmdown_frac"]
    want = [
        lr_multiplier(r["step"] - 1, 100_000, warmup, warmdown, r["schedule_time_s"] / budget)
        for r in steps
    ]
    assert [r["lr_mult"] for r in steps] == want
    assert want[0] == 1.0 and want[-1] < 1.0


@pytest.mark.slow
def test_global_batch_is_fixed_whatever_the_process_count(tmp_path, shards, cli_env):
    """torchrun with 2 CPU processes (gloo) and gradient accumulation vs one process."""
    import subprocess
    import sys
    from pathlib import Path

    cfg = smoke_config(steps=15, val_every=15)
    single = run(shards, tmp_path / "one", cfg, seed=2)
    cfg2 = json.loads(json.dumps(cfg))
    cfg2["train"]["micro_batch_seqs"] = 1  # 2 sequences per process, in 2 micro-batches
    torchrun = Path(sys.executable).parent / "torchrun"
    args = [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "speedlab.train.loop",
            "--config", json.dumps(cfg2), "--seed", "2",
            "--train", str(shards / "fineweb_train.json"),
            "--val", str(shards / "fineweb_val.json"),
            "--token-bytes", str(shards / "token_bytes.npy"),
            "--out-dir", str(tmp_path / "two")]  # fmt: skip
    p = subprocess.run(args, capture_output=True, text=True, env=cli_env, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-8000:]  # each rank's error too
    two = json.loads((tmp_path / "two/summary.json").read_text())
    assert json.loads((tmp_path / "two/provenance.json").read_text())["world_size"] == 2
    one_rows, two_rows = (read_metrics(tmp_path / d / "metrics.jsonl") for d in ("one", "two"))
    losses = [[r["train_loss"] for r in rows if "train_loss" in r] for rows in (one_rows, two_rows)]
    # Same data, same math; only the order of float sums differs.
    np.testing.assert_allclose(losses[0], losses[1], rtol=2e-4)
    assert two["val_bpb"] == pytest.approx(single["val_bpb"], rel=2e-4)


def test_micro_batches_must_divide_the_batch():
    from speedlab.train.loop import micro_batches

    assert micro_batches(8, None, 2) == (4, 1, 4)
    assert micro_batches(8, 2, 2) == (4, 2, 2)
    with pytest.raises(ValueError, match="train.batch_seqs=6 does not split over 4"):
        micro_batches(6, None, 4)
    with pytest.raises(ValueError, match="train.micro_batch_seqs=3"):
        micro_batches(8, 3, 1)


@pytest.mark.slow
def test_ngpt_trains_and_stays_on_the_sphere(tmp_path, shards):
    import torch

    cfg = smoke_config(steps=30, val_every=30)
    cfg["model"]["kind"] = "ngpt"
    s = run(shards, tmp_path / "n", cfg, seed=0)
    vals = [r["val_bpb"] for r in read_metrics(tmp_path / "n/metrics.jsonl") if "val_bpb" in r]
    assert vals[-1] < vals[0] - 0.2 and not s["diverged"]
    state = torch.load(tmp_path / "n/model.pt", weights_only=False)["model"]
    emb = state["tok_emb.weight"]
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(emb.size(0)))


def test_grad_clip_clips_every_step_at_the_configured_norm(tmp_path, shards, monkeypatch):
    import torch

    calls = []
    real = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm, *args, **kwargs):
        norm = real(params, max_norm, *args, **kwargs)
        calls.append((max_norm, float(norm)))
        return norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    cfg = smoke_config(steps=6, val_every=6)
    run(shards, tmp_path / "plain", cfg, seed=0)
    assert calls == []  # off by default
    cfg["optim"]["grad_clip"] = 0.25
    clipped = run(shards, tmp_path / "clipped", cfg, seed=0)
    assert [c[0] for c in calls] == [0.25] * 6 and all(c[1] > 0.25 for c in calls)
    assert (
        clipped["val_bpb"] != json.loads((tmp_path / "plain/summary.json").read_text())["val_bpb"]
    )


def test_the_training_job_scores_its_own_roundtrip(tmp_path, shards):
    """roundtrip.json comes from the training job; recomputing it from model.pt agrees."""
    from speedlab.train.quantize import roundtrip

    cfg = smoke_config(steps=4, val_every=4)
    summary = run(shards, tmp_path / "r", cfg, seed=0)
    in_job = json.loads((tmp_path / "r/roundtrip.json").read_text())
    again = roundtrip(
        tmp_path / "r/model.pt",
        shards / "fineweb_val.json",
        shards / "token_bytes.npy",
        tmp_path / "again.json",
    )
    assert in_job["val_loss"] == summary["val_loss"] and in_job["eval_time_s"] > 0
    for key in ("q_val_loss", "q_val_bpb", "compressed_bytes", "payload_bytes", "artifact_bytes"):
        assert in_job[key] == again[key], key


def test_losses_are_read_from_the_device_at_log_points_only(tmp_path, shards, monkeypatch):
    """No host sync per step: each log point reads its window's losses (and the stop flag) in
    one call; every step still gets its own train_loss row."""
    from speedlab.train import distributed

    reads, mean = [], distributed.World.mean
    monkeypatch.setattr(
        distributed.World, "mean", lambda self, v: reads.append(v.numel()) or mean(self, v)
    )
    cfg = smoke_config(steps=12, val_every=6, log_every=4)
    run(shards, tmp_path / "r", cfg, seed=0)
    assert reads == [5, 3, 3, 5]  # losses of steps 1-4, 5-6 (validation), 7-8, 9-12, + flag
    rows = [r for r in read_metrics(tmp_path / "r/metrics.jsonl") if "train_loss" in r]
    assert [r["step"] for r in rows] == list(range(1, 13))


@pytest.mark.slow
def test_compiled_warm_up_is_undone_and_nothing_recompiles_after_it(tmp_path, shards):
    """train.compile on the CPU (inductor): the warm-up's steps are undone (the run equals one
    that compiled during its first step instead), and no graph is compiled after the warm-up."""
    cfg = smoke_config(steps=6, val_every=3, log_every=3, compile=True, compile_warmup_steps=3)
    warm = run(shards, tmp_path / "warm", cfg, seed=0)
    cfg["train"]["compile_warmup_steps"] = 0
    cold = run(shards, tmp_path / "cold", cfg, seed=0)
    assert warm["compiled"] and warm["recompiles_after_warmup"] == 0
    assert cold["recompiles_after_warmup"] is None  # no warm-up: nothing to count against
    rows = [read_metrics(tmp_path / d / "metrics.jsonl") for d in ("warm", "cold")]
    assert rows[0] == rows[1] and warm["val_loss"] == cold["val_loss"]
