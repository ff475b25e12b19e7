"""report.md (and a self-contained report.html): a study written up as a lab note.

`report_data` reads runs.parquet, stats.csv and, when the study sweeps, sweep.csv and
scaling.json, and returns one plain dict: every number already formatted, every choice of
sentence made as data. templates/report.md.j2 lays it out. The primary metric's numbers come from
stats.csv, so the note and the CSV cannot disagree; the secondary tables use the same
stats.summarize.

    python -m speedlab.analysis.report --options OPTIONS --out report.md --html report.html

OPTIONS is one JSON object: the study's resolved settings and the input paths (keys: OPTIONS
below), as the rule writes it.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import math
import os
import re
from pathlib import Path

import jinja2
import markdown
import numpy as np
import pandas as pd
from tabulate import tabulate

from speedlab.analysis.options import REQUIRED, add_options
from speedlab.analysis.stats import (
    BETTER,
    INSUFFICIENT,
    POWER_MAX_N,
    STATS_COLUMNS,
    WORSE,
    detectable_effect,
    summarize,
)
from speedlab.config import flatten

# The keys of --options (one JSON object), each with the JSON types it may hold.
OPTIONS = {
    "study": (str,),
    "description": (str,),
    "metric": (str,),
    "baseline": (str,),
    "planned_seeds": (int,),
    "conditions": (dict,),
    "published": (dict, type(None)),
    "scale": (str,),
    "runs": (str,),
    "stats": (str,),
    "sweep": (str, type(None)),
    "scaling": (str, type(None)),
    "figures": (list,),
}
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
PROVENANCE = ("device", "host", "torch")
MINUS = "\u2212"
TEMPLATES = Path(__file__).parent / "templates"


class ReportInputError(ValueError):
    """Options or an input file the report cannot use; the message names which and why."""


# --- numbers as the note prints them ------------------------------------------------------


def label(metric: str) -> str:
    return LABELS[metric]


def _missing(x: object) -> bool:
    return x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x))


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


def fmt_g(row: pd.Series) -> str:
    """Hedges g with its CI, e.g. '−1.20 [−2.90, 0.50]'."""
    if _missing(row["hedges_g"]):
        return "–"
    return f"{fmt(row['hedges_g'], 2)} [{fmt(row['g_low'], 2)}, {fmt(row['g_high'], 2)}]"


def fmt_n(n: object) -> str:
    if _missing(n):
        return "–"
    return f"≥{int(n):,}" if int(n) >= POWER_MAX_N else f"{int(n):,}"


def fmt_ci(low: object, high: object, digits: int, signed: bool = False) -> str:
    if _missing(low):
        return "–"
    return f"[{fmt(low, digits, signed)}, {fmt(high, digits, signed)}]"


def _duration(seconds: float) -> str:
    h, rem = divmod(int(round(seconds)), 3600)
    m, s = divmod(rem, 60)
    return f"{h} h {m:02d} min {s:02d} s" if h else f"{m} min {s:02d} s"


def _span(values: pd.Series, thousands: bool = False) -> str:
    lo, hi = int(values.min()), int(values.max())
    f = "{:,}" if thousands else "{}"
    return f.format(lo) if lo == hi else f"{f.format(lo)}–{f.format(hi)}"


def _settings(overrides: dict | None) -> str:
    """What a condition sets, in short: 'momentum_first=0.98, momentum_last=0.9'."""
    if overrides is None:
        return "imported log"
    if not overrides:
        return "defaults"
    return ", ".join(f"{k.split('.')[-1]}={v}" for k, v in flatten(overrides).items())


def markdown_table(rows: list[dict[str, str]]) -> str:
    # The cells are already formatted strings; numparse would turn "1.4100" back into 1.41.
    return tabulate(rows, headers="keys", tablefmt="pipe", disable_numparse=True)


# --- inputs --------------------------------------------------------------------------------


def check_options(options: dict) -> dict:
    """The options, checked: every key of OPTIONS present with its JSON type, figures as
    [{"title", "path"}]."""
    missing = [k for k in OPTIONS if k not in options]
    if missing:
        raise ReportInputError(f"--options: missing key(s) {', '.join(missing)}")
    for key, types in OPTIONS.items():
        if not isinstance(options[key], types) or isinstance(options[key], bool):
            expected = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise ReportInputError(f"--options: {key!r} should be {expected}")
    for fig in options["figures"]:
        if not (isinstance(fig, dict) and {"title", "path"} <= fig.keys()):
            raise ReportInputError(f"--options: a figure should be {{title, path}}, got {fig!r}")
    return options


def _read(path: str, what: str, reader):
    try:
        return reader(path)
    except Exception as e:  # any parse error of pandas/pyarrow/json: name the file
        raise ReportInputError(f"{what} {path}: cannot be read ({e})") from None


def read_stats(path: str, metric: str, baseline: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """stats.csv's rows of the primary metric and of training time (empty if not tested)."""
    table = _read(path, "stats table", pd.read_csv)
    absent = [c for c in STATS_COLUMNS if c not in table]
    if absent:
        raise ReportInputError(f"stats table {path}: missing column(s) {', '.join(absent)}")
    stats = table[table["metric"] == metric].reset_index(drop=True)
    if stats.empty:
        raise ReportInputError(f"{path} holds {sorted(table['metric'].unique())}, not {metric!r}")
    if baseline not in set(stats["condition"]):
        raise ReportInputError(f"{path} has no {metric} row for the baseline {baseline!r}")
    return stats, table[table["metric"] == TIME].reset_index(drop=True)


