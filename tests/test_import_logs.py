"""speedlab.analysis.import_logs on short logs shaped like parameter-golf's and modded-nanogpt's.

The formats themselves are tested in test_logformats.py; this file checks the rows and tables.
"""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest

from speedlab.analysis.collect import COLUMNS, collect
from speedlab.analysis.import_logs import import_log, main, parse_log
from speedlab.logformats import NotATrainLog

SEP = "=" * 100

# The scripts dump their own source first. These lines, at column 0 inside a string, have the
# shapes of data lines: read as data they would raise (the f-strings) or change the numbers.
SOURCE_DUMP = '''"""A training script, dumped into its own log."""
import os
USAGE = """
step:{step}/{args.iterations} val_loss:{val_loss:.4f} val_bpb:{val_bpb:.4f} train_time:{t:.0f}ms
step:99999/99999 val_loss:0.1 val_bpb:0.1 train_time:1ms step_avg:1ms
peak memory allocated: 1 MiB reserved: 1 MiB
model_params:{n_params}
final_int8_zlib_roundtrip_exact val_loss:0.5 val_bpb:0.5
"""
    log0(f"step:{step}/{args.iterations} train_loss:{train_loss.item():.4f} ")
'''

NVIDIA_SMI = """\
+-----------------------------------------------------------------------------------------+
|   0  NVIDIA H100 80GB HBM3          On  |   00000000:05:00.0 Off |                    0 |
|   1  NVIDIA H100 80GB HBM3          On  |   00000000:06:00.0 Off |                    0 |
| Processes:                                                                              |
|  GPU   GI   CI              PID   Type   Process name                        GPU Memory |
|    0   N/A  N/A           28774      C   /usr/bin/python3                       1512MiB |
|    1   N/A  N/A           28775      C   /usr/bin/python3                       1512MiB |
+-----------------------------------------------------------------------------------------+
"""

BATCH_LINE = (
    "train_batch_tokens:524288 train_seq_len:1024 iterations:200 warmup_steps:20 "
    "max_wallclock_seconds:600.000"
)
GOLF_DATA = f"""\
val_bpb:enabled tokenizer_kind=sentencepiece tokenizer_path=./data/tokenizers/fineweb_1024_bpe.model
model_params:17059912
world_size:8 grad_accum_steps:1
attention_mode:gqa num_heads:8 num_kv_heads:4
tie_embeddings:True embed_lr:0.05 head_lr:0.0 matrix_lr:0.04 scalar_lr:0.04
{BATCH_LINE}
seed:1337
warmup_step:1/20
step:0/200 val_loss:6.9370 val_bpb:4.1083 train_time:0ms step_avg:0.02ms
step:1/200 train_loss:6.9357 train_time:62ms step_avg:61.80ms
step:2/200 train_loss:16.7400 train_time:105ms step_avg:52.60ms
step:100/200 train_loss:3.2100 train_time:4400ms step_avg:44.00ms
step:200/200 train_loss:2.9500 train_time:8710ms step_avg:43.55ms
step:200/200 val_loss:2.0606 val_bpb:1.2172 train_time:8734ms step_avg:43.67ms
peak memory allocated: 10184 MiB reserved: 10200 MiB
Serialized model: 67224983 bytes
Code size: 47642 bytes
Total submission size: 67272625 bytes
Serialized model int8+zlib: 15815847 bytes (payload:17178912 raw_torch:17224025 payload_ratio:3.91x)
Total submission size int8+zlib: 15863489 bytes
final_int8_zlib_roundtrip val_loss:2.0727 val_bpb:1.2244 eval_time:1401ms
final_int8_zlib_roundtrip_exact val_loss:2.07269931 val_bpb:1.22436570
"""

MODDED_DATA = """\
Compiling model and warming up kernels (~7 minutes on first execution)
step:0/1770 val_loss:10.8258 train_time:0ms step_avg:nanms
step:1/1770 train_time:301ms step_avg:301.00ms
step:2/1770 train_loss:9.8000 train_time:390ms step_avg:195.00ms
step:125/1770 val_loss:4.2000 train_time:12345ms step_avg:98.76ms
step:1770/1770 train_time:159450ms step_avg:90.08ms
step:1770/1770 val_loss:3.2789 val_avg_loss:3.3 train_time:159503ms step_avg:90.12ms handoff:none
peak memory allocated: 32460 MiB reserved: 47576 MiB
"""


