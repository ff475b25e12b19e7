"""report.md (and a self-contained report.html): a study written up as a lab note.

`report_data` reads runs.parquet, stats.csv and, when the study has them, the sweep tables
(sweep.csv, sweep_tests.csv, confirm.csv), the scaling fit, the sequential design's final
analysis (sequential.json), the decision rule over steps (rule_steps.csv) and the compute
multipliers (compute.csv), and returns one
plain dict: every number already formatted, every choice of sentence made as data.
templates/report.md.j2 lays it out. The primary metric's numbers come from stats.csv, so the
note and the CSV cannot disagree: each verdict is the one of the design's primary test, named,
and the interval beside a p is at the same adjustment as that p.

    python -m speedlab.analysis.report --options OPTIONS --out report.md --html report.html

OPTIONS is one JSON object: the study's resolved settings and the input paths (keys: OPTIONS
below, the nested ones in NESTED), as the rule writes it.
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

from speedlab.analysis.decision import (
    BEATS_FRONTIER,
    BETTER,
    EQUIVALENT,
    HIGHER_IS_BETTER,
    INSUFFICIENT,
    MEETS,
    ONE_ARM,
    RECORD,
    WORSE,
)
from speedlab.analysis.options import REQUIRED, add_options
from speedlab.analysis.stats import summarize
from speedlab.config import flatten

NUMBER = (int, float)
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
    "design": (str,),  # the configured design: auto | paired | independent
    "decision": (dict,),  # the resolved rule (speedlab.analysis.decision.resolve_rule)
    "plan": (dict,),  # studies.<s>.plan with its defaults
    "adaptive": (dict, type(None)),  # studies.<s>.adaptive
    "data": (dict,),  # {corpus, source, shards, source_json}
    "runs": (str,),
    "stats": (str,),
    "sweep": (str, type(None)),
    "sweep_tests": (str, type(None)),
    "confirm": (str, type(None)),
    "confirm_seeds": (list, type(None)),  # sweep.confirm.seeds
    "scaling": (str, type(None)),
    "sequential": (str, type(None)),
    "rule_steps": (str, type(None)),
    "compute": (str, type(None)),  # compute.csv (speedlab.analysis.compute)
    "figures": (list,),
}
# The keys of the nested options: key -> (JSON types, required).
NESTED = {
    "decision": {
        "rule": ((str,), True),
        "alpha": (NUMBER, True),
        "preset": ((str, type(None)), False),
        "min_delta": (NUMBER, False),
        "target": ((*NUMBER, type(None)), False),
        "direction": ((str, type(None)), False),
        "sigma": ((*NUMBER, type(None)), False),
        "margin": ((*NUMBER, type(None)), False),
        "against": ((str, type(None)), False),
    },
    "plan": {
        "min_effect": ((*NUMBER, type(None)), True),
        "power": (NUMBER, True),
        "noise_sd": ((*NUMBER, type(None)), False),
        "pair_correlation": (NUMBER, False),
    },
    "adaptive": {
        "looks": ((list,), True),
        "spending": ((str,), False),
        "futility": ((bool,), False),
    },
    "data": {
        "corpus": ((str,), True),
        "source": ((str,), True),
        "shards": ((str,), True),
        "source_json": ((str, type(None)), True),
    },
}
DESIGNS = ("auto", "paired", "independent")
# What each rule needs besides rule and alpha.
RULE_KEYS = {
    "difference": (),
    "record": ("min_delta",),
    "target": ("target", "direction"),
    "known_sigma": ("target", "direction", "sigma"),
    "equivalence": ("margin",),
    "frontier": ("against",),
}
# stats.csv's columns the report reads (the stats.csv contract, speedlab.analysis.stats).
STATS_READ = [
    "metric",
    "condition",
    "n",
    "mean",
    "sd",
    "ci_low",
    "ci_high",
    "diff",
    "diff_pct",
    "student_t",
    "student_df",
    "student_p",
    "welch_t",
    "welch_df",
    "welch_p",
    "verdict",
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
LABELS = {
    "q_val_bpb": "post-quant val_bpb",
    "q_val_loss": "post-quant val_loss",
    "val_bpb": "val_bpb",
    "val_loss": "val_loss",
    "steps_to_target": "steps to target",
    "time_to_target": "time to target (s)",
    "compressed_bytes": "compressed bytes (int8+zlib)",
    "train_time_s": "train time (s)",
    "hellaswag_acc": "HellaSwag accuracy",
}
SECONDARY = ("val_bpb", "compressed_bytes")
TIME = "train_time_s"
PROVENANCE = ("device", "host", "torch")
MINUS = "\u2212"
TEMPLATES = Path(__file__).parent / "templates"
# The verdicts that say the rule's claim holds.
PASSING = {BETTER, WORSE, RECORD, MEETS, EQUIVALENT, BEATS_FRONTIER}
ADJUSTED = {
    "holm": "Holm-adjusted",
    "none": "unadjusted",
    "sequential": "adjusted for the sequential design",
}
ONE_SAMPLE = ONE_ARM  # rules that test one arm against a value
# Above this many seeds a plan is not a plan (speedlab.analysis.power's max_n).
MAX_SEEDS = 10_000


class ReportInputError(ValueError):
    """Options or an input file the report cannot use; the message names which and why."""


# --- numbers as the note prints them ------------------------------------------------------


def label(metric: str) -> str:
    return LABELS[metric]


def _missing(x: object) -> bool:
    if x is None or x is pd.NA:
        return True
    if isinstance(x, str):
        return x == ""
    try:
        return bool(math.isnan(x))
    except TypeError:
        return False


def _digits(metric: str) -> int:
    # bpb/loss differences that matter are ~1e-3; byte and step counts are integers.
    if "bytes" in metric or metric.startswith("steps"):
        return 0
    return 1 if metric.endswith("_s") or metric.startswith("time") else 4


def fmt(x: object, digits: int = 4, signed: bool = False) -> str:
    """A number for prose and tables: fixed decimals, thousands separators, a real minus sign."""
    if _missing(x):
        return "–"
    if math.isinf(float(x)):
        return MINUS + "∞" if float(x) < 0 else "∞"
    text = f"{float(x):{'+' if signed else ''},.{digits}f}"
    return text.replace("-", MINUS)


def fmt_p(p: object) -> str:
    return "–" if _missing(p) else f"{float(p):.3g}".replace("-", MINUS)


def fmt_level(level: object) -> str:
    """A confidence level as a percentage: 0.95 -> '95%', 1 - 0.05/6 -> '99.17%'."""
    return "–" if _missing(level) else f"{100 * float(level):.4g}%"


def fmt_g(row: pd.Series) -> str:
    """Hedges g with its CI, e.g. '−1.20 [−2.90, 0.50]'."""
    if _missing(row["hedges_g"]):
        return "–"
    return f"{fmt(row['hedges_g'], 2)} [{fmt(row['g_low'], 2)}, {fmt(row['g_high'], 2)}]"


def fmt_ci(low: object, high: object, digits: int, signed: bool = False) -> str:
    """'[a, b]'; a one-sided interval gets an open infinite end: '(−∞, b]'."""
    if _missing(low) or _missing(high):
        return "–"
    left = "(" if math.isinf(float(low)) else "["
    right = ")" if math.isinf(float(high)) else "]"
    return f"{left}{fmt(low, digits, signed)}, {fmt(high, digits, signed)}{right}"


def fmt_seeds(n: object) -> str | None:
    """Seeds from a plan: a whole number, 'more than 10,000' past the cap, None if unknown."""
    if _missing(n):
        return None
    if float(n) > MAX_SEEDS:
        return f"more than {MAX_SEEDS:,}"
    return f"{math.ceil(float(n)):,}"


def _num(x: float) -> str:
    """A configured number as written: 0.005, 3.28."""
    return f"{x:g}".replace("-", MINUS)


def _duration(seconds: float) -> str:
    h, rem = divmod(int(round(seconds)), 3600)
    m, s = divmod(rem, 60)
    return f"{h} h {m:02d} min {s:02d} s" if h else f"{m} min {s:02d} s"


ABSENT = "not in the log"  # a value an imported log or table does not state


def _span(values: pd.Series, thousands: bool = False, unit: str = "") -> str:
    """'5100 steps', '4000–5100 steps', or what is absent: 'steps not in the log' (for some
    runs: said so)."""
    known = values.dropna()
    if known.empty:
        return f"{unit} {ABSENT}".strip()
    lo, hi = int(known.min()), int(known.max())
    f = "{:,}" if thousands else "{}"
    text = f.format(lo) if lo == hi else f"{f.format(lo)}–{f.format(hi)}"
    missing = len(values) - len(known)
    text = f"{text} {unit}".strip()
    return text + (f" ({ABSENT} for {missing} of {len(values)} runs)" if missing else "")


def _settings(overrides: dict | None) -> str:
    """What a condition sets, in short: 'momentum_first=0.98, momentum_last=0.9'."""
    if overrides is None:
        return "imported"
    if not overrides:
        return "defaults"
    return ", ".join(f"{k.split('.')[-1]}={v}" for k, v in flatten(overrides).items())


def markdown_table(rows: list[dict[str, str]]) -> str:
    # The cells are already formatted strings; numparse would turn "1.4100" back into 1.41.
    return tabulate(rows, headers="keys", tablefmt="pipe", disable_numparse=True)


def _list(items: list, most: int = 4) -> str:
    shown = ", ".join(map(str, items[:most]))
    return shown + (f" and {len(items) - most} more" if len(items) > most else "")


# --- inputs --------------------------------------------------------------------------------


def _expected(types: tuple) -> str:
    names = {"NoneType": "null", "int": "int", "float": "float", "str": "str", "list": "list"}
    words = [names.get(t.__name__, t.__name__) for t in types]
    if {"int", "float"} <= set(words):
        words = ["number" if w == "int" else w for w in words if w != "float"]
    return " or ".join(words)


def _typed(value: object, types: tuple) -> bool:
    # JSON true/false are Python bools, which are ints: only a bool option takes them.
    return isinstance(value, types) and (bool in types or not isinstance(value, bool))


def _check_nested(key: str, value: dict) -> None:
    for sub, (types, required) in NESTED[key].items():
        if sub not in value:
            if required:
                raise ReportInputError(f"--options: {key!r} has no key {sub!r}")
            continue
        if not _typed(value[sub], types):
            raise ReportInputError(f"--options: '{key}.{sub}' should be {_expected(types)}")


def _check_rule(rule: dict) -> None:
    """The resolved decision rule names a known rule and carries the keys that rule needs."""
    if rule["rule"] not in RULE_KEYS:
        raise ReportInputError(
            f"--options: 'decision.rule' is {rule['rule']!r}, not one of {', '.join(RULE_KEYS)}"
        )
    for sub in RULE_KEYS[rule["rule"]]:
        if rule.get(sub) is None:
            raise ReportInputError(
                f"--options: 'decision.{sub}' is needed by rule {rule['rule']!r} (resolve the "
                "rule with speedlab.analysis.decision.resolve_rule)"
            )
    if rule.get("direction") not in (None, "below", "above"):
        raise ReportInputError("--options: 'decision.direction' should be below or above")


def check_options(options: dict) -> dict:
    """The options, checked: every key of OPTIONS present with its JSON type, the nested ones
    with the keys of NESTED, figures as [{"title", "path"}]."""
    missing = [k for k in OPTIONS if k not in options]
    if missing:
        raise ReportInputError(f"--options: missing key(s) {', '.join(missing)}")
    for key, types in OPTIONS.items():
        if not _typed(options[key], types):
            raise ReportInputError(f"--options: {key!r} should be {_expected(types)}")
        if key in NESTED and options[key] is not None:
            _check_nested(key, options[key])
    if options["design"] not in DESIGNS:
        raise ReportInputError(f"--options: 'design' should be one of {', '.join(DESIGNS)}")
    _check_rule(options["decision"])
    if options["adaptive"] and not all(_typed(n, (int,)) for n in options["adaptive"]["looks"]):
        raise ReportInputError("--options: 'adaptive.looks' should be a list of int")
    if options["confirm_seeds"] and not all(_typed(s, (int,)) for s in options["confirm_seeds"]):
        raise ReportInputError("--options: 'confirm_seeds' should be a list of int or null")
    for fig in options["figures"]:
        if not (isinstance(fig, dict) and {"title", "path"} <= fig.keys()):
            raise ReportInputError(f"--options: a figure should be {{title, path}}, got {fig!r}")
    return options


def _read(path: str, what: str, reader):
    try:
        return reader(path)
    except Exception as e:  # any parse error of pandas/pyarrow/json: name the file
        raise ReportInputError(f"{what} {path}: cannot be read ({e})") from None


def _read_json(path: str, what: str) -> dict:
    doc = _read(path, what, lambda p: json.loads(Path(p).read_text(encoding="utf-8")))
    if not isinstance(doc, dict):
        raise ReportInputError(f"{what} {path}: expected a JSON object")
    return doc


def _read_table(path: str, what: str, columns: list[str]) -> pd.DataFrame:
    # keep_default_na=False + na_values=[""]: a verdict or test name is never parsed as NaN.
    table = _read(path, what, lambda p: pd.read_csv(p, keep_default_na=False, na_values=[""]))
    absent = [c for c in columns if c not in table]
    if absent:
        raise ReportInputError(f"{what} {path}: missing column(s) {', '.join(absent)}")
    return table


def read_stats(path: str, metric: str, baseline: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """stats.csv's rows of the primary metric and of training time (empty if not tested)."""
    table = _read_table(path, "stats table", STATS_READ)
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


