"""report.md's content: numbers, verdicts and which sections and sentences appear, per case.

stats.csv is written here to its contract (the primary test of the design and rule, its Holm
p and the interval at Holm's level, the companions, the detectable effect) by `contract_stats`,
from scipy and statsmodels, so the report is checked against those libraries and not against
speedlab.analysis.stats. Tables are read cell by cell (parse_tables), so the checks do not
depend on column padding.
"""

import json
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower, TTestPower
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from speedlab.analysis.collect import typed_runs
from speedlab.analysis.report import contradictions, main, report_data, write_report

UNIFORM = [1.50, 1.52, 1.49]
LAYERWISE = [u + d for u, d in zip(UNIFORM, [0.024, 0.023, 0.025], strict=True)]  # paired
DIFFERENCE = {"rule": "difference", "alpha": 0.05, "preset": None, "min_delta": 0.0}
DIFFERENCE |= dict.fromkeys(("target", "sigma", "margin", "against"))
DIFFERENCE["direction"] = "below"
RECORD = dict(DIFFERENCE, rule="record", alpha=0.01, min_delta=0.005, preset="parameter_golf")
TARGET = dict(DIFFERENCE, rule="target", alpha=0.01, target=3.28, preset="modded_track1")
PLAN = {"min_effect": 0.005, "noise_sd": None, "pair_correlation": 0.0, "power": 0.8}


def minus(text: str) -> str:
    return text.replace("-", "\u2212")  # the report prints a real minus sign


def p3(p: float) -> str:
    return minus(f"{p:.3g}")  # a p as the report prints it (4.1e−05)


def f4(x: float) -> str:
    return minus(f"{x:+.4f}")


# --- stats.csv to its contract ---------------------------------------------------------------


def arm(runs: pd.DataFrame, metric: str, condition: str) -> pd.Series:
    """The metric per seed over the runs that count (not diverged, metric present)."""
    rows = runs[(runs["condition"] == condition) & ~runs["diverged"].astype(bool)]
    return rows.dropna(subset=[metric]).set_index("seed")[metric].astype(float)


def _summary(x: pd.Series, alpha: float) -> dict:
    n, mean = len(x), x.mean() if len(x) else np.nan
    sd = x.std(ddof=1) if n > 1 else np.nan
    lo, hi = sps.t.interval(1 - alpha, n - 1, mean, sd / np.sqrt(n)) if n > 1 else (np.nan,) * 2
    return dict(n=n, mean=mean, sd=sd, sem=sd / np.sqrt(n), ci_low=lo, ci_high=hi)


def _primary(x: pd.Series, ref: pd.Series | None, rule: dict, design: str):
    """(test name, scipy result, paired, shift, estimate): the rule's test of x (against ref);
    a record is tested as x + min_delta < ref, its interval shifted back."""
    if rule["rule"] == "target":
        side = "less" if rule["direction"] == "below" else "greater"
        test = sps.ttest_1samp(x, rule["target"], alternative=side)
        return f"one-sample t vs {rule['target']:g}", test, False, 0.0, x.mean()
    common = sorted(set(x.index) & set(ref.index))
    paired = design != "independent" and len(common) >= 2
    shift = rule["min_delta"] if rule["rule"] == "record" else 0.0
    side = "two-sided" if rule["rule"] == "difference" else "less"
    if paired:
        test = sps.ttest_rel(x[common] + shift, ref[common], alternative=side)
        return "paired t", test, True, shift, (x[common] - ref[common]).mean()
    test = sps.ttest_ind(x + shift, ref, equal_var=False, alternative=side)
    return "Welch t", test, False, shift, x.mean() - ref.mean()


def holm_levels(p: list[float], alpha: float) -> tuple[np.ndarray, np.ndarray, str]:
    """Holm p (statsmodels) and the interval level that agrees with it: the step level
    1 - alpha/(m - j) of a rejected test, Bonferroni's 1 - alpha/m otherwise."""
    m = len(p)
    reject, p_adj, _, _ = multipletests(p, alpha=alpha, method="holm")
    rank = np.argsort(np.argsort(p, kind="stable"), kind="stable")
    levels = np.where(reject, 1 - alpha / (m - rank), 1 - alpha / m)
    return p_adj, levels, "holm" if m > 1 else "none"


def _verdict(rule: dict, passes: bool, estimate: float) -> str:
    if rule["rule"] == "record":
        return "record" if passes else "not a record"
    if rule["rule"] == "target":
        return "meets the target" if passes else "does not meet the target"
    if not passes:
        return "no detectable difference"
    return "better" if estimate < 0 else "worse"


def _companions(x: pd.Series, ref: pd.Series, paired: bool, alpha: float) -> dict:
    n1, n2 = len(x), len(ref)
    student = sps.ttest_ind(x, ref)
    welch = sps.ttest_ind(x, ref, equal_var=False)
    pooled = np.sqrt(((n1 - 1) * x.var() + (n2 - 1) * ref.var()) / (n1 + n2 - 2))
    g = (x.mean() - ref.mean()) / pooled * (1 - 3 / (4 * (n1 + n2) - 9))
    se = np.sqrt((n1 + n2) / (n1 * n2) + g**2 / (2 * (n1 + n2)))
    row = dict(
        diff=x.mean() - ref.mean(),
        diff_pct=100 * (x.mean() - ref.mean()) / ref.mean(),
        student_t=student.statistic,
        student_df=student.df,
        student_p=student.pvalue,
        welch_t=welch.statistic,
        welch_df=welch.df,
        welch_p=welch.pvalue,
        mwu_p=sps.mannwhitneyu(x, ref).pvalue,
        mwu_min_p=2 / math.comb(n1 + n2, n1),
        hedges_g=g,
        g_low=g - sps.norm.ppf(1 - alpha / 2) * se,
        g_high=g + sps.norm.ppf(1 - alpha / 2) * se,
    )
    if paired:
        common = sorted(set(x.index) & set(ref.index))
        rel = sps.ttest_rel(x[common], ref[common])
        row.update(paired_t=rel.statistic, paired_df=rel.df, paired_p=rel.pvalue)
        row.update(wilcoxon_p=sps.wilcoxon(x[common], ref[common]).pvalue)
        row.update(wilcoxon_min_p=2 / 2 ** len(common))
    return row


def _power(x: pd.Series, ref: pd.Series | None, paired: bool, rule: dict, plan: dict) -> dict:
    """detectable (metric units) and the seeds for plan.min_effect, from statsmodels."""
    alpha, power = rule["alpha"], plan["power"]
    side = "two-sided" if rule["rule"] == "difference" else "larger"
    if ref is None or paired:
        common = x.index if ref is None else sorted(set(x.index) & set(ref.index))
        sd = (x[common] - (0 if ref is None else ref[common])).std(ddof=1)
        es = TTestPower().solve_power(nobs=len(common), alpha=alpha, power=power, alternative=side)
        need = TTestPower().solve_power if plan["min_effect"] else None
    else:
        n1, n2 = len(x), len(ref)
        sd = np.sqrt(((n1 - 1) * x.var() + (n2 - 1) * ref.var()) / (n1 + n2 - 2))
        es = TTestIndPower().solve_power(
            nobs1=n1, ratio=n2 / n1, alpha=alpha, power=power, alternative=side
        )
        need = TTestIndPower().solve_power if plan["min_effect"] else None
    if need is not None:
        with warnings.catch_warnings():  # an effect of many sds: fewer than 2 seeds, no root
            warnings.simplefilter("ignore", ConvergenceWarning)
            need = need(plan["min_effect"] / sd, alpha=alpha, power=power, alternative=side)
        need = math.ceil(need) if np.isfinite(need) else None  # statsmodels: no n found
    return dict(detectable=es * sd, noise_sd=sd, noise_source="pooled from runs",
                n_for_min_effect=need)  # fmt: skip


