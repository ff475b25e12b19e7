"""Training logs made by other tools -> rows of speedlab's tables, to compare with speedlab runs.

    python -m speedlab.analysis.import_logs --study S --condition C --seed N LOG \\
        --runs-out runs.parquet --curves-out curves.parquet

writes a one-row runs.parquet and a curves.parquet with the schemas of `speedlab.analysis.collect`
(`collect --imported runs.parquet curves.parquet` adds them to a study's tables).

Formats. Both are the log files of a `train_gpt.py` that prints `key:value` lines:

- parameter_golf (openai/parameter-golf): step lines
  `step:N/M train_loss:X train_time:Tms step_avg:Ams` and
  `step:N/M val_loss:X val_bpb:Y train_time:Tms step_avg:Ams`; config lines `model_params:P`,
  `world_size:W grad_accum_steps:G`, `attention_mode:gqa num_heads:H num_kv_heads:K`,
  `tie_embeddings:B embed_lr:.. head_lr:.. matrix_lr:.. scalar_lr:..`,
  `train_batch_tokens:B train_seq_len:S iterations:I ...`, `seed:S`; at the end
  `peak memory allocated: A MiB reserved: R MiB`,
  `Serialized model int8+zlib: N bytes (payload:P ...)`, `Total submission size int8+zlib: N bytes`
  and `final_int8_zlib_roundtrip_exact val_loss:X val_bpb:Y` (the score after quantization).
- modded_nanogpt (KellerJordan/modded-nanogpt): step lines
  `step:N/M [train_loss:X] train_time:Tms step_avg:Ams` and
  `step:N/M val_loss:X train_time:Tms step_avg:Ams` (train_time in `ms`, or in `s` in some
  records), and `peak memory allocated: A MiB reserved: R MiB` (older: `peak memory consumption:`).
  No val_bpb, no batch size in tokens (so tokens are unknown), and no world size: it is taken
  from the nvidia-smi process table of the header (GPUs running python), when there is one.

Extra `key:value` fields on a step line are ignored, as is every line not listed here. So the
variants of later parameter-golf records (int6/zstd/brotli artifacts, sliding-window or TTT
scores) leave the q_* and byte columns NaN, and their newest format (`N/M train_loss: X`, no
`step:`) and llm.c's `s:N trl:X` lines are not read at all.

The source dump. Both scripts begin their log with their own source code, which holds the same
patterns as f-strings, then a line of 100 '=', a header (Python and PyTorch versions, nvidia-smi)
and another line of 100 '='. So the data are the lines after the last line of 100 '=', and the
header is the part between the last two such lines (the torch/cuda/device columns come from it).
A log with no such line (a capture of the console) is read whole. A file holding several runs one
after the other, each with its source dump (e.g. the console output followed by the log file),
gives its last run; a step number going back within the data is an error.

`--format auto` says parameter_golf when the data have one of parameter-golf's own lines (its
config lines `model_params:`/`train_batch_tokens:`, a `val_bpb:` field, `final_int8_zlib_*` or
`Serialized model int8+zlib:`), else modded_nanogpt. A log with no `step:N/M` line at all is
neither, and an error.

Errors: a recognised line whose number does not parse raises ValueError `<file>:<line>: <field>
...`; a log without step lines, a missing file and an unknown format are errors too.
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from speedlab.analysis.collect import CURVE_COLUMNS, typed_curves, typed_runs
from speedlab.files import atomic_path

SOURCES = ("parameter_golf", "modded_nanogpt")
SEPARATOR = "=" * 100
NAN = float("nan")

# Field of a parameter-golf config line -> speedlab config key (its `cfg.<key>` column). The
# parameter-golf warmup_steps (compile warm-up steps, undone afterwards) has no speedlab meaning.
CFG_KEYS = {
    "train_batch_tokens": "train.batch_tokens",  # tokens per optimizer step, all ranks
    "train_seq_len": "train.seq_len",
    "iterations": "train.steps",
    "max_wallclock_seconds": "train.max_wallclock_s",  # 0 = no cap
    "seed": "train.seed",
    "world_size": "train.world_size",
    "grad_accum_steps": "train.grad_accum_steps",
    "num_heads": "model.n_head",
    "num_kv_heads": "model.n_kv_head",
    "tie_embeddings": "model.tie_embeddings",
    "embed_lr": "optim.embed_lr",
    "head_lr": "optim.head_lr",
    "matrix_lr": "optim.matrix_lr",
    "scalar_lr": "optim.scalar_lr",
}
# Also derived: cfg.train.batch_seqs = train_batch_tokens / train_seq_len (when it divides), and
# cfg.train.steps from the M of `step:N/M` when no config line states it (modded-nanogpt).
CONFIG_LINES = (
    "model_params:",
    "world_size:",
    "attention_mode:",
    "tie_embeddings:",
    "train_batch_tokens:",
    "seed:",
)
PARAMETER_GOLF_LINES = (
    "model_params:",
    "train_batch_tokens:",
    "final_int8_zlib_roundtrip",
    "Serialized model int8+zlib:",
)
STEP_LINE = re.compile(r"step:([^\s/]*)/(\S*)")  # `step:N/M ...`; `step:N other:..` is not one
LOSS_FIELDS = ("train_loss", "val_loss", "val_bpb")  # also the curve metrics
TIME_FIELDS = ("train_time", "step_avg")  # read in milliseconds

PEAK_MEMORY = re.compile(r"peak memory (?:allocated|consumption): (\S+) MiB")
COMPRESSED = re.compile(r"Serialized model int8\+zlib: (\S+) bytes(?: \(payload:([^\s)]+))?")
ARTIFACT = re.compile(r"Total submission size int8\+zlib: (\S+) bytes")
ROUNDTRIP = re.compile(r"final_int8_zlib_roundtrip_exact val_loss:(\S+) val_bpb:(\S+)")
TORCH = re.compile(r"Running PyTorch (\S+)", re.IGNORECASE)
CUDA = re.compile(r"compiled for CUDA (\S+)")
GPU_ROW = re.compile(r"\|\s+\d+\s+(.+?)\s+(?:On|Off)\s+\|")  # nvidia-smi: | 0  NVIDIA H100 .. |
PROCESS_ROW = re.compile(r"\|\s+(\d+)\s+\S+\s+\S+\s+\d+\s+C\s+\S*python")  # | gpu N/A N/A pid C ..

RUN_EXTRA_COLUMNS = ("step_avg_ms",)  # beyond collect.COLUMNS
# ParsedLog fields that go into the runs row as they are (peak_memory_mb in MiB, as speedlab's
# summary has it).
LOG_COLUMNS = (
    "steps", "steps_planned", "train_time_s", "world_size", "n_params", "train_loss", "val_loss",
    "val_bpb", "q_val_loss", "q_val_bpb", "payload_bytes", "compressed_bytes", "artifact_bytes",
    "diverged", "step_avg_ms", "peak_memory_mb", "device", "torch", "cuda",
)  # fmt: skip


class Point(NamedTuple):
    step: int
    time_s: float
    metric: str
    value: float


@dataclass
class ParsedLog:
    """What one log says; numbers it does not say are NaN, strings None."""

    path: str
    source: str
    steps: int = 0
    steps_planned: float = NAN
    train_time_s: float = NAN
    step_avg_ms: float = NAN
    train_loss: float = NAN
    val_loss: float = NAN
    val_bpb: float = NAN
    q_val_loss: float = NAN
    q_val_bpb: float = NAN
    payload_bytes: float = NAN
    compressed_bytes: float = NAN
    artifact_bytes: float = NAN
    peak_memory_mb: float = NAN
    n_params: float = NAN
    world_size: float = NAN
    device: str | None = None
    torch: str | None = None
    cuda: str | None = None
    config: dict = field(default_factory=dict)  # speedlab dotted key -> value
    points: list[Point] = field(default_factory=list)

    @property
    def diverged(self) -> bool:
        return any(not math.isfinite(p.value) for p in self.points)


def _number(text: str, name: str, where: str, kind=float):
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{where}: {name}: {text!r} is not a number") from None


def _ms(text: str, name: str, where: str) -> float:
    """'12345ms' or '12.345s' -> milliseconds."""
    if text.endswith("ms"):
        return _number(text[:-2], name, where)
    if text.endswith("s"):
        return 1000 * _number(text[:-1], name, where)
    raise ValueError(f"{where}: {name}: {text!r} has no unit (ms or s)")


def _config_value(text: str, name: str, where: str):
    if text in ("True", "False"):
        return text == "True"
    try:
        return int(text)
    except ValueError:
        return _number(text, name, where)


def _step_line(m: re.Match, where: str) -> tuple[int, int, dict[str, float]]:
    """A STEP_LINE match -> (N, M, {field: value}) for the fields speedlab reads."""
    fields = {}
    for token in m.string.split()[1:]:
        key, _, value = token.partition(":")
        if key in LOSS_FIELDS:
            fields[key] = _number(value, key, where)
        elif key in TIME_FIELDS:
            fields[key] = _ms(value, key, where)
    return _number(m[1], "step", where, int), _number(m[2], "step", where, int), fields


def _read_header(log: ParsedLog, header: list[str]) -> None:
    gpus = set()
    for line in header:
        if m := TORCH.match(line):
            log.torch = m[1]
        if m := CUDA.search(line):
            log.cuda = m[1]
        if log.device is None and (m := GPU_ROW.match(line)):
            log.device = m[1]
        if m := PROCESS_ROW.match(line):
            gpus.add(m[1])
    if gpus and log.source == "modded_nanogpt":
        log.world_size = len(gpus)


def _read_config(log: ParsedLog, line: str, where: str) -> None:
    for token in line.split():
        key, _, value = token.partition(":")
        if key == "model_params":
            log.n_params = _number(value, key, where, int)
        elif key in CFG_KEYS:
            log.config[CFG_KEYS[key]] = _config_value(value, key, where)
    if "train.world_size" in log.config:
        log.world_size = log.config["train.world_size"]


def _read_result(log: ParsedLog, line: str, where: str) -> None:
    """parameter-golf's lines after training: sizes and the score after quantization."""
    if m := COMPRESSED.match(line):
        log.compressed_bytes = _number(m[1], "Serialized model int8+zlib", where, int)
        if m[2] is not None:
            log.payload_bytes = _number(m[2], "payload", where, int)
    elif m := ARTIFACT.match(line):
        log.artifact_bytes = _number(m[1], "Total submission size int8+zlib", where, int)
    elif m := ROUNDTRIP.match(line):
        log.q_val_loss = _number(m[1], "val_loss", where)
        log.q_val_bpb = _number(m[2], "val_bpb", where)


