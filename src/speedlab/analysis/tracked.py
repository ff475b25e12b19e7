"""The study's result in the experiment tracker, beside its runs (rule track_study).

Each run of a tracked study is a tracker run in the study's group (speedlab.train.tracking).
Once stats.csv exists, one more run joins the group, named <study>/analysis: a table of the
verdicts (stats.csv's rows of the study's metric: the difference from the baseline, its
interval, the adjusted p and the verdict) and a table of the per-seed deltas (each condition's
value minus the baseline's on the seeds both ran, the numbers the per-seed figure draws), and
each condition's difference, interval and adjusted p as summary numbers. Written for
parameter-golf-style PRs that paste a W&B group: the verdict sits next to the curves.

    python -m speedlab.analysis.tracked --options JSON --runs runs.parquet --stats stats.csv
        --out tracking.json

tracking.json records what was logged and where (backend, project, group, run id).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from speedlab.analysis.figures import seed_deltas, seed_table
from speedlab.analysis.options import REQUIRED, runs_parser
from speedlab.files import write_json
from speedlab.train import tracking

# stats.csv's columns in the verdicts table (those it has), in this order.
VERDICT_COLUMNS = [
    "condition", "baseline", "n", "mean", "diff", "diff_pct", "est_low", "est_high",
    "est_level", "test", "p_adj", "verdict",
]  # fmt: skip
DELTA_COLUMNS = ["condition", "seed", "value", "baseline_value", "delta"]
SUMMARY_KEYS = ("diff", "est_low", "est_high", "p_adj")


def cell(value):
    """A table cell: plain Python, NaN and missing as None."""
    if hasattr(value, "item"):
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def verdicts(stats: pd.DataFrame, metric: str, baseline: str) -> pd.DataFrame:
    """The compared conditions' rows of the study's metric (stats.csv holds one block per
    metric; the first is the study's and carries the decision rule's verdict)."""
    if "metric" not in stats.columns or metric not in set(stats["metric"]):
        raise ValueError(f"stats.csv has no rows of the study's metric {metric!r}")
    rows = stats[(stats["metric"] == metric) & (stats["condition"] != baseline)]
    return rows[[c for c in VERDICT_COLUMNS if c in rows.columns]]


def deltas(runs: pd.DataFrame, metric: str, baseline: str, conditions: list[str]) -> list[list]:
    """[condition, seed, value, baseline value, delta] for every seed a condition shares with
    the baseline (diverged runs and missing values out, as in the per-seed figure)."""
    order = [baseline, *[c for c in conditions if c != baseline]]
    table = seed_table(runs, metric, order)
    rows = []
    for condition, delta in seed_deltas(table, baseline).items():
        for seed, d in delta.items():
            value, base = table.at[seed, condition], table.at[seed, baseline]
            rows.append([condition, int(seed), float(value), float(base), float(d)])
    return rows


def summary_numbers(table: pd.DataFrame) -> dict[str, float]:
    out = {}
    for row in table.to_dict(orient="records"):
        for key in SUMMARY_KEYS:
            if cell(row.get(key)) is not None:
                out[f"{row['condition']}/{key}"] = float(row[key])
    return out


def log_study(o: dict, runs: pd.DataFrame, stats: pd.DataFrame) -> dict:
    """One tracker run <study>/analysis in the study's group: the verdicts, the per-seed deltas
    and each condition's difference; returns what was logged."""
    settings = tracking.check(o["tracking"])
    if settings is None:
        raise ValueError("tracking.backend is none: there is no tracker to log the study to")
    table = verdicts(stats, o["metric"], o["baseline"])
    rows = [[cell(v) for v in r] for r in table.itertuples(index=False)]
    per_seed = deltas(runs, o["metric"], o["baseline"], o["conditions"])
    meta = {"study": o["study"], "condition": "analysis"}
    config = {k: o[k] for k in ("metric", "baseline", "conditions")}
    name = f"{o['study']}/analysis"
    with tracking.start(settings, meta, None, config, name=name) as tracker:
        tracker.strict = True  # logging the study is this rule's whole job
        tracker.log_table("verdicts", list(table.columns), rows)
        tracker.log_table("per_seed_deltas", DELTA_COLUMNS, per_seed)
        tracker.log_summary(summary_numbers(table))
    return {
        "backend": settings["backend"], "project": settings["project"],
        "group": settings["group"] or o["study"], "name": name, "run_id": tracker.run_id,
        "metric": o["metric"], "verdicts": [dict(zip(table.columns, r, strict=True)) for r in rows],
        "per_seed_deltas": len(per_seed),
    }  # fmt: skip


OPTIONS = {
    "tracking": REQUIRED,  # the config's tracking section, with dir
    "study": REQUIRED,
    "metric": REQUIRED,
    "baseline": REQUIRED,
    "conditions": REQUIRED,
}


def main(argv: list[str] | None = None) -> None:
    p = runs_parser("speedlab.analysis.tracked", "Log a study's verdicts to its tracker.", OPTIONS)
    p.add_argument("--stats", required=True, type=Path, help="stats.csv of the study")
    p.add_argument("--out", required=True, type=Path, help="tracking.json: what was logged")
    args = p.parse_args(argv)
    try:
        doc = log_study(args.options, pd.read_parquet(args.runs), pd.read_csv(args.stats))
    except (ValueError, RuntimeError) as e:
        raise SystemExit(f"speedlab.analysis.tracked: {e}") from None
    write_json(args.out, doc)
    print(json.dumps({k: doc[k] for k in ("backend", "group", "name", "run_id")}))


if __name__ == "__main__":
    main()
