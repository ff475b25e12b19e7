"""One training run: (resolved config, seed) -> metrics.jsonl, summary.json, model.pt, provenance.

Deterministic on the CPU for a given config and seed: the seed fixes the initialisation and, with
train.data_order=seeded, which sequences are read; validation is always the same token prefix.
Training time excludes validation, as parameter-golf counts it.
"""

from __future__ import annotations

import argparse
import contextlib
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
from torch.nn.parallel import DistributedDataParallel as DDP

from speedlab.config import config_hash
from speedlab.data.shards import load_split
from speedlab.files import atomic_path
from speedlab.train import checkpoint, distributed
from speedlab.train.checkpoint import StopFlag
from speedlab.train.models import build_model
from speedlab.train.optim import apply_schedules, build_optimizers
from speedlab.train.validation import autocast, device_of, evaluate, val_slice


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


# Dense bf16 peak of the GPUs people train these models on, per device (vendor data sheets).
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0}


def padded_vocab(tokenizer_vocab: int, model_vocab: int | None) -> int:
    """model.vocab_size may pad the embedding (e.g. GPT-2's 50257 to 50304), never shrink it."""
    if model_vocab is None:
        return tokenizer_vocab
    if model_vocab < tokenizer_vocab:
        raise ValueError(
            f"model.vocab_size={model_vocab} is smaller than the tokenizer's {tokenizer_vocab}"
        )
    return model_vocab


def flops_per_token(n_params: int, model_cfg: dict, seq_len: int) -> int:
    """Training FLOPs per token: 6 per parameter (forward + backward matmuls, the tied head
    included) plus causal attention's 12 * layers * d_model * seq_len (PaLM's estimate)."""
    return 6 * n_params + 12 * model_cfg["n_layer"] * model_cfg["d_model"] * seq_len


def mfu(flops_per_s: float, device, peak_tflops: float | None) -> float | None:
    """Model FLOPs utilisation on a GPU; None on a CPU or an unknown GPU without peak_tflops."""
    if device.type != "cuda":
        return None
    if peak_tflops is None:
        name = torch.cuda.get_device_name(device)
        peak_tflops = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    return flops_per_s / (peak_tflops * 1e12) if peak_tflops else None