def compared(stats: pd.DataFrame) -> pd.DataFrame:
    """The rows of stats.csv that carry a verdict (not the reference rows: the baseline, or
    the frontier's condition)."""
    return stats[stats["verdict"].notna()]


# --- the design ------------------------------------------------------------------------------


def rule_words(rule: dict, baseline: str) -> str:
    """The decision rule in words, naming the field's rule a preset stands for."""
    alpha, kind = _num(rule["alpha"]), rule["rule"]
    side = "below" if rule.get("direction", "below") == "below" else "above"
    if kind == "record":
        words = (
            f"record: the condition must be at least {_num(rule['min_delta'])} lower than "
            f"`{baseline}`, one-sided p < {alpha}"
        )
    elif kind == "target":
        words = f"target: mean {side} {_num(rule['target'])} at one-sided p < {alpha}"
    elif kind == "known_sigma":
        words = (
            f"known σ: a z test of the mean {side} {_num(rule['target'])} with the run-to-run "
            f"σ={_num(rule['sigma'])} taken as known, one-sided p < {alpha}"
        )
    elif kind == "equivalence":
        words = (
            f"equivalence: the difference to `{baseline}` must lie within "
            f"±{_num(rule['margin'])} (TOST, two one-sided tests at α={alpha})"
        )
    elif kind == "frontier":
        words = (
            f"frontier: the condition must be lower than `{rule['against']}`, the frontier "
            f"against which every other condition is tested, one-sided p < {alpha}"
        )
    else:
        words = f"difference: a two-sided test of the difference to `{baseline}` at α={alpha}"
    preset = {"parameter_golf": "parameter-golf's rule", "modded_track1": "modded-nanogpt Track 1"}
    return words + (f" ({preset[rule['preset']]})" if rule.get("preset") in preset else "")


