"""The train logs of other tools, read with the standard library only.

`speedlab.analysis.import_logs` turns what this module reads into rows of speedlab's tables, and
`speedlab.train.external` reads with it the log of an external trainer it has just run: so this
module imports neither pandas, torch nor any speedlab module.

    parse_runs(path, fmt="auto") -> [ParsedLog, ...]       one per trial, in file order
    parse_log(path, fmt="auto", run=None) -> ParsedLog     the only trial, or trial `run`
    parse_text(text, fmt, path="<text>") -> [ParsedLog, ...]

fmt is "auto", one of FORMATS (or an alias in ALIASES) or a declared spec (below). A file that is
not a train log raises NotATrainLog (a ValueError) saying why: empty, source code only, metadata
(`key=value` lines), a stderr dump (torchrun warnings, tracebacks), an evaluation without training
(final metrics but no step lines: e.g. parameter-golf's TTT-only re-evaluations), or no step lines.

Formats.

- parameter_golf (openai/parameter-golf) and modded (KellerJordan/modded-nanogpt; the old name
  modded_nanogpt is an alias) share one grammar. Step lines, in every form in use:
  `step:N/M train_loss:X train_time:Tms step_avg:Ams`, `step:N/M val_loss:X val_bpb:Y ...`, the
  form of parameter-golf's records from 2026-04 on `N/M train_loss: X train_time: 3.2m tok/s: R`
  and `N/M val_loss: X val_bpb: Y` (no `step:`, `key: value`; these take the train time of their
  step from a train line or from `stopping_early: ... train_time: Tms step: N/M`), other records'
  `step:N/M loss:X t:Tms avg:Ams`, and llm.c's `s:N trl:X` / `s:N tel:X` (train / eval loss, no
  M). Times are in ms, s or m (minutes); `step_avg:nanms` is NaN. Other fields are ignored.
  Lines after the steps:
  * every line with a `val_loss`/`val_bpb` field that is not a step line is a final metric,
    stored under the text before its first numeric field, slugged (lower case, `_` for each run
    of other characters): `final_int6_sliding_window_exact val_loss:X val_bpb:Y` ->
    finals["final_int6_sliding_window_exact"] = {"val_loss": X, "val_bpb": Y}; likewise
    `quantized_ttt_phased`, `legal_ttt_exact`, `diagnostic_pre_quantization_post_ema`, ...; an
    `eval_time` field is kept as eval_time_ms.
  * every `<label>: N bytes` (also between ` | `) is a size, sizes[slug(label)]:
    `Serialized model int6+lzma: N bytes (payload:P ...)` -> serialized_model_int6_lzma (and
    payload_bytes), `Total submission size quantized+brotli: N bytes`, `Code size (compressed)`.
    compressed_bytes is the last `serialized_model_*` size, artifact_bytes the last
    `total_submission_size_*` (or `total_submission`, or `budget:N/LIMIT`) size: the quantized
    artifact, code included.
  * `peak memory allocated: A MiB ...` (older: `peak memory consumption:`, `peak memory:`).
  * config lines `model_params:P`, `world_size:W grad_accum_steps:G`, `attention_mode:..
    num_heads:H num_kv_heads:K`, `tie_embeddings:B embed_lr:..`, `train_batch_tokens:B
    train_seq_len:S iterations:I ...`, `seed:S`, and the same keys as `key: value` lines of a
    `Hyperparameters:` dump (CFG_KEYS gives the speedlab key of each).
  * the header: `Running PyTorch V`, `compiled for CUDA C`, nvidia-smi's GPU rows (the device)
    and process rows (modded: the world size is the number of GPUs running python).
- nanochat (karpathy/nanochat, scripts/base_train.py's print0 lines):
  `step 00100/01000 (10.00%) | loss: X | lrm: .. | dt: 12.34ms | tok/sec: 1,234 | bf16_mfu: ..
  | epoch: .. | total time: 1.23m | eta: ..m` (loss is the debiased EMA of the train loss; the
  step completed is N + 1; total time leaves out the first 10 steps, so step_avg_ms is
  total time / (N - 10)), `Step 00100 | Validation bpb: Y`, `Step 00100 | CORE metric: C`
  (a core_metric point and final),
  `GPU: NAME | Peak FLOPS ...`, `total   : P` under `Parameter counts:`,
  `Tokens / micro-batch / rank: B x S = T`, `Tokens / micro-batch: W`,
  `Total batch size N => gradient accumulation steps: G`, and at the end `Peak memory usage:
  M MiB`, `Total training time: Tm` and `Minimum validation bpb: Y` (the headline).
- a declared spec, for one's own script: a dict {"step": REGEX, "final": {NAME: REGEX},
  "seed": REGEX}, only "step" required. The step regex has the named group step and any of
  total, train_loss, val_loss, val_bpb, time_ms, time_s; each final regex has named groups
  (val_loss, val_bpb, ...) stored as finals[NAME]; the seed regex has the group seed. A declared
  format reads nothing else.

The source dump. The scripts of parameter-golf and modded-nanogpt begin their log with their own
source code, which holds the patterns above as f-strings, and separate it from the header and the
data by lines of 100 '='. In each part that a line of 100 '=' ends, the lines from the first one
that opens Python source (`import`, `from .. import`, `def`, `class`, `\"\"\"`) on are code and are
not read (code_sha256 is the sha256 of the dump a run's log begins with). The data after the
last such line are read whole. A leading Unix timestamp (`1776142360.538 `) or `[HH:MM:SS] ` on
each line is dropped.

Trials. A file can hold several runs: a step number going back starts a new trial. The lines
between two trials go to the earlier one up to the first line that opens a run (a source dump, a
seed line, a `trial:N/M` marker, `Running Python`, `Hyperparameters:`, a config line,
`=== seed N start`, `command=`), and to the later one from there. A trial's seed is the last
seed line (`seed:S`, `seed: S`, `seed=S`, `--seed S`, `Using seed=S`, `trial:k/n seed:S`,
`=== seed S start`) before its first step, else the first after it. A trial whose step lines
equal those of the trial before it (a console capture, then the log file) replaces it; one whose
step lines all are among them (a batch runner's excerpt of the last lines) is dropped.

Headline. The official score of a run is its last final line with a val_bpb or val_loss, leaving
out diagnostics (`diagnostic ...`, `pre-quantization ...`, `... post_ema`); when an earlier final
line has the same numbers (a compatibility alias printed after it) that earlier line is named.
q_val_loss / q_val_bpb are its numbers. val_loss / val_bpb are the last step line's.

Errors: a recognised field whose number does not parse raises ValueError `<file>:<line>: <field>:
'x' is not a number`; a missing file, an unknown format and a bad spec are errors too.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

FORMATS = ("parameter_golf", "modded", "nanochat")
ALIASES = {"modded_nanogpt": "modded"}
SEP = "=" * 100
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
# Also derived: cfg.train.batch_seqs = train_batch_tokens / train_seq_len (when it divides),
# cfg.train.steps from the M of `step:N/M` when no config line states it, cfg.train.seed from
# the seed line.
CONFIG_LEADS = (*CFG_KEYS, "model_params", "attention_mode")


class NotATrainLog(ValueError):
    """The file is not a train log; the message says why."""


class Point(NamedTuple):
    step: int
    time_s: float
    metric: str
    value: float


@dataclass
class ParsedLog:
    """What one trial of a log says; numbers it does not say are NaN, strings None."""

    path: str
    source: str
    trial: int = 0
    seed: int | None = None
    steps: int = 0
    steps_planned: float = NAN
    train_time_s: float = NAN
    step_avg_ms: float = NAN
    train_loss: float = NAN
    val_loss: float = NAN
    val_bpb: float = NAN
    q_val_loss: float = NAN
    q_val_bpb: float = NAN
    headline: str | None = None
    finals: dict = field(default_factory=dict)  # name -> {field: value}, in order of printing
    sizes: dict = field(default_factory=dict)  # slugged label -> bytes
    payload_bytes: float = NAN
    compressed_bytes: float = NAN
    artifact_bytes: float = NAN
    peak_memory_mb: float = NAN
    n_params: float = NAN
    world_size: float = NAN
    device: str | None = None
    torch: str | None = None
    cuda: str | None = None
    code_sha256: str | None = None  # of the source dump the run's log begins with
    config: dict = field(default_factory=dict)  # speedlab dotted key -> value
    points: list[Point] = field(default_factory=list)

    @property
    def diverged(self) -> bool:
        return any(not math.isfinite(p.value) for p in self.points)


class Line(NamedTuple):
    no: int  # 1-based line number in the file
    text: str  # without timestamp and surrounding blanks


class Step(NamedTuple):
    step: int
    total: int | None
    fields: dict  # of train_loss, val_loss, val_bpb, time_ms, step_avg_ms


# ------------------------------------------------------------------------------------------------
# Numbers


def _number(text: str, name: str, where: str, kind=float):
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{where}: {name}: {text!r} is not a number") from None


def _ms(text: str, name: str, where: str) -> float:
    """'12345ms', '12.345s' or '3.2m' -> milliseconds."""
    for unit, scale in (("ms", 1), ("s", 1000), ("m", 60_000)):
        if text.endswith(unit):
            return scale * _number(text[: -len(unit)], name, where)
    raise ValueError(f"{where}: {name}: {text!r} has no unit (ms, s or m)")


def _count(text: str, name: str, where: str) -> int:
    """'1,234,567' -> 1234567."""
    return _number(text.replace(",", ""), name, where, int)


def slug(text: str) -> str:
    """A printed label as a name: lower case, `_` for each run of other characters."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


