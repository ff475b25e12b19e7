"""Study figures: training curves per condition, the final metric per seed, the per-seed
differences of matched seeds, the quantization cost and the momentum design.

Every figure is deterministic: jitter comes from a seeded generator, and the PNG and PDF carry
no creation date or software version, so a rebuild gives the same bytes.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # the pipeline renders on headless nodes

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from speedlab.analysis.figure_list import PLOTTED  # noqa: E402
from speedlab.analysis.options import REQUIRED, add_options  # noqa: E402
from speedlab.analysis.stats import summarize  # noqa: E402
from speedlab.files import atomic_path  # noqa: E402

DPI = 150
# Metadata that would change the bytes from one build (or matplotlib version) to the next.
NO_METADATA = {
    "png": {"Software": None},
    "pdf": {"Creator": None, "Producer": None, "CreationDate": None},
}
JITTER_SEED = 0  # the jitter of points along a categorical axis: the same on every rebuild
MAX_WIDTH = 12.0  # inches: per-condition figures grow with the conditions up to this
PALETTES = ("qualitative", "sequential")
# The colorblind palette has 10 colours; beyond that tab20 (its 10 saturated colours, then their
# light partners) keeps 20 conditions apart, and hls spaces hues evenly past 20.
COLORBLIND_SIZE = 10
CURVE_METRICS = ("steps_to_target", "time_to_target")


def themed_colors(n: int, palette: str = "qualitative") -> list:
    """Every figure's look: seaborn's whitegrid theme and n colours, distinguishable ones for
    conditions (qualitative) or a dark-to-light ramp for values in order (sequential)."""
    sns.set_theme(style="whitegrid", context="notebook")
    if palette == "sequential":
        # viridis without its last 15%: the pale yellow end is hard to see on white.
        return [tuple(c[:3]) for c in matplotlib.colormaps["viridis"](np.linspace(0, 0.85, n))]
    if palette != "qualitative":
        raise ValueError(f"palette must be one of {PALETTES}, got {palette!r}")
    if n <= COLORBLIND_SIZE:
        return sns.color_palette("colorblind", n)
    if n <= 20:
        tab20 = sns.color_palette("tab20", 20)
        return (tab20[0::2] + tab20[1::2])[:n]
    return sns.color_palette("hls", n)


# A grouped sweep (sweep.group: e.g. a weight-decay sweep at each depth): a hue per group,
# dark to light along each group's values.
GROUP_MAPS = ("Blues", "Oranges", "Greens", "Purples", "Reds", "YlOrBr")


def _ramp(n: int, cmap: str) -> list[tuple]:
    return [tuple(c[:3]) for c in matplotlib.colormaps[cmap](np.linspace(0.95, 0.4, n))]


def condition_colors(
    order: list[str],
    palette: str = "qualitative",
    sweep_conditions: list[str] | list[list[str]] | None = None,
) -> dict[str, tuple]:
    """A colour per condition. Sequential: the swept conditions on a ramp, in value order:
    `sweep_conditions` (default all of `order`), or one list per group, each group in a hue of
    its own; conditions outside the sweep are grey so none looks like a value of it."""
    if palette != "sequential":
        if sweep_conditions is not None:
            raise ValueError("sweep_conditions needs palette 'sequential'")
        return dict(zip(order, themed_colors(len(order), palette), strict=True))
    themed_colors(0)  # the theme
    groups = sweep_conditions or [order]
    if all(isinstance(c, str) for c in groups):
        groups = [groups]
    colors = {}
    for k, group in enumerate(groups):
        group = [c for c in group if c in order]
        if len(groups) == 1:
            ramp = themed_colors(len(group), "sequential")
        else:
            ramp = _ramp(len(group), GROUP_MAPS[k % len(GROUP_MAPS)])
        colors.update(zip(group, ramp, strict=True))
    others = [c for c in order if c not in colors]
    greys = _ramp(3, "Greys")
    colors.update({c: greys[i % len(greys)] for i, c in enumerate(others)})
    return colors


METRIC_LABELS = {
    "train_loss": "train loss (nats/token)",
    "val_loss": "validation loss (nats/token)",
    "val_bpb": "validation bpb (bits/byte)",
    "q_val_loss": "post-quant validation loss (nats/token)",
    "q_val_bpb": "post-quant validation bpb (bits/byte)",
    "compressed_bytes": "compressed model size (bytes)",
    "train_time_s": "training time (s)",
    "steps_to_target": "steps to the target",
    "time_to_target": "training time to the target (s)",
}
X_LABELS = {
    "step": "training step",
    "tokens": "training tokens",
    "time_s": "wall-clock training time (s)",
}
# Fraction of the x-range (from the start) left out when choosing y-limits; see _late_ylim.
YLIM_SKIP = 0.3


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def _order(
    present: list[str],
    conditions: list[str] | None,
    baseline: str | None,
    palette: str = "qualitative",
) -> list[str]:
    """Display order: the study's conditions with the baseline first; for a sequential palette
    (a sweep, conditions in value order) the given order, so the axis reads as the sweep."""
    order = list(conditions) if conditions else sorted(present)
    if baseline in order and palette != "sequential":
        order.remove(baseline)
        order.insert(0, baseline)
    return order


def _width(n_ticks: int, least: float = 5.0, base: float = 3.0, per: float = 0.9) -> float:
    """Figure width for n categorical ticks: grows with them, never past MAX_WIDTH."""
    return min(MAX_WIDTH, max(least, base + per * n_ticks))


def _wrap(name: str, width: int = 10) -> str:
    """A condition name broken after _ - . = or a space into lines of about `width` chars."""
    parts = re.findall(r"[^_\-.= ]+[_\-.= ]*|[_\-.= ]+", name)
    lines = [""]
    for part in parts:
        if lines[-1] and len(lines[-1]) + len(part) > width:
            lines.append("")
        lines[-1] += part
    return "\n".join(line.rstrip() for line in lines)


def fit_condition_labels(ax, names: list[str]) -> float:
    """Condition names under the x ticks 0..n-1 that never overlap: as they are when they fit
    the tick spacing, else wrapped onto lines, else upright (wrapped, then on one line).

    Returns the inches the labels grew by: the caller makes the figure that much taller
    (`_taller`), so upright labels do not squash the axes."""
    ax.set_xticks(range(len(names)), names, rotation=0)
    fig = ax.figure
    fig.tight_layout()  # measure at (about) the final axes width
    renderer = fig.canvas.get_renderer()
    if len(names) > 1:
        x0, x1 = ax.transData.transform([(0, 0), (1, 0)])[:, 0]
        room = 0.9 * abs(x1 - x0)
    else:
        room = 0.9 * ax.get_window_extent(renderer).width
    candidates = (
        ([_wrap(n) for n in names], 0),
        ([_wrap(n, 16) for n in names], 90),
        (names, 90),
    )
    before = _label_height(ax, renderer)
    for labels, rotation in candidates:
        widest = max(t.get_window_extent(renderer).width for t in ax.get_xticklabels())
        if widest <= room:
            break
        ax.set_xticks(range(len(names)), labels, rotation=rotation)
    return max(0.0, (_label_height(ax, renderer) - before) / fig.dpi)


def _taller(fig, inches: float) -> None:
    if inches > 0:
        fig.set_size_inches(fig.get_figwidth(), fig.get_figheight() + inches)


def _label_height(ax, renderer) -> float:
    return max(t.get_window_extent(renderer).height for t in ax.get_xticklabels())


def _censored(rows: pd.DataFrame, metric: str) -> np.ndarray:
    """Which rows hold a lower bound (a run that never reached the curve target)."""
    if metric not in CURVE_METRICS or "target_censored" not in rows:
        return np.zeros(len(rows), dtype=bool)
    return rows["target_censored"].fillna(False).astype(bool).to_numpy()


def _valid(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The runs that count: not diverged, with a value of the metric."""
    if metric not in runs.columns:
        raise KeyError(f"metric {metric!r} is not a column of the runs table")
    return runs[~runs["diverged"].astype(bool) & runs[metric].notna()]