def metric_block(runs, metric, baseline, conditions, rule, design, plan, planned) -> pd.DataFrame:
    """stats.csv's rows of one metric: the summary, and per tested row the primary test with
    Holm over the metric's family."""
    alpha = rule["alpha"]
    ref_name = None if rule["rule"] == "target" else baseline
    rows, tested = [], []
    for cond in conditions:
        x = arm(runs, metric, cond)
        row = dict(metric=metric, condition=cond, n_planned=planned, **_summary(x, alpha))
        row.update(baseline=baseline, alpha=alpha)
        rows.append(row)
        if cond == ref_name:
            continue
        ref = None if ref_name is None else arm(runs, metric, ref_name)
        row.update(rule=rule["rule"], against=ref_name)
        if len(x) < 2 or (ref is not None and len(ref) < 2):
            row.update(verdict="insufficient data", test="Welch t")
            if ref is not None:
                diff = x.mean() - ref.mean()
                row.update(diff=diff, diff_pct=100 * diff / ref.mean())
            continue
        name, test, paired, shift, estimate = _primary(x, ref, rule, design)
        row.update(test=name, statistic=test.statistic, df=test.df, p=test.pvalue)
        row.update(design="paired" if paired else "independent")
        row.update(n_pairs=len(set(x.index) & set(ref.index)) if paired else None)
        if ref is not None:
            row.update(_companions(x, ref, paired, alpha))
        row.update(_power(x, ref, paired, rule, plan))
        tested.append((row, test, shift, estimate))
    if tested:
        p_adj, levels, adjusted = holm_levels([r["p"] for r, *_ in tested], alpha)
        for (row, test, shift, estimate), q, level in zip(tested, p_adj, levels, strict=True):
            ci = test.confidence_interval(level)
            row.update(p_adj=q, adjusted=adjusted, est_level=level, estimate=estimate)
            row.update(est_low=ci.low - shift, est_high=ci.high - shift)
            row.update(verdict=_verdict(rule, q < alpha, estimate))
    return pd.DataFrame(rows)


# stats.csv's columns, in the contract's order.
CONTRACT = [
    "metric",
    "condition",
    "n_planned",
    "n",
    "mean",
    "sd",
    "sem",
    "ci_low",
    "ci_high",
    "baseline",
    "diff",
    "diff_pct",
    "student_t",
    "student_df",
    "student_p",
    "welch_t",
    "welch_df",
    "welch_p",
    "verdict",
    "boot_low",
    "boot_high",
    "mwu_p",
    "hedges_g",
    "g_low",
    "g_high",
    "design",
    "n_pairs",
    "rule",
    "against",
    "test",
    "statistic",
    "df",
    "p",
    "p_adj",
    "adjusted",
    "estimate",
    "est_low",
    "est_high",
    "est_level",
    "paired_t",
    "paired_df",
    "paired_p",
    "wilcoxon_p",
    "mwu_min_p",
    "wilcoxon_min_p",
    "detectable",
    "noise_sd",
    "noise_source",
    "n_for_min_effect",
    "alpha",
]


def contract_stats(runs, metrics, baseline, conditions, planned, path, rule=DIFFERENCE,
                   design="auto", plan=PLAN) -> pd.DataFrame:  # fmt: skip
    metrics = [metrics] if isinstance(metrics, str) else metrics
    blocks = [
        metric_block(runs, m, baseline, conditions, rule if i == 0 else DIFFERENCE, design, plan,
                     planned)
        for i, m in enumerate(metrics)
    ]  # fmt: skip
    table = pd.concat(blocks, ignore_index=True).reindex(columns=CONTRACT)
    table.to_csv(path, index=False)
    return table


# --- studies ---------------------------------------------------------------------------------


def runs_frame(arms=(("uniform", UNIFORM), ("layerwise", LAYERWISE)), metric="q_val_bpb"):
    """runs.parquet as analysis.collect types it: seeds 0.. per arm, a diverged 4th seed of
    the last arm, and a run of another study that the report must ignore."""
    rows = []
    for cond, vals in arms:
        for seed, v in enumerate(vals):
            rows.append(
                dict(study="s", condition=cond, seed=seed, is_baseline=cond == arms[0][0],
                     steps=200, tokens=409600, n_params=592144, q_val_bpb=v, val_bpb=v - 0.001,
                     compressed_bytes=571000 + seed, train_time_s=40.0 + seed, diverged=False,
                     device="cpu", host="h", torch="2.13.0")
            )  # fmt: skip
            if metric != "q_val_bpb":
                rows[-1][metric] = v
    rows.append(dict(rows[-1], seed=len(arms[-1][1]), q_val_bpb=float("nan"), diverged=True,
                     steps=17))  # fmt: skip
    rows.append(dict(rows[-1], study="other", seed=9))
    return typed_runs(pd.DataFrame(rows))


def make_study(d, runs, metrics="q_val_bpb", conditions=("uniform", "layerwise"),
               baseline="uniform", rule=DIFFERENCE, design="auto", plan=PLAN, planned=4,
               **options):  # fmt: skip
    """Write runs.parquet, stats.csv (to its contract) and a figure into d; the report's
    options for them."""
    d = Path(d)
    (d / "figures").mkdir(parents=True, exist_ok=True)
    (d / "figures/final.png").write_bytes(b"png")
    runs.to_parquet(d / "runs.parquet")
    contract_stats(runs, metrics, baseline, list(conditions), planned, d / "stats.csv", rule,
                   design, plan)  # fmt: skip
    metric = metrics if isinstance(metrics, str) else metrics[0]
    return {
        "study": "s",
        "description": "Is layerwise better?",
        "metric": metric,
        "baseline": baseline,
        "planned_seeds": planned,
        "conditions": {"uniform": {}, "layerwise": {"optim.momentum_first": 0.98}},
        "published": None,
        "scale": "default",
        "design": design,
        "decision": rule,
        "plan": plan,
        "adaptive": None,
        "data": {
            "corpus": "fineweb_edu",
            "source": "hf",
            "shards": "results/shards/x_sp1024",
            "source_json": None,
        },  # fmt: skip
        "runs": str(d / "runs.parquet"),
        "stats": str(d / "stats.csv"),
        "sweep": None,
        "sweep_tests": None,
        "confirm": None,
        "confirm_seeds": None,
        "scaling": None,
        "sequential": None,
        "rule_steps": None,
        "compute": None,
        "figures": [{"title": "Final", "path": str(d / "figures/final.png")}],
        **options,
    }


@pytest.fixture
def study(tmp_path):
    """Quickstart-like: 2 conditions x 3 matched seeds, layerwise worse on every seed."""
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


