"""report.md: a study written up as a lab note, from runs.parquet, stats.csv and the figures.

The primary metric's numbers come from stats.csv, so the note and the CSV cannot disagree; the
secondary tables use the same stats.summarize. This module only chooses words and formats.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from speedlab.analysis.stats import (
    BETTER,
    INSUFFICIENT,
    NO_DIFFERENCE,
    POWER_MAX_N,
    WORSE,
    detectable_effect,
    summarize,
)
from speedlab.config import flatten

LABELS = {
    "q_val_bpb": "post-quant val_bpb",
    "q_val_loss": "post-quant val_loss",
    "val_bpb": "val_bpb",
    "val_loss": "val_loss",
    "compressed_bytes": "compressed bytes (int8+zlib)",
    "train_time_s": "train time (s)",
}
SECONDARY = ("val_bpb", "compressed_bytes")
TIME = "train_time_s"
MINUS = "\u2212"


def label(metric: str) -> str:
    return LABELS.get(metric, metric)


def _missing(x: object) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _digits(metric: str) -> int:
    # bpb/loss differences that matter are ~1e-3; byte counts are integers.
    if "bytes" in metric:
        return 0
    return 1 if metric.endswith("_s") else 4


def fmt(x: object, digits: int = 4, signed: bool = False) -> str:
    """A number for prose and tables: fixed decimals, thousands separators, a real minus sign."""
    if _missing(x):
        return "–"
    text = f"{float(x):{'+' if signed else ''},.{digits}f}"
    return text.replace("-", MINUS)


def fmt_p(p: object) -> str:
    return "–" if _missing(p) else f"{float(p):.3g}".replace("-", MINUS)


def _get(row: object, name: str) -> object:
    """A stats.csv cell that older CSVs (before the effect-size columns) may lack: NaN then."""
    if isinstance(row, pd.Series):
        return row.get(name, math.nan)
    return getattr(row, name, math.nan)


def fmt_g(row: object) -> str:
    """Hedges g with its CI, e.g. '−1.20 [−2.90, 0.50]'."""
    g, lo, hi = (_get(row, k) for k in ("hedges_g", "g_low", "g_high"))
    if _missing(g):
        return "–"
    return f"{fmt(g, 2)} [{fmt(lo, 2)}, {fmt(hi, 2)}]"


def fmt_n(n: object) -> str:
    if _missing(n):
        return "–"
    return f"≥{int(n):,}" if int(n) >= POWER_MAX_N else f"{int(n):,}"


def _duration(seconds: float) -> str:
    h, rem = divmod(int(round(seconds)), 3600)
    m, s = divmod(rem, 60)
    return f"{h} h {m:02d} min {s:02d} s" if h else f"{m} min {s:02d} s"


def _markdown(table: pd.DataFrame) -> str:
    # The cells are already formatted strings; numparse would turn "1.4100" back into 1.41.
    return table.to_markdown(index=False, disable_numparse=True)


def _summary_markdown(summary: pd.DataFrame, metric: str) -> str:
    d = _digits(metric)
    rows = [
        {
            "condition": r.condition,
            "n / planned": f"{int(r.n)} / {int(r.n_planned)}",
            "mean ± sd": f"{fmt(r.mean, d)} ± {fmt(r.sd, d)}",
            "95% CI": "–" if _missing(r.ci_low) else f"[{fmt(r.ci_low, d)}, {fmt(r.ci_high, d)}]",
        }
        for r in summary.itertuples()
    ]
    return _markdown(pd.DataFrame(rows))


def _comparison_markdown(stats: pd.DataFrame, baseline: str, metric: str) -> str:
    d = _digits(metric)
    rows = [
        {
            "condition": r.condition,
            "vs": baseline,
            "diff": fmt(r.diff, d, signed=True),
            "diff %": fmt(r.diff_pct, 2, signed=True),
            "Student t": fmt(r.student_t, 2),
            "Student df": fmt(r.student_df, 0),
            "Student p": fmt_p(r.student_p),
            "Welch t": fmt(r.welch_t, 2),
            "Welch df": fmt(r.welch_df, 1),
            "Welch p": fmt_p(r.welch_p),
            "Holm p": fmt_p(_get(r, "welch_p_holm")),
            "MWU p": fmt_p(_get(r, "mwu_p")),
            "Hedges g [CI]": fmt_g(r),
            "n for 80% power": fmt_n(_get(r, "n_for_80pct_power")),
            "verdict": r.verdict,
        }
        for r in stats.itertuples()
        if r.condition != baseline
    ]
    return _markdown(pd.DataFrame(rows))


def _effect_sentence(row: pd.Series) -> str:
    """E.g. ' Hedges g=−1.20 [−2.90, 0.50]; about 12 seeds per arm would give 80% power ...'."""
    if _missing(_get(row, "hedges_g")):
        return ""
    text = f" Hedges g={fmt_g(row)}"
    n = _get(row, "n_for_80pct_power")
    if _missing(n):
        return text + "."
    if int(n) >= POWER_MAX_N:
        return (
            text + f"; even {POWER_MAX_N:,} seeds per arm would not give 80% power at this effect."
        )
    return text + f"; about {int(n):,} seeds per arm would give 80% power at this effect."


def verdict_sentence(
    row: pd.Series, base: pd.Series, metric: str, alpha: float, holm: bool = False
) -> str:
    """E.g. 'layerwise: 1.8123 vs 1.8200 val_bpb (−0.42%), Welch t=−2.10, df=3.9, p=0.1: ...'.

    With `holm` (several comparisons) the Holm-corrected Welch p the verdict rests on is quoted.
    """
    d = _digits(metric)
    n, n_base = int(row["n"]), int(base["n"])
    arms = f"n={n} per arm" if n == n_base else f"n={n} vs {n_base}"
    head = (
        f"**{row['condition']}**: {fmt(row['mean'], d)} vs {fmt(base['mean'], d)} "
        f"{label(metric)} ({fmt(row['diff_pct'], 2, signed=True)}%)"
    )
    if row["verdict"] == INSUFFICIENT:
        return f"{head}: insufficient data ({arms}; a t-test needs at least 2 runs per arm)."
    test = (
        f"Welch t={fmt(row['welch_t'], 2)}, df={fmt(row['welch_df'], 1)}, "
        f"p={fmt_p(row['welch_p'])} (Student t={fmt(row['student_t'], 2)}, "
        f"df={fmt(row['student_df'], 0)}, p={fmt_p(row['student_p'])})"
    )
    if holm and not _missing(_get(row, "welch_p_holm")):
        test += f", Holm-corrected Welch p={fmt_p(row['welch_p_holm'])}"
    a = f"α={alpha:g}"
    words = {
        BETTER: f"**better** (lower) than {base.name} at {a} with {arms}",
        WORSE: f"**worse** (higher) than {base.name} at {a} with {arms}",
        NO_DIFFERENCE: f"no detectable difference at {a} with {arms}",
    }[row["verdict"]]
    return f"{head}, {test}: {words}.{_effect_sentence(row)}"


def _span(values: pd.Series, thousands: bool = False) -> str:
    lo, hi = int(values.min()), int(values.max())
    f = "{:,}" if thousands else "{}"
    return f.format(lo) if lo == hi else f"{f.format(lo)}–{f.format(hi)}"


def _design(runs: pd.DataFrame, stats: pd.DataFrame, baseline: str, planned: int) -> list[str]:
    conditions = list(stats["condition"])
    achieved = ", ".join(f"`{r.condition}` {int(r.n)}" for r in stats.itertuples())
    finished = runs[~runs["diverged"].astype(bool)]
    ref = finished if len(finished) else runs
    lines = [
        "- Conditions: "
        + ", ".join(f"`{c}`" + (" (baseline)" if c == baseline else "") for c in conditions),
        f"- Seeds: {planned} planned per condition ({planned * len(conditions)} runs); "
        f"{len(runs)} runs present; usable per condition: {achieved}",
        f"- Training per run: {_span(ref['steps'])} steps, {_span(ref['tokens'], True)} tokens"
        + (f", {_span(ref['n_params'], True)} parameters" if "n_params" in ref else ""),
        f"- Total training time: {_duration(runs['train_time_s'].sum())} over {len(runs)} runs",
    ]
    short = stats[(stats["n"] < planned) & (stats["condition"] != baseline)]
    n_base = int(stats.set_index("condition").loc[baseline, "n"])
    if len(short) or n_base < planned:
        bounds = []
        for r in stats[stats["condition"] != baseline].itertuples():
            g = detectable_effect(int(r.n), n_base)
            bounds.append(
                f"`{r.condition}` (n={int(r.n)} vs {n_base}): "
                + (f"|g| ≥ {g:.2f}" if np.isfinite(g) else "no test (an arm has one run)")
            )
        lines.append(
            "- Fewer runs than planned: with the runs present, a two-sided t-test has 80% power "
            "only for effects of " + "; ".join(bounds) + " (Hedges g, standardized by the "
            "pooled sd). Smaller effects can be neither shown nor ruled out."
        )
    # Provenance columns are written by analysis.collect but are not part of the core schema.
    provenance = [c for c in ("device", "host", "torch") if c in runs]
    if provenance:
        lines.append(
            "- Environment: "
            + "; ".join(f"{c} {', '.join(sorted(map(str, runs[c].unique())))}" for c in provenance)
        )
    return lines


def _settings(overrides: dict | None) -> str:
    """What a condition sets, in short: 'momentum_first=0.98, momentum_last=0.9'."""
    if overrides is None:
        return "imported log"
    if not overrides:
        return "defaults"
    return ", ".join(f"{k.split('.')[-1]}={v}" for k, v in flatten(overrides).items())


def _headline_section(
    stats: pd.DataFrame,
    baseline: str,
    metric: str,
    alpha: float,
    conditions: dict | None,
    published: dict | None,
    scale: str | None,
) -> list[str]:
    """The results the way a published table lays them out (one row per condition, what it
    sets, the metric, the difference to the baseline), with our intervals and tests, and the
    published value where the study gives one."""
    d, level = _digits(metric), f"{100 * (1 - alpha):g}%"
    values = (published or {}).get("values") or {}
    comparable = scale in (None, "full")  # published numbers are at the published scale
    seeds = (published or {}).get("seeds") or {}
    rows = []
    for r in stats.itertuples():
        is_base = r.condition == baseline
        row = {
            "condition": r.condition + (" (baseline)" if is_base else ""),
            "settings": _settings((conditions or {}).get(r.condition)),
            "n": str(int(r.n)),
            f"{label(metric)} mean ± sd": f"{fmt(r.mean, d)} ± {fmt(r.sd, d)}",
            f"{level} CI": "–"
            if _missing(r.ci_low)
            else f"[{fmt(r.ci_low, d)}, {fmt(r.ci_high, d)}]",
            f"Δ vs {baseline} [{level} CI]": "–"
            if is_base
            else fmt(r.diff, d, signed=True)
            + (
                ""
                if _missing(_get(r, "diff_low"))
                else f" [{fmt(r.diff_low, d, signed=True)}, {fmt(r.diff_high, d, signed=True)}]"
            ),
            "Holm p": "–" if is_base else fmt_p(_get(r, "welch_p_holm")),
            "verdict": "–" if is_base else r.verdict,
        }
        if values:
            v = values.get(r.condition)
            row["published"] = (
                "–"
                if v is None
                else fmt(v, d) + (f" (n={seeds[r.condition]})" if r.condition in seeds else "")
            )
            if comparable:
                inside = v is not None and not _missing(r.ci_low) and r.ci_low <= v <= r.ci_high
                row["published in our CI"] = (
                    "–" if v is None or _missing(r.ci_low) else ("yes" if inside else "no")
                )
        rows.append(row)
    lines = [
        "## Results table",
        "",
        "One row per condition, laid out as the published table is: what the condition sets, "
        f"the metric over seeds with its {level} t-interval, and the difference to `{baseline}` "
        f"with Welch's {level} interval, Holm-corrected p and verdict.",
        "",
        _markdown(pd.DataFrame(rows)),
        "",
    ]
    if published:
        lines.append(f"Published: {published['source']}.")
        base_pub = values.get(baseline)
        by_cond = stats.set_index("condition")
        for cond, v in values.items():
            skip = not comparable or cond == baseline or base_pub is None
            if skip or cond not in by_cond.index:
                continue
            r, pub_diff = by_cond.loc[cond], v - base_pub
            if _missing(_get(r, "diff_low")):
                lines.append(
                    f"- `{cond}`: published Δ {fmt(pub_diff, d, signed=True)}; ours cannot be "
                    "given an interval (an arm has fewer than 2 runs)."
                )
                continue
            inside = r["diff_low"] <= pub_diff <= r["diff_high"]
            lines.append(
                f"- `{cond}`: published Δ {fmt(pub_diff, d, signed=True)}, ours "
                f"{fmt(r['diff'], d, signed=True)} [{fmt(r['diff_low'], d, signed=True)}, "
                f"{fmt(r['diff_high'], d, signed=True)}]: our interval "
                + ("contains" if inside else "excludes")
                + " the published difference."
            )
        if not comparable:
            lines.append(
                f"- These runs are at scale `{scale}`, not the published one"
                + (
                    ": the published column shows the shape of the comparison; its values are "
                    "not compared with ours."
                    if values
                    else "."
                )
            )
        lines.append("")
    return lines


def _excluded(runs: pd.DataFrame, conditions: list[str], metric: str, planned: int) -> list[str]:
    lines = []
    for r in runs[runs["condition"].isin(conditions)].itertuples():
        if bool(r.diverged):
            lines.append(f"- `{r.condition}` seed {r.seed}: diverged after {r.steps} steps")
        elif _missing(getattr(r, metric)):
            lines.append(f"- `{r.condition}` seed {r.seed}: no {label(metric)} recorded")
    for c in conditions:
        seeds = sorted(runs.loc[runs["condition"] == c, "seed"].astype(int))
        if len(seeds) < planned:
            present = ", ".join(map(str, seeds)) or "none"
            lines.append(
                f"- `{c}`: {planned - len(seeds)} of {planned} planned runs missing "
                f"(seeds present: {present})"
            )
    return lines or ["None: every planned run finished and counts."]


def _figure_link(title: str, path: str | Path, out_dir: Path) -> list[str]:
    rel = Path(os.path.relpath(Path(path).absolute(), out_dir.absolute())).as_posix()
    target = f"<{rel}>" if " " in rel else rel  # CommonMark needs <> around paths with spaces
    missing = "" if Path(path).exists() else " *(figure file missing)*"
    return [f"### {title}", "", f"![{title}]({target}){missing}", ""]


def write_report(
    study: str,
    description: str,
    runs: pd.DataFrame,
    stats_csv: str | Path,
    figures: dict[str, str | Path],
    out_md: str | Path,
    metric: str,
    baseline: str,
    planned_seeds: int,
    sweep: pd.DataFrame | None = None,
    scaling: dict | None = None,
    condition_overrides: dict | None = None,
    published: dict | None = None,
    scale: str | None = None,
) -> str:
    """The lab note; `sweep` (analysis.sweep's table) and `scaling` (analysis.scaling's JSON)
    add their sections when the study declares a sweep. `condition_overrides` (the study's
    `conditions`) and `published` (its `published` block) fill the headline results table."""
    out_md = Path(out_md)
    if "study" in runs and len(runs):
        runs = runs[runs["study"] == study]
        if runs.empty:
            raise ValueError(f"runs table has no rows for study {study!r}")
    all_stats = pd.read_csv(stats_csv)
    if "metric" not in all_stats:  # a stats.csv from before the metric column
        all_stats.insert(0, "metric", metric)
    stats = all_stats[all_stats["metric"] == metric].reset_index(drop=True)
    if stats.empty:
        held = sorted(all_stats["metric"].unique())
        raise ValueError(f"{stats_csv} holds {held}, not {metric!r}")
    time_stats = all_stats[all_stats["metric"] == TIME].reset_index(drop=True)
    conditions = list(stats["condition"])
    alpha = float(stats["alpha"].iloc[0]) if "alpha" in stats else 0.05
    # The note's planned_seeds is authoritative for display, whatever stats was run with.
    stats["n_planned"] = planned_seeds
    base = stats.set_index("condition").loc[baseline]

    lines = [
        f"# Study `{study}`",
        "",
        "## Question",
        "",
        description.strip() or "(no description given)",
        "",
        "## Design",
        "",
        *_design(runs, stats, baseline, planned_seeds),
        f"- Primary metric: {label(metric)}, lower is better; α={alpha:g}, two-sided t-tests",
        "",
        *_headline_section(stats, baseline, metric, alpha, condition_overrides, published, scale),
        "## Results",
        "",
        f"Mean ± sd over seeds, {100 * (1 - alpha):g}% t-interval of the mean; "
        "diverged runs and runs without the metric are excluded.",
        "",
        f"### {label(metric)} (primary)",
        "",
        _summary_markdown(stats, metric),
        "",
    ]
    for m in SECONDARY:
        if m != metric and m in runs:
            lines += [
                f"### {label(m)}",
                "",
                _summary_markdown(summarize(runs, m, conditions, planned_seeds, alpha), m),
                "",
            ]
    lines += [
        f"## Comparisons with `{baseline}` ({label(metric)})",
        "",
        "Two-sample t-tests of each condition against the baseline; the verdict follows Welch "
        "(no equal-variance assumption), with its p Holm-corrected over all comparisons when "
        "there is more than one. Also shown: the Mann-Whitney U p (two-sided), Hedges g "
        f"(condition − baseline over the pooled sd) with its {100 * (1 - alpha):g}% normal-"
        "approximation CI, and the seeds per arm a two-sided t-test would need for 80% power "
        "at the observed g.",
        "",
        _comparison_markdown(stats, baseline, metric),
        "",
    ]
    several = (stats["condition"] != baseline).sum() > 1
    lines += [
        "- " + verdict_sentence(r, base, metric, alpha, holm=several)
        for _, r in stats.iterrows()
        if r["condition"] != baseline
    ]
    if metric != TIME and not time_stats.empty:
        time_base = time_stats.set_index("condition").loc[baseline]
        lines += [
            "",
            f"## Training time against `{baseline}`",
            "",
            "The same tests on training time (validation excluded; lower is faster), as their own "
            "family of comparisons.",
            "",
            _comparison_markdown(time_stats, baseline, TIME),
            "",
        ]
        lines += [
            "- " + verdict_sentence(r, time_base, TIME, alpha, holm=several)
            for _, r in time_stats.iterrows()
            if r["condition"] != baseline
        ]
    lines.append("")
    if sweep is not None:
        lines += _sweep_section(sweep, metric)
    if scaling is not None:
        lines += _scaling_section(scaling, (published or {}).get("best"))
    lines += ["## Figures", ""]
    for title, path in figures.items():
        lines += _figure_link(title, path, out_md.parent)
    lines += ["## Runs excluded", "", *_excluded(runs, conditions, metric, planned_seeds)]

    text = "\n".join(lines) + "\n"
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text(text, encoding="utf-8")
    return text


def _sweep_section(sweep: pd.DataFrame, metric: str) -> list[str]:
    """Metric against the swept value (per group), the best value and its test against the
    default, in words."""
    key = sweep["key"].iloc[0]
    d = _digits(metric)
    alpha = float(sweep["alpha"].iloc[0])
    lines = [
        f"## Sweep over `{key}`",
        "",
        f"Mean ± sd of {label(metric)} over seeds at each value, with the {100 * (1 - alpha):g}% "
        "t-interval; P(best) is the share of bootstrap resamples of the seeds in which the value "
        "has the lowest mean (with few seeds it overstates certainty). Each value is tested "
        "against the default with Welch's t (not corrected for picking the best afterwards).",
        "",
    ]
    grouped = sweep["group_key"].notna().any()
    for group, part in (
        sweep.groupby("group", dropna=False, sort=False) if grouped else [(None, sweep)]
    ):
        if grouped:
            lines += [f"### `{part['group_key'].iloc[0]}` = {group:g}", ""]
        rows = [
            {
                key: f"{r.value:g}" + (" (default)" if r.is_default else ""),
                "n": f"{int(r.n)}" + (f" (+{int(r.n_excluded)} excl.)" if r.n_excluded else ""),
                "mean ± sd": f"{fmt(r.mean, d)} ± {fmt(r.sd, d)}",
                "CI": f"[{fmt(r.ci_low, d)}, {fmt(r.ci_high, d)}]",
                "P(best)": fmt(r.p_best, 2),
                "diff vs default": fmt(r.diff, d, signed=True),
                "Welch p": fmt_p(r.welch_p),
                "verdict": r.verdict,
            }
            for r in part.itertuples()
        ]
        lines += [_markdown(pd.DataFrame(rows)), ""]
        best = part[part["is_best"].astype(bool)]
        if len(best):
            b = best.iloc[0]
            lines.append(
                f"- Best: `{key}`={b['value']:g}, {fmt(b['mean'], d)} "
                f"[{fmt(b['ci_low'], d)}, {fmt(b['ci_high'], d)}] {label(metric)} with "
                f"n={int(b['n'])}, P(best)={fmt(b['p_best'], 2)}; {b['verdict']}"
                + (
                    f" (diff {fmt(b['diff'], d, signed=True)}, Welch p={fmt_p(b['welch_p'])})."
                    if not _missing(b["welch_p"])
                    else "."
                )
            )
            lines.append("")
    return lines


def _scaling_section(doc: dict, published_best: dict | None = None) -> list[str]:
    """The fit; `published_best` (group value -> published best value, keys as in JSON) adds
    the published optimum next to ours where the groups match."""
    fit = doc["fit"]
    level = f"{100 * (1 - fit['alpha']):g}%"
    table = {
        doc["group"]: [f"{x:g}" for x in fit["x"]],
        f"best {doc['key']}": [f"{y:g}" for y in fit["y"]],
        "P(best)": [fmt(v, 2) for v in fit["p_best"]],
    }
    published = {float(k): v for k, v in (published_best or {}).items()}
    matched = [published.get(float(x)) for x in fit["x"]]
    if any(v is not None for v in matched):
        table["published best"] = ["–" if v is None else f"{v:g}" for v in matched]
    lines = [
        "## Scaling fit",
        "",
        f"The best `{doc['key']}` at each `{doc['group']}` (lowest mean {label(doc['metric'])}), "
        f"fitted as best = k · {doc['group']}^α by least squares in log-log space.",
        "",
        _markdown(pd.DataFrame(table)),
        "",
    ]
    if published and not any(v is not None for v in matched):
        widths = ", ".join(f"{k:g}" for k in sorted(published))
        lines += [
            f"- The published optima are at `{doc['group']}` {widths}, which this run does not "
            "have (a smaller scale): they are not compared.",
            "",
        ]
    interval = (
        f"{level} t-interval [{fmt(fit['exponent_low'], 3)}, {fmt(fit['exponent_high'], 3)}] "
        f"({fit['n']} points, {fit['n'] - 2} df)"
        if not _missing(fit["exponent_low"])
        else f"no interval with {fit['n']} points"
    )
    text = (
        f"- α = {fmt(fit['exponent'], 3)}, {interval}; k = {fit['k']:.4g}, "
        f"R² = {fmt(fit['r2'], 3)}."
    )
    if fit.get("boot_low") is not None:
        text += (
            f" Bootstrap over seeds (best value re-picked per resample): "
            f"[{fmt(fit['boot_low'], 3)}, {fmt(fit['boot_high'], 3)}]."
        )
    lines.append(text)
    if doc.get("expected_exponent") is not None:
        inside = doc.get("expected_within_ci")
        where = {True: "inside", False: "outside", None: "not testable against"}[inside]
        lines.append(
            f"- The expected exponent {fmt(doc['expected_exponent'], 2)} is {where} the t-interval."
        )
    return [*lines, ""]


def _figure_arg(text: str) -> tuple[str, str]:
    # Split on the first '=': titles are prose, paths may hold '=' (e.g. seed=0 directories).
    title, sep, path = text.partition("=")
    if not sep or not title.strip() or not path.strip():
        raise argparse.ArgumentTypeError(f"--figure wants 'Title=path', got {text!r}")
    return title.strip(), path.strip()


HTML_STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       color: #1b1b1b; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 13px; display: block;
        overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead { background: #f2f2f2; }
img { max-width: 100%; border: 1px solid #eee; }
code { background: #f5f5f5; padding: 0 0.2rem; }
"""


