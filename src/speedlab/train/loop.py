"""One training run: (resolved config, seed) -> metrics.jsonl, summary.json, model.pt, provenance.

Deterministic on the CPU for a given config and seed: the seed fixes the initialisation and, with
train.data_order=seeded, which sequences are read; validation is always the same token prefix.
Training time excludes validation, as parameter-golf counts it.

train() is four steps: set_up (processes, data, model, optimizers), resume (a checkpoint of this
run, else validation at step 0), train_loop (the loop, on one screen: schedule, forward/backward,
optimizer steps, then logging, validation and checkpoints as small calls) and write_outputs.
What differs between model kinds or optimizers stays behind their own interfaces: the model's
after_step() (nGPT renormalizes), the parameter groups' schedule targets (Muon's momentum).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import resource
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
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


@dataclass
class Run:
    """What one training run is made of, built once by set_up."""

    cfg: dict
    seed: int
    world: distributed.World
    model: nn.Module  # the plain module: validation, checkpoints, after_step
    ddp: nn.Module  # DDP around it with several processes, else the model itself
    step_model: nn.Module  # what the loop calls: ddp, torch.compile'd when train.compile
    optimizers: list
    batches: Batches
    val_tokens: np.ndarray
    byte_table: np.ndarray
    vocab_size: int
    split: tuple[int, int, int]  # sequences per rank, accumulation steps, micro-batch size
    log: Metrics
    ckpt_path: Path | None
    identity: dict
    stop: StopFlag

    @property
    def tokens_per_step(self) -> int:
        return self.cfg["train"]["batch_seqs"] * self.cfg["train"]["seq_len"]

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def say(self, text: str) -> None:
        if self.world.main:
            print(text, flush=True)


@dataclass
class Progress:
    """Where the run stands: what a checkpoint restores and the summary reports."""

    step: int = 0
    train_time: float = 0.0
    last_val: dict | None = None
    train_loss: float = float("nan")
    diverged: bool = False
    resumed_from: int | None = None


class Metrics:
    """metrics.jsonl, one row per step and per validation; rank 0 writes, every rank keeps them
    (a checkpoint carries the rows so that a resumed run's file is whole)."""

    def __init__(self, path: Path | None):
        self.rows: list[dict] = []
        self.file = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(path, "w")  # noqa: SIM115 - written through the loop

    def record(self, **row) -> None:
        self.rows.append(row)
        if self.file:
            self.file.write(json.dumps(row) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file:
            self.file.close()


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
    """Train one (config, seed) and write its outputs; returns the summary (on rank 0, else {}).

    A signal (SIGTERM, SIGUSR1, SIGINT) checkpoints and exits with PREEMPTED_EXIT; the next call
    with the same checkpoint_dir resumes there and ends with the same numbers.
    """
    out_dir = Path(out_dir)
    run = set_up(cfg, seed, train_manifest, val_manifest, token_bytes, out_dir, checkpoint_dir)
    summary = {}
    try:
        progress = train_loop(run, resume(run))
        if run.world.main:  # rank 0 alone writes the outputs
            inputs = {"train": train_manifest, "val": val_manifest, "token_bytes": token_bytes}
            summary = write_outputs(run, progress, meta, out_dir, inputs)
    finally:
        run.stop.restore()
    run.world.barrier()  # the others wait for them, then all leave together (a gloo peer
    distributed.teardown(run.world)  # exiting early can abort the other)
    return summary


def set_up(cfg, seed, train_manifest, val_manifest, token_bytes, out_dir, checkpoint_dir) -> Run:
    """Processes, seed, data, model and optimizers, the metrics file and the signal flag."""
    mcfg, tcfg = cfg["model"], cfg["train"]
    world = distributed.setup(device_of(tcfg["device"]))
    torch.manual_seed(seed)
    if world.device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    train_tokens = load_split(train_manifest)
    val_tokens = val_slice(load_split(val_manifest), tcfg["val_tokens"])
    table = np.load(token_bytes)
    vocab_size = padded_vocab(table.shape[1], mcfg["vocab_size"])
    model = build_model(mcfg, vocab_size).to(world.device)
    optimizers = build_optimizers(model, cfg["optim"])
    # The global batch is fixed by the config; the GPU count only changes how it is split into
    # per-rank micro-batches and accumulation steps, so results do not depend on the world size.
    split = micro_batches(tcfg["batch_seqs"], tcfg["micro_batch_seqs"], world.size)
    ddp = model
    if world.size > 1:
        ddp = DDP(model, device_ids=[world.device.index] if world.device.type == "cuda" else None)
    run = Run(
        cfg=cfg,
        seed=seed,
        world=world,
        model=model,
        ddp=ddp,
        step_model=torch.compile(ddp) if tcfg["compile"] else ddp,
        optimizers=optimizers,
        batches=Batches(
            train_tokens, tcfg["batch_seqs"], tcfg["seq_len"], tcfg["data_order"], seed
        ),
        val_tokens=val_tokens,
        byte_table=table,
        vocab_size=vocab_size,
        split=split,
        log=Metrics(out_dir / "metrics.jsonl" if world.main else None),
        ckpt_path=Path(checkpoint_dir) / "checkpoint.pt" if checkpoint_dir else None,
        identity={"config_hash": config_hash(cfg), "seed": seed},
        stop=StopFlag(),
    )
    say_plan(run, len(train_tokens))
    return run


def say_plan(run: Run, n_train_tokens: int) -> None:
    tcfg, (_, accum, micro) = run.cfg["train"], run.split
    wallclock = tcfg["max_wallclock_s"]
    run.say(
        f"model {run.n_params:,} params on {run.world.device} x {run.world.size}; "
        f"{tcfg['steps']} steps x {run.tokens_per_step:,} tokens ({accum} micro-batch(es) of "
        f"{micro} seqs per rank)"
        + (f" or {wallclock:g}s of training" if wallclock else "")
        + f"; train split {n_train_tokens:,} tokens, val {len(run.val_tokens) - 1:,} tokens"
    )


def resume(run: Run) -> Progress:
    """Progress from this run's checkpoint if there is one, else step 0 (validated)."""
    state = checkpoint.load(run.ckpt_path, run.identity)
    if state is None:
        return Progress(last_val=validate(run, 0, 0.0))
    run.model.load_state_dict(state["model"])
    for opt, opt_state in zip(run.optimizers, state["optimizers"], strict=True):
        opt.load_state_dict(opt_state)
    checkpoint.set_rng_state(state["rng"], run.world.device)
    run.batches.rng.bit_generator.state = state["data_rng"]
    for row in state["rows"]:
        run.log.record(**row)
    step, train_time = state["step"], state["train_time"]
    run.say(f"resumed from {run.ckpt_path} at step {step} ({train_time:.1f}s trained)")
    return Progress(step, train_time, state["last_val"], resumed_from=step)


def train_loop(run: Run, p: Progress) -> Progress:
    """From p.step to train.steps, or until the loss is not finite or the time budget is spent.
    A signal saves a checkpoint and exits (SystemExit(PREEMPTED_EXIT)) after the current step."""
    tcfg, ocfg = run.cfg["train"], run.cfg["optim"]
    steps, wallclock, every = tcfg["steps"], tcfg["max_wallclock_s"], tcfg["checkpoint_every"]
    for step in range(p.step + 1, steps + 1):
        t0 = time.perf_counter()
        # The schedule: lr warmup and warmdown (by steps or by the clock, whichever is further
        # on), weight decay, Muon's momentum warmup; each group scales the targets it carries.
        elapsed_frac = p.train_time / wallclock if wallclock else 0.0
        schedule = apply_schedules(run.optimizers, step - 1, steps, ocfg, elapsed_frac)
        loss = forward_backward(run, step)
        if ocfg["grad_clip"] is not None:  # global-norm clipping over all parameters
            torch.nn.utils.clip_grad_norm_(run.model.parameters(), ocfg["grad_clip"])
        for opt in run.optimizers:
            opt.step()
        run.model.after_step()  # nGPT: weights back onto the unit sphere; GPT: nothing
        run.model.zero_grad(set_to_none=True)
        p.train_loss = run.world.mean(loss)  # syncs the GPU, so the timing below is honest
        step_s = time.perf_counter() - t0
        p.step, p.train_time = step, p.train_time + step_s
        record_step(run, p, schedule, step_s)
        if not math.isfinite(p.train_loss):
            p.diverged = True
            run.say(f"step {step}: loss is {p.train_loss}; stopping (diverged)")
            break
        # Ranks measure slightly different times and get signals at different moments: agree.
        out_of_time, stopping = run.world.any(
            bool(wallclock) and p.train_time >= wallclock, bool(run.stop)
        )
        last = step == steps or out_of_time
        if step % tcfg["log_every"] == 0 or last:
            say_progress(run, p)
        if step % tcfg["val_every"] == 0 or last:
            p.last_val = validate(run, step, p.train_time)
        if not last and (stopping or (every and step % every == 0)):
            save_checkpoint(run, p)
            if stopping:
                preempted(run, step)
        if out_of_time:
            run.say(f"max_wallclock_s={wallclock:g} reached at step {step}")
            break
    return p


def forward_backward(run: Run, step: int) -> torch.Tensor:
    """Gradients of this rank's share of the step's global batch, in micro-batches; returns the
    mean loss (this rank's). Gradients are all-reduced once, on the last micro-batch."""
    world, (per_rank, accum, micro) = run.world, run.split
    x, y = run.batches.get(step - 1)
    x = torch.from_numpy(x[world.rank * per_rank : (world.rank + 1) * per_rank]).to(world.device)
    y = torch.from_numpy(y[world.rank * per_rank : (world.rank + 1) * per_rank]).to(world.device)
    loss_sum = torch.zeros((), device=world.device)
    for i in range(accum):
        sync = i == accum - 1 or world.size == 1
        with contextlib.nullcontext() if sync else run.ddp.no_sync(), autocast(world.device):
            loss = run.step_model(x[i * micro : (i + 1) * micro], y[i * micro : (i + 1) * micro])
        (loss / accum).backward()
        loss_sum += loss.detach() / accum
    return loss_sum


def record_step(run: Run, p: Progress, schedule: dict, step_s: float) -> None:
    run.log.record(
        step=p.step,
        tokens=p.step * run.tokens_per_step,
        time_s=p.train_time,
        train_loss=p.train_loss,
        **schedule,
        step_ms=1000 * step_s,
        tok_s=run.tokens_per_step / step_s,
    )


def say_progress(run: Run, p: Progress) -> None:
    steps, wallclock = run.cfg["train"]["steps"], run.cfg["train"]["max_wallclock_s"]
    rate = p.step * run.tokens_per_step / p.train_time
    eta = p.train_time / p.step * (steps - p.step)
    if wallclock:
        eta = min(eta, wallclock - p.train_time)
    run.say(
        f"step {p.step}/{steps} loss {p.train_loss:.4f} tok/s {rate:,.0f} "
        f"train_time {p.train_time:.1f}s eta {_fmt_eta(eta)}"
    )


def validate(run: Run, step: int, train_time: float) -> dict | None:
    """Rank 0 validates the plain module (no collectives) and logs it; the others wait."""
    v = None
    if run.world.main:
        tcfg = run.cfg["train"]
        v = evaluate(run.model, run.val_tokens, run.byte_table, tcfg["seq_len"], tcfg["batch_seqs"])
        run.log.record(step=step, tokens=step * run.tokens_per_step, time_s=train_time, **v)
        run.say(
            f"step {step}/{tcfg['steps']} val_loss {v['val_loss']:.4f} val_bpb {v['val_bpb']:.4f}"
        )
    run.world.barrier()
    return v


def save_checkpoint(run: Run, p: Progress) -> None:
    """Rank 0 writes the checkpoint (every rank holds the same state); all wait for it."""
    if run.ckpt_path is None:
        return
    if run.world.main:
        state = {
            "identity": run.identity,
            "step": p.step,
            "train_time": p.train_time,
            "last_val": p.last_val,
            "rows": run.log.rows,
            "model": run.model.state_dict(),
            "optimizers": [opt.state_dict() for opt in run.optimizers],
            "rng": checkpoint.rng_state(run.world.device),
            "data_rng": run.batches.rng.bit_generator.state,
        }
        checkpoint.save(run.ckpt_path, state)
    run.world.barrier()


def preempted(run: Run, step: int) -> None:
    """Leave after a signal, with the exit status a job killed by SIGTERM reports."""
    done = "checkpoint saved" if run.ckpt_path else "nothing saved (no --checkpoint-dir)"
    run.say(f"{signal.Signals(run.stop.signal).name}: {done} at step {step}; exiting")
    distributed.teardown(run.world)
    raise SystemExit(checkpoint.PREEMPTED_EXIT)


def write_outputs(run: Run, p: Progress, meta: dict, out_dir: Path, inputs: dict) -> dict:
    """metrics.jsonl closed, then model.pt, summary.json, provenance.json; the checkpoint goes."""
    run.log.close()
    summary = _summary(run, p, meta)
    ckpt = {
        "model": run.model.state_dict(),
        "config": run.cfg,
        "vocab_size": run.vocab_size,
        "final": summary,
    }
    with atomic_path(out_dir / "model.pt") as tmp:
        torch.save(ckpt, tmp)
    _write_json(out_dir / "summary.json", summary)
    _write_json(out_dir / "provenance.json", _provenance(run, p, meta, inputs))
    if run.ckpt_path:
        run.ckpt_path.unlink(missing_ok=True)  # the run is complete: model.pt supersedes it
    return summary


def _summary(run: Run, p: Progress, meta: dict) -> dict:
    tcfg, device = run.cfg["train"], run.world.device
    fpt = flops_per_token(run.n_params, run.cfg["model"], tcfg["seq_len"])
    tokens = p.step * run.tokens_per_step
    return {
        **meta,
        "seed": run.seed,
        "config_hash": run.identity["config_hash"],
        "n_params": run.n_params,
        "steps": p.step,
        "steps_planned": tcfg["steps"],
        "tokens": tokens,
        "train_time_s": p.train_time,
        "train_loss": p.train_loss,
        "val_loss": p.last_val["val_loss"],
        "val_bpb": p.last_val["val_bpb"],
        "diverged": p.diverged,
        "model_flops_per_token": fpt,
        "mfu": mfu(fpt * tokens / p.train_time, device, tcfg["peak_tflops"])
        if p.train_time > 0
        else None,
        "peak_memory_mb": (
            torch.cuda.max_memory_allocated(device) / 2**20
            if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        ),
    }


def _provenance(run: Run, p: Progress, meta: dict, inputs: dict) -> dict:
    device = run.world.device
    return {
        **meta,
        "seed": run.seed,
        "config_hash": run.identity["config_hash"],
        "config": run.cfg,
        "inputs": {k: str(v) for k, v in inputs.items()},
        **_git_state(),
        "resumed_from_step": p.resumed_from,
        "host": socket.gethostname(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "cuda": torch.version.cuda,
        "torch_threads": torch.get_num_threads(),
        "world_size": run.world.size,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


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
