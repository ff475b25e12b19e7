"""One training run: (resolved config, seed) -> metrics.jsonl, summary.json, model.pt,
roundtrip.json, provenance.json.

Deterministic on the CPU for a given config and seed: the seed fixes the initialisation and, with
train.data_order=seeded, which sequences are read; validation is always the same token prefix.
Training time excludes validation and the compile warm-up, as parameter-golf counts it.

train() is five steps: set_up (processes, data, model, optimizers), warm_up (compiled runs only:
compile before the clock, then rewind), resume (a checkpoint of this run, else validation at step
0), train_loop (the loop, on one screen) and the outputs: write_outputs, then the int8+zlib
roundtrip scored on the training device(s), as train_gpt.py ends. What differs between model
kinds or optimizers stays behind their own interfaces: the model's after_step() (nGPT
renormalizes), the parameter groups' schedule targets (Muon's momentum).

The hot path does not wait for the device: losses stay on it and are read, all-reduced and
checked (NaN, signals) at log points only (every train.log_every steps, at validation and
checkpoint steps, and at the end), where the clock also syncs the device. Per-step times in
metrics.jsonl are the mean step time of their log window.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import platform
import resource
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from speedlab.data.shards import SplitReader, load_split
from speedlab.files import atomic_path, write_json
from speedlab.train import (
    checkpoint,
    distributed,
    export,
    hellaswag_eval,
    precision,
    quantize,
    tracking,
)
from speedlab.train.batches import Batches
from speedlab.train.checkpoint import StopFlag
from speedlab.train.flops import flops_per_token
from speedlab.train.models import build_model
from speedlab.train.optim import Muon, apply_schedules, build_optimizers
from speedlab.train.provenance import git_state
from speedlab.train.validation import autocast, device_of, evaluate, val_slice

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


@dataclass
class Run:
    """What one training run is made of, built once by set_up."""

    cfg: dict
    seed: int
    world: distributed.World
    model: nn.Module  # the plain module: checkpoints, after_step, state dicts
    core: nn.Module  # the model, torch.compile'd when training is compiled: validation uses it
    ddp: nn.Module  # DDP around core with several processes, else core: the loop calls it
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
    compiled: bool = False
    graphs_after_warmup: int | None = None  # dynamo's graph count once warm
    start_tracker: Callable = tracking.starter(None, {}, 0, {})  # train() sets it (--tracking)

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
    pending: list = field(default_factory=list)  # (step, loss on the device, schedule) to flush


class Clock:
    """Training seconds. now() is the host's view (no device sync), for schedules and the cap;
    sync() waits for the device and books the time; restart() leaves out what happened since
    (validation, checkpoints)."""

    def __init__(self, device: torch.device, start_s: float):
        self.device, self.booked = device, start_s
        self.restart()

    def _wait(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def restart(self) -> None:
        self._wait()
        self.t0 = time.perf_counter()

    def now(self) -> float:
        return self.booked + time.perf_counter() - self.t0

    def sync(self) -> float:
        self._wait()
        t = time.perf_counter()
        self.booked, self.t0 = self.booked + t - self.t0, t
        return self.booked


class Metrics:
    """metrics.jsonl, one row per step and per validation; rank 0 writes, every rank keeps them
    (a checkpoint carries the rows so that a resumed run's file is whole)."""

    def __init__(self, path: Path | None):
        self.rows: list[dict] = []
        self.file = None
        self.tracker = tracking.OFF  # rank 0's tracker, started by resume()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(path, "w")  # noqa: SIM115 - written through the loop

    def record(self, **row) -> None:
        self.rows.append(row)
        if self.file:
            self.file.write(json.dumps(row) + "\n")
            self.file.flush()
        self.tracker.log_row(row)

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
    track: dict | None = None,
) -> dict:
    """Train one (config, seed) and write its outputs; returns the summary (on rank 0, else {}).

    A signal (SIGTERM, SIGUSR1, SIGINT) checkpoints and exits with PREEMPTED_EXIT; the next call
    with the same checkpoint_dir resumes there and ends with the same numbers. `track`: the
    tracking settings (speedlab.train.tracking), None for none.
    """
    out_dir = Path(out_dir)
    run = set_up(cfg, seed, train_manifest, val_manifest, token_bytes, out_dir, checkpoint_dir)
    run.start_tracker = tracking.starter(track, meta, seed, cfg)
    summary = {}
    try:
        warm_up(run)
        progress = train_loop(run, resume(run))
        if run.world.main:  # rank 0 alone writes the outputs
            inputs = {"train": train_manifest, "val": val_manifest, "token_bytes": token_bytes}
            summary = write_outputs(run, progress, meta, out_dir, inputs)
        run.world.barrier()
        score_roundtrip(run, progress, out_dir)
    finally:
        run.stop.restore()
        run.log.tracker.finish(exit_code=1)  # only if it was left unfinished (an error)
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
    else:
        precision.set_cuda_math(tcfg["arithmetic"])
    table = np.load(token_bytes)
    vocab_size = padded_vocab(table.shape[1], mcfg["vocab_size"])
    model = build_model(mcfg, vocab_size).to(world.device)
    precision.cast_model(model, tcfg["arithmetic"], mcfg["kind"])
    # The global batch is fixed by the config; the GPU count only changes how it is split into
    # per-rank micro-batches and accumulation steps, so results do not depend on the world size.
    split = micro_batches(tcfg["batch_seqs"], tcfg["micro_batch_seqs"], world.size)
    compiled = compile_enabled(tcfg["compile"], world.device)
    core = torch.compile(model, dynamic=False, fullgraph=True) if compiled else model
    ddp = core
    if world.size > 1:  # buffers (rotary tables) are the same everywhere: no broadcast
        ids = [world.device.index] if world.device.type == "cuda" else None
        ddp = DDP(core, device_ids=ids, **_no_buffer_sync())
    optimizers = build_optimizers(model, cfg["optim"], tcfg["arithmetic"])
    for opt in optimizers:
        if compiled and isinstance(opt, Muon):
            opt.compile()
    run = Run(
        cfg=cfg,
        seed=seed,
        world=world,
        model=model,
        core=core,
        ddp=ddp,
        optimizers=optimizers,
        batches=Batches(SplitReader(train_manifest), tcfg, split, world.size, seed),
        val_tokens=val_slice(load_split(val_manifest), tcfg["val_tokens"]),
        byte_table=table,
        vocab_size=vocab_size,
        split=split,
        log=Metrics(out_dir / "metrics.jsonl" if world.main else None),
        ckpt_path=Path(checkpoint_dir) / "checkpoint.pt" if checkpoint_dir else None,
        identity=checkpoint.identity(cfg, seed),
        stop=StopFlag(),
        compiled=compiled,
    )
    say_plan(run)
    return run