def golf_log(data: str = GOLF_DATA) -> str:
    header = "Running Python 3.12.3\nRunning PyTorch 2.9.1+cu128\n" + NVIDIA_SMI
    return f"{SOURCE_DUMP}{SEP}\n{header}{SEP}\n{data}"


def modded_log(data: str = MODDED_DATA) -> str:
    header = "Running PyTorch 2.10.0+cu128 compiled for CUDA 12.8\n" + NVIDIA_SMI
    return f"{SOURCE_DUMP}{SEP}\n{header}{SEP}\n{data}"


def write(tmp_path, text: str, name: str = "train.log"):
    path = tmp_path / name
    path.write_text(text)
    return path


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.split("\n"), start=1) if needle in line)


def test_parameter_golf_log_to_exact_numbers(tmp_path):
    path = write(tmp_path, golf_log())
    row, curves = import_log(path, study="s", condition="pg", seed=1337, baseline="pg")
    assert row["source"] == "parameter_golf"
    assert row["is_baseline"] is True
    assert row["log_path"] == str(path)
    assert row["steps"] == 200 and row["steps_planned"] == 200
    assert row["tokens"] == 200 * 524288
    assert row["train_time_s"] == pytest.approx(8.734)
    assert row["step_avg_ms"] == pytest.approx(43.67)
    assert row["world_size"] == 8
    assert row["gpu_hours"] == pytest.approx(8.734 * 8 / 3600)
    assert row["n_params"] == 17059912
    assert row["train_loss"] == pytest.approx(2.95)
    assert (row["val_loss"], row["val_bpb"]) == (pytest.approx(2.0606), pytest.approx(1.2172))
    assert row["q_val_loss"] == pytest.approx(2.07269931)
    assert row["q_val_bpb"] == pytest.approx(1.22436570)
    assert row["payload_bytes"] == 17178912
    assert row["compressed_bytes"] == 15815847
    assert row["artifact_bytes"] == 15863489
    assert row["peak_memory_mb"] == 10184
    assert row["diverged"] is False
    assert (row["device"], row["torch"], row["host"]) == (
        "NVIDIA H100 80GB HBM3",
        "2.9.1+cu128",
        None,
    )
    assert {k: v for k, v in row.items() if k.startswith("cfg.")} == {
        "cfg.model.n_head": 8,
        "cfg.model.n_kv_head": 4,
        "cfg.model.tie_embeddings": True,
        "cfg.optim.embed_lr": 0.05,
        "cfg.optim.head_lr": 0.0,
        "cfg.optim.matrix_lr": 0.04,
        "cfg.optim.scalar_lr": 0.04,
        "cfg.train.batch_seqs": 512,
        "cfg.train.batch_tokens": 524288,
        "cfg.train.grad_accum_steps": 1,
        "cfg.train.max_wallclock_s": 600.0,
        "cfg.train.seed": 1337,
        "cfg.train.seq_len": 1024,
        "cfg.train.steps": 200,
        "cfg.train.world_size": 8,
    }
    assert [(c["step"], c["metric"], c["value"]) for c in curves][:4] == [
        (0, "val_loss", 6.937),
        (0, "val_bpb", 4.1083),
        (1, "train_loss", 6.9357),
        (2, "train_loss", 16.74),
    ]
    last = curves[-1]
    assert last == dict(
        study="s",
        condition="pg",
        seed=1337,
        step=200,
        tokens=200 * 524288,
        time_s=pytest.approx(8.734),
        metric="val_bpb",
        value=1.2172,
    )
    assert len(curves) == 2 + 4 + 2
    assert {k: v for k, v in row.items() if k.startswith("log.")} == {
        "log.final_int8_zlib_roundtrip.val_loss": 2.0727,
        "log.final_int8_zlib_roundtrip.val_bpb": 1.2244,
        "log.final_int8_zlib_roundtrip.eval_time_ms": 1401.0,
        "log.final_int8_zlib_roundtrip_exact.val_loss": 2.07269931,
        "log.final_int8_zlib_roundtrip_exact.val_bpb": 1.2243657,
        "log.serialized_model": 67224983.0,
        "log.code_size": 47642.0,
        "log.total_submission_size": 67272625.0,
        "log.serialized_model_int8_zlib": 15815847.0,
        "log.total_submission_size_int8_zlib": 15863489.0,
    }
    assert len(row["code_sha256"]) == 64  # of the source dump the log begins with