# ------------------------------------------------------------------------------------------------
# The lines to read: timestamps dropped, each source dump left out (a Dump marks where it was)

TIMESTAMP = re.compile(r"^(?:\d{9,11}\.\d+|\[\d\d:\d\d:\d\d\])\s+")
CODE_START = re.compile(r'^(?:import \w|from [\w.]+ import |def \w|class \w|""")')


class Dump(NamedTuple):
    sha256: str  # of the dumped source, its lines joined by newlines


def data_lines(text: str) -> list[Line | Dump]:
    raw = [TIMESTAMP.sub("", line.rstrip()) for line in text.split("\n")]
    seps = [i for i, line in enumerate(raw) if line.strip() == SEP]
    code = [False] * len(raw)
    for begin, end in zip([-1, *seps], seps, strict=False):  # each part a SEP line ends
        start = next((i for i in range(begin + 1, end) if CODE_START.match(raw[i])), end)
        code[start:end] = [True] * (end - start)
    out: list[Line | Dump] = []
    for i, line in enumerate(raw):
        if code[i]:
            if i == 0 or not code[i - 1]:
                end = code.index(False, i) if False in code[i:] else len(raw)
                out.append(Dump(hashlib.sha256("\n".join(raw[i:end]).encode()).hexdigest()))
        elif line.strip() and line.strip() != SEP:
            out.append(Line(i + 1, line.strip()))
    return out