def read_runs(path: str, study: str) -> pd.DataFrame:
    runs = _read(path, "runs table", pd.read_parquet)
    runs = runs[runs["study"] == study]
    if runs.empty:
        raise ReportInputError(f"runs table {path} has no rows for study {study!r}")
    return runs


# --- the note's sections, as data ---------------------------------------------------------


def _detectable(n: int, n_base: int) -> str | None:
    """The smallest |g| a two-sided t-test detects with 80% power; None if an arm has one run."""
    g = detectable_effect(n, n_base)
    return f"{g:.2f}" if np.isfinite(g) else None


def design(runs: pd.DataFrame, stats: pd.DataFrame, baseline: str, planned: int) -> dict:
    finished = runs[~runs["diverged"].astype(bool)]
    ref = finished if len(finished) else runs
    n_base = int(stats.set_index("condition").loc[baseline, "n"])
    others = stats[stats["condition"] != baseline]
    short = (others["n"] < planned).any() or n_base < planned
    detectable = [
        {
            "condition": r.condition,
            "n": int(r.n),
            "n_base": n_base,
            "g": _detectable(int(r.n), n_base),
        }
        for r in others.itertuples()
    ]
    known = [c for c in PROVENANCE if runs[c].notna().any()]
    return {
        "conditions": [{"name": c, "baseline": c == baseline} for c in stats["condition"]],
        "planned": planned,
        "planned_runs": planned * len(stats),
        "runs": len(runs),
        "usable": [{"condition": r.condition, "n": int(r.n)} for r in stats.itertuples()],
        "steps": _span(ref["steps"]),
        "tokens": _span(ref["tokens"], True),
        "params": _span(ref["n_params"], True) if ref["n_params"].notna().any() else None,
        "time": _duration(runs["train_time_s"].sum()),
        "detectable": detectable if short else None,
        "environment": {c: ", ".join(sorted(map(str, runs[c].dropna().unique()))) for c in known},
    }


def _diff_cell(r, d: int) -> str:
    diff = fmt(r.diff, d, signed=True)
    return diff if _missing(r.diff_low) else f"{diff} {fmt_ci(r.diff_low, r.diff_high, d, True)}"


