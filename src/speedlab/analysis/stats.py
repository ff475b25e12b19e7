"""Per-condition summaries and condition-vs-baseline t-tests over seeds.

Every statistic comes from numpy/scipy; this module only decides which runs count and how the
results are laid out. Metrics are treated as lower-is-better (loss, bpb, bytes).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import optimize
from scipy import special as spsp
from scipy import stats as sps

from speedlab.analysis.options import REQUIRED, runs_parser
from speedlab.files import atomic_path

SUMMARY_COLUMNS = [
    "condition",
    "n_planned",
    "n",
    "mean",
    "sd",
    "sem",
    "ci_low",
    "ci_high",
    "boot_low",
    "boot_high",
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
    "mwu_p",
    "hedges_g",
    "g_low",
    "g_high",
    "welch_p_holm",
    "n_for_80pct_power",
    "record_verdict",
    "diff_low",
    "diff_high",
]
# Columns that existed before the bootstrap/effect-size additions; their order in the CSV is fixed.
_SUMMARY_V1 = SUMMARY_COLUMNS[:-2]
_COMPARE_V1 = COMPARE_COLUMNS[: COMPARE_COLUMNS.index("verdict") + 1]
# The single CSV the pipeline keeps: what was measured, then the per-arm summary, then the test.
# Columns added later go after `verdict` (and before `alpha`) so old readers keep working.
STATS_COLUMNS = [
    "metric",
    *_SUMMARY_V1,
    *_COMPARE_V1[1:],
    *SUMMARY_COLUMNS[len(_SUMMARY_V1) :],
    *COMPARE_COLUMNS[len(_COMPARE_V1) :],
    "alpha",
]

BETTER = "better"
WORSE = "worse"
NO_DIFFERENCE = "no detectable difference"
INSUFFICIENT = "insufficient data"
RECORD = "record"
NOT_RECORD = "not a record"

# Bootstrap settings: a fixed seed makes stats.csv byte-for-byte reproducible.
BOOT_SEED = 12345
BOOT_RESAMPLES = 9999
# parameter-golf's record rule: beat the baseline by >= 0.005 (metric units), one-sided p < 0.01.
RECORD_MIN_DELTA = 0.005
RECORD_ALPHA = 0.01
POWER_TARGET = 0.8
POWER_MAX_N = 10_000


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


def summary_row(x: np.ndarray, alpha: float) -> dict[str, float]:
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


def bootstrap_interval(x: np.ndarray, alpha: float = 0.05) -> tuple[float, float]:
    """(1 - alpha) bootstrap interval of the mean: BCa, else percentile; NaN when n < 2.

    BCa needs a jackknife acceleration and a bias estimate; for tiny or degenerate samples scipy
    returns NaN (with a DegenerateDataWarning), in which case the percentile interval is used.
    """
    x = np.asarray(x, dtype=float)
    if len(x) < 2:
        return np.nan, np.nan
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", sps.DegenerateDataWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            res = sps.bootstrap(
                (x,),
                np.mean,
                n_resamples=BOOT_RESAMPLES,
                confidence_level=1 - alpha,
                method=method,
                rng=np.random.default_rng(BOOT_SEED),
            )
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if np.isfinite(lo) and np.isfinite(hi):
            return lo, hi
    return lo, hi


def summarize(
    runs: pd.DataFrame,
    metric: str,
    conditions: list[str],
    planned_seeds: int,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """One row per condition, in the given order: n planned/achieved, mean, sd, sem, t-interval,
    bootstrap interval of the mean."""
    rows = []
    for cond in conditions:
        x = values(runs, metric, cond)
        boot_low, boot_high = bootstrap_interval(x, alpha)
        rows.append(
            {
                "condition": cond,
                "n_planned": planned_seeds,
                "n": len(x),
                **summary_row(x, alpha),
                "boot_low": boot_low,
                "boot_high": boot_high,
            }
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


def holm(pvalues) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values; NaN entries stay NaN and do not count in m.

    Sort ascending p_(1) <= ... <= p_(m); adjusted p_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)).
    (statsmodels' multipletests(method="holm") gives the same; it is not a dependency here.)
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    m = int(ok.sum())
    if m == 0:
        return out
    order = np.argsort(p[ok], kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[ok][order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(scaled)
    out[ok] = adjusted
    return out


def hedges_g(x: np.ndarray, base: np.ndarray, alpha: float = 0.05) -> tuple[float, float, float]:
    """Bias-corrected standardized mean difference (x - base) / pooled sd, and its CI.

    d = (mean_x - mean_b) / s_p, s_p^2 = ((n1-1) s1^2 + (n2-1) s2^2) / (n1+n2-2);
    g = J d with the exact J(df) = Gamma(df/2) / (sqrt(df/2) Gamma((df-1)/2)) (Hedges 1981),
    df = n1+n2-2 (~ 1 - 3/(4 df - 1)). Normal-approximation CI, Borenstein et al. (2009),
    Introduction to Meta-Analysis, eqs. 4.20 and 4.24:
    V_d = (n1+n2)/(n1 n2) + d^2 / (2 (n1+n2)), SE_g = J sqrt(V_d), g +- z_{1-alpha/2} SE_g.
    Negative g means the condition is lower (better) than the baseline. NaN if either n < 2 or
    the pooled sd is 0.
    """
    n1, n2 = len(x), len(base)
    if n1 < 2 or n2 < 2:
        return np.nan, np.nan, np.nan
    df = n1 + n2 - 2
    pooled_var = ((n1 - 1) * np.var(x, ddof=1) + (n2 - 1) * np.var(base, ddof=1)) / df
    if not pooled_var > 0:
        return np.nan, np.nan, np.nan
    d = (np.mean(x) - np.mean(base)) / np.sqrt(pooled_var)
    j = np.exp(spsp.gammaln(df / 2) - spsp.gammaln((df - 1) / 2)) / np.sqrt(df / 2)
    g = j * d
    se = j * np.sqrt((n1 + n2) / (n1 * n2) + d**2 / (2 * (n1 + n2)))
    lo, hi = sps.norm.interval(1 - alpha, loc=g, scale=se)
    return float(g), float(lo), float(hi)


def t_test_power(effect: float, n: np.ndarray | int, alpha: float = 0.05) -> np.ndarray:
    """Power of a two-sided two-sample t-test with n per arm at standardized effect `effect`.

    Noncentral t: df = 2n - 2, ncp = effect * sqrt(n / 2); power = P(|T| > t_{1-alpha/2, df}).
    """
    n = np.asarray(n, dtype=float)
    df = 2 * n - 2
    ncp = abs(effect) * np.sqrt(n / 2)
    crit = sps.t.ppf(1 - alpha / 2, df)
    return sps.nct.sf(crit, df, ncp) + sps.nct.cdf(-crit, df, ncp)


def n_for_power(effect: float, alpha: float = 0.05, target: float = POWER_TARGET) -> float:
    """Smallest n per arm (>= 2) whose two-sided t-test power at `effect` reaches `target`.

    Capped at POWER_MAX_N (returned when even that many seeds fall short); NaN when the effect is
    0 or not finite.
    """
    if not np.isfinite(effect) or effect == 0:
        return np.nan
    # The first n that reaches the target, searched in blocks of 4x growing size (2-7, 8-31,
    # ...): the same n as one pass over 2..POWER_MAX_N, without computing the power of
    # thousands of n past it.
    start = 2
    while start <= POWER_MAX_N:
        n = np.arange(start, min(4 * start, POWER_MAX_N + 1))
        reached = np.flatnonzero(t_test_power(effect, n, alpha) >= target)
        if len(reached):
            return float(n[reached[0]])
        start = 4 * start
    return float(POWER_MAX_N)


def detectable_effect(
    n_a: int, n_b: int, alpha: float = 0.05, target: float = POWER_TARGET
) -> float:
    """Smallest |Hedges g| a two-sided two-sample t-test with n_a and n_b runs detects with
    `target` power (noncentral t, df = n_a + n_b - 2, ncp = g * sqrt(n_a n_b / (n_a + n_b)));
    NaN when an arm has fewer than 2 runs."""
    if n_a < 2 or n_b < 2:
        return np.nan
    df = n_a + n_b - 2
    scale = np.sqrt(n_a * n_b / (n_a + n_b))
    crit = sps.t.ppf(1 - alpha / 2, df)

    def shortfall(g: float) -> float:
        ncp = g * scale
        # Far out the lower tail underflows to NaN in scipy's nct: it is 0 there.
        lower = np.nan_to_num(sps.nct.cdf(-crit, df, ncp))
        return np.nan_to_num(sps.nct.sf(crit, df, ncp), nan=1.0) + lower - target

    # The noncentral t loses precision far out; no design here needs g beyond 50.
    if shortfall(50.0) < 0:
        return np.inf
    return float(optimize.brentq(shortfall, 1e-6, 50.0))


def record_verdict(diff: float, p_less: float) -> str:
    """parameter-golf's record rule for a lower-is-better metric: the condition's mean is at
    least RECORD_MIN_DELTA below the baseline's and the one-sided Welch p (condition < baseline)
    is below RECORD_ALPHA."""
    if np.isnan(diff) or np.isnan(p_less):
        return NOT_RECORD
    # isclose: a mean difference of exactly 0.005 should not fail on float rounding.
    big_enough = diff <= -RECORD_MIN_DELTA or bool(np.isclose(diff, -RECORD_MIN_DELTA, atol=1e-12))
    return RECORD if big_enough and p_less < RECORD_ALPHA else NOT_RECORD


def compare(
    runs: pd.DataFrame,
    metric: str,
    baseline: str,
    conditions: list[str],
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Each non-baseline condition against the baseline: difference, Student and Welch t-tests,
    Mann-Whitney U, Hedges g, Holm-corrected Welch p, n for 80% power, and the record rule.

    The verdict is based on `welch_p_holm`, the Welch p Holm-corrected over all of this call's
    comparisons; with a single comparison that is the plain Welch p.
    """
    base = values(runs, metric, baseline)
    rows, ns = [], []
    for cond in conditions:
        if cond == baseline:
            continue
        x = values(runs, metric, cond)
        ns.append(len(x))
        rows.append({"condition": cond, "baseline": baseline, **_comparison(x, base, alpha)})
    holm_p = holm([r["welch_p"] for r in rows])
    for row, p, n in zip(rows, holm_p, ns, strict=True):
        row["welch_p_holm"] = float(p)
        row["verdict"] = verdict(row["diff"], row["welch_p_holm"], n, len(base), alpha)
    return pd.DataFrame(rows, columns=COMPARE_COLUMNS)