# ------------------------------------------------------------------------------------------------
# parameter_golf and modded: step lines

GOLF_STEP = re.compile(
    r"^(?:step:\s*(\d+)/(\d+)|(\d+)/(\d+)(?=\s+(?:train_loss|val_loss|val_bpb|train_time)\s*:))"
    r"(?:\s+(.*))?$"
)
LLMC_STEP = re.compile(r"^s:(\d+)\s+(\S.*)$")  # llm.c: s:N trl:X / s:N tel:X
FIELD = re.compile(r"([A-Za-z_][\w/]*)\s*[:=]\s*(\S+)")
LOSS_FIELDS = {"train_loss": "train_loss", "loss": "train_loss", "trl": "train_loss",
               "val_loss": "val_loss", "tel": "val_loss", "val_bpb": "val_bpb"}  # fmt: skip
TIME_FIELDS = {"train_time": "time_ms", "t": "time_ms", "step_avg": "step_avg_ms",
               "avg": "step_avg_ms"}  # fmt: skip
METRICS = ("train_loss", "val_loss", "val_bpb")  # the curve metrics of step lines


def _fields(text: str, where: str) -> dict:
    """The loss and time fields of a step line's `key:value` / `key: value` pairs."""
    out = {}
    for key, value in FIELD.findall(text):
        if key in LOSS_FIELDS:
            out[LOSS_FIELDS[key]] = _number(value, key, where)
        elif key in TIME_FIELDS:
            out[TIME_FIELDS[key]] = _ms(value, key, where)
    return out


def golf_step(text: str, where: str) -> Step | None:
    if m := GOLF_STEP.match(text):
        step, total = (m[1], m[2]) if m[1] is not None else (m[3], m[4])
        return Step(int(step), int(total), _fields(m[5] or "", where))
    if m := LLMC_STEP.match(text):
        return Step(int(m[1]), None, _fields(m[2], where))
    return None


# ------------------------------------------------------------------------------------------------
# parameter_golf and modded: the other lines

