import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from speedlab.stats import compare, stats_table, summarize, verdict, write_stats


def runs_frame(groups: dict[str, list[float]], diverged=()):
    rows = [
        {"condition": c, "seed": i, "q_val_bpb": v, "diverged": (c, i) in diverged}
        for c, vals in groups.items()
        for i, v in enumerate(vals)
    ]
    return pd.DataFrame(rows)


BASE = [1.50, 1.52, 1.49, 1.51]
BETTER = [1.40, 1.42, 1.41, 1.39, 1.43]


def test_summary_matches_scipy_t_interval():
    s = summarize(runs_frame({"a": BASE}), "q_val_bpb", ["a"], planned_seeds=5).iloc[0]
    x = np.array(BASE)
    lo, hi = sps.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=sps.sem(x))
    assert (s["n_planned"], s["n"]) == (5, 4)
    assert s["mean"] == pytest.approx(1.505) and s["sd"] == pytest.approx(x.std(ddof=1))
    assert (s["ci_low"], s["ci_high"]) == pytest.approx((lo, hi))
    # by hand: t_{0.975,3} = 3.182446, sd = 0.0129099, sem = sd / 2
    assert s["ci_high"] - s["mean"] == pytest.approx(3.182446 * 0.0129099 / 2, rel=1e-5)


def test_student_and_welch_against_scipy():
    c = compare(runs_frame({"a": BASE, "b": BETTER}), "q_val_bpb", "a", ["a", "b"]).iloc[0]
    student = sps.ttest_ind(BETTER, BASE, equal_var=True)
    welch = sps.ttest_ind(BETTER, BASE, equal_var=False)
    assert c["student_t"] == pytest.approx(student.statistic) and c["student_df"] == 7
    assert c["student_p"] == pytest.approx(student.pvalue)
    assert c["welch_t"] == pytest.approx(welch.statistic)
    assert c["welch_df"] == pytest.approx(welch.df) and c["welch_p"] == pytest.approx(welch.pvalue)
    assert c["diff"] == pytest.approx(np.mean(BETTER) - np.mean(BASE))
    assert c["diff_pct"] == pytest.approx(100 * c["diff"] / np.mean(BASE))
    assert c["verdict"] == "better"


def test_verdicts():
    assert verdict(+0.1, 0.001, 3, 3) == "worse"
    assert verdict(-0.1, 0.2, 3, 3) == "no detectable difference"
    assert verdict(-0.1, float("nan"), 3, 3) == "no detectable difference"
    assert verdict(-0.1, 0.001, 1, 3) == "insufficient data"


def test_diverged_runs_are_excluded_and_can_leave_too_few():
    runs = runs_frame({"a": BASE, "b": [1.4, float("nan"), 9.9]}, diverged={("b", 2)})
    table = stats_table(runs, "q_val_bpb", "a", ["a", "b"], planned_seeds=4).set_index("condition")
    assert table.loc["b", "n"] == 1 and table.loc["b", "mean"] == pytest.approx(1.4)
    assert table.loc["b", "verdict"] == "insufficient data"
    assert np.isnan(table.loc["b", "welch_p"]) and pd.isna(table.loc["a", "verdict"])


def test_csv_roundtrip(tmp_path):
    runs = runs_frame({"a": BASE, "b": BETTER})
    written = write_stats(runs, "q_val_bpb", "a", ["a", "b"], 5, tmp_path / "s.csv")
    back = pd.read_csv(tmp_path / "s.csv")
    assert list(back.columns) == list(written.columns)
    assert back["welch_p"].iloc[1] == written["welch_p"].iloc[1]  # full precision kept


