"""One training run: (resolved config, seed) -> metrics.jsonl, summary.json, model.pt, provenance.

Deterministic on the CPU for a given config and seed: the seed fixes the initialisation and, with
train.data_order=seeded, which sequences are read; validation is always the same token prefix.
Training time excludes validation, as parameter-golf counts it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from speedlab import checkpoint
from speedlab.checkpoint import StopFlag
from speedlab.config import config_hash
from speedlab.evaluate import autocast, device_of, evaluate, val_slice
from speedlab.model import build_model
from speedlab.optim import apply_schedules, build_optimizers
from speedlab.shards import load_split


class Batches:
    """Training batches of shape (batch_seqs, seq_len) from one token stream."""

    def __init__(self, tokens: np.ndarray, batch_seqs: int, seq_len: int, order: str, seed: int):
        self.tokens, self.b, self.t, self.order = tokens, batch_seqs, seq_len, order
        self.span = batch_seqs * seq_len + 1
        if len(tokens) < self.span:
            raise ValueError(
                f"train split has {len(tokens)} tokens, fewer than one batch "
                f"(train.batch_seqs * train.seq_len + 1 = {self.span})"
            )
        self.rng = np.random.default_rng(seed)

    def get(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        if self.order == "fixed":
            # Consecutive spans, wrapping around at the end, identical for every seed.
            n_spans = len(self.tokens) // (self.span - 1)
            start = (step % max(n_spans - 1, 1)) * (self.span - 1)
            chunk = np.asarray(self.tokens[start : start + self.span], dtype=np.int64)
            return chunk[:-1].reshape(self.b, self.t), chunk[1:].reshape(self.b, self.t)
        starts = self.rng.integers(0, len(self.tokens) - self.t - 1, size=self.b)
        rows = np.stack([np.asarray(self.tokens[s : s + self.t + 1], np.int64) for s in starts])
        return rows[:, :-1], rows[:, 1:]


def _fmt_eta(seconds: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(max(seconds, 0)))


def _git_state() -> dict:
    repo = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {"git_commit": None, "git_dirty": None}
    return {"git_commit": commit, "git_dirty": bool(dirty)}


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def train(
    cfg: dict,
    seed: int,
    train_manifest,
    val_manifest,
    token_bytes,
    out_dir: Path,
    meta: dict,
    checkpoint_dir: Path | None = None,
) -> dict:
    mcfg, ocfg, tcfg = cfg["model"], cfg["optim"], cfg["train"]
    device = device_of(tcfg["device"])
    torch.manual_seed(seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    train_tokens = load_split(train_manifest)
    val_tokens = val_slice(load_split(val_manifest), tcfg["val_tokens"])
    table = np.load(token_bytes)
    vocab_size = table.shape[1]
    model = build_model(mcfg, vocab_size).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    optimizers = build_optimizers(model, ocfg)
    batches = Batches(train_tokens, tcfg["batch_seqs"], tcfg["seq_len"], tcfg["data_order"], seed)
    steps, tokens_per_step = tcfg["steps"], tcfg["batch_seqs"] * tcfg["seq_len"]
    wallclock = tcfg["max_wallclock_s"]
    print(
        f"model {n_params:,} params on {device}; {steps} steps x {tokens_per_step:,} tokens"
        + (f" or {wallclock:g}s of training" if wallclock else "")
        + f"; train split {len(train_tokens):,} tokens, val {len(val_tokens) - 1:,} tokens",
        flush=True,
    )

    identity = {"config_hash": config_hash(cfg), "seed": seed}
    ckpt_path = Path(checkpoint_dir) / "checkpoint.pt" if checkpoint_dir else None
    stop = StopFlag()
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    metrics = open(out_dir / "metrics.jsonl", "w")  # noqa: SIM115 - written through the loop

    def record(**row) -> None:
        rows.append(row)
        metrics.write(json.dumps(row) + "\n")
        metrics.flush()

    def validate(step: int, train_time: float) -> dict:
        v = evaluate(model, val_tokens, table, tcfg["seq_len"], tcfg["batch_seqs"])
        record(step=step, tokens=step * tokens_per_step, time_s=train_time, **v)
        print(f"step {step}/{steps} val_loss {v['val_loss']:.4f} val_bpb {v['val_bpb']:.4f}")
        return v

    def save_checkpoint(step: int, train_time: float, last_val: dict) -> None:
        checkpoint.save(
            ckpt_path,
            {
                "identity": identity,
                "step": step,
                "train_time": train_time,
                "last_val": last_val,
                "rows": rows,
                "model": model.state_dict(),
                "optimizers": [opt.state_dict() for opt in optimizers],
                "rng": checkpoint.rng_state(device),
                "data_rng": batches.rng.bit_generator.state,
            },
        )

    resumed = checkpoint.load(ckpt_path, identity)
    if resumed:
        model.load_state_dict(resumed["model"])
        for opt, state in zip(optimizers, resumed["optimizers"], strict=True):
            opt.load_state_dict(state)
        checkpoint.set_rng_state(resumed["rng"], device)
        batches.rng.bit_generator.state = resumed["data_rng"]
        for row in resumed["rows"]:
            record(**row)
        start, train_time, last_val = resumed["step"], resumed["train_time"], resumed["last_val"]
        print(f"resumed from {ckpt_path} at step {start} ({train_time:.1f}s trained)", flush=True)
    else:
        start, train_time, last_val = 0, 0.0, validate(0, 0.0)

    diverged, step, loss_value = False, start, float("nan")
    muon = optimizers[-1].param_groups
    for step in range(start + 1, steps + 1):
        t0 = time.perf_counter()
        elapsed_frac = train_time / wallclock if wallclock else 0.0
        mult = apply_schedules(optimizers, step - 1, steps, ocfg, elapsed_frac)
        x, y = batches.get(step - 1)
        with autocast(device):
            loss = model(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device))
        loss.backward()
        for opt in optimizers:
            opt.step()
        model.zero_grad(set_to_none=True)
        loss_value = loss.item()  # syncs the GPU, so the timing below is honest
        step_s = time.perf_counter() - t0
        train_time += step_s
        record(
            step=step,
            tokens=step * tokens_per_step,
            time_s=train_time,
            train_loss=loss_value,
            lr_mult=mult,
            momentum_first=muon[0]["momentum"],
            momentum_last=muon[-1]["momentum"],
            step_ms=1000 * step_s,
            tok_s=tokens_per_step / step_s,
        )
        if not math.isfinite(loss_value):
            diverged = True
            print(f"step {step}: loss is {loss_value}; stopping (diverged)", flush=True)
            break
        out_of_time = bool(wallclock) and train_time >= wallclock
        last = step == steps or out_of_time
        if step % tcfg["log_every"] == 0 or last:
            rate = step * tokens_per_step / train_time
            eta = train_time / step * (steps - step)
            if wallclock:
                eta = min(eta, wallclock - train_time)
            print(
                f"step {step}/{steps} loss {loss_value:.4f} tok/s {rate:,.0f} "
                f"train_time {train_time:.1f}s eta {_fmt_eta(eta)}",
                flush=True,
            )
        if step % tcfg["val_every"] == 0 or last:
            last_val = validate(step, train_time)
        every = tcfg["checkpoint_every"]
        if ckpt_path and not last and (stop or (every and step % every == 0)):
            save_checkpoint(step, train_time, last_val)
        if stop and not last:
            metrics.close()
            print(f"signal {stop.signal}: checkpoint saved at step {step}; exiting", flush=True)
            raise SystemExit(checkpoint.PREEMPTED_EXIT)
        if out_of_time:
            print(f"max_wallclock_s={wallclock:g} reached at step {step}", flush=True)
            break
    metrics.close()

    summary = {
        **meta,
        "seed": seed,
        "config_hash": identity["config_hash"],
        "n_params": n_params,
        "steps": step,
        "steps_planned": steps,
        "tokens": step * tokens_per_step,
        "train_time_s": train_time,
        "train_loss": loss_value,
        "val_loss": last_val["val_loss"],
        "val_bpb": last_val["val_bpb"],
        "diverged": diverged,
        "peak_memory_mb": (
            torch.cuda.max_memory_allocated(device) / 2**20
            if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        ),
    }
    model_tmp = out_dir / "model.pt.tmp"
    ckpt = {"model": model.state_dict(), "config": cfg, "vocab_size": vocab_size, "final": summary}
    torch.save(ckpt, model_tmp)
    os.replace(model_tmp, out_dir / "model.pt")
    _write_json(out_dir / "summary.json", summary)
    provenance = {
        **meta,
        "seed": seed,
        "config_hash": summary["config_hash"],
        "config": cfg,
        "inputs": {
            "train": str(train_manifest),
            "val": str(val_manifest),
            "token_bytes": str(token_bytes),
        },
        **_git_state(),
        "resumed_from_step": resumed["step"] if resumed else None,
        "host": socket.gethostname(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "cuda": torch.version.cuda,
        "torch_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _write_json(out_dir / "provenance.json", provenance)
    if ckpt_path:
        ckpt_path.unlink(missing_ok=True)  # the run is complete: model.pt supersedes it
    return summary


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", required=True, help="resolved run config as JSON")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--train", type=Path, required=True, help="train split manifest")
    p.add_argument("--val", type=Path, required=True, help="val split manifest")
    p.add_argument("--token-bytes", type=Path, required=True)
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--study", default="")
    p.add_argument("--condition", default="")
    p.add_argument("--checkpoint-dir", type=Path, help="where to keep checkpoints (not an output)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    meta = {"study": args.study, "condition": args.condition}
    s = train(
        json.loads(args.config),
        args.seed,
        args.train,
        args.val,
        args.token_bytes,
        args.out_dir,
        meta,
        args.checkpoint_dir,
    )
    print(f"done: val_bpb {s['val_bpb']:.4f} after {s['steps']} steps, {s['train_time_s']:.1f}s")


if __name__ == "__main__":
    main()
