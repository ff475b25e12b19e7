"""speedlab.logformats on short hand-written excerpts of each log format in use.

The record logs begin with the full source of their script, so none is committed: each test
writes the few lines it needs, shaped like the lines the records print.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys

import pytest

from conftest import REPO
from speedlab.logformats import (
    ALIASES,
    FORMATS,
    NotATrainLog,
    ParsedLog,
    parse_log,
    parse_runs,
    parse_text,
)

SEP = "=" * 100
DUMP = f'import os\nlog0(f"step:{{step}}/{{n}} val_loss:{{v:.4f}} seed:{{seed}}")\n{SEP}\n'


def one(text: str, fmt="auto") -> ParsedLog:
    (log,) = parse_text(text, fmt)
    return log


# ------------------------------------------------------------------------------------------------
# Step lines


def test_step_lines_with_and_without_the_step_prefix():
    old = "step:0/100 val_loss:6.9 val_bpb:4.1 train_time:0ms step_avg:0.02ms\n"
    old += "step:50/100 train_loss:3.5 train_time:5000ms step_avg:100.00ms\n"
    new = "0/100 val_loss: 6.9 val_bpb: 4.1\n50/100 train_loss: 3.5 train_time: 0.5m tok/s: 8e6\n"
    for text in (old, new):
        log = one(text)
        assert (log.source, log.steps, log.steps_planned) == ("parameter_golf", 50, 100)
        assert log.train_loss == 3.5 and (log.val_loss, log.val_bpb) == (6.9, 4.1)
        assert log.train_time_s == pytest.approx(30.0 if text is new else 5.0)
        assert [(p.step, p.metric) for p in log.points] == [
            (0, "val_loss"), (0, "val_bpb"), (50, "train_loss"),
        ]  # fmt: skip
    assert one(new).step_avg_ms == pytest.approx(600)  # not printed: train time / steps


def test_new_format_val_lines_take_the_time_of_their_step():
    text = """\
4000/5962 train_loss: 2.6710 train_time: 6.6m tok/s: 7953531
4000/5962 val_loss: 2.6756 val_bpb: 1.1628
5962/5962 val_loss: 2.5449 val_bpb: 1.1060
stopping_early: wallclock_cap train_time: 590009ms step: 5962/20000
"""
    log = one(text)
    times = {(p.step, p.metric): p.time_s for p in log.points}
    assert times[(4000, "val_bpb")] == pytest.approx(396.0)
    assert times[(5962, "val_loss")] == pytest.approx(590.009)
    assert log.train_time_s == pytest.approx(590.009) and log.steps == 5962


def test_timestamped_lines():
    text = """\
1776142360.541   seed: 0
1776142719.307 0/20000 val_loss: 9.0086 val_bpb: 3.4874
1776143229.403 4000/20000 train_loss: 2.8 train_time: 8.5m tok/s: 1
1776143349.279 peak memory allocated: 40029 MiB reserved: 44036 MiB
1776144156.999 quantized_ttt_phased val_loss:2.76951521 val_bpb:1.07216564 eval_time:500104ms
"""
    log = one(text)
    assert (log.seed, log.steps, log.peak_memory_mb) == (0, 4000, 40029)
    assert log.headline == "quantized_ttt_phased" and log.q_val_bpb == 1.07216564


def test_other_step_line_shapes_and_units():
    log = one("step:10/20 loss:3.0 t:5000ms avg:500.0ms\nstep:20/20 loss:2.5 t:10.5s avg:525ms\n")
    assert (log.train_loss, log.train_time_s, log.step_avg_ms) == (2.5, 10.5, 525)
    llmc = one("s:0 tel:10.9688\ns:0 trl:10.9656\ns:1 trl:10.8140 lr:0.000001 norm:15.37\n")
    assert (llmc.source, llmc.steps, llmc.val_loss, llmc.train_loss) == (
        "modded",
        1,
        10.9688,
        10.814,
    )
    assert math.isnan(llmc.steps_planned) and "train.steps" not in llmc.config
    nan_avg = one("step:0/10 val_loss:10.8 train_time:0ms step_avg:nanms\n")
    assert math.isnan(nan_avg.step_avg_ms)


def test_lines_that_look_like_steps_are_not():
    text = """\
