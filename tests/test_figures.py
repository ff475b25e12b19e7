import numpy as np
import pandas as pd

from speedlab.figures import plot_curves, plot_final

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


def test_figures_are_written_as_real_pngs(tmp_path):
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


def test_curves_against_time_and_a_single_seed(tmp_path):
    curves, runs = synthetic(n_seeds=1)
    assert plot_curves(curves, tmp_path / "t.png", x="time_s").stat().st_size > 10_000
    assert plot_final(runs, tmp_path / "f.png").stat().st_size > 10_000