def assert_clean(text: str) -> None:
    """No missing value leaks into the note as NaN, <NA>, None or inf."""
    assert not re.search(r"\bnan\b|<NA>|\bNone\b|\binf\b", text, flags=re.IGNORECASE), re.search(
        r".{0,60}(\bnan\b|<NA>|\bNone\b|\binf\b).{0,60}", text, flags=re.IGNORECASE
    ).group(0)


def ci(low: float, high: float) -> str:
    return f"[{f4(low)}, {f4(high)}]"


COMPARISONS = "## Comparisons with `uniform` (post-quant val_bpb)"


# --- the quickstart: paired seeds ------------------------------------------------------------


def test_paired_study_names_the_design_and_its_test(study):
    out = study["runs"].replace("runs.parquet", "report.md")
    text = write_report(study, out)
    assert Path(out).read_text(encoding="utf-8") == text
    assert_clean(text)
    assert text.startswith("# Study `s`\n") and "Is layerwise better?" in section(
        text, "## Question"
    )
    design = bullets(section(text, "## Design"))
    assert design[:5] == [
        "Conditions: `uniform` (baseline), `layerwise`",
        "Seeds: 4 planned per condition (8 runs); 7 runs present; usable per condition: "
        "`uniform` 3, `layerwise` 3",
        "Training per run: 200 steps, 409,600 tokens, 592,144 parameters",
        "Total training time: 4 min 48 s over 7 runs",  # 2 x (40 + 41 + 42) + 42 s
        "Environment: device cpu; host h; torch 2.13.0",
    ]
    assert design[6] == (
        "Comparison design: paired by seed: the same seed gives both arms the same initial "
        "weights and the same data order; 3 pairs per comparison (design: auto)"
    )
    assert design[7] == (
        "Decision rule: difference: a two-sided test of the difference to `uniform` at α=0.05"
    )
    assert design[8] == "Primary metric: post-quant val_bpb, lower is better"

    rel = sps.ttest_rel(LAYERWISE, UNIFORM)
    stats = pd.read_csv(study["stats"]).set_index("condition")
    assert abs(stats.loc["layerwise", "p"] - rel.pvalue) < 1e-12
    rows = by_condition(parse_tables(section(text, "## Results table"))[0])
    assert list(rows["layerwise"]) == [
        "condition", "verdict", "n", "post-quant val_bpb mean ± sd", "95% CI",
        "Δ vs uniform [95% CI, unadjusted]", "p (unadjusted)", "test", "settings",
    ]  # fmt: skip
    interval = rel.confidence_interval(0.95)
    assert rows["layerwise"]["verdict"] == "worse" and rows["layerwise"]["test"] == "paired t"
    assert rows["layerwise"]["Δ vs uniform [95% CI, unadjusted]"] == (
        f"+0.0240 {ci(interval.low, interval.high)}"
    )
    assert rows["layerwise"]["p (unadjusted)"] == f"{rel.pvalue:.3g}"
    assert rows["uniform (baseline)"]["verdict"] == "–"

    (sentence,) = bullets(section(text, COMPARISONS))
    assert sentence == (
        f"**layerwise**: 1.5273 vs 1.5033 post-quant val_bpb (+1.60%), paired t: "
        f"t={rel.statistic:.2f}, df=2, p={rel.pvalue:.3g}; Δ vs uniform +0.0240 "
        f"{ci(interval.low, interval.high)} (95%, unadjusted): **worse** (higher) than uniform "
        "at α=0.05 with 3 pairs."
    )
    assert "## Training time" not in text and "## Sweep" not in text and "## Scaling" not in text
    assert "## Sequential design" not in text and "## Decision rule over" not in text
    assert "![Final](figures/final.png)" in section(text, "## Figures")
    assert bullets(section(text, "## Runs excluded")) == [
        "`layerwise` seed 3: diverged after 17 steps",
        "`uniform`: 1 of 4 planned runs missing (seeds present: 0, 1, 2)",
    ]
    assert "seed 9" not in text


def test_companion_tests_are_a_table_of_their_own(study):
    """Welch and Student disagree with the paired verdict here (p = 0.12), which is why they
    are companions; the rank tests cannot reach α = 0.05 with 3 seeds per arm (smallest
    attainable p: Mann-Whitney 2 / C(6, 3) = 0.1, Wilcoxon 2 / 2^3 = 0.25)."""
    text = write_report(study, study["stats"].replace("stats.csv", "r.md"))
    part = section(text, "### Companion tests (post-quant val_bpb)")
    (row,) = parse_tables(part)[0]
    welch = sps.ttest_ind(LAYERWISE, UNIFORM, equal_var=False)
    student = sps.ttest_ind(LAYERWISE, UNIFORM)
    rel = sps.ttest_rel(LAYERWISE, UNIFORM)
    assert row["Welch"] == f"t={welch.statistic:.2f}, df={welch.df:.1f}, p={welch.pvalue:.3g}"
    assert row["Student"] == f"t={student.statistic:.2f}, df=4, p={student.pvalue:.3g}"
    assert row["paired t"] == f"t={rel.statistic:.2f}, df=2, p={rel.pvalue:.3g}"
    assert row["Mann-Whitney"] == "cannot reach α=0.05 at n=3 vs 3"
    assert row["Wilcoxon signed-rank"] == "cannot reach α=0.05 at 3 pairs"
    assert row["vs"] == "uniform" and row["Δ"] == "+0.0240" and row["Δ %"] == "+1.60"
    assert "verdict" not in row


def test_a_rank_test_that_can_reach_alpha_shows_its_p(tmp_path):
    arms = (("uniform", UNIFORM + [1.51, 1.50]), ("layerwise", LAYERWISE + [1.54, 1.53]))
    options = make_study(tmp_path, runs_frame(arms), planned=5)
    text = write_report(options, tmp_path / "r.md")
    (row,) = parse_tables(section(text, "### Companion tests (post-quant val_bpb)"))[0]
    x, y = arms[1][1], arms[0][1]
    assert row["Mann-Whitney"] == f"p={sps.mannwhitneyu(x, y).pvalue:.3g}"  # 2/C(10,5) < 0.05
    assert row["Wilcoxon signed-rank"] == "cannot reach α=0.05 at 5 pairs"  # 2/32 > 0.05


def test_what_the_runs_can_detect_and_the_seeds_for_min_effect(study):
    """No power at the observed effect: the detectable effect at the achieved n and the seeds
    plan.min_effect needs, both from statsmodels' t power for the paired design."""
    text = write_report(study, study["stats"].replace("stats.csv", "r.md"))
    part = section(text, "## What the runs can detect")
    deltas = np.subtract(LAYERWISE, UNIFORM)
    sd = deltas.std(ddof=1)
    es = TTestPower().solve_power(nobs=3, alpha=0.05, power=0.8)
    need = math.ceil(TTestPower().solve_power(0.005 / sd, alpha=0.05, power=0.8))
    assert bullets(part) == [
        f"`layerwise` (3 pairs, paired t): a true effect of {es * sd:.4f} post-quant val_bpb "
        f"or more (noise sd {sd:.4f}, pooled from runs); plan.min_effect=0.005 needs {need} "
        "pairs.",
        "Fewer runs than planned: smaller effects can be neither shown nor ruled out.",
    ]
    assert "power at" not in text and "would give 80% power" not in text
    no_plan = dict(PLAN, min_effect=None)
    options = make_study(Path(study["runs"]).parent / "np", runs_frame(), plan=no_plan, planned=3)
    part = section(write_report(options, Path(options["runs"]).parent / "r.md"), "## What the "
                   "runs can detect")  # fmt: skip
    assert bullets(part)[-1] == (
        "plan.min_effect is not set: set it (the smallest effect that matters, in metric "
        "units) to get the seeds a decision needs."
    )
    assert "needs" not in bullets(part)[0] and bullets(part)[0].endswith("pooled from runs).")