def test_hand_checkable_t_tests():
    # a: mean 2, var 1; b: mean 6, var 10.
    # Student: pooled var (2*1 + 4*10)/6 = 7, se = sqrt(7 * (1/3 + 1/5)), df = 6.
    # Welch: se^2 = 1/3 + 10/5 = 7/3, df = (7/3)^2 / ((1/3)^2/2 + 2^2/4) = 98/19.
    runs = runs_frame({"a": [1, 2, 3], "b": [2, 4, 6, 8, 10]})
    c = compare(runs, "q_val_bpb", "a", ["a", "b"]).iloc[0]
    assert c["diff"] == pytest.approx(4.0) and c["diff_pct"] == pytest.approx(200.0)
    assert c["student_t"] == pytest.approx(4 / np.sqrt(7 * 8 / 15))
    assert c["student_df"] == 6
    assert c["welch_t"] == pytest.approx(4 / np.sqrt(7 / 3))
    assert c["welch_df"] == pytest.approx(98 / 19)
    assert c["welch_p"] == pytest.approx(2 * sps.t.sf(4 / np.sqrt(7 / 3), 98 / 19))
    assert c["student_p"] == pytest.approx(2 * sps.t.sf(4 / np.sqrt(7 * 8 / 15), 6))
    # 4 / sqrt(7/3) = 2.619, p = 0.046 < 0.05 and the condition is higher: worse.
    assert c["verdict"] == "worse"


def test_equal_variances_make_student_and_welch_agree():
    # sd 1 in both arms of 3: t = -3 / sqrt(2/3) = -3.674, df = 4 for both tests.
    c = compare(runs_frame({"a": [4, 5, 6], "b": [1, 2, 3]}), "q_val_bpb", "a", ["a", "b"]).iloc[0]
    assert c["student_t"] == pytest.approx(-3 / np.sqrt(2 / 3))
    assert c["welch_t"] == pytest.approx(c["student_t"])
    assert c["student_df"] == 4 and c["welch_df"] == pytest.approx(4)
    assert c["welch_p"] == pytest.approx(c["student_p"]) and c["verdict"] == "better"


def test_small_arms_give_nan_not_errors():
    runs = runs_frame({"a": [1.5], "b": [1.25, 1.25, 1.25]})  # exact in binary
    s = summarize(runs, "q_val_bpb", ["a", "b", "absent"], planned_seeds=3).set_index("condition")
    assert s.loc["a", "n"] == 1 and s.loc["a", "mean"] == 1.5
    assert s.loc["a", ["sd", "sem", "ci_low", "ci_high"]].isna().all()
    assert s.loc["absent", "n"] == 0 and np.isnan(s.loc["absent", "mean"])
    # identical seeds: a zero-width interval rather than scipy's NaN for scale=0
    assert s.loc["b", "ci_low"] == s.loc["b", "ci_high"] == 1.25
    c = compare(runs, "q_val_bpb", "a", ["a", "b"]).iloc[0]
    assert c["verdict"] == "insufficient data" and np.isnan(c["student_t"])


def test_baseline_must_be_a_condition():
    with pytest.raises(ValueError, match="baseline"):
        stats_table(runs_frame({"a": BASE}), "q_val_bpb", "z", ["a"], planned_seeds=4)


def test_cli_writes_the_csv(tmp_path):
    from speedlab.stats import STATS_COLUMNS, main

    runs_frame({"uniform": BASE, "layerwise": BETTER}).to_parquet(tmp_path / "runs.parquet")
    out = tmp_path / "out" / "stats.csv"
    main(
        [
            "--runs",
            str(tmp_path / "runs.parquet"),
            "--metric",
            "q_val_bpb",
            "--baseline",
            "uniform",
            "--conditions",
            "uniform,layerwise",
            "--planned-seeds",
            "5",
            "--out",
            str(out),
        ]
    )
    table = pd.read_csv(out)
    assert list(table.columns) == STATS_COLUMNS
    assert list(table["condition"]) == ["uniform", "layerwise"]
    assert table.loc[0, ["diff", "welch_p", "verdict", "baseline"]].isna().all()
    assert table.loc[1, "verdict"] == "better" and table.loc[1, "n_planned"] == 5
