"""Curve metrics (steps/time to a target, censored when never reached) and the decision rule
followed over the validation steps (speedlab.analysis.curves)."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from speedlab.analysis import curves as cv


def curve(condition, seed, points, metric="val_loss", study="s"):
    """Rows of curves.parquet from (step, time_s, value) points."""
    return [
        dict(study=study, condition=condition, seed=seed, step=st, tokens=st * 10, time_s=t,
             metric=metric, value=v)
        for st, t, v in points
    ]  # fmt: skip


def test_steps_and_time_to_target_interpolate_the_first_crossing():
    rows = curve("a", 0, [(0, 0.0, 4.0), (10, 5.0, 3.5), (20, 11.0, 3.1), (30, 17.0, 3.0)])
    rows += curve("a", 1, [(0, 0.0, 3.2), (10, 4.0, 3.0)])  # already below at its first point
    got = cv.target_columns(pd.DataFrame(rows), "val_loss", 3.28).set_index("seed")
    # 3.5 -> 3.1 between steps 10 and 20: 3.28 is 0.22/0.4 = 55% of the way.
    assert got.loc[0, "steps_to_target"] == pytest.approx(10 + 0.55 * 10)
    assert got.loc[0, "time_to_target"] == pytest.approx(5.0 + 0.55 * 6.0)
    assert not got.loc[0, "target_censored"]
    assert (got.loc[1, "steps_to_target"], got.loc[1, "target_censored"]) == (0, False)


def test_a_run_that_never_reaches_the_target_is_censored_not_dropped():
    rows = curve("a", 0, [(0, 0.0, 4.0), (10, 5.0, 3.6), (20, 10.0, 3.4)])
    rows += curve("a", 0, [(0, 0.0, 9.0)], metric="train_loss")
    got = cv.target_columns(pd.DataFrame(rows), "val_loss", 3.28)
    assert len(got) == 1
    r = got.iloc[0]
    assert r["target_censored"] and (r["steps_to_target"], r["time_to_target"]) == (20, 10.0)


def test_add_target_columns_keeps_every_run_and_marks_missing_curves():
    runs = pd.DataFrame({"study": ["s", "s"], "condition": ["a", "b"], "seed": [0, 0]})
    rows = curve("a", 0, [(0, 0.0, 4.0), (10, 5.0, 3.0)])
    out = cv.add_target_columns(runs, pd.DataFrame(rows), {"metric": "val_loss", "value": 3.5})
    assert list(out["condition"]) == ["a", "b"]
    assert out.loc[0, "steps_to_target"] == pytest.approx(5.0)
    assert math.isnan(out.loc[1, "steps_to_target"]) and not out.loc[1, "target_censored"]
    none = cv.add_target_columns(runs, pd.DataFrame(rows), None)
    assert none["steps_to_target"].isna().all() and not none["target_censored"].any()


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ({"metric": "train_loss", "value": 3.0}, "curve_target.metric"),
        ({"metric": "val_loss", "value": "low"}, "curve_target.value"),
        ({"metric": "val_loss"}, "curve_target.value"),
    ],
)
def test_bad_curve_targets_name_the_key(target, message):
    with pytest.raises(ValueError, match=message):
        cv.check_target(target)


SIGMA = 0.0013
Z_RULE = {
    "rule": "known_sigma", "alpha": 0.01, "sigma": SIGMA, "target": 3.28, "direction": "below",
    "min_delta": 0.0, "margin": None, "against": None, "preset": None,
}  # fmt: skip


def z_curves():
    """Three runs falling through 3.28; seed 2 skips step 20, so only 0, 10, 30, 40 count."""
    rng = np.random.default_rng(0)
    rows = []
    for seed in range(3):
        steps = [0, 10, 20, 30, 40] if seed != 2 else [0, 10, 30, 40]
        for st in steps:
            rows += curve("a", seed, [(st, st * 0.5, 3.29 - st * 0.0001 + rng.normal(0, 0.0005))])
    return pd.DataFrame(rows)


def test_the_z_rule_over_steps_matches_a_hand_computation_on_common_steps():
    data = z_curves()
    table = cv.rule_steps(data, "val_loss", Z_RULE, ["a"], "a", "auto")
    assert list(table["step"]) == [0, 10, 30, 40]
    for r in table.itertuples():
        x = data[(data["step"] == r.step)]["value"].to_numpy()
        z = (x.mean() - 3.28) / (SIGMA / math.sqrt(len(x)))
        p = sps.norm.cdf(z)  # below the target passes
        assert r.p == pytest.approx(p, rel=1e-9) and r.passes == (p < 0.01)
    passing = table[table["passes"]]["step"]
    if len(passing):
        assert table.loc[table["earliest"], "step"].tolist() == [passing.min()]
    else:
        assert not table["earliest"].any()


def test_rules_without_a_step_reading_are_refused():
    with pytest.raises(ValueError, match="rule"):
        cv.rule_steps(z_curves(), "val_loss", {**Z_RULE, "rule": "equivalence"}, ["a"], "a")
    with pytest.raises(ValueError, match="metric"):
        cv.rule_steps(z_curves(), "val_bpb", Z_RULE, ["a"], "a")


def test_the_cli_writes_the_table_and_a_figure(tmp_path):
    import json

    z_curves().to_parquet(tmp_path / "curves.parquet")
    runs = pd.DataFrame({"condition": ["a"] * 3, "seed": [0, 1, 2], "diverged": [False] * 3})
    runs.to_parquet(tmp_path / "runs.parquet")
    options = {"metric": "val_loss", "rule": Z_RULE, "conditions": ["a"], "baseline": "a"}
    cv.main(
        ["--options", json.dumps(options), "--curves", str(tmp_path / "curves.parquet"),
         "--runs", str(tmp_path / "runs.parquet"), "--table-out", str(tmp_path / "t.csv"),
         "--figure-out", str(tmp_path / "f.png")]
    )  # fmt: skip
    table = pd.read_csv(tmp_path / "t.csv")
    assert list(table.columns) == cv.RULE_STEP_COLUMNS and len(table) == 4
    assert (tmp_path / "f.png").stat().st_size > 1000