def _pairs(rows: pd.DataFrame) -> str:
    ns = {r.condition: r.n_pairs for r in rows.itertuples() if not _missing(r.n_pairs)}
    if len(set(ns.values())) == 1:
        n = int(next(iter(ns.values())))
        return f"{n} pair{'s' * (n != 1)} per comparison"
    return "pairs: " + ", ".join(f"`{c}` {int(n)}" for c, n in ns.items())


def pairing(stats: pd.DataFrame, configured: str, rule: dict, external: bool = False) -> str:
    """How the arms were compared, from stats.csv's `design` column (what was done, not only
    what the config asked for); external: runs of an external trainer command are compared."""
    rows = compared(stats)
    done = set(rows["design"].dropna())
    how = f" (design: {configured})"
    if rule["rule"] in ONE_SAMPLE:
        return "one-sample: each condition's mean is tested against the target value"
    caveat = " (an external trainer: as far as its script derives both from the seed)"
    if done == {"paired"}:
        return (
            "paired by seed: the same seed gives both arms the same initial weights and the "
            f"same data order{caveat if external else ''}; {_pairs(rows)}{how}"
        )
    if done == {"independent"}:
        why = (
            "; the arms do not share 2 or more seeds, or their runs were not all trained by one "
            "program from the seed (imported logs and tables state a seed, not what it fixed)"
            if configured == "auto"
            else ""
        )
        return f"independent: each arm's runs are a separate sample{why}{how}"
    if not done:
        return f"no comparison could be tested{how}"
    listed = ", ".join(f"`{r.condition}` {r.design}" for r in rows.itertuples())
    return (
        f"paired by seed where both arms share their seeds (the same seed gives both arms the "
        f"same initial weights and the same data order), independent otherwise: {listed}{how}"
    )


def data_source(data: dict) -> str:
    """Where the documents came from, from the record speedlab.data.documents wrote
    (results/data/<corpus>/source.json); pretokenized shards have no such record."""
    if data["source_json"] is None:
        if data["source"] == "pretokenized":
            return "official pretokenized shards (no documents or tokenizer of ours)"
        named = {"hf": "the Hugging Face hub", "local": "local files"}
        return f"{named.get(data['source'], data['source'])} (no source record)"
    record = _read_json(data["source_json"], "data source record")
    kind, files = record.get("source"), record.get("files") or []
    if kind == "hf":
        rev = f", revision {record['revision']}" if record.get("revision") else ""
        return f"the Hugging Face hub: {record.get('repo')} ({record.get('name')}{rev})"
    if kind == "local":
        return f"local files: {_list(files)}"
    if kind == "offline_fallback":
        wanted = record.get("wanted") or {}
        return (
            f"offline fallback: the hub could not be reached, so local copies were read "
            f"instead of {wanted.get('repo')} ({wanted.get('name')}): {_list(files)}"
        )
    raise ReportInputError(
        f"data source record {data['source_json']}: unknown source {kind!r} "
        "(expected hf, local or offline_fallback)"
    )


def family(stats: pd.DataFrame) -> str | None:
    """How the primary p-values are adjusted for the family, in words (None: unadjusted)."""
    rows = compared(stats)
    kinds = set(rows["adjusted"].dropna())
    if kinds == {"sequential"}:
        return "p-values and intervals adjusted for the sequential design (alpha spending)"
    if "holm" in kinds:
        return f"Holm's method over the {len(rows)} comparisons of the primary metric"
    return None


def design(runs: pd.DataFrame, stats: pd.DataFrame, options: dict) -> dict:
    baseline, planned, rule = options["baseline"], options["planned_seeds"], options["decision"]
    finished = runs[~runs["diverged"].astype(bool)]
    ref = finished if len(finished) else runs
    known = [c for c in PROVENANCE if runs[c].notna().any()]
    return {
        "conditions": [{"name": c, "baseline": c == baseline} for c in stats["condition"]],
        "planned": planned,
        "planned_runs": planned * len(stats),
        "runs": len(runs),
        "usable": [{"condition": r.condition, "n": int(r.n)} for r in stats.itertuples()],
        "steps": _span(ref["steps"], unit="steps"),
        "tokens": _span(ref["tokens"], True, unit="tokens"),
        "params": _span(ref["n_params"], True, "parameters")
        if ref["n_params"].notna().any()
        else None,
        "time": _duration(runs["train_time_s"].sum())
        if runs["train_time_s"].notna().any()
        else ABSENT,
        "pooled": sorted(runs.loc[runs["pooled"].astype(bool), "condition"].unique()),
        "provenance": arm_provenance(runs),
        "environment": {c: ", ".join(sorted(map(str, runs[c].dropna().unique()))) for c in known},
        "pairing": pairing(stats, options["design"], rule, (runs["source"] == "command").any()),
        "rule": rule_words(rule, baseline),
        "family": family(stats),
        "data": {
            "corpus": options["data"]["corpus"],
            "source": data_source(options["data"]),
            "shards": options["data"]["shards"],
        },
    }


# What the runs of one arm must share to be one sample: column -> its name in the warning.
MIXED = {"git_commit": "speedlab commits", "git_dirty": "clean and dirty checkouts",
         "torch": "torch versions", "cuda": "CUDA versions", "device": "devices"}  # fmt: skip


def _short(value) -> str:
    text = str(value)
    return text[:10] if len(text) == 40 and all(c in "0123456789abcdef" for c in text) else text