def detect_format(lines: list[str]) -> str:
    pg = any(
        line.startswith(PARAMETER_GOLF_LINES) or (STEP_LINE.match(line) and " val_bpb:" in line)
        for line in lines
    )
    return "parameter_golf" if pg else "modded_nanogpt"


def parse_log(path: str | Path, fmt: str = "auto") -> ParsedLog:
    """Read a parameter-golf or modded-nanogpt train log (fmt: auto or one of SOURCES)."""
    if fmt not in ("auto", *SOURCES):
        raise ValueError(f"unknown log format {fmt!r}: use auto, {', '.join(SOURCES)}")
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such log file") from None
    lines = [line.rstrip() for line in text.split("\n")]
    seps = [i for i, line in enumerate(lines) if line == SEPARATOR]
    start = seps[-1] + 1 if seps else 0
    data = lines[start:]
    if not any(STEP_LINE.match(line) for line in data):
        raise ValueError(
            f"{path}: no step lines (`step:N/M ...`) after the source dump: not a parameter-golf "
            "or modded-nanogpt train log"
        )
    log = ParsedLog(path=str(path), source=detect_format(data) if fmt == "auto" else fmt)
    _read_header(log, lines[seps[-2] + 1 : seps[-1]] if len(seps) >= 2 else [])
    last_step = -1
    for number, line in enumerate(data, start=start + 1):
        where = f"{path}:{number}"
        if m := STEP_LINE.match(line):
            last_step = _read_step(log, m, last_step, where)
        else:
            _read_other(log, line, where)
    cfg = log.config
    cfg.setdefault("train.steps", log.steps_planned)
    tokens, seq_len = cfg.get("train.batch_tokens"), cfg.get("train.seq_len")
    if tokens and seq_len and tokens % seq_len == 0:
        cfg["train.batch_seqs"] = tokens // seq_len
    return log


