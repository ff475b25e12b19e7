"""scripts/bench_train.py: the recipe it hands both trainers, and its speedlab half on a CPU.

The reference half needs CUDA (parameter-golf's train_gpt.py refuses to run without it); its log
parsing is tested in test_import_logs.py.
"""

import importlib.util
import json
import subprocess
import sys

import pandas as pd
import pytest

from conftest import REPO

spec = importlib.util.spec_from_file_location("bench_train", REPO / "scripts" / "bench_train.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

# train_gpt.py's defaults (parameter-golf, the baseline recipe), which `full` must reproduce.
PARAMETER_GOLF_DEFAULTS = {
    "NUM_LAYERS": 9,
    "MODEL_DIM": 512,
    "NUM_HEADS": 8,
    "NUM_KV_HEADS": 4,
    "MLP_MULT": 2,
    "ROPE_BASE": 10000.0,
    "QK_GAIN_INIT": 1.5,
    "LOGIT_SOFTCAP": 30.0,
    "TIED_EMBED_INIT_STD": 0.005,
    "MATRIX_LR": 0.04,
    "SCALAR_LR": 0.04,
    "TIED_EMBED_LR": 0.05,
    "MUON_MOMENTUM": 0.95,
    "MUON_MOMENTUM_WARMUP_STEPS": 500,
    "MUON_MOMENTUM_WARMUP_START": 0.85,
    "MUON_BACKEND_STEPS": 5,
    "BETA1": 0.9,
    "BETA2": 0.95,
    "ADAM_EPS": 1e-8,
    "TRAIN_SEQ_LEN": 1024,
}


def test_full_scale_hands_the_reference_its_own_defaults():
    cfg = bench.speedlab_config(20000, 524_288, 1024, "cuda", {})
    env = bench.reference_env(cfg, 524_288, 1200, 1024)
    for var, value in PARAMETER_GOLF_DEFAULTS.items():
        assert float(env[var]) == pytest.approx(value), var
    assert env["ITERATIONS"] == "20000" and env["TRAIN_BATCH_TOKENS"] == "524288"
    assert cfg["train"]["batch_seqs"] == 512 and cfg["train"]["compile"] is True
    assert round(cfg["optim"]["warmdown_frac"] * 20000) == 1200  # WARMDOWN_ITERS
    assert cfg["quant"]["scheme"] == "parameter_golf"


def test_overrides_reach_both_trainers_and_bad_ones_name_the_key():
    cfg = bench.speedlab_config(100, 8192, 256, "cpu", {"model.n_layer": 4})
    assert bench.reference_env(cfg, 8192, 6, 1024)["NUM_LAYERS"] == "4"
    with pytest.raises(Exception, match="optim.matrix_lr"):
        bench.speedlab_config(100, 8192, 256, "cpu", {"optim.matrix_lr": -1})
    with pytest.raises(SystemExit, match="multiple"):
        bench.speedlab_config(100, 1000, 256, "cpu", {})


def test_steady_state_throughput_leaves_out_the_first_steps():
    curves = pd.DataFrame(
        {
            "step": [1, 10, 20, 30],
            "time_s": [30.0, 31.0, 32.0, 33.0],  # a 30 s compile in step 1, then 0.1 s/step
            "metric": "train_loss",
        }
    )
    assert bench.steady_tokens_per_s(curves, 1000, skip=10) == pytest.approx(10_000)
    with pytest.raises(SystemExit, match="more --steps"):
        bench.steady_tokens_per_s(curves, 1000, skip=30)


@pytest.mark.slow
def test_speedlab_half_runs_on_a_cpu(tmp_path, shards):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(REPO / "scripts" / "bench_train.py"), "--speedlab-only"]
    cmd += ["--device", "cpu", "--shards", str(shards), "--steps", "30", "--seeds", "0", "1"]
    cmd += ["--batch-tokens", "1024", "--seq-len", "128", "--skip-steps", "10"]
    for kv in ("model.n_layer=2", "model.d_model=64", "model.n_head=4", "model.n_kv_head=2"):
        cmd += ["--set", kv]
    cmd += ["--set", "train.val_tokens=4096", "--work", str(tmp_path / "work"), "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    tool = report["tools"]["speedlab"]
    assert tool["tokens_per_s"] > 0 and len(tool["tokens_per_s_all"]) == 2
    assert tool["mfu"] is None  # no GPU peak on a CPU
    assert all(2.0 < v < 12.0 for v in tool["val_bpb"] + tool["q_val_bpb"])
    assert "speed_ratio" not in report and report["parity_val_bpb"] == {}
    assert "speedlab" in done.stdout and "tokens/s" in done.stdout