def micro_batches(batch_seqs: int, micro_batch_seqs: int | None, world: int):
    """(sequences per rank, accumulation steps, micro-batch size) for a fixed global batch."""
    if batch_seqs % world:
        raise ValueError(f"train.batch_seqs={batch_seqs} does not split over {world} processes")
    per_rank = batch_seqs // world
    micro = micro_batch_seqs or per_rank
    if per_rank % micro:
        raise ValueError(
            f"train.micro_batch_seqs={micro} does not divide the {per_rank} sequences per process "
            f"(train.batch_seqs={batch_seqs} over {world} processes)"
        )
    return per_rank, per_rank // micro, micro


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
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")


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
    world = distributed.setup(device_of(tcfg["device"]))
    device = world.device
    torch.manual_seed(seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    train_tokens = load_split(train_manifest)
    val_tokens = val_slice(load_split(val_manifest), tcfg["val_tokens"])
    table = np.load(token_bytes)
    vocab_size = padded_vocab(table.shape[1], mcfg.get("vocab_size"))
    model = build_model(mcfg, vocab_size).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    optimizers = build_optimizers(model, ocfg)
    renormalize = None
    if mcfg.get("kind") == "ngpt":
        from speedlab.train.models.ngpt import normalize_weights as renormalize
    # The global batch is fixed by the config; the GPU count only changes how it is split into
    # per-rank micro-batches and accumulation steps, so results do not depend on the world size.
    per_rank, accum, micro = micro_batches(tcfg["batch_seqs"], tcfg["micro_batch_seqs"], world.size)
    ddp = (
        DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
        if (world.size > 1)
        else model
    )
    train_model = torch.compile(ddp) if tcfg["compile"] else ddp
    batches = Batches(train_tokens, tcfg["batch_seqs"], tcfg["seq_len"], tcfg["data_order"], seed)
    steps, tokens_per_step = tcfg["steps"], tcfg["batch_seqs"] * tcfg["seq_len"]
    wallclock = tcfg["max_wallclock_s"]

    def say(text: str) -> None:
        if world.main:
            print(text, flush=True)

    say(
        f"model {n_params:,} params on {device} x {world.size}; {steps} steps x "
        f"{tokens_per_step:,} tokens ({accum} micro-batch(es) of {micro} seqs per rank)"
        + (f" or {wallclock:g}s of training" if wallclock else "")
        + f"; train split {len(train_tokens):,} tokens, val {len(val_tokens) - 1:,} tokens"
    )

    identity = {"config_hash": config_hash(cfg), "seed": seed}
    ckpt_path = Path(checkpoint_dir) / "checkpoint.pt" if checkpoint_dir else None
    stop = StopFlag()
    rows: list[dict] = []
    if world.main:
        out_dir.mkdir(parents=True, exist_ok=True)
        metrics = open(out_dir / "metrics.jsonl", "w")  # noqa: SIM115 - written through the loop

    def record(**row) -> None:
        rows.append(row)
        if world.main:
            metrics.write(json.dumps(row) + "\n")
            metrics.flush()

    def validate(step: int, train_time: float) -> dict | None:
        # Rank 0 validates the plain module (no collectives); the others wait for it.
        v = None
        if world.main:
            v = evaluate(model, val_tokens, table, tcfg["seq_len"], tcfg["batch_seqs"])
            record(step=step, tokens=step * tokens_per_step, time_s=train_time, **v)
            say(f"step {step}/{steps} val_loss {v['val_loss']:.4f} val_bpb {v['val_bpb']:.4f}")
        world.barrier()
        return v

    def save_checkpoint(step: int, train_time: float, last_val: dict) -> None:
        if not world.main:
            world.barrier()
            return
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
        world.barrier()

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
        say(f"resumed from {ckpt_path} at step {start} ({train_time:.1f}s trained)")
    else:
        start, train_time, last_val = 0, 0.0, validate(0, 0.0)

    diverged, step, loss_value = False, start, float("nan")
    matrix_groups = optimizers[-1].param_groups  # one per layer; Muon's carry a momentum
    for step in range(start + 1, steps + 1):
        t0 = time.perf_counter()
        elapsed_frac = train_time / wallclock if wallclock else 0.0
        mult = apply_schedules(optimizers, step - 1, steps, ocfg, elapsed_frac)
        x, y = batches.get(step - 1)
        x = torch.from_numpy(x[world.rank * per_rank : (world.rank + 1) * per_rank]).to(device)
        y = torch.from_numpy(y[world.rank * per_rank : (world.rank + 1) * per_rank]).to(device)
        loss_sum = torch.zeros((), device=device)
        for i in range(accum):
            # Gradients are all-reduced once, on the last micro-batch.
            sync = i == accum - 1 or world.size == 1
            with contextlib.nullcontext() if sync else ddp.no_sync(), autocast(device):
                loss = train_model(x[i * micro : (i + 1) * micro], y[i * micro : (i + 1) * micro])
            (loss / accum).backward()
            loss_sum += loss.detach() / accum
        if ocfg["grad_clip"] is not None:  # global-norm clipping over all parameters
            torch.nn.utils.clip_grad_norm_(model.parameters(), ocfg["grad_clip"])
        for opt in optimizers:
            opt.step()
        if renormalize:
            renormalize(model)  # nGPT: weights back onto the unit sphere after every step
        model.zero_grad(set_to_none=True)
        loss_value = world.mean(loss_sum)  # syncs the GPU, so the timing below is honest
        step_s = time.perf_counter() - t0
        train_time += step_s
        record(
            step=step,
            tokens=step * tokens_per_step,
            time_s=train_time,
            train_loss=loss_value,
            lr_mult=mult,
            **(
                {
                    "momentum_first": matrix_groups[0]["momentum"],
                    "momentum_last": matrix_groups[-1]["momentum"],
                }
                if "momentum" in matrix_groups[0]
                else {}
            ),
            step_ms=1000 * step_s,
            tok_s=tokens_per_step / step_s,
        )
        if not math.isfinite(loss_value):
            diverged = True
            say(f"step {step}: loss is {loss_value}; stopping (diverged)")
            break
        # Ranks measure slightly different times and get signals at different moments: agree.
        out_of_time, stopping = world.any(bool(wallclock) and train_time >= wallclock, bool(stop))
        last = step == steps or out_of_time
        if step % tcfg["log_every"] == 0 or last:
            rate = step * tokens_per_step / train_time
            eta = train_time / step * (steps - step)
            if wallclock:
                eta = min(eta, wallclock - train_time)
            say(
                f"step {step}/{steps} loss {loss_value:.4f} tok/s {rate:,.0f} "
                f"train_time {train_time:.1f}s eta {_fmt_eta(eta)}"
            )
        if step % tcfg["val_every"] == 0 or last:
            last_val = validate(step, train_time)
        every = tcfg["checkpoint_every"]
        if ckpt_path and not last and (stopping or (every and step % every == 0)):
            save_checkpoint(step, train_time, last_val)
        if stopping and not last:
            say(f"signal {stop.signal}: checkpoint saved at step {step}; exiting")
            distributed.teardown(world)
            raise SystemExit(checkpoint.PREEMPTED_EXIT)
        if out_of_time:
            say(f"max_wallclock_s={wallclock:g} reached at step {step}")
            break
    if not world.main:  # rank 0 alone writes the outputs; the others wait for it, then all
        world.barrier()  # leave together (a gloo peer exiting early can abort the other)
        distributed.teardown(world)
        return {}
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
        "model_flops_per_token": flops_per_token(n_params, mcfg, tcfg["seq_len"]),
        "mfu": mfu(
            flops_per_token(n_params, mcfg, tcfg["seq_len"]) * step * tokens_per_step / train_time,
            device,
            tcfg.get("peak_tflops"),
        )
        if train_time > 0
        else None,
        "peak_memory_mb": (
            torch.cuda.max_memory_allocated(device) / 2**20
            if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        ),
    }
    ckpt = {"model": model.state_dict(), "config": cfg, "vocab_size": vocab_size, "final": summary}
    with atomic_path(out_dir / "model.pt") as tmp:
        torch.save(ckpt, tmp)
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
        "world_size": world.size,
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
    world.barrier()
    distributed.teardown(world)
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
    if s:  # rank 0
        print(
            f"done: val_bpb {s['val_bpb']:.4f} after {s['steps']} steps, {s['train_time_s']:.1f}s"
        )


if __name__ == "__main__":
    main()
