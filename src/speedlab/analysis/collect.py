"""Per-run outputs -> the study's tables: runs.parquet (a row per run), curves.parquet (long).

Both tables have typed columns; COLUMNS below is their documented schema (`python -m
speedlab.analysis.collect --schema` prints it as a Markdown table). runs.parquet also has one
`cfg.<dotted.key>` column per resolved config key (for imported runs, the keys their log states).
Runs made with other tools (`analysis.import_logs`) join the same tables with their `source`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from speedlab.analysis.curves import add_target_columns
from speedlab.analysis.imports import ImportsError, table_rows
from speedlab.analysis.options import REQUIRED, add_options
from speedlab.config import flatten
from speedlab.files import atomic_path

# runs.parquet: name -> (pandas dtype, meaning). Nullable dtypes where a source may not know.
COLUMNS = {
    "study": ("string", "study name"),
    "condition": ("string", "condition name"),
    "seed": ("int64", "training seed"),
    "is_baseline": ("bool", "the condition is the study's baseline"),
    "source": ("string", "speedlab, or the tool an imported log came from"),
    "config_hash": ("string", "hash of the resolved run config (speedlab runs)"),
    "steps": ("Int64", "optimizer steps taken"),
    "steps_planned": ("Int64", "train.steps"),
    "tokens": ("Int64", "training tokens seen"),
    "train_time_s": ("float64", "training time in seconds, validation excluded"),
    "world_size": ("Int64", "processes (GPUs) of the run"),
    "gpu_hours": ("float64", "train_time_s x world_size / 3600 on GPUs; 0 for CPU runs"),
    "n_params": ("Int64", "model parameters"),
    "train_loss": ("float64", "last training loss"),
    "val_loss": ("float64", "final validation loss (nats/token), before quantization"),
    "val_bpb": ("float64", "final validation bits per byte, before quantization"),
    "q_val_loss": ("float64", "validation loss after the int8+zlib roundtrip"),
    "q_val_bpb": ("float64", "validation bits per byte after the int8+zlib roundtrip"),
    "payload_bytes": ("Int64", "int8 payload bytes before compression"),
    "compressed_bytes": ("Int64", "int8+zlib model bytes"),
    "artifact_bytes": ("Int64", "compressed model + code bytes"),
    "diverged": ("bool", "training stopped on a NaN/inf loss"),
    "mfu": ("float64", "model FLOPs utilisation (GPU runs)"),
    "model_flops": ("float64", "training FLOPs: flops_per_token (6N + attention) x tokens"),
    "peak_memory_mb": ("float64", "peak GPU memory (MiB), or peak RSS on a CPU"),
    "device": ("string", "GPU name or cpu"),
    "host": ("string", "host name"),
    "torch": ("string", "torch version"),
    "cuda": ("string", "CUDA version of torch"),
    "git_commit": ("string", "speedlab commit that trained the run"),
    "git_dirty": ("boolean", "the checkout had uncommitted changes"),
    "slurm_job_id": ("string", "SLURM job id, when run under SLURM"),
    "resumed_from_step": ("Int64", "step the run resumed from after a preemption"),
    "log_path": ("string", "the log (or table) an imported run was read from"),
    "step_avg_ms": ("float64", "mean step time (ms) as the trainer logged it"),
    "code_sha256": ("string", "sha256 of the script source an imported log begins with"),
    "pooled": ("bool", "the run's arm pools runs of different code or config (pool: true)"),
    "steps_to_target": ("float64", "step the validation curve first reaches curve_target"),
    "time_to_target": ("float64", "training time (s) at which it does"),
    "target_censored": ("bool", "never reached the target: the two hold the run's last point"),
    "hellaswag_acc": ("float64", "HellaSwag accuracy, completion-style (eval.hellaswag)"),
    "hellaswag_lo": ("float64", "its 95% Wilson interval's lower end"),
    "hellaswag_hi": ("float64", "its 95% Wilson interval's upper end"),
    "hellaswag_n": ("Int64", "HellaSwag examples scored"),
}

CURVE_METRICS = ("train_loss", "val_loss", "val_bpb")


def run_row(run_dir: Path, baseline: str) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    roundtrip = json.loads((run_dir / "roundtrip.json").read_text())
    provenance = json.loads((run_dir / "provenance.json").read_text())
    world = provenance["world_size"]
    on_gpu = provenance["device"] != "cpu"
    row = {
        **{k: v for k, v in summary.items() if k in COLUMNS},
        **{k: v for k, v in roundtrip.items() if k in COLUMNS and k not in summary},
        **{k: v for k, v in provenance.items() if k in COLUMNS and k not in summary},
        "is_baseline": summary["condition"] == baseline,
        "source": summary.get("source", "speedlab"),  # "command": the user's own script
        "world_size": world,
        "gpu_hours": summary["train_time_s"] * world / 3600 if on_gpu else 0.0,
    }
    # (An empty mapping, such as a speedlab run's params, is stored as "{}": Parquet has no
    # empty struct.)
    row.update(
        {f"cfg.{k}": "{}" if v == {} else v for k, v in flatten(provenance["config"]).items()}
    )
    # An external script's final lines and sizes, under the names its log prints.
    for name, fields in summary.get("finals", {}).items():
        row.update({f"log.{name}.{f}": v for f, v in fields.items()})
    row.update({f"log.{name}": v for name, v in summary.get("sizes", {}).items()})
    return row


def curve_rows(run_dir: Path, study: str, condition: str, seed: int) -> list[dict]:
    rows = []
    with open(run_dir / "metrics.jsonl") as f:
        for line in f:
            rec = json.loads(line)
            for metric in CURVE_METRICS:
                if metric in rec:
                    rows.append(
                        dict(
                            study=study,
                            condition=condition,
                            seed=seed,
                            step=rec["step"],
                            tokens=rec["tokens"],
                            time_s=rec["time_s"],
                            metric=metric,
                            value=rec[metric],
                        )
                    )
    return rows


def typed_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The documented columns first, in order and with their dtypes, then the cfg.* columns."""
    runs = runs.copy()
    for name, (dtype, _) in COLUMNS.items():
        if name not in runs:
            runs[name] = False if dtype == "bool" else pd.NA if dtype != "float64" else float("nan")
        if dtype == "bool":
            runs[name] = runs[name].astype("boolean").fillna(False).astype(bool)
        elif dtype == "float64":
            runs[name] = pd.to_numeric(runs[name], errors="raise").astype("float64")
        else:
            runs[name] = runs[name].astype(dtype)
    cfg = sorted(c for c in runs.columns if c.startswith("cfg."))
    logged = sorted(c for c in runs.columns if c.startswith("log."))
    for name in logged:  # the numbers of the final lines a log prints
        runs[name] = pd.to_numeric(runs[name], errors="coerce").astype("float64")
    return runs[[*COLUMNS, *cfg, *logged]]