def _headline_row(r, options: dict, level: str) -> dict:
    baseline, metric, published = options["baseline"], options["metric"], options["published"]
    d, is_base = _digits(metric), r.condition == baseline
    row = {
        "condition": r.condition + (" (baseline)" if is_base else ""),
        "settings": _settings(options["conditions"].get(r.condition)),  # None: imported only
        "n": str(int(r.n)),
        f"{label(metric)} mean ± sd": f"{fmt(r.mean, d)} ± {fmt(r.sd, d)}",
        f"{level} CI": fmt_ci(r.ci_low, r.ci_high, d),
        f"Δ vs {baseline} [{level} CI]": "–" if is_base else _diff_cell(r, d),
        "Holm p": "–" if is_base else fmt_p(r.welch_p_holm),
        "verdict": "–" if is_base else r.verdict,
    }
    if published and published["values"]:
        v = published["values"].get(r.condition)
        n = published["seeds"].get(r.condition)
        row["published"] = "–" if v is None else fmt(v, d) + ("" if n is None else f" (n={n})")
        if options["scale"] == "full":
            known = v is not None and not _missing(r.ci_low)
            row["published in our CI"] = (
                ("yes" if r.ci_low <= v <= r.ci_high else "no") if known else "–"
            )
    return row


def _published_diffs(stats: pd.DataFrame, baseline: str, metric: str, values: dict) -> list[dict]:
    """Each condition's published difference to the published baseline, against our interval."""
    d, by_cond = _digits(metric), stats.set_index("condition")
    base = values.get(baseline)
    rows = []
    for cond, v in values.items():
        if cond == baseline or base is None or cond not in by_cond.index:
            continue
        r, pub = by_cond.loc[cond], v - base
        known = not _missing(r["diff_low"])
        rows.append(
            {
                "condition": cond,
                "published": fmt(pub, d, signed=True),
                "ours": fmt(r["diff"], d, signed=True),
                "interval": fmt_ci(r["diff_low"], r["diff_high"], d, True) if known else None,
                "inside": known and bool(r["diff_low"] <= pub <= r["diff_high"]),
            }
        )
    return rows


def results_table(stats: pd.DataFrame, options: dict, level: str) -> dict:
    """The results the way a published table lays them out (one row per condition, what it
    sets, the metric, the difference to the baseline), with our intervals and tests, and the
    published value where the study gives one. Published numbers are at the published scale:
    they are compared with ours only at scale `full`."""
    rows = [_headline_row(r, options, level) for r in stats.itertuples()]
    published = options["published"]
    if not published:
        return {"rows": rows, "published": None}
    comparable = options["scale"] == "full"
    values = published["values"]
    return {
        "rows": rows,
        "published": {
            "source": published["source"],
            "diffs": _published_diffs(stats, options["baseline"], options["metric"], values)
            if comparable
            else [],
            "scale": None if comparable else options["scale"],
            "has_values": bool(values),
        },
    }


def summary_rows(summary: pd.DataFrame, metric: str) -> list[dict]:
    d = _digits(metric)
    return [
        {
            "condition": r.condition,
            "n / planned": f"{int(r.n)} / {int(r.n_planned)}",
            "mean ± sd": f"{fmt(r.mean, d)} ± {fmt(r.sd, d)}",
            "95% CI": fmt_ci(r.ci_low, r.ci_high, d),
        }
        for r in summary.itertuples()
    ]


def _comparison_row(r: pd.Series, baseline: str, metric: str) -> dict:
    d = _digits(metric)
    return {
        "condition": r["condition"],
        "vs": baseline,
        "diff": fmt(r["diff"], d, signed=True),
        "diff %": fmt(r["diff_pct"], 2, signed=True),
        "Student t": fmt(r["student_t"], 2),
        "Student df": fmt(r["student_df"], 0),
        "Student p": fmt_p(r["student_p"]),
        "Welch t": fmt(r["welch_t"], 2),
        "Welch df": fmt(r["welch_df"], 1),
        "Welch p": fmt_p(r["welch_p"]),
        "Holm p": fmt_p(r["welch_p_holm"]),
        "MWU p": fmt_p(r["mwu_p"]),
        "Hedges g [CI]": fmt_g(r),
        "n for 80% power": fmt_n(r["n_for_80pct_power"]),
        "verdict": r["verdict"],
    }