def _late_ylim(data: pd.DataFrame, x: str) -> tuple[float, float] | None:
    """y-limits from the last 70% of the x-range.

    Loss at step 0 is ~log(vocab) while conditions differ by ~0.01 late in training; autoscaling
    to the whole curve flattens exactly the part the study is about, and log-y does not help
    enough at that ratio. The early part is still drawn, it just runs off the top.
    """
    lo_x, hi_x = data[x].min(), data[x].max()
    late = data.loc[data[x] >= lo_x + YLIM_SKIP * (hi_x - lo_x), "value"]
    late = late[np.isfinite(late)]
    if late.empty:
        return None
    lo, hi = float(late.min()), float(late.max())
    pad = 0.08 * (hi - lo) if hi > lo else 0.01 * max(abs(hi), 1.0)
    return lo - pad, hi + pad


def _curve_data(
    curves: pd.DataFrame,
    metric: str,
    x: str,
    order: list[str],
) -> tuple[pd.DataFrame, dict[str, str]]:
    """The metric's curve points, each at `_x` with its `condition_label`, and each
    condition's label."""
    data = curves[curves["metric"] == metric].copy()
    if data.empty:
        raise ValueError(f"no rows with metric {metric!r} in the curves table")
    # Seeds log time_s (and possibly tokens) at slightly different values for the same step, so
    # seaborn would not aggregate across seeds; place each step at its mean x over seeds.
    data["_x"] = data.groupby(["condition", "step"])[x].transform("mean")
    n_seeds = data.groupby("condition")["seed"].nunique()
    labels = {c: f"{c} (n={n_seeds.get(c, 0)} seeds)" for c in order}
    data["condition_label"] = data["condition"].map(labels)
    return data, labels


