"""Study figures: training curves per condition and the final metric per seed."""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # the pipeline renders on headless nodes

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from speedlab.analysis.figure_list import PLOTTED  # noqa: E402
from speedlab.analysis.options import REQUIRED, add_options  # noqa: E402
from speedlab.analysis.stats import summarize  # noqa: E402
from speedlab.files import atomic_path  # noqa: E402

DPI = 150


def themed_colors(n: int) -> list:
    """Every figure's look: seaborn's whitegrid theme and n colours of the colorblind palette."""
    sns.set_theme(style="whitegrid", context="notebook")
    return sns.color_palette("colorblind", n)


METRIC_LABELS = {
    "train_loss": "train loss (nats/token)",
    "val_loss": "validation loss (nats/token)",
    "val_bpb": "validation bpb (bits/byte)",
    "q_val_loss": "post-quant validation loss (nats/token)",
    "q_val_bpb": "post-quant validation bpb (bits/byte)",
    "compressed_bytes": "compressed model size (bytes)",
    "train_time_s": "training time (s)",
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


def _order(present: list[str], conditions: list[str] | None, baseline: str | None) -> list[str]:
    order = list(conditions) if conditions else sorted(present)
    if baseline in order:
        order.remove(baseline)
        order.insert(0, baseline)
    return order


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
    conditions: list[str] | None,
    baseline: str | None,
) -> tuple[pd.DataFrame, list[str]]:
    """The metric's curve points, each at `_x` with its `condition_label`, and the labels in
    legend order."""
    data = curves[curves["metric"] == metric].copy()
    if data.empty:
        raise ValueError(f"no rows with metric {metric!r} in the curves table")
    # Seeds log time_s (and possibly tokens) at slightly different values for the same step, so
    # seaborn would not aggregate across seeds; place each step at its mean x over seeds.
    data["_x"] = data.groupby(["condition", "step"])[x].transform("mean")
    order = _order(data["condition"].unique().tolist(), conditions, baseline)
    n_seeds = data.groupby("condition")["seed"].nunique()
    labels = {c: f"{c} (n={n_seeds.get(c, 0)} seeds)" for c in order}
    data["condition_label"] = data["condition"].map(labels)
    return data, [labels[c] for c in order]


def plot_curves(
    curves: pd.DataFrame,
    out_png: str | Path,
    metric: str = "val_bpb",
    x: str = "step",
    title: str | None = None,
    conditions: list[str] | None = None,
    baseline: str | None = None,
) -> Path:
    """Mean over seeds per condition, band = min–max over seeds, faint per-seed lines."""
    data, hue_order = _curve_data(curves, metric, x, conditions, baseline)
    fig, ax = plt.subplots(figsize=(8, 5))
    palette = dict(zip(hue_order, themed_colors(len(hue_order)), strict=True))
    lines = dict(data=data, x="_x", y="value", hue="condition_label", ax=ax)
    lines.update(hue_order=hue_order, palette=palette)
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
    ax.legend(
        title="condition — line: mean over seeds,\nband: min–max over seeds",
        fontsize=9,
        title_fontsize=9,
    )
    return save_figure(fig, out_png, footnote=f"thin lines: individual seeds{note}")


def plot_final(
    runs: pd.DataFrame,
    out_png: str | Path,
    metric: str = "q_val_bpb",
    conditions: list[str] | None = None,
    baseline: str | None = None,
    title: str | None = None,
    alpha: float = 0.05,
) -> Path:
    """Every non-diverged seed as a point, plus mean with its t-interval, baseline first."""
    ok = runs[~runs["diverged"].astype(bool) & runs[metric].notna()]
    order = _order(runs["condition"].unique().tolist(), conditions, baseline)
    ok = ok[ok["condition"].isin(order)]
    summary = summarize(runs, metric, order, planned_seeds=0, alpha=alpha).set_index("condition")

    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(order) + 2), 5))
    palette = dict(zip(order, themed_colors(len(order)), strict=True))
    sns.stripplot(
        data=ok, x="condition", y=metric, order=order, hue="condition", hue_order=order,
        palette=palette, legend=False, size=7, jitter=0.08, alpha=0.8, ax=ax,
    )  # fmt: skip
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
    ci = f"{100 * (1 - alpha):.0f}%"
    ax.set_title(title or f"Final {metric_label(metric)}")
    return save_figure(
        fig, out_png, footnote=f"dots: seeds (diverged excluded); ◆: mean with {ci} t-interval"
    )


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


