"""Runs on two nodes: speedlab.train.launch, and a real two-node SLURM.

The cluster is `scripts/slurm/local-cluster.sh start --nodes 2`: two network namespaces with
their own addresses, one slurmd in each, one slurmctld, munge (scripts/slurm/two-node.sh). The
tests that need it are skipped where it cannot start, unless SPEEDLAB_REQUIRE_SLURM=1 (CI sets
it): then they fail.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_slurm import PROFILE, start_cluster
from test_slurm import run as slurm_run

from conftest import REPO, external_study, smoke_quickstart_config, snakemake_cmd
from speedlab.config import ConfigError, run_config, validate
from speedlab.train import launch

CONF2 = "/etc/slurm-2node/slurm.conf"
STEPS = 60
TIMINGS = ("time_s", "step_ms", "tok_s", "schedule_time_s")


def study(**train) -> dict:
    run = {"train.steps": STEPS, "train.val_every": 20, "train.log_every": 10, **train}
    return {"baseline": "two", "seeds": [0], "conditions": {"two": run, "resumed": run}}


def write_config(workdir: Path, **train) -> dict:
    config = smoke_quickstart_config()
    config["studies"] = {"nodes": study(**train)}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    return config


def env_with(**extra) -> dict:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env["PATH"]
    env["PYTHONPATH"] = str(REPO / "src")
    return {**env, **extra}


def run(cmd, env, ok=True, timeout=600):
    return slurm_run(cmd, env, ok, timeout)


# --- the command lines (no cluster) ---


def test_launcher_per_placement():
    assert launch.launcher(1, 0) == launch.launcher(1, 1) == "python"
    assert launch.launcher(1, 4) == (
        "python -m torch.distributed.run --standalone --nproc-per-node=4"
    )
    assert (
        launch.launcher(2, 0) == "python -m speedlab.train.launch --nodes 2 --nproc-per-node 1 --"
    )
    assert launch.launcher(4, 8).endswith("--nodes 4 --nproc-per-node 8 --")


def test_srun_starts_one_torchrun_per_node_with_a_rendezvous_on_the_first():
    program = ["-m", "speedlab.train.loop", "--seed", "0"]
    srun = launch.srun_command(["gpu-a", "gpu-b"], 8, "1234", program)
    assert srun[:7] == [
        "srun", "--overlap", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1",
        "--nodelist=gpu-a,gpu-b", "--kill-on-bad-exit=1",
    ]  # fmt: skip
    assert "--endpoint=gpu-a:29734" in srun and "--rdzv-id=1234" in srun
    assert srun[-5:] == ["--", *program]
    # what each task runs: its node's torchrun, the first node hosting the store
    opts, rest = launch.options(srun[srun.index("node") + 1 :])
    assert rest == program and opts["nnodes"] == "2" and opts["nproc-per-node"] == "8"
    host = {"SLURMD_NODENAME": "gpu-a"}
    assert launch.hosts_rendezvous(host, opts["endpoint"])
    assert not launch.hosts_rendezvous({"SLURMD_NODENAME": "gpu-b"}, opts["endpoint"])
    assert launch.hosts_rendezvous({"SLURM_NODEID": "0"}, opts["endpoint"])
    cmd = launch.torchrun_command(2, 8, opts["endpoint"], "1234", True, program)
    assert cmd[1:] == [
        "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=8",
        "--rdzv-backend=c10d", "--rdzv-endpoint=gpu-a:29734", "--rdzv-id=1234",
        "--rdzv-conf=is_host=1", *program,
    ]  # fmt: skip


def test_the_inner_srun_sees_the_job_not_the_step():
    env = {"SLURM_JOB_ID": "7", "SLURM_CONF": "/c", "SLURM_NNODES": "1", "SLURM_NTASKS": "1",
           "SLURM_JOB_NODELIST": "n1", "PATH": "/bin", "SRUN_X": "y"}  # fmt: skip
    assert launch.job_env(env) == {"SLURM_JOB_ID": "7", "SLURM_CONF": "/c", "PATH": "/bin",
                                   "SRUN_X": "y"}  # fmt: skip


def test_more_than_one_node_outside_slurm_is_refused_naming_train_nodes():
    env = {k: v for k, v in env_with().items() if not k.startswith("SLURM_")}
    p = run([sys.executable, "-m", "speedlab.train.launch", "--nodes", "2",
             "--nproc-per-node", "1", "--", "-c", "print('ran')"], env, ok=False)  # fmt: skip
    assert p.returncode == 1 and "ran" not in p.stdout
    assert "train.nodes=2" in p.stderr and "SLURM_JOB_ID is not set" in p.stderr
    with pytest.raises(launch.LaunchError, match="usage"):
        launch.options(["--nodes", "2"])


def test_a_checkpoint_identity_leaves_out_where_the_processes_run():
    from speedlab.train.checkpoint import identity

    cfg = run_config(validate(smoke_quickstart_config()), "quickstart", "uniform")
    placed = json.loads(json.dumps(cfg))
    placed["train"].update(nodes=2, gpus=4)
    a, b = identity(cfg, 0), identity(placed, 0)
    assert a["resume_hash"] == b["resume_hash"] and a["config_hash"] != b["config_hash"]
    other = json.loads(json.dumps(cfg))
    other["train"]["steps"] += 1
    assert identity(other, 0)["resume_hash"] != a["resume_hash"]
    assert identity(cfg, 1)["seed"] != a["seed"]


@pytest.mark.slow
def test_the_workflow_asks_slurm_for_the_nodes_and_refuses_a_local_run(tmp_path):
    write_config(tmp_path, **{"train.nodes": 2})
    env = env_with()
    target = "results/runs/nodes/two/seed0/summary.json"
    plan = run(snakemake_cmd(tmp_path, "-n", "-p", target), env).stdout
    assert "python -m speedlab.train.launch --nodes 2 --nproc-per-node 1 -- -m speedlab" in plan
    assert "nodes=2" in plan and "tasks=2" in plan  # --nodes=2 --ntasks=2: a task per node
    # GPUs: per node, as GRES (the plugin's --gpus would count the job's)
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    config["execution"]["gpu_model"] = "h100"
    config["studies"]["nodes"]["conditions"]["two"]["train.gpus"] = 2
    gpus = tmp_path / "gpus.yaml"
    gpus.write_text(yaml.safe_dump(config))
    plan = run(snakemake_cmd(tmp_path, target, "-n", "-p", "--configfile", str(gpus)), env)
    assert "gres=gpu:h100:2" in plan.stdout and "gpu=0" in plan.stdout
    assert "--nodes 2 --nproc-per-node 2 --" in plan.stdout
    local = run(snakemake_cmd(tmp_path, "--cores", "1", target), env, ok=False)
    out = local.stdout + local.stderr
    assert local.returncode != 0 and "studies.nodes.conditions.two: train.nodes=2" in out
    assert "needs SLURM" in out and not (tmp_path / "logs/train_run").exists()


# --- on the two-node cluster ---


@pytest.fixture(scope="module")
def cluster2():
    start_cluster("--nodes", "2")
    return env_with(SLURM_CONF=CONF2)


def metrics(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMINGS} for r in rows]


def torchrun_two_processes(cfg, shards, out, env, checkpoint_dir=None):
    """The same run as 1 node x 2 processes (gloo), started as the one-node launcher does."""
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc-per-node=2", "-m", "speedlab.train.loop", "--config", json.dumps(cfg),
            "--seed", "0", "--train", str(shards / "fineweb_train.json"),
            "--val", str(shards / "fineweb_val.json"),
            "--token-bytes", str(shards / "token_bytes.npy"), "--out-dir", str(out)]  # fmt: skip
    if checkpoint_dir:
        args += ["--checkpoint-dir", str(checkpoint_dir)]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def interrupt_after(proc, metrics_file: Path, step: int, timeout=120):
    """SIGTERM (torchrun passes it to both ranks) once a row past `step` is written."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        rows = metrics_file.read_text().splitlines() if metrics_file.exists() else []
        if any(r.endswith("}") and json.loads(r)["step"] >= step for r in rows):
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=120)
            return
        time.sleep(0.01)
    raise AssertionError(f"run never reached step {step}: {proc.communicate()[0][-3000:]}")