PEAK_MEMORY = re.compile(r"^peak memory(?: allocated| consumption| usage)?:\s*([\d.]+)\s*MiB", re.I)
SIZE = re.compile(r"^([A-Za-z][\w+\-. ()]*?)\s*:\s*(\d+) bytes\b(?: \(payload:(\w+))?")
FINAL = re.compile(r"(?<![\w/])val_(?:loss|bpb)\s*[:=]\s*(?:[-+.\d]|nan|inf)", re.I)
NUMERIC_FIELD = re.compile(r"(?<![\w/])([A-Za-z_]\w*)\s*[:=]\s*([-+]?(?:\d|\.\d|nan|inf))", re.I)
SEED = re.compile(r"(?<![\w./-])(?:--)?seed\s*[=:]?\s*(?P<seed>\d+)\b", re.I)
TRIAL = re.compile(r"^trial:\s*\d+/\d+")
BUDGET = re.compile(r"^budget:\s*(\d+)/\d+")  # budget:15995705/16000000 (16.00/16.00MB) FITS
STOPPING = re.compile(r"^stopping_early:.*?train_time:\s*(\S+)\s+step:\s*(\d+)/(\d+)")
N_PARAMS = re.compile(r"^(?:model_params|total parameters)\s*:\s*([\d,]+)$", re.I)
TORCH = re.compile(r"Running PyTorch (\S+)", re.IGNORECASE)
CUDA = re.compile(r"compiled for CUDA (\S+)")
GPU_ROW = re.compile(r"^\|\s+\d+\s+(.+?)\s+(?:On|Off)\s+\|")  # nvidia-smi: | 0  NVIDIA H100 .. |
GPU_LIST = re.compile(r"^GPU \d+: (.+?) \(UUID")  # nvidia-smi -L
PROCESS_ROW = re.compile(r"^\|\s+(\d+)\s+\S+\s+\S+\s+\d+\s+C\s+\S*python")  # | gpu N/A N/A pid C
NPROC = re.compile(r"(?<![\w])(?:--)?nproc_per_node[= ](\d+)")
HEAD = re.compile(r"^(?:Running P(?:ython|yTorch)|Hyperparameters:|=== seed|command=)")


def read_size(log: ParsedLog, text: str, where: str) -> None:
    """`<label>: N bytes` pieces of a line (pieces are split at ` | `)."""
    for piece in text.split(" | "):
        if m := SIZE.match(piece.strip()):
            name = slug(m[1])
            log.sizes[name] = _number(m[2], m[1], where, int)
            if name.startswith("serialized_model_"):
                log.compressed_bytes = log.sizes[name]
                if m[3] is not None:
                    log.payload_bytes = _number(m[3], "payload", where, int)
            elif name.startswith("total_submission_size_") or name == "total_submission":
                log.artifact_bytes = log.sizes[name]


def read_final(log: ParsedLog, text: str, where: str) -> None:
    """A final-metric line: NAME [words] val_loss:X val_bpb:Y [eval_time:Tms] ..."""
    fields = list(NUMERIC_FIELD.finditer(text))
    name = slug(text[: fields[0].start()]) if fields else ""
    if not name:
        return
    values = {}
    for m in fields:
        key, value = m[1], text[m.start(2) :].split()[0].rstrip(",)")
        if key in ("val_loss", "val_bpb"):
            values[key] = _number(value, key, where)
        elif key in ("eval_time", "time"):
            values["eval_time_ms"] = _ms(value, key, where)
    log.finals.pop(name, None)  # keep the order of last printing
    log.finals[name] = values


def read_config(log: ParsedLog, text: str, where: str) -> None:
    """parameter-golf's `key:value ...` config lines and `key: value` hyperparameter lines."""
    for key, value in re.findall(r"(\w+):\s*(\S+)", text):
        if key == "model_params":
            log.n_params = _number(value, key, where, int)
        elif key in CFG_KEYS:
            log.config[CFG_KEYS[key]] = _config_value(value, key, where)
    if "train.world_size" in log.config:
        log.world_size = log.config["train.world_size"]


def _config_value(text: str, name: str, where: str):
    if text in ("True", "False"):
        return text == "True"
    try:
        return int(text)
    except ValueError:
        return _number(text, name, where)


def read_header(log: ParsedLog, text: str, state: dict) -> None:
    """Versions, the device and the GPUs running python (nvidia-smi)."""
    if m := TORCH.match(text):
        log.torch = m[1]
    if m := CUDA.search(text):
        log.cuda = m[1]
    if log.device is None and (m := GPU_ROW.match(text) or GPU_LIST.match(text)):
        log.device = m[1]
    if m := PROCESS_ROW.match(text):
        state["gpus"].add(m[1])
    elif m := NPROC.search(text):
        state["nproc"] = int(m[1])


def golf_other(log: ParsedLog, text: str, where: str, state: dict) -> None:
    """A line that is not a step line."""
    if m := PEAK_MEMORY.match(text):
        log.peak_memory_mb = _number(m[1], "peak memory", where)
    elif " bytes" in text:
        read_size(log, text, where)
    elif m := BUDGET.match(text):
        log.sizes["budget"] = log.artifact_bytes = _number(m[1], "budget", where, int)
    elif FINAL.search(text):
        read_final(log, text, where)
    elif m := STOPPING.match(text):
        state["times"][int(m[2])] = _ms(m[1], "train_time", where) / 1000
    elif text.startswith(CONFIG_LEADS) and re.match(r"\w+:", text):
        read_config(log, text, where)
    elif m := N_PARAMS.match(text):
        log.n_params = _count(m[1], "parameters", where)
    else:
        read_header(log, text, state)


