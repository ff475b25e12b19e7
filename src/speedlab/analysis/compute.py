"""Compute as an axis: each condition's validation curve against training FLOPs, and its
compute multiplier against the baseline.

A run's cumulative FLOPs at a validation point are its tokens so far x its FLOPs per token
(runs.parquet's model_flops / tokens: 6 x parameters + attention, speedlab.train.flops). Each
condition's curve is the mean over its seeds at the steps all of them logged; its final point is
(F_c, L_c), the mean curve's last.

The compute multiplier of a condition (nanochat's comparison of experiments by compute) is

    multiplier = F_b(L_c) / F_c

where F_b(L) is the FLOPs at which the baseline's mean curve first reaches loss L, interpolated
linearly in log FLOPs vs log loss between the two validation points around the crossing. Above 1
the condition reaches its final loss with less compute than the baseline needs. A power-law
baseline L = A F^-a against a condition L = B F^-a gives (A / B)^(1/a) exactly.

No extrapolation is done. When L_c is below every loss the baseline reached, F_b(L_c) is more
than the baseline's FLOPs F_b,max: the multiplier is NaN and the note gives the bound
"> F_b,max / F_c". When L_c is above the baseline's first validated loss (after step 0) it is
NaN with the bound "< F_b,first / F_c".

The interval is a percentile bootstrap over seeds: each resample draws each arm's seeds with
replacement (the arms independently), recomputes both mean curves and the multiplier, from a
generator with a fixed seed, so the table is the same on every rebuild. A resample whose L_c
lies beyond the baseline's curve counts as +inf (below its lowest loss) or 0 (above its first):
the interval is then open on that side (inf, or 0). An arm with one seed has no interval.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from speedlab.analysis.figures import condition_colors, metric_label, save_figure
from speedlab.analysis.options import REQUIRED, add_options
from speedlab.files import atomic_path

OPTIONS = {
    "metric": REQUIRED,  # the curve metric: val_bpb or val_loss
    "baseline": REQUIRED,
    "conditions": None,  # display order; default: those with curves, sorted
    "n_boot": 2000,
    "alpha": 0.05,
    "seed": 0,  # the bootstrap's generator
}
COLUMNS = ["condition", "multiplier", "lo", "hi", "n_seeds", "flops", "loss", "note"]


@dataclass
class Arm:
    """A condition's curves at the steps all its seeds logged: flops[step], values[seed, step]."""

    flops: np.ndarray
    values: np.ndarray

    def mean(self, seeds: np.ndarray | None = None) -> np.ndarray:
        return (self.values if seeds is None else self.values[seeds]).mean(axis=0)


def flops_curves(runs: pd.DataFrame, curves: pd.DataFrame, metric: str) -> pd.DataFrame:
    """(condition, seed, step, flops, value) of every validation point with FLOPs > 0: the
    runs that did not diverge and know their FLOPs (an imported log may not)."""
    known = runs["model_flops"].notna() & (runs["tokens"].fillna(0) > 0)
    ok = runs[~runs["diverged"].astype(bool) & known]
    per_token = (ok["model_flops"] / ok["tokens"].astype(float)).rename("per_token")
    per_token.index = pd.MultiIndex.from_frame(ok[["condition", "seed"]])
    points = curves[curves["metric"] == metric]
    points = points.join(per_token, on=["condition", "seed"], how="inner")
    points = points.assign(flops=points["tokens"] * points["per_token"])
    points = points[(points["flops"] > 0) & np.isfinite(points["value"])]
    return points[["condition", "seed", "step", "flops", "value"]].reset_index(drop=True)


def arm(points: pd.DataFrame) -> Arm:
    """One condition's points as an Arm (the steps every seed has)."""
    table = points.pivot_table(index="seed", columns="step", values="value").dropna(axis=1)
    flops = points.pivot_table(index="step", values="flops").loc[table.columns, "flops"]
    return Arm(flops.to_numpy(dtype=float), table.to_numpy(dtype=float))


def flops_to_reach(flops: np.ndarray, loss: np.ndarray, target: float) -> float:
    """The FLOPs at which the curve first reaches `target`, interpolated in log-log: +inf when
    it never does, 0 when its first point is already below (neither is extrapolated)."""
    reached = np.nonzero(loss <= target)[0]
    if reached.size == 0:
        return np.inf
    i = reached[0]
    if i == 0:
        return float(flops[0]) if loss[0] == target else 0.0
    lf, ll = np.log(flops[i - 1 : i + 1]), np.log(loss[i - 1 : i + 1])
    frac = (np.log(target) - ll[0]) / (ll[1] - ll[0])
    return float(np.exp(lf[0] + frac * (lf[1] - lf[0])))


def multiplier(base: Arm, cond: Arm, base_seeds=None, cond_seeds=None) -> float:
    """F_b(L_c) / F_c from the arms' mean curves (over the given seed indices)."""
    target = cond.mean(cond_seeds)[-1]
    return flops_to_reach(base.flops, base.mean(base_seeds), target) / cond.flops[-1]


