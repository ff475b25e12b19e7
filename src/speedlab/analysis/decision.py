"""Decision rules: how a study decides, as the field decides.

A study names one rule (`studies.<s>.decision`), and every comparison is judged by it:

- difference: two-sided test of condition - reference (the default);
- record: one-sided, the condition at least `min_delta` lower (parameter-golf: "show at
  p < 0.01 that the 0.005-nat improvement was achieved", so the null is a shifted one);
- target: one-sample t of the condition's mean against a value (modded-nanogpt Track 1: mean
  val loss below 3.28 at p < 0.01);
- known_sigma: a z rule with a given run-to-run sigma (Track 3);
- equivalence: TOST within +-margin ("no significant change" claimed properly);
- frontier: one-sided against a named previous condition.

Matched seeds (same initial weights, same data order) are compared per seed (paired t,
scipy's ttest_rel); otherwise Welch. Each verdict is read off the interval of the same test, at
the same adjustment as its p-value, so a verdict and its interval cannot disagree.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import special
from scipy import stats as sps
from statsmodels.stats.weightstats import ttost_ind, ttost_paired

BETTER = "better"
WORSE = "worse"
NO_DIFFERENCE = "no detectable difference"
INSUFFICIENT = "insufficient data"
RECORD = "record"
NOT_RECORD = "not a record"
MEETS = "meets the target"
MISSES = "does not meet the target"
EQUIVALENT = "equivalent"
NOT_EQUIVALENT = "not shown equivalent"
BEATS_FRONTIER = "beats the frontier"
NOT_FRONTIER = "does not beat the frontier"

RULES = ("difference", "record", "target", "known_sigma", "equivalence", "frontier")
PRESETS = {
    "parameter_golf": {"rule": "record", "min_delta": 0.005, "alpha": 0.01},
    "modded_track1": {"rule": "target", "target": 3.28, "alpha": 0.01, "direction": "below"},
}
DEFAULTS = {
    "rule": "difference", "alpha": 0.05, "preset": None, "min_delta": 0.0, "target": None,
    "direction": "below", "sigma": None, "margin": None, "against": None,
}  # fmt: skip
NEEDS = {"target": ("target",), "known_sigma": ("target", "sigma"), "equivalence": ("margin",),
         "frontier": ("against",)}  # fmt: skip
ONE_ARM = ("target", "known_sigma")
# The rules a group-sequential design supports (speedlab.analysis.sequential).
SEQUENTIAL_RULES = ("difference", "record", "frontier")
# Metrics where higher is better (every other one is lower-is-better): the two-arm rules test
# them mirrored, so "better", a record's min_delta and a frontier all point upwards.
HIGHER_IS_BETTER = ("hellaswag_acc",)


def resolve_rule(decision: dict | None, where: str = "decision") -> dict:
    """Every key of DEFAULTS set: the preset's values under the ones the user gave."""
    decision = dict(decision or {})
    preset = decision.get("preset")
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"{where}.preset: {preset!r} is not one of {sorted(PRESETS)}")
    rule = {**DEFAULTS, **(PRESETS.get(preset) or {}), **decision}
    if rule["rule"] not in RULES:
        raise ValueError(f"{where}.rule: {rule['rule']!r} is not one of {RULES}")
    for key in NEEDS.get(rule["rule"], ()):
        if rule[key] is None:
            raise ValueError(f"{where}.{key}: the {rule['rule']} rule needs it")
    if not 0 < rule["alpha"] < 0.5:
        raise ValueError(f"{where}.alpha: {rule['alpha']!r} should be in (0, 0.5)")
    return rule


def sided(rule: dict) -> int:
    """2 for two-sided tests, 1 for one-sided ones (TOST is two one-sided tests)."""
    return 2 if rule["rule"] == "difference" else 1


def default_level(rule: dict) -> float:
    """The interval level that matches the rule's own test at its alpha."""
    if rule["rule"] == "equivalence":
        return 1 - 2 * rule["alpha"]
    return 1 - rule["alpha"]


# Runs whose seed fixes their initial weights and data order: speedlab's, or one external
# script's. An imported log or table states a seed, but not that it meant the same thing.
SEEDED = ({"speedlab"}, {"command"})


