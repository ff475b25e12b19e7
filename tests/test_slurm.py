"""The workflow on a real SLURM: the one-node cluster of scripts/slurm/local-cluster.sh.

The fixture starts the cluster (installing Debian's slurm-wlm and munge if needed: root only).
Where that is impossible the tests are skipped, unless SPEEDLAB_REQUIRE_SLURM=1 (CI sets it):
then they fail.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO, external_study, smoke_quickstart_config, snakemake_cmd

CLUSTER = REPO / "scripts" / "slurm" / "local-cluster.sh"
PROFILE = REPO / "profiles" / "slurm"
pytestmark = pytest.mark.slow  # a SLURM cluster


def start_cluster(*args: str) -> str:
    """`local-cluster.sh start ARGS`; a cluster that does not start skips the tests, or fails
    them where SPEEDLAB_REQUIRE_SLURM=1 (CI). Returns the script's log (stderr)."""
    done = subprocess.run(["bash", str(CLUSTER), "start", *args], capture_output=True, text=True)
    if done.returncode:
        message = f"local SLURM cluster ({' '.join(args) or 'one node'}) did not start:\n"
        message += done.stderr[-3000:]
        if os.environ.get("SPEEDLAB_REQUIRE_SLURM") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return done.stderr


@pytest.fixture(scope="module")
def cluster():
    return start_cluster()


@pytest.fixture(scope="module")
def env():
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env["PATH"]
    return env


def smoke_config(workdir: Path, **study) -> Path:
    config = smoke_quickstart_config()
    if study:
        config["studies"] = {"fault": study}
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run(cmd, env, ok=True, timeout=900):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if ok:
        assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    return p


def test_quickstart_completes_through_slurm(cluster, env, tmp_path):
    smoke_config(tmp_path)
    t0 = time.monotonic()
    p = run(snakemake_cmd(tmp_path, "--profile", str(PROFILE)), env)
    wall = time.monotonic() - t0
    log = p.stdout + p.stderr
    study = tmp_path / "results/studies/quickstart"
    assert (study / "report.html").stat().st_size > 10_000
    runs = sorted((tmp_path / "results/runs/quickstart").glob("*/seed*/provenance.json"))
    assert len(runs) == 6
    job_ids = {json.loads(p.read_text())["slurm_job_id"] for p in runs}
    assert None not in job_ids and len(job_ids) == 6  # every training run was its own job
    submitted = log.count("has been submitted with SLURM jobid")
    # the data jobs one by one, the 6 training runs (each scoring its roundtrip) as one array
    # (test_slurm_arrays.py); the analysis is local
    assert submitted >= 4 and log.count("The individual task IDs are 1-6.") == 1
    stats = pd.read_csv(study / "stats.csv")
    assert set(stats["condition"]) == {"uniform", "layerwise"}
    print(f"smoke quickstart through SLURM: {wall:.0f} s, {submitted} SLURM jobs")


def test_an_external_trainer_study_runs_through_slurm(cluster, env, tmp_path):
    """The external script's runs are SLURM jobs like speedlab's (one each, their job id in
    provenance); the study reaches its report."""
    config = smoke_quickstart_config()
    config["studies"] = {"external": external_study()}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    run(snakemake_cmd(tmp_path, "--profile", str(PROFILE)), env)
    study = tmp_path / "results/studies/external"
    assert (study / "report.html").stat().st_size > 10_000
    runs = sorted((tmp_path / "results/external/external").glob("*/seed*/provenance.json"))
    assert len(runs) == 4
    job_ids = {json.loads(p.read_text())["slurm_job_id"] for p in runs}
    assert None not in job_ids and len(job_ids) == 4
    table = pd.read_parquet(study / "runs.parquet")
    assert set(table["source"]) == {"command"} and table["q_val_bpb"].notna().all()
    assert set(table["slurm_job_id"]) == job_ids


def test_scancelled_run_resumes_from_its_checkpoint(cluster, env, tmp_path):
    """scancel a training job mid-way (SIGTERM: the trainer checkpoints and exits 143); the
    next snakemake resumes it, and the result equals an undisturbed run of the same config."""
    study = {
        "baseline": "long",
        "seeds": [0],
        "conditions": {
            "long": {"train.steps": 300, "train.checkpoint_every": 10, "train.val_every": 100}
        },
    }
    run_files = "results/runs/fault/long/seed0"
    reference = tmp_path / "reference"
    reference.mkdir()
    smoke_config(reference, **study)
    run(snakemake_cmd(reference, "--cores", "2", f"{run_files}/summary.json"), env)

    work = tmp_path / "work"
    work.mkdir()
    smoke_config(work, **study)
    target = f"{run_files}/summary.json"
    cmd = snakemake_cmd(work, "--profile", str(PROFILE), "--retries", "0", target)
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    checkpoint = work / "results/checkpoints/fault/long/seed0/checkpoint.pt"
    deadline = time.monotonic() + 600
    while not checkpoint.exists():
        assert first.poll() is None, first.stdout.read().decode()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.2)

    # Meanwhile a second snakemake on the same directory is refused by the lock.
    # (--rerun-incomplete, or it stops earlier, at the first run's incomplete outputs)
    second = run(snakemake_cmd(work, "--cores", "1", "--rerun-incomplete", target), env, ok=False)
    assert second.returncode != 0 and "LockException" in second.stdout + second.stderr

    jobs = subprocess.run(
        ["squeue", "-h", "-o", "%i %j %T"], capture_output=True, text=True, check=True
    ).stdout
    running = [line.split()[0] for line in jobs.splitlines() if "RUNNING" in line]
    assert len(running) == 1, jobs
    subprocess.run(["scancel", running[0]], check=True)
    out, _ = first.communicate(timeout=300)
    assert first.returncode != 0, out.decode()[-3000:]  # the job failed, no retry allowed
    assert checkpoint.exists() and not (work / run_files / "summary.json").exists()

    run(snakemake_cmd(work, "--profile", str(PROFILE), target), env)
    provenance = json.loads((work / run_files / "provenance.json").read_text())
    assert provenance["resumed_from_step"] >= 10 and provenance["slurm_job_id"] != running[0]
    assert not checkpoint.exists()  # the finished run supersedes it

    def metrics(d):
        rows = [json.loads(line) for line in (d / run_files / "metrics.jsonl").open()]
        return [
            {
                k: v
                for k, v in r.items()
                if k not in ("time_s", "step_ms", "tok_s", "schedule_time_s")
            }
            for r in rows
        ]

    assert metrics(work) == metrics(reference)


def test_bad_resources_stop_before_submission(cluster, env, tmp_path):
    smoke_config(tmp_path)
    p = run(
        snakemake_cmd(tmp_path, "--profile", str(PROFILE), "-n", "--set-resources")
        + ["train_run:runtime=-5"],
        env,
        ok=False,
    )
    assert p.returncode != 0
    assert "Resource 'runtime' was given value '-5'" in p.stdout + p.stderr
    queue = subprocess.run(["squeue", "-h"], capture_output=True, text=True, check=True).stdout
    assert queue.strip() == ""  # nothing was submitted
