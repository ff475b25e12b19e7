"""SentencePiece BPE tokenizer training, and the command line of the tokenizer stage.

Options follow parameter-golf's sp1024 tokenizer: byte fallback (no unknown text), digits split,
NFKC normalization, no dummy prefix; ids 0-3 are pad, BOS, EOS, unk.

The bytes-per-token table is in token_bytes, shard encoding in encode.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import logging
from pathlib import Path

import numpy as np
import sentencepiece as spm

from speedlab.data.documents import iter_parquet_texts
from speedlab.data.encode import BOS_ID, encode_split
from speedlab.data.token_bytes import token_byte_table
from speedlab.files import atomic_path

log = logging.getLogger("speedlab.data.tokenizer")


def train_tokenizer(train_docs: Path, model_out: Path, vocab_size: int, max_docs, threads: int):
    def sentences():
        # Lines, not whole documents: SentencePiece treats each item as one "sentence".
        for text in itertools.islice(iter_parquet_texts(train_docs), max_docs):
            for line in text.split("\n"):
                if line.strip():
                    yield line

    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=sentences(),
        model_writer=proto,
        model_type="bpe",
        vocab_size=vocab_size,
        byte_fallback=True,
        split_digits=True,
        normalization_rule_name="nmt_nfkc",
        add_dummy_prefix=False,
        character_coverage=0.999,
        hard_vocab_limit=False,
        pad_id=0,
        bos_id=BOS_ID,
        eos_id=2,
        unk_id=3,
        num_threads=threads,
        max_sentence_length=1 << 16,  # long lines are real text; the default 4192 drops them
        minloglevel=1,
    )
    with atomic_path(model_out) as tmp:
        tmp.write_bytes(proto.getvalue())


def max_docs(text: str) -> int | None:
    """tokenizer.train_docs as JSON: a positive number, or null for every train document."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    if value is not None and (type(value) is not int or value < 1):
        raise argparse.ArgumentTypeError(f"expected a positive integer or null, got {text!r}")
    return value


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train the tokenizer on the train documents")
    t.add_argument("--docs", type=Path, required=True)
    t.add_argument("--model", type=Path, required=True)
    t.add_argument("--vocab-size", type=int, required=True)
    t.add_argument(
        "--max-docs", type=max_docs, required=True, help="at most this many documents, or null"
    )
    t.add_argument("--threads", type=int, default=1)
    b = sub.add_parser("bytes", help="write token_bytes.npy for a tokenizer")
    b.add_argument("--model", type=Path, required=True)
    b.add_argument("--out", type=Path, required=True)
    e = sub.add_parser("encode", help="documents -> token shards + manifest")
    e.add_argument("--docs", type=Path, required=True)
    e.add_argument("--model", type=Path, required=True)
    e.add_argument("--out-dir", type=Path, required=True)
    e.add_argument("--split", required=True)
    e.add_argument("--shard-tokens", type=int, required=True, help="tokenizer.shard_tokens")
    e.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.cmd == "train":
        train_tokenizer(args.docs, args.model, args.vocab_size, args.max_docs, args.threads)
        log.info("trained %s (vocab %d)", args.model, args.vocab_size)
    elif args.cmd == "bytes":
        table = token_byte_table(spm.SentencePieceProcessor(model_file=str(args.model)))
        np.save(args.out, table)
        log.info("wrote %s: %s", args.out, table.shape)
    else:
        counts = encode_split(
            args.docs, args.model, args.out_dir, args.split, args.shard_tokens, args.threads
        )
        log.info("%s: %d tokens in %d shard(s)", args.split, sum(counts), len(counts))


if __name__ == "__main__":
    main()
