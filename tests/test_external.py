"""External trainers (trainer.kind: command): templates, the run of a real script, its failures,
preemption restarts, git sources, and the config checks."""

import copy
import json
import subprocess
import sys

import golden_pg
import pytest
import yaml

from conftest import EXTERNAL_TRAINER, REPO, external_study
from speedlab.config import ConfigError, run_config, validate
from speedlab.train import external


def command_config(**trainer) -> dict:
    """A resolved run config of the external test study, with trainer overrides."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    study = external_study()
    study["trainer"].update(trainer)
    config["studies"] = {"ext": study}
    validate(config)
    return run_config(config, "ext", "lr_high")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return golden_pg.write_data(tmp_path_factory.mktemp("shards"))["train"].parent


def run(tmp_path, data, cfg=None, seed=3, metric="q_val_bpb"):
    cfg = cfg or command_config()
    paths = {"out_dir": str(tmp_path / "out"), "work_dir": str(tmp_path / "work"),
             "source": str(EXTERNAL_TRAINER), "data_dir": str(data)}  # fmt: skip
    meta = {"study": "ext", "condition": "lr_high"}
    return external.train(cfg, seed, meta, paths, metric)


def test_templates_name_variables_or_params():
    cfg = command_config()
    assert cfg["trainer"]["kind"] == "command" and cfg["params"] == {"lr": 0.05}
    external.check_templates(cfg)
    assert external.needs_data(cfg)  # DATA_PATH={data_dir}
    bad = copy.deepcopy(cfg)
    bad["trainer"]["env"]["LR"] = "{learning_rate}"
    with pytest.raises(ValueError, match=r"trainer.env.LR: \{learning_rate\} is neither"):
        external.check_templates(bad)


def test_an_unknown_template_variable_is_refused_by_validation():
    with pytest.raises(
        ConfigError, match=r"conditions.lr_low.trainer.args\[0\]: \{depht\} is neither"
    ):
        command_config(args=["--depth={depht}"])


def test_a_command_trainer_needs_its_command():
    with pytest.raises(ConfigError, match="command"):
        command_config(command=None)


def test_the_seed_goes_by_environment_or_by_flag():
    cfg = command_config(args=["--lr={lr}"], resume_args=["--resume"], resume_env={"R": "1"})
    values = external.variables(cfg, 7, {"study": "s", "condition": "c"},
                                {"work_dir": "/w", "out_dir": "/o"}, 1)  # fmt: skip
    assert external.command_line(cfg, values, restart=False)[-1] == "--lr=0.05"
    assert external.command_env(cfg, values, restart=False)["SEED"] == "7"
    assert external.command_line(cfg, values, restart=True)[-1] == "--resume"
    assert external.command_env(cfg, values, restart=True)["R"] == "1"
    cfg["trainer"]["seed"] = "--seed"
    assert external.command_line(cfg, values, restart=False)[-2:] == ["--seed", "7"]
    cfg["trainer"]["seed"] = "--seed="
    assert external.command_line(cfg, values, restart=False)[-1] == "--seed=7"


def test_a_real_script_run_writes_a_speedlab_run(tmp_path, data):
    values = run(tmp_path, data, seed=3)
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seed"] == 3 and summary["source"] == "command"
    assert summary["steps"] == summary["steps_planned"] == command_config()["train"]["steps"]
    log = (out / "train.log").read_text()
    assert "seed:3" in log  # the script saw SEED=3
    roundtrip = json.loads((out / "roundtrip.json").read_text())
    assert roundtrip["q_val_bpb"] == values["q_val_bpb"]
    assert f"final_int8_zlib_roundtrip_exact val_loss:{roundtrip['q_val_loss']:.8f}" in log
    assert roundtrip["artifact_bytes"] > roundtrip["compressed_bytes"] > 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, summary["steps"] + 1))
    assert rows[-1]["val_bpb"] == summary["val_bpb"]
    prov = json.loads((out / "provenance.json").read_text())
    script = (EXTERNAL_TRAINER / "train_tiny.py").read_bytes()
    import hashlib

    assert prov["trainer_files_sha256"]["train_tiny.py"] == hashlib.sha256(script).hexdigest()
    assert prov["env"]["LR"] == "0.05" and prov["attempt"] == 1
    assert (tmp_path / "work" / "train_tiny.py").is_symlink()  # runs in its own folder


def test_a_failing_script_fails_the_job_with_its_last_lines(tmp_path, data):
    cfg = command_config(env={"DATA_PATH": "{data_dir}", "FAIL_AT": "5"})
    with pytest.raises(SystemExit) as e:
        run(tmp_path, data, cfg)
    message = str(e.value)
    assert "exited with status 3" in message and "last 20 lines" in message
    assert "step:5/" in message and "something went wrong" in message
    assert not (tmp_path / "out" / "summary.json").exists()


def test_a_log_without_the_final_line_fails_the_job(tmp_path, data):
    cfg = command_config(env={"DATA_PATH": "{data_dir}", "NO_FINAL": "1"})
    with pytest.raises(SystemExit, match="no value of the study's metric q_val_bpb"):
        run(tmp_path, data, cfg)


def test_metrics_name_a_final_line_the_log_must_print(tmp_path, data):
    cfg = command_config(metrics={"q_val_bpb": "final_int6_sliding_window_exact.val_bpb"})
    with pytest.raises(SystemExit, match="no final line final_int6_sliding_window_exact.val_bpb"):
        run(tmp_path, data, cfg)


def test_a_restart_adds_the_resume_hooks(tmp_path, data):
    """The first attempt fails (as a preempted job does); the retry runs the script again with
    resume_env, and provenance says it was attempt 2."""
    env = {"DATA_PATH": "{data_dir}", "FAIL_AT": "5"}
    with pytest.raises(SystemExit):
        run(tmp_path, data, command_config(env=env, resume_env={"FAIL_AT": "-1"}))
    run(tmp_path, data, command_config(env=env, resume_env={"FAIL_AT": "-1"}))
    prov = json.loads((tmp_path / "out" / "provenance.json").read_text())
    assert prov["attempt"] == 2 and prov["env"]["FAIL_AT"] == "-1"


def test_sigterm_reaches_the_script(tmp_path):
    """SLURM's SIGTERM / SIGUSR1 go to the script's process group (it may save and exit)."""
    script = tmp_path / "src" / "wait.py"
    script.parent.mkdir()
    script.write_text(
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: (print('saved', flush=True), sys.exit(9)))\n"
        "print('ready', flush=True)\ntime.sleep(60)\n"
    )
    cfg = command_config(command="{python} wait.py", env={})
    code = (
        "import json, sys; from speedlab.train import external\n"
        f"external.train(json.loads({json.dumps(json.dumps(cfg))}), 1, "
        "{'study': 's', 'condition': 'c'}, "
        f"{{'out_dir': '{tmp_path}/out', 'work_dir': '{tmp_path}/work', "
        f"'source': '{script.parent}'}}, 'q_val_bpb')\n"
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert p.stdout.readline().startswith("trainer (attempt 1)")
    assert p.stdout.readline().strip().startswith("env:")
    assert p.stdout.readline().strip() == "ready"
    p.terminate()
    rest, errors = p.communicate(timeout=30)
    assert "saved" in rest and p.returncode != 0
    assert "the trainer exited with status 9" in errors


def git_repo(tmp_path):
    repo = tmp_path / "trainer.git"
    repo.mkdir()
    for cmd in (["init", "-q"], ["config", "user.email", "t@t"], ["config", "user.name", "t"]):
        subprocess.run(["git", *cmd], cwd=repo, check=True)
    (repo / "train.py").write_text("print('v1')\n")
    subprocess.run(["git", "add", "."], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "v1"], cwd=repo, check=True)
    first = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                           text=True, check=True).stdout.strip()  # fmt: skip
    (repo / "train.py").write_text("print('v2')\n")
    subprocess.run(["git", "commit", "-qam", "v2"], cwd=repo, check=True)
    return repo, first


def test_a_git_source_is_cloned_at_its_pinned_commit(tmp_path):
    repo, first = git_repo(tmp_path)
    out = tmp_path / "results" / "trainers" / "trainer-x"
    out.parent.mkdir(parents=True)
    assert external.fetch(f"file://{repo}", first[:10], out) == first
    assert (out / "train.py").read_text() == "print('v1')\n"
    assert external.source_commit(out) == first
    name = external.source_dir_name({"git": f"file://{repo}", "commit": first})
    assert name == f"trainer-{first[:12]}"


def test_a_commit_the_repository_lacks_is_an_error(tmp_path):
    repo, _ = git_repo(tmp_path)
    with pytest.raises(SystemExit, match="has no commit 0123456"):
        external.fetch(f"file://{repo}", "0123456", tmp_path / "clone")
    assert not (tmp_path / "clone").exists()


def test_gpu_command_runs_skip_speedlab_s_memory_plan():
    """A script's memory is its own: a GPU command run validates without the planner."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    study = external_study()
    study["overrides"] = {"train.gpus": 8}
    config["studies"] = {"ext": study}
    validate(config)
    cfg = run_config(config, "ext", "lr_low")
    assert cfg["train"]["gpus"] == 8 and cfg["train"]["micro_batch_seqs"] is None


