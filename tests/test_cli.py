"""The `speedlab` console script, run as a user runs it (the installed entry point)."""

import shutil
import subprocess

import numpy as np
from test_import_logs import MODDED_DATA, golf_log, modded_log

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
    (logs / "run").mkdir(parents=True)
    (logs / "golf.log").write_text(golf_log())
    (logs / "modded.txt").write_text(modded_log())
    trials = "".join(
        f"trial:{k}/2 seed:{k}\n" + MODDED_DATA.replace("3.2789", f"3.27{k}") for k in (1, 2)
    )
    (logs / "trials.txt").write_text(modded_log(trials))
    (logs / "notes.txt").write_text("a README, not a log\n")
    (logs / "run" / "metadata.txt").write_text("run_id=1\nseed=3\nexit_code=0\n")
    (logs / "run" / "stderr.txt").write_text("Traceback (most recent call last):\nValueError: x\n")
    (logs / "run" / "empty.log").write_text("")
    (logs / "requirements.txt").write_text("torch\n")  # not a log by name: not read
    (logs / "train.py").write_text("import os\n")
    (logs / "image.png").write_bytes(b"\x89PNG")
    p = speedlab("import-logs", "--summary", logs, tmp_path / "missing.log", env=cli_env)
    assert p.returncode == 1, p.stderr
    out = p.stdout
    golf = next(line for line in out.splitlines() if line.startswith(f"{logs / 'golf.log'}: "))
    assert "parameter_golf, 200/200 steps, seed 1337, 8.7 s" in golf
    assert "final_int8_zlib_roundtrip_exact val_loss 2.0727 val_bpb 1.2244" in golf
    modded = next(line for line in out.splitlines() if line.startswith(f"{logs / 'modded.txt'}: "))
    assert "modded, 1770/1770 steps, seed not logged" in modded
    assert "val_loss 3.2789 (no final line)" in modded
    assert f"{logs / 'trials.txt'}: modded, 2 runs\n  run 0: modded, 1770/1770 steps, seed 1" in out
    assert (
        "  run 1: modded, 1770/1770 steps, seed 2, 159.5 s; train_loss 9.8000, val_loss 3.2720"
        in out
    )
    assert f"{logs / 'notes.txt'}: refused: not a training log: no step lines" in out
    assert f"{logs / 'run' / 'metadata.txt'}: refused: not a training log: metadata" in out
    assert f"{logs / 'run' / 'stderr.txt'}: refused: not a training log: a stderr dump" in out
    assert f"{logs / 'run' / 'empty.log'}: refused: not a training log: empty file" in out
    assert f"{tmp_path / 'missing.log'}: failed: no such log file" in out
    totals = out.split(f"{tmp_path / 'missing.log'}: failed: no such log file\n")[1].splitlines()
    assert totals == [
        "3 of 8 file(s) read: 3 training log(s), 4 run(s)",
        "refused: 1 (no step lines (`step:N/M ...`, `N/M train_loss: ...` or `s:N trl:...`))",
        "refused: 1 (empty file)",
        "refused: 1 (metadata (key=value lines), no step lines)",
        "refused: 1 (a stderr dump (warnings, tracebacks), no step lines)",
        "failed: 1 (missing or unreadable, or a line that does not parse)",
        "absent from the snapshot: 0 (tracked by git, not on disk)",
        "skipped, not logs by name: 3 (.png 1, requirements.txt 1, .py 1)",
    ]
    p = speedlab("import-logs", logs / "golf.log", env=cli_env)
    assert p.returncode == 0, p.stdout
    assert "  cfg.train.seed: 1337" in p.stdout and "  compressed_bytes: 15815847" in p.stdout
    assert "  final final_int8_zlib_roundtrip_exact: val_loss 2.0727 val_bpb 1.22437" in p.stdout
    assert "  size total_submission_size_int8_zlib: 15863489 bytes" in p.stdout
    assert "  headline: final_int8_zlib_roundtrip_exact" in p.stdout


def test_import_logs_counts_the_logs_git_tracks_that_are_absent(cli_env, tmp_path):
    repo = tmp_path / "repo"
    (repo / "records").mkdir(parents=True)
    (repo / "records" / "a.txt").write_text(modded_log())
    (repo / "records" / "big.txt").write_text(modded_log())
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "logs"], check=True)
    (repo / "records" / "big.txt").unlink()  # as in a snapshot that leaves out large files
    p = speedlab("import-logs", "--summary", repo / "records", env=cli_env)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "1 of 1 file(s) read: 1 training log(s), 1 run(s)" in p.stdout
    assert "absent from the snapshot: 1 (tracked by git, not on disk)" in p.stdout
    assert f"  {repo / 'records' / 'big.txt'}" in p.stdout
    p = speedlab("import-logs", "--format", "nanogpt", repo / "records", env=cli_env)
    assert p.returncode == 2 and "unknown log format 'nanogpt'" in p.stderr


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