def pairing(runs, metric: str, condition: str, reference: str, design: str = "auto"):
    """(x, ref, paired): the metric's values of two arms (diverged and missing runs out),
    aligned by seed when paired. auto pairs when both arms ran the same seeds, trained by one
    program from the seed (SEEDED); paired insists (an error with fewer than 2 shared seeds)."""

    def arm(name):
        rows = runs[(runs["condition"] == name) & ~runs["diverged"].astype(bool)]
        return rows[rows[metric].notna()]

    rows_x, rows_ref = arm(condition), arm(reference)
    x, ref = (r.set_index("seed")[metric].astype(float).sort_index() for r in (rows_x, rows_ref))
    shared = x.index.intersection(ref.index)
    if design == "paired" and len(shared) < 2:
        raise ValueError(
            f"design paired: {condition!r} and {reference!r} share {len(shared)} seed(s)"
        )
    both = pd.concat([rows_x, rows_ref])
    sources = set(both["source"].dropna()) if "source" in both else {"speedlab"}
    seeded = (sources or {"speedlab"}) in SEEDED
    same = set(x.index) == set(ref.index) and len(shared) >= 2 and seeded
    if design == "paired" or (design == "auto" and same):
        return x[shared].to_numpy(), ref[shared].to_numpy(), True
    return x.to_numpy(), ref.to_numpy(), False


def _nan_result(test: str, level: float, verdict: str = INSUFFICIENT) -> dict:
    return {"test": test, "statistic": math.nan, "df": math.nan, "p": math.nan,
            "estimate": math.nan, "est_low": math.nan, "est_high": math.nan,
            "est_level": level, "verdict": verdict, "passes": False}  # fmt: skip


def evaluate(x, ref, rule: dict, paired: bool, level: float | None = None, censored=None) -> dict:
    """The rule's test of x (against ref, or against rule["target"] for one-arm rules): its
    statistic, df, p, the estimate with its interval at `level`, the verdict and whether it
    passes. `censored`: (cx, cref) booleans for runs that never reached a curve target."""
    x = np.asarray(x, float)
    ref = None if ref is None else np.asarray(ref, float)
    level = default_level(rule) if level is None else level
    if rule.get("higher") and rule["rule"] not in ONE_ARM:  # one-arm rules name their direction
        res = evaluate(-x, -ref, {**rule, "higher": False}, paired, level, censored)
        return {**res, "statistic": -res["statistic"], "estimate": -res["estimate"],
                "est_low": -res["est_high"], "est_high": -res["est_low"]}  # fmt: skip
    if censored is not None and any(np.any(c) for c in censored):
        return _censored(x, ref, censored, rule, level)
    kind = rule["rule"]
    if kind in ONE_ARM:
        return _one_arm(x, rule, level)
    if len(x) < 2 or len(ref) < 2:
        return _nan_result("paired t" if paired else "Welch t", level)
    if kind == "equivalence":
        return _tost(x, ref, rule, paired, level)
    return _two_arm(x, ref, rule, paired, level)


def _two_arm(x, ref, rule: dict, paired: bool, level: float) -> dict:
    """difference, record, frontier: paired t or Welch, its interval of condition - reference."""
    kind = rule["rule"]
    shift = -rule["min_delta"] if kind == "record" else 0.0  # H0 for a record: diff >= -delta
    alternative = "two-sided" if kind == "difference" else "less"
    if paired:
        res = sps.ttest_rel(x, ref + shift, alternative=alternative)
        test = "paired t"
    else:
        res = sps.ttest_ind(x, ref + shift, equal_var=False, alternative=alternative)
        test = "Welch t"
    ci = res.confidence_interval(level)
    estimate = float(np.mean(x - ref) if paired else np.mean(x) - np.mean(ref))
    low, high = float(ci.low) + shift, float(ci.high) + shift  # back to condition - reference
    if not np.isfinite(res.pvalue):  # constant and equal arms: scipy gives NaN
        low = high = estimate
    if kind == "difference":
        significant = low > 0 or high < 0
        verdict = NO_DIFFERENCE if not significant else (BETTER if high < 0 else WORSE)
    else:
        significant = high < shift  # the upper bound of the difference below -min_delta
        words = (RECORD, NOT_RECORD) if kind == "record" else (BEATS_FRONTIER, NOT_FRONTIER)
        verdict = words[0] if significant else words[1]
    return {"test": test, "statistic": float(res.statistic), "df": float(res.df),
            "p": float(res.pvalue), "estimate": estimate, "est_low": low, "est_high": high,
            "est_level": level, "verdict": verdict, "passes": bool(significant)}  # fmt: skip


