"""Trainer benchmark: speedlab against parameter-golf's train_gpt.py, same recipe, same GPU(s).

    python scripts/bench_train.py --shards results/shards/pretokenized/sp1024

runs, for each seed, parameter-golf's train_gpt.py (the reference, kept in the git-ignored
folder reference/ and never committed: `git clone https://github.com/openai/parameter-golf
reference/parameter-golf`) and speedlab's trainer with the same recipe (the `full` scale: 9x512,
sp1024, 524,288 tokens per step, Muon lrs, warmdown), both under torchrun, both reading the same
shards. It prints and writes to --out:

- throughput: steady-state tokens/s of each (training time only, validation excluded, the first
  steps dropped so torch.compile and warm-up do not count), and speedlab / reference (target
  >= 1.05);
- MFU of each (6N + attention FLOPs per token, dense bf16 peak of the GPU);
- loss parity: final val_bpb (pre- and post-int8+zlib) of both over the seeds, with speedlab's
  own statistics (Welch t, Hedges g): parity means no detectable difference at alpha 0.05.

The reference needs CUDA (train_gpt.py refuses to start without it). `--speedlab-only` runs the
speedlab half alone, on any device, which is how the tests exercise this script on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from speedlab.analysis.collect import curve_rows  # noqa: E402
from speedlab.analysis.import_logs import import_log  # noqa: E402
from speedlab.analysis.stats import stats_table  # noqa: E402
from speedlab.config import run_config, validate  # noqa: E402
from speedlab.train.loop import PEAK_TFLOPS, flops_per_token  # noqa: E402

DEFAULT_REFERENCE = REPO / "reference" / "parameter-golf" / "train_gpt.py"

# speedlab config key -> the train_gpt.py environment variable that sets the same thing.
REFERENCE_ENV = {
    "model.n_layer": "NUM_LAYERS",
    "model.d_model": "MODEL_DIM",
    "model.n_head": "NUM_HEADS",
    "model.n_kv_head": "NUM_KV_HEADS",
    "model.mlp_mult": "MLP_MULT",
    "model.rope_base": "ROPE_BASE",
    "model.qk_gain_init": "QK_GAIN_INIT",
    "model.logit_softcap": "LOGIT_SOFTCAP",
    "model.embed_init_std": "TIED_EMBED_INIT_STD",
    "optim.matrix_lr": "MATRIX_LR",
    "optim.scalar_lr": "SCALAR_LR",
    "optim.embed_lr": "TIED_EMBED_LR",
    "optim.momentum": "MUON_MOMENTUM",
    "optim.momentum_warmup_steps": "MUON_MOMENTUM_WARMUP_STEPS",
    "optim.momentum_warmup_start": "MUON_MOMENTUM_WARMUP_START",
    "optim.ns_steps": "MUON_BACKEND_STEPS",
    "optim.adam_beta1": "BETA1",
    "optim.adam_beta2": "BETA2",
    "optim.adam_eps": "ADAM_EPS",
    "train.steps": "ITERATIONS",
    "train.seq_len": "TRAIN_SEQ_LEN",
}


def speedlab_config(
    steps: int, batch_tokens: int, seq_len: int, device: str, overrides: dict, nproc: int = 1
) -> dict:
    """The `full` scale (parameter-golf's baseline) for `steps` steps on `nproc` GPUs (or the
    CPU), validated like any run: 8 // nproc micro-batches per process, as train_gpt.py."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["scale"] = "full"
    if batch_tokens % seq_len:
        raise SystemExit(f"--batch-tokens {batch_tokens} is not a multiple of --seq-len {seq_len}")
    bench = {
        "train.steps": steps,
        "train.seq_len": seq_len,
        "train.batch_seqs": batch_tokens // seq_len,
        "train.val_every": steps,  # validate once, at the end, as the reference is told to
        "train.val_tokens": 0,
        "train.log_every": 10,
        "train.compile": device == "cuda",
        "train.device": device,
        "train.gpus": nproc if device == "cuda" else 0,
        # train_gpt.py: 8 // WORLD_SIZE micro-batches per rank, i.e. batch / 8 sequences each
        "train.micro_batch_seqs": max(1, batch_tokens // seq_len // 8),
        "train.max_wallclock_s": None,  # stop by steps, as the reference is told to
        "quant.scheme": "parameter_golf",
        **overrides,
    }
    config["studies"] = {"bench": {"baseline": "b", "seeds": [0], "conditions": {"b": bench}}}
    validate(config)
    return run_config(config, "bench", "b")


def reference_env(cfg: dict, batch_tokens: int, warmdown_iters: int, vocab: int) -> dict:
    env = {}
    for key, var in REFERENCE_ENV.items():
        section, name = key.split(".")
        env[var] = str(cfg[section][name])
    env.update(
        TRAIN_BATCH_TOKENS=str(batch_tokens),
        WARMDOWN_ITERS=str(warmdown_iters),
        VOCAB_SIZE=str(vocab),
        VAL_LOSS_EVERY="0",  # only the final validation
        TRAIN_LOG_EVERY="10",
        MAX_WALLCLOCK_SECONDS="0",  # stop by steps, like speedlab here
    )
    return env


def steady_tokens_per_s(curves: pd.DataFrame, tokens_per_step: int, skip: int) -> float:
    """Tokens/s between the first logged step >= skip and the last step (training time only)."""
    t = curves[curves["metric"] == "train_loss"].sort_values("step")
    t = t[t["step"] >= skip]
    if len(t) < 2:
        raise SystemExit(f"fewer than two logged steps after step {skip}: run more --steps")
    first, last = t.iloc[0], t.iloc[-1]
    return (last["step"] - first["step"]) * tokens_per_step / (last["time_s"] - first["time_s"])


def torchrun(nproc: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
    ]


def run_speedlab(cfg: dict, seed: int, shards: Path, out: Path, nproc: int) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    val = ["--val", shards / "fineweb_val.json", "--token-bytes", shards / "token_bytes.npy"]
    cmd = torchrun(nproc) if nproc > 1 else [sys.executable]
    cmd += ["-m", "speedlab.train.loop", "--config", json.dumps(cfg), "--seed", seed]
    cmd += ["--train", shards / "fineweb_train.json", *val, "--out-dir", out]
    subprocess.run([str(c) for c in [*cmd, "--study", "bench"]], check=True, env=env)
    q = [sys.executable, "-m", "speedlab.train.quantize", "--model", out / "model.pt", *val]
    subprocess.run([str(c) for c in [*q, "--out", out / "roundtrip.json"]], check=True, env=env)
    summary = json.loads((out / "summary.json").read_text())
    roundtrip = json.loads((out / "roundtrip.json").read_text())
    return {
        "condition": "speedlab",
        "seed": seed,
        "val_bpb": summary["val_bpb"],
        "q_val_bpb": roundtrip["q_val_bpb"],
        "n_params": summary["n_params"],
        "peak_memory_mb": summary["peak_memory_mb"],
        "curves": pd.DataFrame(curve_rows(out, "bench", "speedlab", seed)),
    }


def run_reference(
    script: Path, env: dict, seed: int, shards: Path, tokenizer: Path, out: Path, nproc: int
) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    run_id = f"bench_seed{seed}"
    full_env = {
        **os.environ,
        **env,
        "SEED": str(seed),
        "RUN_ID": run_id,
        "DATA_PATH": str(shards.resolve()),
        "TOKENIZER_PATH": str(tokenizer.resolve()),
    }
    subprocess.run([*torchrun(nproc), str(script.resolve())], check=True, env=full_env, cwd=out)
    row, curves = import_log(
        out / "logs" / f"{run_id}.txt", study="bench", condition="parameter_golf", seed=seed
    )
    return {
        "condition": "parameter_golf",
        "seed": seed,
        "val_bpb": row["val_bpb"],
        "q_val_bpb": row["q_val_bpb"],
        "n_params": row["n_params"],
        "peak_memory_mb": row["peak_memory_mb"],
        "curves": pd.DataFrame(curves),
    }


def gpu_peak_tflops() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)