def _no_buffer_sync() -> dict:
    """DDP's keyword for "no buffer broadcast per forward", in this torch's spelling."""
    import inspect

    newer = "forward_sync_buffers" in inspect.signature(DDP).parameters
    return {"forward_sync_buffers": False} if newer else {"broadcast_buffers": False}


def compile_enabled(setting, device: torch.device) -> bool:
    """train.compile: true, false, or auto (on CUDA only)."""
    return device.type == "cuda" if setting == "auto" else bool(setting)


def say_plan(run: Run) -> None:
    tcfg, (_, accum, micro) = run.cfg["train"], run.split
    wallclock = tcfg["max_wallclock_s"]
    run.say(
        f"model {run.n_params:,} params on {run.world.device} x {run.world.size}; "
        f"{tcfg['steps']} steps x {run.tokens_per_step:,} tokens ({accum} micro-batch(es) of "
        f"{micro} seqs per rank)"
        + (f" or {wallclock:g}s of training" if wallclock else "")
        + f"; train split {run.batches.reader.total:,} tokens ({tcfg['data_order']} order), "
        f"val {len(run.val_tokens) - 1:,} tokens; arithmetic {tcfg['arithmetic']}"
        + ("; compiled" if run.compiled else "")
    )


def warm_up(run: Run) -> None:
    """Compiled runs: train compile_warmup_steps real steps and score one validation batch, so
    every graph is compiled before the clock starts, then put back the initial weights, optimizer
    state and data order (as train_gpt.py's warm-up does). Nothing is logged."""
    n = run.cfg["train"]["compile_warmup_steps"]
    if not run.compiled or n == 0:
        return
    t0 = time.perf_counter()
    weights = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
    states = [copy.deepcopy(opt.state_dict()) for opt in run.optimizers]
    data_order = run.batches.state()
    for step in range(1, n + 1):
        train_step(run, step)
    micro, seq_len = run.split[2], run.cfg["train"]["seq_len"]
    evaluate(run.core, run.val_tokens[: micro * seq_len + 1], run.byte_table, seq_len, micro)
    run.model.load_state_dict(weights)
    for opt, state in zip(run.optimizers, states, strict=True):
        opt.load_state_dict(state)
    run.batches.restore(data_order)
    run.graphs_after_warmup = compiled_graphs()
    run.say(
        f"compile warm-up: {n} steps in {time.perf_counter() - t0:.1f}s (not counted, undone); "
        f"{run.graphs_after_warmup} graph(s)"
    )


