"""Planning powers (speedlab.analysis.power) against statsmodels, the z formula by hand, and
TOST by simulation through statsmodels' own ttost functions."""

import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.power import TTestIndPower, TTestPower
from statsmodels.stats.weightstats import ttost_ind, ttost_paired

from speedlab.analysis.power import detectable_effect, rule_power, seeds_for_effect

DIFF = {"rule": "difference", "alpha": 0.05}
RECORD = {"rule": "record", "alpha": 0.01, "min_delta": 0.005}
TARGET = {"rule": "target", "alpha": 0.01, "target": 3.28}
Z_RULE = {"rule": "known_sigma", "alpha": 0.01, "sigma": 0.0013, "target": 3.28}
FRONTIER = {"rule": "frontier", "alpha": 0.05, "against": "prev"}


def test_difference_seeds_equal_statsmodels_solve_power():
    for effect in (0.5, 1.0, 2.0):
        solved = TTestIndPower().solve_power(effect, alpha=0.05, power=0.8)
        assert seeds_for_effect(effect, 1.0, design="independent", rule=DIFF) == math.ceil(solved)
        paired = TTestPower().solve_power(effect, alpha=0.05, power=0.8)
        assert seeds_for_effect(effect, 1.0, design="paired", rule=DIFF) == math.ceil(paired)


def test_one_sided_rules_use_statsmodels_larger_alternative():
    ref = TTestIndPower().power(1.5, 4, 0.05, ratio=0.5, alternative="larger")
    assert rule_power(1.5, 4, 2, design="independent", rule=FRONTIER) == pytest.approx(ref, 1e-12)
    ref = TTestPower().power(2.0, 5, 0.01, alternative="larger")
    assert rule_power(2.0, 5, 0, design="independent", rule=TARGET) == pytest.approx(ref, 1e-12)
    # The one-sided frontier test needs fewer seeds than the two-sided difference at one alpha.
    one = seeds_for_effect(1.0, 1.0, design="independent", rule=FRONTIER)
    assert one < seeds_for_effect(1.0, 1.0, design="independent", rule=DIFF)


def test_record_plans_for_the_improvement_beyond_min_delta():
    # A true improvement of 0.007 with min_delta 0.005 is a 0.002 effect for the shifted test.
    sd = 0.001
    expected = math.ceil(
        TTestIndPower().solve_power(2.0, alpha=0.01, power=0.8, alternative="larger")
    )
    assert seeds_for_effect(0.007, sd, design="independent", rule=RECORD) == expected
    assert seeds_for_effect(0.005, sd, design="independent", rule=RECORD) == math.inf
    d = detectable_effect(expected, expected, sd, design="independent", rule=RECORD)
    assert 0.005 < d <= 0.007 + 1e-12


def test_known_sigma_matches_the_z_formula_by_hand():
    n, effect = 4, 0.002
    by_hand = 1 - sps.norm.cdf(sps.norm.ppf(0.99) - effect / 0.0013 * math.sqrt(n))
    assert rule_power(effect / 0.0013, n, n, design="independent", rule=Z_RULE) == pytest.approx(
        by_hand, 1e-12
    )
    d = detectable_effect(n, n, 1.0, design="independent", rule=Z_RULE)
    assert d == pytest.approx(0.0013 * (sps.norm.ppf(0.99) + sps.norm.ppf(0.8)) / 2, 1e-9)


def test_detectable_effect_reaches_the_power_exactly():
    for n, n_ref, design in ((3, 3, "independent"), (2, 4, "independent"), (3, 3, "paired")):
        d = detectable_effect(n, n_ref, 0.01, design=design, rule=DIFF)
        g = d / 0.01
        if design == "paired":
            p = TTestPower().power(g, n, 0.05)
        else:
            p = TTestIndPower().power(g, n, 0.05, ratio=n_ref / n)
        assert p == pytest.approx(0.8, abs=1e-9)
    assert math.isnan(detectable_effect(1, 3, 0.01, design="independent", rule=DIFF))


@pytest.mark.parametrize("paired", [False, True])
def test_tost_power_agrees_with_simulated_statsmodels_ttost(paired):
    margin, sd, n, sims = 1.0, 1.0, 12, 20_000
    rule = {"rule": "equivalence", "alpha": 0.05, "margin": margin}
    design = "paired" if paired else "independent"
    predicted = rule_power(margin / sd, n, n, design=design, rule=rule)
    rng = np.random.default_rng(7)
    a, b = rng.normal(0, sd, (sims, n)), rng.normal(0, sd, (sims, n))
    hits = 0
    for x, y in zip(a, b, strict=True):
        if paired:
            p = ttost_paired(x, np.zeros(n), -margin, margin)[0]  # x: the per-seed differences
        else:
            p = ttost_ind(x, y, -margin, margin, usevar="unequal")[0]
        hits += p < 0.05
    observed = hits / sims
    se = math.sqrt(predicted * (1 - predicted) / sims)
    # The approximation (common sample sd for both one-sided tests) is known to be slightly
    # conservative; Welch's df adds a little more for the independent case.
    assert abs(observed - predicted) < 3 * se + 0.02, (observed, predicted)


def test_unusable_inputs_give_nan_not_a_number():
    assert math.isnan(seeds_for_effect(0.01, 0.0, design="independent", rule=DIFF))
    assert math.isnan(seeds_for_effect(float("nan"), 1.0, design="independent", rule=DIFF))
    assert seeds_for_effect(1e-6, 1.0, design="independent", rule=DIFF, max_n=50) == math.inf


def test_large_effects_at_few_seeds_fall_back_to_integrating_the_noncentral_t():
    from speedlab.analysis.power import _nct_power

    # Where statsmodels is finite the integral agrees with it ...
    for g, n in ((3.0, 3), (1.0, 8)):
        want = TTestPower().power(g, n, 0.05)
        assert _nct_power(g * math.sqrt(n), n - 1, 0.05, True) == pytest.approx(want, abs=1e-9)
    # ... and where it is NaN (6.5 sd at 2 to 4 pairs) the plan still gets a number.
    assert math.isnan(TTestPower().power(6.5, 3, 0.05))
    p = [rule_power(6.5, n, n, design="paired", rule=DIFF) for n in (2, 3, 4)]
    assert 0 < p[0] < p[1] < p[2] <= 1
    assert seeds_for_effect(0.005, 0.000764, design="paired", rule=DIFF) == 3