@pytest.mark.slow
def test_two_nodes_give_the_numbers_of_two_processes_on_one_node(cluster2, tmp_path):
    """2 nodes x 1 process (gloo across the namespaces), submitted through the SLURM profile,
    equals 1 node x 2 processes step for step. And a checkpoint of a 1-node x 2-process run
    resumes as a 2-node run with the same result."""
    t0 = time.monotonic()
    config = write_config(tmp_path, **{"train.nodes": 2, "train.checkpoint_every": 10})
    env = env_with()
    shards = tmp_path / "results/shards/fineweb10B-sample_sp1024"
    data = [str((shards / f).relative_to(tmp_path)) for f in
            ("fineweb_train.json", "fineweb_val.json", "token_bytes.npy")]  # fmt: skip
    run(snakemake_cmd(tmp_path, "--cores", "2", *data), env)
    cfg = run_config(validate(config), "nodes", "two")
    one_node = json.loads(json.dumps(cfg))
    one_node["train"]["nodes"] = 1

    reference = torchrun_two_processes(one_node, shards, tmp_path / "ref", env)
    out, _ = reference.communicate(timeout=300)
    assert reference.returncode == 0, out.decode()[-3000:]
    # The `resumed` run starts on one node and is stopped there (checkpoint written, exit 143).
    ckpt = tmp_path / "results/checkpoints/nodes/resumed/seed0"
    first = torchrun_two_processes(one_node, shards, tmp_path / "first", env, ckpt)
    interrupt_after(first, tmp_path / "first/metrics.jsonl", 10)
    assert first.returncode != 0 and (ckpt / "checkpoint.pt").exists()
    t_local = time.monotonic() - t0

    targets = [f"results/runs/nodes/{c}/seed0/summary.json" for c in ("two", "resumed")]
    t1 = time.monotonic()
    run(snakemake_cmd(tmp_path, "--profile", str(PROFILE), *targets), cluster2)
    t_slurm = time.monotonic() - t1

    want = metrics(tmp_path / "ref/metrics.jsonl")
    assert len([r for r in want if "train_loss" in r]) == STEPS
    for condition in ("two", "resumed"):
        run_dir = tmp_path / "results/runs/nodes" / condition / "seed0"
        provenance = json.loads((run_dir / "provenance.json").read_text())
        assert provenance["world_size"] == 2 and provenance["slurm_job_id"]
        assert provenance["config"] == cfg  # the rule's config: train.nodes 2
        log = (tmp_path / f"logs/train_run/nodes/{condition}/seed0.log").read_text()
        # one torchrun per node, each in its own namespace; the first hosts the rendezvous
        assert "launch on sl2n1: srun --overlap --nodes=2" in log
        assert log.count("--rdzv-endpoint=sl2n1:") == 2  # two torchruns, one store
        for node, is_host in (("sl2n1", 1), ("sl2n2", 0)):
            assert f"launch on {node}: " in log and f"is_host={is_host}" in log
        assert metrics(run_dir / "metrics.jsonl") == want, condition  # bitwise
    resumed = json.loads(
        (tmp_path / "results/runs/nodes/resumed/seed0/provenance.json").read_text()
    )
    assert 10 <= resumed["resumed_from_step"] < STEPS
    print(f"two-node test: local runs {t_local:.0f} s, SLURM (2 two-node jobs) {t_slurm:.0f} s")


