"""Power-law fits of how a sweep's optimum moves with scale.

E.g. "the best weight decay against model width, expecting an exponent near -2": a grouped
sweep (analysis.sweep, value = weight decay, group = width) gives the best value per width, and
log(best) = log(k) + exponent * log(width) is fitted by least squares (scipy linregress).
The best value is a point of the swept grid, so the fitted exponent is only as fine as the grid.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import NullFormatter, ScalarFormatter
from scipy import stats as sps

from speedlab.analysis.figures import save_figure, themed_colors
from speedlab.analysis.options import REQUIRED, runs_parser
from speedlab.analysis.sweep import by_group, cells, group_resamples, sweep_table
from speedlab.files import atomic_path


def power_law_fit(x, y, alpha: float = 0.05) -> dict:
    """Fit y = k * x**exponent as log(y) = log(k) + exponent * log(x) (natural logs).

    Returns k, exponent, stderr (of the exponent), exponent_low/high (the (1 - alpha)
    t-interval with n - 2 degrees of freedom; NaN, like stderr, when n < 3), intercept
    (log k) and its stderr, r2, n and alpha.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"x and y must be 1-D and of one length, got {x.shape} and {y.shape}")
    if len(x) < 2:
        raise ValueError(f"a power-law fit needs at least 2 points, got {len(x)}")
    bad = ~(np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0))
    if bad.any():
        raise ValueError(
            "a power-law fit needs positive, finite x and y (it fits their logs); "
            f"got x={x[bad].tolist()}, y={y[bad].tolist()}"
        )
    res = sps.linregress(np.log(x), np.log(y))
    n = len(x)
    stderr = float(res.stderr) if n > 2 else np.nan  # linregress says 0 for two points
    if n > 2 and stderr > 0:
        lo, hi = sps.t.interval(1 - alpha, df=n - 2, loc=res.slope, scale=stderr)
    elif n > 2:  # an exact power law: scipy gives NaN for scale=0, the interval is a point
        lo = hi = res.slope
    else:
        lo = hi = np.nan
    return {
        "k": float(np.exp(res.intercept)),
        "exponent": float(res.slope),
        "stderr": stderr,
        "exponent_low": float(lo),
        "exponent_high": float(hi),
        "intercept": float(res.intercept),
        "intercept_stderr": float(res.intercept_stderr) if n > 2 else np.nan,
        "r2": float(res.rvalue**2),
        "n": n,
        "alpha": alpha,
    }


def optimum_fit(table: pd.DataFrame, alpha: float = 0.05) -> dict:
    """Fit the best swept value of each group (the is_best rows of a grouped sweep_table)
    against the group value. The power_law_fit dict plus x (group values), y (best values)
    and p_best (each best value's bootstrap probability of being the best)."""
    best = table[table["is_best"].astype(bool)]
    if best["group"].isna().any():
        raise ValueError("an optimum fit needs a grouped sweep table (sweep_table(group=...))")
    best = best.sort_values("group")
    fit = power_law_fit(best["group"], best["value"], alpha)
    fit.update(
        x=best["group"].astype(float).tolist(),
        y=best["value"].astype(float).tolist(),
        p_best=best["p_best"].astype(float).tolist(),
    )
    return fit


