"""HellaSwag examples as speedlab keeps them: (context, four endings, label), checked.

HellaSwag (Zellers et al. 2019) asks which of four endings continues a short context. Its rows
(the hub's parquet and the original hellaswag_val.jsonl alike) carry `ctx`, `endings` and `label`
(an int, or a digit string on the hub) among other fields; only those three are read. Every row is
checked here, so a bad one is an error naming its file and index, never a silently skipped
question. The data stage (speedlab.data.hellaswag) writes the first N as one JSON object a line
to PREPARED; the trainer (speedlab.train.hellaswag_eval) reads them back through read_jsonl. This
module imports no download code, so the trainer may use it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from speedlab.files import atomic_path

ENDINGS = 4
PREPARED = "results/data/hellaswag/val_{examples}.jsonl"


class Example(NamedTuple):
    context: str
    endings: tuple[str, ...]
    label: int


def prepared_path(examples: int) -> str:
    """Where the data stage leaves the first `examples` validation examples (eval.hellaswag)."""
    return PREPARED.format(examples=examples)


def _label(value: object, where: str) -> int:
    number = int(value) if isinstance(value, str) and value.strip().isdigit() else value
    if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number < ENDINGS:
        raise ValueError(f"{where}: label {value!r} is not an ending index 0-{ENDINGS - 1}")
    return number


def example(row: object, where: str) -> Example:
    """One row as an Example; `where` (file and index) opens every error."""
    if not isinstance(row, dict):
        raise ValueError(f"{where}: not an object with ctx, endings and label ({row!r:.80})")
    missing = [key for key in ("ctx", "endings", "label") if row.get(key) is None]
    if missing:
        raise ValueError(f"{where}: no {', '.join(missing)} (it has {sorted(row)})")
    ctx, endings = row["ctx"], row["endings"]
    if not isinstance(ctx, str) or not ctx.strip():
        raise ValueError(f"{where}: ctx {ctx!r:.80} is not a non-empty text")
    if not isinstance(endings, list | tuple) or len(endings) != ENDINGS:
        raise ValueError(f"{where}: endings should be a list of {ENDINGS} texts, not {endings!r}")
    if not all(isinstance(e, str) and e.strip() for e in endings):
        raise ValueError(f"{where}: every ending should be a non-empty text: {endings!r}")
    return Example(ctx, tuple(endings), _label(row["label"], where))


def examples(rows: Iterable[object], n: int, source: str) -> list[Example]:
    """The first n rows of `source` as Examples: an error if any is bad or there are fewer."""
    out = []
    for i, row in enumerate(rows):
        if i == n:
            break
        out.append(example(row, f"{source}: example {i}"))
    if len(out) < n:
        raise ValueError(
            f"{source} holds {len(out)} examples, fewer than the {n} asked for "
            "(eval.hellaswag.examples)"
        )
    return out


def json_lines(path: Path) -> Iterable[object]:
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            try:
                yield json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: example {i} is not JSON ({err})") from None


def read_jsonl(path: str | Path, n: int) -> list[Example]:
    """The first n examples of a JSON-lines file (hellaswag_val.jsonl, or a prepared file)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no HellaSwag examples here (the data stage's prepare_hellaswag rule "
            "writes them: snakemake " + str(path) + ")"
        )
    return examples(json_lines(path), n, str(path))


def write_jsonl(path: str | Path, items: list[Example]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for ex in items:
            row = {"ctx": ex.context, "endings": list(ex.endings), "label": ex.label}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