def _one_arm(x, rule: dict, level: float) -> dict:
    """target (one-sample t) or known_sigma (z with the given sigma) of the mean vs the value."""
    kind, target = rule["rule"], rule["target"]
    below = rule["direction"] == "below"
    alternative = "less" if below else "greater"
    if kind == "known_sigma":
        if len(x) < 1:
            return _nan_result("z with known σ", level)
        mean, se = float(np.mean(x)), rule["sigma"] / math.sqrt(len(x))
        z = (mean - target) / se
        p = float(sps.norm.cdf(z) if below else sps.norm.sf(z))
        q = sps.norm.ppf(level)
        low, high = (-math.inf, mean + q * se) if below else (mean - q * se, math.inf)
        stat, df, test = z, math.inf, f"z with known σ={rule['sigma']:g}"
    else:
        if len(x) < 2:
            return _nan_result(f"one-sample t vs {target:g}", level)
        res = sps.ttest_1samp(x, target, alternative=alternative)
        ci = res.confidence_interval(level)
        mean, low, high = float(np.mean(x)), float(ci.low), float(ci.high)
        stat, df, p, test = (
            float(res.statistic),
            float(res.df),
            float(res.pvalue),
            (f"one-sample t vs {target:g}"),
        )
    passes = high < target if below else low > target
    return {"test": test, "statistic": float(stat), "df": float(df), "p": p, "estimate": mean,
            "est_low": low, "est_high": high, "est_level": level,
            "verdict": MEETS if passes else MISSES, "passes": bool(passes)}  # fmt: skip


def _tost(x, ref, rule: dict, paired: bool, level: float) -> dict:
    """TOST (statsmodels) within +-margin, with the (1 - 2 alpha) interval of the difference."""
    m = rule["margin"]
    if paired:
        p, lower, upper = ttost_paired(x, ref, -m, m)
        ci = sps.ttest_rel(x, ref).confidence_interval(level)
        estimate, test = float(np.mean(x - ref)), "TOST (paired t)"
    else:
        p, lower, upper = ttost_ind(x, ref, -m, m, usevar="unequal")
        ci = sps.ttest_ind(x, ref, equal_var=False).confidence_interval(level)
        estimate, test = float(np.mean(x) - np.mean(ref)), "TOST (Welch t)"
    # The statistic is the one of the two one-sided tests that decides (the larger p).
    stat = lower[0] if lower[1] >= upper[1] else upper[0]
    df = lower[2] if lower[1] >= upper[1] else upper[2]
    low, high = float(ci.low), float(ci.high)
    passes = -m < low and high < m
    return {"test": f"{test}, margin ±{m:g}", "statistic": float(stat), "df": float(df),
            "p": float(p), "estimate": estimate, "est_low": low, "est_high": high,
            "est_level": level, "verdict": EQUIVALENT if passes else NOT_EQUIVALENT,
            "passes": bool(passes)}  # fmt: skip


def _censored(x, ref, censored, rule: dict, level: float) -> dict:
    """Runs that never reached the target rank above every run that did (Gehan's test under a
    common horizon): Mann-Whitney with censored values at +inf; no interval."""
    cx, cref = (np.asarray(c, bool) for c in censored)
    xs = np.where(cx, np.inf, x)
    test = "Mann-Whitney (censored)"
    if ref is None or len(xs) < 1 or len(ref) < 1:
        return _nan_result(test, level)
    rs = np.where(cref, np.inf, ref)
    alternative = "two-sided" if rule["rule"] == "difference" else "less"
    res = sps.mannwhitneyu(xs, rs, alternative=alternative)
    p = float(res.pvalue)
    passes = bool(np.isfinite(p) and p < 1 - level)
    if rule["rule"] == "difference":
        verdict = (
            NO_DIFFERENCE if not passes else (BETTER if np.median(xs) < np.median(rs) else WORSE)
        )
    else:
        verdict = RECORD if passes else NOT_RECORD
    out = _nan_result(test, level, verdict)
    return {**out, "statistic": float(res.statistic), "p": p, "passes": bool(passes),
            "estimate": float(np.median(xs) - np.median(rs))}  # fmt: skip


def holm_levels(pvalues, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Holm-adjusted p-values and, per test, the interval level that agrees with them: the
    step's level 1 - alpha/(m - i + 1) for a test Holm rejects, Bonferroni's 1 - alpha/m for one
    it does not (then that interval contains the null exactly when the test is not rejected).
    NaN p-values stay NaN and do not count in m. A one-sided test takes a one-sided bound at that
    level; TOST, two of them (a two-sided interval at 1 - 2 (1 - level))."""
    p = np.asarray(pvalues, float)
    adjusted, levels = np.full(p.shape, np.nan), np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    if m == 0:
        return adjusted, levels
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted[order] = np.maximum.accumulate(scaled)
    rejected = adjusted[order] < alpha
    step = alpha / (m - np.arange(m))
    tail = np.where(rejected, step, alpha / m)
    levels[order] = 1 - tail
    return adjusted, levels


def mwu_min_p(n1: int, n2: int, sides: int = 2) -> float:
    """The smallest p an exact Mann-Whitney test can give with n1 and n2 runs."""
    if n1 < 1 or n2 < 1:
        return math.nan
    return min(1.0, sides / special.comb(n1 + n2, n1, exact=True))


def wilcoxon_min_p(n: int, sides: int = 2) -> float:
    """The smallest p an exact Wilcoxon signed-rank test can give with n pairs."""
    if n < 1:
        return math.nan
    return min(1.0, sides / 2**n)