def golf_head(text: str) -> bool:
    """Does this line open a run (when it comes between two runs)?"""
    return bool(
        SEED.search(text) or TRIAL.match(text) or HEAD.match(text)
        or (text.startswith(CONFIG_LEADS) and re.match(r"\w+:", text))
    )  # fmt: skip


# ------------------------------------------------------------------------------------------------
# nanochat (scripts/base_train.py)

NANOCHAT_STEP = re.compile(r"^step (\d+)/(\d+) \([\d.]+%\) \| (.*)$")
NANOCHAT_VAL = re.compile(r"^Step (\d+) \| Validation bpb: (\S+)$")
NANOCHAT_CORE = re.compile(r"^Step (\d+) \| CORE metric: (\S+)$")
NANOCHAT_LINES = {  # pattern -> what it sets (see nanochat_other)
    "gpu": re.compile(r"^GPU: (.+?) \| Peak FLOPS"),
    "params": re.compile(r"^total\s*:\s*([\d,]+)$"),
    "rank_batch": re.compile(r"^Tokens / micro-batch / rank: (\d+) x (\d+) = ([\d,]+)$"),
    "world_batch": re.compile(r"^Tokens / micro-batch: ([\d,]+)$"),
    "batch": re.compile(r"^Total batch size ([\d,]+) => gradient accumulation steps: (\d+)$"),
    "peak": re.compile(r"^Peak memory usage: ([\d.]+)\s*MiB$"),
    "time": re.compile(r"^Total training time: ([\d.]+m)$"),
    "min_bpb": re.compile(r"^Minimum validation bpb: (\S+)$"),
}


def nanochat_step(text: str, where: str) -> Step | None:
    """A train step line (N+1 steps done) or a validation line (N steps done)."""
    if m := NANOCHAT_VAL.match(text):
        return Step(int(m[1]), None, {"val_bpb": _number(m[2], "Validation bpb", where)})
    if not (m := NANOCHAT_STEP.match(text)):
        return None
    step, fields = int(m[1]), {}
    for part in m[3].split(" | "):
        key, _, value = part.partition(": ")
        if key == "loss":
            fields["train_loss"] = _number(value, key, where)
        elif key == "total time":
            fields["time_ms"] = _ms(value, key, where)
    if step > 10 and "time_ms" in fields:  # nanochat's clock leaves out steps 0..10
        fields["step_avg_ms"] = fields["time_ms"] / (step - 10)
    return Step(step + 1, int(m[2]), fields)


def nanochat_other(log: ParsedLog, text: str, where: str, state: dict) -> None:
    found = {k: m for k, p in NANOCHAT_LINES.items() if (m := p.match(text))}
    if m := found.get("gpu"):
        log.device = m[1]
    if m := found.get("params"):
        log.n_params = _count(m[1], "total parameters", where)
    if m := found.get("rank_batch"):
        log.config["train.seq_len"] = _count(m[2], "seq len", where)
        state["rank_tokens"] = _count(m[3], "tokens per rank", where)
    if (m := found.get("world_batch")) and state.get("rank_tokens"):
        log.world_size = _count(m[1], "tokens per micro-batch", where) // state["rank_tokens"]
    if m := found.get("batch"):
        log.config["train.batch_tokens"] = _count(m[1], "total batch size", where)
        log.config["train.grad_accum_steps"] = _count(m[2], "grad accum steps", where)
    if m := found.get("peak"):
        log.peak_memory_mb = _number(m[1], "Peak memory usage", where)
    if m := found.get("time"):
        state["train_time_s"] = _ms(m[1], "Total training time", where) / 1000
    if m := found.get("min_bpb"):
        log.finals["minimum_validation_bpb"] = {"val_bpb": _number(m[1], "bpb", where)}
    if m := NANOCHAT_CORE.match(text):
        core = _number(m[2], "CORE metric", where)
        log.finals["core_metric"] = {"core_metric": core}
        state["extra_points"].append(Point(int(m[1]), NAN, "core_metric", core))


def nanochat_head(text: str) -> bool:
    return text.startswith(("GPU: ", "Vocab size: ", "Model config:"))


# ------------------------------------------------------------------------------------------------
# A declared spec: {"step": regex, "final": {name: regex}, "seed": regex}

