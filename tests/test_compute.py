"""Compute as an axis: horizons by FLOPs or tokens per parameter (speedlab.train.flops, at config
resolution), and compute multipliers against the baseline (speedlab.analysis.compute) on
curves whose exact multiplier is known."""

import copy

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, external_study
from speedlab.analysis import compute
from speedlab.config import ConfigError, run_config, validate
from speedlab.train import flops

BASE = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def quickstart(**train) -> dict:
    config = copy.deepcopy(BASE)
    config["defaults"]["train"].update(train)
    return config


# --- the model's arithmetic --------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, shape",
    [
        ("gpt", dict(n_layer=4, d_model=128, n_head=4, n_kv_head=2)),
        ("gpt", dict(n_layer=3, d_model=96, n_head=6, n_kv_head=3, mlp_mult=4, vocab_size=1040)),
        ("gpt", dict(n_layer=1, d_model=32, n_head=2, n_kv_head=2)),
        ("ngpt", dict(n_layer=3, d_model=64, n_head=4, n_kv_head=2, mlp_mult=4)),
        ("modded2410", dict(n_layer=2, d_model=64, n_head=4, n_kv_head=4, mlp_mult=4)),
    ],
)
def test_parameters_are_counted_as_the_built_model_has_them(kind, shape):
    from speedlab.train.models import build_model

    model_cfg = run_config(validate(quickstart()), "quickstart", "uniform")["model"]
    model_cfg.update(kind=kind, **shape)
    vocab = model_cfg["vocab_size"] or 1024
    model = build_model(model_cfg, vocab)
    counted = sum(p.numel() for p in model.parameters())
    assert flops.n_params(model_cfg, 1024) == counted


def test_tokens_per_param_and_target_flops_set_the_steps(tmp_path):
    """Quickstart model: 592,144 parameters, 2,048 tokens per step; 20 tokens per parameter
    is round(20 x 592,144 / 2,048) = round(5782.66) = 5,783 steps."""
    cfg = run_config(validate(quickstart(tokens_per_param=20)), "quickstart", "layerwise")
    assert cfg["train"]["steps"] == 5783
    per_step = (6 * 592_144 + 12 * 4 * 128 * 256) * 2048
    config = validate(quickstart(target_flops=per_step * 123.4))
    assert run_config(config, "quickstart", "uniform")["train"]["steps"] == 123
    # every consumer sees the resolved steps: the plan's hours per run (0.25 s per step)
    from speedlab.plan import plan_table

    hours = plan_table(config, tmp_path)["hours_per_run"]
    assert list(hours) == [pytest.approx(123 * 0.25 / 3600)] * 2


