"""Hyperparameter sweeps: the metric at each value of one swept config key, over seeds.

A study sweeps one key (e.g. `optim.matrix_lr`), optionally separately at each value of another
(e.g. `optim.weight_decay` at each `model.d_model`). Runs are placed by their resolved config
(the `cfg.<key>` columns of runs.parquet), not by condition name. As in analysis.stats, metrics
are lower-is-better and diverged runs or runs without the metric are left out (and counted).
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import stats as sps

from speedlab.analysis.figures import metric_label, save_figure, themed_colors
from speedlab.analysis.options import REQUIRED, runs_parser
from speedlab.analysis.stats import BETTER, NO_DIFFERENCE, WORSE, summary_row, verdict
from speedlab.files import atomic_path

SWEEP_COLUMNS = [
    "metric",
    "key",
    "group_key",
    "group",
    "value",
    "n",
    "n_excluded",
    "mean",
    "sd",
    "sem",
    "ci_low",
    "ci_high",
    "p_best",
    "is_best",
    "ranking_supported",
    "default",
    "is_default",
    "diff",
    "welch_p",
    "verdict",
    "alpha",
]

IS_DEFAULT = "is the default"
NOT_TESTABLE = "not testable (n<2)"
NO_DEFAULT = "no default value known"
DEFAULT_NOT_SWEPT = "default value not in this sweep"
NO_RANKING = "no ranking supported: a value has < 2 seeds"


def cfg_column(runs: pd.DataFrame, key: str) -> str:
    """The runs column holding a dotted config key (given with or without the `cfg.` prefix)."""
    col = key if key.startswith("cfg.") else f"cfg.{key}"
    if col not in runs.columns:
        varying = [c for c in runs.columns if c.startswith("cfg.") and runs[c].nunique() > 1]
        raise KeyError(f"no column {col!r} in the runs table; config keys that vary: {varying}")
    return col


def cells(
    runs: pd.DataFrame, key: str, metric: str, group: str | None = None
) -> dict[tuple, tuple[np.ndarray, int]]:
    """{(group value, swept value): (the metric over the runs that count, sorted; n excluded)}.

    Keys are in sorted order; the group value is None without a group. Runs where the swept (or
    group) key is unset are not part of the sweep and are dropped without being counted.
    """
    if metric not in runs.columns:
        raise KeyError(f"metric {metric!r} is not a column of the runs table")
    col = cfg_column(runs, key)
    by = [cfg_column(runs, group), col] if group else [col]
    data = runs.dropna(subset=by).reset_index(drop=True)  # the index may repeat
    keep = ~data["diverged"].astype(bool) & data[metric].notna()
    out = {}
    for k, rows in data.groupby(by, sort=True):
        ok = keep.loc[rows.index]
        g, v = k if group else (None, k[0])
        # Sorted, so that the table (bootstrap included) does not depend on the row order.
        out[(g, v)] = (np.sort(rows.loc[ok, metric].to_numpy(dtype=float)), int((~ok).sum()))
    return out


def resampled_means(x: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Means of n_boot resamples of x with replacement; +inf for no data (never the lowest)."""
    if len(x) == 0:
        return np.full(n_boot, np.inf)
    return rng.choice(x, size=(n_boot, len(x))).mean(axis=1)


def log_axis(values) -> bool:
    """True when the positive values span at least a decade (max/min >= 10)."""
    v = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    return len(v) >= 2 and v.max() / v.min() >= 10


def _same(a, b) -> bool:
    try:
        return bool(np.isclose(float(a), float(b), rtol=1e-9, atol=0.0))
    except (TypeError, ValueError):
        return a == b


def default_value(runs: pd.DataFrame, key: str, group: str | None = None, group_value=None):
    """The swept key's value in the baseline runs (is_baseline), those of this group if it has
    any; None when there are no baseline runs. Baseline runs that disagree are an error."""
    base = runs[runs["is_baseline"].astype(bool)]
    if group is not None:
        mine = base[base[cfg_column(runs, group)] == group_value]
        base = mine if len(mine) else base
    found = base[cfg_column(runs, key)].dropna().unique()
    if len(found) > 1:
        raise ValueError(f"baseline runs have several values of {key}: {list(found)}")
    if len(found) == 0:
        return None
    return found[0].item() if isinstance(found[0], np.generic) else found[0]