def test_independent_design_uses_welch(tmp_path):
    options = make_study(tmp_path, runs_frame(), design="independent", planned=3)
    text = write_report(options, tmp_path / "r.md")
    assert_clean(text)
    design = bullets(section(text, "## Design"))
    assert (
        "Comparison design: independent: each arm's runs are a separate sample (design: "
        "independent)"
    ) in design
    welch = sps.ttest_ind(LAYERWISE, UNIFORM, equal_var=False)
    row = by_condition(parse_tables(section(text, "## Results table"))[0])["layerwise"]
    assert row["test"] == "Welch t" and row["verdict"] == "no detectable difference"
    assert row["p (unadjusted)"] == f"{welch.pvalue:.3g}"
    (row,) = parse_tables(section(text, "### Companion tests (post-quant val_bpb)"))[0]
    assert "paired t" not in row and "Wilcoxon signed-rank" not in row
    assert "Fewer runs than planned" not in text


# --- Holm: the interval is at the p's adjustment ---------------------------------------------

NGPT_BASE = [1.00, 1.01, 1.02]
NGPT = {  # six alphas against the baseline; a0.35 alone would be "worse" unadjusted (p = 0.021),
    # a0.55 and a0.65 are clearly different (Holm rejects them at steps 1 and 2)
    "a0.05": NGPT_BASE,
    "a0.15": [1.002, 1.012, 1.018],
    "a0.25": [0.996, 1.011, 1.021],
    "a0.35": [1.03, 1.04, 1.05],
    "a0.45": [1.004, 1.006, 1.025],
    "a0.55": [1.07, 1.08, 1.09],
    "a0.65": [0.94, 0.95, 0.96],
}


def ngpt_study(d, **options):
    runs = runs_frame(tuple(NGPT.items()))
    conditions = list(NGPT)
    settings = {c: {"model.ngpt_alpha": float(c[1:]), "model.ngpt": True} for c in conditions}
    opts = make_study(d, runs, conditions=conditions, baseline="a0.05", design="independent",
                      planned=3, **options)  # fmt: skip
    return dict(opts, conditions=settings)


def test_holm_interval_includes_zero_when_holm_does_not_reject(tmp_path):
    """The ngpt_alpha case: the unadjusted Welch interval of a0.35 excludes 0, but with six
    comparisons Holm does not reject it; the report's interval is the one at Holm's level
    (Bonferroni's 1 - 0.05/6 for a test Holm does not reject), so it includes 0, as the
    verdict says."""
    options = ngpt_study(tmp_path)
    text = write_report(options, tmp_path / "r.md")
    assert_clean(text)
    welch = sps.ttest_ind(NGPT["a0.35"], NGPT_BASE, equal_var=False)
    unadjusted = welch.confidence_interval(0.95)
    assert unadjusted.low > 0 and welch.pvalue < 0.05
    others = [sps.ttest_ind(v, NGPT_BASE, equal_var=False) for v in list(NGPT.values())[1:]]
    reject, holm, _, _ = multipletests([t.pvalue for t in others], method="holm")
    assert list(reject) == [False, False, False, False, True, True]
    holm_p = holm[2]
    adjusted = welch.confidence_interval(1 - 0.05 / 6)
    assert adjusted.low < 0 < adjusted.high

    rows = by_condition(parse_tables(section(text, "## Results table"))[0])
    row = rows["a0.35"]
    assert row["verdict"] == "no detectable difference"
    assert row["p (Holm-adjusted)"] == f"{holm_p:.3g}"
    assert row["Δ vs a0.05 [CI, Holm-adjusted]"] == (
        f"+0.0300 {ci(adjusted.low, adjusted.high)} (99.17%)"
    )
    assert list(row)[:2] == ["condition", "verdict"]  # the verdict never scrolls out of view
    # Holm's step levels: 1 - 0.05/6 for the first rejection, 1 - 0.05/5 for the second
    step = {c: others[i].confidence_interval(lv) for i, c, lv in ((4, "a0.55", 1 - 0.05 / 6),
            (5, "a0.65", 1 - 0.05 / 5))}  # fmt: skip
    assert rows["a0.55"]["verdict"] == "worse" and rows["a0.65"]["verdict"] == "better"
    assert rows["a0.65"]["Δ vs a0.05 [CI, Holm-adjusted]"] == (
        f"{f4(-0.06)} {ci(step['a0.65'].low, step['a0.65'].high)} (99%)"
    )
    assert rows["a0.55"]["Δ vs a0.05 [CI, Holm-adjusted]"].endswith("(99.17%)")
    design = bullets(section(text, "## Design"))
    assert "Multiple comparisons: Holm's method over the 6 comparisons of the primary metric" in (
        design
    )
    sentence = next(b for b in bullets(section(text, "## Comparisons with `a0.05` (post-quant "
                                                     "val_bpb)")) if "a0.35" in b)  # fmt: skip
    assert f"Welch t: t={welch.statistic:.2f}, df=4, p={welch.pvalue:.3g}, " in (  # equal sds
        sentence
    )
    assert f"Holm-adjusted p={holm_p:.3g}; Δ vs a0.05 +0.0300 " in sentence
    assert "(99.17%, Holm-adjusted): **no detectable difference** at α=0.05" in sentence
    assert contradictions(pd.read_csv(options["stats"]), DIFFERENCE) == []
    assert "Warning" not in text


def test_a_verdict_that_contradicts_its_interval_is_flagged(tmp_path):
    options = ngpt_study(tmp_path)
    stats = pd.read_csv(options["stats"])
    stats.loc[stats["condition"] == "a0.35", "verdict"] = "worse"  # as if Holm were ignored
    stats.loc[stats["condition"] == "a0.15", "est_low"] = 0.001  # excludes 0, verdict says not
    stats.to_csv(options["stats"], index=False)
    assert contradictions(stats, DIFFERENCE) == ["a0.15", "a0.35"]
    text = write_report(options, tmp_path / "r.md")
    warnings = [b for b in bullets(text) if b.startswith("**Warning**")]
    assert warnings == [
        f"**Warning**: the verdict of `{c}` disagrees with its interval in stats.csv; do not use "
        "it (a bug: please report it)."
        for c in ("a0.15", "a0.35")
    ]


# --- the field's rules -----------------------------------------------------------------------

RECORD_ARMS = (("uniform", UNIFORM), ("layerwise", [u - d for u, d in zip(UNIFORM, [0.012, 0.011,
               0.0125], strict=True)]))  # fmt: skip


