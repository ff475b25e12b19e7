"""Job arrays on a real SLURM (scripts/slurm/local-cluster.sh): profiles/slurm submits the runs
of a study as one `sbatch --array` (slurm-array-jobs), and scancel of one array task resumes
that run alone.

One snakemake call serves both tests: a 12-run smoke study (2 conditions x 6 seeds) goes out
through the profile while the test watches squeue and the trainers, and scancels one array task
once its trainer has logged 10 steps. The fixtures (cluster start, skip unless
SPEEDLAB_REQUIRE_SLURM=1) are tests/test_slurm.py's.
"""

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from test_slurm import PROFILE, cluster, env, run  # noqa: F401 - fixtures

from conftest import REPO, smoke_quickstart_config, snakemake_cmd
from speedlab.config import ConfigError, load_config, validate
from speedlab.plan import array_rules, array_runtime_minutes, check_array_shapes

STUDY = "arrays"
STEPS = {"a": 40, "b": 150}  # b's runs train long enough to be cancelled mid-way
SEEDS = list(range(6))
SHARDS = "results/shards/fineweb10B-sample_sp1024"


def study_config() -> dict:
    config = smoke_quickstart_config()
    # Planned step time 6 s: a's runtime is 40 x 6 x 1.5 / 60 + 10 = 16 min, b's 32.5 -> 33 min.
    config["plan"]["step_time_s"]["smoke"] = 6
    config["studies"] = {
        STUDY: {
            "baseline": "a",
            "seeds": SEEDS,
            "conditions": {
                "a": {"train.steps": STEPS["a"]},
                "b": {"train.steps": STEPS["b"], "optim.matrix_lr": 0.02},
            },
        }
    }
    return config


def run_dir(work: Path, condition: str, seed: int) -> Path:
    return work / "results/runs" / STUDY / condition / f"seed{seed}"


