"""Newton-Schulz work per rank when Muon is split across 1, 2 and 4 processes (issue 12, item 11).

    python scripts/bench_ns.py [--worlds 1 2 4] [--repeats 3] [--arithmetic parameter_golf]

builds parameter-golf's 9x512 baseline (vocab 1024, heads 8/4, MLP x2: 54 Muon matrices), gives
it seeded synthetic gradients and, for each world size, starts that many gloo processes on the
CPU with one thread each. Every rank times:

- ns: Newton-Schulz on the matrices it owns (matrix i goes to rank i % world, as Muon assigns
  them), wall-clock and the process's CPU time;
- step: a whole Muon step (momentum, its orthogonalizations, the one all-gather, every update),
  wall-clock and CPU time.

It prints the slowest rank's median of each, and the ratio against the 1-process run measured in
the same invocation (ideal: 1 / world). CPU time is the fair measure of the work share when the
machine has fewer cores than processes; wall time then includes waiting for a core.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from speedlab.train.models.gpt import GPT  # noqa: E402
from speedlab.train.optim import CONTROL_NAMES, Muon, newton_schulz5  # noqa: E402


def muon_for_baseline(arithmetic: str) -> Muon:
    """Muon over the 9x512 baseline's block matrices, one group per layer, with gradients."""
    torch.manual_seed(0)
    model = GPT(vocab_size=1024, n_layer=9, d_model=512, n_head=8, n_kv_head=4, mlp_mult=2)
    groups = [
        dict(params=[p for n, p in b.named_parameters() if p.ndim == 2 and not is_control(n)])
        for b in model.blocks
    ]
    gen = torch.Generator().manual_seed(1)
    for group in groups:
        for p in group["params"]:
            p.grad = torch.randn(p.shape, generator=gen)
    return Muon(groups, lr=0.04, momentum=0.95, arithmetic=arithmetic)


def is_control(name: str) -> bool:
    """Gains and mixes (resid_mix is 2-D) go to Adam, not Muon, as in build_optimizers."""
    return any(c in name for c in CONTROL_NAMES)


def time_rank(muon: Muon, rank: int, world: int, repeats: int) -> dict:
    """Medians over `repeats` (after one warm-up) of this rank's NS work and of a Muon step."""
    mine = [p for i, (_, p) in enumerate(muon.matrices()) if i % world == rank]
    ns_wall, ns_cpu, step_wall, step_cpu = [], [], [], []
    for r in range(repeats + 1):
        w0, c0 = time.perf_counter(), time.process_time()
        for p in mine:
            newton_schulz5(p.grad, 5, arithmetic=muon.arithmetic)
        w1, c1 = time.perf_counter(), time.process_time()
        if world > 1:
            dist.barrier()
        s0, t0 = time.perf_counter(), time.process_time()
        muon.step()
        s1, t1 = time.perf_counter(), time.process_time()
        if r:  # the first round warms up
            ns_wall.append(w1 - w0)
            ns_cpu.append(c1 - c0)
            step_wall.append(s1 - s0)
            step_cpu.append(t1 - t0)
    return dict(
        matrices=len(mine),
        ns_wall=statistics.median(ns_wall),
        ns_cpu=statistics.median(ns_cpu),
        step_wall=statistics.median(step_wall),
        step_cpu=statistics.median(step_cpu),
    )


def worker(rank: int, world: int, port: int, args, out: str) -> None:
    torch.set_num_threads(1)
    if world > 1:
        dist.init_process_group(
            "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
        )
    try:
        result = time_rank(muon_for_baseline(args.arithmetic), rank, world, args.repeats)
        torch.save(result, f"{out}/w{world}_r{rank}.pt")
    finally:
        if world > 1:
            dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_world(world: int, args, out: str) -> dict:
    """The slowest rank's numbers for one world size."""
    mp.start_processes(
        worker, args=(world, free_port(), args, out), nprocs=world, start_method="spawn"
    )
    ranks = [torch.load(f"{out}/w{world}_r{r}.pt") for r in range(world)]
    slowest = {k: max(r[k] for r in ranks) for k in KEYS}
    return dict(slowest, matrices=[r["matrices"] for r in ranks])


KEYS = ("ns_wall", "ns_cpu", "step_wall", "step_cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worlds", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--arithmetic", choices=["fp32", "parameter_golf"], default="parameter_golf"
    )
    args = parser.parse_args()
    print(
        f"Muon Newton-Schulz per rank, 9x512 baseline (54 matrices), {args.arithmetic} "
        f"arithmetic, gloo on {os.cpu_count()} CPU core(s), 1 thread per process, "
        f"median of {args.repeats}"
    )
    with tempfile.TemporaryDirectory() as out:
        results = {world: run_world(world, args, out) for world in args.worlds}
    base = results[args.worlds[0]]
    print(f"seconds (slowest rank); ratio = against world={args.worlds[0]}, ideal 1/world")
    print("world  matrices/rank" + "".join(f"  {k:>9}  ratio" for k in KEYS))
    for world, r in results.items():
        shares = "/".join(str(m) for m in r["matrices"])
        cells = "".join(f"  {r[k]:9.3f}  {r[k] / base[k]:5.3f}" for k in KEYS)
        print(f"{world:5d}  {shares:>13}{cells}")


if __name__ == "__main__":
    main()
