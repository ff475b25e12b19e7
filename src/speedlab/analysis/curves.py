"""Metrics read off the validation curve, and the decision rule followed step by step.

- steps_to_target / time_to_target: where a run's validation curve first reaches a target value
  (modded-nanogpt's records are "time to 3.28 val loss"), linearly interpolated between the last
  validation point above it and the first at or below it. A run that never reaches the target
  is censored, not dropped: target_censored is True and the columns hold its last validated step
  and time, a lower bound. Statistics treat them as "at least this" (analysis.decision).
- rule_steps: the study's rule (known_sigma, target, record) evaluated on the validation values
  at every step that every compared run logged, so each verdict uses the same step for all
  runs, and the earliest step at which it passes. Track 3 of modded-nanogpt reads its z rule so.

    python -m speedlab.analysis.curves --options JSON --curves curves.parquet \
        --runs runs.parquet --table-out rule_steps.csv --figure-out rule_over_steps.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from speedlab.analysis.options import REQUIRED, add_options
from speedlab.files import atomic_path

TARGET_COLUMNS = ("steps_to_target", "time_to_target", "target_censored")
CURVE_TARGET_METRICS = ("val_loss", "val_bpb")
STEP_RULES = ("known_sigma", "target", "record")
RULE_STEP_COLUMNS = [
    "metric",
    "step",
    "condition",
    "against",
    "n",
    "statistic",
    "threshold",
    "p",
    "passes",
    "earliest",
]


def check_target(target: dict) -> tuple[str, float]:
    """(metric, value) of a curve_target option; errors name the key."""
    metric = target.get("metric", "val_loss")
    if metric not in CURVE_TARGET_METRICS:
        raise ValueError(f"curve_target.metric: {metric!r} is not one of {CURVE_TARGET_METRICS}")
    value = target.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"curve_target.value: expected a number, got {value!r}")
    return metric, float(value)


def crossing(curve: pd.DataFrame, value: float) -> tuple[float, float, bool]:
    """(step, time, censored) where one run's curve (sorted by step) first reaches `value`."""
    y = curve["value"].to_numpy(float)
    steps, times = curve["step"].to_numpy(float), curve["time_s"].to_numpy(float)
    hit = np.flatnonzero(y <= value)
    if len(hit) == 0:
        return steps[-1], times[-1], True
    i = hit[0]
    if i == 0:
        return steps[0], times[0], False
    frac = (y[i - 1] - value) / (y[i - 1] - y[i])  # y[i-1] > value >= y[i]
    return (
        steps[i - 1] + frac * (steps[i] - steps[i - 1]),
        times[i - 1] + frac * (times[i] - times[i - 1]),
        False,
    )


def target_columns(curves: pd.DataFrame, metric: str, value: float) -> pd.DataFrame:
    """One row per run: study, condition, seed and the three TARGET_COLUMNS."""
    rows = []
    points = curves[curves["metric"] == metric].sort_values("step", kind="stable")
    for (study, condition, seed), curve in points.groupby(["study", "condition", "seed"]):
        step, time, censored = crossing(curve, value)
        rows.append(
            {
                "study": study,
                "condition": condition,
                "seed": seed,
                "steps_to_target": step,
                "time_to_target": time,
                "target_censored": censored,
            }
        )
    return pd.DataFrame(rows, columns=["study", "condition", "seed", *TARGET_COLUMNS])


def add_target_columns(runs: pd.DataFrame, curves: pd.DataFrame, target: dict | None):
    """runs with the TARGET_COLUMNS filled from the curves (NaN / False without a target or a
    curve of its metric)."""
    runs = runs.drop(columns=[c for c in TARGET_COLUMNS if c in runs])
    if target:
        metric, value = check_target(target)
        found = target_columns(curves, metric, value)
    else:
        found = pd.DataFrame(columns=["study", "condition", "seed", *TARGET_COLUMNS])
    keys = ["study", "condition", "seed"]
    found = found.astype({"study": object, "condition": object, "seed": "int64"})
    runs = runs.astype({"study": object, "condition": object, "seed": "int64"})
    merged = runs.merge(found, on=keys, how="left")
    merged["target_censored"] = merged["target_censored"].astype("boolean").fillna(False)
    return merged


# --- the rule over the validation steps ----------------------------------------------------


def _step_values(points: pd.DataFrame, condition: str, step: int) -> pd.Series:
    rows = points[(points["condition"] == condition) & (points["step"] == step)]
    return rows.set_index("seed")["value"].sort_index()


def common_steps(points: pd.DataFrame, conditions: list[str]) -> list[int]:
    """Validation steps every run of these conditions logged."""
    runs = points[points["condition"].isin(conditions)].groupby(["condition", "seed"])
    sets = [set(g["step"]) for _, g in runs]
    return sorted(set.intersection(*sets)) if sets else []


def _evaluate(x: pd.Series, ref: pd.Series | None, rule: dict, design: str) -> dict:
    """The rule on one step's values; records pair by seed as the study's design says."""
    from speedlab.analysis.decision import evaluate

    if ref is None:
        return evaluate(x.to_numpy(float), None, rule, paired=False)
    shared = x.index.intersection(ref.index)
    paired = design != "independent" and len(shared) >= 2
    if design == "auto":
        paired = paired and set(x.index) == set(ref.index)
    if paired:
        return evaluate(x[shared].to_numpy(float), ref[shared].to_numpy(float), rule, paired=True)
    return evaluate(x.to_numpy(float), ref.to_numpy(float), rule, paired=False)