def verdict(row: pd.Series, base: pd.Series, metric: str, holm: bool) -> dict:
    """The facts of one verdict sentence; with `holm` (several comparisons) the Holm-corrected
    Welch p the verdict rests on is quoted."""
    d, n, n_base = _digits(metric), int(row["n"]), int(base["n"])
    power = row["n_for_80pct_power"]
    return {
        "condition": row["condition"],
        "mean": fmt(row["mean"], d),
        "base_mean": fmt(base["mean"], d),
        "diff_pct": fmt(row["diff_pct"], 2, signed=True),
        "arms": f"n={n} per arm" if n == n_base else f"n={n} vs {n_base}",
        "tested": row["verdict"] != INSUFFICIENT,
        "direction": {BETTER: "better", WORSE: "worse"}.get(row["verdict"]),
        "welch": {
            "t": fmt(row["welch_t"], 2),
            "df": fmt(row["welch_df"], 1),
            "p": fmt_p(row["welch_p"]),
        },
        "student": {
            "t": fmt(row["student_t"], 2),
            "df": fmt(row["student_df"], 0),
            "p": fmt_p(row["student_p"]),
        },
        "holm_p": fmt_p(row["welch_p_holm"])
        if holm and not _missing(row["welch_p_holm"])
        else None,
        "g": None if _missing(row["hedges_g"]) else fmt_g(row),
        "power_n": None if _missing(power) else f"{min(int(power), POWER_MAX_N):,}",
        "power_capped": not _missing(power) and int(power) >= POWER_MAX_N,
    }


def comparisons(stats: pd.DataFrame, baseline: str, metric: str) -> dict:
    others = stats[stats["condition"] != baseline]
    base = stats.set_index("condition").loc[baseline]
    holm = len(others) > 1
    return {
        "label": label(metric),
        "rows": [_comparison_row(r, baseline, metric) for _, r in others.iterrows()],
        "verdicts": [verdict(r, base, metric, holm) for _, r in others.iterrows()],
    }


def _sweep_group(part: pd.DataFrame, key: str, metric: str, grouped: bool) -> dict:
    d = _digits(metric)
    rows = [
        {
            key: f"{r.value:g}" + (" (default)" if r.is_default else ""),
            "n": f"{int(r.n)}" + (f" (+{int(r.n_excluded)} excl.)" if r.n_excluded else ""),
            "mean ± sd": f"{fmt(r.mean, d)} ± {fmt(r.sd, d)}",
            "CI": fmt_ci(r.ci_low, r.ci_high, d),
            "P(best)": fmt(r.p_best, 2),
            "diff vs default": fmt(r.diff, d, signed=True),
            "Welch p": fmt_p(r.welch_p),
            "verdict": r.verdict,
        }
        for r in part.itertuples()
    ]
    best = part[part["is_best"].astype(bool)]
    return {
        "title": f"`{part['group_key'].iloc[0]}` = {part['group'].iloc[0]:g}" if grouped else None,
        "rows": rows,
        "best": _sweep_best(best.iloc[0], d) if len(best) else None,
    }


def _sweep_best(b: pd.Series, d: int) -> dict:
    return {
        "value": f"{b['value']:g}",
        "mean": fmt(b["mean"], d),
        "ci": fmt_ci(b["ci_low"], b["ci_high"], d),
        "n": int(b["n"]),
        "p_best": fmt(b["p_best"], 2),
        "verdict": b["verdict"],
        "diff": fmt(b["diff"], d, signed=True),
        "welch_p": None if _missing(b["welch_p"]) else fmt_p(b["welch_p"]),  # None: the default
    }


