"""What both golden-fixture scripts (make_golden_pg.py, make_golden_modded.py) share: patching a
reference script by exact replacements, hashing, and the record of the machine that ran it.

bf16 rounds differently on different vector units, so a fixture records the CPU's model and the
flags that decide it (CPU_FLAGS); the golden tests use the fixture of their own CPU family.
"""

from __future__ import annotations

import hashlib
import platform
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CPU_FLAGS = {"avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16"}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rel(path: Path) -> str:
    return "./" + path.relative_to(REPO).as_posix()


def patch(source: str, patches: list) -> str:
    """source with each (what, old, new, count) applied; a pattern found a wrong number of
    times stops the script, naming it."""
    for what, old, new, count in patches:
        found = source.count(old)
        if found != count:
            sys.exit(f"patch {what!r}: pattern found {found} times, expected {count}:\n{old}")
        source = source.replace(old, new)
    return source


def cpu() -> dict:
    """The CPU's model name and the vector-unit flags that decide how bf16 rounds."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    return {
        "model": model.group(1).strip() if model else platform.processor(),
        "flags": sorted(CPU_FLAGS & set(text.split())),
    }


def machine(runtime_s: float) -> dict:
    """The provenance fields of the machine and the run: versions, CPU, threads, time."""
    import numpy as np
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cpu": cpu(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": 1,
        "runtime_s": round(runtime_s, 1),
        "made_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
