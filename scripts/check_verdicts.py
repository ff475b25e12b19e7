"""Check every study's stats.csv: no verdict contradicts the interval printed beside it.

    python scripts/check_verdicts.py results/studies/*/stats.csv

For each tested row with an interval, the rule's verdict must be "significant" exactly when the
interval excludes the rule's null value (0 for a difference, -min_delta for a record, the
target for target / known_sigma, inside +-margin for equivalence). Exit 1 on any disagreement.
CI runs it after the catalogue's smoke studies.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pandas as pd

SIGNIFICANT = {"better", "worse", "record", "meets the target", "equivalent", "beats the frontier"}


def excludes(row: pd.Series, rule: dict) -> bool:
    lo, hi = row["est_low"], row["est_high"]
    kind = row["rule"]
    if kind == "difference":
        return lo > 0 or hi < 0
    if kind == "record":
        return hi < -rule["min_delta"]
    if kind == "frontier":
        return hi < 0
    if kind == "equivalence":
        return -rule["margin"] < lo and hi < rule["margin"]
    below = rule["direction"] == "below"
    return hi < rule["target"] if below else lo > rule["target"]


def check(stats_csv: Path) -> list[str]:
    table = pd.read_csv(stats_csv)
    doc = json.loads(stats_csv.with_suffix(".json").read_text())
    problems = []
    for _, row in table[table["rule"].notna()].iterrows():
        if not (math.isfinite(row["est_low"]) or math.isfinite(row["est_high"])):
            continue  # no interval (censored ranks, or too few runs)
        rule = doc["decision"] if row["metric"] == doc["primary_metric"] else {"min_delta": 0}
        if (row["verdict"] in SIGNIFICANT) != excludes(row, rule):
            problems.append(
                f"{stats_csv}: {row['metric']} {row['condition']}: verdict {row['verdict']!r} "
                f"but interval [{row['est_low']:.6g}, {row['est_high']:.6g}]"
            )
    return problems


def main(paths: list[str]) -> int:
    problems = [p for path in paths for p in check(Path(path))]
    print(
        "\n".join(problems) or f"{len(paths)} stats tables: every verdict agrees with its interval"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