def sweep_section(sweep: pd.DataFrame, metric: str) -> dict:
    """Metric against the swept value (per group), and the best value tested against the
    default."""
    key = sweep["key"].iloc[0]
    grouped = sweep["group_key"].notna().any()
    parts = sweep.groupby("group", dropna=False, sort=False) if grouped else [(None, sweep)]
    return {
        "key": key,
        "level": f"{100 * (1 - float(sweep['alpha'].iloc[0])):g}%",
        "groups": [_sweep_group(part, key, metric, grouped) for _, part in parts],
    }


def scaling_section(doc: dict, published_best: dict) -> dict:
    """The fit; `published_best` (group value -> published best value, keys as in JSON) adds
    the published optimum next to ours where the groups match, or names the groups it has."""
    fit = doc["fit"]
    table = {
        doc["group"]: [f"{x:g}" for x in fit["x"]],
        f"best {doc['key']}": [f"{y:g}" for y in fit["y"]],
        "P(best)": [fmt(v, 2) for v in fit["p_best"]],
    }
    published = {float(k): v for k, v in published_best.items()}
    matched = [published.get(float(x)) for x in fit["x"]]
    if any(v is not None for v in matched):
        table["published best"] = ["–" if v is None else f"{v:g}" for v in matched]
    unmatched = published and "published best" not in table
    expected = doc["expected_exponent"]
    return {
        "key": doc["key"],
        "group": doc["group"],
        "label": label(doc["metric"]),
        "rows": [
            dict(zip(table, cells, strict=True)) for cells in zip(*table.values(), strict=True)
        ],
        "unmatched": ", ".join(f"{k:g}" for k in sorted(published)) if unmatched else None,
        "exponent": fmt(fit["exponent"], 3),
        "interval": None
        if _missing(fit["exponent_low"])
        else fmt_ci(fit["exponent_low"], fit["exponent_high"], 3),
        "level": f"{100 * (1 - fit['alpha']):g}%",
        "n": fit["n"],
        "k": f"{fit['k']:.4g}",
        "r2": fmt(fit["r2"], 3),
        # boot_low is absent without a bootstrap (--n-boot 0) and null when it failed
        "boot": None
        if fit.get("boot_low") is None
        else fmt_ci(fit["boot_low"], fit["boot_high"], 3),
        "expected": None if expected is None else fmt(expected, 2),
        "where": {True: "inside", False: "outside", None: "not testable against"}[
            doc["expected_within_ci"]
        ],
    }


def figure_links(figures: list[dict], out_dir: Path) -> list[dict]:
    links = []
    for fig in figures:
        path = Path(fig["path"])
        rel = Path(os.path.relpath(path.absolute(), out_dir.absolute())).as_posix()
        links.append(
            {
                "title": fig["title"],
                "target": f"<{rel}>" if " " in rel else rel,  # CommonMark: <> around spaces
                "exists": path.exists(),
            }
        )
    return links


def excluded(runs: pd.DataFrame, conditions: list[str], metric: str, planned: int) -> dict:
    """Runs that do not count (diverged, or without the metric) and planned runs not present."""
    ours = runs[runs["condition"].isin(conditions)]
    dropped = [
        {
            "condition": r.condition,
            "seed": int(r.seed),
            "diverged": bool(r.diverged),
            "steps": f"{r.steps}",
        }
        for r in ours.itertuples()
        if bool(r.diverged) or _missing(getattr(r, metric))
    ]
    missing = []
    for c in conditions:
        seeds = sorted(runs.loc[runs["condition"] == c, "seed"].astype(int))
        if len(seeds) < planned:
            present = ", ".join(map(str, seeds)) or "none"
            missing.append({"condition": c, "missing": planned - len(seeds), "present": present})
    return {"runs": dropped, "missing": missing}


def summaries(runs: pd.DataFrame, stats: pd.DataFrame, metric: str, alpha: float) -> list[dict]:
    """The primary metric's summary (from stats.csv) and the secondary metrics' (computed)."""
    conditions, planned = list(stats["condition"]), int(stats["n_planned"].iloc[0])
    tables = [{"title": f"{label(metric)} (primary)", "rows": summary_rows(stats, metric)}]
    for m in SECONDARY:
        if m != metric:
            summary = summarize(runs, m, conditions, planned, alpha)
            tables.append({"title": label(m), "rows": summary_rows(summary, m)})
    return tables


def sweep_sections(options: dict) -> dict:
    """The sweep and scaling sections, each None when the study has no such input."""
    sweep = scaling = None
    if options["sweep"] is not None:
        table = _read(options["sweep"], "sweep table", pd.read_csv)
        sweep = sweep_section(table, options["metric"])
    if options["scaling"] is not None:
        doc = _read(options["scaling"], "scaling fit", lambda p: json.loads(Path(p).read_text()))
        published = options["published"]
        scaling = scaling_section(doc, published["best"] if published else {})
    return {"sweep": sweep, "scaling": scaling}


def report_data(options: dict, out_dir: Path) -> dict:
    """Everything report.md states, from the options (see OPTIONS) and the files they name;
    figure links are relative to `out_dir`."""
    metric, baseline, planned = options["metric"], options["baseline"], options["planned_seeds"]
    runs = read_runs(options["runs"], options["study"])
    stats, time_stats = read_stats(options["stats"], metric, baseline)
    stats["n_planned"] = planned  # the study's planned seeds are authoritative for display
    alpha = float(stats["alpha"].iloc[0])
    level = f"{100 * (1 - alpha):g}%"
    return {
        "study": options["study"],
        "question": options["description"].strip(),
        "baseline": baseline,
        "metric": label(metric),
        "alpha": f"{alpha:g}",
        "level": level,
        "design": design(runs, stats, baseline, planned),
        "results": results_table(stats, options, level),
        "summaries": summaries(runs, stats, metric, alpha),
        "comparison": comparisons(stats, baseline, metric),
        "time": None if time_stats.empty else comparisons(time_stats, baseline, TIME),
        **sweep_sections(options),
        "figures": figure_links(options["figures"], out_dir),
        "excluded": excluded(runs, list(stats["condition"]), metric, planned),
    }


# --- rendering -----------------------------------------------------------------------------


def render_markdown(data: dict) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # Markdown, not HTML
    )
    env.filters["table"] = markdown_table
    return env.get_template("report.md.j2").render(**data)


def write_report(options: dict, out_md: str | Path) -> str:
    out_md = Path(out_md)
    text = render_markdown(report_data(check_options(options), out_md.parent))
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text(text, encoding="utf-8")
    return text


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
    md_path = Path(md_path)
    text = md_path.read_text(encoding="utf-8")
    body = markdown.markdown(text, extensions=["tables"])

    def embed(match: re.Match) -> str:
        src = md_path.parent / html.unescape(match.group(1))
        if not src.exists():
            return match.group(0)  # the Markdown already flags a missing figure
        data = base64.b64encode(src.read_bytes()).decode("ascii")
        return f'src="data:image/png;base64,{data}"'

    body = re.sub(r'src="([^"]+\.png)"', embed, body)
    title = html.escape(text.splitlines()[0].lstrip("# ").replace("`", ""))  # "Study quickstart"
    page = (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{HTML_STYLE}</style></head>\n<body>\n{body}\n</body></html>\n"
    )
    Path(out_html).write_text(page, encoding="utf-8")
    return page


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m speedlab.analysis.report", description=__doc__)
    add_options(p, dict.fromkeys(OPTIONS, REQUIRED), required=True)
    p.add_argument("--out", required=True, type=Path, help="report.md")
    p.add_argument("--html", required=True, type=Path, help="the self-contained report.html")
    args = p.parse_args(argv)
    try:
        write_report(args.options, args.out)
    except ReportInputError as e:
        raise SystemExit(f"speedlab.analysis.report: {e}") from None
    write_html(args.out, args.html)


if __name__ == "__main__":
    main()