SPEC_STEP_GROUPS = {"step", "total", "train_loss", "val_loss", "val_bpb", "time_ms", "time_s"}


def _compile(pattern, what: str) -> re.Pattern:
    if not isinstance(pattern, str):
        raise ValueError(f"log format spec: {what} must be a regex string, not {pattern!r}")
    try:
        return re.compile(pattern)
    except re.error as e:
        raise ValueError(f"log format spec: {what}: bad regex {pattern!r}: {e}") from None


def compile_spec(spec: dict) -> tuple[re.Pattern, dict, re.Pattern | None]:
    """(step, {name: final}, seed) regexes of a declared spec, checked."""
    unknown = set(spec) - {"step", "final", "seed"}
    if unknown or "step" not in spec:
        raise ValueError(
            f"log format spec: keys are step (required), final, seed; got {sorted(spec)}"
        )
    step = _compile(spec["step"], "step")
    if "step" not in step.groupindex or set(step.groupindex) - SPEC_STEP_GROUPS:
        raise ValueError(
            f"log format spec: the step regex needs the group (?P<step>...) and may have "
            f"{', '.join(sorted(SPEC_STEP_GROUPS - {'step'}))}; it has {sorted(step.groupindex)}"
        )
    finals = {name: _compile(p, f"final {name}") for name, p in spec.get("final", {}).items()}
    seed = _compile(spec["seed"], "seed") if "seed" in spec else None
    if seed is not None and "seed" not in seed.groupindex:
        raise ValueError("log format spec: the seed regex needs the group (?P<seed>...)")
    return step, finals, seed


def spec_step(pattern: re.Pattern) -> Callable[[str, str], Step | None]:
    def step(text: str, where: str) -> Step | None:
        if not (m := pattern.search(text)):
            return None
        groups = {k: v for k, v in m.groupdict().items() if v is not None}
        total = groups.pop("total", None)
        number = _number(groups.pop("step"), "step", where, int)
        fields = {k: _number(v, k, where) for k, v in groups.items()}
        if "time_s" in fields:
            fields["time_ms"] = 1000 * fields.pop("time_s")
        return Step(number, None if total is None else _number(total, "total", where, int), fields)

    return step


def spec_other(finals: dict[str, re.Pattern]):
    def other(log: ParsedLog, text: str, where: str, state: dict) -> None:
        for name, pattern in finals.items():
            if m := pattern.search(text):
                values = {k: _number(v, k, where) for k, v in m.groupdict().items() if v}
                log.finals.pop(name, None)
                log.finals[name] = values

    return other


# ------------------------------------------------------------------------------------------------
# Formats, detection and refusals


@dataclass(frozen=True)
class Grammar:
    source: str
    step: Callable[[str, str], Step | None]  # (line, where) -> a step line's numbers or None
    other: Callable[[ParsedLog, str, str, dict], None]  # reads any other line
    head: Callable[[str], bool]  # does the line open a run?
    seed: Callable[[str], int | None]


def _seed(pattern: re.Pattern | None) -> Callable[[str], int | None]:
    def seed(text: str) -> int | None:
        m = pattern.search(text) if pattern is not None else None
        return int(m["seed"]) if m and m["seed"] else None

    return seed


GOLF = dict(step=golf_step, other=golf_other, head=golf_head, seed=_seed(SEED))
NANOCHAT = Grammar("nanochat", nanochat_step, nanochat_other, nanochat_head, _seed(SEED))
STEP_HINT = {
    "nanochat": "`step N/M (..%) | loss: ...` or `Step N | Validation bpb: ...`",
    "declared": "lines matching the declared step regex",
}
GOLF_HINT = "`step:N/M ...`, `N/M train_loss: ...` or `s:N trl:...`"


def grammar(fmt, lines: list[Line | Dump]) -> Grammar:
    if isinstance(fmt, dict):
        step, finals, seed = compile_spec(fmt)
        seed_of = _seed(seed)
        opens = lambda text: seed_of(text) is not None  # noqa: E731
        return Grammar("declared", spec_step(step), spec_other(finals), opens, seed_of)
    name = ALIASES.get(fmt, fmt)
    if name == "auto":
        name = detect(lines)
    if name == "nanochat":
        return NANOCHAT
    if name in ("parameter_golf", "modded"):
        return Grammar(name, **GOLF)
    raise ValueError(
        f"unknown log format {fmt!r}: use auto, {', '.join(FORMATS)}, "
        f"{', '.join(ALIASES)} or a spec dict"
    )