def _read_step(log: ParsedLog, m: re.Match, last_step: int, where: str) -> int:
    """A `step:N/M` line: the run's progress and a curve point per loss field; returns N."""
    step, planned, fields = _step_line(m, where)
    if step < last_step:
        raise ValueError(
            f"{where}: step {step} after step {last_step}: the file holds more than one run; "
            "split it"
        )
    log.steps = step
    log.steps_planned = planned
    log.train_time_s = fields.get("train_time", NAN) / 1000
    log.step_avg_ms = fields.get("step_avg", NAN)
    for metric in LOSS_FIELDS:
        if metric in fields:
            setattr(log, metric, fields[metric])
            log.points.append(Point(step, log.train_time_s, metric, fields[metric]))
    return step


def _read_other(log: ParsedLog, line: str, where: str) -> None:
    """A line that is not a step line: peak memory, or parameter-golf's config and results."""
    if m := PEAK_MEMORY.match(line):
        log.peak_memory_mb = _number(m[1], "peak memory", where)
    elif log.source == "parameter_golf" and line.startswith(CONFIG_LINES):
        _read_config(log, line, where)
    elif log.source == "parameter_golf":
        _read_result(log, line, where)


def import_log(
    path: str | Path,
    *,
    study: str,
    condition: str,
    seed: int,
    fmt: str = "auto",
    baseline: str | None = None,
) -> tuple[dict, list[dict]]:
    """(runs row, curve rows) of one log, in the schemas of speedlab.analysis.collect."""
    log = parse_log(path, fmt)
    per_step = log.config.get("train.batch_tokens")
    row = {
        "study": study,
        "condition": condition,
        "seed": seed,
        "is_baseline": baseline is not None and condition == baseline,
        "source": log.source,
        "log_path": str(path),
        **{name: getattr(log, name) for name in LOG_COLUMNS},
        "tokens": log.steps * per_step if per_step else NAN,
        "gpu_hours": log.train_time_s * log.world_size / 3600,
        "host": None,
        **{f"cfg.{k}": v for k, v in sorted(log.config.items())},
    }
    run = {"study": study, "condition": condition, "seed": seed}
    curves = [
        {**run, "step": p.step, "tokens": p.step * per_step if per_step else -1,
         "time_s": p.time_s, "metric": p.metric, "value": p.value}
        for p in log.points
    ]  # fmt: skip
    return row, curves