def arm_provenance(runs: pd.DataFrame) -> list[dict]:
    """Per arm: its speedlab commit(s), and a warning for each provenance field its runs mix
    (commits, dirty trees, torch or CUDA versions, devices), listing which run had which."""
    out = []
    for condition, arm in runs.groupby("condition", sort=True):
        commits = sorted(map(_short, arm["git_commit"].dropna().unique()))
        dirty = bool(arm["git_dirty"].fillna(False).astype(bool).any())
        mixed = []
        for column, words in MIXED.items():
            values = arm[column].dropna()
            if values.nunique() > 1:
                by_run = "; ".join(f"seed {r.seed}: {_short(getattr(r, column))}"
                                   for r in arm.loc[values.index].itertuples())  # fmt: skip
                mixed.append(f"{words} ({by_run})")
        out.append({"condition": condition, "commits": ", ".join(commits) or "not recorded",
                    "dirty": dirty, "mixed": mixed})  # fmt: skip
    return out


# Sources of runs speedlab did not train itself, in words.
SOURCE_WORDS = {"command": "the trainer command (its log)", "table": "a published table"}
OTHER_RUN_COLUMNS = (
    ("steps", "steps", 0),
    ("train_time_s", "train time (s)", 1),
    ("step_avg_ms", "step avg (ms)", 2),
    ("artifact_bytes", "artifact bytes", 0),
)


def _cell(value, digits: int, absent: str) -> str:
    if _missing(value):
        return absent
    return f"{int(value):,}" if digits == 0 else fmt(value, digits)


def other_runs(runs: pd.DataFrame, metric: str) -> list[dict]:
    """One row per run speedlab did not train (an external command's, an imported log's, a
    table's): where it came from and what its log states; a value it does not state is said
    to be absent, not shown as <NA>."""
    rows = []
    for r in runs[runs["source"] != "speedlab"].itertuples():
        absent = "not in the table" if r.source == "table" else ABSENT
        where = Path(r.log_path).name if isinstance(r.log_path, str) else "–"
        row = {"condition": r.condition, "seed": str(r.seed),
               "source": SOURCE_WORDS.get(r.source, f"{r.source} log"), "file": where}  # fmt: skip
        for column, title, digits in OTHER_RUN_COLUMNS:
            row[title] = _cell(getattr(r, column), digits, absent)
        row[label(metric)] = _cell(getattr(r, metric, None), _digits(metric), absent)
        rows.append(row)
    return rows


# --- the primary tests -----------------------------------------------------------------------


def _one_sample(row) -> bool:
    return row.rule in ONE_SAMPLE if not _missing(row.rule) else False


def estimate_name(rows: pd.DataFrame, rule: dict) -> str:
    """What the estimate column holds: the difference to the reference, or the mean tested
    against the rule's value."""
    kind = _unique(rows["rule"]) or rule["rule"]
    if kind in ONE_SAMPLE:
        return f"mean vs {_num(rule['target'])}"
    against = set(rows["against"].dropna())
    return f"Δ vs {next(iter(against))}" if len(against) == 1 else "Δ"


def _unique(values: pd.Series) -> object:
    kinds = set(values.dropna())
    return next(iter(kinds)) if len(kinds) == 1 else None


def _interval_cell(r, d: int, level: bool, adjusted: bool) -> str:
    """The estimate and its interval; the level and adjustment in the cell when the table's
    rows differ in them (Holm's step levels do)."""
    if _missing(r.estimate):
        return "–"
    signed = not _one_sample(r)
    text = f"{fmt(r.estimate, d, signed)} {fmt_ci(r.est_low, r.est_high, d, signed)}"
    notes = [fmt_level(r.est_level)] if level and not _missing(r.est_level) else []
    notes += [ADJUSTED[r.adjusted]] if adjusted and r.adjusted in ADJUSTED else []
    return text + (f" ({', '.join(notes)})" if notes else "")


def _shown_p(r) -> object:
    """The p the verdict rests on: the adjusted one unless the row is unadjusted."""
    if r.adjusted in ("holm", "sequential") and not _missing(r.p_adj):
        return r.p_adj
    return r.p


class Columns:
    """The estimate's and the p's column headers, shared by a table's compared rows: the level
    and the adjustment go in the header when every row has the same, else in each cell."""

    def __init__(self, rows: pd.DataFrame, rule: dict, level_word: str = "CI"):
        self.level = _unique(rows["est_level"])
        self.adjusted = _unique(rows["adjusted"])
        inside = [fmt_level(self.level) + f" {level_word}" if self.level else level_word]
        inside += [ADJUSTED.get(self.adjusted, str(self.adjusted))] if self.adjusted else []
        self.estimate = f"{estimate_name(rows, rule)} [{', '.join(inside)}]"
        self.p = f"p ({ADJUSTED[self.adjusted]})" if self.adjusted in ADJUSTED else "p"

    def cells(self, r, d: int) -> dict:
        p = fmt_p(_shown_p(r))
        if self.adjusted is None and r.adjusted in ADJUSTED:
            p += f" ({ADJUSTED[r.adjusted]})"
        return {
            self.estimate: _interval_cell(r, d, self.level is None, self.adjusted is None),
            self.p: p,
        }

    def empty(self) -> dict:
        return {self.estimate: "–", self.p: "–"}


def _stat_name(test: str) -> str:
    if test.startswith("z"):
        return "z"
    return {"Mann-Whitney": "U", "Wilcoxon": "W"}.get(test.split(" ")[0], "t")


def _fmt_df(df: object) -> str:
    return fmt(df, 0 if float(df) == round(float(df)) else 1)


def _statistic(r) -> str:
    """'t=41.57, df=2'; a z statistic has no df (stats.csv holds an infinite one or none)."""
    text = f"{_stat_name(str(r.test))}={fmt(r.statistic, 2)}"
    if _missing(r.df) or math.isinf(float(r.df)):
        return text
    return text + f", df={_fmt_df(r.df)}"


def arms(r, n_ref: int | None) -> str:
    """The sample sizes behind a test: '3 pairs', 'n=3 per arm', 'n=2 vs 4', 'n=3'."""
    n = int(r.n)
    if r.design == "paired" and not _missing(r.n_pairs):
        return f"{int(r.n_pairs)} pair{'s' * (int(r.n_pairs) != 1)}"
    if n_ref is None:
        return f"n={n}"
    return f"n={n} per arm" if n == n_ref else f"n={n} vs {n_ref}"


def _reference(by_cond: pd.DataFrame, r):
    """The reference row of a comparison (None for a one-sample test or an unknown one)."""
    if _one_sample(r) or _missing(r.against) or r.against not in by_cond.index:
        return None
    return by_cond.loc[r.against]