def plot_quant_gap(
    runs: pd.DataFrame,
    out_png: str | Path,
    conditions: list[str] | None = None,
    baseline: str | None = None,
) -> Path:
    """Post- against pre-quantization val_bpb, one point per run: the int8+zlib cost is the
    height above the diagonal, and whether it differs by condition is visible at a glance."""
    ok = runs[~runs["diverged"].astype(bool)].dropna(subset=["val_bpb", "q_val_bpb"])
    order = _order(runs["condition"].unique().tolist(), conditions, baseline)
    gap = (ok["q_val_bpb"] - ok["val_bpb"]).groupby(ok["condition"]).mean()
    labels = {c: f"{c} (mean +{gap.get(c, np.nan):.4f})" for c in order}
    ok = ok.assign(label=ok["condition"].map(labels))
    fig, ax = plt.subplots(figsize=(6, 5.5))
    colors = themed_colors(len(order))
    palette = {labels[c]: col for c, col in zip(order, colors, strict=True)}
    lo = min(ok["val_bpb"].min(), ok["q_val_bpb"].min())
    hi = max(ok["val_bpb"].max(), ok["q_val_bpb"].max())
    pad = 0.05 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "--", color="0.5", lw=1, label="no cost")
    sns.scatterplot(
        data=ok, x="val_bpb", y="q_val_bpb", hue="label", hue_order=[labels[c] for c in order],
        palette=palette, s=60, ax=ax,
    )  # fmt: skip
    ax.legend(title="condition (quantization cost)", fontsize=9, title_fontsize=9)
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
) -> Path:
    """Target Muon momentum of each layer (after warmup) for each condition: the design of a
    layer-wise momentum study at a glance."""
    momenta = condition_momenta(runs)
    order = [c for c in _order(list(momenta), conditions, baseline) if c in momenta]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for condition, color in zip(order, themed_colors(len(order)), strict=True):
        layers = np.arange(len(momenta[condition]))
        ax.plot(layers, momenta[condition], "o-", color=color, label=condition, lw=2, ms=5)
    ax.set_xlabel("layer (0 = next to the embedding)")
    ax.set_ylabel("Muon momentum after warmup")
    ax.set_title("Momentum per layer, by condition")
    ax.legend(title="condition", fontsize=9, title_fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out_png)


def save_figure(fig: plt.Figure, out_png: str | Path, footnote: str | None = None) -> Path:
    """The figure as PNG (for the reports) and as PDF beside it (for papers), both atomically;
    a footnote (how to read the marks) goes in small grey text at the bottom left."""
    if footnote is not None:
        fig.text(0.01, 0.01, footnote, ha="left", va="bottom", fontsize=8, color="0.35")
        lines = footnote.count("\n") + 1
        fig.tight_layout(rect=(0, 0.03 * lines, 1, 1))
    out_png = Path(out_png)
    for path, fmt in ((out_png, "png"), (out_png.with_suffix(".pdf"), "pdf")):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=DPI, format=fmt)
    plt.close(fig)
    return out_png


def plot_figure(
    name: str, table: pd.DataFrame, out_png: str | Path, conditions: list[str], baseline: str
) -> Path:
    """Draw PLOTTED[name] (speedlab.analysis.figure_list) from its table."""
    spec = PLOTTED[name]
    order = {"conditions": conditions, "baseline": baseline}
    if spec.kind == "curves":
        return plot_curves(table, out_png, metric=spec.metric, x=spec.x, **order)
    if spec.kind == "final":
        return plot_final(table, out_png, metric=spec.metric, **order)
    draw = plot_quant_gap if spec.kind == "quant" else plot_momentum
    return draw(table, out_png, **order)


OPTIONS = {"figure": REQUIRED, "conditions": None, "baseline": None}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m speedlab.analysis.figures",
        description="Draw one study figure (the list: speedlab.analysis.figure_list).",
    )
    add_options(p, OPTIONS, required=True)
    p.add_argument("--table", required=True, type=Path, help="the figure's runs/curves.parquet")
    p.add_argument("--out", required=True, type=Path, help="output PNG (and a PDF beside it)")
    args = p.parse_args(argv)
    name = args.options["figure"]
    if name not in PLOTTED:
        p.error(f"--options: unknown figure {name!r} (figures: {', '.join(PLOTTED)})")
    table = pd.read_parquet(args.table)
    plot_figure(name, table, args.out, args.options["conditions"], args.options["baseline"])


if __name__ == "__main__":
    main()