def rule_steps(
    curves: pd.DataFrame,
    metric: str,
    rule: dict,
    conditions: list[str],
    baseline: str,
    design: str = "auto",
) -> pd.DataFrame:
    """The rule at each common validation step, per condition (record: each against the
    baseline; known_sigma / target: each, baseline included, against the value)."""
    if rule["rule"] not in STEP_RULES:
        raise ValueError(f"rule: {rule['rule']!r} is not followed over steps (only {STEP_RULES})")
    points = curves[curves["metric"] == metric]
    if points.empty:
        raise ValueError(f"metric: no {metric!r} points in the curves")
    record = rule["rule"] == "record"
    tested = [c for c in conditions if not (record and c == baseline)]
    rows = []
    for cond in tested:
        arms = [cond, baseline] if record else [cond]
        for step in common_steps(points, arms):
            ref = _step_values(points, baseline, step) if record else None
            x = _step_values(points, cond, step)
            result = _evaluate(x, ref, rule, design)
            rows.append(
                _step_row(metric, step, cond, baseline if record else None, rule, result, len(x))
            )
    table = pd.DataFrame(rows, columns=RULE_STEP_COLUMNS)
    first = table[table["passes"]].groupby("condition")["step"].transform("min")
    table["earliest"] = False
    table.loc[first.index, "earliest"] = table.loc[first.index, "step"] == first
    return table


def _step_row(metric, step, cond, against, rule, result: dict, n: int) -> dict:
    threshold = rule.get("min_delta") if rule["rule"] == "record" else rule.get("target")
    return {
        "metric": metric,
        "step": int(step),
        "condition": cond,
        "against": against,
        "n": n,
        "statistic": result["statistic"],
        "threshold": threshold,
        "p": result["p"],
        "passes": bool(result["passes"]),
        "earliest": False,
    }


def plot_rule_steps(table: pd.DataFrame, rule: dict, out_png: str | Path) -> Path:
    """p of the rule over the validation steps per condition (log axis), alpha as a line, the
    earliest passing step as a star."""
    import matplotlib.pyplot as plt

    from speedlab.analysis.figures import save_figure, themed_colors

    fig, ax = plt.subplots(figsize=(8, 4.5))
    conditions = list(dict.fromkeys(table["condition"]))
    for cond, color in zip(conditions, themed_colors(len(conditions)), strict=True):
        rows = table[table["condition"] == cond]
        ax.plot(rows["step"], rows["p"].clip(lower=1e-300), "-o", color=color, ms=3, label=cond)
        first = rows[rows["earliest"]]
        ax.scatter(first["step"], first["p"], marker="*", s=200, color=color, edgecolor="black")
    ax.axhline(rule["alpha"], linestyle=":", color="0.3", label=f"α = {rule['alpha']:g}")
    ax.set_yscale("log")
    ax.set_xlabel("validation step (the same step for every run)")
    ax.set_ylabel(f"p of the {rule['rule']} rule")
    ax.set_title(f"{table['metric'].iloc[0] if len(table) else ''}: the rule step by step")
    ax.legend(fontsize=8)
    note = "★: the earliest step at which the rule passes (below α)"
    return save_figure(fig, out_png, footnote=note)


def without_diverged(curves: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """The curve points of runs that did not diverge (as the statistics leave them out)."""
    bad = runs.loc[runs["diverged"].astype(bool), ["condition", "seed"]]
    gone = set(zip(bad["condition"], bad["seed"], strict=True))
    keep = [(c, s) not in gone for c, s in zip(curves["condition"], curves["seed"], strict=True)]
    return curves[np.array(keep, bool)]


OPTIONS = {
    "metric": REQUIRED,
    "rule": REQUIRED,  # resolved (speedlab.analysis.decision.resolve_rule)
    "conditions": REQUIRED,
    "baseline": REQUIRED,
    "design": "auto",
}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m speedlab.analysis.curves", description=__doc__)
    add_options(p, OPTIONS, required=True)
    p.add_argument("--curves", required=True, type=Path)
    p.add_argument("--runs", required=True, type=Path, help="runs.parquet (for the exclusions)")
    p.add_argument("--table-out", required=True, type=Path)
    p.add_argument("--figure-out", required=True, type=Path)
    args = p.parse_args(argv)
    o = args.options
    curves = without_diverged(pd.read_parquet(args.curves), pd.read_parquet(args.runs))
    try:
        table = rule_steps(
            curves,
            o["metric"],
            o["rule"],
            o["conditions"],
            o["baseline"],
            o["design"],
        )
    except ValueError as e:
        raise SystemExit(f"speedlab.analysis.curves: --options {e}") from None
    with atomic_path(args.table_out) as tmp:
        table.to_csv(tmp, index=False)
    plot_rule_steps(table, o["rule"], args.figure_out)
    for r in table[table["earliest"]].itertuples():
        print(f"{r.condition}: the rule passes first at step {r.step} (p={r.p:.3g})")


if __name__ == "__main__":
    main()
