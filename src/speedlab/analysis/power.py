"""Power for planning: how many seeds an effect that matters needs, and what effect a given
number of seeds can detect, for each decision rule (speedlab.analysis.decision) and design.

Planning starts from the smallest effect that matters (`plan.min_effect`, metric units) and the
seed-to-seed noise, never from the observed effect (post-hoc power is a function of the p-value
and tells nothing new). `sd` is the run-to-run sd of the metric for independent arms and the sd
of the per-seed differences for paired ones (one-sample t on the differences).

The t-test powers are statsmodels' (TTestIndPower, TTestPower: noncentral t); the z rule's is
the closed form; TOST's is the usual noncentral-t approximation, checked by simulation in
tests/test_power.py.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import integrate, optimize
from scipy import stats as sps
from statsmodels.stats.power import TTestIndPower, TTestPower

MAX_N = 10_000
ONE_SIDED = ("record", "target", "known_sigma", "frontier")


def _standardized(effect: float, sd: float, rule: dict) -> float:
    """The effect in sd units that the rule's test sees: beyond min_delta for a record, in
    units of the known sigma for the z rule."""
    if rule["rule"] == "record":
        effect = effect - (rule.get("min_delta") or 0.0)
    if rule["rule"] == "known_sigma":
        sd = rule["sigma"]
    return effect / sd


def _tost_power(margin_sd: float, n: float, n_ref: float, paired: bool, alpha: float) -> float:
    """P(both one-sided tests reject) at a true difference of 0, margin in sd units:
    2 P(T' > t_{1-alpha}) - 1 with T' noncentral t (ncp = margin / se), clipped at 0."""
    scale = math.sqrt(1 / n) if paired else math.sqrt(1 / n + 1 / n_ref)
    df = n - 1 if paired else n + n_ref - 2
    crit = sps.t.ppf(1 - alpha, df)
    return max(0.0, 2 * float(sps.nct.sf(crit, df, margin_sd / scale)) - 1)


def rule_power(std_effect: float, n: float, n_ref: float, *, design: str, rule: dict) -> float:
    """Power of the rule's test at a standardized effect with n (and n_ref) runs."""
    alpha, kind = rule["alpha"], rule["rule"]
    paired = design == "paired" or kind in ("target", "known_sigma")
    if n < 2 or (not paired and n_ref < 2):
        return float("nan")
    if kind == "equivalence":
        return _tost_power(std_effect, n, n_ref, design == "paired", alpha)
    if kind == "known_sigma":
        return float(sps.norm.sf(sps.norm.ppf(1 - alpha) - std_effect * math.sqrt(n)))
    alternative = "larger" if kind in ONE_SIDED else "two-sided"
    if paired:
        found = TTestPower().power(std_effect, n, alpha, alternative=alternative)
        df, ncp = n - 1, std_effect * math.sqrt(n)
    else:
        found = TTestIndPower().power(
            std_effect, n, alpha, ratio=n_ref / n, alternative=alternative
        )
        df, ncp = n + n_ref - 2, std_effect * math.sqrt(n * n_ref / (n + n_ref))
    if np.isfinite(found):
        return float(found)
    # Large effects at few seeds: the noncentral t's tail is NaN in scipy (and so statsmodels);
    # integrate it over the chi-square of the sd instead.
    return _nct_power(ncp, df, alpha, alternative == "two-sided")


def _nct_power(ncp: float, df: float, alpha: float, two: bool) -> float:
    """P(T' > c) (+ P(T' < -c) two-sided) for T' = (Z + ncp) / sqrt(V / df), V ~ chi2(df)."""
    c = sps.t.ppf(1 - alpha / 2 if two else 1 - alpha, df)

    def tails(v: float) -> float:
        s = c * math.sqrt(v / df)
        return (sps.norm.sf(s - ncp) + (sps.norm.cdf(-s - ncp) if two else 0.0)) * sps.chi2.pdf(
            v, df
        )

    return float(integrate.quad(tails, 0, np.inf, limit=200)[0])


def _margin_or_effect(effect: float, rule: dict) -> float:
    """TOST is planned for its margin (at a true difference of 0), the others for the effect."""
    return rule["margin"] if rule["rule"] == "equivalence" else effect


def seeds_for_effect(
    effect: float,
    sd: float,
    *,
    design: str,
    rule: dict,
    power: float = 0.8,
    max_n: int = MAX_N,
) -> float:
    """Smallest seeds per arm (pairs when paired) whose test reaches `power` at `effect`
    (metric units; for a record, the true improvement, which must exceed min_delta): inf when
    even max_n fall short, NaN when the effect or sd is unusable."""
    if not (np.isfinite(sd) and sd > 0 and np.isfinite(effect) and effect > 0):
        return float("nan")
    std = _standardized(_margin_or_effect(effect, rule), sd, rule)
    if std <= 0:
        return float("inf")

    def reaches(n: int) -> bool:
        return _power_at(std, n, design, rule) >= power

    if not reaches(max_n):
        return float("inf")
    lo, hi = 1, 2
    while not reaches(hi):
        lo, hi = hi, min(2 * hi, max_n)
    while hi - lo > 1:  # power grows with n: bisect between a failing lo and a passing hi
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if reaches(mid) else (mid, hi)
    return float(hi)


def _power_at(std: float, n: int, design: str, rule: dict) -> float:
    return rule_power(std, n, n, design=design, rule=rule) if n >= 2 else 0.0


def detectable_effect(
    n: int, n_ref: int, sd: float, *, design: str, rule: dict, power: float = 0.8
) -> float:
    """Smallest effect (metric units) the rule's test detects with `power` at n and n_ref runs
    (for TOST: the smallest margin it can show equivalence within at a true difference of 0;
    for a record: the true improvement, min_delta included). NaN when an arm has < 2 runs or
    sd is unusable; inf when no effect up to 20 sd is detected."""
    if not (np.isfinite(sd) and sd > 0):
        return float("nan")
    kind = rule["rule"]
    one_arm = design == "paired" or kind in ("target", "known_sigma")
    if n < 2 or (not one_arm and n_ref < 2):
        return float("nan")

    def shortfall(g: float) -> float:
        # Far out the noncentral t is NaN in statsmodels: the power there is 1.
        return (
            float(np.nan_to_num(rule_power(g, n, n_ref, design=design, rule=rule), nan=1.0)) - power
        )

    if shortfall(20.0) < 0:
        return float("inf")
    std = float(optimize.brentq(shortfall, 1e-9, 20.0, xtol=1e-12))
    unit = rule["sigma"] if kind == "known_sigma" else sd
    return std * unit + ((rule.get("min_delta") or 0.0) if kind == "record" else 0.0)
