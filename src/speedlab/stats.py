"""Per-condition summaries and condition-vs-baseline t-tests over seeds.

Every statistic comes from numpy/scipy; this module only decides which runs count and how the
results are laid out. Metrics are treated as lower-is-better (loss, bpb, bytes).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

SUMMARY_COLUMNS = [
    "condition",
    "n_planned",
    "n",
    "mean",
    "sd",
    "sem",
    "ci_low",
    "ci_high",
]
COMPARE_COLUMNS = [
    "condition",
    "baseline",
    "diff",
    "diff_pct",
    "student_t",
    "student_df",
    "student_p",
    "welch_t",
    "welch_df",
    "welch_p",
    "verdict",
]
# The single CSV the pipeline keeps: what was measured, then the per-arm summary, then the test.
STATS_COLUMNS = ["metric", *SUMMARY_COLUMNS, *COMPARE_COLUMNS[1:], "alpha"]

BETTER = "better"
WORSE = "worse"
NO_DIFFERENCE = "no detectable difference"
INSUFFICIENT = "insufficient data"


def values(runs: pd.DataFrame, metric: str, condition: str) -> np.ndarray:
    """The metric's values for one condition over the seeds that count.

    A diverged run's final metric is not a draw from the condition's distribution (it is often
    NaN or a huge number), so it is excluded rather than allowed to dominate the mean.
    """
    if metric not in runs.columns:
        raise KeyError(f"metric {metric!r} is not a column of the runs table")
    rows = runs[(runs["condition"] == condition) & ~runs["diverged"].astype(bool)]
    vals = rows[metric].to_numpy(dtype=float)
    return vals[~np.isnan(vals)]


def _summary_row(x: np.ndarray, alpha: float) -> dict[str, float]:
    n = len(x)
    if n == 0:
        return {"mean": np.nan, "sd": np.nan, "sem": np.nan, "ci_low": np.nan, "ci_high": np.nan}
    mean = float(np.mean(x))
    if n < 2:
        return {"mean": mean, "sd": np.nan, "sem": np.nan, "ci_low": np.nan, "ci_high": np.nan}
    sd = float(np.std(x, ddof=1))
    sem = float(sps.sem(x, ddof=1))
    if sem > 0:
        lo, hi = sps.t.interval(1 - alpha, df=n - 1, loc=mean, scale=sem)
    else:
        # scipy gives NaN for scale=0; identical seeds mean a zero-width interval, not no data.
        lo = hi = mean
    return {"mean": mean, "sd": sd, "sem": sem, "ci_low": float(lo), "ci_high": float(hi)}


def summarize(
    runs: pd.DataFrame,
    metric: str,
    conditions: list[str],
    planned_seeds: int,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """One row per condition, in the given order: n planned/achieved, mean, sd, sem, t-interval."""
    rows = []
    for cond in conditions:
        x = values(runs, metric, cond)
        rows.append(
            {"condition": cond, "n_planned": planned_seeds, "n": len(x), **_summary_row(x, alpha)}
        )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS).astype({"n_planned": int, "n": int})


def verdict(diff: float, welch_p: float, n_cond: int, n_base: int, alpha: float = 0.05) -> str:
    """Plain-words outcome for a lower-is-better metric."""
    if n_cond < 2 or n_base < 2:
        return INSUFFICIENT
    # NaN p (both arms constant and equal) is as uninformative as a large p.
    if np.isnan(welch_p) or welch_p >= alpha:
        return NO_DIFFERENCE
    return BETTER if diff < 0 else WORSE


def compare(
    runs: pd.DataFrame,
    metric: str,
    baseline: str,
    conditions: list[str],
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Each non-baseline condition against the baseline: difference, Student and Welch t-tests."""
    base = values(runs, metric, baseline)
    base_mean = float(np.mean(base)) if len(base) else np.nan
    rows = []
    for cond in conditions:
        if cond == baseline:
            continue
        x = values(runs, metric, cond)
        row: dict[str, object] = {"condition": cond, "baseline": baseline}
        mean = float(np.mean(x)) if len(x) else np.nan
        row["diff"] = mean - base_mean
        row["diff_pct"] = 100.0 * (mean - base_mean) / base_mean if base_mean else np.nan
        if len(x) >= 2 and len(base) >= 2:
            student = sps.ttest_ind(x, base, equal_var=True)
            welch = sps.ttest_ind(x, base, equal_var=False)
            row.update(
                student_t=float(student.statistic),
                student_df=float(student.df),
                student_p=float(student.pvalue),
                welch_t=float(welch.statistic),
                welch_df=float(welch.df),
                welch_p=float(welch.pvalue),
            )
        else:
            row.update({k: np.nan for k in COMPARE_COLUMNS[4:10]})
        row["verdict"] = verdict(row["diff"], row["welch_p"], len(x), len(base), alpha)
        rows.append(row)
    return pd.DataFrame(rows, columns=COMPARE_COLUMNS)


def stats_table(
    runs: pd.DataFrame,
    metric: str,
    baseline: str,
    conditions: list[str],
    planned_seeds: int,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Summary joined with comparisons; the baseline's comparison cells stay empty."""
    if baseline not in conditions:
        raise ValueError(f"baseline {baseline!r} is not among conditions {conditions}")
    summary = summarize(runs, metric, conditions, planned_seeds, alpha)
    comparison = compare(runs, metric, baseline, conditions, alpha)
    table = summary.merge(comparison, on="condition", how="left")
    table.insert(0, "metric", metric)
    table["alpha"] = alpha
    return table[STATS_COLUMNS]


def write_stats(
    runs: pd.DataFrame,
    metric: str,
    baseline: str,
    conditions: list[str],
    planned_seeds: int,
    out_csv: str | Path,
    alpha: float = 0.05,
) -> pd.DataFrame:
    table = stats_table(runs, metric, baseline, conditions, planned_seeds, alpha)
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    # No float_format: pandas writes round-trippable reprs, so the report sees the exact numbers.
    table.to_csv(out_csv, index=False)
    return table


def split_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m speedlab.stats", description="Summarize a study and test vs baseline."
    )
    p.add_argument("--runs", required=True, type=Path, help="runs.parquet from speedlab.collect")
    p.add_argument("--metric", required=True, help="runs column to analyse, e.g. q_val_bpb")
    p.add_argument("--baseline", required=True, help="condition the others are compared against")
    p.add_argument("--conditions", required=True, type=split_list, help="comma-separated, ordered")
    p.add_argument("--planned-seeds", required=True, type=int, help="seeds planned per condition")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    p.add_argument("--out", required=True, type=Path, help="output CSV")
    args = p.parse_args(argv)
    runs = pd.read_parquet(args.runs)
    write_stats(
        runs, args.metric, args.baseline, args.conditions, args.planned_seeds, args.out, args.alpha
    )


if __name__ == "__main__":
    main()
