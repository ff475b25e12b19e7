"""Benchmark: `snakemake -n` on a synthetic study of 10 conditions x 100 seeds (1,000 runs).

Writes a config beside an empty working directory (the quickstart config plus the synthetic
study, local FineWeb documents from ../shared), then times the dry run (planning every data,
tokenizer, training, roundtrip and analysis job) the way a user would start it, in its own
process. Prints the seconds, the number of jobs planned and the ratio to the target (10 s on
2 cores; below 1 meets it). Example:

    .venv/bin/python scripts/bench_dryrun.py --conditions 10 --seeds 100
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
FINEWEB = REPO.parent / "shared" / "data" / "fineweb" / "*.jsonl"
TARGET_S = 10.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--conditions", type=int, default=10)
    p.add_argument("--seeds", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3, help="report the best of this many")
    args = p.parse_args()

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["data"].update(source="local", local=str(FINEWEB))
    config["studies"] = {
        "big": {
            "baseline": "c0",
            "seeds": list(range(args.seeds)),
            "conditions": {
                f"c{i}": {"optim.momentum": round(0.90 + 0.005 * i, 4)}
                for i in range(args.conditions)
            },
        }
    }
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "config.yaml").write_text(yaml.safe_dump(config))
        cmd = ["snakemake", "-n", "--snakefile", str(REPO / "Snakefile")]
        cmd += ["--directory", str(work), "--configfile", str(work / "config.yaml")]
        cmd += ["--cores", "2", "--quiet", "rules"]
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            times.append(time.perf_counter() - t0)
            if done.returncode:
                sys.exit(f"snakemake -n failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    m = re.search(r"^total\s+(\d+)", done.stdout + done.stderr, re.MULTILINE)
    jobs = m.group(1) if m else "?"
    best = min(times)
    print(
        f"snakemake -n, {args.conditions} conditions x {args.seeds} seeds: {jobs} jobs planned "
        f"in {best:.2f} s (best of {args.repeats}: {', '.join(f'{t:.2f}' for t in times)}) "
        f"on {os.cpu_count()} cores"
    )
    print(f"ratio to the {TARGET_S:g} s target: {best / TARGET_S:.2f} (below 1 meets it)")


if __name__ == "__main__":
    main()