def test_source_dump_is_not_parsed(tmp_path):
    log = parse_log(write(tmp_path, golf_log()))
    assert log.steps == 200  # not the dump's 99999
    assert log.peak_memory_mb == 10184 and log.q_val_bpb == pytest.approx(1.2243657)
    assert all(p.step <= 200 for p in log.points)


def test_modded_nanogpt_log(tmp_path):
    path = write(tmp_path, modded_log())
    row, curves = import_log(path, study="s", condition="mn", seed=0)
    assert row["source"] == "modded" and row["is_baseline"] is False
    assert row["steps"] == 1770 and row["cfg.train.steps"] == 1770
    assert row["train_time_s"] == pytest.approx(159.503)
    assert row["step_avg_ms"] == pytest.approx(90.12)
    assert row["val_loss"] == pytest.approx(3.2789)
    assert row["train_loss"] == pytest.approx(9.8)
    for name in ("val_bpb", "q_val_loss", "q_val_bpb", "tokens", "n_params", "compressed_bytes"):
        assert math.isnan(row[name]), name
    assert row["peak_memory_mb"] == 32460
    assert row["world_size"] == 2  # GPUs running python in the header's nvidia-smi
    assert row["gpu_hours"] == pytest.approx(159.503 * 2 / 3600)
    assert (row["torch"], row["cuda"]) == ("2.10.0+cu128", "12.8")
    assert [(c["step"], c["metric"], c["value"], c["tokens"]) for c in curves] == [
        (0, "val_loss", 10.8258, -1),
        (2, "train_loss", 9.8, -1),
        (125, "val_loss", 4.2, -1),
        (1770, "val_loss", 3.2789, -1),
    ]
    assert curves[2]["time_s"] == pytest.approx(12.345)


def test_train_time_in_seconds(tmp_path):
    data = "step:0/10 val_loss:10.8 train_time:0.001s step_avg:nanms\n"
    data += "step:10/10 val_loss:4.5 train_time:5.418s step_avg:541.80ms\n"
    log = parse_log(write(tmp_path, modded_log(data)))
    assert log.train_time_s == pytest.approx(5.418)
    assert math.isnan(log.peak_memory_mb) and not log.diverged


def test_format_auto_detection_and_override(tmp_path):
    golf, modded = write(tmp_path, golf_log(), "a.log"), write(tmp_path, modded_log(), "b.txt")
    assert parse_log(golf).source == "parameter_golf"
    assert parse_log(modded).source == "modded"
    # the console capture of parameter-golf has no source dump: detected all the same
    assert parse_log(write(tmp_path, GOLF_DATA, "console.txt")).source == "parameter_golf"
    forced = parse_log(golf, "modded_nanogpt")  # the old name; one grammar reads both
    assert forced.source == "modded" and forced.q_val_bpb == pytest.approx(1.2243657)
    assert parse_log(modded, {"step": r"^step:(?P<step>\d+)/"}).source == "declared"
    with pytest.raises(ValueError, match="unknown log format 'nanogpt'"):
        parse_log(golf, "nanogpt")


def test_malformed_number_names_file_line_and_field(tmp_path):
    text = golf_log().replace("val_loss:2.0606", "val_loss:4.2x1")
    path = write(tmp_path, text)
    n = line_of(text, "4.2x1")
    with pytest.raises(
        ValueError, match=f"^{re.escape(str(path))}:{n}: val_loss: '4.2x1' is not a number"
    ):
        parse_log(path)
    text = golf_log().replace("payload:17178912", "payload:17x")
    n = line_of(text, "payload:17x")
    with pytest.raises(ValueError, match=f":{n}: payload: '17x'"):
        parse_log(write(tmp_path, text))
    text = modded_log().replace("train_time:12345ms", "train_time:12345")
    with pytest.raises(ValueError, match=r"train_time: '12345' has no unit \(ms, s or m\)"):
        parse_log(write(tmp_path, text))