def test_record_rule_is_one_sided_beyond_min_delta(tmp_path):
    """parameter-golf: at least 0.005 lower at one-sided p < 0.01, here on matched seeds."""
    options = make_study(tmp_path, runs_frame(RECORD_ARMS), rule=RECORD, planned=3)
    text = write_report(options, tmp_path / "r.md")
    assert_clean(text)
    assert (
        "Decision rule: record: the condition must be at least 0.005 lower than `uniform`, "
        "one-sided p < 0.01 (parameter-golf's rule)"
    ) in bullets(section(text, "## Design"))
    x, ref = RECORD_ARMS[1][1], UNIFORM
    test = sps.ttest_rel(np.add(x, 0.005), ref, alternative="less")
    high = test.confidence_interval(0.99).high - 0.005
    assert high < -0.005 and test.pvalue < 0.01
    row = by_condition(parse_tables(section(text, "## Results table"))[0])["layerwise"]
    assert row["verdict"] == "record" and row["p (unadjusted)"] == f"{test.pvalue:.3g}"
    diff = np.mean(np.subtract(x, ref))
    assert row["Δ vs uniform [99% CI, unadjusted]"] == f"{f4(diff)} (−∞, {f4(high)}]"
    (sentence,) = bullets(section(text, COMPARISONS))
    assert sentence.endswith("(99%, unadjusted): **record** at α=0.01 with 3 pairs.")
    # 0.005 is parameter-golf's margin, not a test: a smaller gain is not a record
    small = (("uniform", UNIFORM), ("layerwise", [u - d for u, d in zip(UNIFORM, [0.004, 0.0045,
             0.0042], strict=True)]))  # fmt: skip
    options = make_study(tmp_path / "small", runs_frame(small), rule=RECORD, planned=3)
    row = by_condition(parse_tables(section(write_report(options, tmp_path / "s.md"),
                                            "## Results table"))[0])["layerwise"]  # fmt: skip
    assert row["verdict"] == "not a record"


def test_target_rule_tests_each_mean_against_the_value(tmp_path):
    """modded-nanogpt Track 1: the mean below 3.28 at one-sided p < 0.01 (one-sample t), every
    condition tested (no reference arm), Holm over the two."""
    arms = (("uniform", [3.270, 3.272, 3.271]), ("layerwise", [3.279, 3.285, 3.281]))
    options = make_study(tmp_path, runs_frame(arms, "val_loss"), metrics="val_loss",
                         rule=TARGET, planned=3)  # fmt: skip
    text = write_report(options, tmp_path / "r.md")
    assert_clean(text)
    design = bullets(section(text, "## Design"))
    assert (
        "Decision rule: target: mean below 3.28 at one-sided p < 0.01 (modded-nanogpt Track 1)"
    ) in design
    assert "Comparison design: one-sample: each condition's mean is tested against the target " \
           "value" in design  # fmt: skip
    p = [sps.ttest_1samp(v, 3.28, alternative="less").pvalue for _, v in arms]
    holm_p = multipletests(p, method="holm")[1]
    rows = by_condition(parse_tables(section(text, "## Results table"))[0])
    assert rows["uniform (baseline)"]["verdict"] == "meets the target"
    assert rows["layerwise"]["verdict"] == "does not meet the target"
    assert rows["uniform (baseline)"]["p (Holm-adjusted)"] == f"{holm_p[0]:.3g}"
    upper = sps.ttest_1samp(arms[0][1], 3.28, alternative="less").confidence_interval(0.995).high
    assert rows["uniform (baseline)"]["mean vs 3.28 [99.5% CI, Holm-adjusted]"] == (
        f"3.2710 (−∞, {upper:.4f}]"
    )
    sentences = bullets(section(text, "## Comparisons with `uniform` (val_loss)"))
    assert sentences[0].startswith("**uniform**: mean 3.2710 val_loss, one-sample t vs 3.28: t=")
    assert sentences[0].endswith(": **meets the target** at α=0.01 with n=3.")
    assert "### Companion tests" not in text  # nothing to compare two arms with


# --- sweeps ----------------------------------------------------------------------------------

KEY = "optim.matrix_lr"


def sweep_rows(cells: dict, default: float, alpha=0.05, ranked=True) -> pd.DataFrame:
    """sweep.csv as speedlab.analysis.sweep writes it (one group), from value -> runs."""
    means = {v: np.mean(x) for v, x in cells.items()}
    best = min(means, key=means.get)
    rows = []
    for v, x in cells.items():
        s = _summary(pd.Series(x, dtype=float), alpha)
        welch = sps.ttest_ind(x, cells[default], equal_var=False) if len(x) > 1 else None
        rows.append(dict(metric="q_val_bpb", key=KEY, group_key=None, group=None, value=v,
                         n=len(x), n_excluded=0, mean=s["mean"], sd=s["sd"], sem=s["sem"],
                         ci_low=s["ci_low"], ci_high=s["ci_high"],
                         p_best=(0.9 if v == best else 0.05) if ranked else None,
                         is_best=v == best, default=default, is_default=v == default,
                         diff=means[v] - means[default],
                         welch_p=None if v == default or welch is None else welch.pvalue,
                         verdict="is the default" if v == default else "not testable (n<2)",
                         alpha=alpha, ranking_supported=ranked))  # fmt: skip
    return pd.DataFrame(rows)


def best_tests(cells: dict, best: float, against: list[tuple[float, str]], alpha=0.05):
    """sweep_tests.csv's rows: the best value's Welch tests, Holm over them, intervals at the
    level that agrees with each Holm p."""
    tests = [sps.ttest_ind(cells[best], cells[v], equal_var=False) for v, _ in against]
    p_adj, levels, _ = holm_levels([t.pvalue for t in tests], alpha)
    rows = []
    for (v, kind), t, q, level in zip(against, tests, p_adj, levels, strict=True):
        interval = t.confidence_interval(level)
        diff = np.mean(cells[best]) - np.mean(cells[v])
        rows.append(dict(metric="q_val_bpb", key=KEY, group_key=None, group=None, value=best,
                         against_value=v, against_kind=kind, n=len(cells[best]),
                         n_against=len(cells[v]), diff=diff, diff_low=interval.low,
                         diff_high=interval.high, est_level=level, p=t.pvalue, p_adj=q,
                         verdict=("better" if diff < 0 else "worse") if q < alpha
                         else "no detectable difference"))  # fmt: skip
    return pd.DataFrame(rows)


def sweep_options(tmp_path, cells: dict, default: float, **files):
    runs = runs_frame(tuple((f"lr{v:g}", x) for v, x in cells.items()))
    conditions = [f"lr{v:g}" for v in cells]
    planned = max(len(x) for x in cells.values())
    options = make_study(tmp_path, runs, conditions=conditions, baseline=f"lr{default:g}",
                         design="independent", planned=planned)  # fmt: skip
    options["conditions"] = {c: {KEY: float(c[2:])} for c in conditions}
    for name, table in files.items():
        table.to_csv(tmp_path / f"{name}.csv", index=False)
        options[name] = str(tmp_path / f"{name}.csv")
    return options


def test_a_one_seed_sweep_supports_no_ranking(tmp_path):
    """The published nGPT table: one seed per value; the lowest mean is no winner."""
    cells = {0.02: [1.31], 0.04: [1.29], 0.08: [1.30], 0.16: [1.33]}
    table = sweep_rows(cells, 0.04, ranked=False)
    options = sweep_options(tmp_path, cells, 0.04, sweep=table)
    text = write_report(options, tmp_path / "r.md")
    assert_clean(text)
    part = section(text, f"## Sweep over `{KEY}`")
    (rows,) = parse_tables(part)
    assert [r["P(best)"] for r in rows] == ["–"] * 4
    assert [r[KEY] for r in rows] == ["0.02", "0.04 (default)", "0.08", "0.16"]
    assert bullets(part) == [
        "P(best) –: no ranking is supported: a value has fewer than 2 seeds.",
        f"Lowest mean: `{KEY}`=0.04, 1.2900 – post-quant val_bpb with n=1; it is not shown to "
        "be the best.",
    ]
    assert "P(best)=" not in text


