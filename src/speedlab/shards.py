"""Token shards in the modded-nanogpt / parameter-golf format, so official shards work unchanged.

A shard is a 1024-byte header of 256 little-endian int32 (magic 20240520, version 1, token
count, zeros) followed by the tokens as little-endian uint16.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

MAGIC, VERSION = 20240520, 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4


def write_shard(path: str | Path, tokens: np.ndarray) -> None:
    """Write atomically: a killed job leaves a .tmp file, never a short shard with a full name."""
    tokens = np.asarray(tokens)
    if tokens.size and (tokens.min() < 0 or tokens.max() > np.iinfo(np.uint16).max):
        raise ValueError(f"{path}: token ids must fit in uint16")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[:3] = MAGIC, VERSION, tokens.size
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(header.tobytes())
        f.write(tokens.astype("<u2").tobytes())
    os.replace(tmp, path)


def read_header(path: str | Path) -> np.ndarray:
    header = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    if header.size != HEADER_INTS or header[0] != MAGIC or header[1] != VERSION:
        raise ValueError(f"{path}: not a token shard (expected magic {MAGIC}, version {VERSION})")
    return header


def read_shard(path: str | Path) -> np.ndarray:
    """The shard's tokens as a read-only uint16 memmap, after checking header and length."""
    n = int(read_header(path)[2])
    expected = HEADER_BYTES + 2 * n
    if os.path.getsize(path) != expected:
        raise ValueError(
            f"{path}: {os.path.getsize(path)} bytes, header promises {n} tokens ({expected} bytes)"
        )
    return np.memmap(path, dtype="<u2", mode="r", offset=HEADER_BYTES, shape=(n,))


def write_manifest(path: str | Path, shards: list[Path], counts: list[int], **extra) -> None:
    manifest = {
        "shards": [Path(s).name for s in shards],
        "tokens": counts,
        "total_tokens": int(sum(counts)),
        **extra,
    }
    Path(path).write_text(json.dumps(manifest, indent=2) + "\n")


def load_split(manifest_path: str | Path) -> np.ndarray:
    """All tokens of a split (its shards listed in the manifest, in order) in one array."""
    manifest_path = Path(manifest_path)
    manifest = json.loads(manifest_path.read_text())
    parts = [read_shard(manifest_path.parent / name) for name in manifest["shards"]]
    return np.concatenate(parts) if len(parts) > 1 else np.asarray(parts[0])