def test_no_step_lines_is_an_error(tmp_path):
    data = "".join(line for line in GOLF_DATA.splitlines(True) if not line.startswith("step:"))
    path = write(tmp_path, golf_log(data))
    with pytest.raises(NotATrainLog, match=f"^{re.escape(str(path))}: not a training log: an ev"):
        parse_log(path)  # final lines but no step lines: an evaluation without training
    # the dump's step lines do not count
    with pytest.raises(NotATrainLog, match="not a training log: no step lines"):
        parse_log(write(tmp_path, f"{SOURCE_DUMP}{SEP}\nwarmup_step:1/20\n"))
    with pytest.raises(NotATrainLog, match="source code only"):
        import_log(write(tmp_path, SOURCE_DUMP + SEP + "\n"), study="s", condition="c", seed=0)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.log: no such log file"):
        parse_log(tmp_path / "nope.log")


def test_nan_loss_means_diverged(tmp_path):
    data = GOLF_DATA.replace("train_loss:3.2100", "train_loss:nan")
    row, curves = import_log(write(tmp_path, golf_log(data)), study="s", condition="c", seed=1337)
    assert row["diverged"] is True
    assert any(math.isnan(c["value"]) for c in curves)
    text = modded_log().replace("val_loss:4.2000", "val_loss:inf")
    assert parse_log(write(tmp_path, text)).diverged


def test_several_runs_in_one_file(tmp_path):
    # the console output, then the log file with its dump: one run, read from the log file
    log = parse_log(write(tmp_path, GOLF_DATA + golf_log()))
    assert log.val_loss == pytest.approx(2.0606) and len(log.points) == 8
    assert log.torch == "2.9.1+cu128"
    # runs appended one after the other: one trial each, imported one at a time
    second = MODDED_DATA.replace("val_loss:3.2789", "val_loss:3.2801")
    path = write(tmp_path, modded_log(MODDED_DATA + second))
    with pytest.raises(ValueError, match=r"train.log: holds 2 runs .*choose one with run=0..1"):
        import_log(path, study="s", condition="c", seed=0)
    row, curves = import_log(path, study="s", condition="c", seed=0, run=1)
    assert row["val_loss"] == pytest.approx(3.2801) and len(curves) == 4
    with pytest.raises(ValueError, match=r"run 2 asked for, the file holds 2 run\(s\)"):
        import_log(path, study="s", condition="c", seed=0, run=2)


def test_seed_given_must_be_the_logs(tmp_path):
    path = write(tmp_path, golf_log())
    with pytest.raises(
        ValueError, match=f"^{re.escape(str(path))}: seed 3 given, the log says seed 1337"
    ):
        import_log(path, study="s", condition="c", seed=3)
    text = "".join(f"trial:{k}/2 seed:{k}\n" + MODDED_DATA for k in (1, 2))
    path = write(tmp_path, modded_log(text.replace("val_loss:3.2789", "val_loss:3.3", 1)))
    with pytest.raises(ValueError, match=r"\(run 1\): seed 1 given, the log says seed 2"):
        import_log(path, study="s", condition="c", seed=1, run=1)
    assert import_log(path, study="s", condition="c", seed=2, run=1)[0]["seed"] == 2
    # a log that prints no seed takes the one given
    assert (
        import_log(write(tmp_path, modded_log()), study="s", condition="c", seed=5)[0]["seed"] == 5
    )