def detect(lines: list[Line | Dump]) -> str:
    """nanochat, parameter_golf or modded, from the lines each prints."""
    texts = [line.text for line in lines if isinstance(line, Line)]
    if any(NANOCHAT_STEP.match(t) or NANOCHAT_VAL.match(t) for t in texts):
        return "nanochat"
    steps = [t for t in texts if GOLF_STEP.match(t) or LLMC_STEP.match(t)]
    golf = ("model_params:", "train_batch_tokens:", "val_bpb:enabled", "Serialized model")
    if any(t.startswith(golf) for t in texts) or any("val_bpb" in t for t in steps):
        return "parameter_golf"
    return "modded"


KEY_VALUE = re.compile(r"^[\w.-]+=")
STDERR = re.compile(r"^(?:[WEI]\d{4} \d\d:\d\d|Traceback |File \"|\w+(?:Error|Warning)\b)")
EVAL_RESULT = re.compile(r"val_(?:loss|bpb)\"?\s*[:=]\s*[-+.\d]")


def why_not(lines: list[Line | Dump], source: str) -> str:
    """Why a file with no step lines is not a train log."""
    texts = [line.text for line in lines if isinstance(line, Line)]
    if not texts:
        return "source code only, no log lines" if lines else "empty file"
    if any(GOLF_STEP.match(t) or LLMC_STEP.match(t) or NANOCHAT_STEP.match(t) for t in texts):
        return f"no step lines ({STEP_HINT.get(source, GOLF_HINT)})"  # but another format's
    if sum(map(bool, map(KEY_VALUE.match, texts))) >= 0.8 * len(texts):
        return "metadata (key=value lines), no step lines"
    if any(EVAL_RESULT.search(t) for t in texts):
        return "an evaluation without training: final metrics but no step lines"
    if sum(map(bool, map(STDERR.match, texts))) >= 0.5 * len(texts):
        return "a stderr dump (warnings, tracebacks), no step lines"
    return f"no step lines ({STEP_HINT.get(source, GOLF_HINT)})"


# ------------------------------------------------------------------------------------------------
# Trials

Item = tuple[Line, Step | None] | Dump  # a line and its step numbers, or a source dump


def classify(lines: list[Line | Dump], g: Grammar, path: str) -> list[Item]:
    return [line if isinstance(line, Dump) else (line, g.step(line.text, f"{path}:{line.no}"))
            for line in lines]  # fmt: skip


def split_trials(items: list[Item], g: Grammar) -> list[list[Item]]:
    """A step number going back starts a trial; the lines between go as the docstring says."""
    trials: list[list[Item]] = [[]]
    last, gap = None, 0  # the last step number; where the lines after the last step line begin
    for item in items:
        step = None if isinstance(item, Dump) else item[1]
        if step is not None and last is not None and step.step < last:
            cur = trials[-1]
            opens = (i for i in range(gap, len(cur)) if _opens(cur[i], g))
            k = next(opens, len(cur))
            trials[-1:] = [cur[:k], cur[k:]]
        trials[-1].append(item)
        if step is not None:
            last, gap = step.step, len(trials[-1])
    return trials


def _opens(item: Item, g: Grammar) -> bool:
    return isinstance(item, Dump) or g.head(item[0].text)


def build(items: list[Item], g: Grammar, path: str, trial: int) -> ParsedLog:
    log = ParsedLog(path=path, source=g.source, trial=trial)
    state = {"times": {}, "gpus": set(), "nproc": None, "extra_points": []}
    before, after = [], []  # seeds printed before the first step line, and after it
    for item in items:
        if isinstance(item, Dump):
            if log.code_sha256 is None or not state.get("stepped"):
                log.code_sha256 = item.sha256
            continue
        line, step = item
        if step is not None:
            read_step(log, step, state)
            continue
        g.other(log, line.text, f"{path}:{line.no}", state)
        if (seed := g.seed(line.text)) is not None:
            (after if state.get("stepped") else before).append(seed)
    log.seed = before[-1] if before else after[0] if after else None
    finish(log, state)
    return log


def read_step(log: ParsedLog, step: Step, state: dict) -> None:
    """A step line: the run's progress and a curve point per loss field."""
    fields = step.fields
    time_s = fields.get("time_ms", NAN) / 1000
    if "time_ms" in fields:
        state["times"][step.step] = time_s
    log.steps = step.step
    if step.total is not None:
        log.steps_planned = step.total
    if "step_avg_ms" in fields:
        log.step_avg_ms = fields["step_avg_ms"]
    for metric in METRICS:
        if metric in fields:
            setattr(log, metric, fields[metric])
            log.points.append(Point(step.step, time_s, metric, fields[metric]))
    state["stepped"] = True