def parity(runs: pd.DataFrame, metric: str) -> dict:
    conditions = sorted(runs["condition"].unique())
    if len(conditions) < 2:
        return {}
    table = stats_table(runs, metric, "parameter_golf", conditions, planned_seeds=len(runs) // 2)
    row = table[table["condition"] == "speedlab"].iloc[0]
    return {
        "diff": float(row["diff"]),
        "welch_p": float(row["welch_p"]),
        "hedges_g": float(row["hedges_g"]),
        "verdict": str(row["verdict"]),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--shards", type=Path, default=REPO / "results/shards/pretokenized/sp1024")
    p.add_argument("--tokenizer", type=Path, help="SentencePiece model (default: shards/*.model)")
    p.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seeds", type=int, nargs="+", default=[1337, 1338, 1339])
    p.add_argument("--batch-tokens", type=int, default=524_288)
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--nproc", type=int, default=1, help="GPUs (torchrun processes) per run")
    p.add_argument("--skip-steps", type=int, default=50, help="steps left out of the timing")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--speedlab-only", action="store_true", help="do not run the reference")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override a speedlab config key (and the reference's matching variable)",
    )  # fmt: skip
    p.add_argument("--work", type=Path, default=REPO / "benchmarks" / "bench_train")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "bench_train.json")
    args = p.parse_args(argv)

    overrides: dict = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = yaml.safe_load(value)
    cfg = speedlab_config(
        args.steps, args.batch_tokens, args.seq_len, args.device, overrides, args.nproc
    )
    for name in ("fineweb_train.json", "fineweb_val.json", "token_bytes.npy"):
        if not (args.shards / name).exists():
            raise SystemExit(
                f"{args.shards / name} is missing: build the shards first, e.g. "
                "`snakemake --cores all results/shards/pretokenized/sp1024/fineweb_train.json` "
                "(parameter-golf's official sp1024 shards), or pass --shards"
            )
    vocab = int(np.load(args.shards / "token_bytes.npy").shape[1])
    if not args.speedlab_only:
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("the reference train_gpt.py needs a CUDA GPU (or use --speedlab-only)")
        if not args.reference.exists():
            raise SystemExit(
                f"reference script {args.reference} not found: `git clone "
                "https://github.com/openai/parameter-golf reference/parameter-golf` (git-ignored)"
            )
        tokenizer = args.tokenizer or next(iter(sorted(args.shards.glob("*.model"))), None)
        if tokenizer is None:
            raise SystemExit(f"no SentencePiece *.model in {args.shards}: pass --tokenizer")
        o = cfg["optim"]
        parameter_golf = o["warmdown"] == "parameter_golf"
        warmdown = o["warmdown_iters"] if parameter_golf else round(o["warmdown_frac"] * args.steps)
        env = reference_env(cfg, args.batch_tokens, warmdown, vocab)

    results = []
    for seed in args.seeds:
        work = args.work / f"seed{seed}"
        results.append(run_speedlab(cfg, seed, args.shards, work / "speedlab", args.nproc))
        if not args.speedlab_only:
            ref = work / "reference"
            results.append(
                run_reference(args.reference, env, seed, args.shards, tokenizer, ref, args.nproc)
            )

    peak = gpu_peak_tflops()
    per_tool: dict[str, dict] = {}
    for tool in dict.fromkeys(r["condition"] for r in results):
        rs = [r for r in results if r["condition"] == tool]
        tok_s = [steady_tokens_per_s(r["curves"], args.batch_tokens, args.skip_steps) for r in rs]
        flops = flops_per_token(int(rs[0]["n_params"]), cfg["model"], args.seq_len)
        per_tool[tool] = {
            "tokens_per_s": float(np.median(tok_s)),
            "tokens_per_s_all": tok_s,
            "n_params": int(rs[0]["n_params"]),
            "mfu": float(np.median(tok_s)) * flops / (peak * 1e12) if peak else None,
            "peak_memory_mb": float(np.max([r["peak_memory_mb"] for r in rs])),
            "val_bpb": [r["val_bpb"] for r in rs],
            "q_val_bpb": [r["q_val_bpb"] for r in rs],
        }
    runs = pd.DataFrame([{k: v for k, v in r.items() if k != "curves"} for r in results])
    runs["diverged"] = False
    report = {
        "steps": args.steps,
        "batch_tokens": args.batch_tokens,
        "seq_len": args.seq_len,
        "nproc": args.nproc,
        "device": args.device,
        "tools": per_tool,
        "parity_val_bpb": parity(runs, "val_bpb"),
        "parity_q_val_bpb": parity(runs, "q_val_bpb"),
    }
    if "parameter_golf" in per_tool:
        report["speed_ratio"] = (
            per_tool["speedlab"]["tokens_per_s"] / per_tool["parameter_golf"]["tokens_per_s"]
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")

    print(f"{'tool':<16}{'tokens/s':>12}{'MFU':>8}{'peak MiB':>10}{'val_bpb':>10}{'q_val_bpb':>10}")
    for tool, t in per_tool.items():
        mfu = f"{t['mfu']:.1%}" if t["mfu"] is not None else "n/a"
        print(
            f"{tool:<16}{t['tokens_per_s']:>12,.0f}{mfu:>8}{t['peak_memory_mb']:>10,.0f}"
            f"{np.mean(t['val_bpb']):>10.4f}{np.mean(t['q_val_bpb']):>10.4f}"
        )
    if "speed_ratio" in report:
        print(f"speed ratio speedlab / parameter-golf: {report['speed_ratio']:.3f}x (target 1.05x)")
        for metric in ("val_bpb", "q_val_bpb"):
            par = report[f"parity_{metric}"]
            print(
                f"{metric} parity: diff {par['diff']:+.4f}, Welch p {par['welch_p']:.3g}, "
                f"Hedges g {par['hedges_g']:.2f}: {par['verdict']}"
            )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