warmup_step: 1/20
loop_warmup_step:2/20
stopping_early: wallclock_cap train_time:600037ms step:10804/20000
ttt_chunk [1/1389] bpb=1.1 time=0.3s
layer_loop:enabled step:3000 frac:0.35
step:3000 QAT started (INT4)
step:5/10 train_loss:4.0 train_time:50ms
"""
    log = one(text)
    assert [p.step for p in log.points] == [5]


# ------------------------------------------------------------------------------------------------
# Final lines, sizes, peak memory, seeds


FINALS = """\
step:100/100 val_loss:2.0 val_bpb:1.2 train_time:1000ms step_avg:10ms
peak memory allocated: 8517 MiB reserved: 9032 MiB
Serialized model: 86099351 bytes
Code size: 55931 bytes
Serialized model int6+zlib-9: 15160388 bytes (payload:21906720 raw_torch:21951833 ratio:3.9x)
Total submission size int6+zlib-9: 15216319 bytes
Serialized model int6+lzma: 15000000 bytes
Total submission size int6+lzma: 15068000 bytes
Serialized model quantized+brotli: 15969354 bytes
Total submission size quantized+brotli: 15996664 bytes
Code size (compressed): 27310 bytes
Raw model: 1000 bytes | Code: 20 bytes | Total: 1020
DIAGNOSTIC post_ema val_loss:1.9 val_bpb:1.10 eval_time:2000ms
diagnostic pre-quantization post-ema val_loss:2.76877360 val_bpb:1.07184400 eval_time:5993ms
final_int6_roundtrip val_loss:2.0436 val_bpb:1.2103 eval_time:2262ms
final_int6_roundtrip_exact val_loss:2.04356694 val_bpb:1.21031545
final_sliding_window_eval stride:64 val_loss:2.0222 val_bpb:1.1976 eval_time:304360ms
final_int8_zlib_roundtrip_exact sliding val_loss:2.02124749 sliding val_bpb:1.19709881
ttt_sliding:done val_loss=3.074214 val_bpb=1.336032 elapsed=405.0s
final_sliding val_loss:2.9877 val_bpb:1.1568 (stride=16, T=0.90) eval_time:428712ms
final_int6_sliding_window_exact val_loss:1.89576235 val_bpb:1.12278022
final_int8_zlib_roundtrip_exact val_loss:1.89576235 val_bpb:1.12278022
val_bpb:          1.12278022
val_loss_every: 200
"""


def test_every_final_line_under_its_printed_name():
    log = one(FINALS)
    assert log.finals["final_int6_roundtrip"] == {
        "val_loss": 2.0436, "val_bpb": 1.2103, "eval_time_ms": 2262,
    }  # fmt: skip
    assert log.finals["final_sliding_window_eval"]["val_bpb"] == 1.1976
    assert log.finals["final_int8_zlib_roundtrip_exact_sliding"]["val_bpb"] == 1.19709881
    assert log.finals["ttt_sliding_done"] == {"val_loss": 3.074214, "val_bpb": 1.336032}
    assert log.finals["final_sliding"]["eval_time_ms"] == 428712
    assert log.finals["diagnostic_post_ema"]["val_bpb"] == 1.10
    assert "diagnostic_pre_quantization_post_ema" in log.finals
    assert "val_loss_every" not in log.finals and "" not in log.finals
    assert len(log.finals) == 10


def test_headline_is_the_last_score_not_a_diagnostic_and_an_alias_is_named_by_its_original():
    log = one(FINALS)
    assert log.headline == "final_int6_sliding_window_exact"  # repeated as final_int8_... after
    assert (log.q_val_loss, log.q_val_bpb) == (1.89576235, 1.12278022)
    assert (log.val_loss, log.val_bpb) == (2.0, 1.2)  # the last step line's: before quantizing
    diag = one("step:1/1 val_loss:2.0\ndiagnostic quantized val_loss:2.7 val_bpb:1.08\n")
    assert diag.headline is None and math.isnan(diag.q_val_bpb)
    none = one("step:1/1 val_loss:2.0\n")
    assert none.headline is None and none.finals == {}


def test_sizes_of_every_compressor_and_the_artifact():
    log = one(FINALS)
    assert log.sizes["serialized_model"] == 86099351
    assert log.sizes["serialized_model_int6_zlib_9"] == 15160388
    assert log.sizes["total_submission_size_int6_lzma"] == 15068000
    assert log.sizes["code_size_compressed"] == 27310
    assert (log.sizes["raw_model"], log.sizes["code"]) == (1000, 20)
    assert log.compressed_bytes == 15969354  # the last serialized_model_* line
    assert log.artifact_bytes == 15996664  # the last total_submission_size_* line
    assert log.payload_bytes == 21906720 and log.peak_memory_mb == 8517
    budget = one("step:1/1 loss:3.0 t:1ms\nbudget:15995705/16000000 (16.00/16.00MB) FITS\n")
    assert budget.artifact_bytes == 15995705 == budget.sizes["budget"]
    for line in ("peak memory consumption: 41 MiB", "peak memory: 42 MiB"):
        assert one(f"step:1/1 loss:3.0\n{line}\n").peak_memory_mb in (41, 42)


@pytest.mark.parametrize(
    "line, seed",
    [
        ("seed:1337", 1337),
        ("  seed: 42", 42),
        ("Using seed=7", 7),
        ("seed=3", 3),
        ("command=torchrun --nproc_per_node=4 train.py --seed 2", 2),
        ("=== seed 5 start 2026-05-18T15:23:15+00:00 ===", 5),
        ("trial:1/10 seed:9", 9),
        ("SEED=11", 11),
    ],
)
def test_seed_lines(line, seed):
    assert one(f"{line}\nstep:1/1 val_loss:2.0\n").seed == seed


def test_not_seeds_and_no_seed():
    text = "data_seed: 3\nseeds=1 2 3\nexperiment=fade_seed4\nlogfile: /runs/seed_5/a.txt\n"
    log = one(text + "step:1/1 val_loss:2.0\n")
    assert log.seed is None and "train.seed" not in log.config


def test_source_dump_and_header_are_not_data_and_the_header_is_read():
    header = """\
