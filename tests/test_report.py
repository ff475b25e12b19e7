import pandas as pd
import pytest
from scipy import stats as sps

from speedlab.analysis.report import main, write_report
from speedlab.analysis.stats import write_stats


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
    # effect size, multiplicity and power: numbers from stats.csv, formatted
    st = pd.read_csv(study / "stats.csv").set_index("condition").loc["layerwise"]
    g, lo, hi = (f"{st[k]:.2f}".replace("-", "−") for k in ("hedges_g", "g_low", "g_high"))
    n80 = int(st["n_for_80pct_power"])
    assert (
        f"n=3 per arm. Hedges g={g} [{lo}, {hi}]; about {n80} seeds per arm would give 80% "
        "power at this effect."
    ) in text
    header = "| Welch p   | Holm p   | MWU p   | Hedges g [CI]"
    assert header in text and "| n for 80% power   | verdict" in text
    mwu = sps.mannwhitneyu([1.40, 1.41, 1.42], [1.50, 1.52, 1.49]).pvalue
    assert (
        f"| {welch.pvalue:.3g}   | {welch.pvalue:.3g}  | {mwu:.3g}     | {g} [{lo}, {hi}] | {n80}"
        in text
    )
    assert "Holm-corrected Welch p" not in text  # one comparison: Holm p is the Welch p
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


def test_old_stats_csv_without_effect_columns_still_reports(study):
    old = pd.read_csv(study / "stats.csv")
    new = ["boot_low", "boot_high", "mwu_p", "hedges_g", "g_low", "g_high", "welch_p_holm"]
    old.drop(columns=[*new, "n_for_80pct_power", "record_verdict"]).to_csv(
        study / "old.csv", index=False
    )
    text = write_report(
        "s", "", runs_frame(), study / "old.csv", {}, study / "r.md", "q_val_bpb", "uniform", 4
    )
    assert "**better** (lower) than uniform at α=0.05 with n=3 per arm.\n" in text
    assert (
        "Hedges g=" not in text and "| 0.00172   | –        | –       | –               | –" in text
    )


def test_several_comparisons_quote_the_holm_p(study, tmp_path):
    runs = runs_frame()
    extra = runs[(runs["condition"] == "layerwise") & (runs["study"] == "s")]
    runs = pd.concat([runs, extra.assign(condition="wide", q_val_bpb=extra["q_val_bpb"] + 0.08)])
    conditions = ["uniform", "layerwise", "wide"]
    table = write_stats(runs, "q_val_bpb", "uniform", conditions, 4, tmp_path / "s.csv")
    text = write_report(
        "s", "", runs, tmp_path / "s.csv", {}, tmp_path / "r.md", "q_val_bpb", "uniform", 4
    )
    holm = table.set_index("condition").loc["layerwise", "welch_p_holm"]
    assert f"Holm-corrected Welch p={holm:.3g}: **better**" in text
    assert "about 25 seeds per arm would give 80% power" in text  # wide: g = −0.82


def test_training_time_gets_its_own_comparison(tmp_path):
    runs = runs_frame()
    runs = runs[runs["study"] == "s"]
    runs.loc[runs["condition"] == "layerwise", "train_time_s"] += 10.0
    write_stats(
        runs,
        ["q_val_bpb", "train_time_s"],
        "uniform",
        ["uniform", "layerwise"],
        4,
        tmp_path / "stats.csv",
    )
    text = write_report(
        "s", "", runs, tmp_path / "stats.csv", {}, tmp_path / "r.md", "q_val_bpb", "uniform", 4
    )
    section = text.split("## Training time against `uniform`")[1].split("## Figures")[0]
    # uniform 40, 41, 42 s vs layerwise 50, 51, 52 s (the diverged run excluded): +10 s
    assert "+10.0" in section and "**worse** (higher)" in section
    p = sps.ttest_ind([50.0, 51.0, 52.0], [40.0, 41.0, 42.0], equal_var=False).pvalue
    assert f"p={p:.2g}" in section or f"p={p:.3g}" in section
    with pytest.raises(ValueError, match="not 'val_loss'"):
        write_report(
            "s", "", runs, tmp_path / "stats.csv", {}, tmp_path / "x.md", "val_loss", "uniform", 4
        )


def test_sweep_and_scaling_sections(tmp_path):
    import json

    from test_scaling import GROUP, KEY, wd_runs

    from speedlab.analysis import scaling
    from speedlab.analysis.sweep import sweep_table

    runs = wd_runs().assign(study="wd", train_time_s=10.0, steps=100, tokens=10**6)
    runs.to_parquet(tmp_path / "runs.parquet")
    conditions = list(dict.fromkeys(runs["condition"]))
    base = runs[runs["is_baseline"]]["condition"].iloc[0]
    write_stats(runs, "q_val_bpb", base, conditions, 3, tmp_path / "stats.csv")
    table = sweep_table(runs, KEY, "q_val_bpb", GROUP)
    scaling.main(
        ["--runs", str(tmp_path / "runs.parquet"), "--key", KEY, "--group", GROUP]
        + ["--metric", "q_val_bpb", "--expect", "-2", "--n-boot", "200"]
        + ["--json-out", str(tmp_path / "fit.json")]
    )
    fit = json.loads((tmp_path / "fit.json").read_text())
    text = write_report(
        "wd", "", runs, tmp_path / "stats.csv", {}, tmp_path / "r.md", "q_val_bpb", base, 3,
        sweep=table, scaling=fit,
    )  # fmt: skip
    sweep_part = text.split("## Sweep over `optim.weight_decay`")[1].split("## Scaling fit")[0]
    assert sweep_part.count("### `model.d_model` = ") == 4
    assert sweep_part.count("- Best: `optim.weight_decay`=") == 4
    assert "(default)" in sweep_part  # the baseline's value at d_model 256
    scaling_part = text.split("## Scaling fit")[1].split("## Figures")[0]
    assert f"α = {fit['fit']['exponent']:.3f}".replace("-", "\u2212") in scaling_part
    assert "The expected exponent \u22122.00 is inside the t-interval." in scaling_part
    assert "published best" not in scaling_part
    # published optima (keys as JSON strings, as the rule passes them) join the table where the
    # widths match; at widths the run does not have they are named, not compared
    widths = [float(x) for x in fit["fit"]["x"]]
    published = {"source": "s", "best": {f"{widths[0]:g}": 0.4, "99999": 0.01}}
    text = write_report(
        "wd", "", runs, tmp_path / "stats.csv", {}, tmp_path / "r.md", "q_val_bpb", base, 3,
        sweep=table, scaling=fit, published=published,
    )  # fmt: skip
    scaling_part = text.split("## Scaling fit")[1].split("## Figures")[0]
    header, _, first, second = scaling_part.strip().splitlines()[2:6]
    assert header.rstrip("|").split("|")[-1].strip() == "published best"
    assert first.rstrip("|").split("|")[-1].strip() == "0.4"
    assert second.rstrip("|").split("|")[-1].strip() == "–"
    published["best"] = {"99999": 0.01}
    text = write_report(
        "wd", "", runs, tmp_path / "stats.csv", {}, tmp_path / "r.md", "q_val_bpb", base, 3,
        sweep=table, scaling=fit, published=published,
    )  # fmt: skip
    assert "The published optima are at `model.d_model` 99999, which this run" in text


def test_fewer_runs_than_planned_says_what_can_be_detected(study):
    from speedlab.analysis.stats import detectable_effect

    text = write_report(
        "s", "", runs_frame(), study / "stats.csv", {}, study / "r.md", "q_val_bpb", "uniform", 10
    )
    line = next(ln for ln in text.splitlines() if ln.startswith("- Fewer runs than planned"))
    assert f"`layerwise` (n=3 vs 3): |g| ≥ {detectable_effect(3, 3):.2f}" in line


def test_headline_table_sets_the_published_values_next_to_ours(study):
    """The published table's shape: what each condition sets, our mean with its interval, the
    difference with Welch's interval, and the published value and difference against them."""
    published = {
        "source": "a lab note",
        "values": {"uniform": 1.51, "layerwise": 1.35},
        "seeds": {"uniform": 1, "layerwise": 1},
    }
    conditions = {"uniform": {}, "layerwise": {"optim.momentum_first": 0.98}}
    text = write_report(
        "s", "", runs_frame(), study / "stats.csv", {}, study / "r.md", "q_val_bpb", "uniform",
        4, condition_overrides=conditions, published=published, scale="full",
    )  # fmt: skip
    section = text[text.index("## Results table") : text.index("## Results\n")]
    welch = sps.ttest_ind([1.40, 1.41, 1.42], [1.50, 1.52, 1.49], equal_var=False)
    lo, hi = (f"{v:+.4f}".replace("-", "−") for v in welch.confidence_interval(0.95))
    rows = {line.split("|")[1].strip(): line for line in section.splitlines() if "|" in line}
    layer = [c.strip() for c in rows["layerwise"].split("|")[1:-1]]
    assert layer[1] == "momentum_first=0.98" and layer[3] == "1.4100 ± 0.0100"
    assert layer[4] == "[1.3852, 1.4348]" and layer[5] == f"−0.0933 [{lo}, {hi}]"
    assert layer[-2:] == ["1.3500 (n=1)", "no"]  # 1.35 lies below our interval
    base = [c.strip() for c in rows["uniform (baseline)"].split("|")[1:-1]]
    assert base[1] == "defaults" and base[-2:] == ["1.5100 (n=1)", "yes"]
    # published Δ = −0.16, outside Welch's interval of ours
    assert "- `layerwise`: published Δ −0.1600, ours −0.0933" in section
    assert "our interval excludes the published difference." in section
    assert "not the published one" not in section
    # At another scale the published values show the table's shape but are not compared.
    text = write_report(
        "s", "", runs_frame(), study / "stats.csv", {}, study / "r.md", "q_val_bpb", "uniform",
        4, condition_overrides=conditions, published=published, scale="smoke",
    )  # fmt: skip
    section = text[text.index("## Results table") : text.index("## Results\n")]
    assert "1.3500 (n=1)" in section and "published in our CI" not in section
    assert "published Δ" not in section
    assert "at scale `smoke`, not the published one" in section


def test_published_values_must_name_conditions():
    import copy

    import yaml

    from conftest import REPO
    from speedlab.config import validate

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    bad = copy.deepcopy(config)
    bad["studies"]["quickstart"]["published"] = {"source": "x", "values": {"nope": 1.2}}
    with pytest.raises(ValueError, match=r"studies.quickstart.published.values.nope"):
        validate(bad)
