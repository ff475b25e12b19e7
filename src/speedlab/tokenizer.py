"""SentencePiece BPE tokenizer, the bytes-per-token table, and documents -> token shards.

Options follow parameter-golf's sp1024 tokenizer: byte fallback (no unknown text), digits split,
NFKC normalization, no dummy prefix; ids 0-3 are pad, BOS, EOS, unk.

token_bytes.npy has shape (3, V), int16:
  row 0: UTF-8 bytes of the piece without a leading "▁" (byte pieces 1, control/unk/unused 0)
  row 1: 1 if the piece starts with "▁", which is one more space byte unless the previous
         token is a boundary (BOS or another control token)
  row 2: 1 if the token is a boundary (control, unknown or unused)

A byte-level BPE vocabulary (GPT-2's vocab.json, for modded-nanogpt's shards) gets the same
table from byte_level_table: row 0 the token's bytes, row 1 zero (its spaces are bytes of the
token itself), row 2 set for the special tokens such as <|endoftext|>.
"""

from __future__ import annotations

import argparse
import io
import itertools
import logging
from collections.abc import Collection, Mapping
from functools import cache
from pathlib import Path

import numpy as np
import sentencepiece as spm

from speedlab.data import iter_parquet_texts
from speedlab.files import atomic_path
from speedlab.shards import ShardWriter, file_fingerprint

log = logging.getLogger("speedlab.tokenizer")
BOS_ID = 1


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


def token_byte_table(sp: spm.SentencePieceProcessor) -> np.ndarray:
    table = np.zeros((3, sp.vocab_size()), dtype=np.int16)
    for i in range(sp.vocab_size()):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            table[2, i] = 1
        elif sp.is_byte(i):
            table[0, i] = 1
        else:
            piece = sp.id_to_piece(i)
            if piece.startswith("▁"):
                table[1, i] = 1
                piece = piece[1:]
            table[0, i] = len(piece.replace("▁", " ").encode("utf-8"))
    return table


@cache
def byte_level_alphabet() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet: the character standing for each byte, mapped back to it.

    Printable Latin-1 bytes stand for themselves; the other 68 bytes take the characters from
    U+0100 on, in byte order (so a space is "Ġ", a newline "Ċ"), as GPT-2's encoder defines it.
    """
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    others = [b for b in range(256) if b not in printable]
    chars = {b: chr(b) for b in printable} | {b: chr(0x100 + i) for i, b in enumerate(others)}
    return {c: b for b, c in chars.items()}


def byte_level_table(
    vocab: Mapping[str, int], specials: Collection[str], source: str = "vocab"
) -> np.ndarray:
    """The (3, V) bytes-per-token table of a byte-level BPE vocabulary {token: id}."""
    ids = sorted(vocab.values())
    if ids != list(range(len(ids))):
        raise ValueError(f"{source}: token ids are not 0..{len(ids) - 1} without gaps or repeats")
    missing = [t for t in specials if t not in vocab]
    if missing:
        raise ValueError(f"{source}: special token(s) {missing} not in the vocabulary")
    alphabet = byte_level_alphabet()
    table = np.zeros((3, len(ids)), dtype=np.int16)
    for token, i in vocab.items():
        if token in specials:
            table[2, i] = 1
            continue
        unknown = set(token) - alphabet.keys()
        if unknown:
            raise ValueError(
                f"{source}: token {token!r} (id {i}) has characters outside the byte-level "
                f"alphabet: {sorted(unknown)}"
            )
        table[0, i] = len(token)  # one character per byte
    return table


def sequence_bytes(table: np.ndarray, prev: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Bytes that each target token stands for, given the token before it."""
    base, lead_space, boundary = (table[r].astype(np.int64) for r in range(3))
    return base[target] + lead_space[target] * (1 - boundary[prev])


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


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train the tokenizer on the train documents")
    t.add_argument("--docs", type=Path, required=True)
    t.add_argument("--model", type=Path, required=True)
    t.add_argument("--vocab-size", type=int, required=True)
    t.add_argument("--max-docs", type=int, default=None)
    t.add_argument("--threads", type=int, default=1)
    b = sub.add_parser("bytes", help="write token_bytes.npy for a tokenizer")
    b.add_argument("--model", type=Path, required=True)
    b.add_argument("--out", type=Path, required=True)
    e = sub.add_parser("encode", help="documents -> token shards + manifest")
    e.add_argument("--docs", type=Path, required=True)
    e.add_argument("--model", type=Path, required=True)
    e.add_argument("--out-dir", type=Path, required=True)
    e.add_argument("--split", required=True)
    e.add_argument("--shard-tokens", type=int, default=100_000_000)
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