def verdict(r, by_cond: pd.DataFrame, metric: str, alpha: str) -> dict:
    """The facts of one verdict sentence: the primary test named, its statistic, p (and the
    adjusted p it rests on), the estimate with its interval at the same adjustment."""
    d, ref = _digits(metric), _reference(by_cond, r)
    lead = f"mean {fmt(r.mean, d)}" if ref is None else f"{fmt(r.mean, d)} vs {fmt(ref['mean'], d)}"
    pct = "" if ref is None or _missing(r.diff_pct) else f" ({fmt(r.diff_pct, 2, signed=True)}%)"
    tested = r.verdict != INSUFFICIENT and not _missing(r.statistic)
    adjusted = r.adjusted in ("holm", "sequential") and not _missing(r.p_adj)
    words = ("higher", "lower") if metric in HIGHER_IS_BETTER else ("lower", "higher")
    tail = {BETTER: f" ({words[0]}) than", WORSE: f" ({words[1]}) than"}.get(r.verdict)
    return {
        "condition": r.condition,
        "lead": f"{lead} {label(metric)}{pct}",
        "tested": tested,
        "test": str(r.test) if not _missing(r.test) else None,
        "statistic": _statistic(r) if tested else None,
        "p": fmt_p(r.p),
        "p_adj": f"{ADJUSTED[r.adjusted]} p={fmt_p(r.p_adj)}" if adjusted else None,
        "estimate": "mean" if ref is None else f"Δ vs {r.against}",
        "interval": _interval_cell(r, d, True, True) if tested else None,
        "verdict": r.verdict,
        "against": None if tail is None else f"{tail} {r.against}",
        "alpha": fmt_p(r.alpha) if not _missing(r.alpha) else alpha,
        "arms": arms(r, None if ref is None else int(ref["n"])),
    }


def _claim(r, rule: dict) -> bool | None:
    """What the interval says about the rule's claim: True when it supports it, False when it
    does not, None on the boundary (within float rounding) or when there is no interval."""
    lo, hi = float(r.est_low), float(r.est_high)
    kind = r.rule if not _missing(r.rule) else rule["rule"]
    eps = 1e-9 * max([1.0, *(abs(v) for v in (lo, hi) if math.isfinite(v))])  # float rounding

    def below(x: float, bound: float) -> bool | None:
        return None if abs(x - bound) <= eps else x < bound

    if kind == "difference":
        sides = (below(hi, 0.0), below(-lo, 0.0))  # excludes 0 from above / from below
        return None if None in sides else any(sides)
    if kind == "record":
        return below(hi, -float(rule["min_delta"]))
    if kind == "frontier":
        return below(hi, 0.0)
    if kind in ONE_SAMPLE:
        target = float(rule["target"])
        return below(hi, target) if rule["direction"] == "below" else below(-lo, -target)
    margin = float(rule["margin"])
    sides = (below(hi, margin), below(-lo, margin))
    return None if None in sides else all(sides)


def contradictions(stats: pd.DataFrame, rule: dict) -> list[str]:
    """Conditions whose verdict and interval disagree (an interval excluding the null value
    next to a verdict that says the rule's claim fails, or the other way round). None should:
    stats.csv computes both at the same adjustment; the report says so when one does."""
    out = []
    for r in compared(stats).itertuples():
        if r.verdict == INSUFFICIENT or _missing(r.est_low) or _missing(r.est_high):
            continue
        claim = _claim(r, rule)
        if claim is not None and claim != (r.verdict in PASSING):
            out.append(r.condition)
    return out


