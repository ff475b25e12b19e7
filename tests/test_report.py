"""report.md's content: numbers, verdicts and which sections and sentences appear, per case.

Tables are read cell by cell (parse_tables), so the checks do not depend on column padding.
"""

import json
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats as sps

from speedlab.analysis.collect import typed_runs
from speedlab.analysis.report import main, report_data, write_report
from speedlab.analysis.stats import detectable_effect, write_stats

LAYERWISE, UNIFORM = [1.40, 1.41, 1.42], [1.50, 1.52, 1.49]


def minus(text: str) -> str:
    return text.replace("-", "\u2212")  # the report prints a real minus sign


def runs_frame() -> pd.DataFrame:
    """runs.parquet as analysis.collect types it: 3 seeds per arm, a diverged 4th layerwise
    seed, and a run of another study that the report must ignore."""
    rows = []
    for cond, vals in (("uniform", UNIFORM), ("layerwise", LAYERWISE)):
        for seed, v in enumerate(vals):
            rows.append(
                dict(
                    study="s",
                    condition=cond,
                    seed=seed,
                    is_baseline=cond == "uniform",
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
    rows.append(dict(rows[-1], study="other", seed=9))
    return typed_runs(pd.DataFrame(rows))


def make_study(
    d, runs, metrics="q_val_bpb", conditions=("uniform", "layerwise"), baseline="uniform", **options
):
    """Write runs.parquet, stats.csv and a figure into d; the report's options for them."""
    (d / "figures").mkdir(parents=True, exist_ok=True)
    (d / "figures/final.png").write_bytes(b"png")
    runs.to_parquet(d / "runs.parquet")
    write_stats(runs, metrics, baseline, list(conditions), 4, d / "stats.csv")
    return {
        "study": "s",
        "description": "Is layerwise better?",
        "metric": "q_val_bpb",
        "baseline": baseline,
        "planned_seeds": 4,
        "conditions": {"uniform": {}, "layerwise": {"optim.momentum_first": 0.98}},
        "published": None,
        "scale": "default",
        "runs": str(d / "runs.parquet"),
        "stats": str(d / "stats.csv"),
        "sweep": None,
        "scaling": None,
        "figures": [{"title": "Final", "path": str(d / "figures/final.png")}],
        **options,
    }


@pytest.fixture
def study(tmp_path):
    return make_study(tmp_path / "results/studies/s", runs_frame())


def section(text: str, heading: str) -> str:
    """The text under `heading` up to the next heading of the same level or above."""
    level = heading.split(" ")[0]
    body = text.split(f"\n{heading}\n", 1)[1]
    for line in body.splitlines():
        if line.startswith("#") and len(line.split(" ")[0]) <= len(level):
            return body.split(f"\n{line}\n", 1)[0]
    return body


def parse_tables(text: str) -> list[list[dict[str, str]]]:
    """Every Markdown table in text, as rows of header -> stripped cell."""
    tables, header = [], None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip()[1:-1].split("|")]
        if header is None:
            header = cells
            tables.append([])
        elif not set(line) <= set("|:- "):
            tables[-1].append(dict(zip(header, cells, strict=True)))
    return tables


def by_condition(table: list[dict]) -> dict[str, dict]:
    return {row["condition"]: row for row in table}


def bullets(text: str) -> list[str]:
    return [line[2:] for line in text.splitlines() if line.startswith("- ")]


def test_report_states_design_results_verdict_and_exclusions(study):
    out = study["runs"].replace("runs.parquet", "report.md")
    text = write_report(study, out)
    assert Path(out).read_text(encoding="utf-8") == text
    assert text.startswith("# Study `s`\n") and "Is layerwise better?" in section(
        text, "## Question"
    )
    design = bullets(section(text, "## Design"))
    assert design[0] == "Conditions: `uniform` (baseline), `layerwise`"
    assert design[1] == (
        "Seeds: 4 planned per condition (8 runs); 7 runs present; usable per condition: "
        "`uniform` 3, `layerwise` 3"
    )
    assert design[2] == "Training per run: 200 steps, 409,600 tokens, 592,144 parameters"
    assert design[3] == "Total training time: 4 min 48 s over 7 runs"  # 2 x (40 + 41 + 42) + 42 s
    assert design[5] == "Environment: device cpu; host h; torch 2.13.0"
    assert "α=0.05, two-sided t-tests" in design[6]

    results = section(text, "## Results")
    primary, val_bpb, size = parse_tables(results)
    assert by_condition(primary)["layerwise"] == {
        "condition": "layerwise",
        "n / planned": "3 / 4",
        "mean ± sd": "1.4100 ± 0.0100",
        "95% CI": "[1.3852, 1.4348]",
    }
    assert by_condition(val_bpb)["layerwise"]["mean ± sd"] == "1.4090 ± 0.0100"
    assert by_condition(size)["uniform"]["mean ± sd"] == "571,001 ± 1"

    comparisons = section(text, "## Comparisons with `uniform` (post-quant val_bpb)")
    (row,) = parse_tables(comparisons)[0]
    welch = sps.ttest_ind(LAYERWISE, UNIFORM, equal_var=False)
    mwu = sps.mannwhitneyu(LAYERWISE, UNIFORM).pvalue
    st = pd.read_csv(study["stats"]).set_index("condition").loc["layerwise"]
    g, lo, hi = (minus(f"{st[k]:.2f}") for k in ("hedges_g", "g_low", "g_high"))
    n80 = int(st["n_for_80pct_power"])
    assert row["diff"] == "−0.0933" and row["diff %"] == "−6.21"
    assert row["Welch p"] == row["Holm p"] == f"{welch.pvalue:.3g}"  # one comparison
    assert row["MWU p"] == f"{mwu:.3g}" and row["Hedges g [CI]"] == f"{g} [{lo}, {hi}]"
    assert row["n for 80% power"] == str(n80) and row["verdict"] == "better"
    (sentence,) = bullets(comparisons)
    assert sentence == (
        f"**layerwise**: 1.4100 vs 1.5033 post-quant val_bpb (−6.21%), "
        f"Welch t={minus(f'{welch.statistic:.2f}')}, df={welch.df:.1f}, p={welch.pvalue:.3g} "
        f"(Student t={minus(f'{welch.statistic:.2f}')}, df=4, p={st['student_p']:.3g}): "
        f"**better** (lower) than uniform at α=0.05 with n=3 per arm. Hedges g={g} [{lo}, {hi}]; "
        f"about {n80} seeds per arm would give 80% power at this effect."
    )
    assert "## Training time" not in text and "## Sweep" not in text and "## Scaling" not in text

    assert "![Final](figures/final.png)" in section(text, "## Figures")
    assert bullets(section(text, "## Runs excluded")) == [
        "`layerwise` seed 3: diverged after 17 steps",
        "`uniform`: 1 of 4 planned runs missing (seeds present: 0, 1, 2)",
    ]
    assert "seed 9" not in text


def test_headline_table_shows_settings_intervals_and_verdict(study):
    text = write_report(study, study["stats"].replace("stats.csv", "r.md"))
    table = section(text, "## Results table")
    rows = by_condition(parse_tables(table)[0])
    welch = sps.ttest_ind(LAYERWISE, UNIFORM, equal_var=False)
    lo, hi = (minus(f"{v:+.4f}") for v in welch.confidence_interval(0.95))
    assert rows["layerwise"] == {
        "condition": "layerwise",
        "settings": "momentum_first=0.98",
        "n": "3",
        "post-quant val_bpb mean ± sd": "1.4100 ± 0.0100",
        "95% CI": "[1.3852, 1.4348]",
        "Δ vs uniform [95% CI]": f"−0.0933 [{lo}, {hi}]",
        "Holm p": f"{welch.pvalue:.3g}",
        "verdict": "better",
    }
    base = rows["uniform (baseline)"]
    assert base["settings"] == "defaults" and base["verdict"] == base["Holm p"] == "–"
    assert "Published:" not in table


def test_imported_condition_without_known_size_or_environment(tmp_path):
    """A condition only imported logs have sets nothing the study lists; what no run states
    (parameters, device) is left out rather than printed as missing."""
    runs = runs_frame().assign(n_params=pd.NA, device=pd.NA, host=pd.NA, torch=pd.NA)
    options = make_study(tmp_path, typed_runs(runs), conditions=("uniform", "layerwise"))
    options["conditions"] = {"uniform": {}}
    text = write_report(options, tmp_path / "r.md")
    rows = by_condition(parse_tables(section(text, "## Results table"))[0])
    assert rows["layerwise"]["settings"] == "imported log"
    design = section(text, "## Design")
    assert "Training per run: 200 steps, 409,600 tokens\n" in design
    assert "parameters" not in design and "Environment" not in design


def test_cli_reads_one_options_json_and_links_relative_to_the_report(study, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # Snakemake passes paths relative to its working directory
    d = "results/studies/s"
    options = dict(
        study,
        planned_seeds=3,
        runs=f"{d}/runs.parquet",
        stats=f"{d}/stats.csv",
        figures=[
            {"title": "Final post-quant val_bpb", "path": f"{d}/figures/final.png"},
            {"title": "Curves", "path": f"{d}/figures/missing.png"},
        ],
    )
    out, page = f"{d}/notes/report.md", f"{d}/notes/report.html"
    main(["--options", json.dumps(options), "--out", out, "--html", page])
    text = (tmp_path / out).read_text(encoding="utf-8")
    figures = section(text, "## Figures")
    assert "![Final post-quant val_bpb](../figures/final.png)\n" in figures
    assert "![Curves](../figures/missing.png) *(figure file missing)*" in figures
    # 3 planned: only the diverged run is excluded, no planned run is missing
    assert bullets(section(text, "## Runs excluded")) == [
        "`layerwise` seed 3: diverged after 17 steps"
    ]
    assert "Fewer runs than planned" not in text
    html = (tmp_path / page).read_text(encoding="utf-8")
    assert html.count('src="data:image/png;base64,') == 1  # the figure that exists
    assert "<title>Study s</title>" in html


def test_report_data_is_plain_data(study, tmp_path):
    """The template gets one structure of plain values (it round-trips through JSON)."""
    data = report_data(study, tmp_path)
    assert json.loads(json.dumps(data)) == data
    (v,) = data["comparison"]["verdicts"]
    assert v["direction"] == "better" and v["tested"] and v["holm_p"] is None


def test_missing_option_is_named(study, tmp_path, capsys):
    options = {k: v for k, v in study.items() if k != "stats"}
    with pytest.raises(SystemExit):
        main(["--options", json.dumps(options), "--out", "r.md", "--html", "r.html"])
    assert "missing ['stats']" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"--options: missing key\(s\) stats"):
        write_report(options, tmp_path / "r.md")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"planned_seeds": "4"}, "'planned_seeds' should be int"),
        ({"published": []}, "'published' should be dict or null"),
        ({"figures": [{"title": "x"}]}, "a figure should be {title, path}"),
        ({"metric": "val_loss"}, "not 'val_loss'"),
        ({"baseline": "nope"}, "no q_val_bpb row for the baseline 'nope'"),
        ({"study": "t"}, "has no rows for study 't'"),
    ],
)
def test_bad_options_are_named(study, tmp_path, change, message):
    argv = ["--options", json.dumps(dict(study, **change)), "--out", str(tmp_path / "r.md")]
    with pytest.raises(SystemExit, match=f"speedlab.analysis.report: .*{message}"):
        main([*argv, "--html", str(tmp_path / "r.html")])
    assert not (tmp_path / "r.md").exists()


