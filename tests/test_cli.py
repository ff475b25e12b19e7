"""The `speedlab` console script, run as a user runs it (the installed entry point)."""

import shutil
import subprocess

import numpy as np
from test_import_logs import golf_log, modded_log

from conftest import REPO
from speedlab.data.shards import write_shard


def speedlab(*args, env, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["speedlab", *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd, timeout=120
    )


def test_help_lists_every_command(cli_env):
    p = speedlab("--help", env=cli_env)
    assert p.returncode == 0, p.stderr
    for command in ("plan", "schema", "shards", "import-logs"):
        assert f"    {command}" in p.stdout, p.stdout
    p = speedlab("shards", "--help", env=cli_env)
    assert p.returncode == 0 and p.stdout.startswith("usage: speedlab shards"), p.stdout
    p = speedlab("nothing", env=cli_env)
    assert p.returncode == 2 and "invalid choice: 'nothing'" in p.stderr


def test_schema_prints_each_key_with_type_default_and_description(cli_env):
    p = speedlab("schema", env=cli_env)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert "defaults.train.steps  integer (>= 1), required" in lines
    gpus = lines.index("defaults.train.gpus  integer (>= 0), default 0")
    assert lines[gpus + 1].startswith("    GPUs per run (0 = CPU)")
    assert 'data.hf.repo  string, default "HuggingFaceFW/fineweb"' in lines
    assert any(line.startswith("scales.<name>.data  object") for line in lines)
    assert any(line.startswith("studies.<name>.baseline  string") for line in lines)
    only = speedlab("schema", "plan.", env=cli_env).stdout.splitlines()
    assert only and all(line.startswith(("plan.", "    ")) for line in only)
    p = speedlab("schema", "nope", env=cli_env)
    assert p.returncode == 1 and "no documented key starts with 'nope'" in p.stderr


def test_shards_info_and_check(cli_env, tmp_path):
    good, bad = tmp_path / "good.bin", tmp_path / "bad.bin"
    write_shard(good, np.array([1, 5, 7, 1, 9], dtype=np.uint16))
    bad.write_bytes(good.read_bytes()[:-1])
    p = speedlab("shards", "info", good, env=cli_env)
    assert p.returncode == 0 and "tokens=5 bos=2 min_id=1 max_id=9" in p.stdout, p.stdout
    p = speedlab("shards", "check", "--vocab", 10, good, env=cli_env)
    assert p.returncode == 0 and f"{good}: ok (5 tokens, 2 documents)" in p.stdout
    p = speedlab("shards", "check", "--vocab", 8, good, bad, env=cli_env)
    assert p.returncode == 1 and "2 of 2 shard(s) failed the check" in p.stderr, p.stderr
    assert "outside the vocabulary (size 8)" in p.stderr and f"{bad}: FAIL" in p.stderr


def test_import_logs_says_what_each_log_yields_or_why_not(cli_env, tmp_path):
    logs = tmp_path / "records"
    logs.mkdir()
    (logs / "golf.log").write_text(golf_log())
    (logs / "modded.txt").write_text(modded_log())
    (logs / "notes.txt").write_text("a README, not a log\n")
    (logs / "image.png").write_bytes(b"\x89PNG")  # not a log name: not read
    p = speedlab("import-logs", "--summary", logs, tmp_path / "missing.log", env=cli_env)
    assert p.returncode == 1, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 5 and lines[-1] == "2 of 4 file(s) read"
    golf = next(line for line in lines if line.startswith(f"{logs / 'golf.log'}: "))
    assert "parameter_golf, 200/200 steps, seed 1337" in golf and "q_val_bpb 1.2244" in golf
    modded = next(line for line in lines if line.startswith(f"{logs / 'modded.txt'}: "))
    assert "modded_nanogpt" in modded and "seed not logged" in modded and "val_loss" in modded
    assert f"{logs / 'notes.txt'}: refused: no step lines" in p.stdout
    assert f"{tmp_path / 'missing.log'}: refused: no such log file" in p.stdout
    p = speedlab("import-logs", logs / "golf.log", env=cli_env)
    assert p.returncode == 0, p.stdout
    assert "  cfg.train.seed: 1337" in p.stdout and "  compressed_bytes: 15815847" in p.stdout


def test_plan_reads_config_files_and_dotted_settings(cli_env, tmp_path):
    shutil.copytree(REPO / "config", tmp_path / "config")
    study = ("--configfile", "config/studies/lr_sweep.yaml")
    p = speedlab("plan", *study, "--config", "scale=full", env=cli_env, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "lr_sweep: 0 of 21 runs done, 21 pending: 28.0 GPU-hours, $70" in p.stdout
    price = "plan.gpu_hour_usd.default=10"
    p = speedlab("plan", "--config", "scale=full", price, env=cli_env, cwd=tmp_path)
    assert "quickstart: 0 of 6 runs done, 6 pending: 8.0 GPU-hours, $80" in p.stdout, p.stderr
    p = speedlab("plan", "--config", "plan.gpu_hour_usd.default=cheap", env=cli_env, cwd=tmp_path)
    assert p.returncode == 1 and "'cheap' cannot be read as number (>= 0)" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr
