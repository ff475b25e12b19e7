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
import socket
import sys
import time
from pathlib import Path

import numpy as np
import torch

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


def train(cfg: dict, seed: int, train_manifest, val_manifest, token_bytes, out_dir: Path, meta):
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
    print(
        f"model {n_params:,} params on {device}; {steps} steps x {tokens_per_step:,} tokens; "
        f"train split {len(train_tokens):,} tokens, val {len(val_tokens) - 1:,} tokens",
        flush=True,
    )

    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = open(out_dir / "metrics.jsonl", "w")  # noqa: SIM115 - written through the loop

    def record(**row) -> None:
        metrics.write(json.dumps(row) + "\n")
        metrics.flush()

    def validate(step: int, train_time: float) -> dict:
        v = evaluate(model, val_tokens, table, tcfg["seq_len"], tcfg["batch_seqs"])
        record(step=step, tokens=step * tokens_per_step, time_s=train_time, **v)
        print(f"step {step}/{steps} val_loss {v['val_loss']:.4f} val_bpb {v['val_bpb']:.4f}")
        return v

    train_time, diverged, step, loss_value = 0.0, False, 0, float("nan")
    last_val = validate(0, 0.0)
    for step in range(1, steps + 1):
        t0 = time.perf_counter()
        apply_schedules(optimizers, step - 1, steps, ocfg)
        x, y = batches.get(step - 1)
        with autocast(device):
            loss = model(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device))
        loss.backward()
        for opt in optimizers:
            opt.step()
        model.zero_grad(set_to_none=True)
        loss_value = loss.item()  # syncs the GPU, so the timing below is honest
        train_time += time.perf_counter() - t0
        record(step=step, tokens=step * tokens_per_step, time_s=train_time, train_loss=loss_value)
        if not math.isfinite(loss_value):
            diverged = True
            print(f"step {step}: loss is {loss_value}; stopping (diverged)", flush=True)
            break
        if step % tcfg["log_every"] == 0 or step == steps:
            rate = step * tokens_per_step / train_time
            eta = train_time / step * (steps - step)
            print(
                f"step {step}/{steps} loss {loss_value:.4f} tok/s {rate:,.0f} "
                f"train_time {train_time:.1f}s eta {_fmt_eta(eta)}",
                flush=True,
            )
        if step % tcfg["val_every"] == 0 or step == steps:
            last_val = validate(step, train_time)
    metrics.close()

    summary = {
        **meta,
        "seed": seed,
        "config_hash": config_hash(cfg),
        "n_params": n_params,
        "steps": step,
        "steps_planned": steps,
        "tokens": step * tokens_per_step,
        "train_time_s": train_time,
        "train_loss": loss_value,
        "val_loss": last_val["val_loss"],
        "val_bpb": last_val["val_bpb"],
        "diverged": diverged,
    }
    ckpt = {"model": model.state_dict(), "config": cfg, "vocab_size": vocab_size, "final": summary}
    torch.save(ckpt, out_dir / "model.pt")
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
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
        "host": socket.gethostname(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (out_dir / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
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
    )
    print(f"done: val_bpb {s['val_bpb']:.4f} after {s['steps']} steps, {s['train_time_s']:.1f}s")


if __name__ == "__main__":
    main()