def test_unreadable_inputs_are_named(study, tmp_path):
    missing = tmp_path / "nowhere/stats.csv"
    with pytest.raises(ValueError, match=f"stats table {missing}: cannot be read"):
        write_report(dict(study, stats=str(missing)), tmp_path / "r.md")
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(ValueError, match="runs table .*bad.parquet: cannot be read"):
        write_report(dict(study, runs=str(tmp_path / "bad.parquet")), tmp_path / "r.md")
    short = pd.read_csv(study["stats"]).drop(columns=["hedges_g", "welch_p_holm"])
    short.to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(ValueError, match="short.csv: missing column.s. hedges_g, welch_p_holm"):
        write_report(dict(study, stats=str(tmp_path / "short.csv")), tmp_path / "r.md")
    with pytest.raises(ValueError, match="sweep table .*absent.csv: cannot be read"):
        write_report(dict(study, sweep=str(tmp_path / "absent.csv")), tmp_path / "r.md")


def test_main_rejects_options_that_are_not_json(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--options", "{oops", "--out", str(tmp_path / "r.md"), "--html", "r.html"])
    assert "--options" in capsys.readouterr().err


def test_several_comparisons_quote_the_holm_p(tmp_path):
    runs = runs_frame()
    extra = runs[(runs["condition"] == "layerwise") & (runs["study"] == "s")]
    wide = extra.assign(condition="wide", q_val_bpb=extra["q_val_bpb"] + 0.08)
    runs = typed_runs(pd.concat([runs, wide], ignore_index=True))
    options = make_study(tmp_path, runs, conditions=("uniform", "layerwise", "wide"))
    text = write_report(options, tmp_path / "r.md")
    stats = pd.read_csv(tmp_path / "stats.csv").set_index("condition")
    sentences = bullets(section(text, "## Comparisons with `uniform` (post-quant val_bpb)"))
    holm = stats.loc["layerwise", "welch_p_holm"]
    assert f"Holm-corrected Welch p={holm:.3g}: **better**" in sentences[0]
    assert "about 25 seeds per arm would give 80% power" in sentences[1]  # wide: g = −0.82
    assert stats.loc["wide", "verdict"] in sentences[1]


def test_training_time_gets_its_own_comparison(tmp_path):
    runs = runs_frame()
    runs = runs[runs["study"] == "s"].copy()
    runs.loc[runs["condition"] == "layerwise", "train_time_s"] += 10.0
    options = make_study(tmp_path, runs, metrics=["q_val_bpb", "train_time_s"])
    text = write_report(options, tmp_path / "r.md")
    part = section(text, "## Training time against `uniform`")
    (row,) = parse_tables(part)[0]
    # uniform 40, 41, 42 s vs layerwise 50, 51, 52 s (the diverged run excluded): +10 s
    assert row["diff"] == "+10.0" and row["verdict"] == "worse"
    p = sps.ttest_ind([50.0, 51.0, 52.0], [40.0, 41.0, 42.0], equal_var=False).pvalue
    (sentence,) = bullets(part)
    assert sentence.startswith("**layerwise**: 51.0 vs 41.0 train time (s) (+24.39%)")
    assert f"p={p:.3g}" in sentence and "**worse** (higher) than uniform" in sentence


def test_fewer_runs_than_planned_say_what_can_be_detected(study):
    text = write_report(dict(study, planned_seeds=10), study["stats"].replace(".csv", ".md"))
    line = next(b for b in bullets(section(text, "## Design")) if b.startswith("Fewer runs"))
    assert f"`layerwise` (n=3 vs 3): |g| ≥ {detectable_effect(3, 3):.2f}" in line
    assert "Smaller effects can be neither shown nor ruled out." in line
    excluded = bullets(section(text, "## Runs excluded"))
    assert "`uniform`: 7 of 10 planned runs missing (seeds present: 0, 1, 2)" in excluded


def test_an_arm_with_one_run_gets_no_test(tmp_path):
    runs = runs_frame()
    runs = runs[runs["study"] == "s"].copy()
    runs.loc[(runs["condition"] == "layerwise") & (runs["seed"] > 0), "q_val_bpb"] = float("nan")
    published = {"source": "p", "values": {"uniform": 1.5, "layerwise": 1.4}, "seeds": {}}
    options = make_study(tmp_path, runs, published=dict(published, best={}), scale="full")
    text = write_report(options, tmp_path / "r.md")
    assert "`layerwise` (n=1 vs 3): no test (an arm has one run)" in section(text, "## Design")
    (sentence,) = bullets(section(text, "## Comparisons with `uniform` (post-quant val_bpb)"))
    assert sentence == (
        "**layerwise**: 1.4000 vs 1.5033 post-quant val_bpb (−6.87%): insufficient data "
        "(n=1 vs 3; a t-test needs at least 2 runs per arm)."
    )
    table = section(text, "## Results table")
    assert by_condition(parse_tables(table)[0])["layerwise"]["published in our CI"] == "–"
    assert (
        "- `layerwise`: published Δ −0.1000; ours cannot be given an interval (an arm has fewer "
        "than 2 runs)."
    ) in table
    excluded = bullets(section(text, "## Runs excluded"))
    assert "`layerwise` seed 1: no post-quant val_bpb recorded" in excluded


PUBLISHED = {
    "source": "a lab note",
    "values": {"uniform": 1.51, "layerwise": 1.35},
    "seeds": {"uniform": 1, "layerwise": 1},
    "best": {},
}


def test_published_values_are_compared_at_full_scale(study):
    text = write_report(dict(study, published=PUBLISHED, scale="full"), study["stats"] + ".md")
    table = section(text, "## Results table")
    rows = by_condition(parse_tables(table)[0])
    assert rows["layerwise"]["published"] == "1.3500 (n=1)"
    assert rows["layerwise"]["published in our CI"] == "no"  # 1.35 lies below [1.3852, 1.4348]
    assert rows["uniform (baseline)"]["published in our CI"] == "yes"
    welch = sps.ttest_ind(LAYERWISE, UNIFORM, equal_var=False)
    lo, hi = (minus(f"{v:+.4f}") for v in welch.confidence_interval(0.95))
    assert "Published: a lab note." in table
    assert bullets(table) == [
        f"`layerwise`: published Δ −0.1600, ours −0.0933 [{lo}, {hi}]: our interval excludes "
        "the published difference."
    ]


@pytest.mark.parametrize("scale", ["smoke", "default"])
def test_published_values_at_another_scale_show_the_shape_only(study, scale):
    text = write_report(dict(study, published=PUBLISHED, scale=scale), study["stats"] + ".md")
    table = section(text, "## Results table")
    rows = by_condition(parse_tables(table)[0])
    assert rows["layerwise"]["published"] == "1.3500 (n=1)"
    assert "published in our CI" not in rows["layerwise"] and "published Δ" not in table
    assert bullets(table) == [
        f"These runs are at scale `{scale}`, not the published one: the published column shows "
        "the shape of the comparison; its values are not compared with ours."
    ]
    no_values = dict(PUBLISHED, values={}, seeds={})
    text = write_report(dict(study, published=no_values, scale=scale), study["stats"] + ".md")
    table = section(text, "## Results table")
    assert "published" not in parse_tables(table)[0][0]
    assert bullets(table) == [f"These runs are at scale `{scale}`, not the published one."]


def sweep_study(tmp_path, published=None, expect=-2.0, n_boot=200):
    from test_scaling import GROUP, KEY, wd_runs

    from speedlab.analysis import scaling
    from speedlab.analysis.sweep import sweep_table

    runs = typed_runs(
        wd_runs().assign(study="s", train_time_s=10.0, steps=100, tokens=10**6, n_params=1000)
    )
    conditions = list(dict.fromkeys(runs["condition"]))
    base = runs[runs["is_baseline"]]["condition"].iloc[0]
    options = make_study(tmp_path, runs, conditions=conditions, baseline=base)
    sweep_table(runs, KEY, "q_val_bpb", GROUP).to_csv(tmp_path / "sweep.csv", index=False)
    fit = {"key": KEY, "group": GROUP, "metric": "q_val_bpb", "expect": expect, "n_boot": n_boot}
    scaling.main(
        ["--options", json.dumps(fit), "--runs", str(tmp_path / "runs.parquet")]
        + ["--json-out", str(tmp_path / "fit.json")]
    )
    options.update(
        planned_seeds=3,
        conditions={c: {} for c in conditions},
        published=published,
        sweep=str(tmp_path / "sweep.csv"),
        scaling=str(tmp_path / "fit.json"),
    )
    return options, json.loads((tmp_path / "fit.json").read_text())


def test_sweep_and_scaling_sections(tmp_path):
    options, fit = sweep_study(tmp_path)
    text = write_report(options, tmp_path / "r.md")
    sweep = section(text, "## Sweep over `optim.weight_decay`")
    assert "95% t-interval" in sweep
    groups = [line for line in sweep.splitlines() if line.startswith("### `model.d_model` = ")]
    assert groups == [f"### `model.d_model` = {w}" for w in (128, 256, 512, 1024)]
    best = [b for b in bullets(sweep) if b.startswith("Best: `optim.weight_decay`=")]
    assert len(best) == 4 and len(parse_tables(sweep)) == 4
    table = pd.read_csv(tmp_path / "sweep.csv")
    b = table[table["is_best"] & (table["group"] == 1024)].iloc[0]
    assert best[3].startswith(f"Best: `optim.weight_decay`={b['value']:g}, {b['mean']:.4f} [")
    assert f"with n={int(b['n'])}, P(best)={b['p_best']:.2f}; {b['verdict']}" in best[3]
    assert "(default)" in section(sweep, "### `model.d_model` = 256")
    scaling = section(text, "## Scaling fit")
    (rows,) = parse_tables(scaling)
    assert [r["model.d_model"] for r in rows] == [f"{x:g}" for x in fit["fit"]["x"]]
    assert [r["best optim.weight_decay"] for r in rows] == [f"{y:g}" for y in fit["fit"]["y"]]
    f = {k: minus(f"{v:.3f}") for k, v in fit["fit"].items() if isinstance(v, float)}
    assert bullets(scaling) == [
        f"α = {f['exponent']}, 95% t-interval [{f['exponent_low']}, {f['exponent_high']}] "
        f"(4 points, 2 df); k = {fit['fit']['k']:.4g}, R² = {f['r2']}. Bootstrap over seeds "
        f"(best value re-picked per resample): [{f['boot_low']}, {f['boot_high']}].",
        "The expected exponent −2.00 is inside the t-interval.",
    ]
    assert "published best" not in rows[0]


def test_scaling_sets_the_published_optima_next_to_ours(tmp_path):
    options, fit = sweep_study(tmp_path)
    widths = [f"{x:g}" for x in fit["fit"]["x"]]
    published = {"source": "s", "values": {}, "seeds": {}, "best": {widths[0]: 0.4, "99999": 1}}
    text = write_report(dict(options, published=published), tmp_path / "r.md")
    (rows,) = parse_tables(section(text, "## Scaling fit"))
    assert [r["published best"] for r in rows] == ["0.4", "–", "–", "–"]
    # optima only at widths the run does not have (a smaller scale) are named, not compared
    published["best"] = {"99999": 0.01}
    text = write_report(dict(options, published=published), tmp_path / "r.md")
    scaling = section(text, "## Scaling fit")
    assert "published best" not in parse_tables(scaling)[0][0]
    assert (
        "The published optima are at `model.d_model` 99999, which this run does not have (a "
        "smaller scale): they are not compared."
    ) in bullets(scaling)


def test_scaling_without_bootstrap_or_expected_exponent(tmp_path):
    options, _ = sweep_study(tmp_path, expect=None, n_boot=0)
    scaling = section(write_report(options, tmp_path / "r.md"), "## Scaling fit")
    (fit_line,) = bullets(scaling)
    assert "Bootstrap" not in fit_line and "expected exponent" not in scaling


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