def test_the_horizon_is_resolved_without_torch():
    import subprocess
    import sys

    code = (
        "import sys, yaml; from speedlab.config import run_config, validate; "
        f"c = yaml.safe_load(open({str(REPO / 'config/config.yaml')!r})); "
        "c['defaults']['train']['tokens_per_param'] = 20; "
        "print(run_config(validate(c), 'quickstart', 'uniform')['train']['steps'], "
        "'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["5783", "False"]


@pytest.mark.parametrize(
    "train, message",
    [
        (dict(target_flops=1e15, tokens_per_param=20), "train.target_flops (1e+15) and "
         "train.tokens_per_param (20) both set the horizon"),
        (dict(target_flops=1e6), "train.target_flops (1e+06) is less than half a step: one "
         "step is 1.05e+10 FLOPs"),
        (dict(tokens_per_param=1e-4), "train.tokens_per_param (0.0001) is less than half a step"),
    ],
)  # fmt: skip
def test_a_bad_horizon_names_its_keys(train, message):
    with pytest.raises(ConfigError, match="studies.quickstart.conditions.uniform") as e:
        validate(quickstart(**train))
    assert message in str(e.value)


def test_a_command_trainer_has_no_horizon_by_compute():
    config = quickstart()
    study = external_study()
    study["overrides"]["train.tokens_per_param"] = 20
    config["studies"] = {"ext": study}
    with pytest.raises(ConfigError, match=r"ext.conditions.lr_low.train.tokens_per_param: sizes"):
        validate(config)


# --- the compute multiplier --------------------------------------------------------------------

F = np.geomspace(1e12, 1e15, 16)  # validation points of one arm


def power_arm(a: float, noise=(0.0,), points: int = 16) -> compute.Arm:
    """Seeds of the curve L = a * F^-0.1 at the first `points` of F, each multiplied by
    (1 + noise[seed])."""
    f = F[:points]
    return compute.Arm(f, np.array([a * f**-0.1 * (1 + e) for e in noise]))


def test_the_multiplier_of_power_law_curves_is_exact():
    """L_b = 30 F^-0.1 and L_c = 27 F^-0.1: the baseline reaches L_c(F) at (30/27)^10 x F, so
    the multiplier is (10/9)^10 = 2.868 whatever the condition's last FLOPs."""
    base, cond = power_arm(30), power_arm(27, points=10)  # the condition: a shorter run
    assert compute.multiplier(base, cond) == pytest.approx((10 / 9) ** 10, rel=1e-9)
    assert compute.multiplier(base, base) == pytest.approx(1.0)


def test_log_log_interpolation_between_two_points():
    # between (1e12, 4) and (1e14, 1): loss 2 lies half-way in log loss, so at 1e13
    assert compute.flops_to_reach(np.array([1e12, 1e14]), np.array([4.0, 1.0]), 2.0) == (
        pytest.approx(1e13)
    )
    # the first crossing counts, not a later one after a rise
    curve = np.array([4.0, 1.0, 3.0, 0.5])
    assert compute.flops_to_reach(np.geomspace(1e12, 1e15, 4), curve, 2.0) == pytest.approx(
        10**12.5
    )


def test_beyond_the_baselines_curve_there_is_a_bound_not_a_value():
    base = power_arm(30, noise=(0.0, 0.01))
    better = compute.compare(base, power_arm(20, (0.0, 0.01)), 200, 0.05, rng())
    assert np.isnan(better["multiplier"]) and better["hi"] == np.inf
    assert better["note"] == "> 1: below the baseline's lowest loss (not extrapolated)"
    row = compute.compare(base, power_arm(60, (0.0, 0.01), points=1), 200, 0.05, rng())
    assert np.isnan(row["multiplier"]) and row["lo"] == 0.0
    assert row["note"].startswith("< 1: above the baseline's first validated loss")


def rng():
    return np.random.default_rng(0)


def test_the_bootstrap_interval_resamples_seeds_reproducibly():
    base = power_arm(30, noise=(-0.01, 0.0, 0.012))
    cond = power_arm(27, noise=(-0.005, 0.004, 0.01), points=10)
    row = compute.compare(base, cond, 500, 0.05, rng())
    assert row["lo"] < row["multiplier"] < row["hi"] and row["n_seeds"] == 3
    assert compute.compare(base, cond, 500, 0.05, rng()) == row  # the same seed, the same row
    # identical seeds: every resample is the curve itself
    same = compute.compare(power_arm(30, (0, 0)), power_arm(27, (0, 0), 10), 50, 0.05, rng())
    assert same["lo"] == pytest.approx(same["multiplier"]) == pytest.approx(same["hi"])
    one = compute.compare(power_arm(30), power_arm(27, points=10), 50, 0.05, rng())
    assert np.isnan(one["lo"]) and one["note"] == "one seed in an arm: no interval"


def study_tables(missing_flops: str | None = None):
    """runs and curves frames of two conditions x 2 seeds on the power-law curves, 2,048 tokens
    per step at 1e9 FLOPs per token (the condition stops at step 50, the baseline at 150); a
    step 0 point, which has no FLOPs."""
    runs, curves = [], []
    for condition, a in (("base", 30.0), ("better", 27.0)):
        for seed in (0, 1):
            steps = np.arange(0, 160 if condition == "base" else 60, 10)
            tokens = steps * 2048
            loss = a * np.maximum(tokens * 1e9, 1) ** -0.1 * (1 + 0.01 * seed)
            model_flops = np.nan if condition == missing_flops else 1e9 * tokens[-1]
            runs.append(dict(condition=condition, seed=seed, diverged=False,
                             tokens=int(tokens[-1]), model_flops=model_flops))  # fmt: skip
            curves += [
                dict(condition=condition, seed=seed, step=int(s), tokens=int(t), time_s=0.1 * s,
                     metric=m, value=float(v))
                for s, t, v in zip(steps, tokens, loss, strict=True)
                for m in ("val_bpb", "train_loss")
            ]  # fmt: skip
    runs = pd.DataFrame(runs).astype({"tokens": "Int64"})
    return runs, pd.DataFrame(curves)


def test_compute_csv_and_the_figure_from_the_study_tables(tmp_path):
    runs, curves = study_tables()
    runs.to_parquet(tmp_path / "runs.parquet")
    curves.to_parquet(tmp_path / "curves.parquet")
    options = '{"metric": "val_bpb", "baseline": "base", "conditions": ["base", "better"]}'
    compute.main(["--options", options, "--runs", str(tmp_path / "runs.parquet"),
                  "--curves", str(tmp_path / "curves.parquet"),
                  "--table-out", str(tmp_path / "compute.csv"),
                  "--figure-out", str(tmp_path / "flops.png")])  # fmt: skip
    table = pd.read_csv(tmp_path / "compute.csv")
    assert list(table.columns) == compute.COLUMNS and list(table["condition"]) == ["better"]
    row = table.iloc[0]
    assert row["multiplier"] == pytest.approx((10 / 9) ** 10, rel=1e-6)
    assert row["lo"] <= row["multiplier"] <= row["hi"] and row["n_seeds"] == 2
    assert row["flops"] == pytest.approx(50 * 2048 * 1e9)
    assert (tmp_path / "flops.png").stat().st_size > 0 and (tmp_path / "flops.pdf").exists()


def test_conditions_without_flops_get_a_reason():
    runs, curves = study_tables(missing_flops="base")
    points = compute.flops_curves(runs, curves, "val_bpb")
    assert set(points["condition"]) == {"better"} and (points["flops"] > 0).all()
    options = dict(baseline="base", conditions=["base", "better"], n_boot=10, alpha=0.05, seed=0)
    table = compute.compute_table(points, options)
    assert table.iloc[0]["note"] == "the baseline base has no curve with FLOPs"
    runs, curves = study_tables(missing_flops="better")
    table = compute.compute_table(compute.flops_curves(runs, curves, "val_bpb"), options)
    assert table.iloc[0]["note"].startswith("no curve with FLOPs")


def test_the_reports_section_reads_compute_csv(tmp_path):
    from speedlab.analysis.report import compute_section

    rows = [dict(condition="better", multiplier=2.868, lo=2.5, hi=np.inf, n_seeds=3, flops=1e14,
                 loss=1.2, note="")]  # fmt: skip
    pd.DataFrame(rows, columns=compute.COLUMNS).to_csv(tmp_path / "compute.csv", index=False)
    (row,) = compute_section(str(tmp_path / "compute.csv"))["rows"]
    assert row == {"condition": "`better`", "multiplier": "2.868", "interval": "[2.500, ∞)",
                   "seeds": "3", "FLOPs": "1e+14", "note": ""}  # fmt: skip
    pd.DataFrame(columns=compute.COLUMNS).to_csv(tmp_path / "none.csv", index=False)
    assert compute_section(str(tmp_path / "none.csv")) is None


# --- the scaling_ladder study ------------------------------------------------------------------


def ladder(scale: str) -> dict:
    from snakemake.utils import update_config

    from speedlab.config import apply_command_line

    config = copy.deepcopy(BASE)
    update_config(config, yaml.safe_load((REPO / "config/studies/scaling_ladder.yaml").read_text()))
    update_config(config, {"scale": scale})
    config = validate(apply_command_line(config, {"scale": scale}))
    return {c: run_config(config, "scaling_ladder", c) for c in ("d4", "d6", "d8")}


@pytest.mark.parametrize(
    "scale, shapes, steps",
    [
        # 3,412,488 / 11,020,434 / 25,708,576 parameters, 524,288 tokens per step
        ("full", [(4, 256, 2), (6, 384, 3), (8, 512, 4)], [130, 420, 981]),
        # 10,392 / 19,542 / 33,376 parameters, 4,096 tokens per step
        ("smoke", [(4, 8, 2), (6, 12, 3), (8, 16, 4)], [51, 95, 163]),
    ],
)
def test_the_scaling_ladder_trains_each_depth_for_20_tokens_per_parameter(
    scale, shapes, steps, probe_here
):
    runs = ladder(scale)
    for cfg, shape, n in zip(runs.values(), shapes, steps, strict=True):
        m, t = cfg["model"], cfg["train"]
        assert (m["n_layer"], m["d_model"], m["n_head"]) == shape and m["n_kv_head"] == m["n_head"]
        assert t["tokens_per_param"] == 20 and t["steps"] == n
        tokens = n * t["batch_seqs"] * t["seq_len"]
        assert tokens / flops.n_params(m, 1024) == pytest.approx(20, rel=0.01)