def test_sweep_tests_best_against_neighbours_and_default_with_confirmation(tmp_path):
    cells = {
        0.02: [1.330, 1.334, 1.329],
        0.04: [1.310, 1.316, 1.311],
        0.08: [1.296, 1.301, 1.297],
        0.16: [1.305, 1.309, 1.302],
    }
    against = [(0.04, "lower neighbour"), (0.16, "upper neighbour"), (0.02, "default")]
    tests = best_tests(cells, 0.08, against)
    fresh = {0.08: [1.299, 1.300, 1.297], 0.02: [1.331, 1.329, 1.333]}
    confirm = best_tests(fresh, 0.08, [(0.02, "default (confirmation)")])
    options = sweep_options(tmp_path, cells, 0.02, sweep=sweep_rows(cells, 0.02),
                            sweep_tests=tests, confirm=confirm)  # fmt: skip
    options["confirm_seeds"] = [100, 101, 102]
    text = write_report(options, tmp_path / "r.md")
    assert_clean(text)
    part = section(text, f"## Sweep over `{KEY}`")
    values, best = parse_tables(part)
    assert [r["P(best)"] for r in values] == ["0.05", "0.05", "0.90", "0.05"]
    assert "verdict vs default" not in values[0]  # the tests below carry the verdicts
    for row, t in zip(best, tests.itertuples(), strict=True):
        assert row == {
            "best vs": f"{t.against_kind} ({KEY}={t.against_value:g})",
            "verdict": t.verdict,
            "Δ [CI, Holm-adjusted]": f"{f4(t.diff)} {ci(t.diff_low, t.diff_high)} "
            f"({100 * t.est_level:.4g}%)",
            "p (Holm-adjusted)": f"{t.p_adj:.3g}",
            "p (unadjusted)": f"{t.p:.3g}",
            "n": "3 vs 3",
        }
    assert best[0]["verdict"] == "better"  # Holm rejects against the lower neighbour
    c = confirm.iloc[0]
    welch = sps.ttest_ind(fresh[0.08], fresh[0.02], equal_var=False)
    assert c["p"] == welch.pvalue
    assert bullets(part)[-1] == (
        f"Confirmation on fresh seeds 100, 101, 102: the best value {KEY}=0.08 vs the default "
        f"{KEY}=0.02, Δ {f4(c['diff'])} {ci(c['diff_low'], c['diff_high'])} (95%), "
        f"p={p3(welch.pvalue)}, Holm-adjusted p={p3(welch.pvalue)}: **better** (n=3 vs 3)."
    )


# --- sequential design, rule over steps, data ------------------------------------------------

SEQUENTIAL = {
    "look": 2, "looks": [2, 4, 7, 10], "spending": "obrien_fleming", "futility": True,
    "alpha": 0.05, "design": "paired", "rule": "difference",
    "comparisons": {
        "layerwise": {
            "against": "uniform", "status": "efficacy",
            "history": [{"look": 1, "n": 2, "statistic": 1.3, "efficacy": 9.94, "futility": -1.0},
                        {"look": 2, "n": 4, "statistic": 7.21, "efficacy": 4.11,
                         "futility": 0.2}],
            "final": {"p_adj": 0.012, "estimate": 0.0240, "est_low": 0.0051, "est_high": 0.0429,
                      "verdict": "worse"},
        },
        "fixed_low": {
            "against": "uniform", "status": "futility",
            "history": [{"look": 1, "n": 2, "statistic": -2.5, "efficacy": 9.94,
                         "futility": -1.0}],
            "final": {"p_adj": 0.71, "estimate": -0.001, "est_low": -0.02, "est_high": 0.018,
                      "verdict": "no detectable difference"},
        },
        "fixed_high": {
            "against": "uniform", "status": "continue",
            "history": [{"look": 1, "n": 2, "statistic": 0.4, "efficacy": 9.94, "futility": None},
                        {"look": 2, "n": 4, "statistic": 1.1, "efficacy": 4.11, "futility": 0.2}],
            "final": {"p_adj": None},
        },
    },
    "next": {"fixed_high": [4, 5, 6]},
}  # fmt: skip


def test_sequential_section_shows_looks_bounds_and_the_adjusted_result(study, tmp_path):
    doc = tmp_path / "sequential.json"
    doc.write_text(json.dumps(SEQUENTIAL))
    figure = {"title": "Sequential design: the statistic at each look",
              "path": str(Path(study["runs"]).parent / "figures/sequential.png")}  # fmt: skip
    adaptive = {"looks": [2, 4, 7, 10], "spending": "obrien_fleming", "futility": True}
    options = dict(study, sequential=str(doc), adaptive=adaptive,
                   figures=[*study["figures"], figure])  # fmt: skip
    text = write_report(options, Path(study["runs"]).parent / "r.md")
    assert_clean(text)
    part = section(text, "## Sequential design")
    assert part.strip().startswith(
        "Seeds are added look by look: looks at 2, 4, 7, 10 seeds per arm, O'Brien-Fleming "
        "alpha spending (Lan-DeMets), overall α=0.05, with a futility bound. This is the "
        "analysis at look 2 of 4."
    )
    layerwise = section(part, "### `layerwise` vs `uniform`")
    assert parse_tables(layerwise)[0] == [
        {"look": "1", "n": "2", "statistic": "1.30", "efficacy bound": "9.94",
         "futility bound": "−1.00"},
        {"look": "2", "n": "4", "statistic": "7.21", "efficacy bound": "4.11",
         "futility bound": "0.20"},
    ]  # fmt: skip
    assert bullets(layerwise) == [
        "Decision: stopped at look 2 (n=4) for efficacy: the statistic crossed the efficacy bound.",
        "Final, adjusted for the sequential design: +0.0240 [+0.0051, +0.0429], p=0.012: "
        "**worse**.",
    ]
    assert bullets(section(part, "### `fixed_low` vs `uniform`"))[0] == (
        "Decision: stopped at look 1 (n=2) for futility: the statistic crossed the futility bound."
    )
    open_one = section(part, "### `fixed_high` vs `uniform`")
    assert parse_tables(open_one)[0][0]["futility bound"] == "–"
    assert bullets(open_one) == ["Decision: open after look 2 (n=4): the next look runs seeds "
                                 "4, 5, 6."]  # fmt: skip
    assert "![Sequential design: the statistic at each look](figures/sequential.png)" in text


