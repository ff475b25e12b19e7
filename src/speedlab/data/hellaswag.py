"""The HellaSwag validation examples a run scores at its end (eval.hellaswag), from the hub.

The source is the hub's copy of the dataset, Rowan/hellaswag: its validation split is one parquet
file (10,042 rows; fields ind, activity_label, ctx_a, ctx_b, ctx, endings, source_id, split,
split_type, label). It is downloaded whole (a few MB) through speedlab.data.hub.download_file
into the Hugging Face cache, at the commit `main` points to, and the first N rows are checked and
written to results/data/hellaswag/val_<N>.jsonl (speedlab.data.hellaswag_format). There is no
local fallback: HellaSwag is not among the shared files, so without a hub (and no earlier
download in the cache) this stops with an error saying so.

    python -m speedlab.data.hellaswag --examples N --out results/data/hellaswag/val_N.jsonl
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from pathlib import Path

import pyarrow.parquet as pq

from speedlab.data import hellaswag_format as fmt
from speedlab.data.hub import HubUnreachable, download_file

REPO = "Rowan/hellaswag"
FILE = "data/validation-00000-of-00001.parquet"
FIELDS = ("ctx", "endings", "label")


def file_rows(path: Path) -> Iterable[object]:
    """The rows of a downloaded file, parquet or JSON lines, with the fields Examples need."""
    if path.suffix == ".parquet":
        names = pq.read_schema(path).names
        return pq.read_table(path, columns=[f for f in FIELDS if f in names]).to_pylist()
    return fmt.json_lines(path)


def prepare(examples: int, out: str | Path, repo: str = REPO, file: str = FILE,
            revision: str = "main") -> dict:  # fmt: skip
    """Download the file, check its first `examples` rows and write them to `out`."""
    local = download_file(repo, file, revision)
    items = fmt.examples(file_rows(local), examples, f"{repo}@{revision}:{file}")
    fmt.write_jsonl(out, items)
    return {"repo": repo, "file": file, "revision": revision, "local": str(local),
            "examples": len(items)}  # fmt: skip


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--examples", type=int, required=True, help="the first N validation examples")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--repo", default=REPO)
    p.add_argument("--file", default=FILE)
    p.add_argument("--revision", default="main")
    args = p.parse_args(argv)
    try:
        record = prepare(args.examples, args.out, args.repo, args.file, args.revision)
    except (HubUnreachable, OSError, ValueError) as err:
        raise SystemExit(f"speedlab.data.hellaswag: {err}") from None
    print(json.dumps(record))


if __name__ == "__main__":
    main()