def test_a_log_file_the_script_writes_is_read(tmp_path, data):
    """trainer.log names the file the script writes (a template), as train_gpt.py writes
    logs/<RUN_ID>.txt; its stdout is kept beside it."""
    env = {"DATA_PATH": "{data_dir}", "LOGFILE": "logs/{run_id}.txt"}
    cfg = command_config(env=env, log="logs/{run_id}.txt")
    run(tmp_path, data, cfg, seed=5)
    log = tmp_path / "work" / "logs" / "ext-lr_high-seed5.txt"
    assert (tmp_path / "out" / "train.log").read_text() == log.read_text()
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["seed"] == 5


def test_a_declared_regex_spec_reads_a_script_s_own_format(tmp_path, data):
    spec = {
        "step": r"^step:(?P<step>\d+)/(?P<total>\d+) train_loss:(?P<train_loss>\S+)",
        "final": {"roundtrip": r"^final_int8_zlib_roundtrip_exact val_loss:(?P<val_loss>\S+)"
                               r" val_bpb:(?P<val_bpb>\S+)"},
        "seed": r"^seed:(?P<seed>\d+)",
    }  # fmt: skip
    cfg = command_config(log_format=spec, metrics={"q_val_bpb": "roundtrip.val_bpb"})
    values = run(tmp_path, data, cfg, seed=4)
    log = (tmp_path / "out" / "train.log").read_text()
    assert f"val_bpb:{values['q_val_bpb']:.8f}" in log
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["seed"] == 4 and summary["steps"] == cfg["train"]["steps"]


def test_a_finished_or_edited_run_starts_afresh(tmp_path, data):
    """Resume hooks only ever see the same run's files: after a finished run, or after a
    failure of another config, the work folder is emptied and the attempt count restarts."""
    env = {"DATA_PATH": "{data_dir}", "FAIL_AT": "5"}
    hooks = {"resume_env": {"FAIL_AT": "-1"}}
    with pytest.raises(SystemExit):
        run(tmp_path, data, command_config(env=env, **hooks))
    (tmp_path / "work" / "left_by_attempt_1").write_text("x")
    run(tmp_path, data, command_config(env={"DATA_PATH": "{data_dir}"}, **hooks))  # edited
    prov = json.loads((tmp_path / "out" / "provenance.json").read_text())
    assert prov["attempt"] == 1 and "FAIL_AT" not in prov["env"]
    assert not (tmp_path / "work" / "left_by_attempt_1").exists()
    run(tmp_path, data, command_config(env={"DATA_PATH": "{data_dir}"}, **hooks))  # rerun
    assert json.loads((tmp_path / "out" / "provenance.json").read_text())["attempt"] == 1
