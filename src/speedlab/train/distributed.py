"""torchrun / DDP plumbing: the world comes from the environment torchrun sets, nothing else.

With WORLD_SIZE unset (a plain `python -m speedlab.train.loop`) everything here is a no-op, so the
single-process path stays the reference the multi-process path is compared with.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def any(self, *flags: bool) -> list[bool]:
        """Element-wise OR of flags over all ranks, so every rank takes the same decision."""
        if self.size == 1:
            return list(flags)
        t = torch.tensor([float(f) for f in flags], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return [bool(v) for v in t.tolist()]

    def mean(self, values: torch.Tensor) -> list[float]:
        """The mean over ranks of each element, as Python floats (one host sync)."""
        values = values.detach().clone()
        if self.size > 1:
            dist.all_reduce(values, op=dist.ReduceOp.SUM)
            values /= self.size  # gloo has no AVG; SUM then divide is the same on NCCL
        return values.flatten().tolist()

    def sum_(self, values: torch.Tensor) -> None:
        """All-reduce SUM in place (nothing with one process)."""
        if self.size > 1:
            dist.all_reduce(values, op=dist.ReduceOp.SUM)


def setup(device: torch.device) -> World:
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World(device=device)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return World(rank=rank, size=size, device=device)


def teardown(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()