def bootstrap(base: Arm, cond: Arm, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """The multiplier on n_boot resamples of each arm's seeds (with replacement)."""
    nb, nc = len(base.values), len(cond.values)
    return np.array(
        [
            multiplier(base, cond, rng.integers(0, nb, nb), rng.integers(0, nc, nc))
            for _ in range(n_boot)
        ]
    )


def _note(base: Arm, cond: Arm, value: float) -> str:
    """Why a multiplier is NaN (the bound it has), or ''."""
    if value == np.inf:
        bound = base.flops[-1] / cond.flops[-1]
        return f"> {bound:.3g}: below the baseline's lowest loss (not extrapolated)"
    if value == 0:
        bound = base.flops[0] / cond.flops[-1]
        return f"< {bound:.3g}: above the baseline's first validated loss (not extrapolated)"
    return ""


def compare(base: Arm, cond: Arm, n_boot: int, alpha: float, rng) -> dict:
    """A row of compute.csv: the multiplier (NaN beyond the baseline's curve, the bound in the
    note), its bootstrap interval and the condition's final FLOPs and loss."""
    value = multiplier(base, cond)
    note = _note(base, cond, value)
    lo = hi = np.nan
    if min(len(base.values), len(cond.values)) < 2:
        note = "; ".join(filter(None, [note, "one seed in an arm: no interval"]))
    else:
        boots = bootstrap(base, cond, n_boot, rng)
        lo = float(np.quantile(boots, alpha / 2, method="lower"))
        hi = float(np.quantile(boots, 1 - alpha / 2, method="higher"))
    return {
        "multiplier": value if np.isfinite(value) and value > 0 else np.nan,
        "lo": lo,
        "hi": hi,
        "n_seeds": len(cond.values),
        "flops": float(cond.flops[-1]),
        "loss": float(cond.mean()[-1]),
        "note": note,
    }


def _absent(condition: str, why: str) -> dict:
    return {"condition": condition, "n_seeds": 0, "note": why}


def compute_table(points: pd.DataFrame, options: dict) -> pd.DataFrame:
    """compute.csv: a row per condition other than the baseline (COLUMNS)."""
    baseline, rng = options["baseline"], np.random.default_rng(options["seed"])
    arms = {c: arm(part) for c, part in points.groupby("condition", sort=False)}
    order = options["conditions"] or sorted(arms)
    rows = []
    for c in (c for c in order if c != baseline):
        if baseline not in arms:
            rows.append(_absent(c, f"the baseline {baseline} has no curve with FLOPs"))
        elif c not in arms:
            rows.append(_absent(c, "no curve with FLOPs (model_flops unknown or diverged)"))
        else:
            n_boot, alpha = options["n_boot"], options["alpha"]
            rows.append({"condition": c, **compare(arms[baseline], arms[c], n_boot, alpha, rng)})
    return pd.DataFrame(rows, columns=COLUMNS)


def _legend_label(condition: str, a: Arm, table: pd.DataFrame) -> str:
    row = table[table["condition"] == condition]
    label = f"{condition} (n={len(a.values)} seeds"
    if len(row) and np.isfinite(row["multiplier"].iloc[0]):
        label += f", ×{row['multiplier'].iloc[0]:.3g}"
    elif len(row) and row["note"].iloc[0]:
        label += f", ×{row['note'].iloc[0].split(':')[0]}"
    return label + ")"


def plot_flops(points: pd.DataFrame, table: pd.DataFrame, out_png, options: dict) -> Path:
    """The metric against cumulative training FLOPs (log x), a line per condition: the mean
    over seeds, a min–max band, ×: the compute multiplier against the baseline."""
    arms = {c: arm(part) for c, part in points.groupby("condition", sort=False)}
    order = [c for c in options["conditions"] or sorted(arms) if c in arms]
    baseline = options["baseline"]
    if baseline in order:
        order.insert(0, order.pop(order.index(baseline)))
    colors = condition_colors(order)
    fig, ax = plt.subplots(figsize=(8 if len(order) <= 6 else 10.5, 5))
    for c in order:
        a = arms[c]
        label = _legend_label(c, a, table)
        if c == baseline:
            label = f"{c} (baseline, n={len(a.values)} seeds)"
        ax.plot(a.flops, a.mean(), color=colors[c], lw=2, label=label)
        ax.fill_between(a.flops, a.values.min(0), a.values.max(0), color=colors[c], alpha=0.2)
    if not order:
        ax.text(0.5, 0.5, "no curve with FLOPs", transform=ax.transAxes, ha="center")
    ax.set_xscale("log")
    ax.set_xlabel("cumulative training FLOPs (6N + attention per token)")
    ax.set_ylabel(metric_label(options["metric"]))
    ax.set_title(f"{metric_label(options['metric'])} vs training compute")
    if order:
        ax.legend(fontsize=9, title="condition (×: compute multiplier)", title_fontsize=9)
    note = "line: mean over seeds; band: min–max over seeds; × = baseline FLOPs to reach the"
    note += " condition's final value / the condition's FLOPs"
    return save_figure(fig, out_png, footnote=note)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m speedlab.analysis.compute",
        description="Compute multipliers against the baseline and the metric against FLOPs.",
    )
    add_options(p, OPTIONS, required=True)
    p.add_argument("--runs", required=True, type=Path, help="runs.parquet")
    p.add_argument("--curves", required=True, type=Path, help="curves.parquet")
    p.add_argument("--table-out", required=True, type=Path, help="output compute.csv")
    p.add_argument("--figure-out", type=Path, help="output PNG (and a PDF beside it)")
    args = p.parse_args(argv)
    o = args.options
    points = flops_curves(pd.read_parquet(args.runs), pd.read_parquet(args.curves), o["metric"])
    table = compute_table(points, o)
    with atomic_path(args.table_out) as tmp:
        table.to_csv(tmp, index=False)
    if args.figure_out is not None:
        plot_flops(points, table, args.figure_out, o)
    print(json.dumps(table.to_dict(orient="records"), default=str))


if __name__ == "__main__":
    main()