def compiled_graphs() -> int:
    """How many graphs dynamo has compiled in this process so far."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def resume(run: Run) -> Progress:
    """Progress from this run's checkpoint if there is one, else step 0 (validated)."""
    state = checkpoint.load(run.ckpt_path, run.identity)
    if run.world.main:  # a new tracker run, or the checkpoint's, continued after its step
        resumed = (state.get("tracker_id"), state["step"]) if state else (None, None)
        run.log.tracker = run.start_tracker(*resumed)
    if state is None:
        return Progress(last_val=validate(run, 0, 0.0))
    run.model.load_state_dict(state["model"])
    for opt, opt_state in zip(run.optimizers, state["optimizers"], strict=True):
        opt.load_state_dict(opt_state)
    checkpoint.set_rng_state(state["rng"], run.world.device)
    run.batches.restore(state["data_rng"])
    for row in state["rows"]:
        run.log.record(**row)
    step, train_time = state["step"], state["train_time"]
    run.say(f"resumed from {run.ckpt_path} at step {step} ({train_time:.1f}s trained)")
    return Progress(step, train_time, state["last_val"], resumed_from=step)


def train_loop(run: Run, p: Progress) -> Progress:
    """From p.step to train.steps, or until the loss is not finite or the time budget is spent.
    A signal saves a checkpoint and exits (SystemExit(PREEMPTED_EXIT)) at the next log point."""
    tcfg = run.cfg["train"]
    steps, wallclock, every = tcfg["steps"], tcfg["max_wallclock_s"], tcfg["checkpoint_every"]
    clock = Clock(run.world.device, p.train_time)
    for step in range(p.step + 1, steps + 1):
        # The schedule: lr warmup and warmdown (by steps or by the clock), weight decay, Muon's
        # momentum warmup; each group scales the targets it carries.
        now = clock.now()
        schedule = apply_schedules(
            run.optimizers, step - 1, steps, run.cfg["optim"], now, wallclock
        )
        schedule["schedule_time_s"] = now  # the training time the schedule saw (host clock)
        p.pending.append((step, train_step(run, step), schedule))
        # Capped runs agree on the cap every step, as train_gpt.py does (ranks' clocks differ).
        out_of_time = bool(wallclock) and run.world.any(clock.now() >= wallclock)[0]
        last = step == steps or out_of_time
        if not (last or is_log_point(step, tcfg)):
            continue
        stopping = flush(run, p, clock)
        if p.diverged:
            break
        if step % tcfg["log_every"] == 0 or last:
            say_progress(run, p)
        if step % tcfg["val_every"] == 0 or last:
            p.last_val = validate(run, step, p.train_time)
            clock.restart()  # validation is not training time (logging is)
        if not last and (stopping or (every and step % every == 0)):
            save_checkpoint(run, p)
            clock.restart()  # nor are checkpoints
            if stopping:
                preempted(run, step)
        if out_of_time:
            run.say(f"max_wallclock_s={wallclock:g} reached at step {step}")
            break
    return p


def is_log_point(step: int, tcfg: dict) -> bool:
    every = (tcfg["log_every"], tcfg["val_every"], tcfg["checkpoint_every"])
    return any(k and step % k == 0 for k in every)


def train_step(run: Run, step: int) -> torch.Tensor:
    """One optimizer step; returns this rank's mean loss, still on the device."""
    loss = forward_backward(run, step)
    clip = run.cfg["optim"]["grad_clip"]
    if clip is not None:  # global-norm clipping over all parameters
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), clip)
    for opt in run.optimizers:
        opt.step()
    run.model.after_step()  # nGPT: weights back onto the unit sphere; GPT: nothing
    run.model.zero_grad(set_to_none=True)
    return loss


def forward_backward(run: Run, step: int) -> torch.Tensor:
    """Gradients of this rank's share of the step's global batch, in micro-batches; returns the
    mean loss (this rank's). Gradients are all-reduced once, on the last micro-batch."""
    world, accum = run.world, run.split[1]
    loss_sum = torch.zeros((), device=world.device)
    for i in range(accum):
        batch = run.batches.get(step - 1, i, world.rank)
        x, y = (torch.from_numpy(a).to(world.device) for a in batch)
        sync = i == accum - 1 or world.size == 1
        with contextlib.nullcontext() if sync else run.ddp.no_sync(), autocast(world.device):
            loss = run.ddp(x, y)
        (loss * (1.0 / accum)).backward()
        loss_sum += loss.detach()
    return loss_sum / accum


