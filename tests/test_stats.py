import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from speedlab.analysis.stats import (
    BOOT_SEED,
    bootstrap_interval,
    compare,
    hedges_g,
    holm,
    stats_table,
    summarize,
    verdict,
    write_stats,
)


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
    ci = welch.confidence_interval(0.95)
    assert (c["diff_low"], c["diff_high"]) == pytest.approx((ci.low, ci.high), rel=1e-12)
    se = np.sqrt(np.var(BETTER, ddof=1) / len(BETTER) + np.var(BASE, ddof=1) / len(BASE))
    half = sps.t.ppf(0.975, welch.df) * se  # Welch's interval, written out
    assert c["diff_high"] - c["diff"] == pytest.approx(half, rel=1e-9)


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
    from speedlab.analysis.stats import STATS_COLUMNS, main

    runs_frame({"uniform": BASE, "layerwise": BETTER}).to_parquet(tmp_path / "runs.parquet")
    out = tmp_path / "out" / "stats.csv"
    options = {
        "metrics": ["q_val_bpb"],
        "baseline": "uniform",
        "conditions": ["uniform", "layerwise"],
        "planned_seeds": 5,
    }
    main(
        [
            "--options",
            json.dumps(options),
            "--runs",
            str(tmp_path / "runs.parquet"),
            "--out",
            str(out),
        ]
    )
    table = pd.read_csv(out)
    assert list(table.columns) == STATS_COLUMNS
    assert list(table["condition"]) == ["uniform", "layerwise"]
    assert table.loc[0, ["diff", "welch_p", "verdict", "baseline"]].isna().all()
    assert table.loc[1, "verdict"] == "better" and table.loc[1, "n_planned"] == 5


# --- bootstrap, Mann-Whitney, Hedges g, Holm, power, record rule -------------------------------


def _scipy_boot(x, method):
    res = sps.bootstrap(
        (np.asarray(x, dtype=float),),
        np.mean,
        n_resamples=9999,
        confidence_level=0.95,
        method=method,
        rng=np.random.default_rng(BOOT_SEED),
    )
    return res.confidence_interval.low, res.confidence_interval.high


def test_bootstrap_interval_matches_scipy_with_the_same_seed():
    s = summarize(runs_frame({"a": BASE, "b": [1.5]}), "q_val_bpb", ["a", "b"], 4)
    s = s.set_index("condition")
    lo, hi = _scipy_boot(BASE, "BCa")
    assert np.isfinite([lo, hi]).all()
    assert (s.loc["a", "boot_low"], s.loc["a", "boot_high"]) == pytest.approx((lo, hi))
    assert lo < np.mean(BASE) < hi
    assert s.loc["b", ["boot_low", "boot_high"]].isna().all()  # n < 2
    # reproducible: the same call gives the same numbers
    again = summarize(runs_frame({"a": BASE}), "q_val_bpb", ["a"], 4).iloc[0]
    assert again["boot_low"] == s.loc["a", "boot_low"]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_bootstrap_falls_back_to_percentile_when_bca_is_nan():
    x = [1.25, 1.25, 1.25]  # degenerate: BCa's acceleration is 0/0
    with pytest.warns(sps.DegenerateDataWarning):
        bca = _scipy_boot(x, "BCa")
    assert np.isnan(bca).any()
    assert bootstrap_interval(np.array(x)) == pytest.approx(_scipy_boot(x, "percentile"))
    assert bootstrap_interval(np.array(x)) == (1.25, 1.25)


def test_mann_whitney_against_scipy():
    c = compare(runs_frame({"a": BASE, "b": BETTER}), "q_val_bpb", "a", ["a", "b"]).iloc[0]
    assert c["mwu_p"] == pytest.approx(sps.mannwhitneyu(BETTER, BASE).pvalue)
    # complete separation, 5 vs 4, exact: p = 2 / C(9, 4) = 2 / 126
    assert c["mwu_p"] == pytest.approx(2 / 126)


