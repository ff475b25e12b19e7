"""Per-run outputs -> the study's tables: runs.parquet (a row per run), curves.parquet (long).

runs.parquet: study, condition, seed, is_baseline, config_hash, steps, train_time_s, tokens,
val_loss, val_bpb (final, pre-quantization), q_val_loss, q_val_bpb (after int8+zlib),
compressed_bytes, diverged, then one `cfg.<dotted.key>` column per resolved config key.
curves.parquet: study, condition, seed, step, tokens, time_s, metric, value with metric one of
train_loss, val_loss, val_bpb.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from speedlab.config import flatten

CURVE_METRICS = ("train_loss", "val_loss", "val_bpb")


def run_row(run_dir: Path, baseline: str) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    roundtrip = json.loads((run_dir / "roundtrip.json").read_text())
    provenance = json.loads((run_dir / "provenance.json").read_text())
    row = {
        "study": summary["study"],
        "condition": summary["condition"],
        "seed": summary["seed"],
        "is_baseline": summary["condition"] == baseline,
        "config_hash": summary["config_hash"],
        "steps": summary["steps"],
        "train_time_s": summary["train_time_s"],
        "tokens": summary["tokens"],
        "n_params": summary["n_params"],
        "val_loss": summary["val_loss"],
        "val_bpb": summary["val_bpb"],
        "q_val_loss": roundtrip["q_val_loss"],
        "q_val_bpb": roundtrip["q_val_bpb"],
        "compressed_bytes": roundtrip["compressed_bytes"],
        "diverged": summary["diverged"],
        "device": provenance["device"],
        "host": provenance["host"],
        "torch": provenance["torch"],
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


def collect(summaries: list[Path], baseline: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    runs, curves = [], []
    for summary in summaries:
        run_dir = Path(summary).parent
        row = run_row(run_dir, baseline)
        runs.append(row)
        curves += curve_rows(run_dir, row["study"], row["condition"], row["seed"])
    runs_df = pd.DataFrame(runs).sort_values(["condition", "seed"], kind="stable")
    curves_df = pd.DataFrame(curves).astype(
        {"seed": "int64", "step": "int64", "tokens": "int64", "time_s": "float64"}
    )
    return runs_df.reset_index(drop=True), curves_df


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--study", required=True)
    p.add_argument("--baseline", required=True)
    p.add_argument("--summaries", nargs="+", type=Path, required=True)
    p.add_argument("--runs-out", type=Path, required=True)
    p.add_argument("--curves-out", type=Path, required=True)
    args = p.parse_args(argv)
    runs, curves = collect(args.summaries, args.baseline)
    runs.to_parquet(args.runs_out, index=False)
    curves.to_parquet(args.curves_out, index=False)
    print(f"{args.study}: {len(runs)} runs, {len(curves)} curve points")


if __name__ == "__main__":
    main()
