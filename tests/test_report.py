import pandas as pd

from speedlab.report import write_report
from speedlab.stats import write_stats


def test_report_words_the_verdict_and_links_figures(tmp_path):
    rows = []
    for cond, vals in (("uniform", [1.50, 1.52, 1.49]), ("layerwise", [1.40, 1.41, 1.42])):
        for seed, v in enumerate(vals):
            rows.append(
                dict(
                    condition=cond,
                    seed=seed,
                    steps=200,
                    tokens=409600,
                    n_params=592144,
                    q_val_bpb=v,
                    val_bpb=v - 0.001,
                    compressed_bytes=571000 + seed,
                    train_time_s=40.0 + seed,
                    diverged=False,
                    device="cpu",
                    host="h",
                    torch="2.13.0",
                )
            )
    rows.append(dict(rows[-1], seed=3, q_val_bpb=float("nan"), diverged=True, steps=17))
    runs = pd.DataFrame(rows)
    study = tmp_path / "results/studies/s"
    (study / "figures").mkdir(parents=True)
    (study / "figures/final.png").write_bytes(b"png")
    write_stats(runs, "q_val_bpb", "uniform", ["uniform", "layerwise"], 4, study / "stats.csv")
    text = write_report(
        "s",
        "Is layerwise better?",
        runs,
        study / "stats.csv",
        {"Final": study / "figures/final.png"},
        study / "report.md",
        "q_val_bpb",
        "uniform",
        4,
    )
    assert "Is layerwise better?" in text
    assert "| layerwise   | 3 / 4" in text and "| uniform     | 3 / 4" in text
    assert "**layerwise**: 1.4100 vs 1.5033 post-quant val_bpb (-6.21%), Welch t=" in text
    assert "**better** than uniform at α=0.05" in text
    assert "![Final](figures/final.png)" in text
    assert "`layerwise` seed 3: diverged after 17 steps" in text
    assert "`uniform`: 1 planned run(s) missing" in text
