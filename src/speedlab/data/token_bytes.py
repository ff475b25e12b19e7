"""The bytes-per-token table behind bits per byte, parameter-golf's rule.

token_bytes.npy has shape (3, V), int16:
  row 0: UTF-8 bytes of the piece without a leading "▁" (byte pieces 1, control/unk/unused 0)
  row 1: 1 if the piece starts with "▁", which is one more space byte unless the previous
         token is a boundary (BOS or another control token)
  row 2: 1 if the token is a boundary (control, unknown or unused)

A byte-level BPE vocabulary (GPT-2's vocab.json, for modded-nanogpt's shards) gets the same
table from byte_level_table: row 0 the token's bytes, row 1 zero (its spaces are bytes of the
token itself), row 2 set for the special tokens such as <|endoftext|>.

numpy only: the trainer's validation imports sequence_bytes without SentencePiece.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from functools import cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import sentencepiece as spm


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
