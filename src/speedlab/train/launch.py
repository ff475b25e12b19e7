"""How a training run is started: one process, torchrun on one node, or srun + torchrun on many.

The rule's shell line is `{launcher} -m speedlab.train.loop ...`; `launcher()` gives the part
before `-m`. One GPU (or the CPU): plain `python`. Several GPUs on one node: torchrun
--standalone, which makes the processes. Several nodes (train.nodes > 1): this module, twice:

1. In the job's first step, on the allocation's first node, `python -m speedlab.train.launch
   --nodes N --nproc-per-node P --` checks that it runs inside a SLURM allocation of at least N
   nodes and replaces itself with `srun --overlap --nodes N --ntasks-per-node 1`: one task per
   node. `--overlap` is needed because the job's command already runs inside a step (the SLURM
   plugin wraps it in `srun -n1`), which holds the first node's CPUs: without it the new step
   waits for them forever.
2. Each task runs `python -m speedlab.train.launch node ...`, which replaces itself with torchrun
   --nnodes N --nproc-per-node P and a c10d rendezvous on the first node (its host name from
   `scontrol show hostnames`, a port from the job id, the job id as rendezvous id). The task on
   the first node hosts the rendezvous store (is_host=1), the others join it; torchrun then
   numbers the processes and the run is the same DDP run as on one node.

P is train.gpus, or 1 for a CPU run (gloo). The global batch is fixed whatever the world size,
so a run's numbers do not depend on how its processes are placed (tests/test_two_node.py).

Standard library only: the Snakefile calls launcher() while it plans, without torch.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

RDZV_PORT_BASE = 29500  # the port is this + job id % 1000: two jobs on one node do not clash


class LaunchError(RuntimeError):
    pass


def processes_per_node(gpus: int) -> int:
    return max(gpus, 1)


def launcher(nodes: int, gpus: int) -> str:
    """The command that precedes `-m speedlab.train.loop ...` in the training rule."""
    if nodes > 1:
        return (
            f"python -m speedlab.train.launch --nodes {nodes}"
            f" --nproc-per-node {processes_per_node(gpus)} --"
        )
    if gpus <= 1:
        return "python"
    return f"python -m torch.distributed.run --standalone --nproc-per-node={gpus}"


def allocation_hosts(env: dict, nodes: int) -> list[str]:
    """The first `nodes` hosts of the SLURM allocation this process runs in."""
    if not env.get("SLURM_JOB_ID"):
        raise LaunchError(
            f"train.nodes={nodes}: a run on more than one node needs a SLURM allocation of "
            f"{nodes} nodes (submit it with --profile profiles/slurm, or run snakemake inside "
            f"`salloc --nodes {nodes}`); SLURM_JOB_ID is not set here"
        )
    # The job's nodes from the controller: inside the step that runs the job's command
    # (the SLURM plugin's `srun -n1`), SLURM_JOB_NODELIST names that step's one node.
    job = env["SLURM_JOB_ID"]
    nodelist = command(["squeue", "-h", "-j", job, "-o", "%N"], env).strip()
    listed = command(["scontrol", "show", "hostnames", nodelist], env).split()
    if len(listed) < nodes:
        raise LaunchError(
            f"train.nodes={nodes}: SLURM job {job} has {len(listed)} node(s) "
            f"({', '.join(listed)}); the job must ask for --nodes={nodes}"
        )
    return listed[:nodes]


def command(args: list[str], env: dict) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True, env=env).stdout


def job_env(env: dict) -> dict:
    """The environment for srun: the job's identity, without the current step's SLURM_*
    variables (its one node, one task, CPUs), which srun would take as the allocation ("Only
    allocated 1 nodes asked for 2"); srun then asks the controller for the job's nodes."""
    keep = {"SLURM_JOB_ID", "SLURM_JOBID", "SLURM_CONF", "SLURM_CLUSTER_NAME"}
    return {k: v for k, v in env.items() if not k.startswith("SLURM_") or k in keep}


def rendezvous_port(job_id: str) -> int:
    return RDZV_PORT_BASE + int(job_id) % 1000


def srun_command(hosts: list[str], nproc: int, job_id: str, program: list[str]) -> list[str]:
    """Stage 1: one task per node, each starting that node's torchrun (stage 2)."""
    endpoint = f"{hosts[0]}:{rendezvous_port(job_id)}"
    n = len(hosts)
    return [
        "srun", "--overlap", f"--nodes={n}", f"--ntasks={n}", "--ntasks-per-node=1",
        f"--nodelist={','.join(hosts)}", "--kill-on-bad-exit=1",
        sys.executable, "-m", "speedlab.train.launch", "node", f"--nnodes={n}",
        f"--nproc-per-node={nproc}", f"--endpoint={endpoint}", f"--rdzv-id={job_id}",
        "--", *program,
    ]  # fmt: skip


def torchrun_command(
    nnodes: int, nproc: int, endpoint: str, rdzv_id: str, is_host: bool, program: list[str]
) -> list[str]:
    """Stage 2: this node's torchrun; the first node's hosts the c10d store."""
    return [
        sys.executable, "-m", "torch.distributed.run", f"--nnodes={nnodes}",
        f"--nproc-per-node={nproc}", "--rdzv-backend=c10d", f"--rdzv-endpoint={endpoint}",
        f"--rdzv-id={rdzv_id}", f"--rdzv-conf=is_host={int(is_host)}", *program,
    ]  # fmt: skip


def hosts_rendezvous(env: dict, endpoint: str) -> bool:
    """Is this task on the first node, the one named in the endpoint?"""
    node = env.get("SLURMD_NODENAME")
    if node:
        return node == endpoint.rsplit(":", 1)[0]
    return env.get("SLURM_NODEID") == "0"


def options(args: list[str]) -> tuple[dict, list[str]]:
    """`--key=value` / `--key value` options before `--`, and the program after it."""
    if "--" not in args:
        raise LaunchError("usage: python -m speedlab.train.launch [node] OPTIONS -- PROGRAM...")
    cut = args.index("--")
    opts, it = {}, iter(args[:cut])
    for arg in it:
        key, _, value = arg.removeprefix("--").partition("=")
        opts[key] = value or next(it)
    return opts, args[cut + 1 :]


def main(argv: list[str] | None = None, env: dict | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    env = dict(os.environ) if env is None else env
    node = bool(argv) and argv[0] == "node"
    opts, program = options(argv[1:] if node else argv)
    if node:
        cmd = torchrun_command(
            int(opts["nnodes"]), int(opts["nproc-per-node"]), opts["endpoint"], opts["rdzv-id"],
            hosts_rendezvous(env, opts["endpoint"]), program,
        )  # fmt: skip
    else:
        nodes = int(opts["nodes"])
        hosts = allocation_hosts(env, nodes)
        cmd = srun_command(hosts, int(opts["nproc-per-node"]), env["SLURM_JOB_ID"], program)
        env = job_env(env)
    print(f"launch on {socket.gethostname()}:", " ".join(cmd), flush=True)
    os.execvpe(cmd[0], cmd, env)


if __name__ == "__main__":
    try:
        main()
    except LaunchError as e:
        sys.exit(f"speedlab.train.launch: {e}")
