"""Token shards in the modded-nanogpt / parameter-golf format, so official shards work unchanged.

A shard is a 1024-byte header of 256 little-endian int32 (magic 20240520, version 1, token
count, zeros) followed by the tokens as little-endian uint16.

    speedlab shards info FILE...                  header, tokens, BOS count, id range
    speedlab shards check --vocab 1024 FILE...    verify every invariant (exit 1 if not)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections import deque
from pathlib import Path

import numpy as np

from speedlab.files import atomic_path

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
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(header.tobytes())
        f.write(tokens.astype("<u2").tobytes())


def read_header(path: str | Path) -> np.ndarray:
    header = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    if header.size != HEADER_INTS or header[0] != MAGIC or header[1] != VERSION:
        raise ValueError(f"{path}: not a token shard (expected magic {MAGIC}, version {VERSION})")
    return header


def shard_tokens(path: str | Path) -> int:
    """The shard's token count, after checking its header and that its length matches."""
    n = int(read_header(path)[2])
    expected = HEADER_BYTES + 2 * n
    if os.path.getsize(path) != expected:
        raise ValueError(
            f"{path}: {os.path.getsize(path)} bytes, header promises {n} tokens ({expected} bytes)"
        )
    return n


def read_shard(path: str | Path) -> np.ndarray:
    """The shard's tokens as a read-only uint16 memmap, after checking header and length."""
    n = shard_tokens(path)
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


class SplitReader:
    """A split's shards (in manifest order) read as one endless token stream, window by window.

    read(start, n) returns tokens start .. start+n of the shards' concatenation repeated forever
    (wrapping from the last shard back to the first), reading just those bytes from the files:
    nothing is memory-mapped or kept, so a process's memory does not grow with the shard count
    or with how far training has read.
    """

    def __init__(self, manifest_path: str | Path):
        manifest_path = Path(manifest_path)
        manifest = json.loads(manifest_path.read_text())
        self.paths = [manifest_path.parent / name for name in manifest["shards"]]
        self.lengths = [shard_tokens(path) for path in self.paths]
        self.starts = np.concatenate(([0], np.cumsum(self.lengths)))
        self.total = int(self.starts[-1])
        if self.total == 0:
            raise ValueError(f"{manifest_path}: the split has no tokens")

    def read(self, start: int, n: int) -> np.ndarray:
        out, pos = np.empty(n, dtype=np.int64), start % self.total
        done = 0
        while done < n:
            i = int(np.searchsorted(self.starts, pos, side="right")) - 1
            offset = pos - int(self.starts[i])
            k = min(n - done, self.lengths[i] - offset)
            out[done : done + k] = np.fromfile(
                self.paths[i], dtype="<u2", count=k, offset=HEADER_BYTES + 2 * offset
            )
            done, pos = done + k, (pos + k) % self.total
        return out