def _headline_row(r, options: dict, level: str, columns: Columns, tested: bool) -> dict:
    baseline, metric, published = options["baseline"], options["metric"], options["published"]
    d, is_base = _digits(metric), r.condition == baseline
    row = {
        "condition": r.condition + (" (baseline)" if is_base else ""),
        "verdict": r.verdict if tested else "–",
        "n": str(int(r.n)),
        f"{label(metric)} mean ± sd": f"{fmt(r.mean, d)} ± {fmt(r.sd, d)}",
        f"{level} CI": fmt_ci(r.ci_low, r.ci_high, d),
        **(columns.cells(r, d) if tested else columns.empty()),
        "test": str(r.test) if tested and not _missing(r.test) else "–",
        "settings": _settings(options["conditions"].get(r.condition)),  # None: imported only
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


def _published_diffs(stats: pd.DataFrame, options: dict, values: dict) -> list[dict]:
    """Each condition's published difference to the published baseline, against our interval
    of the difference (the one next to the verdict) where the rule gives one."""
    baseline, metric = options["baseline"], options["metric"]
    d, by_cond = _digits(metric), stats.set_index("condition")
    base = values.get(baseline)
    rows = []
    for cond, v in values.items():
        if cond == baseline or base is None or cond not in by_cond.index:
            continue
        r, pub = by_cond.loc[cond], v - base
        known = (
            r["against"] == baseline and not _missing(r["est_low"]) and not _missing(r["est_high"])
        )
        rows.append(
            {
                "condition": cond,
                "published": fmt(pub, d, signed=True),
                "ours": fmt(r["diff"], d, signed=True),
                "interval": fmt_ci(r["est_low"], r["est_high"], d, True) if known else None,
                "inside": known and bool(r["est_low"] <= pub <= r["est_high"]),
            }
        )
    return rows


def results_table(stats: pd.DataFrame, options: dict, level: str) -> dict:
    """The results the way a published table lays them out (one row per condition, the
    verdict early so it never scrolls out of view, the metric, the primary test's estimate
    with its interval at the p's adjustment), what the condition sets, and the published value
    where the study gives one. Published numbers are at the published scale: they are compared
    with ours only at scale `full`."""
    columns = Columns(compared(stats), options["decision"])
    tested = set(compared(stats)["condition"])
    rows = [
        _headline_row(r, options, level, columns, r.condition in tested) for r in stats.itertuples()
    ]
    published = options["published"]
    if not published:
        return {"rows": rows, "published": None}
    comparable = options["scale"] == "full"
    values = published["values"]
    return {
        "rows": rows,
        "published": {
            "source": published["source"],
            "diffs": _published_diffs(stats, options, values) if comparable else [],
            "scale": None if comparable else options["scale"],
            "has_values": bool(values),
        },
    }


def summary_rows(summary: pd.DataFrame, metric: str, level: str) -> list[dict]:
    d = _digits(metric)
    return [
        {
            "condition": r.condition,
            "n / planned": f"{int(r.n)} / {int(r.n_planned)}",
            "mean ± sd": f"{fmt(r.mean, d)} ± {fmt(r.sd, d)}",
            f"{level} CI": fmt_ci(r.ci_low, r.ci_high, d),
        }
        for r in summary.itertuples()
    ]


# --- companion tests -------------------------------------------------------------------------


def _t_cell(t: object, df: object, p: object, df_digits: int) -> str:
    if _missing(p):
        return "–"
    return f"t={fmt(t, 2)}, df={fmt(df, df_digits)}, p={fmt_p(p)}"


def _rank_cell(p: object, min_p: object, alpha: float, sizes: str) -> str:
    """A rank test's p, or that it cannot reach α at these sample sizes (its smallest
    attainable p is above α: its p says nothing about the effect)."""
    if _missing(p):
        return "–"
    if not _missing(min_p) and float(min_p) > alpha:
        return f"cannot reach α={_num(alpha)} at {sizes}"
    return f"p={fmt_p(p)}"


def _companion_row(r, by_cond: pd.DataFrame, metric: str, paired: bool) -> dict:
    d, ref = _digits(metric), _reference(by_cond, r)
    n_ref = None if ref is None else int(ref["n"])
    alpha = float(r.alpha)
    row = {
        "condition": r.condition,
        "vs": "–" if ref is None else str(r.against),
        "Δ": fmt(r.diff, d, signed=True),
        "Δ %": fmt(r.diff_pct, 2, signed=True),
        "Welch": _t_cell(r.welch_t, r.welch_df, r.welch_p, 1),
        "Student": _t_cell(r.student_t, r.student_df, r.student_p, 0),
    }
    if paired:
        pairs = f"{int(r.n_pairs)} pairs" if not _missing(r.n_pairs) else "–"
        row["paired t"] = _t_cell(r.paired_t, r.paired_df, r.paired_p, 0)
        row["Wilcoxon signed-rank"] = _rank_cell(r.wilcoxon_p, r.wilcoxon_min_p, alpha, pairs)
    sizes = f"n={int(r.n)} vs {n_ref}" if n_ref is not None else f"n={int(r.n)}"
    row["Mann-Whitney"] = _rank_cell(r.mwu_p, r.mwu_min_p, alpha, sizes)
    row["Hedges g [CI]"] = fmt_g(pd.Series(r._asdict()))
    return row


def comparisons(stats: pd.DataFrame, metric: str, rule: dict, alpha: str) -> dict:
    """The primary tests as sentences, the companion tests as their own table (unadjusted,
    none of them the verdict), and any verdict that contradicts its interval."""
    rows, by_cond = compared(stats), stats.set_index("condition")
    with_ref = rows[rows["against"].notna()]
    paired = bool(with_ref["paired_p"].notna().any())
    return {
        "label": label(metric),
        "tests": ", ".join(dict.fromkeys(rows["test"].dropna())) or None,
        "rows": [_companion_row(r, by_cond, metric, paired) for r in with_ref.itertuples()],
        "paired": paired,
        "verdicts": [verdict(r, by_cond, metric, alpha) for r in rows.itertuples()],
        "contradictions": contradictions(stats, rule),
    }


# --- what the runs can detect ----------------------------------------------------------------


def _unit(r) -> str:
    return "pairs" if r.design == "paired" else ("seeds" if _one_sample(r) else "seeds per arm")


def _detectable(r, rule: dict, value: str, metric: str) -> str:
    """What the detectable effect is, per rule (speedlab.analysis.power.detectable_effect)."""
    kind = r.rule if not _missing(r.rule) else rule["rule"]
    if kind == "equivalence":
        return (
            f"equivalence within a margin of ±{value} {metric} or wider, when the true "
            "difference is 0"
        )
    if kind == "record":
        return f"a true improvement of {value} {metric} or more (min_delta included)"
    if kind in ONE_SAMPLE:
        side = "below" if rule.get("direction", "below") == "below" else "above"
        return f"a true mean {value} {metric} or more {side} {_num(rule['target'])}"
    return f"a true effect of {value} {metric} or more"


def sensitivity(stats: pd.DataFrame, options: dict) -> dict:
    """Per comparison: the smallest true effect the achieved n detects with plan.power (no
    power at the observed effect: that is a noisy, upward-biased restatement of the p), the
    noise it assumes, and the seeds plan.min_effect needs."""
    metric, plan = options["metric"], options["plan"]
    d, by_cond = _digits(metric), stats.set_index("condition")
    rows = []
    for r in compared(stats).itertuples():
        ref = _reference(by_cond, r)
        noise = None
        if r.rule == "known_sigma":
            noise = f"σ={_num(options['decision']['sigma'])}, known"
        elif not _missing(r.noise_sd):
            source = "" if _missing(r.noise_source) else f", {r.noise_source}"
            noise = f"{fmt(r.noise_sd, d)}{source}"
        rows.append(
            {
                "condition": r.condition,
                "arms": arms(r, None if ref is None else int(ref["n"])),
                "test": None if _missing(r.test) else str(r.test),
                "detectable": None
                if _missing(r.detectable)
                else _detectable(r, options["decision"], fmt(r.detectable, d), label(metric)),
                "infinite": not _missing(r.detectable) and math.isinf(float(r.detectable)),
                "noise": noise,
                "seeds": fmt_seeds(r.n_for_min_effect),
                "unit": _unit(r),
            }
        )
    planned = options["planned_seeds"]
    return {
        "power": f"{100 * plan['power']:g}%",
        "min_effect": None if plan["min_effect"] is None else _num(plan["min_effect"]),
        "rows": rows,
        "short": bool((stats["n"] < planned).any()),
    }


# --- sweeps ----------------------------------------------------------------------------------

SWEEP_READ = ["key", "group_key", "group", "value", "n", "n_excluded", "mean", "sd", "ci_low"]
SWEEP_READ += ["ci_high", "p_best", "is_best", "is_default", "diff", "welch_p", "verdict"]
SWEEP_READ += ["alpha"]
SWEEP_TESTS_READ = ["key", "group", "value", "against_value", "against_kind", "n", "n_against"]
SWEEP_TESTS_READ += ["diff", "diff_low", "diff_high", "est_level", "p", "p_adj", "verdict"]
NO_RANKING = "no ranking is supported: a value has fewer than 2 seeds"


def _true(x: object) -> bool:
    return str(x).strip().lower() in ("true", "1", "1.0")


def _same_group(values: pd.Series, group: object) -> pd.Series:
    if _missing(group):
        return values.isna()
    return np.isclose(values.astype(float), float(group), rtol=1e-12, atol=0.0)


def _ranking_supported(part: pd.DataFrame) -> bool:
    """P(best) means something only when every value has 2 or more seeds: sweep.csv says so
    (ranking_supported); an older table without the column is judged by its n."""
    if "ranking_supported" in part:
        return all(_true(x) for x in part["ranking_supported"])
    return bool((part["n"] >= 2).all())


def _sweep_rows(part: pd.DataFrame, key: str, d: int, ranked: bool, tested: bool) -> list:
    """One row per value; its Welch test against the default only when there is no
    sweep_tests.csv (whose Holm-adjusted tests then carry the verdicts, below the table)."""
    rows = []
    for r in part.itertuples():
        row = {
            key: f"{r.value:g}" + (" (default)" if _true(r.is_default) else ""),
            "n": f"{int(r.n)}" + (f" (+{int(r.n_excluded)} excl.)" if r.n_excluded else ""),
            "mean ± sd": f"{fmt(r.mean, d)} ± {fmt(r.sd, d)}",
            "CI": fmt_ci(r.ci_low, r.ci_high, d),
            "P(best)": fmt(r.p_best, 2) if ranked else "–",
            "diff vs default": fmt(r.diff, d, signed=True),
        }
        if not tested:
            row["verdict vs default"] = str(r.verdict)
            row["Welch p (unadjusted)"] = fmt_p(r.welch_p)
        rows.append(row)
    return rows


def _test_rows(tests: pd.DataFrame, key: str, d: int) -> list[dict]:
    """The best value's tests (neighbours, default): the verdict first, then the difference
    with its interval at the Holm-adjusted level of the p beside it."""
    return [
        {
            "best vs": f"{r.against_kind} ({key}={r.against_value:g})",
            "verdict": str(r.verdict),
            "Δ [CI, Holm-adjusted]": f"{fmt(r.diff, d, signed=True)} "
            f"{fmt_ci(r.diff_low, r.diff_high, d, True)} ({fmt_level(r.est_level)})",
            "p (Holm-adjusted)": fmt_p(r.p_adj),
            "p (unadjusted)": fmt_p(r.p),
            "n": f"{int(r.n)} vs {int(r.n_against)}",
        }
        for r in tests.itertuples()
    ]


def _confirm_rows(confirm: pd.DataFrame, key: str, d: int) -> list[dict]:
    """The confirmation's tests (best vs default on fresh seeds), as sentence facts."""
    return [
        {
            "value": f"{key}={r.value:g}",
            "against": f"{key}={r.against_value:g}",
            "estimate": fmt(r.diff, d, signed=True),
            "interval": fmt_ci(r.diff_low, r.diff_high, d, True),
            "level": fmt_level(r.est_level),
            "p": fmt_p(r.p),
            "p_adj": None if _missing(r.p_adj) else fmt_p(r.p_adj),
            "verdict": str(r.verdict),
            "n": f"n={int(r.n)} vs {int(r.n_against)}",
        }
        for r in confirm.itertuples()
    ]


def _sweep_group(part: pd.DataFrame, tests, confirm, key: str, metric: str, grouped: bool):
    d, ranked = _digits(metric), _ranking_supported(part)
    group = part["group"].iloc[0]

    def mine(table):
        return None if table is None else table[_same_group(table["group"], group)]

    best = part[part["is_best"].map(_true)]
    mine_tests, mine_confirm = mine(tests), mine(confirm)
    return {
        "title": f"`{part['group_key'].iloc[0]}` = {group:g}" if grouped else None,
        "rows": _sweep_rows(part, key, d, ranked, tests is not None),
        "ranked": ranked,
        "best": _sweep_best(best.iloc[0], d, ranked) if len(best) else None,
        "tests": _test_rows(mine_tests, key, d) if tests is not None else None,
        "confirm": _confirm_rows(mine_confirm, key, d) if confirm is not None else None,
    }


def _sweep_best(b: pd.Series, d: int, ranked: bool) -> dict:
    return {
        "value": f"{b['value']:g}",
        "mean": fmt(b["mean"], d),
        "ci": fmt_ci(b["ci_low"], b["ci_high"], d),
        "n": int(b["n"]),
        "p_best": fmt(b["p_best"], 2) if ranked else None,
        "verdict": str(b["verdict"]),
        "diff": fmt(b["diff"], d, signed=True),
        "welch_p": None if _missing(b["welch_p"]) else fmt_p(b["welch_p"]),  # None: the default
    }


def _metric_rows(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    return table[table["metric"] == metric] if "metric" in table else table


def sweep_section(sweep: pd.DataFrame, metric: str, tests=None, confirm=None, seeds=None):
    """Metric against the swept value (per group): P(best) where a ranking is supported, the
    best value tested against its neighbours and the default (sweep_tests.csv), and the
    confirmation on fresh seeds (confirm.csv)."""
    if "metric" in sweep and not (sweep["metric"] == metric).any():
        raise ReportInputError(f"the sweep table has no rows for the metric {metric!r}")
    sweep = _metric_rows(sweep, metric)
    tests = None if tests is None else _metric_rows(tests, metric)
    confirm = None if confirm is None else _metric_rows(confirm, metric)
    key = sweep["key"].iloc[0]
    grouped = sweep["group_key"].notna().any()
    parts = sweep.groupby("group", dropna=False, sort=False) if grouped else [(None, sweep)]
    return {
        "key": key,
        "level": f"{100 * (1 - float(sweep['alpha'].iloc[0])):g}%",
        "tested": tests is not None,
        "no_ranking": NO_RANKING,
        "confirm_seeds": None if not seeds else ", ".join(map(str, seeds)),
        "groups": [_sweep_group(part, tests, confirm, key, metric, grouped) for _, part in parts],
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


# --- sequential design -----------------------------------------------------------------------

SPENDING = {"obrien_fleming": "O'Brien-Fleming", "pocock": "Pocock"}


def _look_rows(history: list[dict]) -> list[dict]:
    return [
        {
            "look": str(h["look"]),
            "n": str(h["n"]),
            "statistic": fmt(h.get("statistic"), 2),
            "efficacy bound": fmt(h.get("efficacy"), 2),
            "futility bound": fmt(h.get("futility"), 2),
        }
        for h in history
    ]


def _stopped(status: str, last: dict, next_seeds: list) -> str:
    """The comparison's decision and the look it came at, in words."""
    at = f"look {last['look']} (n={last['n']})"
    if status == "efficacy":
        return f"stopped at {at} for efficacy: the statistic crossed the efficacy bound"
    if status == "futility":
        return f"stopped at {at} for futility: the statistic crossed the futility bound"
    if status == "max_looks":
        return f"ran to the last look, {at}, and was decided there"
    seeds = ", ".join(map(str, next_seeds)) or "none"
    return f"open after {at}: the next look runs seeds {seeds}"


def _sequential_comparison(name: str, c: dict, doc: dict, d: int) -> dict:
    history = c.get("history") or []
    if not history:
        raise ReportInputError(f"sequential document: comparison {name!r} has no history")
    final = c.get("final") or {}
    has_final = not _missing(final.get("p_adj"))
    signed = doc.get("rule") not in ONE_SAMPLE
    return {
        "condition": name,
        "against": c.get("against"),
        "rows": _look_rows(history),
        "decision": _stopped(c.get("status", "continue"), history[-1], doc["next"].get(name, [])),
        "final": {
            "p_adj": fmt_p(final["p_adj"]),
            "estimate": fmt(final.get("estimate"), d, signed),
            "interval": fmt_ci(final.get("est_low"), final.get("est_high"), d, signed),
            "level": None if _missing(final.get("est_level")) else fmt_level(final["est_level"]),
            "verdict": final.get("verdict") or "–",
        }
        if has_final
        else None,
    }


def sequential_section(path: str, metric: str) -> dict:
    """The group-sequential design's final analysis (sequential.json): the looks, and per
    comparison the statistic at each look against its bounds, where it stopped and why, and
    the final p and interval adjusted for the design."""
    doc = _read_json(path, "sequential document")
    absent = [k for k in ("look", "looks", "spending", "alpha", "comparisons") if k not in doc]
    if absent:
        raise ReportInputError(f"sequential document {path}: missing key(s) {', '.join(absent)}")
    doc.setdefault("next", {})
    d = _digits(metric)
    return {
        "looks": ", ".join(map(str, doc["looks"])),
        "look": doc["look"],
        "n_looks": len(doc["looks"]),
        "spending": SPENDING.get(doc["spending"], doc["spending"]),
        "futility": bool(doc.get("futility")),
        "alpha": _num(doc["alpha"]),
        "comparisons": [
            _sequential_comparison(name, c, doc, d) for name, c in doc["comparisons"].items()
        ],
    }


# --- the decision rule over validation steps -------------------------------------------------

RULE_STEPS_READ = ["step", "condition", "against", "statistic", "threshold", "p", "passes"]
RULE_STEPS_READ += ["earliest"]


def _earliest(part: pd.DataFrame) -> pd.Series | None:
    """The row of the earliest step at which the rule passes (the same step for every run):
    `earliest` flags it (or holds its step); None when it never passes."""
    flag = part["earliest"]
    if flag.dropna().map(lambda x: str(x).strip().lower() in ("true", "false")).all():
        hit = part[flag.map(_true)]
    else:  # the earliest step as a number, repeated
        steps = pd.to_numeric(flag, errors="coerce").dropna()
        hit = part[part["step"] == steps.iloc[0]] if len(steps) else part.iloc[:0]
    return None if hit.empty else hit.sort_values("step").iloc[0]


def rule_steps_section(path: str) -> dict:
    """Per condition: the earliest validation step at which the decision rule passes, with
    the statistic and threshold there, or that it never passes within the run."""
    table = _read_table(path, "rule over steps table", RULE_STEPS_READ)
    rows = []
    for (cond, against), part in table.groupby(["condition", "against"], dropna=False, sort=False):
        hit = _earliest(part)
        last = int(part["step"].max())
        rows.append(
            {
                "condition": str(cond),
                "against": "–" if _missing(against) else str(against),
                "earliest step": f"never within the run (to step {last:,})"
                if hit is None
                else f"{int(hit['step']):,}",
                "statistic there": "–" if hit is None else fmt(hit["statistic"], 2),
                "threshold": "–" if hit is None else fmt(hit["threshold"], 2),
                "p there": "–" if hit is None else fmt_p(hit["p"]),
            }
        )
    return {"metric": _unique(table["metric"]) if "metric" in table else None, "rows": rows}


COMPUTE_READ = ["condition", "multiplier", "lo", "hi", "n_seeds", "flops", "note"]


def compute_section(path: str) -> dict | None:
    """Each condition's compute multiplier against the baseline, with its bootstrap interval
    (speedlab.analysis.compute); None when the study has no condition besides the baseline."""
    table = _read_table(path, "compute multiplier table", COMPUTE_READ)
    rows = [
        {
            "condition": f"`{r.condition}`",
            "multiplier": fmt(r.multiplier, 3),
            "interval": fmt_ci(r.lo, r.hi, 3),
            "seeds": f"{int(r.n_seeds)}",
            "FLOPs": "–" if _missing(r.flops) else f"{float(r.flops):.3g}",
            "note": "" if _missing(r.note) else str(r.note),
        }
        for r in table.itertuples()
    ]
    return {"rows": rows} if rows else None


# --- the rest of the note --------------------------------------------------------------------


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
    level = f"{100 * (1 - alpha):g}%"
    tables = [{"title": f"{label(metric)} (primary)", "rows": summary_rows(stats, metric, level)}]
    for m in SECONDARY:
        if m != metric and m in runs:
            summary = summarize(runs, m, conditions, planned, alpha)
            tables.append({"title": label(m), "rows": summary_rows(summary, m, level)})
    return tables


def sweep_sections(options: dict) -> dict:
    """The sweep and scaling sections, each None when the study has no such input."""
    sweep = scaling = None
    if options["sweep"] is not None:
        table = _read_table(options["sweep"], "sweep table", SWEEP_READ)
        tests = confirm = None
        if options["sweep_tests"] is not None:
            tests = _read_table(options["sweep_tests"], "sweep tests table", SWEEP_TESTS_READ)
        if options["confirm"] is not None:
            confirm = _read_table(options["confirm"], "confirmation table", SWEEP_TESTS_READ)
        seeds = options["confirm_seeds"]
        sweep = sweep_section(table, options["metric"], tests, confirm, seeds)
    if options["scaling"] is not None:
        doc = _read_json(options["scaling"], "scaling fit")
        published = options["published"]
        scaling = scaling_section(doc, published["best"] if published else {})
    return {"sweep": sweep, "scaling": scaling}


def report_data(options: dict, out_dir: Path) -> dict:
    """Everything report.md states, from the options (see OPTIONS) and the files they name;
    figure links are relative to `out_dir`."""
    metric, baseline, planned = options["metric"], options["baseline"], options["planned_seeds"]
    rule = options["decision"]
    runs = read_runs(options["runs"], options["study"])
    stats, time_stats = read_stats(options["stats"], metric, baseline)
    stats["n_planned"] = planned  # the study's planned seeds are authoritative for display
    alpha = float(rule["alpha"])
    # The intervals of the means are at stats.csv's alpha (the rule's, when both are current).
    mean_alpha = float(stats["alpha"].dropna().iloc[0]) if stats["alpha"].notna().any() else alpha
    level = f"{100 * (1 - mean_alpha):g}%"
    sequential = options["sequential"]
    return {
        "study": options["study"],
        "question": options["description"].strip(),
        "baseline": baseline,
        "metric": label(metric),
        "better": "higher" if metric in HIGHER_IS_BETTER else "lower",
        "alpha": _num(alpha),
        "level": level,
        "design": design(runs, stats, options),
        "other_runs": other_runs(runs, metric),
        "results": results_table(stats, options, level),
        "summaries": summaries(runs, stats, metric, mean_alpha),
        "comparison": comparisons(stats, metric, rule, _num(alpha)),
        "sensitivity": sensitivity(stats, options),
        "time": None
        if compared(time_stats).empty
        else comparisons(time_stats, TIME, rule, _num(alpha)),
        **sweep_sections(options),
        "sequential": None if sequential is None else sequential_section(sequential, metric),
        "rule_steps": None
        if options["rule_steps"] is None
        else rule_steps_section(options["rule_steps"]),
        "compute": None if options["compute"] is None else compute_section(options["compute"]),
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


# Tables fit the page: cells wrap (a long settings cell wraps, it does not widen the table),
# and a table that is still too wide scrolls inside its own box, the verdict column being the
# second one so it stays in view.
HTML_STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 72rem; margin: 2rem auto;
       padding: 0 1rem; color: #1b1b1b; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 13px; display: block;
        max-width: 100%; overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: right;
         white-space: normal; overflow-wrap: anywhere; vertical-align: top; }
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