def _legend(ax, n: int, **kwargs) -> None:
    """The legend inside the axes for a few entries, outside on the right for many (it would
    cover the data)."""
    if n > 6:
        kwargs.update(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    ax.legend(fontsize=9, title_fontsize=9, **kwargs)


def plot_curves(
    curves: pd.DataFrame,
    out_png: str | Path,
    metric: str = "val_bpb",
    x: str = "step",
    title: str | None = None,
    conditions: list[str] | None = None,
    baseline: str | None = None,
    palette: str = "qualitative",
    sweep_conditions: list | None = None,
) -> Path:
    """Mean over seeds per condition, band = min–max over seeds, faint per-seed lines."""
    present = curves["condition"].unique().tolist()
    order = _order(present, conditions, baseline, palette)
    data, labels = _curve_data(curves, metric, x, order)
    colors = condition_colors(order, palette, sweep_conditions)
    hue_order = [labels[c] for c in order]
    fig, ax = plt.subplots(figsize=(8 if len(order) <= 6 else 10.5, 5))
    lines = dict(data=data, x="_x", y="value", hue="condition_label", ax=ax)
    lines.update(hue_order=hue_order, palette={labels[c]: colors[c] for c in order})
    # With 3 seeds a bootstrap "95% CI" is not meaningful; the min–max band hides nothing.
    sns.lineplot(**lines, estimator="mean", errorbar=("pi", 100), linewidth=2)
    sns.lineplot(**lines, units="seed", estimator=None, linewidth=0.6, alpha=0.35, legend=False)
    ylim = _late_ylim(data.rename(columns={"_x": "x"}), "x")
    note = ""
    if ylim is not None:
        ax.set_ylim(*ylim)
        note = (
            f"; y-range fit to the last {100 * (1 - YLIM_SKIP):.0f}% of the x-range"
            " (early values run off the top)"
        )
    ax.set_xlabel(X_LABELS.get(x, x))
    ax.set_ylabel(metric_label(metric))
    ax.set_title(title or f"{metric_label(metric)} during training")
    title = "condition — line: mean over seeds,\nband: min–max over seeds"
    _legend(ax, len(order), title=title)
    return save_figure(fig, out_png, footnote=f"thin lines: individual seeds{note}")


def _points(ax, x: float, y: np.ndarray, color, censored: np.ndarray, rng, spread: float) -> None:
    """One condition's seeds at x with seeded jitter; censored values (lower bounds) hollow ▲."""
    xs = x + rng.uniform(-spread, spread, len(y)) if len(y) > 1 else np.full(len(y), x)
    ax.scatter(xs[~censored], y[~censored], s=49, color=color, alpha=0.8, linewidths=0, zorder=3)
    if censored.any():
        ax.scatter(
            xs[censored], y[censored], s=64, marker="^", facecolors="none", edgecolors=[color],
            linewidths=1.5, zorder=3,
        )  # fmt: skip


CENSORED_NOTE = "; hollow ▲: never reached the target (a lower bound)"


def plot_final(
    runs: pd.DataFrame,
    out_png: str | Path,
    metric: str = "q_val_bpb",
    conditions: list[str] | None = None,
    baseline: str | None = None,
    title: str | None = None,
    alpha: float = 0.05,
    palette: str = "qualitative",
    sweep_conditions: list | None = None,
) -> Path:
    """Every non-diverged seed as a point, plus mean with its t-interval, baseline first."""
    ok = _valid(runs, metric)
    order = _order(runs["condition"].unique().tolist(), conditions, baseline, palette)
    summary = summarize(runs, metric, order, planned_seeds=0, alpha=alpha).set_index("condition")
    colors = condition_colors(order, palette, sweep_conditions)
    fig, ax = plt.subplots(figsize=(_width(len(order)), 5))
    rng = np.random.default_rng(JITTER_SEED)
    for i, cond in enumerate(order):
        rows = ok[ok["condition"] == cond]
        y = rows[metric].to_numpy(dtype=float)
        _points(ax, i, y, colors[cond], _censored(rows, metric), rng, spread=0.08)
    # The interval sits beside the points rather than on them so neither hides the other.
    offset = 0.28
    for i, cond in enumerate(order):
        _draw_mean(ax, summary.loc[cond], i + offset)
    if baseline in summary.index and not np.isnan(summary.loc[baseline, "mean"]):
        label = f"baseline mean ({baseline})"
        ax.axhline(summary.loc[baseline, "mean"], color="0.5", linestyle="--", lw=1, label=label)
        ax.legend(loc="best", fontsize=9)
    ax.set_xlim(-0.5, len(order) - 0.5 + offset)
    ax.set_xlabel("condition")
    ax.set_ylabel(metric_label(metric))
    ax.set_title(title or f"Final {metric_label(metric)}")
    _taller(fig, fit_condition_labels(ax, order))
    ci = f"{100 * (1 - alpha):.0f}%"
    note = f"dots: seeds (diverged excluded); ◆: mean with {ci} t-interval"
    if _censored(ok, metric).any():
        note += CENSORED_NOTE
    return save_figure(fig, out_png, footnote=note)


def _draw_mean(ax, row: pd.Series, x: float) -> None:
    """A condition's mean (a diamond with its t-interval, when it has one) and its n, at x."""
    if np.isnan(row["mean"]):
        return
    if np.isnan(row["ci_low"]):
        yerr = None
    else:
        yerr = [[row["mean"] - row["ci_low"]], [row["ci_high"] - row["mean"]]]
    ax.errorbar(
        x, row["mean"], yerr=yerr, fmt="D", color="black", markersize=6, capsize=5, linewidth=1.5
    )
    ax.annotate(
        f"{row['mean']:.4g}\nn={int(row['n'])}",
        (x, row["mean"]),
        xytext=(8, 0),
        textcoords="offset points",
        va="center",
        fontsize=8,
    )


def seed_table(runs: pd.DataFrame, metric: str, order: list[str]) -> pd.DataFrame:
    """The metric per seed (rows) and condition (columns, in `order`) over the runs that count;
    NaN where a seed has no valid run of a condition."""
    ok = _valid(runs, metric)
    ok = ok[ok["condition"].isin(order)]
    twice = ok.duplicated(["condition", "seed"], keep=False)
    if twice.any():
        dup = ok.loc[twice, ["condition", "seed"]].drop_duplicates().to_records(index=False)
        raise ValueError(f"runs table: more than one run per (condition, seed): {list(dup)}")
    table = ok.pivot(index="seed", columns="condition", values=metric)
    return table.reindex(columns=order).sort_index()


def censored_table(runs: pd.DataFrame, metric: str, table: pd.DataFrame) -> pd.DataFrame:
    """Which cells of seed_table hold a lower bound (the run never reached the curve target)."""
    ok = _valid(runs, metric)
    ok = ok[ok["condition"].isin(table.columns)]
    flags = ok.assign(_censored=_censored(ok, metric))
    flags = flags.pivot(index="seed", columns="condition", values="_censored")
    return flags.reindex(index=table.index, columns=table.columns).eq(True)  # missing: False


def seed_deltas(table: pd.DataFrame, reference: str) -> dict[str, pd.Series]:
    """Each other condition's value minus the reference's, on the seeds both have."""
    out = {}
    for cond in table.columns:
        if cond != reference:
            out[cond] = (table[cond] - table[reference]).dropna()
    return out


def _signed(x: float) -> str:
    """A signed number that never reads '+-0.0000': four decimals from 0.001, two significant
    digits below, and plain 0 for zero."""
    if np.isnan(x):
        return "n/a"
    if x == 0:
        return "0"
    return f"{x:+.4f}" if abs(x) >= 1e-3 else f"{x:+.2g}"


def _per_seed_panel(ax, table, metric, colors, censored, rng) -> None:
    """Left: each condition's seeds, a grey line joining each seed's runs across conditions."""
    order = list(table.columns)
    ax.set_ylabel(metric_label(metric))
    ax.set_title("per seed (a line joins a seed's runs)", fontsize=11)
    for seed, row in table.iterrows():
        y = row.to_numpy(dtype=float)
        ax.plot(range(len(order)), y, "-", color="0.55", lw=0.9, alpha=0.7, zorder=2)
        last = np.flatnonzero(~np.isnan(y))
        if len(table) <= 12 and len(last):
            ax.annotate(
                f"seed {seed}", (last[-1], y[last[-1]]), xytext=(6, 0),
                textcoords="offset points", va="center", fontsize=7, color="0.35",
            )  # fmt: skip
    for i, cond in enumerate(order):
        y = table[cond].to_numpy(dtype=float)
        has = ~np.isnan(y)
        _points(ax, i, y[has], colors[cond], censored[cond].to_numpy()[has], rng, spread=0.0)
    ax.set_xlim(-0.5, len(order) - 0.5 + 0.5)


def _delta_panel(ax, deltas, reference, metric, colors, censored, rng) -> bool:
    """Right: each condition's per-seed difference from the reference, its mean and the zero
    line; False when no condition shares a seed with the reference (nothing is drawn)."""
    ax.set_title("difference from the baseline, per seed", fontsize=11)
    if not any(len(d) for d in deltas.values()):
        return False
    ax.set_ylabel(f"Δ {metric}: condition − baseline")
    ax.axhline(0, color="0.4", lw=1, linestyle="--", zorder=1)
    for i, cond in enumerate(deltas):
        d = deltas[cond]
        if d.empty:
            ax.text(i, 0, "no shared\nseeds", ha="center", va="center", fontsize=8, color="0.35")
            continue
        cens = (censored[cond] | censored[reference])[d.index].to_numpy()
        _points(ax, i, d.to_numpy(), colors[cond], cens, rng, spread=0.06)
        mean = float(d.mean())
        ax.hlines(mean, i - 0.25, i + 0.25, color="black", lw=2, zorder=4)
        _annotate_delta(ax, i, d, mean, few=len(deltas) <= 4)
    ax.set_xlim(-0.5, len(deltas) - 0.5 + (0.6 if len(deltas) <= 4 else 0.0))
    return True


def _annotate_delta(ax, i: int, d: pd.Series, mean: float, few: bool) -> None:
    """The mean difference and on how many seeds the condition is lower: beside the bar for a
    few conditions, only the count above the points for many (the mean is in the report)."""
    lower = f"{int((d < 0).sum())}/{len(d)}"
    if few:
        text = f"mean {_signed(mean)}\n{lower} seeds lower"
        ax.annotate(text, (i + 0.25, mean), xytext=(4, 0), textcoords="offset points",
                    va="center", fontsize=8)  # fmt: skip
    else:
        ax.annotate(lower, (i, float(d.max())), xytext=(0, 8), textcoords="offset points",
                    ha="center", va="bottom", fontsize=7, color="0.25")  # fmt: skip


def _no_pairs(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_paired(
    runs: pd.DataFrame,
    out_png: str | Path,
    metric: str = "q_val_bpb",
    conditions: list[str] | None = None,
    baseline: str | None = None,
    title: str | None = None,
    palette: str = "qualitative",
    sweep_conditions: list | None = None,
) -> Path:
    """Matched seeds at a glance: each seed's runs joined across conditions (left), and each
    condition's per-seed difference from the baseline with its mean (right).

    A seed fixes the initial weights and the data order, so a difference that is the same sign
    on every seed is visible here even when the spread between seeds hides it in the final
    figure. No interval is drawn: the report's interval depends on the decision rule and its
    multiplicity adjustment, and a second, different one here could disagree with the verdict.
    """
    order = _order(runs["condition"].unique().tolist(), conditions, baseline, palette)
    reference = baseline if baseline in order else order[0]
    table = seed_table(runs, metric, order)
    censored = censored_table(runs, metric, table)
    colors = condition_colors(order, palette, sweep_conditions)
    width = _width(2 * len(order) - 1, least=9.0, base=4.0)
    fig, (left, right) = plt.subplots(1, 2, figsize=(width, 5))
    fig.suptitle(title or f"{metric_label(metric)}: matched seeds")
    rng = np.random.default_rng(JITTER_SEED)
    deltas = seed_deltas(table, reference)
    _per_seed_panel(left, table, metric, colors, censored, rng)
    note = f"baseline: {reference}; diverged runs excluded"
    if not _delta_panel(right, deltas, reference, metric, colors, censored, rng):
        why = f"no seed shared with\nthe baseline ({reference})" if deltas else "one condition"
        _no_pairs(right, f"{why}:\nno per-seed differences to show")
        _taller(fig, fit_condition_labels(left, order))
    else:
        note += "\nbar: mean difference over the seeds both have; k/n: seeds on which the"
        note += " condition is lower (below 0)"
        # Each panel's labels change the other's width a little: the left is fit again last.
        fit_condition_labels(left, order)
        grown = fit_condition_labels(right, list(deltas))
        _taller(fig, max(grown, fit_condition_labels(left, order)))
    if censored.to_numpy().any():
        note += CENSORED_NOTE
    return save_figure(fig, out_png, footnote=note)


def _cost_label(condition: str, cost: np.ndarray) -> str:
    """A condition's quantization cost in the legend: mean ± sd over its runs, the ± only when
    there are two runs and they differ."""
    if len(cost) == 0:
        return f"{condition} (no runs)"
    text = _signed(float(np.mean(cost)))
    sd = float(np.std(cost, ddof=1)) if len(cost) > 1 else 0.0
    if sd > 1e-12:  # equal costs differ by rounding error at most
        text += f" ± {sd:.4f}" if sd >= 1e-3 else f" ± {sd:.2g}"
    return f"{condition} ({text}, n={len(cost)})"


def plot_quant_gap(
    runs: pd.DataFrame,
    out_png: str | Path,
    conditions: list[str] | None = None,
    baseline: str | None = None,
    palette: str = "qualitative",
    sweep_conditions: list | None = None,
) -> Path:
    """Post- against pre-quantization val_bpb, one point per run: the int8+zlib cost is the
    height above the diagonal, and whether it differs by condition is visible at a glance."""
    ok = runs[~runs["diverged"].astype(bool)].dropna(subset=["val_bpb", "q_val_bpb"])
    order = _order(runs["condition"].unique().tolist(), conditions, baseline, palette)
    cost = (ok["q_val_bpb"] - ok["val_bpb"]).groupby(ok["condition"])
    costs = {c: cost.get_group(c).to_numpy() if c in cost.groups else np.array([]) for c in order}
    labels = {c: _cost_label(c, costs[c]) for c in order}
    ok = ok.assign(label=ok["condition"].map(labels))
    colors = condition_colors(order, palette, sweep_conditions)  # sets the theme: first
    fig, ax = plt.subplots(figsize=(6 if len(order) <= 6 else 9.5, 5.5))
    palette_by_label = {labels[c]: colors[c] for c in order}
    lo = min(ok["val_bpb"].min(), ok["q_val_bpb"].min())
    hi = max(ok["val_bpb"].max(), ok["q_val_bpb"].max())
    pad = 0.05 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "--", color="0.5", lw=1, label="no cost")
    sns.scatterplot(
        data=ok, x="val_bpb", y="q_val_bpb", hue="label", hue_order=[labels[c] for c in order],
        palette=palette_by_label, s=60, ax=ax,
    )  # fmt: skip
    _legend(ax, len(order), title="condition (cost: mean ± sd over runs)")
    ax.set_xlabel("validation bpb before quantization (bits/byte)")
    ax.set_ylabel("validation bpb after int8+zlib roundtrip (bits/byte)")
    ax.set_title("Quantization cost per run")
    fig.tight_layout()
    return save_figure(fig, out_png)


def condition_momenta(runs: pd.DataFrame) -> dict[str, list[float]]:
    """Each condition's target Muon momentum per layer, from the config columns of its runs."""
    from speedlab.train.schedules import layer_momenta

    out = {}
    for condition, rows in runs.groupby("condition", sort=False):
        r = rows.iloc[0]
        if pd.isna(r.get("cfg.optim.momentum_schedule")):
            continue  # an imported run: its schedule is not known
        values = r["cfg.optim.momentum_list"]
        out[condition] = layer_momenta(
            r["cfg.optim.momentum_schedule"],
            int(r["cfg.model.n_layer"]),
            float(r["cfg.optim.momentum"]),
            float(r["cfg.optim.momentum_first"]),
            float(r["cfg.optim.momentum_last"]),
            None if values is None or (np.isscalar(values) and pd.isna(values)) else list(values),
        )
    return out


def plot_momentum(
    runs: pd.DataFrame,
    out_png: str | Path,
    conditions: list[str] | None = None,
    baseline: str | None = None,
    palette: str = "qualitative",
    sweep_conditions: list | None = None,
) -> Path:
    """Target Muon momentum of each layer (after warmup) for each condition: the design of a
    layer-wise momentum study at a glance."""
    momenta = condition_momenta(runs)
    order = [c for c in _order(list(momenta), conditions, baseline, palette) if c in momenta]
    colors = condition_colors(order, palette, sweep_conditions)
    fig, ax = plt.subplots(figsize=(7 if len(order) <= 6 else 9.5, 4.5))
    for condition in order:
        layers = np.arange(len(momenta[condition]))
        ax.plot(layers, momenta[condition], "o-", color=colors[condition], label=condition, lw=2)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # layers are whole numbers
    ax.set_xlabel("layer (0 = next to the embedding)")
    ax.set_ylabel("Muon momentum after warmup")
    ax.set_title("Momentum per layer, by condition")
    _legend(ax, len(order), title="condition")
    fig.tight_layout()
    return save_figure(fig, out_png)


def save_figure(fig: plt.Figure, out_png: str | Path, footnote: str | None = None) -> Path:
    """The figure as PNG (for the reports) and as PDF beside it (for papers), both atomically
    and byte-identical on rebuild (no date or version metadata); a footnote (how to read the
    marks) goes in small grey text at the bottom left."""
    if footnote is not None:
        fig.text(0.01, 0.01, footnote, ha="left", va="bottom", fontsize=8, color="0.35")
        lines = footnote.count("\n") + 1
        fig.tight_layout(rect=(0, 0.03 * lines, 1, 1))
    out_png = Path(out_png)
    for path, fmt in ((out_png, "png"), (out_png.with_suffix(".pdf"), "pdf")):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=DPI, format=fmt, metadata=NO_METADATA[fmt])
    plt.close(fig)
    return out_png


