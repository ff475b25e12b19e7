"""Documents in, fixed train/val split out: results/data/<corpus>/{train,val}.parquet.

Validation is the first `val_docs` documents of the source, so it never depends on how many
documents are read after it.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import itertools
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from speedlab.files import atomic_path

log = logging.getLogger("speedlab.data.documents")


def _as_list(globs: str | list[str]) -> list[str]:
    return [globs] if isinstance(globs, str) else list(globs)


def local_files(globs: str | list[str]) -> list[str]:
    """Files matched by each glob (sorted within a glob, globs in the given order)."""
    files = []
    if not globs:
        raise ValueError("data.local: required when data.source is 'local' (a glob or a list)")
    for pattern in _as_list(globs):
        matched = sorted(glob.glob(os.path.expanduser(pattern)))
        if not matched:
            raise FileNotFoundError(
                f"data.local: the glob {pattern!r} matches no file "
                f"(working directory {os.getcwd()})"
            )
        files.extend(matched)
    return files


def iter_parquet_texts(path: str | Path, text_column: str = "text") -> Iterator[str]:
    """The text column of one parquet file, one batch in memory at a time."""
    pf = pq.ParquetFile(path)
    if text_column not in pf.schema_arrow.names:
        raise KeyError(
            f"{path}: no column {text_column!r} (columns: {pf.schema_arrow.names}); "
            "set data.text_column"
        )
    for batch in pf.iter_batches(columns=[text_column], batch_size=1024):
        yield from batch.column(0).to_pylist()


def iter_local_texts(globs: str | list[str], text_column: str = "text") -> Iterator[str]:
    for path in local_files(globs):
        if path.endswith(".parquet"):
            yield from iter_parquet_texts(path, text_column)
        elif path.endswith((".jsonl", ".jsonl.gz")):
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rb") as f:
                for lineno, raw in enumerate(f, 1):
                    # Decoded line by line so a bad byte is reported with its line number.
                    try:
                        line = raw.decode("utf-8")
                    except UnicodeDecodeError as e:
                        raise ValueError(
                            f"{path}:{lineno}: not valid UTF-8 (byte {raw[e.start]:#04x} at "
                            f"column {e.start + 1}); JSONL files must be UTF-8"
                        ) from e
                    if not line.strip():
                        continue
                    try:
                        yield json.loads(line)[text_column]
                    except (json.JSONDecodeError, KeyError, TypeError) as e:
                        raise ValueError(
                            f"{path}:{lineno}: expected a JSON object with a {text_column!r} "
                            f"field ({type(e).__name__}: {e})"
                        ) from e
        else:
            raise ValueError(f"{path}: unsupported file type (expected .parquet, .jsonl[.gz])")


def corpus_params(data: dict) -> dict:
    """The part of the `data` config that decides which documents the corpus holds: what the
    workflow passes to prepare_corpus, so that studies differing only in their pretokenized
    shards (or in hub settings they do not read) share one corpus and never retrain."""
    keep = {k: v for k, v in data.items() if k != "pretokenized"}
    if data["source"] == "local":  # the hub and its fallback are never read
        keep.pop("hf")
        keep.pop("offline_fallback", None)
    else:
        keep.pop("local", None)
    return keep


def _hub_texts(data: dict, hf: dict) -> Iterator[str]:
    from speedlab.data import hub  # the hub client is only imported when it is needed

    cache_dir = data["hf"]["cache_dir"]  # where bytes are kept, not what the documents are
    return hub.iter_hub_texts(
        hf["repo"],
        hf["name"],
        data["max_docs"],
        text_column=data["text_column"],
        revision=hf["revision"],
        cache_dir=os.path.expanduser(cache_dir) if cache_dir else None,
    )


def open_source(data: dict) -> tuple[Iterator[str], dict]:
    """The document stream the config asks for, and a record of where it really came from."""
    column = data["text_column"]
    if data["source"] == "local":
        files = local_files(data.get("local"))  # optional: no default to read
        return iter_local_texts(files, column), {"source": "local", "files": files}

    from speedlab.data import hub

    hf = {k: data["hf"][k] for k in ("repo", "name", "revision")}
    if hub.hub_reachable():
        return _hub_texts(data, hf), {"source": "hf", **hf}
    endpoint = hub.hub_endpoint()
    if not data.get("offline_fallback"):
        raise hub.HubUnreachable(
            f"data.source is 'hf' but the hub at {endpoint} cannot be reached to read "
            f"{hf['repo']} ({hf['name']}), and data.offline_fallback is not set. Run with "
            "network, set data.offline_fallback to local copies (as config/config.yaml does), "
            "or read local files: make run DATA='../shared/data/fineweb/*.jsonl'"
        )
    files = local_files(data["offline_fallback"])
    log.warning(
        "OFFLINE: the hub at %s cannot be reached; reading data.offline_fallback instead "
        "of %s (%s): %s",
        endpoint,
        hf["repo"],
        hf["name"],
        ", ".join(files),
    )
    record = {"source": "offline_fallback", "wanted": {"source": "hf", **hf}, "files": files}
    return iter_local_texts(files, column), record


def _describe(record: dict) -> str:
    return ", ".join(record.get("files", [])) or f"{record.get('repo')} ({record.get('name')})"


def _write_texts(path: Path, texts: list[str]) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(pa.table({"text": pa.array(texts, pa.large_string())}), tmp)


def prepare_corpus(data: dict, train_out: Path, val_out: Path, source_out: Path) -> dict:
    texts, record = open_source(data)
    # Empty documents would become a lone BOS token: they carry nothing to learn or measure.
    docs = list(itertools.islice((t for t in texts if t and t.strip()), data["max_docs"]))
    n_val = data["val_docs"]
    if not docs:
        raise ValueError(f"data: the source gave no non-empty documents ({_describe(record)})")
    if len(docs) <= n_val:
        raise ValueError(
            f"data.val_docs: {n_val} validation documents leave none for training "
            f"(the source gave {len(docs)} non-empty documents, data.max_docs={data['max_docs']})"
        )
    train_out.parent.mkdir(parents=True, exist_ok=True)
    _write_texts(val_out, docs[:n_val])
    _write_texts(train_out, docs[n_val:])
    record.update(
        n_docs=len(docs),
        n_val=n_val,
        n_train=len(docs) - n_val,
        val_bytes=sum(len(t.encode()) for t in docs[:n_val]),
        train_bytes=sum(len(t.encode()) for t in docs[n_val:]),
    )
    Path(source_out).write_text(json.dumps(record, indent=2) + "\n")
    return record


def _failure(data: dict, err: Exception, hub_failed: bool) -> str:
    """One line for a failed read; a hub failure also names the dataset and the fallback."""
    message = err.args[0] if isinstance(err, KeyError) else str(err)
    if hub_failed and data["source"] == "hf" and data["hf"]["repo"] not in message:
        fallback = data.get("offline_fallback")
        note = f"is read only when the hub does not answer at all: {fallback}"
        message += (
            f" (dataset {data['hf']['repo']}; data.offline_fallback "
            f"{note if fallback else 'is not set'})"
        )
    return f"prepare_corpus: {message}"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", required=True, help="the config's `data` mapping as JSON")
    p.add_argument("--train", required=True, type=Path)
    p.add_argument("--val", required=True, type=Path)
    p.add_argument("--source", required=True, type=Path)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    data = json.loads(args.data)
    from speedlab.data.hub import HubUnreachable

    try:
        record = prepare_corpus(data, args.train, args.val, args.source)
    except (HubUnreachable, OSError, ValueError, KeyError) as err:  # the hub's, or bad input
        hub_failed = isinstance(err, (HubUnreachable, ConnectionError))
        raise SystemExit(_failure(data, err, hub_failed)) from None
    log.info(
        "wrote %d train / %d val documents (%s)",
        record["n_train"],
        record["n_val"],
        record["source"],
    )


if __name__ == "__main__":
    main()