def _versus_default(x: np.ndarray, base: np.ndarray | None, is_default: bool, alpha: float):
    """(diff, welch_p, verdict) of one swept value against the default value."""
    if is_default:
        return 0.0, np.nan, IS_DEFAULT
    if base is None:
        return np.nan, np.nan, DEFAULT_NOT_SWEPT
    diff = float(np.mean(x) - np.mean(base)) if len(x) and len(base) else np.nan
    if len(x) < 2 or len(base) < 2:
        return diff, np.nan, NOT_TESTABLE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # both arms constant: p is NaN
        p = float(sps.ttest_ind(x, base, equal_var=False).pvalue)
    words = {
        BETTER: "beats the default",
        WORSE: "worse than the default",
        NO_DIFFERENCE: f"no detectable difference from the default at alpha={alpha:g}",
    }
    return diff, p, words[verdict(diff, p, len(x), len(base), alpha)]


def sweep_table(
    runs: pd.DataFrame,
    key: str,
    metric: str,
    group: str | None = None,
    default=None,
    alpha: float = 0.05,
    n_boot: int = 10_000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per (group value, swept value), sorted: n, n_excluded, mean, sd, sem and the
    (1 - alpha) t-interval (NaN when n < 2, as in speedlab.analysis.stats), then

    - p_best: the fraction of n_boot bootstrap resamples (seeds resampled within each value,
      numpy Generator(seed)) in which this value has the lowest mean of its group — lower is
      better. Only when every value of the group has at least 2 seeds (ranking_supported): a
      value with one run would be resampled as if it had no noise, so its P(best) would claim
      a certainty no data supports; otherwise p_best is NaN for the whole group.
    - is_best: this value has the lowest mean of its group.
    - default / is_default: the default value of the swept key (the `default` argument, else
      the baseline runs' value, see default_value) and whether this row is it.
    - diff, welch_p, verdict: this value against the default: difference of means, Welch t-test
      p (scipy ttest_ind, equal_var=False) and the outcome in words. Read the best row's: note
      that the best value was picked by the same data, so its p is somewhat optimistic, and the
      other rows' p-values are not corrected for multiple comparisons.
    """
    data = cells(runs, key, metric, group)
    rng = np.random.default_rng(seed)
    rows = []
    for g, values, xs in by_group(data):
        dflt = default if default is not None else default_value(runs, key, group, g)
        means = group_resamples(xs, n_boot, rng)
        # With one seed a value is resampled as if it had no noise: no ranking is supported.
        ranked = all(len(x) >= 2 for x in xs)
        if ranked and np.isfinite(means).any():
            p_best = np.bincount(means.argmin(axis=0), minlength=len(values)) / n_boot
        else:
            p_best = np.full(len(values), np.nan)
        common = {"metric": metric, "key": key, "group_key": group, "group": g, "alpha": alpha,
                  "ranking_supported": ranked}  # fmt: skip
        for row, v in zip(_value_rows(values, xs, dflt, p_best, alpha), values, strict=True):
            rows.append({**common, **row, "n_excluded": data[(g, v)][1]})
    return pd.DataFrame(rows, columns=SWEEP_COLUMNS)


def by_group(data: dict[tuple, tuple[np.ndarray, int]]):
    """The `cells` of each group in turn: (group value, its swept values, their metric arrays)."""
    for g in dict.fromkeys(g for g, _ in data):
        values = [v for gg, v in data if gg == g]
        yield g, values, [data[(g, v)][0] for v in values]


def group_resamples(xs: list[np.ndarray], n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(values, n_boot) bootstrap means of each value's runs, drawn in order from `rng`."""
    return np.vstack([resampled_means(x, n_boot, rng) for x in xs])


def _value_rows(values: list, xs: list[np.ndarray], dflt, p_best: np.ndarray, alpha: float):
    """One group's rows: each value's summary, whether it is best and default, and its test
    against the default value."""
    base = next((x for v, x in zip(values, xs, strict=True) if _same(v, dflt)), None)
    mean = np.array([np.mean(x) if len(x) else np.nan for x in xs])
    best = int(np.nanargmin(mean)) if np.isfinite(mean).any() else -1
    for i, (v, x) in enumerate(zip(values, xs, strict=True)):
        is_default = dflt is not None and _same(v, dflt)
        if dflt is None:
            diff, p, words = np.nan, np.nan, NO_DEFAULT
        else:
            diff, p, words = _versus_default(x, base, is_default, alpha)
        yield {
            "value": v,
            "n": len(x),
            **summary_row(x, alpha),
            "p_best": float(p_best[i]),
            "is_best": i == best,
            "default": dflt,
            "is_default": is_default,
            "diff": diff,
            "welch_p": p,
            "verdict": words,
        }


TEST_COLUMNS = [
    "metric", "key", "group_key", "group", "value", "against_value", "against_kind", "n",
    "n_against", "diff", "diff_low", "diff_high", "est_level", "p", "p_adj", "verdict",
]  # fmt: skip


def best_tests(data: dict, table: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """The best value of each group against its neighbours (the next lower and higher swept
    values) and the default: Welch t, one Holm family per group, each interval at the level
    Holm tested it at (decision.holm_levels), so verdict and interval agree."""
    rows = []
    for g, values, xs in by_group(data):
        part = table[table["group"].isna() if g is None else table["group"] == g]
        best = part[part["is_best"].astype(bool)]
        if best.empty:
            continue
        b = values.index(best["value"].iloc[0])
        dflt = best["default"].iloc[0]
        against = _neighbours(values, b, dflt)
        rows += _family(part, values, xs, b, against, alpha)
    return pd.DataFrame(rows, columns=TEST_COLUMNS)


def _neighbours(values: list, b: int, dflt) -> list[tuple[int, str]]:
    """(index, kind) of what the best value is tested against, each value once."""
    out = []
    d = next((i for i, v in enumerate(values) if dflt is not None and _same(v, dflt)), None)
    if d is not None and d != b:
        out.append((d, "default"))
    for i, kind in ((b - 1, "lower neighbour"), (b + 1, "upper neighbour")):
        if 0 <= i < len(values) and i != d:
            out.append((i, kind))
    return out


def _family(part, values, xs, b, against, alpha) -> list[dict]:
    from speedlab.analysis.decision import holm_levels

    x = xs[b]
    ps = [_welch(x, xs[i]).pvalue if len(x) >= 2 and len(xs[i]) >= 2 else np.nan
          for i, _ in against]  # fmt: skip
    p_adj, levels = holm_levels(ps, alpha)
    common = {c: part[c].iloc[0] for c in ("metric", "key", "group_key", "group")}
    rows = []
    for (i, kind), p, pa, level in zip(against, ps, p_adj, levels, strict=True):
        ref = xs[i]
        row = {**common, "value": values[b], "against_value": values[i], "against_kind": kind,
               "n": len(x), "n_against": len(ref), "p": p, "p_adj": pa, "est_level": level,
               "diff": _mean_diff(x, ref)}  # fmt: skip
        row.update(_interval(x, ref, level, pa, alpha))
        rows.append(row)
    return rows


def _mean_diff(x, ref) -> float:
    return float(np.mean(x) - np.mean(ref)) if len(x) and len(ref) else np.nan


def _welch(x, ref):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # both arms constant: p is NaN
        return sps.ttest_ind(x, ref, equal_var=False)


def _interval(x, ref, level, p_adj, alpha) -> dict:
    """Welch's interval at `level` and the verdict it gives."""
    if not np.isfinite(level):
        return {"diff_low": np.nan, "diff_high": np.nan, "verdict": NOT_TESTABLE}
    ci = _welch(x, ref).confidence_interval(level)
    low, high = float(ci.low), float(ci.high)
    if high < 0:
        words = "better"
    elif low > 0:
        words = "worse"
    else:
        words = f"no detectable difference at alpha={alpha:g} (Holm)"
    return {"diff_low": low, "diff_high": high, "verdict": words}


def best_conditions(table: pd.DataFrame, runs: pd.DataFrame, key: str, group: str | None):
    """Per group: the condition of its best value and of the default (None when the default
    is not swept), for the confirmation runs on fresh seeds."""
    col = cfg_column(runs, key)
    picks = []
    for _, part in table.groupby("group", dropna=False, sort=False):
        best = part[part["is_best"].astype(bool)]
        if best.empty:
            continue
        g = part["group"].iloc[0]
        rows = runs if group is None or pd.isna(g) else runs[runs[cfg_column(runs, group)] == g]
        pick = {"group": None if pd.isna(g) else _plain(g)}
        pick["best"] = _condition_of(rows, col, best["value"].iloc[0], key)
        pick["best_value"] = _plain(best["value"].iloc[0])
        dflt = best["default"].iloc[0]
        swept = part["is_default"].astype(bool).any()
        pick["default"] = _condition_of(rows, col, dflt, key) if swept else None
        pick["default_value"] = _plain(dflt) if swept else None
        picks.append(pick)
    return picks


def _plain(v):
    return v.item() if isinstance(v, np.generic) else v


def _condition_of(rows: pd.DataFrame, col: str, value, key: str) -> str:
    names = sorted(set(rows.loc[[_same(v, value) for v in rows[col]], "condition"]))
    if len(names) != 1:
        raise ValueError(f"sweep: {key}={value} is run by conditions {names}, expected one")
    return names[0]


def confirm_table(runs: pd.DataFrame, o: dict) -> pd.DataFrame:
    """The best value against the default on the confirmation seeds only: paired when both ran
    the same seeds (ttest_rel), else Welch; one Holm family over the groups."""
    from speedlab.analysis.decision import holm_levels, pairing

    runs = runs[runs["seed"].isin(o["seeds"])]
    rows, pairs = [], []
    for pick in o["picks"]:
        if pick["default"] is None or pick["default"] == pick["best"]:
            continue
        x, ref, paired = pairing(runs, o["metric"], pick["best"], pick["default"])
        test = (sps.ttest_rel(x, ref) if paired else _welch(x, ref)) if len(x) > 1 else None
        pairs.append((pick, x, ref, paired, test))
    p_adj, levels = holm_levels([t.pvalue if t else np.nan for *_, t in pairs], o["alpha"])
    for (pick, x, ref, paired, test), pa, level in zip(pairs, p_adj, levels, strict=True):
        ci = test.confidence_interval(level) if test is not None and np.isfinite(level) else None
        low, high = (float(ci.low), float(ci.high)) if ci else (np.nan, np.nan)
        words = "better" if high < 0 else "worse" if low > 0 else "no detectable difference"
        rows.append({
            "metric": o["metric"], "key": o["key"], "group_key": o["group"],
            "group": pick["group"], "value": pick["best_value"],
            "against_value": pick["default_value"],
            "against_kind": "default (confirmation)", "n": len(x), "n_against": len(ref),
            "diff": float(np.mean(x) - np.mean(ref)), "diff_low": low, "diff_high": high,
            "est_level": level, "p": test.pvalue if test else np.nan, "p_adj": pa,
            "verdict": (words if ci else NOT_TESTABLE) + (" (paired by seed)" if paired else ""),
        })  # fmt: skip
    return pd.DataFrame(rows, columns=TEST_COLUMNS)


def _label(v) -> str:
    """A value as it reads best: 0.04, 256, 1e-05, True, adamw."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.number)):
        return str(v)
    return f"{v:g}"


def plot_sweep(
    table: pd.DataFrame,
    key: str,
    metric: str,
    out_png: str | Path,
    runs: pd.DataFrame | None = None,
    title: str | None = None,
) -> Path:
    """The metric against the swept value, one line per group: mean with its t-interval as
    error bars, each counted seed as a ring (if `runs` is given), the lowest mean as a
    star, the default as a dotted vertical line, and the number of excluded runs along the
    bottom. Log x axis when the values span a decade (symlog if 0 is among them)."""
    table, x_all = _plotted_rows(table, key, metric)
    group_key = table["group_key"].iloc[0]
    grouped = not pd.isna(group_key)
    groups = table["group"].drop_duplicates().tolist()
    log = log_axis(x_all)
    dodge = _dodge(x_all, log, len(groups))

    fig, ax = plt.subplots(figsize=(8, 5))
    seeds_at = {} if runs is None else cells(runs, key, metric, group_key if grouped else None)
    # Groups that are values of a numeric key (widths, depths) get a light-to-dark ramp.
    numeric = grouped and pd.to_numeric(pd.Series(groups), errors="coerce").notna().all()
    colors = themed_colors(len(groups), "sequential" if numeric else "qualitative")
    for i, (g, color) in enumerate(zip(groups, colors, strict=True)):
        rows = table[table["group"].isna() if pd.isna(g) else table["group"] == g]
        label = f"{group_key} = {_label(g)}" if grouped else "mean over seeds"
        _draw_means(ax, rows[rows["n"] > 0], lambda x, i=i: dodge(x, i), color, label)
        for (cg, v), (seeds, _) in seeds_at.items():
            if (cg == g or not grouped) and len(seeds):
                ax.scatter(dodge(np.full(len(seeds), v), i), seeds, edgecolors=[color], **RINGS)
    for j, d in enumerate(pd.unique(table["default"].dropna())):
        label = f"default {key} = {_label(d)}" if j == 0 else None
        ax.axvline(float(d), linestyle=":", color="0.3", label=label)
    _mark_excluded(ax, table, x_all)
    _label_sweep_axes(ax, x_all, log, key, metric, title, group_key if grouped else None)
    ci = f"{100 * (1 - float(table['alpha'].iloc[0])):.0f}%"
    footnote = (
        f"bars: mean with {ci} t-interval over seeds; rings: seeds (diverged excluded); "
        "★: lowest mean (lower is better)\n"
        "p_best: fraction of bootstrap resamples of the seeds in which a value has the lowest mean"
    )
    return save_figure(fig, out_png, footnote=footnote)


def _plotted_rows(table: pd.DataFrame, key: str, metric: str) -> tuple[pd.DataFrame, pd.Series]:
    """The sweep table's rows of `metric` and their swept values as numbers; an error when no
    run counts or the values are not numbers."""
    table = table[table["metric"] == metric]
    if not (table["n"] > 0).any():
        raise ValueError(f"no runs that count for metric {metric!r} in the sweep table")
    try:
        return table, table["value"].astype(float)
    except (TypeError, ValueError) as e:
        raise ValueError(f"plot_sweep needs numeric values of {key}") from e


RINGS = dict(s=28, facecolors="none", alpha=0.8, linewidth=1, zorder=4)  # a seed's mark


def _dodge(x_all: pd.Series, log: bool, n_groups: int):
    """dodge(x, i): group i's x positions, the groups side by side (0.8% of the axis apart) so
    their bars do not hide each other."""
    positive = x_all[x_all > 0]

    def dodge(x, i: int):
        k = 0.008 * (i - (n_groups - 1) / 2)
        if log:
            return np.asarray(x, dtype=float) * (positive.max() / positive.min()) ** k
        return np.asarray(x, dtype=float) + k * (x_all.max() - x_all.min())

    return dodge


def _draw_means(ax, rows: pd.DataFrame, dodge, color, label: str) -> None:
    """One group's means with their t-intervals, its best value starred (and in the label)."""
    mean = rows["mean"].to_numpy(dtype=float)
    err = np.vstack([mean - rows["ci_low"], rows["ci_high"] - mean])
    best = rows[rows["is_best"].astype(bool)]
    if len(best):
        b = best.iloc[0]
        ranked = bool(b.get("ranking_supported", True)) and np.isfinite(b["p_best"])
        odds = (
            f"p_best {b['p_best']:.2f}" if ranked else "no ranking supported: a value has < 2 seeds"
        )
        label += f"  (best {_label(b['value'])}, {odds})"
    ax.errorbar(
        dodge(rows["value"]),
        mean,
        yerr=np.nan_to_num(err),  # n < 2: no interval, just the point
        fmt="-o",
        color=color,
        capsize=4,
        linewidth=2,
        markersize=5,
        label=label,
        zorder=3,
    )
    if len(best):
        ax.scatter(
            dodge([b["value"]]), [b["mean"]], marker="*", s=300, color=color,
            edgecolor="black", linewidth=1, zorder=5,
        )  # fmt: skip


def _mark_excluded(ax, table: pd.DataFrame, x_all: pd.Series) -> None:
    """Values whose runs were all excluded have no point; keep them on the axis, and write each
    value's count of excluded runs along the bottom."""
    ax.update_datalim(np.column_stack([x_all, np.full(len(x_all), np.nanmin(table["mean"]))]))
    ax.autoscale_view()
    per_value = table.groupby("value")[["n_excluded", "n"]].sum()
    for v, (count, n) in per_value[per_value["n_excluded"] > 0].iterrows():
        ax.annotate(
            f"{count} excl." + ("\n(no data)" if n == 0 else ""),
            (float(v), 0.0),
            xycoords=ax.get_xaxis_transform(),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            fontsize=7,
            color="0.35",
        )


def _label_sweep_axes(ax, x_all, log: bool, key: str, metric: str, title, group_key) -> None:
    """x scale (log, or symlog when 0 is swept too), axis labels, title and legend."""
    if log and (x_all <= 0).any():
        ax.set_xscale("symlog", linthresh=float(x_all[x_all > 0].min()))
    elif log:
        ax.set_xscale("log")
    ax.set_xlabel(f"{key}" + (" (log scale)" if log else ""))
    ax.set_ylabel(metric_label(metric))
    where = f" at each {group_key}" if group_key is not None else ""
    ax.set_title(title or f"{metric_label(metric)} vs {key}{where}")
    ax.legend(fontsize=9, title_fontsize=9, loc="best")


OPTIONS = {
    "key": REQUIRED,  # the swept config key, e.g. optim.matrix_lr
    "metric": REQUIRED,  # runs column, lower is better
    "group": None,  # sweep separately at each value of this key, e.g. model.d_model
    "default": None,  # the key's default value (None: the baseline runs')
    "conditions": None,  # only these conditions form the sweep (None: all)
    "alpha": 0.05,
    "n_boot": 10_000,  # bootstrap resamples for p_best
    "seed": 0,  # bootstrap seed
}


def main(argv: list[str] | None = None) -> None:
    """`sweep [--tests-out]` (the table and figure), `sweep picks` (the best value's and the
    default's conditions) or `sweep confirm` (their test on the confirmation seeds)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv and argv[0] in ("picks", "confirm") else "sweep"
    spec = CONFIRM_OPTIONS if command == "confirm" else OPTIONS
    p = runs_parser(f"speedlab.analysis.sweep {command}", "Metric per value of a swept key.", spec)
    if command == "sweep":
        p.add_argument("--table-out", required=True, type=Path, help="output CSV")
        p.add_argument("--tests-out", type=Path, help="the best value's tests (CSV)")
        p.add_argument("--figure-out", type=Path, help="output PNG (and a PDF beside it)")
    else:
        p.add_argument("--out", required=True, type=Path)
        p.add_argument("--table", type=Path, help="sweep.csv (picks)")
    args = p.parse_args(argv)
    o, runs = args.options, pd.read_parquet(args.runs)
    try:
        {"sweep": _sweep_command, "picks": _picks_command, "confirm": _confirm_command}[command](
            args, o, runs
        )
    except (KeyError, ValueError) as e:
        raise SystemExit(f"speedlab.analysis.sweep: {e}") from None


def _sweep_command(args, o, runs) -> None:
    key, group = o["key"], o["group"]
    if o["conditions"]:
        runs = runs[runs["condition"].isin(o["conditions"])]
    # A number, as the schema has it (an integer default compares and prints as its float).
    default = None if o["default"] is None else float(o["default"])
    table = sweep_table(runs, key, o["metric"], group, default, o["alpha"], o["n_boot"], o["seed"])
    with atomic_path(args.table_out) as tmp:
        table.to_csv(tmp, index=False)
    if args.tests_out is not None:
        tests = best_tests(cells(runs, key, o["metric"], group), table, o["alpha"])
        with atomic_path(args.tests_out) as tmp:
            tests.to_csv(tmp, index=False)
    if args.figure_out is not None:
        plot_sweep(table, key, o["metric"], args.figure_out, runs=runs)
    for r in table[table["is_best"]].itertuples():
        where = f"{group}={_label(r.group)}: " if group else ""
        print(f"{where}best {key}={_label(r.value)} (mean {r.mean:.5g}, n={r.n}): {r.verdict}")


def _picks_command(args, o, runs) -> None:
    if o["conditions"]:
        runs = runs[runs["condition"].isin(o["conditions"])]
    table = pd.read_csv(args.table)
    picks = best_conditions(table, runs, o["key"], o["group"])
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(picks, indent=2) + "\n")
    print(json.dumps(picks))


def _confirm_command(args, o, runs) -> None:
    table = confirm_table(runs, o)
    with atomic_path(args.out) as tmp:
        table.to_csv(tmp, index=False)
    for r in table.itertuples():
        print(f"confirmation: {r.value} vs {r.against_value}: {r.verdict} (p={r.p:.3g})")


CONFIRM_OPTIONS = {
    "metric": REQUIRED,
    "key": REQUIRED,
    "group": None,
    "default": None,
    "seeds": REQUIRED,  # the confirmation seeds
    "picks": REQUIRED,  # best_conditions' output
    "alpha": 0.05,
}


if __name__ == "__main__":
    main()
