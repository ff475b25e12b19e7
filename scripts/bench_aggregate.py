"""Benchmark: a study of many runs -> tables, statistics, figures and report, as the rules run them.

Writes --runs synthetic run directories (summary.json, roundtrip.json, provenance.json and a
metrics.jsonl of --steps steps, as the trainer and the roundtrip write them; 10 conditions by
default), then times each analysis command exactly as the rules call it, each in its own process.
Prints the seconds per stage, the total and the ratio total / target (target: 1,000
runs in under 15 s on 2 cores, so a ratio below 1 meets it). Example:

    .venv/bin/python scripts/bench_aggregate.py --runs 1000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 15.0


def write_runs(root: Path, n_runs: int, n_conditions: int, steps: int) -> list[Path]:
    rng = np.random.default_rng(0)
    conditions = [f"c{i}" for i in range(n_conditions)]
    summaries = []
    for i in range(n_runs):
        cond, seed = conditions[i % n_conditions], i // n_conditions
        d = root / "runs" / cond / f"seed{seed}"
        d.mkdir(parents=True)
        effect = 0.01 * (i % n_conditions)
        final = 2.5 + effect + rng.normal(0, 0.01)
        meta = {"study": "bench", "condition": cond, "seed": seed, "config_hash": "0" * 16}
        cfg = {"optim": {"matrix_lr": 0.04 * (1 + i % n_conditions)}, "train": {"steps": steps}}
        with open(d / "metrics.jsonl", "w") as f:
            for step in range(0, steps + 1, 10):
                rec = {"step": step, "tokens": step * 2048, "time_s": step * 0.2}
                rec["train_loss"] = final * 1.7 + 3.0 * np.exp(-step / 50) + rng.normal(0, 0.02)
                if step % 50 == 0:
                    rec["val_loss"] = final * 1.7 + 3.0 * np.exp(-step / 50)
                    rec["val_bpb"] = final + 1.7 * np.exp(-step / 50)
                f.write(json.dumps(rec) + "\n")
        summary = {
            **meta,
            "n_params": 592144,
            "steps": steps,
            "steps_planned": steps,
            "tokens": steps * 2048,
            "train_time_s": steps * 0.2 + rng.normal(0, 1),
            "train_loss": final * 1.7,
            "val_loss": final * 1.7,
            "val_bpb": final,
            "diverged": False,
            "mfu": None,
            "peak_memory_mb": 900.0,
        }
        roundtrip = {
            "q_val_loss": final * 1.7 + 0.002,
            "q_val_bpb": final + 0.001,
            "payload_bytes": 2_000_000,
            "compressed_bytes": 570_000 + int(rng.integers(0, 2000)),
            "artifact_bytes": 640_000,
        }
        provenance = {
            **meta,
            "config": cfg,
            "device": "cpu",
            "host": "bench",
            "torch": "2.13.0",
            "world_size": 1,
            "git_commit": "0" * 40,
            "git_dirty": False,
        }
        for name, obj in (
            ("summary.json", summary),
            ("roundtrip.json", roundtrip),
            ("provenance.json", provenance),
        ):
            (d / name).write_text(json.dumps(obj))
        summaries.append(d / "summary.json")
    return summaries


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--conditions", type=int, default=10)
    p.add_argument("--steps", type=int, default=200)
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        summaries = write_runs(root, args.runs, args.conditions, args.steps)
        conditions = [f"c{i}" for i in range(args.conditions)]
        seeds = -(-args.runs // args.conditions)
        out = root / "study"
        fig = out / "figures"
        py = [sys.executable, "-m"]

        def options(**values) -> list[str]:
            return ["--options", json.dumps(values)]

        def figure(name: str, table: str) -> list[str]:
            o = options(figure=name, conditions=conditions, baseline="c0")
            files = ["--table", f"{out}/{table}.parquet", "--out", f"{fig}/{name}.png"]
            return [*py, "speedlab.analysis.figures", *o, *files]

        report = {
            "study": "bench",
            "description": "",
            "metric": "q_val_bpb",
            "baseline": "c0",
            "planned_seeds": seeds,
            "conditions": {c: {} for c in conditions},
            "published": None,
            "scale": "default",
            "runs": f"{out}/runs.parquet",
            "stats": f"{out}/stats.csv",
            "sweep": None,
            "scaling": None,
            "figures": [{"title": "Final", "path": f"{fig}/final_q_val_bpb.png"}],
        }
        stages = {
            "collect": [*py, "speedlab.analysis.collect", *options(study="bench", baseline="c0")]
            + ["--summaries", *map(str, summaries)]
            + ["--runs-out", f"{out}/runs.parquet", "--curves-out", f"{out}/curves.parquet"],
            "stats": [*py, "speedlab.analysis.stats", "--runs", f"{out}/runs.parquet"]
            + options(
                metrics=["q_val_bpb", "train_time_s"],
                baseline="c0",
                conditions=conditions,
                planned_seeds=seeds,
            )
            + ["--out", f"{out}/stats.csv", "--json", f"{out}/stats.json"],
            "figure val_bpb_vs_step": figure("val_bpb_vs_step", "curves"),
            "figure train_loss_vs_step": figure("train_loss_vs_step", "curves"),
            "figure final_q_val_bpb": figure("final_q_val_bpb", "runs"),
            "figure quantization_cost": figure("quantization_cost", "runs"),
            "report": [*py, "speedlab.analysis.report", "--options", json.dumps(report)]
            + ["--out", f"{out}/report.md", "--html", f"{out}/report.html"],
        }
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        total = 0.0
        print(f"{args.runs} runs, {args.conditions} conditions, {args.steps} steps each")
        for name, cmd in stages.items():
            t0 = time.perf_counter()
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            dt = time.perf_counter() - t0
            if done.returncode:
                sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
            total += dt
            print(f"  {name:<28}{dt:7.2f} s")
        print(f"total {total:.2f} s on {os.cpu_count()} cores; target {TARGET_S:g} s")
        print(f"ratio total / target: {total / TARGET_S:.2f} (below 1 meets the target)")


if __name__ == "__main__":
    main()
