"""The GPU check of issue 12: speedlab's `full1gpu` against parameter-golf's train_gpt.py.

    python scripts/gpu_check.py prepare     # here, on the CPU: data, reference copy, configs
    python scripts/gpu_check.py run         # on one H100/H200: gpu_check/report.json (or $OUT/)

`prepare` makes the git-ignored folder gpu_check/ (a few MB, carried to the GPU machine): sp1024
shards and tokenizer from the FineWeb sample beside the checkout (the quickstart's data rules,
offline fallback included), a copy of reference/parameter-golf/train_gpt.py (never committed),
and speedlab's resolved `full1gpu` config for STEPS steps. The GPU machine may have another
Python and torch and no Snakemake or jsonschema, so `run` needs only torch, numpy and
sentencepiece: it calls both trainers directly, one after the other, each for STEPS steps on
the same shards (wrapping around the small sample does not matter for speed), and writes:

- the versions it ran with (python, torch, CUDA, GPU);
- steady-state tokens/s of each (training time between step SKIP and the last step), the ratio
  speedlab / train_gpt.py and the MFU of each (6N + attention FLOPs per token, dense bf16 peak);
- peak memory of each, and speedlab's against the plan's estimate;
- per-step train-loss differences over the first 50 steps (train_gpt.py prints 4 decimals);
- the int8+zlib roundtrip's time on the GPU for each;
- recompilations after speedlab's compile warm-up (dynamo's graph count; must be 0).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "gpu_check"
STEPS, SKIP, COMPARED = 300, 50, 50
CORPUS = "fineweb10B-sample_sp1024"
PEAK_BF16_TFLOPS = 989.0  # H100 / H200 SXM dense bf16, vendor data sheets


def prepare() -> None:
    """Data (via the quickstart's rules), the reference copy and speedlab's config."""
    targets = [
        f"results/tokenizer/{CORPUS}.model",
        *(f"results/shards/{CORPUS}/fineweb_{s}.json" for s in ("train", "val")),
        f"results/shards/{CORPUS}/token_bytes.npy",
    ]
    subprocess.run(["snakemake", "--cores", "2", *targets], cwd=REPO, check=True)
    shards = REPO / "results/shards" / CORPUS
    shutil.rmtree(WORK, ignore_errors=True)
    shutil.copytree(shards, WORK / "data", ignore=shutil.ignore_patterns("*.progress.json"))
    shutil.copy(REPO / targets[0], WORK / "tokenizer.model")
    reference = REPO / "reference/parameter-golf/train_gpt.py"
    if not reference.exists():
        sys.exit(f"{reference} is missing: git clone https://github.com/openai/parameter-golf")
    shutil.copy(reference, WORK / "train_gpt.py")
    (WORK / "speedlab_full1gpu.json").write_text(json.dumps(speedlab_config(), indent=2))
    print(f"prepared {WORK} ({sum(f.stat().st_size for f in WORK.rglob('*')) / 1e6:.1f} MB)")


def speedlab_config() -> dict:
    sys.path.insert(0, str(REPO / "src"))
    import yaml

    from speedlab.config import run_config, validate

    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["scale"] = "full1gpu"
    cfg = run_config(validate(config), "quickstart", "uniform")
    cfg["train"].update(steps=STEPS, max_wallclock_s=None, val_every=10**6, val_tokens=0)
    return cfg


def reference_env() -> dict:
    """train_gpt.py's defaults (the baseline) for STEPS steps, logging every step's loss."""
    return {
        **os.environ,
        "DATA_PATH": str(WORK / "data"),
        "TOKENIZER_PATH": str(WORK / "tokenizer.model"),
        "RUN_ID": "gpu_check",
        "ITERATIONS": str(STEPS),
        "MAX_WALLCLOCK_SECONDS": "0",
        "VAL_LOSS_EVERY": "0",
        "TRAIN_LOG_EVERY": "1",
    }


def run_reference(log_dir: Path) -> dict:
    t0 = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
         str(WORK / "train_gpt.py")],
        cwd=log_dir, env=reference_env(), capture_output=True, text=True,
    )  # fmt: skip
    (log_dir / "train_gpt.out").write_text(p.stdout + p.stderr)
    if p.returncode:
        return {"error": f"exit {p.returncode}", "tail": (p.stdout + p.stderr)[-3000:]}
    return {**parse_reference(p.stdout), "wall_s": time.perf_counter() - t0}


def parse_reference(log: str) -> dict:
    steps = {
        int(m[1]): (float(m[2]), float(m[3]))
        for m in re.finditer(r"step:(\d+)/\d+ train_loss:(\S+) train_time:(\d+)ms", log)
    }
    peak = re.search(r"peak memory allocated: (\d+) MiB", log)
    rt = re.search(r"final_int8_zlib_roundtrip val_loss:\S+ val_bpb:\S+ eval_time:(\d+)ms", log)
    exact = re.search(r"final_int8_zlib_roundtrip_exact val_loss:(\S+)", log)
    return {
        "train_loss": {s: v[0] for s, v in steps.items()},
        "train_time_s": {s: v[1] / 1000 for s, v in steps.items()},
        "peak_memory_mb": float(peak[1]) if peak else None,
        "roundtrip_eval_s": float(rt[1]) / 1000 if rt else None,
        "q_val_loss": float(exact[1]) if exact else None,
    }


def run_speedlab(out: Path) -> dict:
    data = WORK / "data"
    args = [sys.executable, "-m", "speedlab.train.loop",
            "--config", (WORK / "speedlab_full1gpu.json").read_text(), "--seed", "1337",
            "--train", str(data / "fineweb_train.json"), "--val", str(data / "fineweb_val.json"),
            "--token-bytes", str(data / "token_bytes.npy"), "--out-dir", str(out),
            "--threads", "8"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    t0 = time.perf_counter()
    p = subprocess.run(args, env=env, capture_output=True, text=True)
    (out / "speedlab.out").write_text(p.stdout + p.stderr)
    if p.returncode:
        return {"error": f"exit {p.returncode}", "tail": (p.stdout + p.stderr)[-3000:]}
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    steps = {r["step"]: r for r in rows if "train_loss" in r}
    summary = json.loads((out / "summary.json").read_text())
    roundtrip = json.loads((out / "roundtrip.json").read_text())
    return {
        "train_loss": {s: r["train_loss"] for s, r in steps.items()},
        "train_time_s": {s: r["time_s"] for s, r in steps.items()},
        "summary": summary,
        "roundtrip_eval_s": roundtrip["eval_time_s"],
        "q_val_loss": roundtrip["q_val_loss"],
        "wall_s": time.perf_counter() - t0,
    }


def steady_tokens_per_s(times: dict, tokens_per_step: int) -> float:
    """Tokens/s between step SKIP and the last step (warm-up and compilation left out)."""
    last = max(times)
    return (last - SKIP) * tokens_per_step / (times[last] - times[SKIP])


def compare(ref: dict, ours: dict, cfg: dict) -> dict:
    tokens = cfg["train"]["batch_seqs"] * cfg["train"]["seq_len"]
    fpt = ours["summary"]["model_flops_per_token"]
    rates = {k: steady_tokens_per_s(r["train_time_s"], tokens) for k, r in
             (("reference", ref), ("speedlab", ours))}  # fmt: skip
    diffs = [abs(ref["train_loss"][s] - ours["train_loss"][s]) for s in range(1, COMPARED + 1)]
    summary = ours["summary"]

    def both(key):
        return {"reference": ref[key], "speedlab": ours[key]}

    return {
        "tokens_per_s": rates,
        "speedlab_over_reference": rates["speedlab"] / rates["reference"],
        "mfu": {k: v * fpt / (PEAK_BF16_TFLOPS * 1e12) for k, v in rates.items()},
        "peak_memory_mb": {
            "reference": ref["peak_memory_mb"],
            "speedlab": summary["peak_memory_mb"],
        },
        "speedlab_peak_estimate_mb": summary.get("peak_memory_estimate_mb"),
        "train_loss_abs_diff_first_50": {"max": max(diffs), "mean": sum(diffs) / len(diffs)},
        "roundtrip_eval_s": both("roundtrip_eval_s"),
        "q_val_loss": both("q_val_loss"),
        "recompiles_after_warmup": summary.get("recompiles_after_warmup"),
    }


def versions() -> dict:
    import numpy
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "numpy": numpy.__version__, "gpu": gpu}  # fmt: skip


def run(report_path: Path) -> None:
    report_path.parent.mkdir(parents=True, exist_ok=True)
    scratch = report_path.parent / "gpu_check_runs"
    for d in ("reference", "speedlab"):
        (scratch / d).mkdir(parents=True, exist_ok=True)
    report = {"versions": versions(), "steps": STEPS, "started_utc": time.time()}
    cfg = json.loads((WORK / "speedlab_full1gpu.json").read_text())
    report["reference"] = ref = run_reference(scratch / "reference")
    report["speedlab"] = ours = run_speedlab(scratch / "speedlab")
    if "error" not in ref and "error" not in ours:
        report["comparison"] = compare(ref, ours, cfg)
    report_path.write_text(json.dumps(report, indent=2))
    print(json.dumps(report.get("comparison", report), indent=2))
    if "comparison" not in report or report["comparison"]["recompiles_after_warmup"]:
        sys.exit("gpu check FAILED: see the report")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("mode", choices=["prepare", "run"])
    out = Path(os.environ.get("OUT", WORK)) / "gpu_check.json"
    p.add_argument("--report", type=Path, default=out)
    args = p.parse_args()
    prepare() if args.mode == "prepare" else run(args.report)


if __name__ == "__main__":
    main()
