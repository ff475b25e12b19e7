import pandas as pd
import pytest
from scipy import stats as sps

from speedlab.report import main, write_report
from speedlab.stats import write_stats


def runs_frame() -> pd.DataFrame:
    rows = []
    for cond, vals in (("uniform", [1.50, 1.52, 1.49]), ("layerwise", [1.40, 1.41, 1.42])):
        for seed, v in enumerate(vals):
            rows.append(
                dict(
                    study="s",
                    condition=cond,
                    seed=seed,
                    is_baseline=cond == "uniform",
                    steps=200,
                    tokens=409600,
                    q_val_bpb=v,
                    val_bpb=v - 0.001,
                    compressed_bytes=571000 + seed,
                    train_time_s=40.0 + seed,
                    diverged=False,
                )
            )
    rows.append(dict(rows[-1], seed=3, q_val_bpb=float("nan"), diverged=True, steps=17))
    rows.append(dict(rows[-1], study="other", seed=9))  # another study's run: ignored
    return pd.DataFrame(rows)


@pytest.fixture
def study(tmp_path):
    d = tmp_path / "results/studies/s"
    (d / "figures").mkdir(parents=True)
    (d / "figures/final.png").write_bytes(b"png")
    runs = runs_frame()
    runs.to_parquet(d / "runs.parquet")
    write_stats(runs, "q_val_bpb", "uniform", ["uniform", "layerwise"], 4, d / "stats.csv")
    return d


def test_report_words_the_verdict_and_links_figures(study):
    text = write_report(
        "s",
        "Is layerwise better?",
        runs_frame(),
        study / "stats.csv",
        {"Final": study / "figures/final.png"},
        study / "report.md",
        "q_val_bpb",
        "uniform",
        4,
    )
    assert (study / "report.md").read_text(encoding="utf-8") == text
    assert "Is layerwise better?" in text
    # results table: mean ± sd and the t-interval, n of planned
    assert "| layerwise   | 3 / 4         | 1.4100 ± 0.0100 | [1.3852, 1.4348] |" in text
    assert "| uniform     | 3 / 4" in text and "571,001 ± 1" in text
    assert "| layerwise   | uniform | −0.0933 | −6.21" in text  # comparison table row
    welch = sps.ttest_ind([1.40, 1.41, 1.42], [1.50, 1.52, 1.49], equal_var=False)
    t = f"{welch.statistic:.2f}".replace("-", "−")  # the report prints a real minus sign
    sentence = (
        f"**layerwise**: 1.4100 vs 1.5033 post-quant val_bpb (−6.21%), "
        f"Welch t={t}, df={welch.df:.1f}, p={welch.pvalue:.3g} "
    )
    assert sentence in text
    assert "**better** (lower) than uniform at α=0.05 with n=3 per arm." in text
    assert "![Final](figures/final.png)" in text
    assert (study / "figures/final.png").exists()
    assert "`layerwise` seed 3: diverged after 17 steps" in text
    assert "`uniform`: 1 of 4 planned runs missing (seeds present: 0, 1, 2)" in text
    assert "seed 9" not in text and "6 usable" not in text


def test_cli_links_relative_to_the_report(study, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # Snakemake passes paths relative to its working directory
    main(
        [
            "--study",
            "s",
            "--description",
            "Why",
            "--runs",
            "results/studies/s/runs.parquet",
            "--stats",
            "results/studies/s/stats.csv",
            "--metric",
            "q_val_bpb",
            "--baseline",
            "uniform",
            "--planned-seeds",
            "3",
            "--figure",
            "Final post-quant val_bpb=results/studies/s/figures/final.png",
            "--figure",
            "Curves=results/studies/s/figures/missing.png",
            "--out",
            "results/studies/s/notes/report.md",
        ]
    )
    text = (study / "notes/report.md").read_text(encoding="utf-8")
    assert "![Final post-quant val_bpb](../figures/final.png)" in text
    assert (study / "notes/../figures/final.png").exists()
    assert "(../figures/missing.png) *(figure file missing)*" in text
    assert "Runs excluded" in text and "planned runs missing" not in text


def test_metric_mismatch_is_refused(study):
    with pytest.raises(ValueError, match="val_bpb"):
        write_report(
            "s", "", runs_frame(), study / "stats.csv", {}, study / "r.md", "val_bpb", "uniform", 3
        )
