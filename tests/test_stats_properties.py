"""Property tests of the statistics: what must hold whatever the seeds' values are."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from speedlab.analysis.stats import compare, holm, summarize

values = st.lists(
    st.floats(min_value=1.0, max_value=5.0, allow_nan=False), min_size=2, max_size=8
).filter(lambda v: np.ptp(v) > 1e-3)  # t-tests need some spread
shifts = st.floats(min_value=-1.0, max_value=1.0, allow_nan=False)


def frame(base, cond):
    rows = [("base", i, v) for i, v in enumerate(base)]
    rows += [("cond", i, v) for i, v in enumerate(cond)]
    return pd.DataFrame(rows, columns=["condition", "seed", "m"]).assign(diverged=False)


def table(runs):
    return compare(runs, "m", "base", ["base", "cond"]).set_index("condition").loc["cond"]


TESTED = ["diff", "student_t", "student_p", "welch_t", "welch_p", "mwu_p", "hedges_g"]


@settings(max_examples=30, deadline=None)
@given(base=values, cond=values, seed=st.integers(0, 2**32 - 1))
def test_row_order_does_not_matter(base, cond, seed):
    runs = frame(base, cond)
    shuffled = runs.sample(frac=1.0, random_state=np.random.RandomState(seed % 2**32))
    a, b = table(runs), table(shuffled)
    for col in TESTED:
        assert a[col] == pytest.approx(b[col], rel=1e-9, abs=1e-12), col
    sa = summarize(runs, "m", ["base", "cond"], 8).set_index("condition")
    sb = summarize(shuffled, "m", ["base", "cond"], 8).set_index("condition")
    cols = ["n", "mean", "sd", "ci_low", "ci_high"]
    assert np.allclose(sa[cols].to_numpy(float), sb[cols].to_numpy(float), rtol=1e-9)


@settings(max_examples=30, deadline=None)
@given(base=values, cond=values, c=shifts)
def test_shifting_both_arms_changes_no_test_and_one_arm_moves_the_difference(base, cond, c):
    a = table(frame(base, cond))
    both = table(frame([v + c for v in base], [v + c for v in cond]))
    for col in TESTED:
        assert both[col] == pytest.approx(a[col], rel=1e-6, abs=1e-9), col
    one = table(frame(base, [v + c for v in cond]))
    assert one["diff"] == pytest.approx(a["diff"] + c, abs=1e-9)


@settings(max_examples=30, deadline=None)
@given(base=values, cond=values)
def test_p_values_are_probabilities_and_swapping_arms_flips_the_sign(base, cond):
    a = table(frame(base, cond))
    swapped = table(frame(cond, base))
    for col in ("student_p", "welch_p", "mwu_p"):
        assert 0.0 <= a[col] <= 1.0
    for col in ("p", "p_adj"):  # NaN when the paired differences are all zero (scipy's)
        assert np.isnan(a[col]) or 0.0 <= a[col] <= 1.0
    assert swapped["diff"] == pytest.approx(-a["diff"], abs=1e-12)
    assert swapped["welch_p"] == pytest.approx(a["welch_p"], rel=1e-9)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=12))
def test_holm_never_lowers_a_p_value_and_keeps_their_order(ps):
    adjusted = holm(ps)
    assert np.all(adjusted >= np.asarray(ps) - 1e-15) and np.all(adjusted <= 1.0)
    order = np.argsort(ps, kind="stable")
    assert np.all(np.diff(adjusted[order]) >= -1e-15)
