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
    "peak_memory_mb": ("float64", "peak GPU memory (MiB), or peak RSS on a CPU"),
    "device": ("string", "GPU name or cpu"),
    "host": ("string", "host name"),
    "torch": ("string", "torch version"),
    "cuda": ("string", "CUDA version of torch"),
    "git_commit": ("string", "speedlab commit that trained the run"),
    "git_dirty": ("boolean", "the checkout had uncommitted changes"),
    "slurm_job_id": ("string", "SLURM job id, when run under SLURM"),
    "resumed_from_step": ("Int64", "step the run resumed from after a preemption"),
    "log_path": ("string", "the log an imported run was read from"),
    "steps_to_target": ("float64", "step the validation curve first reaches curve_target"),
    "time_to_target": ("float64", "training time (s) at which it does"),
    "target_censored": ("bool", "never reached the target: the two hold the run's last point"),
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
        "source": "speedlab",
        "world_size": world,
        "gpu_hours": summary["train_time_s"] * world / 3600 if on_gpu else 0.0,
    }
    row.update({f"cfg.{k}": v for k, v in flatten(provenance["config"]).items()})
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
            runs[name] = pd.NA if dtype not in ("bool", "float64") else float("nan")
        if dtype == "bool":
            runs[name] = runs[name].fillna(False).astype(bool)
        elif dtype == "float64":
            runs[name] = pd.to_numeric(runs[name], errors="raise").astype("float64")
        else:
            runs[name] = runs[name].astype(dtype)
    cfg = sorted(c for c in runs.columns if c.startswith("cfg."))
    return runs[[*COLUMNS, *cfg]]


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
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tables of the study's speedlab runs plus imported (runs.parquet, curves.parquet) pairs;
    with a curve_target, the steps and time each run took to reach it (analysis.curves)."""
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
        frames.append(other)
        curve_frames.append(pd.read_parquet(curves_path))
    runs_df = pd.concat(frames, ignore_index=True).sort_values(["condition", "seed"], kind="stable")
    curves_df = typed_curves(pd.concat(curve_frames, ignore_index=True))
    runs_df = add_target_columns(runs_df.reset_index(drop=True), curves_df, curve_target)
    return typed_runs(runs_df), curves_df


def schema_markdown() -> str:
    lines = ["| column | type | meaning |", "|---|---|---|"]
    lines += [f"| `{k}` | {t} | {m} |" for k, (t, m) in COLUMNS.items()]
    lines.append(
        "| `cfg.<key>` | per key | every resolved config value, e.g. `cfg.optim.matrix_lr` |"
    )
    return "\n".join(lines)


OPTIONS = {
    "study": REQUIRED,
    "baseline": REQUIRED,
    "imports": [],  # [runs.parquet, curves.parquet] pairs from speedlab.analysis.import_logs
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
    if not args.summaries and not pairs:
        p.error("no runs: give --summaries and/or imports in --options")
    try:
        runs, curves = collect(args.summaries, o["baseline"], pairs, o["curve_target"])
    except ValueError as e:
        raise SystemExit(f"speedlab.analysis.collect: --options {e}") from None
    with atomic_path(args.runs_out) as tmp:
        runs.to_parquet(tmp, index=False)
    with atomic_path(args.curves_out) as tmp:
        curves.to_parquet(tmp, index=False)
    print(f"{o['study']}: {len(runs)} runs, {len(curves)} curve points")


if __name__ == "__main__":
    main()