def plot_figure(
    name: str,
    table: pd.DataFrame,
    out_png: str | Path,
    conditions: list[str],
    baseline: str,
    palette: str = "qualitative",
    sweep_conditions: list | None = None,
) -> Path:
    """Draw PLOTTED[name] (speedlab.analysis.figure_list) from its table.

    palette "sequential" is for a numeric sweep: the conditions keep the given order (value
    order, the baseline where its value puts it) and take a dark-to-light ramp. Which ones are
    swept: `sweep_conditions` in value order, or one such list per group (a hue per group);
    default all of `conditions`; the others are grey.
    """
    spec = PLOTTED[name]
    style = {"conditions": conditions, "baseline": baseline, "palette": palette}
    style["sweep_conditions"] = sweep_conditions
    if spec.kind == "curves":
        return plot_curves(table, out_png, metric=spec.metric, x=spec.x, **style)
    if spec.kind == "final":
        return plot_final(table, out_png, metric=spec.metric, **style)
    if spec.kind == "paired":
        return plot_paired(table, out_png, metric=spec.metric, **style)
    draw = plot_quant_gap if spec.kind == "quant" else plot_momentum
    return draw(table, out_png, **style)


OPTIONS = {
    "figure": REQUIRED,
    "conditions": None,
    "baseline": None,
    "palette": "qualitative",
    "sweep_conditions": None,
}