def runs_frame(row: dict) -> pd.DataFrame:
    """The row with collect's typed columns, then the extra columns this module adds."""
    raw = pd.DataFrame([row])
    runs = typed_runs(raw)
    for name in RUN_EXTRA_COLUMNS:
        runs[name] = raw[name].astype("float64")
    return runs


def curves_frame(curves: list[dict]) -> pd.DataFrame:
    return typed_curves(pd.DataFrame(curves, columns=list(CURVE_COLUMNS)))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("log", type=Path, help="the train log to import")
    p.add_argument("--study", required=True)
    p.add_argument("--condition", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--format", dest="fmt", choices=("auto", *SOURCES), default="auto")
    p.add_argument("--baseline", help="the study's baseline condition (sets is_baseline)")
    p.add_argument("--runs-out", type=Path, required=True)
    p.add_argument("--curves-out", type=Path, required=True)
    args = p.parse_args(argv)
    try:
        row, curves = import_log(
            args.log,
            study=args.study,
            condition=args.condition,
            seed=args.seed,
            fmt=args.fmt,
            baseline=args.baseline,
        )
    except (OSError, ValueError) as e:
        raise SystemExit(f"import_logs: {e}") from None
    with atomic_path(args.runs_out) as tmp:
        runs_frame(row).to_parquet(tmp, index=False)
    with atomic_path(args.curves_out) as tmp:
        curves_frame(curves).to_parquet(tmp, index=False)
    print(
        f"{args.log}: {row['source']}, {row['steps']} steps, val_loss {row['val_loss']:.4f}, "
        f"{len(curves)} curve points"
    )


if __name__ == "__main__":
    main()
