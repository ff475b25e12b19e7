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
