"""A study's imports -> the runs they bring, each once: training logs and published tables.

`studies.<s>.imports` lists runs made elsewhere:

- `{log, condition, seed}`: one run of a training log (`run: k` picks trial k of a file holding
  several); the import job checks the seed against the log's own `seed:` line.
- `{log, condition}` without a seed: every run of the log, with the seeds it prints (a multi-run
  file split into its trials); a run whose seed the log does not print is an error asking for
  `seed` and `run`.
- `{table}`: a published per-seed table (.csv or .parquet) with columns condition, seed and
  metric columns (val_bpb, q_val_bpb, ...), optionally steps and train_time_s; `condition`
  keeps only that condition's rows.

import_runs() expands the entries into one item per (condition, seed) and refuses a pair that
two sources give (two entries, two trials of one file, or a trained run of the same condition
and seed), naming both: counting one run twice makes one seed look like two.
"""

from __future__ import annotations

import csv
import functools
from pathlib import Path

TABLE_KEYS = ("condition", "seed")


class ImportsError(ValueError):
    """A study's imports are inconsistent; the message names the entry."""


def table_rows(path: str | Path) -> list[dict]:
    """The rows of a per-seed table (.csv or .parquet) as dicts, condition and seed checked
    (read once per process: the workflow asks for a study's conditions many times)."""
    return [dict(row) for row in _table_rows(str(path))]


@functools.cache
def _table_rows(path: str) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise ImportsError(f"{path}: no such table")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
    else:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    if not rows:
        raise ImportsError(f"{path}: the table has no rows")
    missing = [k for k in TABLE_KEYS if k not in rows[0]]
    if missing:
        raise ImportsError(
            f"{path}: no column {', '.join(missing)} (expected columns condition, seed and "
            f"metric columns; found {', '.join(rows[0])})"
        )
    for k, row in enumerate(rows, start=2):
        try:
            row["seed"] = int(row["seed"])
        except (TypeError, ValueError):
            raise ImportsError(f"{path}: row {k}: seed {row['seed']!r} is not an integer") from None
    return rows


def _log_items(where: str, entry: dict) -> list[dict]:
    base = {"log": entry["log"], "condition": entry["condition"], "format": entry["format"],
            "metrics": entry["metrics"], "pool": entry["pool"]}  # fmt: skip
    if "seed" in entry:
        run = entry.get("run")
        return [{**base, "seed": entry["seed"], "run": run, "where": where}]
    from speedlab.logformats import parse_runs

    try:
        runs = parse_runs(entry["log"], entry["format"])
    except (OSError, ValueError) as e:
        raise ImportsError(f"{where}: {e}") from None
    if "run" in entry:
        runs = [r for r in runs if r.trial == entry["run"]]
    items = []
    for r in runs:
        if r.seed is None:
            raise ImportsError(
                f"{where}: run {r.trial} of {entry['log']} prints no seed; list it as "
                f"{{log: {entry['log']}, condition: {entry['condition']}, run: {r.trial}, "
                "seed: N}"
            )
        items.append({**base, "seed": r.seed, "run": r.trial, "where": where})
    return items


def _table_items(where: str, entry: dict) -> list[dict]:
    try:
        rows = table_rows(entry["table"])
    except ImportsError as e:
        raise ImportsError(f"{where}: {e}") from None
    if "condition" in entry:
        rows = [r for r in rows if r["condition"] == entry["condition"]]
    return [
        {"table": entry["table"], "condition": str(r["condition"]), "seed": r["seed"],
         "pool": entry["pool"], "where": where}
        for r in rows
    ]  # fmt: skip


def describe(item: dict) -> str:
    if "table" in item:
        return f"{item['where']} ({item['table']})"
    trial = f", run {item['run']}" if item.get("run") is not None else ""
    return f"{item['where']} ({item['log']}{trial})"


def import_runs(name: str, study: dict, trained: list[tuple[str, int]] = ()) -> list[dict]:
    """One item per imported (condition, seed); trained: the study's own (condition, seed)."""
    seen = {pair: f"the trained runs of condition {pair[0]!r}" for pair in trained}
    items = []
    for k, entry in enumerate(study["imports"]):
        where = f"studies.{name}.imports.{k}"
        expand = _table_items if "table" in entry else _log_items
        for item in expand(where, entry):
            pair = (item["condition"], item["seed"])
            if pair in seen:
                raise ImportsError(
                    f"studies.{name}.imports: condition {pair[0]!r} seed {pair[1]} comes from "
                    f"both {seen[pair]} and {describe(item)}; a run counted twice makes one "
                    "seed look like two"
                )
            seen[pair] = describe(item)
            items.append(item)
    return items


def tables(items: list[dict]) -> list[str]:
    """The distinct tables among the items, in order."""
    return list(dict.fromkeys(item["table"] for item in items if "table" in item))


def import_conditions(study: dict) -> list[str]:
    """The conditions a study's imports bring, in order (a table's from its rows)."""
    names = []
    for entry in study["imports"]:
        if "condition" in entry:
            names.append(entry["condition"])
        else:
            names += [str(row["condition"]) for row in table_rows(entry["table"])]
    return list(dict.fromkeys(names))