def test_hedges_g_hand_checked():
    # a: mean 2, var 1 (n 3); b: mean 6, var 10 (n 5). Pooled var 7, df 6, d = 4 / sqrt(7).
    # J(6) = Gamma(3) / (sqrt(3) Gamma(2.5)) = 2 / (sqrt(3) * 3 sqrt(pi) / 4) = 8 / (3 sqrt(3 pi)).
    # V_d = 8/15 + d^2 / 16, SE_g = J sqrt(V_d), CI = g +- 1.959964 SE_g.
    c = compare(
        runs_frame({"a": [1, 2, 3], "b": [2, 4, 6, 8, 10]}), "q_val_bpb", "a", ["a", "b"]
    ).iloc[0]
    d = 4 / np.sqrt(7)
    j = 8 / (3 * np.sqrt(3 * np.pi))
    assert j == pytest.approx(0.868627, abs=1e-6)
    g = j * d
    assert g == pytest.approx(1.313240, abs=1e-6)
    se = j * np.sqrt(8 / 15 + d**2 / 16)
    assert c["hedges_g"] == pytest.approx(g)
    assert (c["g_low"], c["g_high"]) == pytest.approx((g - 1.959964 * se, g + 1.959964 * se))
    # zero pooled sd or an arm below 2: undefined
    assert np.isnan(hedges_g(np.array([1.0, 1.0]), np.array([2.0, 2.0]))).all()
    assert np.isnan(hedges_g(np.array([1.0]), np.array([2.0, 3.0]))).all()
    # lower condition -> negative g
    better = compare(runs_frame({"a": BASE, "b": BETTER}), "q_val_bpb", "a", ["a", "b"]).iloc[0]
    assert better["hedges_g"] < better["g_high"] < 0


def test_holm_hand_worked():
    # sorted 0.01, 0.03, 0.04 -> x3, x2, x1 = 0.03, 0.06, 0.04 -> running max 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    out = holm([0.5, float("nan"), 0.001])  # NaN ignored, m = 2
    assert out[0] == pytest.approx(0.5) and np.isnan(out[1]) and out[2] == pytest.approx(0.002)
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])  # capped at 1


def test_verdict_uses_holm_when_several_comparisons():
    runs = runs_frame({"a": [1, 2, 3], "b": [2, 4, 6, 8, 10], "c": [1.1, 2.1, 2.9]})
    c = compare(runs, "q_val_bpb", "a", ["a", "b", "c"]).set_index("condition")
    # b alone: Welch p = 0.046 < 0.05 (worse); with c in the family Holm doubles it.
    assert c.loc["b", "test"] == "Welch t" and c.loc["c", "test"] == "paired t"
    assert c.loc["b", "p"] == c.loc["b", "welch_p"] < 0.05 < c.loc["b", "p_adj"]
    assert c.loc["b", "p_adj"] == pytest.approx(holm(c["p"])[0])
    assert c.loc["b", "verdict"] == "no detectable difference"
    # ... and its interval, at the level Holm tested it, contains 0 (Bonferroni's 97.5%).
    assert c.loc["b", "est_level"] == pytest.approx(0.975) and c.loc["b", "adjusted"] == "holm"
    assert c.loc["b", "est_low"] < 0 < c.loc["b", "est_high"]
    assert c.loc["b", "diff_low"] > 0  # the unadjusted Welch interval would exclude it
    one = compare(runs, "q_val_bpb", "a", ["a", "b"]).iloc[0]
    assert one["p_adj"] == one["welch_p"] and one["verdict"] == "worse"
    assert one["adjusted"] == "none" and one["est_low"] > 0


def test_matched_seeds_are_paired_and_match_ttest_rel():
    base, cond = [2.5618, 2.5601, 2.5633], [2.5857, 2.5849, 2.5871]
    c = compare(runs_frame({"u": base, "l": cond}), "q_val_bpb", "u", ["u", "l"]).iloc[0]
    ref = sps.ttest_rel(cond, base)
    assert c["design"] == "paired" and c["n_pairs"] == 3 and c["test"] == "paired t"
    assert abs(c["p"] - ref.pvalue) < 1e-12 and abs(c["paired_p"] - ref.pvalue) < 1e-12
    ci = ref.confidence_interval(0.95)
    assert (c["est_low"], c["est_high"]) == pytest.approx((ci.low, ci.high), rel=1e-12)
    assert c["wilcoxon_p"] == pytest.approx(sps.wilcoxon(cond, base).pvalue)
    # 3 pairs: the signed-rank test cannot go below 0.25, Mann-Whitney 3 vs 3 below 0.1.
    assert c["wilcoxon_min_p"] == 0.25 and c["mwu_min_p"] == pytest.approx(0.1)
    assert c["verdict"] == "worse"
    ind = compare(
        runs_frame({"u": base, "l": cond}), "q_val_bpb", "u", ["u", "l"], design="independent"
    ).iloc[0]
    assert ind["design"] == "independent" and ind["p"] == pytest.approx(ind["welch_p"])


