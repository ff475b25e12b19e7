"""Power-law fits of a sweep's optimum: numbers against scipy, the figure and the CLI."""

from __future__ import annotations

import json

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from speedlab.analysis.scaling import (
    bootstrap_exponent,
    main,
    optimum_fit,
    plot_scaling,
    power_law_fit,
)
from speedlab.analysis.sweep import sweep_table

KEY, GROUP = "optim.weight_decay", "model.d_model"
WIDTHS = (128, 256, 512, 1024)
# A grid of weight decays, 4x apart, that holds the optimum 0.1 * (256 / d)^2 of every width.
GRID = 0.1 * 4.0 ** np.arange(-3, 3)


def optimum(d):
    return 0.1 * (256 / d) ** 2


def wd_runs(noise=0.001, seeds=3, rng_seed=0):
    """Loss is a bowl in log(weight decay) with its minimum at optimum(width)."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for d in WIDTHS:
        for wd in GRID:
            for seed in range(seeds):
                rows.append(
                    {
                        "condition": f"wd{wd:g}_d{d}",
                        "seed": seed,
                        "is_baseline": d == 256 and np.isclose(wd, 0.1),
                        "q_val_bpb": 1 + 0.05 * np.log(wd / optimum(d)) ** 2 + rng.normal(0, noise),
                        "diverged": False,
                        f"cfg.{KEY}": wd,
                        f"cfg.{GROUP}": d,
                    }
                )
    rows.append(dict(rows[-1], seed=99, q_val_bpb=np.nan, diverged=True))
    return pd.DataFrame(rows)


def test_fit_matches_linregress():
    x = np.array([128, 256, 512, 1024, 2048])
    y = np.array([0.41, 0.09, 0.027, 0.0061, 0.0016])
    fit = power_law_fit(x, y)
    ref = sps.linregress(np.log(x), np.log(y))
    assert fit["exponent"] == pytest.approx(ref.slope)
    assert fit["intercept"] == pytest.approx(ref.intercept)
    assert fit["k"] == pytest.approx(np.exp(ref.intercept))
    assert fit["stderr"] == pytest.approx(ref.stderr)
    assert fit["r2"] == pytest.approx(ref.rvalue**2)
    lo, hi = sps.t.interval(0.95, 3, loc=ref.slope, scale=ref.stderr)
    assert (fit["exponent_low"], fit["exponent_high"]) == (pytest.approx(lo), pytest.approx(hi))
    assert fit["n"] == 5 and fit["alpha"] == 0.05


def test_exact_power_law_and_small_n():
    x = np.array([128.0, 256.0, 512.0, 1024.0])
    fit = power_law_fit(x, 3.0 * x**-2.0)
    assert fit["exponent"] == pytest.approx(-2.0, abs=1e-12)
    assert fit["k"] == pytest.approx(3.0, rel=1e-9)
    assert fit["exponent_low"] == fit["exponent_high"] == pytest.approx(-2.0, abs=1e-12)
    assert fit["r2"] == pytest.approx(1.0)
    two = power_law_fit(x[:2], 3.0 * x[:2] ** -2.0)  # exact, but no interval from 2 points
    assert two["exponent"] == pytest.approx(-2.0)
    assert np.isnan(two["stderr"]) and np.isnan(two["exponent_low"])


@pytest.mark.parametrize(
    ("x", "y", "match"),
    [
        ([1.0], [2.0], "at least 2 points"),
        ([1.0, 2.0], [1.0, 0.0], "positive"),
        ([-1.0, 2.0], [1.0, 2.0], "positive"),
        ([1.0, np.nan], [1.0, 2.0], "positive"),
        ([1.0, 2.0, 3.0], [1.0, 2.0], "one length"),
    ],
)
def test_fit_rejects_bad_input(x, y, match):
    with pytest.raises(ValueError, match=match):
        power_law_fit(x, y)


def test_optimum_fit_recovers_the_exponent():
    runs = wd_runs()
    table = sweep_table(runs, KEY, "q_val_bpb", group=GROUP, n_boot=500)
    fit = optimum_fit(table)
    assert fit["x"] == list(map(float, WIDTHS))
    assert fit["y"] == pytest.approx([optimum(d) for d in WIDTHS])
    assert fit["exponent"] == pytest.approx(-2.0, abs=1e-9)
    assert fit["p_best"] == pytest.approx([1.0] * 4)
    boot = bootstrap_exponent(runs, KEY, GROUP, "q_val_bpb", n_boot=300)
    assert boot["boot_low"] == pytest.approx(-2.0) and boot["boot_high"] == pytest.approx(-2.0)
    assert boot["boot_valid"] == 1.0 and boot["boot_n"] == 300
    with pytest.raises(ValueError, match="grouped"):
        optimum_fit(sweep_table(runs, KEY, "q_val_bpb", n_boot=10))


def test_bootstrap_interval_is_reproducible_and_covers_the_fit():
    runs = wd_runs(noise=0.15, rng_seed=3)
    fit = optimum_fit(sweep_table(runs, KEY, "q_val_bpb", group=GROUP, n_boot=500))
    a = bootstrap_exponent(runs, KEY, GROUP, "q_val_bpb", n_boot=500, seed=5)
    b = bootstrap_exponent(runs, KEY, GROUP, "q_val_bpb", n_boot=500, seed=5)
    assert a == b
    assert a["boot_low"] < a["boot_high"]  # noisy seeds: the best grid value is uncertain
    assert a["boot_low"] - 1e-9 <= fit["exponent"] <= a["boot_high"] + 1e-9


def test_plot_writes_png_and_pdf(tmp_path):
    x = np.array([128.0, 256.0, 512.0, 1024.0])
    y = 0.1 * (256 / x) ** 2 * np.array([1.1, 0.9, 1.2, 0.95])
    fit = power_law_fit(x, y) | {"boot_low": -2.3, "boot_high": -1.7}
    out = plot_scaling(
        x, y, fit, tmp_path / "s.png", "model.d_model", "best weight decay", expected_exponent=-2
    )
    image = matplotlib.image.imread(out)
    assert image[..., :3].std() > 0.05
    assert out.with_suffix(".pdf").read_bytes().startswith(b"%PDF")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.pdf", "s.png"]


def test_cli_round_trip(tmp_path, capsys):
    runs = wd_runs()
    runs.to_parquet(tmp_path / "runs.parquet")
    json_out, fig_out = tmp_path / "out/fit.json", tmp_path / "out/scaling.png"
    options = {"key": KEY, "group": GROUP, "metric": "q_val_bpb", "expect": -2, "n_boot": 200}
    main(
        [
            "--options", json.dumps(options), "--runs", str(tmp_path / "runs.parquet"),
            "--json-out", str(json_out), "--figure-out", str(fig_out),
        ]
    )  # fmt: skip
    doc = json.loads(json_out.read_text())
    assert doc["key"] == KEY and doc["group"] == GROUP and doc["expected_exponent"] == -2
    assert doc["fit"]["exponent"] == pytest.approx(-2.0, abs=1e-9)
    assert doc["fit"]["n"] == 4 and doc["fit"]["boot_n"] == 200
    assert doc["expected_within_ci"] is True and doc["expected_within_boot"] is True
    assert matplotlib.image.imread(fig_out)[..., :3].std() > 0.05
    assert sorted(p.name for p in json_out.parent.iterdir()) == [
        "fit.json",
        "scaling.pdf",
        "scaling.png",
    ]
    assert "^-2.000" in capsys.readouterr().out


@settings(max_examples=50, deadline=None)
@given(
    k=st.floats(1e-3, 1e3),
    exponent=st.floats(-3.0, 3.0),
    x=st.lists(st.floats(1.0, 1e4), min_size=3, max_size=8, unique=True).filter(
        lambda v: np.ptp(np.log(v)) > 0.1
    ),
)
def test_exact_power_laws_are_recovered(k, exponent, x):
    x = np.array(x)
    fit = power_law_fit(x, k * x**exponent)
    assert fit["exponent"] == pytest.approx(exponent, abs=1e-8)
    assert fit["k"] == pytest.approx(k, rel=1e-6)
    assert fit["exponent_low"] <= exponent + 1e-8 and exponent - 1e-8 <= fit["exponent_high"]