def trainers(work: Path):
    """(condition, seed, SLURM environment) of each speedlab trainer running in `work`."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            if "speedlab.train.loop" not in args or os.readlink(f"/proc/{pid}/cwd") != str(work):
                continue
            environ = Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
        except OSError:  # it ended meanwhile
            continue
        slurm = dict(v.split("=", 1) for v in environ if v.startswith("SLURM_"))
        yield args[args.index("--condition") + 1], int(args[args.index("--seed") + 1]), slurm


def kill_leftovers(work: Path) -> list[str]:
    """SIGKILL processes still running in `work` (none should be); their command lines."""
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/cwd") != str(work):
                continue
            left.append(Path(f"/proc/{pid}/cmdline").read_bytes().decode()[:200])
            os.kill(int(pid), 9)
        except OSError:
            continue
    return left


def steps_logged(work: Path, condition: str, seed: int) -> int:
    path = run_dir(work, condition, seed) / "metrics.jsonl"
    rows = path.read_text().splitlines() if path.exists() else []
    return max((json.loads(r)["step"] for r in rows if '"train_loss"' in r), default=0)


def cancel_one_task(work: Path) -> dict | None:
    """scancel the array task of the first b run that has trained 10 steps, if there is one.
    Not the array's first task: with plugin 2.8.0 / jobstep 0.6.1 every other task runs inside
    a snakemake started for the first task's job, which then waits for that job's outputs
    (README, SLURM: a known plugin bug), so cancelling it would fail the whole array."""
    for condition, seed, slurm in trainers(work):
        task = slurm.get("SLURM_ARRAY_TASK_ID")
        if condition != "b" or task in (None, slurm.get("SLURM_ARRAY_TASK_MIN", "1")):
            continue
        step = steps_logged(work, condition, seed)
        if step >= 10:
            task = f"{slurm['SLURM_ARRAY_JOB_ID']}_{slurm['SLURM_ARRAY_TASK_ID']}"
            subprocess.run(["scancel", task], check=True)
            return {"condition": condition, "seed": seed, "task": task, "step": step,
                    "job_id": slurm["SLURM_JOB_ID"]}  # fmt: skip
    return None


def squeue_tasks(work: Path) -> list[dict]:
    """Array tasks of jobs run in `work`, one row each (squeue -r; finished ones too): id,
    array job id, task id, job id, time limit."""
    out = subprocess.run(
        ["squeue", "-r", "-h", "-t", "all", "-o", "%i|%F|%K|%A|%l|%Z"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    keys = ("id", "array_job", "task", "job_id", "limit", "dir")
    rows = [dict(zip(keys, line.split("|"), strict=True)) for line in out.splitlines()]
    return [r for r in rows if r["task"] != "N/A" and r["dir"] == str(work)]


@pytest.fixture(scope="module")
def array_run(cluster, env, tmp_path_factory):  # noqa: F811 - cluster, env: test_slurm's
    work = tmp_path_factory.mktemp("arrays")
    (work / "config.yaml").write_text(yaml.safe_dump(study_config()))
    shards = [f"{SHARDS}/fineweb_train.json", f"{SHARDS}/fineweb_val.json"]
    run(snakemake_cmd(work, "--cores", "2", *shards, f"{SHARDS}/token_bytes.npy"), env)

    targets = [
        str(run_dir(work, c, s).relative_to(work) / "summary.json") for c in STEPS for s in SEEDS
    ]
    log = work / "snakemake.log"
    t0 = time.monotonic()
    with log.open("w") as out:
        p = subprocess.Popen(
            snakemake_cmd(work, "--profile", str(PROFILE), *targets),
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        tasks, victim = {}, None
        try:
            while p.poll() is None:
                assert time.monotonic() - t0 < 600, "snakemake did not finish in 10 min"
                tasks.update({r["id"]: r for r in squeue_tasks(work)})
                victim = victim or cancel_one_task(work)
                time.sleep(0.2)
        finally:
            if p.poll() is None:  # the test failed: leave no snakemake or job behind
                p.kill()
                subprocess.run(["scancel", *{t["array_job"] for t in tasks.values()}])
            time.sleep(1)
            left = kill_leftovers(work)
    wall = time.monotonic() - t0
    text = log.read_text()
    assert p.returncode == 0, text[-4000:]
    print(f"12 runs as a SLURM array, one task cancelled and resumed: {wall:.0f} s")
    return {"work": work, "log": text, "tasks": tasks, "victim": victim, "left": left}


def provenance(work: Path, condition: str, seed: int) -> dict:
    return json.loads((run_dir(work, condition, seed) / "provenance.json").read_text())


@pytest.mark.slow
def test_a_study_goes_out_as_one_array(array_run):
    work, tasks, log = array_run["work"], array_run["tasks"], array_run["log"]
    # squeue showed the 12 runs as tasks 1-12 of one array job (<arrayid>_<task>)
    assert {t["array_job"] for t in tasks.values()} == {tasks[next(iter(tasks))]["array_job"]}
    array_job = tasks[next(iter(tasks))]["array_job"]
    assert sorted(int(t["task"]) for t in tasks.values()) == list(range(1, 13))
    assert all(id_ == f"{array_job}_{t['task']}" for id_, t in tasks.items())
    # Every task asked for the longest run's time (b's 33 min), not its first job's.
    assert {t["limit"] for t in tasks.values()} == {"33:00"}
    # Two sbatch calls for 12 training runs: the array, and the cancelled run's retry.
    assert log.count("Submitted array job") == 1
    assert log.count("The individual task IDs are 1-12.") == 1
    plain = [line for line in log.splitlines() if "has been submitted with SLURM jobid" in line]
    assert len([line for line in plain if "rule_train_run" in line]) == 1
    for condition in STEPS:
        for seed in SEEDS:
            summary = json.loads((run_dir(work, condition, seed) / "summary.json").read_text())
            assert summary["steps"] == STEPS[condition]


@pytest.mark.slow
def test_scancel_of_one_array_task_resumes_that_run_alone(array_run):
    work, tasks, log, victim = (array_run[k] for k in ("work", "tasks", "log", "victim"))
    assert victim is not None, "no array task of condition b was caught training"
    task_jobs = {t["job_id"] for t in tasks.values()}
    assert victim["task"] in tasks and victim["job_id"] in task_jobs
    # The cancelled run: SIGTERM -> checkpoint at its step, exit; the retry (a plain job, not an
    # array task) resumed from that checkpoint and trained to the end.
    prov = provenance(work, "b", victim["seed"])
    assert prov["slurm_job_id"] not in task_jobs
    assert victim["step"] <= prov["resumed_from_step"] < STEPS["b"]
    train_log = (work / f"logs/train_run/{STUDY}/b/seed{victim['seed']}.log").read_text()
    assert f"at step {prov['resumed_from_step']}" in train_log
    rows = [json.loads(r) for r in (run_dir(work, "b", victim["seed"]) / "metrics.jsonl").open()]
    assert [r["step"] for r in rows if "train_loss" in r] == list(range(1, STEPS["b"] + 1))
    checkpoint = work / f"results/checkpoints/{STUDY}/b/seed{victim['seed']}/checkpoint.pt"
    assert not checkpoint.exists()  # the finished run supersedes it
    # Every other run trained once, from step 0, as its own task of the array.
    others = [(c, s) for c in STEPS for s in SEEDS if (c, s) != ("b", victim["seed"])]
    job_ids = [provenance(work, c, s)["slurm_job_id"] for c, s in others]
    assert len(set(job_ids)) == 11 and set(job_ids) <= task_jobs
    assert all(provenance(work, c, s)["resumed_from_step"] is None for c, s in others)
    assert log.count("Error in rule train_run") == 1  # the cancelled task only
    assert array_run["left"] == []  # no process of a cancelled task outlived it


def test_array_rules_parse_the_plugin_setting():
    assert array_rules("train_run,run_trainer_command") == {"train_run", "run_trainer_command"}
    assert array_rules(" train_run ; all") == {"train_run", "all"}
    assert array_rules(None) == array_rules("") == set()


def test_arrayed_runs_that_differ_in_gpus_are_refused(tmp_path):
    """The plugin gives an array's tasks its first job's resources: a study whose conditions
    differ in train.gpus cannot share one array, and the error names both conditions."""
    raw = study_config()
    raw["studies"][STUDY]["conditions"]["b"]["train.gpus"] = 2
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw))
    config = validate(load_config(REPO, [tmp_path / "config.yaml"]))
    with pytest.raises(ConfigError) as e:
        check_array_shapes(config, [STUDY], "train_run")
    message = str(e.value)
    assert "studies.arrays.conditions.a: train.gpus=0" in message
    assert "studies.arrays.conditions.b: train.gpus=2" in message
    assert "--slurm-array-jobs=none" in message
    with pytest.raises(ConfigError):
        array_runtime_minutes(config, [STUDY], "train_run")


def test_an_arrayed_run_asks_for_the_longest_runtime(tmp_path):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(study_config()))
    config = validate(load_config(REPO, [tmp_path / "config.yaml"]))
    assert array_runtime_minutes(config, [STUDY], "train_run") == 33  # b's; a alone: 16
    assert array_runtime_minutes(config, [STUDY], "train_run", attempt=2) == 66
