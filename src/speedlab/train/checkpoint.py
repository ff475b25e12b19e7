"""Preemption-safe training: periodic checkpoints, and SIGTERM/SIGUSR1/SIGINT saving before exit.

SLURM sends SIGTERM (or the --signal of the job, often SIGUSR1) some time before it kills or
requeues a job; Ctrl-C sends SIGINT. The handler only raises a flag; the training loop reads it
at the next log point (train.log_every steps: there is no host sync per step), saves and exits
with PREEMPTED_EXIT, and the next start of the same run resumes from the file. A checkpoint
written for another config or seed is never resumed. It also carries the run's tracker run id
(`tracker_id`, speedlab.train.tracking), so a resumed run continues the same tracker run.

Under torchrun, Ctrl-C reaches the agent, which forwards the same signal to every worker (each
runs in its own session) and kills those still running 30 s later. The ranks get it at slightly
different moments, so they agree on stopping after the same step (World.any); rank 0 writes the
checkpoint and the others wait for it at a barrier.
"""

from __future__ import annotations

import signal
from pathlib import Path

import torch

from speedlab.files import atomic_path, config_hash

PREEMPTED_EXIT = 143  # 128 + SIGTERM: what a job killed by SIGTERM reports anyway


class StopFlag:
    """Set by SIGTERM / SIGUSR1 / SIGINT; checked by the training loop between steps.

    A SIGINT that the process was started ignoring (a background job of a non-interactive
    shell) stays ignored.
    """

    def __init__(self):
        self.signal: int | None = None
        self.previous = {}
        for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT):
            if sig != signal.SIGINT or signal.getsignal(sig) is not signal.SIG_IGN:
                self.previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self.signal = signum

    def restore(self) -> None:
        """The handlers from before (e.g. Ctrl-C interrupting the caller's session again)."""
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def __bool__(self) -> bool:
        return self.signal is not None


def save(path: Path, state: dict) -> None:
    """Atomic: a kill during the write leaves the previous checkpoint intact."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


# Where the processes run (train.nodes x train.gpus) changes no number (the global batch is fixed,
# rank 0 saves every state whole): a checkpoint resumes on any node set, so these keys are left
# out of what it must match. Nor does it hold a host name or a rank.
PLACEMENT_KEYS = ("nodes", "gpus")
RESUME_KEYS = ("resume_hash", "seed")


def identity(cfg: dict, seed: int) -> dict:
    """The run's identity: its config's hash, its seed, and the hash that resuming checks."""
    placed = {**cfg, "train": {k: v for k, v in cfg["train"].items() if k not in PLACEMENT_KEYS}}
    return {"config_hash": config_hash(cfg), "seed": seed, "resume_hash": config_hash(placed)}


def load(path: Path | None, identity: dict) -> dict | None:
    """The checkpoint at `path` if it was written by the run with this identity (up to where the
    processes ran: PLACEMENT_KEYS), else None."""
    if path is None or not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    if any(state["identity"].get(k) != identity[k] for k in RESUME_KEYS):
        print(f"ignoring {path}: written for another config or seed", flush=True)
        return None
    return state


def rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
