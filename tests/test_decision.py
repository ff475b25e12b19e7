"""Decision rules (speedlab.analysis.decision) against scipy and statsmodels on fixed inputs,
the z rule by hand, and the property that a verdict never disagrees with its interval."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps
from statsmodels.stats.weightstats import ttost_ind, ttost_paired

from speedlab.analysis import decision as d

# Unequal arms, n = 2 against n = 4, unequal spreads: Welch and Student disagree.
TWO = np.array([1.40, 1.46])
FOUR = np.array([1.50, 1.51, 1.49, 1.50])


def rule(**kw):
    return d.resolve_rule(kw)


def test_difference_uses_welch_where_student_disagrees():
    r = d.evaluate(TWO, FOUR, rule(), paired=False)
    welch = sps.ttest_ind(TWO, FOUR, equal_var=False)
    student = sps.ttest_ind(TWO, FOUR, equal_var=True)
    assert abs(welch.pvalue - student.pvalue) > 0.01
    assert r["test"] == "Welch t" and r["p"] == pytest.approx(welch.pvalue, rel=1e-12)
    assert r["df"] == pytest.approx(welch.df, rel=1e-12)
    ci = welch.confidence_interval(0.95)
    assert (r["est_low"], r["est_high"]) == pytest.approx((ci.low, ci.high), rel=1e-12)
    assert r["verdict"] == ("better" if ci.high < 0 else "no detectable difference")


def test_paired_difference_is_ttest_rel():
    x, y = np.array([2.58, 2.585, 2.57]), np.array([2.56, 2.562, 2.548])
    r = d.evaluate(x, y, rule(), paired=True)
    assert abs(r["p"] - sps.ttest_rel(x, y).pvalue) < 1e-12 and r["verdict"] == "worse"


def test_record_is_a_shifted_one_sided_test():
    r = d.evaluate(TWO, FOUR, rule(preset="parameter_golf"), paired=False)
    want = sps.ttest_ind(TWO, FOUR - 0.005, equal_var=False, alternative="less")
    assert r["p"] == pytest.approx(want.pvalue, rel=1e-12)
    ci = want.confidence_interval(0.99)
    assert r["est_high"] == pytest.approx(ci.high - 0.005, rel=1e-12) and r["est_low"] == -math.inf
    assert r["passes"] == (r["p"] < 0.01) == (r["est_high"] < -0.005)
    assert d.resolve_rule({"preset": "parameter_golf", "min_delta": 0.01})["min_delta"] == 0.01


def test_target_is_ttest_1samp_one_sided():
    x = np.array([3.275, 3.279, 3.277, 3.276])
    r = d.evaluate(x, None, rule(preset="modded_track1"), paired=False)
    want = sps.ttest_1samp(x, 3.28, alternative="less")
    assert r["p"] == pytest.approx(want.pvalue, rel=1e-12)
    assert r["verdict"] == (
        "meets the target" if want.pvalue < 0.01 else "does not meet the target"
    )
    above = d.evaluate(x, None, rule(rule="target", target=3.27, direction="above"), paired=False)
    assert above["p"] == pytest.approx(sps.ttest_1samp(x, 3.27, alternative="greater").pvalue)


def test_known_sigma_by_hand():
    x = np.array([3.2785, 3.2779, 3.2790])
    r = d.evaluate(x, None, rule(rule="known_sigma", target=3.28, sigma=0.0013, alpha=0.01), False)
    z = (x.mean() - 3.28) / (0.0013 / math.sqrt(3))
    assert r["statistic"] == pytest.approx(z, rel=1e-12)
    assert r["p"] == pytest.approx(0.5 * math.erfc(-z / math.sqrt(2)), rel=1e-12)
    assert r["est_high"] == pytest.approx(x.mean() + 2.3263478740 * 0.0013 / math.sqrt(3))


@pytest.mark.parametrize("paired", [False, True])
def test_equivalence_is_statsmodels_tost(paired):
    x, y = np.array([1.501, 1.499, 1.502, 1.500]), np.array([1.500, 1.500, 1.501, 1.499])
    r = d.evaluate(x, y, rule(rule="equivalence", margin=0.005), paired=paired)
    want = (
        ttost_paired(x, y, -0.005, 0.005)
        if paired
        else ttost_ind(x, y, -0.005, 0.005, usevar="unequal")
    )
    assert r["p"] == pytest.approx(want[0], rel=1e-12) and r["est_level"] == pytest.approx(0.9)
    assert r["verdict"] == ("equivalent" if want[0] < 0.05 else "not shown equivalent")


def test_frontier_is_one_sided_against_the_named_condition():
    r = d.evaluate(TWO, FOUR, rule(rule="frontier", against="prev"), paired=False)
    want = sps.ttest_ind(TWO, FOUR, equal_var=False, alternative="less")
    assert r["p"] == pytest.approx(want.pvalue, rel=1e-12)
    assert r["verdict"] in ("beats the frontier", "does not beat the frontier")


def test_censored_runs_rank_above_every_observed_one():
    x, cx = np.array([100.0, 120.0, 200.0]), np.array([False, False, True])
    y, cy = np.array([150.0, 200.0, 200.0]), np.array([False, True, True])
    r = d.evaluate(x, y, rule(), paired=False, censored=(cx, cy))
    want = sps.mannwhitneyu([100, 120, np.inf], [150, np.inf, np.inf])
    assert r["test"] == "Mann-Whitney (censored)" and r["p"] == pytest.approx(want.pvalue)
    assert math.isnan(r["est_low"])


def test_smallest_reachable_p_of_the_rank_tests():
    assert d.mwu_min_p(3, 3) == pytest.approx(sps.mannwhitneyu([1, 2, 3], [4, 5, 6]).pvalue)
    assert d.wilcoxon_min_p(3) == pytest.approx(sps.wilcoxon([1, 2, 3]).pvalue)
    assert d.mwu_min_p(3, 3, sides=1) == pytest.approx(0.05)


@pytest.mark.parametrize(
    ("decision", "key"),
    [
        ({"rule": "target"}, "decision.target"),
        ({"rule": "known_sigma", "target": 3.28}, "decision.sigma"),
        ({"rule": "equivalence"}, "decision.margin"),
        ({"rule": "frontier"}, "decision.against"),
        ({"rule": "vibes"}, "decision.rule"),
        ({"preset": "kaggle"}, "decision.preset"),
        ({"alpha": 0.7}, "decision.alpha"),
    ],
)
def test_bad_rules_name_their_key(decision, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        d.resolve_rule(decision)


def test_holm_levels_give_intervals_that_agree_with_the_adjusted_p():
    p_adj, levels = d.holm_levels([0.01, 0.04, 0.03, np.nan], 0.05)
    assert p_adj[:3] == pytest.approx([0.03, 0.06, 0.06]) and np.isnan(p_adj[3])
    assert levels[:3] == pytest.approx([1 - 0.05 / 3] * 3)


arm = st.lists(st.floats(-1, 1, allow_nan=False), min_size=2, max_size=6)


@settings(max_examples=60, deadline=None)
@given(xs=st.lists(arm, min_size=1, max_size=4), ref=arm, kind=st.sampled_from(
    ["difference", "record", "frontier", "equivalence"]), paired=st.booleans())  # fmt: skip
def test_a_verdict_never_disagrees_with_its_interval(xs, ref, kind, paired):
    r = rule(rule=kind, min_delta=0.05, margin=0.3, against="ref")
    ref = np.array(ref)
    results = []
    for x in xs:
        x = np.array(x)
        if paired:
            n = min(len(x), len(ref))
            x, y = x[:n], ref[:n]
        else:
            y = ref
        results.append((x, y, d.evaluate(x, y, r, paired)))
    p_adj, levels = d.holm_levels([res["p"] for *_, res in results], r["alpha"])
    for (x, y, _), pa, level in zip(results, p_adj, levels, strict=True):
        if not np.isfinite(level):
            continue
        lvl = 1 - 2 * (1 - level) if kind == "equivalence" else level
        res = d.evaluate(x, y, r, paired, lvl)
        if not np.isfinite(res["est_high"]) and not np.isfinite(res["est_low"]):
            continue
        lo, hi = res["est_low"], res["est_high"]
        if kind == "difference":
            excludes = lo > 0 or hi < 0
        elif kind == "equivalence":
            excludes = lo > -0.3 and hi < 0.3
        else:
            excludes = hi < (-0.05 if kind == "record" else 0.0)
        assert res["passes"] == excludes
        if kind != "equivalence" and abs(pa - r["alpha"]) > 1e-9:
            assert excludes == (pa < r["alpha"])