def flush(run: Run, p: Progress, clock: Clock) -> bool:
    """At a log point: one host sync for the losses since the last one (mean over ranks) and the
    stop flag; their rows, with the window's mean step time; the first non-finite loss ends the
    run as diverged. Returns whether any rank was signalled to stop."""
    start = p.train_time
    p.train_time = clock.sync()
    steps, losses, schedules = zip(*p.pending, strict=True)
    flag = torch.tensor([float(bool(run.stop))], device=run.world.device)
    *values, stop = run.world.mean(torch.cat([torch.stack(losses).float(), flag]))
    step_s = (p.train_time - start) / len(steps)
    p.pending.clear()
    for k, (step, loss, schedule) in enumerate(zip(steps, values, schedules, strict=True)):
        p.step, p.train_loss = step, loss
        record_step(run, p, schedule, start + (k + 1) * step_s, step_s)
        if not math.isfinite(loss):  # the run is recorded as having diverged at this step
            p.diverged = True
            run.say(f"step {step}: loss is {loss}; stopping at step {steps[-1]} (diverged)")
            break
    return stop > 0


def record_step(run: Run, p: Progress, schedule: dict, time_s: float, step_s: float) -> None:
    run.log.record(
        step=p.step,
        tokens=p.step * run.tokens_per_step,
        time_s=time_s,
        train_loss=p.train_loss,
        **schedule,
        step_ms=1000 * step_s,
        tok_s=run.tokens_per_step / step_s if step_s > 0 else None,
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


def validate(run: Run, step: int, train_time: float) -> dict:
    """Every rank scores its slice of the validation tokens (compiled when training is), the
    sums are all-reduced; rank 0 logs the result."""
    v = score(run)
    run.log.record(step=step, tokens=step * run.tokens_per_step, time_s=train_time, **v)
    steps = run.cfg["train"]["steps"]
    run.say(f"step {step}/{steps} val_loss {v['val_loss']:.4f} val_bpb {v['val_bpb']:.4f}")
    return v


def score(run: Run) -> dict:
    """val_loss and val_bpb of the current weights, in micro-batch-sized batches."""
    micro, seq_len = run.split[2], run.cfg["train"]["seq_len"]
    return evaluate(
        run.core, run.val_tokens, run.byte_table, seq_len, micro, run.world, tail=run.model
    )


def save_checkpoint(run: Run, p: Progress) -> None:
    """Rank 0 writes the checkpoint; all wait for it. Every rank holds the same weights, but
    each only its share of Muon's momentum (the split), which is gathered first."""
    if run.ckpt_path is None:
        return
    states = [
        o.full_state_dict() if isinstance(o, Muon) else o.state_dict() for o in run.optimizers
    ]
    if run.world.main:
        state = {
            "identity": run.identity,
            "step": p.step,
            "train_time": p.train_time,
            "last_val": p.last_val,
            "rows": run.log.rows,
            "model": run.model.state_dict(),
            "optimizers": states,
            "rng": checkpoint.rng_state(run.world.device),
            "data_rng": run.batches.state(),
            "tracker_id": run.log.tracker.run_id,  # the resumed run continues this tracker run
        }
        checkpoint.save(run.ckpt_path, state)
    run.world.barrier()


def preempted(run: Run, step: int) -> None:
    """Leave after a signal, with the exit status a job killed by SIGTERM reports."""
    done = "checkpoint saved" if run.ckpt_path else "nothing saved (no --checkpoint-dir)"
    run.say(f"{signal.Signals(run.stop.signal).name}: {done} at step {step}; exiting")
    run.log.tracker.finish(exit_code=checkpoint.PREEMPTED_EXIT)
    distributed.teardown(run.world)
    raise SystemExit(checkpoint.PREEMPTED_EXIT)


def write_outputs(run: Run, p: Progress, meta: dict, out_dir: Path, inputs: dict) -> dict:
    """metrics.jsonl closed, then model.pt, summary.json, provenance.json; the checkpoint goes."""
    run.log.close()
    summary = _summary(run, p, meta)
    summary.update(hellaswag_eval.maybe_score(run.model, run.cfg, inputs["train"]))
    ckpt = {
        "model": run.model.state_dict(),
        "config": run.cfg,
        "vocab_size": run.vocab_size,
        "final": summary,
    }
    with atomic_path(out_dir / "model.pt") as tmp:
        torch.save(ckpt, tmp)
    export_weights(run, out_dir, inputs["train"])
    write_json(out_dir / "summary.json", summary)
    run.log.tracker.log_summary(summary)
    write_json(out_dir / "provenance.json", _provenance(run, p, meta, inputs))
    return summary


def score_roundtrip(run: Run, p: Progress, out_dir: Path) -> None:
    """The int8+zlib export of the final weights, reloaded and validated on the training
    device(s) by every rank, as train_gpt.py ends; rank 0 writes roundtrip.json. The checkpoint
    goes only then: a job stopped before this point retrains nothing on its rerun."""
    t0 = time.perf_counter()
    state = run.model.state_dict()
    packed, blob = quantize.export(state, run.cfg["quant"])
    raw_bytes = quantize.state_bytes(state) if run.world.main else None  # before the reload
    run.model.load_state_dict(quantize.dequantize_state(quantize.decompress(blob)))
    q = score(run)
    if run.world.main:
        result = quantize.result(packed, blob, raw_bytes, q, p.last_val)
        result["eval_time_s"] = time.perf_counter() - t0
        write_json(out_dir / "roundtrip.json", result)
        run.say(quantize.describe(result))
        run.log.tracker.log_summary(result)
        run.log.tracker.finish()
        if run.ckpt_path:
            run.ckpt_path.unlink(missing_ok=True)  # the run is complete: model.pt supersedes it


def export_weights(run: Run, out_dir: Path, train_manifest) -> None:
    """model.safetensors and config.json for other tools (speedlab.train.export). A bare GPU
    image without safetensors gets a warning instead: `speedlab export` writes them later."""
    try:
        import safetensors  # noqa: F401
    except ImportError:
        run.say("warning: safetensors is not installed: no model.safetensors (pip install "
                "safetensors; `speedlab export RUN_DIR OUT` writes it from model.pt)")  # fmt: skip
        return
    config = export.weights_config(run.cfg, run.vocab_size, export.tokenizer_of(train_manifest))
    export.write_weights(run.model, config, out_dir)


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
        "model_flops": fpt * tokens,
        "mfu": mfu(fpt * tokens / p.train_time, device, tcfg["peak_tflops"])
        if p.train_time > 0
        else None,
        "micro_batch_seqs": run.split[2],
        "accumulation_steps": run.split[1],
        "compiled": run.compiled,
        "recompiles_after_warmup": (
            compiled_graphs() - run.graphs_after_warmup
            if run.graphs_after_warmup is not None
            else None
        ),
        **_memory(run),
    }