def write_html(md_path: str | Path, out_html: str | Path) -> str:
    """report.md as one self-contained HTML file: the figures are embedded as data URIs, so it
    can be mailed or archived without the results folder."""
    import base64
    import html
    import re

    import markdown

    md_path = Path(md_path)
    body = markdown.markdown(md_path.read_text(), extensions=["tables"])

    def embed(match: re.Match) -> str:
        src = md_path.parent / html.unescape(match.group(1))
        if not src.exists():
            return match.group(0)  # the Markdown already flags a missing figure
        data = base64.b64encode(src.read_bytes()).decode("ascii")
        return f'src="data:image/png;base64,{data}"'

    body = re.sub(r'src="([^"]+\.png)"', embed, body)
    title = html.escape(md_path.read_text().splitlines()[0].lstrip("# ").strip("`"))
    page = (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{HTML_STYLE}</style></head>\n<body>\n{body}\n</body></html>\n"
    )
    Path(out_html).write_text(page)
    return page


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m speedlab.analysis.report", description=__doc__)
    p.add_argument("--study", required=True)
    p.add_argument("--description", default="", help="the study's question, in prose")
    p.add_argument("--runs", required=True, type=Path, help="runs.parquet")
    p.add_argument(
        "--stats", required=True, type=Path, help="stats.csv from speedlab.analysis.stats"
    )
    p.add_argument("--metric", required=True, help="primary metric, as in stats.csv")
    p.add_argument("--baseline", required=True)
    p.add_argument("--planned-seeds", required=True, type=int)
    p.add_argument(
        "--figure",
        action="append",
        default=[],
        type=_figure_arg,
        help="'Title=path', repeatable; embedded in this order",
    )
    p.add_argument("--out", required=True, type=Path, help="report.md")
    p.add_argument("--html", type=Path, help="also write this self-contained report.html")
    p.add_argument("--sweep", type=Path, help="sweep.csv from speedlab.analysis.sweep")
    p.add_argument("--scaling", type=Path, help="scaling.json from speedlab.analysis.scaling")
    p.add_argument("--conditions", type=json.loads, help="the conditions' overrides, as JSON")
    p.add_argument("--published", type=json.loads, help="the study's published block, as JSON")
    p.add_argument("--scale", help="the scale the runs were made at (e.g. smoke, full)")
    args = p.parse_args(argv)
    write_report(
        args.study,
        args.description,
        pd.read_parquet(args.runs),
        args.stats,
        dict(args.figure),
        args.out,
        args.metric,
        args.baseline,
        args.planned_seeds,
        sweep=pd.read_csv(args.sweep) if args.sweep else None,
        scaling=json.loads(args.scaling.read_text()) if args.scaling else None,
        condition_overrides=args.conditions,
        published=args.published,
        scale=args.scale,
    )
    if args.html:
        write_html(args.out, args.html)


if __name__ == "__main__":
    main()
