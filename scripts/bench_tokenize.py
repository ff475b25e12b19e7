"""Benchmark: documents -> shards (speedlab.data.encode.encode_split) against raw SentencePiece.

Both sides encode the same texts with the same number of encoder threads, in the same process;
the best of --repeats runs of each is compared. Prints docs/s, tokens/s and the ratio
speedlab / raw (target >= 0.9). Example:

    .venv/bin/python scripts/bench_tokenize.py --threads 2
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import sentencepiece as spm

from speedlab.data.encode import encode_split

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--docs", default=str(SHARED / "fineweb" / "*.jsonl"))
    p.add_argument("--model", default=str(SHARED / "tokenizer_lab_retrain/fineweb_1024_bpe.model"))
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    texts = [
        json.loads(line)["text"]
        for f in sorted(glob.glob(args.docs))
        for line in Path(f).read_text().splitlines()
    ]
    sp = spm.SentencePieceProcessor(model_file=args.model)
    n_tokens = sum(len(ids) + 1 for ids in sp.encode(texts, num_threads=args.threads))
    with tempfile.TemporaryDirectory() as tmp:
        docs = Path(tmp) / "docs.parquet"
        pq.write_table(pa.table({"text": texts}), docs)
        raw = best_of(args.repeats, lambda: sp.encode(texts, num_threads=args.threads))
        ours = best_of(
            args.repeats,
            lambda: encode_split(docs, Path(args.model), Path(tmp) / "out", "train", 10**8,
                                 args.threads),
        )  # fmt: skip
    mb = sum(len(t.encode()) for t in texts) / 1e6
    print(f"{len(texts):,} documents, {mb:.1f} MB, {n_tokens:,} tokens, {args.threads} threads")
    for name, t in (("raw sentencepiece encode", raw), ("speedlab docs -> shards", ours)):
        print(f"{name:25}: {len(texts) / t:8,.0f} docs/s {n_tokens / t:12,.0f} tok/s")
    print(f"ratio speedlab / raw     : {raw / ours:.3f}  (target >= 0.9)")


if __name__ == "__main__":
    main()