def _comparison(x: np.ndarray, base: np.ndarray, alpha: float) -> dict[str, object]:
    """One condition's values against the baseline's: every column of `compare` but the Holm p
    and the verdict (those need all of the study's comparisons)."""
    base_mean = float(np.mean(base)) if len(base) else np.nan
    mean = float(np.mean(x)) if len(x) else np.nan
    diff = mean - base_mean
    tests, p_less = _t_tests(x, base, alpha)
    g, g_low, g_high = hedges_g(x, base, alpha)
    return {
        "diff": diff,
        "diff_pct": 100.0 * (mean - base_mean) / base_mean if base_mean else np.nan,
        **tests,
        "hedges_g": g,
        "g_low": g_low,
        "g_high": g_high,
        "n_for_80pct_power": n_for_power(g, alpha),
        "record_verdict": record_verdict(diff, p_less),
    }


def _t_tests(x: np.ndarray, base: np.ndarray, alpha: float) -> tuple[dict[str, float], float]:
    """Student and Welch t-tests, Welch's interval of the difference and Mann-Whitney U of x
    against base (NaN when an arm has fewer than 2 values), and the one-sided Welch p (x < base)
    that the record rule reads."""
    if len(x) < 2 or len(base) < 2:
        columns = (*COMPARE_COLUMNS[4:10], "mwu_p", "diff_low", "diff_high")
        return dict.fromkeys(columns, np.nan), np.nan
    student = sps.ttest_ind(x, base, equal_var=True)
    welch = sps.ttest_ind(x, base, equal_var=False)
    diff_ci = welch.confidence_interval(1 - alpha)
    tests = {
        "diff_low": float(diff_ci.low),
        "diff_high": float(diff_ci.high),
        "student_t": float(student.statistic),
        "student_df": float(student.df),
        "student_p": float(student.pvalue),
        "welch_t": float(welch.statistic),
        "welch_df": float(welch.df),
        "welch_p": float(welch.pvalue),
        "mwu_p": float(sps.mannwhitneyu(x, base, alternative="two-sided").pvalue),
    }
    p_less = float(sps.ttest_ind(x, base, equal_var=False, alternative="less").pvalue)
    return tests, p_less


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