def _style_problem(o: dict) -> str | None:
    """What is wrong with the palette options, if anything."""
    if o["palette"] not in PALETTES:
        return f"palette must be one of {PALETTES}, got {o['palette']!r}"
    swept = o["sweep_conditions"]
    if swept is None:
        return None
    if o["palette"] != "sequential":
        return "sweep_conditions needs palette 'sequential'"
    swept = [c for g in swept for c in ([g] if isinstance(g, str) else g)]
    unknown = sorted(set(swept) - set(o["conditions"] or []))
    return f"sweep_conditions {unknown} are not in conditions" if unknown else None


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m speedlab.analysis.figures",
        description="Draw one study figure (the list: speedlab.analysis.figure_list).",
    )
    add_options(p, OPTIONS, required=True)
    p.add_argument("--table", required=True, type=Path, help="the figure's runs/curves.parquet")
    p.add_argument("--out", required=True, type=Path, help="output PNG (and a PDF beside it)")
    args = p.parse_args(argv)
    o = args.options
    if o["figure"] not in PLOTTED:
        p.error(f"--options: unknown figure {o['figure']!r} (figures: {', '.join(PLOTTED)})")
    problem = _style_problem(o)
    if problem:
        p.error(f"--options: {problem}")
    table = pd.read_parquet(args.table)
    plot_figure(
        o["figure"], table, args.out, o["conditions"], o["baseline"],
        palette=o["palette"], sweep_conditions=o["sweep_conditions"],
    )  # fmt: skip


if __name__ == "__main__":
    main()