def finish(log: ParsedLog, state: dict) -> None:
    """What follows from the lines read: times of points, totals, config, the headline."""
    times = state["times"]
    log.points = [
        p._replace(time_s=times[p.step]) if math.isnan(p.time_s) and p.step in times else p
        for p in [*log.points, *state["extra_points"]]
    ]
    log.train_time_s = state.get("train_time_s", times[max(times)] if times else NAN)
    if math.isnan(log.step_avg_ms) and log.steps > 0:
        log.step_avg_ms = 1000 * log.train_time_s / log.steps
    if math.isnan(log.world_size) and (state["gpus"] or state["nproc"]):
        log.world_size = len(state["gpus"]) or state["nproc"]
    cfg = log.config
    if not math.isnan(log.steps_planned):
        cfg.setdefault("train.steps", int(log.steps_planned))
    tokens, seq_len = cfg.get("train.batch_tokens"), cfg.get("train.seq_len")
    if tokens and seq_len and tokens % seq_len == 0:
        cfg["train.batch_seqs"] = tokens // seq_len
    if log.seed is not None:
        cfg.setdefault("train.seed", log.seed)
    pick_headline(log)


NOT_HEADLINE = re.compile(r"^(?:diagnostic|pre_?quant)|post_ema$")


def pick_headline(log: ParsedLog) -> None:
    """The last final line with a score, not a diagnostic; an earlier one it repeats is named."""
    scored = [n for n, v in log.finals.items() if {"val_loss", "val_bpb"} & v.keys()]
    names = [n for n in scored if not NOT_HEADLINE.search(n)]
    if not names:
        return

    def score(name):
        return log.finals[name].get("val_loss"), log.finals[name].get("val_bpb")

    log.headline = next(n for n in names if score(n) == score(names[-1]))
    log.q_val_loss = log.finals[log.headline].get("val_loss", NAN)
    log.q_val_bpb = log.finals[log.headline].get("val_bpb", NAN)


def drop_echoes(logs: list[ParsedLog]) -> list[ParsedLog]:
    """A trial whose step lines all are the trial's before it is that run again: the console
    capture before the log file (the same lines: the later is kept) or a runner's excerpt of the
    last lines (fewer: it is dropped)."""
    out: list[ParsedLog] = []
    for log in logs:
        seen = _points(out[-1]) if out else set()
        if log.points and _points(log) == seen:
            out[-1] = log
        elif not (log.points and _points(log) <= seen):
            out.append(log)
    for i, log in enumerate(out):
        log.trial = i
    return out


def _points(log: ParsedLog) -> set:
    return {(p.step, p.metric, repr(p.value)) for p in log.points}


# ------------------------------------------------------------------------------------------------
# The interface


def parse_text(text: str, fmt="auto", path: str = "<text>") -> list[ParsedLog]:
    """The trials of a log's text, in order (fmt: auto, one of FORMATS or ALIASES, a spec)."""
    lines = data_lines(text)
    g = grammar(fmt, lines)
    items = classify(lines, g, path)
    if not any(not isinstance(item, Dump) and item[1] is not None for item in items):
        raise NotATrainLog(f"{path}: not a training log: {why_not(lines, g.source)}")
    trials = split_trials(items, g)
    return drop_echoes([build(t, g, path, i) for i, t in enumerate(trials)])


def parse_runs(path: str | Path, fmt="auto") -> list[ParsedLog]:
    """The trials of a log file, in file order."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such log file") from None
    return parse_text(text, fmt, str(path))


def parse_log(path: str | Path, fmt="auto", run: int | None = None) -> ParsedLog:
    """The only trial of a log file, or its trial `run` (0-based)."""
    runs = parse_runs(path, fmt)
    if run is None and len(runs) > 1:
        seeds = ", ".join(str(r.seed) for r in runs)
        raise ValueError(
            f"{path}: holds {len(runs)} runs (seeds {seeds}): "
            f"choose one with run=0..{len(runs) - 1}"
        )
    if run is not None and not 0 <= run < len(runs):
        raise ValueError(f"{path}: run {run} asked for, the file holds {len(runs)} run(s)")
    return runs[run or 0]


def format_option(text: str):
    """A format as a command line gives it: auto, a name, an alias, or a spec as a JSON
    object; ValueError naming the choices otherwise."""
    import json

    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"a spec format is a JSON object: {e}") from None
    if text not in ("auto", *FORMATS, *ALIASES):
        names = ", ".join(("auto", *FORMATS, *ALIASES))
        raise ValueError(f"unknown log format {text!r}: use {names} or a spec")
    return text
