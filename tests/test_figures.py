import numpy as np
import pandas as pd
import pytest

from speedlab.analysis.figures import plot_curves, plot_final

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def synthetic(n_seeds=3):
    rng = np.random.default_rng(0)
    curves, runs = [], []
    for cond, shift in (("uniform", 0.0), ("layerwise", -0.03)):
        for seed in range(n_seeds):
            for step in range(0, 201, 25):
                value = 4.0 * np.exp(-step / 80) + 2.5 + shift + rng.normal(0, 0.01)
                curves.append(
                    dict(
                        condition=cond,
                        seed=seed,
                        step=step,
                        tokens=step * 2048,
                        time_s=step * 0.2,
                        metric="val_bpb",
                        value=value,
                    )
                )
            runs.append(dict(condition=cond, seed=seed, q_val_bpb=value + 0.001, diverged=False))
    return pd.DataFrame(curves), pd.DataFrame(runs)


def test_figures_are_written_as_real_pngs_and_pdfs(tmp_path):
    curves, runs = synthetic()
    a = plot_curves(
        curves, tmp_path / "curves.png", conditions=["uniform", "layerwise"], baseline="uniform"
    )
    b = plot_final(
        runs, tmp_path / "final.png", conditions=["uniform", "layerwise"], baseline="uniform"
    )
    for path in (a, b):
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 20_000
        pdf = path.with_suffix(".pdf").read_bytes()  # the same figure for papers
        assert pdf.startswith(b"%PDF") and len(pdf) > 5_000
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "curves.pdf",
        "curves.png",
        "final.pdf",
        "final.png",
    ]  # no temporary files left behind


def test_curves_against_time_and_a_single_seed(tmp_path):
    curves, runs = synthetic(n_seeds=1)
    assert plot_curves(curves, tmp_path / "t.png", x="time_s").stat().st_size > 10_000
    assert plot_final(runs, tmp_path / "f.png").stat().st_size > 10_000


def test_pngs_decode_at_the_intended_resolution(tmp_path):
    import matplotlib.image

    curves, runs = synthetic()
    # A diverged seed with a NaN metric must be left out, not crash the interval.
    runs.loc[0, ["q_val_bpb", "diverged"]] = [float("nan"), True]
    path = plot_final(runs, tmp_path / "final.png", baseline="uniform")
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] == 5 * 150  # 5 in tall at dpi 150
    assert image[..., :3].std() > 0.05  # not a blank canvas


def test_cli_draws_a_listed_figure(tmp_path):
    import json

    from speedlab.analysis.figures import main

    curves, runs = synthetic()
    curves.to_parquet(tmp_path / "curves.parquet")
    runs.to_parquet(tmp_path / "runs.parquet")
    out_c, out_f = tmp_path / "figs/curves.png", tmp_path / "figs/final.png"
    options = {"conditions": ["uniform", "layerwise"], "baseline": "uniform"}
    for name, table, out in (
        ("val_bpb_vs_step", "curves", out_c),
        ("final_q_val_bpb", "runs", out_f),
    ):
        opts = json.dumps({**options, "figure": name})
        main(["--options", opts, "--table", str(tmp_path / f"{table}.parquet"), "--out", str(out)])
    assert out_c.read_bytes().startswith(PNG_MAGIC) and out_f.read_bytes().startswith(PNG_MAGIC)


def test_quantization_cost_figure(tmp_path):
    from speedlab.analysis.figures import plot_quant_gap

    runs = pd.DataFrame(
        {
            "condition": ["a", "a", "b", "b"],
            "seed": [0, 1, 0, 1],
            "val_bpb": [2.50, 2.52, 2.48, 2.49],
            "q_val_bpb": [2.51, 2.53, 2.50, 2.51],
            "diverged": [False, False, False, True],
        }
    )
    out = plot_quant_gap(runs, tmp_path / "q.png", conditions=["a", "b"], baseline="a")
    assert out.read_bytes().startswith(b"\x89PNG") and out.stat().st_size > 20_000


def test_momentum_per_layer_comes_from_each_conditions_config(tmp_path):
    from speedlab.analysis.figures import condition_momenta, plot_momentum

    def run(cond, schedule, first=0.95, last=0.95, values=None):
        return {
            "condition": cond,
            "cfg.optim.momentum_schedule": schedule,
            "cfg.model.n_layer": 4,
            "cfg.optim.momentum": 0.95,
            "cfg.optim.momentum_first": first,
            "cfg.optim.momentum_last": last,
            "cfg.optim.momentum_list": values,
        }

    runs = pd.DataFrame(
        [
            run("uniform", "uniform"),
            run("moderate", "linear", 0.98, 0.90),
            run("listed", "list", values=[0.9, 0.91, 0.92, 0.93]),
            {"condition": "imported"},  # a run from another tool: no schedule known
        ]
    )
    m = condition_momenta(runs)
    assert m["uniform"] == [0.95] * 4 and m["listed"] == [0.9, 0.91, 0.92, 0.93]
    assert m["moderate"] == pytest.approx([0.98, 0.98 - 0.08 / 3, 0.98 - 0.16 / 3, 0.90])
    assert "imported" not in m
    out = plot_momentum(runs, tmp_path / "m.png", baseline="uniform")
    assert out.read_bytes().startswith(PNG_MAGIC) and out.with_suffix(".pdf").exists()
