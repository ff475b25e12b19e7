"""Documents -> token shards: streaming, resumable, the same bytes for any thread count."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import sentencepiece as spm

from speedlab.data.documents import iter_parquet_texts
from speedlab.data.shards import ShardWriter, file_fingerprint

BOS_ID = 1


def encode_split(
    docs: Path,
    model: Path,
    out_dir: Path,
    split: str,
    shard_tokens: int,
    threads: int,
    batch_docs: int = 1024,
) -> list[int]:
    """Encode documents to shards fineweb_<split>_NNNNNN.bin, each document preceded by BOS.

    Streaming: memory holds one batch of documents and at most one shard. `threads` are
    SentencePiece's own encoder threads (C++, outside the GIL); the output does not depend on
    their number. A killed run resumes after its last complete shard (see ShardWriter).
    """
    sp = spm.SentencePieceProcessor(model_file=str(model))
    if sp.vocab_size() > 65536:
        raise ValueError(
            f"{model}: vocab size {sp.vocab_size()} has ids above 65535, which do not fit the "
            "uint16 shard format; use tokenizer.vocab_size <= 65536"
        )
    fingerprint = {
        "docs": file_fingerprint(docs),
        "model": file_fingerprint(model, content_hash=True),
    }
    writer = ShardWriter(out_dir, split, shard_tokens, fingerprint)
    texts = iter_parquet_texts(docs)
    n_docs = sum(1 for _ in itertools.islice(texts, writer.next_doc))  # already in shards
    skip = writer.skip
    while batch := list(itertools.islice(texts, batch_docs)):
        n_docs += len(batch)
        for ids in sp.encode(batch, num_threads=threads):
            tokens = np.empty(len(ids) + 1, dtype=np.uint16)
            tokens[0] = BOS_ID
            tokens[1:] = ids
            writer.add(tokens[skip:])
            skip = 0
    if n_docs == 0:
        raise ValueError(f"{docs}: no documents to tokenize")
    return writer.close(tokenizer=Path(model).name, bos_id=BOS_ID, vocab_size=sp.vocab_size())
