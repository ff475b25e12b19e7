"""Atomic file writes (a crash or a kill never leaves a short file under the name a rerun
trusts) and the content hash that names a resolved run config.

Standard library only: the trainer imports this on GPU machines that may lack the pipeline's
other dependencies.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary name beside `path` to write to, renamed onto `path` when the block succeeds.

    The name carries the pid, so two processes writing the same file never share a temporary;
    a failed block removes it (a killed process leaves it, under a name nothing reads).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def config_hash(cfg: dict) -> str:
    """16 hex digits of the sha256 of the config as canonical JSON (sorted keys)."""
    canonical = json.dumps(cfg, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def write_json(path: str | Path, obj: dict, sort_keys: bool = False) -> None:
    """obj as indented JSON at path, written atomically (atomic_path)."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=2, sort_keys=sort_keys) + "\n")