# curves.parquet: its columns in order, and the typed ones.
CURVE_COLUMNS = ("study", "condition", "seed", "step", "tokens", "time_s", "metric", "value")
CURVE_DTYPES = {
    "seed": "int64",
    "step": "int64",
    "tokens": "int64",
    "time_s": "float64",
    "value": "float64",
}


def typed_curves(curves: pd.DataFrame) -> pd.DataFrame:
    return curves.astype(CURVE_DTYPES)


def collect(
    summaries: list[Path],
    baseline: str,
    imported: list[tuple[Path, Path]] = (),
    curve_target: dict | None = None,
    pooled: list[str] = (),
    import_metrics: dict | None = None,
    tables: list[dict] = (),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tables of the study's runs (speedlab's and external commands') plus imported
    (runs.parquet, curves.parquet) pairs; with a curve_target, the steps and time each run took
    to reach it (analysis.curves). pooled: the imported runs.parquet whose entry says pool;
    import_metrics: runs.parquet -> {metric: line.field} (the entry's `metrics`); tables:
    published per-seed tables, {table, condition (or None: all rows), pool}."""
    runs, curves = [], []
    for summary in summaries:
        run_dir = Path(summary).parent
        row = run_row(run_dir, baseline)
        runs.append(row)
        curves += curve_rows(run_dir, row["study"], row["condition"], row["seed"])
    frames = [pd.DataFrame(runs)] if runs else []
    curve_frames = [pd.DataFrame(curves)] if curves else []
    for runs_path, curves_path in imported:
        other = pd.read_parquet(runs_path)
        other["is_baseline"] = other["condition"] == baseline
        other["pooled"] = str(runs_path) in map(str, pooled)
        map_metrics(other, (import_metrics or {}).get(str(runs_path), {}), runs_path)
        frames.append(other)
        curve_frames.append(pd.read_parquet(curves_path))
    for entry in tables:
        other = table_frames(entry["table"], entry["study"], entry["condition"])[0]
        other["is_baseline"], other["pooled"] = other["condition"] == baseline, entry["pool"]
        frames.append(other)
    runs_df = pd.concat(frames, ignore_index=True).sort_values(["condition", "seed"], kind="stable")
    check_unique(runs_df)
    runs_df = mark_pooled(runs_df.reset_index(drop=True))
    curves_df = typed_curves(pd.concat(curve_frames, ignore_index=True)) if curve_frames else (
        typed_curves(pd.DataFrame(columns=list(CURVE_COLUMNS))))  # fmt: skip
    runs_df = add_target_columns(runs_df, curves_df, curve_target)
    return typed_runs(runs_df), curves_df


def map_metrics(runs: pd.DataFrame, mapping: dict, where) -> None:
    """Set each mapped metric from the final line the log printed (its log.<line>.<field>)."""
    for metric, spec in mapping.items():
        column = f"log.{spec}"
        if column not in runs:
            printed = ", ".join(c.removeprefix("log.") for c in runs if c.startswith("log."))
            raise ValueError(
                f"{where}: imports metrics.{metric}: the log has no final line {spec} "
                f"(it prints: {printed or 'none'})"
            )
        runs[metric] = runs[column]


def _origin(row) -> str:
    path = row.get("log_path")
    return f"{path}" if isinstance(path, str) else f"{row['source']} run"


def check_unique(runs: pd.DataFrame) -> None:
    """A (condition, seed) counted twice makes one seed look like two: an error naming both."""
    dup = runs[runs.duplicated(["condition", "seed"], keep=False)]
    if not dup.empty:
        first = dup.iloc[0]
        both = dup[(dup["condition"] == first["condition"]) & (dup["seed"] == first["seed"])]
        raise ValueError(
            f"condition {first['condition']!r} seed {first['seed']} comes from "
            + " and from ".join(_origin(r) for _, r in both.iterrows())
        )


def identity(row) -> tuple:
    """What must agree among the runs of one arm: the resolved config (runs speedlab starts),
    else the script's code hash and the config the log states, seeds aside."""
    if isinstance(row.get("config_hash"), str):
        return ("config", row["config_hash"])
    cfg = tuple(sorted((k, str(v)) for k, v in row.items() if k.startswith("cfg.")
                       and k != "cfg.train.seed" and v == v))  # fmt: skip
    code = row.get("code_sha256")
    return ("log", code if isinstance(code, str) else None, cfg)


def mark_pooled(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs of one arm that differ in config or code are an error, unless their entries say
    `pool: true`: then the whole arm is marked pooled (the report says so). Published tables
    state no config and are not compared."""
    runs = runs.copy()
    runs["pooled"] = runs.get("pooled", False)
    runs["pooled"] = runs["pooled"].fillna(False).astype(bool)
    for condition, arm in runs.groupby("condition", sort=False):
        known = arm[arm["source"] != "table"]
        kinds = {identity(r) for _, r in known.iterrows()}
        if len(kinds) <= 1:
            continue
        if not known["pooled"].any():
            raise ValueError(
                f"condition {condition!r} pools runs of different code or config: "
                + "; ".join(f"{_origin(r)} seed {r['seed']}" for _, r in known.iterrows())
                + ". Import them under different conditions, or set pool: true on their "
                "imports entry (the report then flags the arm as pooled)"
            )
        runs.loc[arm.index, "pooled"] = True
    return runs


# A table's columns that become runs.parquet columns: every numeric column collect documents.
TABLE_TEXT = ("study", "condition", "source", "log_path")


def table_frames(path: str, study: str, condition: str | None = None):
    """(runs, curves) frames of a published per-seed table: one runs row per table row with
    source "table", the columns collect documents (val_bpb, q_val_bpb, steps, train_time_s,
    ...) as typed there, and no curve points."""
    rows = [r for r in table_rows(path) if condition is None or r["condition"] == condition]
    unknown = sorted(set(rows[0]) - set(COLUMNS) - {"condition", "seed"})
    if unknown:
        raise ImportsError(
            f"{path}: columns {', '.join(unknown)} are not runs.parquet columns (speedlab.analysis"
            ".collect --schema lists them, e.g. val_bpb, q_val_bpb, steps, train_time_s)"
        )
    frame = pd.DataFrame(rows).replace("", None)
    frame["study"], frame["source"], frame["log_path"] = study, "table", str(path)
    frame["condition"] = frame["condition"].astype(str)
    for name in set(frame.columns) - set(TABLE_TEXT):
        if COLUMNS.get(name, ("string",))[0] != "string":
            frame[name] = _numbers(frame[name], name, path)
    return typed_runs(frame), typed_curves(pd.DataFrame(columns=list(CURVE_COLUMNS)))


def _numbers(column, name: str, path: str):
    try:
        return pd.to_numeric(column, errors="raise")
    except (TypeError, ValueError):
        bad = next(
            v for v in column if pd.isna(pd.to_numeric(v, errors="coerce")) and v is not None
        )
        raise ImportsError(f"{path}: column {name}: {bad!r} is not a number") from None


def schema_markdown() -> str:
    lines = ["| column | type | meaning |", "|---|---|---|"]
    lines += [f"| `{k}` | {t} | {m} |" for k, (t, m) in COLUMNS.items()]
    lines.append(
        "| `cfg.<key>` | per key | every resolved config value, e.g. `cfg.optim.matrix_lr` |"
    )
    lines.append(
        "| `log.<line>.<field>` | float64 | each final line a trainer's log prints, under its "
        "printed name (e.g. `log.final_int6_sliding_window_exact.val_bpb`); `log.<size>`: "
        "the sizes it prints, in bytes |"
    )
    return "\n".join(lines)


OPTIONS = {
    "study": REQUIRED,
    "baseline": REQUIRED,
    "imports": [],  # [runs.parquet, curves.parquet] pairs from speedlab.analysis.import_logs
    "pooled": [],  # the runs.parquet of imports entries with pool: true
    "import_metrics": {},  # runs.parquet -> {metric: "final_line.field"}
    "tables": [],  # published per-seed tables: {table, condition, pool, study}
    "curve_target": None,  # {metric, value}: add steps_to_target, time_to_target
}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--schema", action="store_true", help="print the runs.parquet schema")
    add_options(p, OPTIONS)
    p.add_argument("--summaries", nargs="*", type=Path, default=[], help="the runs' summary.json")
    p.add_argument("--runs-out", type=Path)
    p.add_argument("--curves-out", type=Path)
    args = p.parse_args(argv)
    if args.schema:
        print(schema_markdown())
        return
    if not (args.options and args.runs_out and args.curves_out):
        p.error("--options, --runs-out and --curves-out are required")
    o = args.options
    pairs = [(Path(runs), Path(curves)) for runs, curves in o["imports"]]
    if not args.summaries and not pairs and not o["tables"]:
        p.error("no runs: give --summaries and/or imports or tables in --options")
    try:
        runs, curves = collect(
            args.summaries, o["baseline"], pairs, o["curve_target"], o["pooled"],
            o["import_metrics"], o["tables"],
        )  # fmt: skip
    except (ValueError, OSError) as e:
        raise SystemExit(f"speedlab.analysis.collect: {e}") from None
    with atomic_path(args.runs_out) as tmp:
        runs.to_parquet(tmp, index=False)
    with atomic_path(args.curves_out) as tmp:
        curves.to_parquet(tmp, index=False)
    print(f"{o['study']}: {len(runs)} runs, {len(curves)} curve points")


if __name__ == "__main__":
    main()