def test_record_rule_from_the_preset():
    from speedlab.analysis.decision import resolve_rule

    rule = resolve_rule({"preset": "parameter_golf"})
    c = compare(runs_frame({"a": BASE, "b": BETTER}), "q_val_bpb", "a", ["a", "b"], rule=rule)
    c = c.iloc[0]
    # BETTER is 0.093 below BASE: beyond 0.005 at one-sided p < 0.01 (Welch, shifted null).
    want = sps.ttest_ind(BETTER, np.array(BASE) - 0.005, equal_var=False, alternative="less")
    assert c["p"] == pytest.approx(want.pvalue, rel=1e-12) and c["verdict"] == "record"
    assert c["est_high"] < -0.005 and c["est_low"] == -np.inf
    # significant but only 0.004 lower: not a record
    base = [1.5000, 1.5001, 1.4999, 1.5000]
    runs = runs_frame({"a": base, "b": [v - 0.004 for v in base]})
    c = compare(runs, "q_val_bpb", "a", ["a", "b"], rule=rule).iloc[0]
    assert c["welch_p"] < 1e-6 and c["verdict"] == "not a record"


def test_target_rule_tests_every_condition_against_the_value():
    from speedlab.analysis.decision import resolve_rule

    rule = resolve_rule({"rule": "target", "target": 1.45, "alpha": 0.01})
    c = compare(runs_frame({"a": BASE, "b": BETTER}), "q_val_bpb", "a", ["a", "b"], rule=rule)
    c = c.set_index("condition")
    assert list(c.index) == ["a", "b"] and c["against"].isna().all()
    for cond, x in (("a", BASE), ("b", BETTER)):
        want = sps.ttest_1samp(x, 1.45, alternative="less").pvalue
        # Holm over the two one-sample tests
        assert c.loc[cond, "p"] == pytest.approx(want, rel=1e-12)
    assert (
        c.loc["b", "verdict"] == "meets the target" and c.loc["a", "verdict"] != "meets the target"
    )


def test_planning_columns_use_the_pooled_noise_and_min_effect():
    from speedlab.analysis.power import detectable_effect, seeds_for_effect

    runs = runs_frame({"a": BASE, "b": BETTER})
    plan = {"min_effect": 0.02, "power": 0.8}
    c = compare(runs, "q_val_bpb", "a", ["a", "b"], plan=plan).iloc[0]
    pooled = np.sqrt((3 * np.var(BASE, ddof=1) + 4 * np.var(BETTER, ddof=1)) / 7)
    assert c["noise_sd"] == pytest.approx(pooled) and c["noise_source"] == "pooled from runs"
    rule = {"rule": "difference", "alpha": 0.05}
    assert c["detectable"] == pytest.approx(
        detectable_effect(5, 4, pooled, design="independent", rule=rule)
    )
    assert c["n_for_min_effect"] == seeds_for_effect(0.02, pooled, design="independent", rule=rule)
    assert "n_for_80pct_power" not in c.index  # no post-hoc power at the observed effect


def test_time_is_its_own_block_and_json_lists_exclusions(tmp_path):
    import json

    runs = runs_frame({"uniform": BASE, "layerwise": BETTER}, diverged={("layerwise", 4)})
    runs["train_time_s"] = [100.0, 101.0, 99.0, 100.5, 130.0, 131.0, 129.5, 130.5, 500.0]
    runs.loc[0, "q_val_bpb"] = np.nan  # a run that lost its metric
    table = write_stats(
        runs,
        ["q_val_bpb", "train_time_s"],
        "uniform",
        ["uniform", "layerwise"],
        5,
        tmp_path / "s.csv",
        out_json=tmp_path / "s.json",
    )
    assert list(table["metric"]) == ["q_val_bpb"] * 2 + ["train_time_s"] * 2
    t = table.set_index(["metric", "condition"])
    lw = runs[(runs.condition == "layerwise") & ~runs.diverged]["train_time_s"]
    base = runs[runs.condition == "uniform"]["train_time_s"]
    want = sps.ttest_ind(lw, base, equal_var=False)
    assert t.loc[("train_time_s", "layerwise"), "welch_p"] == pytest.approx(want.pvalue, rel=1e-12)
    assert t.loc[("train_time_s", "layerwise"), "verdict"] == "worse"
    assert t.loc[("q_val_bpb", "uniform"), "n"] == 3  # the NaN run is left out of bpb only
    assert t.loc[("train_time_s", "uniform"), "n"] == 4
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["primary_metric"] == "q_val_bpb" and set(doc["metrics"]) == {
        "q_val_bpb",
        "train_time_s",
    }
    assert doc["excluded"] == [
        {"condition": "uniform", "seed": 0, "reason": "no q_val_bpb"},
        {"condition": "layerwise", "seed": 4, "reason": "diverged"},
    ]
    row = next(r for r in doc["metrics"]["q_val_bpb"] if r["condition"] == "layerwise")
    assert row["welch_p"] == t.loc[("q_val_bpb", "layerwise"), "welch_p"]
    assert pd.read_csv(tmp_path / "s.csv").shape == table.shape