def _memory(run: Run) -> dict:
    """Peak memory: on a GPU the allocator's peak next to the plan's estimate (to check it),
    on a CPU the process's peak RSS."""
    device = run.world.device
    if device.type != "cuda":
        return {"peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    from speedlab.train import memory, memory_probe  # noqa: F401 - the probe runs in-process

    try:  # a finished run is never lost to its estimate
        estimate = memory.estimate(run.cfg, run.split[2], vocab_size=run.vocab_size)
        estimate_mb = estimate["peak_gb"] * 1e9 / 2**20
    except Exception as e:  # noqa: BLE001 - reported, not raised
        run.say(f"warning: no memory estimate for the summary: {e}")
        estimate_mb = None
    return {
        "peak_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20,
        "peak_memory_reserved_mb": torch.cuda.max_memory_reserved(device) / 2**20,
        "peak_memory_estimate_mb": estimate_mb,
    }


def _provenance(run: Run, p: Progress, meta: dict, inputs: dict) -> dict:
    device = run.world.device
    return {
        **meta,
        "seed": run.seed,
        "config_hash": run.identity["config_hash"],
        "config": run.cfg,
        "inputs": {k: str(v) for k, v in inputs.items()},
        **git_state(),
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
    p.add_argument("--tracking", default="", help="tracking settings as JSON (default: none)")
    args = p.parse_args(argv)
    try:
        track = tracking.parse(args.tracking)
    except ValueError as e:
        p.error(str(e))
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
        track,
    )
    if s:  # rank 0
        print(
            f"done: val_bpb {s['val_bpb']:.4f} after {s['steps']} steps, {s['train_time_s']:.1f}s"
        )


if __name__ == "__main__":
    main()
