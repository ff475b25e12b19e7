"""Training logs made by other tools -> rows of speedlab's tables, to compare with speedlab runs.

    python -m speedlab.analysis.import_logs --study S --condition C --seed N [--run K] LOG \\
        --runs-out runs.parquet --curves-out curves.parquet

writes a one-row runs.parquet and a curves.parquet with the schemas of `speedlab.analysis.collect`
(`collect --imported runs.parquet curves.parquet` adds them to a study's tables).

The log is read by `speedlab.logformats` (its docstring describes the formats: parameter_golf,
modded, nanochat, auto, or a declared spec of regexes). A file holding several runs (trials) needs
`--run K` (0-based, in file order). The seed given must be the one the log prints, when it prints
one: a disagreement is an error naming the file.

The row holds collect's columns (step_avg_ms and artifact_bytes included), the `cfg.<key>`
columns of the config the log states, one `log.<name>.<field>` column per final-metric line
(`log.final_int6_sliding_window_exact.val_bpb`) and one `log.<size name>` column (bytes) per
size line (`log.total_submission_size_int6_lzma`). q_val_loss / q_val_bpb are the headline final
line's (the official score of a parameter-golf record).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

from speedlab.analysis.collect import CURVE_COLUMNS, typed_curves, typed_runs
from speedlab.files import atomic_path
from speedlab.logformats import (
    FORMATS,
    NotATrainLog,
    ParsedLog,
    format_option,
    parse_log,
    parse_runs,
)

__all__ = ["FORMATS", "NotATrainLog", "ParsedLog", "import_log", "parse_log", "parse_runs"]
NAN = float("nan")

# ParsedLog fields that go into the runs row as they are (peak_memory_mb in MiB, as speedlab's
# summary has it).
LOG_COLUMNS = (
    "steps", "steps_planned", "train_time_s", "world_size", "n_params", "train_loss", "val_loss",
    "val_bpb", "q_val_loss", "q_val_bpb", "payload_bytes", "compressed_bytes", "artifact_bytes",
    "diverged", "step_avg_ms", "peak_memory_mb", "device", "torch", "cuda", "code_sha256",
)  # fmt: skip


def import_log(
    path: str | Path,
    *,
    study: str,
    condition: str,
    seed: int,
    fmt="auto",
    baseline: str | None = None,
    run: int | None = None,
) -> tuple[dict, list[dict]]:
    """(runs row, curve rows) of one log (its trial `run`), in the schemas of collect."""
    log = parse_log(path, fmt, run)
    if log.seed is not None and log.seed != seed:
        trial = f" (run {run})" if run is not None else ""
        raise ValueError(f"{path}{trial}: seed {seed} given, the log says seed {log.seed}")
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
        **logged_columns(log),
    }
    ids = {"study": study, "condition": condition, "seed": seed}
    curves = [
        {**ids, "step": p.step, "tokens": p.step * per_step if per_step else -1,
         "time_s": p.time_s, "metric": p.metric, "value": p.value}
        for p in log.points
    ]  # fmt: skip
    return row, curves


def logged_columns(log: ParsedLog) -> dict:
    """`log.<final>.<field>` per final-metric line and `log.<size>` (bytes) per size line."""
    finals = {f"log.{n}.{k}": v for n, fields in log.finals.items() for k, v in fields.items()}
    return {**finals, **{f"log.{n}": float(v) for n, v in log.sizes.items()}}


def runs_frame(row: dict) -> pd.DataFrame:
    """The row with collect's typed columns (the cfg.* and log.* columns after them)."""
    return typed_runs(pd.DataFrame([row]))


def curves_frame(curves: list[dict]) -> pd.DataFrame:
    return typed_curves(pd.DataFrame(curves, columns=list(CURVE_COLUMNS)))


def log_format(text: str):
    """--format: auto, a format name, or a declared spec as a JSON object."""
    try:
        return format_option(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def main(argv=None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("log", type=Path, help="the train log to import")
    p.add_argument("--study", required=True)
    p.add_argument("--condition", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--run", type=int, help="the trial to import (0-based) of a multi-run file")
    p.add_argument("--format", dest="fmt", type=log_format, default="auto",
                   help="auto, parameter_golf, modded, nanochat, or a spec as JSON")  # fmt: skip
    p.add_argument("--baseline", help="the study's baseline condition (sets is_baseline)")
    p.add_argument("--runs-out", type=Path, required=True)
    p.add_argument("--curves-out", type=Path, required=True)
    args = p.parse_args(argv)
    try:
        row, curves = import_log(
            args.log, study=args.study, condition=args.condition, seed=args.seed,
            fmt=args.fmt, baseline=args.baseline, run=args.run,
        )  # fmt: skip
    except (OSError, ValueError) as e:
        raise SystemExit(f"import_logs: {e}") from None
    with atomic_path(args.runs_out) as tmp:
        runs_frame(row).to_parquet(tmp, index=False)
    with atomic_path(args.curves_out) as tmp:
        curves_frame(curves).to_parquet(tmp, index=False)
    score = "" if math.isnan(row["q_val_bpb"]) else f", q_val_bpb {row['q_val_bpb']:.4f}"
    print(
        f"{args.log}: {row['source']}, {row['steps']} steps, val_loss {row['val_loss']:.4f}"
        f"{score}, {len(curves)} curve points"
    )


if __name__ == "__main__":
    main()