def bootstrap_exponent(
    runs: pd.DataFrame,
    key: str,
    group: str,
    metric: str,
    alpha: float = 0.05,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict:
    """Percentile bootstrap interval of the optimum's exponent.

    Each resample redraws the seeds within every (group, value) cell, takes the value with the
    lowest mean per group and refits the power law (numpy polyfit on the logs, all resamples at
    once). This carries the uncertainty of which grid value is best, which the t-interval of
    the fit does not. Resamples where some group's best value is not positive cannot be fitted
    and are dropped; boot_valid is the fraction kept. With few seeds per cell the bootstrap
    understates the noise (a resample of 3 seeds varies less than 3 new seeds would), so read
    this interval as a lower bound on the uncertainty. (scipy.stats.bootstrap is not used: it
    needs >= 2 seeds in every cell.)
    """
    rng = np.random.default_rng(seed)
    xs, best = [], []
    for g, values, seeds in by_group(cells(runs, key, metric, group)):
        if not any(len(x) for x in seeds):
            continue  # no runs that count: no best value, as in sweep_table
        means = group_resamples(seeds, n_boot, rng)
        xs.append(float(g))
        best.append(np.asarray(values, dtype=float)[means.argmin(axis=0)])
    if len(xs) < 2:
        raise ValueError(f"a power-law fit needs at least 2 groups, got {len(xs)}")
    best = np.vstack(best)  # (groups, resamples)
    ok = (best > 0).all(axis=0)
    lo = hi = np.nan
    if ok.any():
        slopes = np.polyfit(np.log(xs), np.log(best[:, ok]), 1)[0]
        lo, hi = np.quantile(slopes, [alpha / 2, 1 - alpha / 2])
    return {
        "boot_low": float(lo),
        "boot_high": float(hi),
        "boot_n": n_boot,
        "boot_valid": float(ok.mean()),
    }


def plot_scaling(
    x,
    y,
    fit: dict,
    out_png: str | Path,
    xlabel: str,
    ylabel: str,
    expected_exponent: float | None = None,
    title: str | None = None,
) -> Path:
    """Log-log scatter of the data with the fitted power law (exponent and its interval in the
    legend, the bootstrap one too if `fit` has boot_low/boot_high) and, optionally, a line of
    the expected exponent through the data's geometric mean."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    fig, ax = plt.subplots(figsize=(7, 5))
    colors = themed_colors(3)
    xs = np.geomspace(x.min() / 1.25, x.max() * 1.25, 200)
    ax.plot(
        xs, fit["k"] * xs ** fit["exponent"], color=colors[0], linewidth=2, label=_fit_label(fit)
    )
    if expected_exponent is not None:
        line = sps.gmean(y) * (xs / sps.gmean(x)) ** expected_exponent
        label = f"expected exponent {expected_exponent:g} (through the geometric mean)"
        ax.plot(xs, line, "--", color="0.4", linewidth=1.5, label=label)
    ax.scatter(x, y, s=70, color=colors[1], edgecolor="black", zorder=3, label=f"data (n={len(x)})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    # Widths like 128..1024 fall between decades: label the measured x values themselves.
    ax.set_xticks(x)
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"{xlabel} (log scale)")
    ax.set_ylabel(f"{ylabel} (log scale)")
    ax.set_title(title or f"{ylabel} vs {xlabel}")
    ax.legend(fontsize=9, loc="best")
    fig.tight_layout()
    return save_figure(fig, out_png)


def _fit_label(fit: dict) -> str:
    """The fitted law, its R², the exponent's t-interval and, when `fit` has one, its
    bootstrap interval."""
    ci = f"{100 * (1 - fit['alpha']):.0f}%"
    label = rf"fit: $y = {fit['k']:.3g}\,x^{{{fit['exponent']:.3f}}}$, $R^2$ = {fit['r2']:.3f}"
    if np.isfinite(fit["exponent_low"]):
        label += (
            f"\nexponent {ci} t-interval [{fit['exponent_low']:.3f}, {fit['exponent_high']:.3f}]"
        )
    if np.isfinite(fit.get("boot_low", np.nan)):
        label += f"\nexponent {ci} bootstrap [{fit['boot_low']:.3f}, {fit['boot_high']:.3f}]"
    return label


def _jsonable(v):
    if isinstance(v, dict):
        return {k: _jsonable(w) for k, w in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(w) for w in v]
    if isinstance(v, np.generic):
        v = v.item()
    return None if isinstance(v, float) and not np.isfinite(v) else v


def _within(e: float | None, lo: float, hi: float) -> bool | None:
    """Whether e lies in [lo, hi] up to rounding (an exact fit's interval is a point); None
    when there is no interval."""
    if e is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return None
    tol = 1e-9 * max(1.0, abs(e))
    return bool(lo - tol <= e <= hi + tol)


OPTIONS = {
    "key": REQUIRED,  # the swept config key, e.g. optim.weight_decay
    "group": REQUIRED,  # the scale config key, e.g. model.d_model
    "metric": REQUIRED,  # runs column, lower is better
    "expect": None,  # the expected exponent, e.g. -2
    "alpha": 0.05,  # 1 - interval level
    "n_boot": 2000,  # bootstrap resamples (0: no bootstrap interval)
    "seed": 0,  # bootstrap seed
}


def fit_document(runs: pd.DataFrame, o: dict) -> dict:
    """scaling.json: the fit of the best swept value against the group key, with the expected
    exponent (if any) checked against its intervals."""
    key, group, metric, alpha = o["key"], o["group"], o["metric"], o["alpha"]
    table = sweep_table(runs, key, metric, group, alpha=alpha, seed=o["seed"])
    fit = optimum_fit(table, alpha)
    if o["n_boot"] > 0:
        fit.update(bootstrap_exponent(runs, key, group, metric, alpha, o["n_boot"], o["seed"]))
    expect = None if o["expect"] is None else float(o["expect"])  # a number, as the schema has it
    return {
        "key": key,
        "group": group,
        "metric": metric,
        "expected_exponent": expect,
        "expected_within_ci": _within(expect, fit["exponent_low"], fit["exponent_high"]),
        "expected_within_boot": _within(
            expect, fit.get("boot_low", np.nan), fit.get("boot_high", np.nan)
        ),
        "fit": fit,
    }


def main(argv: list[str] | None = None) -> None:
    p = runs_parser(
        "speedlab.analysis.scaling",
        "Power-law fit of a sweep's best value against a scale key.",
        OPTIONS,
    )
    p.add_argument("--json-out", required=True, type=Path, help="output JSON")
    p.add_argument("--figure-out", type=Path, help="output PNG (and a PDF beside it)")
    args = p.parse_args(argv)
    doc = fit_document(pd.read_parquet(args.runs), args.options)
    with atomic_path(args.json_out) as tmp:
        tmp.write_text(json.dumps(_jsonable(doc), indent=2, allow_nan=False) + "\n")
    key, group, fit = doc["key"], doc["group"], doc["fit"]
    if args.figure_out is not None:
        plot_scaling(
            fit["x"],
            fit["y"],
            fit,
            args.figure_out,
            xlabel=group,
            ylabel=f"best {key}",
            expected_exponent=doc["expected_exponent"],
            title=f"{key} with the lowest mean {doc['metric']} vs {group}",
        )
    print(
        f"best {key} ~ {group}^{fit['exponent']:.3f} "
        f"[{fit['exponent_low']:.3f}, {fit['exponent_high']:.3f}], n={fit['n']}"
    )


if __name__ == "__main__":
    main()