Running Python 3.12.3
Running PyTorch 2.10.0+cu128 compiled for CUDA 12.8
|   0  NVIDIA H100 80GB HBM3          On  |   00000000:05:00.0 Off |                    0 |
|    0   N/A  N/A           28774      C   /usr/bin/python3                       1512MiB |
|    1   N/A  N/A           28775      C   /usr/bin/python3                       1512MiB |
"""
    hparams = "Hyperparameters:\n  seed: 42\n  train_seq_len: 2048\n  world_size: 8\n"
    text = f"{SEP}\n{hparams}{DUMP}{header}{SEP}\nstep:5/5 val_loss:3.0 train_time:9ms\n"
    log = one(text, "modded")
    assert (log.steps, log.seed, log.torch, log.cuda) == (5, 42, "2.10.0+cu128", "12.8")
    assert log.device == "NVIDIA H100 80GB HBM3"
    assert log.world_size == 8  # stated; the nvidia-smi process rows count only when not
    assert log.config["train.seq_len"] == 2048 and len(log.code_sha256) == 64
    del_ws = one(text.replace("  world_size: 8\n", ""), "modded")
    assert del_ws.world_size == 2


# ------------------------------------------------------------------------------------------------
# Multi-run files

TRIAL = "step:0/2 val_loss:10.8 train_time:0.000s step_avg:nanms\n"
TRIAL += "step:2/2 val_loss:{v} train_time:1.5s step_avg:750ms\n"


def test_trials_split_with_their_seeds(tmp_path):
    text = "config data_dir=/d train_steps=2\n" + "".join(
        f"trial:{k}/3 seed:{k}\n" + TRIAL.format(v=3.0 + k) for k in (1, 2, 3)
    )
    path = tmp_path / "trials.txt"
    path.write_text(text)
    runs = parse_runs(path)
    assert [(r.trial, r.seed, r.val_loss, len(r.points)) for r in runs] == [
        (0, 1, 4.0, 2), (1, 2, 5.0, 2), (2, 3, 6.0, 2),
    ]  # fmt: skip
    assert parse_log(path, run=2).seed == 3
    with pytest.raises(ValueError, match=r"trials.txt: holds 3 runs \(seeds 1, 2, 3\): .*run=0..2"):
        parse_log(path)
    with pytest.raises(ValueError, match=r"run 3 asked for, the file holds 3 run\(s\)"):
        parse_log(path, run=3)


def test_trials_split_at_a_step_going_back_and_at_source_dumps():
    no_marker = one_of(TRIAL.format(v=3.1) + TRIAL.format(v=3.2))
    assert [(r.seed, r.val_loss) for r in no_marker] == [(None, 3.1), (None, 3.2)]
    tail = "peak memory allocated: 10 MiB reserved: 11 MiB\nfinal_x val_loss:1.0 val_bpb:0.5\n"
    run = "seed:{s}\nstep:0/2 val_loss:7.0 val_bpb:4.0\nstep:2/2 val_loss:{v} val_bpb:1.2\n"
    text = run.format(s=1, v=2.0) + tail + DUMP + SEP + "\n" + run.format(s=2, v=2.5)
    first, second = one_of(text)
    assert (first.seed, first.peak_memory_mb, first.headline) == (1, 10, "final_x")
    assert (second.seed, second.val_loss, second.headline) == (2, 2.5, None)


def test_a_console_capture_then_the_log_file_is_one_run_and_an_excerpt_is_dropped():
    run = "seed:1\nstep:0/2 val_loss:7.0\nstep:2/2 val_loss:2.0\n"
    (log,) = one_of(run + DUMP + SEP + "\nRunning PyTorch 2.9.1\n" + SEP + "\n" + run)
    assert log.torch == "2.9.1" and log.trial == 0  # the later copy (with the header) is kept
    batch = "=== seed 2 start ===\n" + TRIAL.format(v=3.3) + "=== seed 2 end ===\n"
    batch += "step:2/2 val_loss:3.3 train_time:1.5s step_avg:750ms\n"  # the runner's tail excerpt
    batch += "=== seed 3 start ===\n" + TRIAL.format(v=3.4)
    assert [(r.seed, r.val_loss) for r in one_of(batch)] == [(2, 3.3), (3, 3.4)]


def one_of(text: str) -> list[ParsedLog]:
    return parse_text(text, "auto")


# ------------------------------------------------------------------------------------------------
# nanochat

NANOCHAT = """\
GPU: NVIDIA H100 80GB HBM3 | Peak FLOPS (BF16): 9.89e+14
Vocab size: 32,768
Parameter counts:
wte                     : 25,165,824
total                   : 560,988,160
Tokens / micro-batch / rank: 32 x 2048 = 65,536
Tokens / micro-batch: 524,288
Total batch size 524,288 => gradient accumulation steps: 1
Step 00000 | Validation bpb: 3.253521
step 00000/00020 (0.00%) | loss: 10.397446 | lrm: 1.00 | dt: 30123.55ms | tok/sec: 17,404 \
| bf16_mfu: 0.65 | epoch: 1 pq: 0 rg: 0 | total time: 0.00m
step 00019/00020 (95.00%) | loss: 6.512345 | lrm: 0.10 | dt: 412.11ms | tok/sec: 1,272,205 \
| bf16_mfu: 47.12 | epoch: 1 pq: 0 rg: 3 | total time: 0.06m | eta: 0.0m
Step 00020 | Validation bpb: 1.999999
Step 00020 | CORE metric: 0.1234
Peak memory usage: 61234.56MiB
Total training time: 0.06m
Minimum validation bpb: 1.999999
"""


def test_nanochat_base_train_output():
    log = one(NANOCHAT)
    assert (log.source, log.steps, log.steps_planned) == ("nanochat", 20, 20)
    assert log.train_loss == 6.512345 and log.val_bpb == 1.999999
    assert log.train_time_s == pytest.approx(3.6) and log.step_avg_ms == pytest.approx(400)
    assert (log.n_params, log.world_size, log.peak_memory_mb) == (560988160, 8, 61234.56)
    assert log.device == "NVIDIA H100 80GB HBM3"
    assert log.config == {
        "train.seq_len": 2048, "train.batch_tokens": 524288, "train.grad_accum_steps": 1,
        "train.steps": 20, "train.batch_seqs": 256,
    }  # fmt: skip
    assert log.headline == "minimum_validation_bpb" and log.q_val_bpb == 1.999999
    assert log.finals["core_metric"] == {"core_metric": 0.1234}
    assert [(p.step, p.metric) for p in log.points] == [
        (0, "val_bpb"), (1, "train_loss"), (20, "train_loss"), (20, "val_bpb"),
        (20, "core_metric"),
    ]  # fmt: skip
    assert one(NANOCHAT, "nanochat").source == "nanochat"


# ------------------------------------------------------------------------------------------------
# A declared spec

SPEC = {
    "step": r"^it (?P<step>\d+) of (?P<total>\d+): loss (?P<train_loss>\S+) \((?P<time_s>\S+)s\)",
    "final": {"quantized": r"^q-eval loss=(?P<val_loss>\S+) bpb=(?P<val_bpb>\S+)"},
    "seed": r"^rng (?P<seed>\d+)",
}


def test_declared_spec():
    text = (
        "rng 17\nit 1 of 2: loss 4.5 (0.5s)\nit 2 of 2: loss 4.0 (1.25s)\nq-eval loss=3.9 bpb=1.3\n"
    )
    log = one(text, SPEC)
    assert (log.source, log.seed, log.steps, log.steps_planned) == ("declared", 17, 2, 2)
    assert (log.train_loss, log.train_time_s) == (4.0, 1.25)
    assert log.finals == {"quantized": {"val_loss": 3.9, "val_bpb": 1.3}}
    assert log.headline == "quantized" and log.q_val_bpb == 1.3
    assert one("it 1 of 2: loss 4.5 (0.5s)\n", {"step": SPEC["step"]}).seed is None
    trials = parse_text(text + text.replace("rng 17", "rng 18").replace("4.0", "3.5"), SPEC)
    assert [r.seed for r in trials] == [17, 18]


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"final": {}}, "keys are step \\(required\\), final, seed"),
        ({"step": r"x", "extra": 1}, "keys are step"),
        ({"step": r"(?P<n>\d+)"}, "needs the group \\(\\?P<step>"),
        ({"step": r"(?P<step>\d+) (?P<lr>\S+)"}, "needs the group"),
        ({"step": r"(?P<step>\d+"}, "step: bad regex"),
        ({"step": 5}, "step must be a regex string"),
        ({"step": r"(?P<step>\d+)", "final": {"q": "("}}, "final q: bad regex"),
        ({"step": r"(?P<step>\d+)", "seed": r"seed (\d+)"}, "seed regex needs the group"),
    ],
)
def test_bad_specs(spec, message):
    with pytest.raises(ValueError, match=f"log format spec: .*{message}"):
        parse_text("1\n", spec)


def test_formats_and_aliases():
    assert FORMATS == ("parameter_golf", "modded", "nanochat")
    assert ALIASES == {"modded_nanogpt": "modded"}
    assert one("step:1/1 val_loss:2.0\n", "modded_nanogpt").source == "modded"
    assert one("step:1/1 val_loss:2.0 val_bpb:1.0\n", "modded").source == "modded"
    with pytest.raises(ValueError, match="unknown log format 'nanogpt': use auto, parameter_golf"):
        parse_text("step:1/1 val_loss:2.0\n", "nanogpt")


# ------------------------------------------------------------------------------------------------
# Refusals and errors


@pytest.mark.parametrize(
    "text, fmt, reason",
    [
        ("", "auto", "empty file"),
        (DUMP, "auto", "source code only, no log lines"),
        ("run_id=1\nseed=3\nmode=sequential\nexit_code=0\n", "auto", "metadata \\(key=value"),
        (
            "W0506 02:35:45.650000 3289 torch/distributed/run.py:852] \n"
            "W0506 02:35:45.650000 3289 torch/distributed/run.py:852] ****\n",
            "auto",
            "a stderr dump",
        ),  # fmt: skip
        (
            "Hyperparameters:\n  seed: 0\nTTT_EVAL_ONLY=1\n"
            "quantized_ttt_phased val_loss:2.32 val_bpb:1.06 eval_time:416500ms\n",
            "auto",
            "an evaluation without training: final metrics but no step lines",
        ),  # fmt: skip
        ("a README, not a log\n", "auto", "no step lines \\(`step:N/M ...`"),
        ("step:1/1 val_loss:2.0\n", "nanochat", "no step lines \\(`step N/M \\(..%\\)"),
        (
            "step:1/1 val_loss:2.0\n",
            {"step": r"^it (?P<step>\d+)"},
            "no step lines \\(lines matching the declared",
        ),
    ],
)
def test_refusals_say_why(text, fmt, reason):
    with pytest.raises(NotATrainLog, match=f"^x.log: not a training log: {reason}"):
        parse_text(text, fmt, "x.log")


def test_not_a_train_log_is_a_value_error():
    assert issubclass(NotATrainLog, ValueError)


@pytest.mark.parametrize(
    "line, message",
    [
        ("step:1/2 val_loss:4.2x1", "val_loss: '4.2x1' is not a number"),
        ("step:1/2 train_time:12345", "train_time: '12345' has no unit \\(ms, s or m\\)"),
        ("1/2 train_loss: 3.0 train_time: 0.5h", "train_time: '0.5h' has no unit"),
        ("Serialized model int8+zlib: 5 bytes (payload:17x raw:1)", "payload: '17x'"),
        ("step 00001/00002 (50.00%) | loss: x | total time: 0.1m", "loss: 'x' is not a number"),
        ("Step 00001 | Validation bpb: y", "Validation bpb: 'y'"),
    ],
)
def test_bad_numbers_name_file_line_and_field(line, message):
    with pytest.raises(ValueError, match=f"^f.log:2: {message}"):
        parse_text(f"step:0/2 val_loss:5.0\n{line}\n", "auto", "f.log")


def test_spec_numbers_are_checked():
    with pytest.raises(ValueError, match="^f.log:1: train_loss: 'oops' is not a number"):
        parse_text("it 1: oops\n", {"step": r"it (?P<step>\d+): (?P<train_loss>\S+)"}, "f.log")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.log: no such log file"):
        parse_runs(tmp_path / "nope.log")


def test_diverged():
    assert one("step:1/2 train_loss:nan\nstep:2/2 val_loss:3.0\n").diverged
    assert not one("step:1/2 train_loss:4.0\n").diverged


def test_the_module_imports_only_the_standard_library():
    code = (
        "import sys; import speedlab.logformats; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('pandas', 'numpy', 'torch') "
        "or m.startswith('speedlab.analysis')]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, env={"PYTHONPATH": str(REPO / "src")}, timeout=60)  # fmt: skip
    assert out.stdout.strip() == "[]", out.stderr
    assert re.search(r"^import (pandas|numpy|torch)", (REPO / "src/speedlab/logformats.py")
                     .read_text(), re.M) is None  # fmt: skip
