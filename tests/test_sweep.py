"""Sweep tables and figures: numbers against scipy, exclusions, p_best, plots and the CLI."""

from __future__ import annotations

import json

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from speedlab.analysis.sweep import (
    DEFAULT_NOT_SWEPT,
    IS_DEFAULT,
    NO_DEFAULT,
    NOT_TESTABLE,
    SWEEP_COLUMNS,
    log_axis,
    main,
    plot_sweep,
    sweep_table,
)

KEY = "optim.matrix_lr"
# Seeds per learning rate: unequal n, and 0.16 has a single run.
SEEDS = {0.005: 3, 0.01: 3, 0.02: 4, 0.04: 5, 0.08: 3, 0.16: 1}
BASELINE_LR = 0.02


def run(lr, seed, value, diverged=False, d_model=256, baseline=False):
    return {
        "study": "lr",
        "condition": f"lr{lr:g}",
        "seed": seed,
        "is_baseline": baseline,
        "q_val_bpb": value,
        "diverged": diverged,
        "cfg.optim.matrix_lr": lr,
        "cfg.model.d_model": d_model,
    }


def bowl(noise=0.005, opt=0.04, d_model=256, rng_seed=0):
    """A quadratic bowl in log(lr) with its minimum at `opt`, plus seed noise."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for lr, n in SEEDS.items():
        for seed in range(n):
            value = 1.2 + 0.02 * np.log(lr / opt) ** 2 + rng.normal(0, noise)
            rows.append(run(lr, seed, value, d_model=d_model, baseline=lr == BASELINE_LR))
    rows.append(run(0.08, 9, 7.5, diverged=True, d_model=d_model))  # counted as excluded
    rows.append(run(0.32, 0, np.nan, diverged=True, d_model=d_model))  # a value with no data
    return pd.DataFrame(rows)


def x_of(runs, lr):
    ok = runs[(runs["cfg.optim.matrix_lr"] == lr) & ~runs["diverged"]]
    return ok["q_val_bpb"].to_numpy()


def test_table_matches_scipy():
    runs = bowl()
    table = sweep_table(runs, KEY, "q_val_bpb", n_boot=2000)
    assert list(table.columns) == SWEEP_COLUMNS
    assert table["value"].tolist() == [*SEEDS, 0.32]  # sorted by value
    t = table.set_index("value")
    assert t["n"].to_dict() == {**SEEDS, 0.32: 0}
    assert t["n_excluded"].to_dict() == {
        0.005: 0,
        0.01: 0,
        0.02: 0,
        0.04: 0,
        0.08: 1,
        0.16: 0,
        0.32: 1,
    }
    for lr in (0.005, 0.02, 0.04):
        x = x_of(runs, lr)
        row = t.loc[lr]
        assert row["mean"] == pytest.approx(np.mean(x))
        assert row["sd"] == pytest.approx(np.std(x, ddof=1))
        lo, hi = sps.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=sps.sem(x))
        assert (row["ci_low"], row["ci_high"]) == (pytest.approx(lo), pytest.approx(hi))
    # n=1 and n=0: a mean (or not) but no interval, and no crash.
    assert np.isnan(t.loc[0.16, ["sd", "sem", "ci_low", "ci_high"]].astype(float)).all()
    assert np.isnan(t.loc[0.32, "mean"])
    # A value with fewer than 2 seeds: no ranking is supported, so no P(best) at all.
    assert t["p_best"].isna().all() and not t["ranking_supported"].any()

    # The best value is the lowest mean; the default comes from the baseline runs.
    assert t["is_best"].sum() == 1 and t.loc[0.04, "is_best"]
    assert (t["default"] == BASELINE_LR).all() and t["is_default"].sum() == 1
    best, base = x_of(runs, 0.04), x_of(runs, BASELINE_LR)
    assert t.loc[0.04, "diff"] == pytest.approx(np.mean(best) - np.mean(base))
    welch = sps.ttest_ind(best, base, equal_var=False).pvalue
    assert t.loc[0.04, "welch_p"] == pytest.approx(welch)
    assert t.loc[0.04, "verdict"] == "beats the default"
    assert t.loc[0.005, "verdict"] == "worse than the default"
    assert t.loc[BASELINE_LR, "verdict"] == IS_DEFAULT and t.loc[BASELINE_LR, "diff"] == 0
    assert t.loc[0.16, "verdict"] == NOT_TESTABLE and np.isnan(t.loc[0.16, "welch_p"])
    assert t.loc[0.32, "verdict"] == NOT_TESTABLE


def test_no_detectable_difference_and_n1_arms():
    rows = [run(0.01, i, v) for i, v in enumerate([1.0, 1.2, 0.85])]
    rows += [run(0.02, i, v) for i, v in enumerate([1.05, 0.95, 1.1])]
    rows += [run(0.04, 0, 1.5)]
    table = sweep_table(pd.DataFrame(rows), KEY, "q_val_bpb", default=0.02).set_index("value")
    assert table.loc[0.01, "is_best"]
    assert table.loc[0.01, "verdict"] == "no detectable difference from the default at alpha=0.05"
    # Only a single run at the default: nothing is testable, nothing crashes.
    table = sweep_table(pd.DataFrame(rows), KEY, "q_val_bpb", default=0.04).set_index("value")
    assert (table.loc[[0.01, 0.02], "verdict"] == NOT_TESTABLE).all()
    assert table.loc[0.01, "diff"] == pytest.approx(np.mean([1.0, 1.2, 0.85]) - 1.5)


def test_default_resolution():
    runs = bowl()
    assert (sweep_table(runs, KEY, "q_val_bpb", default=0.04, n_boot=10)["default"] == 0.04).all()
    given = sweep_table(runs, KEY, "q_val_bpb", default=0.03, n_boot=10)
    assert (given["verdict"] == DEFAULT_NOT_SWEPT).all() and not given["is_default"].any()
    none = sweep_table(runs.assign(is_baseline=False), KEY, "q_val_bpb", n_boot=10)
    assert (none["verdict"] == NO_DEFAULT).all() and none["default"].isna().all()
    with pytest.raises(KeyError, match="cfg.optim.nope"):
        sweep_table(runs, "optim.nope", "q_val_bpb")


def ranked_bowl(**kw):
    """bowl() without its one-seed and no-data values, so P(best) is supported."""
    runs = bowl(**kw)
    return runs[~runs[f"cfg.{KEY}"].isin([0.16, 0.32])]


def test_p_best_sums_to_one_per_group_and_is_reproducible():
    runs = pd.concat([ranked_bowl(noise=0.02, d_model=d, rng_seed=d) for d in (128, 256)])
    a = sweep_table(runs, KEY, "q_val_bpb", group="model.d_model", n_boot=3000, seed=1)
    b = sweep_table(runs, KEY, "q_val_bpb", group="model.d_model", n_boot=3000, seed=1)
    c = sweep_table(runs, KEY, "q_val_bpb", group="model.d_model", n_boot=3000, seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert not np.array_equal(a["p_best"], c["p_best"])
    assert a.groupby("group")["p_best"].sum().to_numpy() == pytest.approx([1.0, 1.0])
    assert a.groupby("group")["is_best"].sum().tolist() == [1, 1]
    assert a["group"].tolist() == [128] * 5 + [256] * 5 and a["ranking_supported"].all()
    # The default is the baseline's value within each group.
    assert (a["default"] == BASELINE_LR).all()
    # Noisy seeds: the best value is not certain, but it is the most likely one here.
    best = a[a["is_best"]]
    assert (best["p_best"] < 1).all() and (best["p_best"] > 0.3).all()


def test_log_axis():
    assert log_axis([0.01, 0.1])
    assert log_axis([0.0, 0.001, 0.02])  # zero is ignored
    assert not log_axis([0.02, 0.04, 0.08, 0.16])
    assert not log_axis([128, 256, 512])
    assert not log_axis([0.5])
    assert not log_axis(["adamw", "muon"])


def nonblank(path):
    image = matplotlib.image.imread(path)
    return image[..., :3].std() > 0.05


@pytest.mark.parametrize("grouped", [False, True])
def test_plot_writes_png_and_pdf(tmp_path, grouped):
    runs = pd.concat([bowl(d_model=d, rng_seed=d) for d in (128, 256, 512)])
    group = "model.d_model" if grouped else None
    if not grouped:
        runs = runs[runs["cfg.model.d_model"] == 256]
    table = sweep_table(runs, KEY, "q_val_bpb", group=group, n_boot=500)
    out = plot_sweep(table, KEY, "q_val_bpb", tmp_path / "sweep.png", runs=runs)
    assert out == tmp_path / "sweep.png" and nonblank(out)
    assert out.with_suffix(".pdf").read_bytes().startswith(b"%PDF")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.pdf", "sweep.png"]


def test_plot_linear_axis_and_zero_value(tmp_path):
    rows = [run(lr, s, 1 + lr + 0.01 * s) for lr in (0.0, 0.5, 1.0) for s in range(2)]
    table = sweep_table(pd.DataFrame(rows), KEY, "q_val_bpb", n_boot=100)
    assert nonblank(plot_sweep(table, KEY, "q_val_bpb", tmp_path / "lin.png"))
    rows = [run(lr, s, 1 + lr + 0.01 * s) for lr in (0.0, 0.01, 1.0) for s in range(2)]
    table = sweep_table(pd.DataFrame(rows), KEY, "q_val_bpb", n_boot=100)
    assert nonblank(plot_sweep(table, KEY, "q_val_bpb", tmp_path / "symlog.png"))


def test_cli_round_trip(tmp_path, capsys):
    runs = pd.concat([bowl(d_model=d, rng_seed=d) for d in (128, 256)])
    runs.to_parquet(tmp_path / "runs.parquet")
    table_out, fig_out = tmp_path / "out/sweep.csv", tmp_path / "out/sweep.png"
    options = {
        "key": KEY,
        "metric": "q_val_bpb",
        "group": "model.d_model",
        "default": 0.04,
        "n_boot": 500,
    }
    main(
        [
            "--options", json.dumps(options), "--runs", str(tmp_path / "runs.parquet"),
            "--table-out", str(table_out), "--figure-out", str(fig_out),
        ]
    )  # fmt: skip
    got = pd.read_csv(table_out)
    want = sweep_table(runs, KEY, "q_val_bpb", "model.d_model", default=0.04, n_boot=500)
    assert list(got.columns) == SWEEP_COLUMNS
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    assert nonblank(fig_out) and fig_out.with_suffix(".pdf").exists()
    assert sorted(p.name for p in table_out.parent.iterdir()) == [
        "sweep.csv",
        "sweep.pdf",
        "sweep.png",
    ]
    assert "model.d_model=128: best optim.matrix_lr=0.04" in capsys.readouterr().out


cell = st.lists(st.floats(0.5, 5.0, allow_nan=False), min_size=1, max_size=5)


@settings(max_examples=25, deadline=None)
@given(cells=st.lists(cell, min_size=2, max_size=5), order=st.randoms(use_true_random=False))
def test_table_properties(cells, order):
    rows = [run(0.01 * 2**i, s, v) for i, xs in enumerate(cells) for s, v in enumerate(xs)]
    runs = pd.DataFrame(rows)
    table = sweep_table(runs, KEY, "q_val_bpb", default=0.01, n_boot=200)
    ranked = all(len(xs) >= 2 for xs in cells)
    assert table["ranking_supported"].all() == ranked
    if ranked:
        assert table["p_best"].sum() == pytest.approx(1.0)
    else:
        assert table["p_best"].isna().all()
    assert table["is_best"].sum() == 1
    assert table.loc[table["is_best"], "mean"].iloc[0] == table["mean"].min()
    # Row order of the runs does not matter, bootstrap included.
    index = list(runs.index)
    order.shuffle(index)
    shuffled = sweep_table(runs.loc[index], KEY, "q_val_bpb", default=0.01, n_boot=200)
    pd.testing.assert_frame_equal(table, shuffled)


def test_one_seed_per_value_supports_no_ranking():
    # The published nGPT sweep: one seed per alpha, a 2% spread.
    alphas = [0.05, 0.1, 0.15, 0.2, 0.25, 0.28, 0.3, 0.35]
    rows = [run(a, 0, 3.3 * (1 + 0.02 * abs(a - 0.28)), baseline=a == 0.05) for a in alphas]
    table = sweep_table(pd.DataFrame(rows), KEY, "q_val_bpb", n_boot=200)
    assert table["p_best"].isna().all() and not table["ranking_supported"].any()
    assert table.loc[table["is_best"], "value"].tolist() == [0.28]


def test_best_is_tested_against_its_neighbours_and_the_default_with_holm():
    from speedlab.analysis.sweep import best_tests, cells

    runs = ranked_bowl(noise=0.01, rng_seed=3)
    table = sweep_table(runs, KEY, "q_val_bpb", n_boot=200)
    tests = best_tests(cells(runs, KEY, "q_val_bpb"), table, 0.05)
    assert tests["value"].unique().tolist() == [0.04]
    kinds = dict(zip(tests["against_kind"], tests["against_value"], strict=True))
    assert kinds == {"default": 0.02, "upper neighbour": 0.08}  # the default is the lower one
    p = [sps.ttest_ind(x_of(runs, 0.04), x_of(runs, v), equal_var=False).pvalue
         for v in tests["against_value"]]  # fmt: skip
    assert tests["p"].tolist() == pytest.approx(p, rel=1e-12)
    order = np.argsort(p)
    holm = np.maximum.accumulate(np.minimum(1, (2 - np.arange(2)) * np.array(p)[order]))
    assert tests["p_adj"].to_numpy()[order] == pytest.approx(holm)
    for r in tests.itertuples():
        excludes = r.diff_low > 0 or r.diff_high < 0
        assert excludes == (r.p_adj < 0.05)


def test_picks_and_confirmation_on_fresh_seeds(tmp_path):
    from speedlab.analysis.sweep import best_conditions

    runs = ranked_bowl(noise=0.002, rng_seed=4)
    table = sweep_table(runs, KEY, "q_val_bpb", n_boot=200)
    picks = best_conditions(table, runs, KEY, None)
    assert picks == [
        {"group": None, "best": "lr0.04", "best_value": 0.04, "default": "lr0.02",
         "default_value": 0.02}
    ]  # fmt: skip
    rng = np.random.default_rng(9)
    fresh = [run(lr, s, 1.2 + (0.0 if lr == 0.04 else 0.01) + rng.normal(0, 0.002))
             for lr in (0.04, 0.02) for s in (100, 101, 102)]  # fmt: skip
    pd.DataFrame(fresh).to_parquet(tmp_path / "confirm.parquet")
    options = {"metric": "q_val_bpb", "key": KEY, "seeds": [100, 101, 102], "picks": picks}
    out = tmp_path / "confirm.csv"
    main(["confirm", "--options", json.dumps(options), "--runs",
          str(tmp_path / "confirm.parquet"), "--out", str(out)])  # fmt: skip
    got = pd.read_csv(out).iloc[0]
    x = [r["q_val_bpb"] for r in fresh if r["cfg.optim.matrix_lr"] == 0.04]
    y = [r["q_val_bpb"] for r in fresh if r["cfg.optim.matrix_lr"] == 0.02]
    assert got["p"] == pytest.approx(sps.ttest_rel(x, y).pvalue, rel=1e-12)
    assert got["against_kind"] == "default (confirmation)" and "paired" in got["verdict"]
    assert (got["value"], got["against_value"]) == (0.04, 0.02)
    two = pd.concat([runs, runs.assign(condition="copy")])
    with pytest.raises(ValueError, match="expected one"):
        best_conditions(table, two, KEY, None)