def file_fingerprint(path: str | Path, content_hash: bool = False) -> dict:
    """Identity of an input file for resuming: size and mtime, or the sha256 of small files."""
    st = os.stat(path)
    fp = {"name": Path(path).name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if content_hash:
        fp["sha256"] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        del fp["mtime_ns"]
    return fp


class ShardWriter:
    """Cuts the token stream of consecutive documents into shards of `shard_tokens`, resumably.

    After each shard it records in fineweb_<split>.progress.json the document the next shard
    starts in and how many of that document's tokens are already written. A killed job therefore
    resumes after its last complete shard and produces the same bytes as an uninterrupted run;
    a progress file made from other inputs (fingerprint mismatch) is ignored and the split is
    redone from scratch. The manifest, written last, marks the split complete.
    """

    def __init__(self, out_dir: Path, split: str, shard_tokens: int, fingerprint: dict):
        self.out_dir, self.split, self.shard_tokens = Path(out_dir), split, shard_tokens
        self.fingerprint = {**fingerprint, "shard_tokens": shard_tokens}
        self.progress_path = self.out_dir / f"fineweb_{split}.progress.json"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.records = self._resumable()  # {name, tokens, next_doc, skip} per written shard
        # The document the stream restarts at, and how many of its tokens to drop.
        self.next_doc = self.records[-1]["next_doc"] if self.records else 0
        self.skip = self.records[-1]["skip"] if self.records else 0
        kept = {r["name"] for r in self.records}
        for stale in self.out_dir.glob(f"fineweb_{split}_*.bin"):
            if stale.name not in kept:
                stale.unlink()  # an unrecorded or old shard must not end up in the manifest
        self._doc, self._doc_skip = self.next_doc, self.skip
        self._pending: deque[np.ndarray] = deque()
        self._n_pending = 0

    def _resumable(self) -> list[dict]:
        try:
            progress = json.loads(self.progress_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return []
        if progress.get("fingerprint") != self.fingerprint:
            return []
        shards = progress.get("shards", [])
        for s in shards:
            path = self.out_dir / s["name"]
            try:
                if int(read_header(path)[2]) != s["tokens"] or os.path.getsize(path) != (
                    HEADER_BYTES + 2 * s["tokens"]
                ):
                    return []
            except (OSError, ValueError):
                return []
        return shards

    def add(self, tokens: np.ndarray) -> None:
        """Append the tokens of the next document (the first call: the resumed document's tail)."""
        self._pending.append(tokens)
        self._n_pending += len(tokens)
        while self._n_pending >= self.shard_tokens:
            self._write(self.shard_tokens)

    def _write(self, n: int) -> None:
        parts, need = [], n
        while need:
            head = self._pending[0]
            if len(head) <= need:
                parts.append(self._pending.popleft())
                need -= len(head)
                self._doc, self._doc_skip = self._doc + 1, 0
            else:
                parts.append(head[:need])
                self._pending[0] = head[need:]
                self._doc_skip += need
                need = 0
        self._n_pending -= n
        name = f"fineweb_{self.split}_{len(self.records):06d}.bin"
        write_shard(self.out_dir / name, np.concatenate(parts))
        self.records.append(dict(name=name, tokens=n, next_doc=self._doc, skip=self._doc_skip))
        with atomic_path(self.progress_path) as tmp:
            tmp.write_text(json.dumps({"fingerprint": self.fingerprint, "shards": self.records}))

    def close(self, **manifest_extra) -> list[int]:
        if self._n_pending:
            self._write(self._n_pending)
        counts = [r["tokens"] for r in self.records]
        names = [r["name"] for r in self.records]
        write_manifest(self.out_dir / f"fineweb_{self.split}.json", names, counts, **manifest_extra)
        self.progress_path.unlink(missing_ok=True)
        return counts


def inspect_shard(path: str | Path, vocab: int | None = None, bos_id: int = 1) -> tuple[dict, list]:
    """Facts about one shard and the list of invariants it breaks (empty when it is sound)."""
    path = Path(path)
    size = os.path.getsize(path)
    info: dict = {"file": str(path), "bytes": size}
    if size < HEADER_BYTES:
        return info, [f"{size} bytes, shorter than the {HEADER_BYTES}-byte header"]
    header = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    info.update(magic=int(header[0]), version=int(header[1]), tokens=int(header[2]))
    problems = []
    if header[0] != MAGIC:
        problems.append(f"magic {header[0]} (expected {MAGIC})")
    if header[1] != VERSION:
        problems.append(f"version {header[1]} (expected {VERSION})")
    if header[3:].any():
        problems.append("header ints 3..255 are not all zero")
    body = size - HEADER_BYTES
    if body % 2:
        problems.append(f"body of {body} bytes is not a whole number of uint16 tokens")
    if body // 2 != header[2]:
        problems.append(f"header says {header[2]} tokens, body holds {body // 2}")
    tokens = np.fromfile(path, dtype="<u2", offset=HEADER_BYTES)
    if tokens.size:
        info.update(
            bos=int((tokens == bos_id).sum()), min_id=int(tokens.min()), max_id=int(tokens.max())
        )
        if vocab is not None and tokens.max() >= vocab:
            problems.append(f"token id {tokens.max()} is outside the vocabulary (size {vocab})")
        if info["bos"] == 0:
            problems.append(f"no BOS token (id {bos_id}): documents are not delimited")
    else:
        problems.append("no tokens")
    return info, problems


def main(argv=None, prog: str = "python -m speedlab.data.shards") -> None:
    p = argparse.ArgumentParser(prog=prog, description="Inspect or verify token shards.")
    p.add_argument("mode", choices=["info", "check"])
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--vocab", type=int, help="vocabulary size: every id must be below it")
    p.add_argument("--bos-id", type=int, default=1)
    args = p.parse_args(argv)
    failed = 0
    for path in args.files:
        info, problems = inspect_shard(path, args.vocab, args.bos_id)
        facts = " ".join(f"{k}={v}" for k, v in info.items() if k != "file")
        if args.mode == "info":
            print(f"{path}: {facts}")
        if args.mode == "check" or problems:
            for problem in problems:
                print(f"{path}: FAIL {problem}", file=sys.stderr)
            if args.mode == "check" and not problems:
                print(f"{path}: ok ({info['tokens']:,} tokens, {info['bos']:,} documents)")
        failed += bool(problems)
    if args.mode == "check" and failed:
        sys.exit(f"{failed} of {len(args.files)} shard(s) failed the check")


if __name__ == "__main__":
    main()