def test_rule_over_steps_gives_the_earliest_passing_step(study, tmp_path):
    rows = []
    for cond, passes in (("layerwise", [False, True, True]), ("fixed_low", [False] * 3)):
        first = passes.index(True) if True in passes else None
        for i, ok in enumerate(passes):
            rows.append(dict(metric="val_loss", step=100 * (i + 1), condition=cond,
                             against="uniform", n=3, statistic=-1.0 - i, threshold=-2.33,
                             p=0.2 / (i + 1), passes=ok, earliest=i == first))  # fmt: skip
    pd.DataFrame(rows).to_csv(tmp_path / "rule_steps.csv", index=False)
    options = dict(study, rule_steps=str(tmp_path / "rule_steps.csv"))
    text = write_report(options, tmp_path / "r.md")
    part = section(text, "## Decision rule over validation steps")
    assert "the same step for every run" in part and "on val_loss" in part
    assert parse_tables(part)[0] == [
        {"condition": "layerwise", "against": "uniform", "earliest step": "200",
         "statistic there": "−2.00", "threshold": "−2.33", "p there": "0.1"},
        {"condition": "fixed_low", "against": "uniform",
         "earliest step": "never within the run (to step 300)", "statistic there": "–",
         "threshold": "–", "p there": "–"},
    ]  # fmt: skip


@pytest.mark.parametrize(
    "record, words",
    [
        ({"source": "hf", "repo": "HuggingFaceFW/fineweb-edu", "name": "sample-10BT",
          "revision": "main"},
         "the Hugging Face hub: HuggingFaceFW/fineweb-edu (sample-10BT, revision main)"),
        ({"source": "local", "files": ["a.jsonl", "b.jsonl"]}, "local files: a.jsonl, b.jsonl"),
        ({"source": "offline_fallback", "files": ["../shared/data/fineweb/x.jsonl"],
          "wanted": {"source": "hf", "repo": "HuggingFaceFW/fineweb-edu", "name": "sample-10BT"}},
         "offline fallback: the hub could not be reached, so local copies were read instead of "
         "HuggingFaceFW/fineweb-edu (sample-10BT): ../shared/data/fineweb/x.jsonl"),
        (None, "official pretokenized shards (no documents or tokenizer of ours)"),
    ],
)  # fmt: skip
def test_the_data_used_is_named(study, tmp_path, record, words):
    data = {"corpus": "fineweb_edu", "source": "pretokenized", "shards": "results/shards/p",
            "source_json": None}  # fmt: skip
    if record is not None:
        (tmp_path / "source.json").write_text(json.dumps(record))
        data = dict(data, source=record["source"], source_json=str(tmp_path / "source.json"))
    text = write_report(dict(study, data=data), tmp_path / "r.md")
    assert f"Data: corpus `fineweb_edu` from {words}; shards `results/shards/p`" in bullets(
        section(text, "## Design")
    )


# --- options and inputs ----------------------------------------------------------------------


def test_imported_condition_without_known_size_or_environment(tmp_path):
    """A condition only imported logs have sets nothing the study lists; what no run states
    (parameters, device) is left out rather than printed as missing."""
    runs = runs_frame().assign(n_params=pd.NA, device=pd.NA, host=pd.NA, torch=pd.NA)
    options = make_study(tmp_path, typed_runs(runs))
    options["conditions"] = {"uniform": {}}
    text = write_report(options, tmp_path / "r.md")
    assert_clean(text)
    rows = by_condition(parse_tables(section(text, "## Results table"))[0])
    assert rows["layerwise"]["settings"] == "imported"
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
    assert v["verdict"] == "worse" and v["tested"] and v["p_adj"] is None


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
        ({"design": "matched"}, "'design' should be one of auto, paired, independent"),
        ({"decision": {"alpha": 0.05}}, "'decision' has no key 'rule'"),
        ({"decision": dict(DIFFERENCE, rule="bayes")}, "'decision.rule' is 'bayes', not one of"),
        ({"decision": dict(DIFFERENCE, rule="target")}, "'decision.target' is needed by rule"),
        ({"decision": dict(DIFFERENCE, alpha="0.05")}, "'decision.alpha' should be number"),
        ({"plan": {"min_effect": 0.005}}, "'plan' has no key 'power'"),
        ({"plan": dict(PLAN, min_effect="big")}, "'plan.min_effect' should be number or null"),
        ({"adaptive": {"looks": [2, "4"]}}, "'adaptive.looks' should be a list of int"),
        ({"adaptive": {"spending": "pocock"}}, "'adaptive' has no key 'looks'"),
        ({"data": {"corpus": "c", "source": "hf", "shards": "s"}}, "'data' has no key "
         "'source_json'"),
        ({"sequential": 3}, "'sequential' should be str or null"),
        ({"confirm_seeds": [1, 2.5]}, "'confirm_seeds' should be a list of int or null"),
    ],
)  # fmt: skip
def test_bad_options_are_named(study, tmp_path, change, message):
    argv = ["--options", json.dumps(dict(study, **change)), "--out", str(tmp_path / "r.md")]
    with pytest.raises(SystemExit, match=f"speedlab.analysis.report: .*{re.escape(message)}"):
        main([*argv, "--html", str(tmp_path / "r.html")])
    assert not (tmp_path / "r.md").exists()


def test_unreadable_inputs_are_named(study, tmp_path):
    missing = tmp_path / "nowhere/stats.csv"
    with pytest.raises(ValueError, match=f"stats table {missing}: cannot be read"):
        write_report(dict(study, stats=str(missing)), tmp_path / "r.md")
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(ValueError, match="runs table .*bad.parquet: cannot be read"):
        write_report(dict(study, runs=str(tmp_path / "bad.parquet")), tmp_path / "r.md")
    short = pd.read_csv(study["stats"]).drop(columns=["p_adj", "est_level"])
    short.to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(ValueError, match="short.csv: missing column.s. p_adj, est_level"):
        write_report(dict(study, stats=str(tmp_path / "short.csv")), tmp_path / "r.md")
    for key, what in (("sweep", "sweep table"), ("sequential", "sequential document"),
                      ("rule_steps", "rule over steps table")):  # fmt: skip
        with pytest.raises(ValueError, match=f"{what} .*absent: cannot be read"):
            write_report(dict(study, **{key: str(tmp_path / "absent")}), tmp_path / "r.md")
    (tmp_path / "seq.json").write_text(json.dumps({"look": 1}))
    with pytest.raises(ValueError, match="seq.json: missing key.s. looks, spending, alpha"):
        write_report(dict(study, sequential=str(tmp_path / "seq.json")), tmp_path / "r.md")
    (tmp_path / "source.json").write_text(json.dumps({"source": "ftp"}))
    data = dict(study["data"], source_json=str(tmp_path / "source.json"))
    with pytest.raises(ValueError, match="source.json: unknown source 'ftp'"):
        write_report(dict(study, data=data), tmp_path / "r.md")