@pytest.mark.slow
def test_a_job_with_fewer_nodes_is_refused_naming_train_nodes(cluster2):
    p = run(["srun", "--nodes=1", sys.executable, "-m", "speedlab.train.launch",
             "--nodes", "2", "--nproc-per-node", "1", "--", "-c", "print('ran')"],
            cluster2, ok=False, timeout=120)  # fmt: skip
    assert p.returncode != 0 and "ran" not in p.stdout
    assert "train.nodes=2: SLURM job" in p.stderr and "has 1 node(s) (sl2n1)" in p.stderr
    assert "must ask for --nodes=2" in p.stderr


def test_the_memory_plan_splits_the_batch_over_every_node():
    """16 GPUs on two nodes: each process takes batch_seqs / 16 (the micro-batch is chosen for
    that), as the trainer splits it."""
    from speedlab.train import memory

    t = {"batch_seqs": 512, "gpus": 8, "nodes": 2}
    assert memory.per_rank_seqs({"train": t}) == 32 and memory.world_size(t) == 16
    with pytest.raises(ValueError, match="does not split over train.gpus=8 x train.nodes=3"):
        memory.per_rank_seqs({"train": {**t, "nodes": 3}})


def test_a_two_node_plan_counts_every_gpu_and_fits_the_halved_batch(tmp_path, probe_here):
    """The full quickstart on 2 nodes x 8 GPUs: 16 GPUs per run in GPU-hours, and 32
    sequences per process (the micro-batch that fits is chosen for those)."""
    from speedlab.plan import plan_table

    def plan(nodes):
        config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
        config["scale"] = "full"
        config["scales"]["full"]["train.micro_batch_seqs"] = None  # chosen by the memory plan
        config["defaults"]["train"]["nodes"] = nodes
        return plan_table(validate(config), tmp_path).set_index("condition")

    table, single = plan(2), plan(1)
    assert table.loc["uniform", "gpus"] == 16 and single.loc["uniform", "gpus"] == 8
    assert table.loc["uniform", "gpu_hours_pending"] == pytest.approx(
        2 * single.loc["uniform", "gpu_hours_pending"]
    )
    assert table.loc["uniform", "micro_batch"] == 32 and single.loc["uniform", "micro_batch"] == 64


def test_a_command_trainer_on_two_nodes_is_refused_naming_the_key():
    config = smoke_quickstart_config()
    config["studies"] = {"ext": external_study()}
    config["studies"]["ext"]["conditions"]["lr_high"]["train.nodes"] = 2
    with pytest.raises(ConfigError, match=r"studies.ext.conditions.lr_high.train.nodes: 2 nodes"):
        validate(config)
