"""CPU benchmarks of issue 12, each a ratio measured in one run of this script:

    python scripts/bench_scale.py [--only rss,roundtrip,overhead]

- rss: a training process's peak RSS with 1 vs 40 train shards (data_order parameter_golf: the
  shards are streamed, so the ratio should be ~1.0), next to what loading the 40 shards into one
  array costs (what speedlab did before);
- roundtrip: int8+zlib re-evaluation tokens/s of the 9x512 parameter-golf model with 1 thread vs
  all cores;
- overhead: the trainer's step time at log_every 50 against a bare loop of the same model,
  optimizers and batches (forward, backward, optimizer steps, nothing else); target <= 3%.

Newton-Schulz time per rank with 1/2/4 processes is scripts/bench_ns.py.
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
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from speedlab.config import run_config, validate  # noqa: E402
from speedlab.data.shards import write_manifest, write_shard  # noqa: E402

SHARD_TOKENS = 2_500_000  # 40 shards: 100M tokens, 200 MB


def quickstart_config(scale: str | None = None, **train) -> dict:
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    if scale:
        config["scale"] = scale
    cfg = run_config(validate(config), "quickstart", "uniform")
    cfg["train"].update(device="cpu", compile=False, **train)
    return cfg


def make_split(folder: Path, split: str, n_shards: int, tokens: int, vocab: int = 1024) -> Path:
    rng = np.random.default_rng(0)
    names = [f"fineweb_{split}_{i:06d}.bin" for i in range(n_shards)]
    for name in names:
        write_shard(folder / name, rng.integers(0, vocab, tokens, dtype=np.uint16))
    write_manifest(folder / f"fineweb_{split}.json", names, [tokens] * n_shards)
    np.save(folder / "token_bytes.npy", np.ones((3, vocab), dtype=np.int16))
    return folder / f"fineweb_{split}.json"


def train_subprocess(cfg: dict, train: Path, val: Path, out: Path) -> dict:
    args = [sys.executable, "-m", "speedlab.train.loop", "--config", json.dumps(cfg),
            "--seed", "0", "--train", str(train), "--val", str(val),
            "--token-bytes", str(train.parent / "token_bytes.npy"),
            "--out-dir", str(out)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    subprocess.run(args, env=env, check=True, capture_output=True)
    return json.loads((out / "summary.json").read_text())


def peak_rss_of_loading(manifest: Path) -> float:
    code = (
        "import resource,sys; from speedlab.data.shards import load_split; "
        "t = load_split(sys.argv[1]); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    out = subprocess.run([sys.executable, "-c", code, str(manifest)], env=env, check=True,
                         capture_output=True, text=True).stdout  # fmt: skip
    return float(out.split()[-1])


def bench_rss(tmp: Path) -> dict:
    cfg = quickstart_config("smoke", steps=20, data_order="parameter_golf", val_tokens=4096)
    val = make_split(tmp / "val", "val", 1, 10_000)
    rss = {}
    for n in (1, 40):
        train = make_split(tmp / f"train{n}", "train", n, SHARD_TOKENS)
        rss[n] = train_subprocess(cfg, train, val, tmp / f"out{n}")["peak_memory_mb"]
    loading = peak_rss_of_loading(tmp / "train40/fineweb_train.json")
    print(f"rss: peak RSS with 1 shard {rss[1]:.0f} MB, with 40 shards {rss[40]:.0f} MB: "
          f"ratio {rss[40] / rss[1]:.3f} (loading the 40 shards into one array: {loading:.0f} MB "
          f"in a bare process)")  # fmt: skip
    return {"rss_mb_1_shard": rss[1], "rss_mb_40_shards": rss[40], "ratio": rss[40] / rss[1],
            "load_all_40_mb": loading}  # fmt: skip


def bench_roundtrip(tmp: Path) -> dict:
    from speedlab.data.shards import load_split
    from speedlab.train import quantize
    from speedlab.train.models import build_model
    from speedlab.train.precision import cast_model
    from speedlab.train.validation import evaluate

    cfg = quickstart_config("full1gpu")
    torch.manual_seed(0)
    model = cast_model(build_model(cfg["model"], 1024), "parameter_golf")
    val = make_split(tmp / "rt", "val", 1, 16 * 1024 + 1)
    tokens, table = load_split(val), np.load(tmp / "rt/token_bytes.npy")
    rates = {}
    for threads in (1, os.cpu_count()):
        torch.set_num_threads(threads)
        t0 = time.perf_counter()
        _, blob = quantize.export(model.state_dict(), cfg["quant"])
        model.load_state_dict(quantize.dequantize_state(quantize.decompress(blob)))
        evaluate(model, tokens, table, 1024, 4)
        rates[threads] = (len(tokens) - 1) / (time.perf_counter() - t0)
    n = os.cpu_count()
    print(f"roundtrip: 9x512 export + re-evaluation {rates[1]:,.0f} tokens/s on 1 thread, "
          f"{rates[n]:,.0f} on {n}: ratio {rates[n] / rates[1]:.2f}")  # fmt: skip
    return {"tokens_per_s_1": rates[1], f"tokens_per_s_{n}": rates[n], "ratio": rates[n] / rates[1]}


def bare_loop(cfg: dict, train: Path, steps: int) -> float:
    """Seconds per step of forward/backward/optimizer steps alone, steps 50..steps."""
    from speedlab.data.shards import SplitReader
    from speedlab.train.batches import Batches
    from speedlab.train.models import build_model
    from speedlab.train.optim import build_optimizers

    torch.manual_seed(0)
    model = build_model(cfg["model"], 1024)
    optimizers = build_optimizers(model, cfg["optim"])
    tcfg = cfg["train"]
    batches = Batches(SplitReader(train), tcfg, (tcfg["batch_seqs"], 1, tcfg["batch_seqs"]), 1, 0)
    data = [tuple(torch.from_numpy(a) for a in batches.get(s, 0, 0)) for s in range(steps)]
    for step, (x, y) in enumerate(data, 1):
        if step == 51:
            t0 = time.perf_counter()
        model(x, y).backward()
        for opt in optimizers:
            opt.step()
        model.zero_grad(set_to_none=True)
    return (time.perf_counter() - t0) / (steps - 50)


def bench_overhead(tmp: Path, steps: int = 150) -> dict:
    from speedlab.train.loop import train

    torch.set_num_threads(1)
    cfg = quickstart_config(None, steps=steps, log_every=50, val_every=10**6, val_tokens=2048)
    train_m = make_split(tmp / "ov", "train", 2, 400_000)
    val = make_split(tmp / "ovval", "val", 1, 10_000)
    trainer, bare = [], []
    for _ in range(3):  # interleaved, best of three: the machine's noise is not the trainer's
        train(cfg, 0, train_m, val, tmp / "ov/token_bytes.npy", tmp / "ovout", {})
        rows = [json.loads(x) for x in (tmp / "ovout/metrics.jsonl").read_text().splitlines()]
        t = {r["step"]: r["time_s"] for r in rows if "train_loss" in r}
        trainer.append((t[steps] - t[50]) / (steps - 50))
        bare.append(bare_loop(cfg, train_m, steps))
    ratio = min(trainer) / min(bare)
    print(f"overhead: trainer {min(trainer) * 1000:.2f} ms/step at log_every 50, bare loop "
          f"{min(bare) * 1000:.2f} ms/step: ratio {ratio:.3f} (target <= 1.03)")  # fmt: skip
    return {"trainer_ms": min(trainer) * 1000, "bare_ms": min(bare) * 1000, "ratio": ratio}


BENCHES = {"rss": bench_rss, "roundtrip": bench_roundtrip, "overhead": bench_overhead}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", default=",".join(BENCHES))
    p.add_argument("--out", type=Path, help="also write the numbers as JSON")
    args = p.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only.split(","):
            results[name] = BENCHES[name](Path(tmp))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