def test_main_rejects_options_that_are_not_json(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--options", "{oops", "--out", str(tmp_path / "r.md"), "--html", "r.html"])
    assert "--options" in capsys.readouterr().err


def test_training_time_gets_its_own_comparison(tmp_path):
    runs = runs_frame()
    runs = runs[runs["study"] == "s"].copy()
    layerwise = runs["condition"] == "layerwise"
    runs.loc[layerwise, "train_time_s"] += 10.0 + 0.5 * runs.loc[layerwise, "seed"]
    options = make_study(tmp_path, runs, metrics=["q_val_bpb", "train_time_s"])
    text = write_report(options, tmp_path / "r.md")
    assert_clean(text)
    part = section(text, "## Training time against `uniform`")
    # uniform 40, 41, 42 s vs layerwise 50, 51.5, 53 s (the diverged run excluded)
    x, ref = [50.0, 51.5, 53.0], [40.0, 41.0, 42.0]
    rel = sps.ttest_rel(x, ref)
    (sentence,) = bullets(part)
    assert sentence.startswith(
        f"**layerwise**: 51.5 vs 41.0 train time (s) (+25.61%), paired t: "
        f"t={rel.statistic:.2f}, df=2, p={p3(rel.pvalue)}; Δ vs uniform +10.5 "
    )
    assert "**worse** (higher) than uniform" in sentence
    (row,) = parse_tables(section(text, "### Companion tests (train time (s))"))[0]
    welch = sps.ttest_ind(x, ref, equal_var=False)
    assert row["Δ"] == "+10.5" and row["Welch"].endswith(f"p={p3(welch.pvalue)}")


def test_an_arm_with_one_run_gets_no_test(tmp_path):
    runs = runs_frame()
    runs = runs[runs["study"] == "s"].copy()
    runs.loc[(runs["condition"] == "layerwise") & (runs["seed"] > 0), "q_val_bpb"] = float("nan")
    published = {"source": "p", "values": {"uniform": 1.5, "layerwise": 1.4}, "seeds": {}}
    options = make_study(tmp_path, runs, published=dict(published, best={}), scale="full")
    text = write_report(options, tmp_path / "r.md")
    assert_clean(text)
    (sentence,) = bullets(section(text, COMPARISONS))
    assert sentence == (
        "**layerwise**: 1.5240 vs 1.5033 post-quant val_bpb (+1.37%): insufficient data "
        "(n=1 vs 3; a test needs at least 2 runs per arm)."
    )
    table = section(text, "## Results table")
    row = by_condition(parse_tables(table)[0])["layerwise"]
    assert row["published in our CI"] == "–" and row["verdict"] == "insufficient data"
    assert row["p"] == "–" and row["Δ vs uniform [CI]"] == "–"  # no test: no level to name
    assert (
        "- `layerwise`: published Δ −0.1000, ours +0.0207; the decision rule gives no interval "
        "of this difference to compare it with."
    ) in table
    assert "(n=1 vs 3): no detectable effect can be given" in section(
        text, "## What the runs can detect"
    )
    excluded = bullets(section(text, "## Runs excluded"))
    assert "`layerwise` seed 1: no post-quant val_bpb recorded" in excluded


# --- published values, sweeps with a fit -----------------------------------------------------

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
    assert rows["layerwise"]["published in our CI"] == "no"  # 1.35 lies below [1.4918, 1.5628]
    assert rows["uniform (baseline)"]["published in our CI"] == "yes"
    interval = sps.ttest_rel(LAYERWISE, UNIFORM).confidence_interval(0.95)
    assert "Published: a lab note." in table
    assert bullets(table) == [
        f"`layerwise`: published Δ −0.1600, ours +0.0240 {ci(interval.low, interval.high)}: our "
        "interval excludes the published difference."
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
    options = make_study(tmp_path, runs, conditions=conditions, baseline=base,
                         design="independent", planned=3)  # fmt: skip
    sweep_table(runs, KEY, "q_val_bpb", GROUP).to_csv(tmp_path / "sweep.csv", index=False)
    fit = {"key": KEY, "group": GROUP, "metric": "q_val_bpb", "expect": expect, "n_boot": n_boot}
    scaling.main(
        ["--options", json.dumps(fit), "--runs", str(tmp_path / "runs.parquet")]
        + ["--json-out", str(tmp_path / "fit.json")]
    )
    options.update(
        conditions={c: {} for c in conditions},
        published=published,
        sweep=str(tmp_path / "sweep.csv"),
        scaling=str(tmp_path / "fit.json"),
    )
    return options, json.loads((tmp_path / "fit.json").read_text())


def test_sweep_and_scaling_sections(tmp_path):
    options, fit = sweep_study(tmp_path)
    text = write_report(options, tmp_path / "r.md")
    assert_clean(text)
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


def test_known_sigma_is_a_z_rule_without_df(tmp_path):
    """Track 3's rule: z = (mean − target) / (σ / √n) with σ known, one-sided; stats.csv
    writes an infinite df for it, which the note leaves out."""
    arms = (("uniform", [3.270, 3.272, 3.271]), ("layerwise", [3.279, 3.285, 3.281]))
    rule = dict(TARGET, rule="known_sigma", alpha=0.05, sigma=0.0013, preset=None)
    options = make_study(tmp_path, runs_frame(arms, "val_loss"), metrics="val_loss",
                         rule=TARGET, planned=3)  # fmt: skip
    stats = pd.read_csv(options["stats"]).astype({"df": float})
    z = (np.mean(arms[0][1]) - 3.28) / (0.0013 / np.sqrt(3))  # by hand
    first = stats["condition"] == "uniform"
    stats.loc[first, ["statistic", "df", "p"]] = [z, np.inf, sps.norm.cdf(z)]
    stats.loc[stats["verdict"].notna(), ["rule", "test"]] = ["known_sigma", "z with known σ=0.0013"]
    stats.to_csv(options["stats"], index=False)
    text = write_report(dict(options, decision=rule), tmp_path / "r.md")
    assert_clean(text)
    assert (
        "Decision rule: known σ: a z test of the mean below 3.28 with the run-to-run σ=0.0013 "
        "taken as known, one-sided p < 0.05"
    ) in bullets(section(text, "## Design"))
    sentence = bullets(section(text, "## Comparisons with `uniform` (val_loss)"))[0]
    assert f"z with known σ=0.0013: z={minus(f'{z:.2f}')}, p={p3(sps.norm.cdf(z))}, " in sentence
    detect = bullets(section(text, "## What the runs can detect"))[0]
    assert "val_loss or more below 3.28 (noise sd σ=0.0013, known)" in detect


def test_an_arm_that_mixes_provenance_is_flagged_with_its_runs(tmp_path):
    """Runs of one arm made by different speedlab commits, a dirty tree or another torch:
    the design section names each mix and which seed had what; every arm shows its commits."""
    commit_a, commit_b = "a" * 40, "b" * 40
    runs = runs_frame().assign(git_commit=commit_a, git_dirty=False)
    layer = runs.index[runs["condition"] == "layerwise"]
    runs.loc[layer[0], ["git_commit", "torch"]] = [commit_b, "2.9.1"]
    runs.loc[layer[1], "git_dirty"] = True
    text = write_report(make_study(tmp_path, typed_runs(runs)), tmp_path / "r.md")
    assert_clean(text)
    design = section(text, "## Design")
    assert f"`layerwise` {commit_a[:10]}, {commit_b[:10]} (uncommitted changes)" in design
    assert f"`uniform` {commit_a[:10]}\n" in design or f"`uniform` {commit_a[:10]};" in design
    warnings_ = [line for line in design.splitlines() if line.startswith("- **Warning**")]
    assert len(warnings_) == 3 and all("`layerwise`" in w for w in warnings_)
    assert f"speedlab commits (seed 0: {commit_b[:10]}; seed 1: {commit_a[:10]}" in design
    assert "torch versions (seed 0: 2.9.1; seed 1: 2.13.0" in design
    assert "clean and dirty checkouts" in design


def test_a_clean_study_has_no_provenance_warning(tmp_path):
    runs = runs_frame().assign(git_commit="c" * 40, git_dirty=False)
    text = write_report(make_study(tmp_path, typed_runs(runs)), tmp_path / "r.md")
    assert "**Warning**" not in section(text, "## Design")