def excluded_runs(runs: pd.DataFrame, metrics: list[str]) -> list[dict]:
    """Runs left out of the statistics and why (diverged, or a metric missing)."""
    out = []
    for r in runs.itertuples(index=False):
        row = r._asdict()
        missing = [m for m in metrics if pd.isna(row[m])]
        if row["diverged"] or missing:
            reason = "diverged" if row["diverged"] else "no " + ", ".join(missing)
            out.append({"condition": row["condition"], "seed": int(row["seed"]), "reason": reason})
    return out


def _records(table: pd.DataFrame) -> list[dict]:
    """Rows as JSON-ready dicts: exact floats (no rounding), NaN as null, numpy ints as int."""
    return [
        {
            k: None if pd.isna(v) else (v.item() if isinstance(v, np.generic) else v)
            for k, v in r.items()
        }
        for r in table.to_dict(orient="records")
    ]


def write_stats(
    runs: pd.DataFrame,
    metric: str | list[str],
    baseline: str,
    conditions: list[str],
    planned_seeds: int,
    out_csv: str | Path,
    alpha: float = 0.05,
    out_json: str | Path | None = None,
) -> pd.DataFrame:
    """stats.csv: one block of rows per metric (the first is the primary one); each metric's
    comparisons are their own Holm family. stats.json holds the same numbers plus the runs
    excluded, for programs."""
    metrics = [metric] if isinstance(metric, str) else list(metric)
    table = pd.concat(
        [stats_table(runs, m, baseline, conditions, planned_seeds, alpha) for m in metrics],
        ignore_index=True,
    )
    # No float_format: pandas writes round-trippable reprs, so the report sees the exact numbers.
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    if out_json is not None:
        doc = {
            "baseline": baseline,
            "conditions": conditions,
            "alpha": alpha,
            "planned_seeds": planned_seeds,
            "primary_metric": metrics[0],
            "metrics": {m: _records(table[table["metric"] == m]) for m in metrics},
            "excluded": excluded_runs(runs, metrics),
        }
        with atomic_path(out_json) as tmp:
            tmp.write_text(json.dumps(doc, indent=2) + "\n")
    return table


OPTIONS = {
    "metrics": REQUIRED,  # runs columns, primary first: ["q_val_bpb", "train_time_s"]
    "baseline": REQUIRED,
    "conditions": REQUIRED,  # in the report's order
    "planned_seeds": REQUIRED,
    "alpha": 0.05,
}


def main(argv: list[str] | None = None) -> None:
    p = runs_parser("speedlab.analysis.stats", "Summarize a study and test vs baseline.", OPTIONS)
    p.add_argument("--out", required=True, type=Path, help="output CSV")
    p.add_argument("--json", type=Path, help="also write the statistics as JSON")
    args = p.parse_args(argv)
    o = args.options
    runs = pd.read_parquet(args.runs)
    write_stats(
        runs,
        o["metrics"],
        o["baseline"],
        o["conditions"],
        o["planned_seeds"],
        args.out,
        o["alpha"],
        args.json,
    )


if __name__ == "__main__":
    main()