def test_cli_writes_typed_tables_that_round_trip(tmp_path, capsys):
    log = write(tmp_path, golf_log())
    runs_out, curves_out = tmp_path / "out/runs.parquet", tmp_path / "out/curves.parquet"
    args = ["--study", "s", "--condition", "pg", "--seed", "1337", "--format", "parameter_golf"]
    args += ["--baseline", "speedlab", "--runs-out", str(runs_out), "--curves-out", str(curves_out)]
    main([*args, str(log)])
    assert "parameter_golf, 200 steps" in capsys.readouterr().out
    runs, curves = pd.read_parquet(runs_out), pd.read_parquet(curves_out)
    row, rows = import_log(log, study="s", condition="pg", seed=1337)

    assert len(runs) == 1
    cfg = sorted(c for c in runs.columns if c.startswith("cfg."))
    logged = sorted(c for c in runs.columns if c.startswith("log."))
    assert list(runs.columns) == [*COLUMNS, *cfg, *logged] and len(logged) == 10
    for name, (dtype, _) in COLUMNS.items():
        assert runs[name].dtype == dtype, name
    assert runs["seed"].dtype == "int64" and runs["step_avg_ms"].dtype == "float64"
    assert all(runs[c].dtype == "float64" for c in logged)
    assert got_logged(runs) == {c: row[c] for c in logged}
    got = runs.iloc[0]
    assert not got["is_baseline"]
    for name in ("steps", "tokens", "n_params", "compressed_bytes", "artifact_bytes", "world_size"):
        assert got[name] == row[name], name
    for name in ("train_time_s", "gpu_hours", "val_bpb", "q_val_bpb", "peak_memory_mb"):
        assert got[name] == pytest.approx(row[name]), name
    assert pd.isna(got["host"]) and pd.isna(got["mfu"]) and got["device"] == row["device"]
    assert got["step_avg_ms"] == pytest.approx(43.67) and got["artifact_bytes"] == 15863489
    assert {c: got[c] for c in cfg} == {c: row[c] for c in cfg}

    assert list(curves.columns) == [
        "study", "condition", "seed", "step", "tokens", "time_s", "metric", "value",
    ]  # fmt: skip
    dtypes = {"seed": "int64", "step": "int64", "tokens": "int64", "time_s": "float64"}
    assert {c: str(curves[c].dtype) for c in dtypes} == dtypes
    assert curves["value"].dtype == "float64"
    assert curves.to_dict("records") == pd.DataFrame(rows).to_dict("records")

    # the pair joins a study's tables through collect
    all_runs, all_curves = collect([], "pg", [(runs_out, curves_out)])
    assert all_runs["source"].tolist() == ["parameter_golf"] and bool(all_runs["is_baseline"][0])
    assert len(all_curves) == len(curves)


def test_cli_errors_are_one_line(tmp_path):
    args = ["--study", "s", "--condition", "c", "--seed", "0", str(tmp_path / "missing.log")]
    args += ["--runs-out", str(tmp_path / "r.parquet"), "--curves-out", str(tmp_path / "c.parquet")]
    with pytest.raises(SystemExit, match="import_logs: .*missing.log: no such log file"):
        main(args)
    assert not (tmp_path / "r.parquet").exists()


def got_logged(runs: pd.DataFrame) -> dict:
    return {c: runs.iloc[0][c] for c in runs.columns if c.startswith("log.")}


def test_cli_run_and_format_options(tmp_path, capsys):
    text = "".join(f"trial:{k}/2 seed:{k}\n" + MODDED_DATA for k in (1, 2))
    log = write(tmp_path, modded_log(text.replace("val_loss:3.2789", "val_loss:3.3", 1)))
    out = ["--runs-out", str(tmp_path / "r.parquet"), "--curves-out", str(tmp_path / "c.parquet")]
    main(["--study", "s", "--condition", "c", "--seed", "2", "--run", "1", *out, str(log)])
    assert "modded, 1770 steps, val_loss 3.2789" in capsys.readouterr().out
    assert pd.read_parquet(tmp_path / "r.parquet")["seed"].tolist() == [2]
    spec = '{"step": "^step:(?P<step>\\\\d+)/(?P<total>\\\\d+) val_loss:(?P<val_loss>\\\\S+)"}'
    main(["--study", "s", "--condition", "c", "--seed", "0", "--format", spec, *out,
          str(write(tmp_path, modded_log(), "one.txt"))])  # fmt: skip
    assert "declared, 1770 steps, val_loss 3.2789" in capsys.readouterr().out
    for bad, message in (("nanogpt", "unknown log format 'nanogpt'"), ("{x", "a JSON object")):
        with pytest.raises(SystemExit):
            main(["--study", "s", "--condition", "c", "--seed", "0", "--format", bad, *out, "x"])
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit, match="holds 2 runs"):
        main(["--study", "s", "--condition", "c", "--seed", "1", *out, str(log)])
