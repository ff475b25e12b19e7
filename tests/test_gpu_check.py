"""scripts/gpu_check.py's parsing and comparison, on train_gpt.py's log format (its own lines:
`step:N/M train_loss:X train_time:Tms step_avg:Sms`, the peak-memory and roundtrip lines)."""

import importlib.util
import json

import pytest

from conftest import REPO


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts/gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference_log(steps=300, step_ms=350.0):
    lines = ["model_params:17059912", "warmup_step:20/20"]
    for s in range(1, steps + 1):
        lines.append(f"step:{s}/{steps} train_loss:{7 - s / 100:.4f} "
                     f"train_time:{s * step_ms:.0f}ms step_avg:{step_ms:.2f}ms")  # fmt: skip
    lines += [
        f"step:{steps}/{steps} val_loss:4.0000 val_bpb:2.3000 train_time:{steps * step_ms:.0f}ms",
        "peak memory allocated: 10184 MiB reserved: 10500 MiB",
        "final_int8_zlib_roundtrip val_loss:4.0100 val_bpb:2.3100 eval_time:1401ms",
        "final_int8_zlib_roundtrip_exact val_loss:4.01001234 val_bpb:2.31001234",
    ]
    return "\n".join(lines)


def test_the_reference_log_is_read(gpu_check):
    r = gpu_check.parse_reference(reference_log())
    assert len(r["train_loss"]) == 300 and r["train_loss"][1] == 6.99
    assert r["train_time_s"][300] == pytest.approx(105.0)
    assert r["peak_memory_mb"] == 10184 and r["roundtrip_eval_s"] == 1.401
    assert r["q_val_loss"] == 4.01001234


def test_the_comparison_is_steady_state_and_per_step(gpu_check):
    ref = gpu_check.parse_reference(reference_log(step_ms=350.0))
    ours = {
        "train_loss": {s: v + 0.001 for s, v in ref["train_loss"].items()},
        "train_time_s": {s: s * 0.3 + 20.0 for s in range(1, 301)},  # 20 s of compile: left out
        "summary": {"model_flops_per_token": 6 * 17_059_912, "peak_memory_mb": 11_000.0,
                    "peak_memory_estimate_mb": 16_500.0, "recompiles_after_warmup": 0},
        "roundtrip_eval_s": 1.2,
        "q_val_loss": 4.02,
    }  # fmt: skip
    cfg = {"train": {"batch_seqs": 512, "seq_len": 1024}}
    c = gpu_check.compare(ref, ours, cfg)
    assert c["speedlab_over_reference"] == pytest.approx(350 / 300)
    assert c["tokens_per_s"]["reference"] == pytest.approx(524_288 / 0.35)
    assert c["train_loss_abs_diff_first_50"]["max"] == pytest.approx(0.001)
    assert c["mfu"]["speedlab"] == pytest.approx(524_288 / 0.3 * 6 * 17_059_912 / 989e12)
    assert c["recompiles_after_warmup"] == 0
    json.dumps(c)  # the report is plain JSON


def test_the_prepared_config_is_full1gpu_for_300_steps(gpu_check):
    cfg = gpu_check.speedlab_config()
    t = cfg["train"]
    assert (t["gpus"], t["steps"], t["micro_batch_seqs"], t["batch_seqs"]) == (1, 300, 64, 512)
    assert t["data_order"] == t["arithmetic"] == cfg["quant"]["scheme"] == "parameter_golf"
    assert t["max_wallclock_s"] is None and cfg["optim"]["warmdown"] == "parameter_golf"
