"""The GPU memory plan (speedlab.train.memory): exact weight/optimizer bytes, activations measured
on the meta device as a real bf16 forward saves them, the micro-batch choice and its refusals."""

import copy
import json
import subprocess
import sys

import pytest
import torch
import yaml

from conftest import REPO
from speedlab.config import ConfigError, run_config, validate
from speedlab.train import memory, memory_probe
from speedlab.train.models import build_model
from speedlab.train.optim import build_optimizers
from speedlab.train.precision import cast_model

BASE = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
NGPT = {"kind": "ngpt", "n_kv_head": 4}


@pytest.fixture(autouse=True)
def cache_dir(tmp_path_factory, monkeypatch):
    """A session's activation cache, not the checkout's. The probe is imported here, so it runs
    in this process (test_measured_once_... and test_cpu_configs_... run the subprocess)."""
    monkeypatch.setenv("SPEEDLAB_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "memcache"))


def small_run(arithmetic="fp32", gpus=1, **model) -> dict:
    """The quickstart's default run (4 x 128) with these model keys and arithmetic, on GPUs."""
    c = copy.deepcopy(BASE)
    c["defaults"]["train"].update(arithmetic=arithmetic, gpus=gpus)
    c["defaults"]["model"].update(model)
    if model.get("kind") == "ngpt":  # trained with AdamW, uniform (no Muon) momentum
        c["defaults"]["optim"].update(matrix_optimizer="adam")
        del c["studies"]["quickstart"]["conditions"]["layerwise"]
    return run_config(validate(c), "quickstart", "uniform")


def stepped(cfg: dict, vocab: int = 512):
    """A real CPU model and its optimizers after one step (optimizer state exists by then)."""
    torch.manual_seed(0)
    model = cast_model(build_model(cfg["model"], vocab), cfg["train"]["arithmetic"],
                       cfg["model"]["kind"])  # fmt: skip
    optimizers = build_optimizers(model, cfg["optim"], cfg["train"]["arithmetic"])
    idx = torch.randint(0, vocab, (2, 32))
    model(idx, idx).backward()
    for opt in optimizers:
        opt.step()
    return model, optimizers


def nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


@pytest.mark.parametrize(
    "arithmetic, model, optim",
    [
        ("fp32", {}, {}),
        ("parameter_golf", {}, {}),
        ("fp32", {}, {"normuon": True}),
        ("fp32", NGPT, {}),
    ],
)
def test_weight_and_optimizer_bytes_are_exact(arithmetic, model, optim):
    cfg = small_run(arithmetic, **model)
    cfg["optim"].update(optim)
    real, optimizers = stepped(cfg)
    counts = memory_probe.parameter_counts(memory_probe.meta_model(cfg["model"], 512, arithmetic))
    planned = memory.state_bytes(cfg, counts)
    params = list(real.parameters())
    states = [
        v for opt in optimizers for s in opt.state.values() for k, v in s.items() if k != "step"
    ]
    assert planned["params"] == nbytes(params)
    assert planned["grads"] == nbytes(p.grad for p in params)
    assert planned["optimizer"] == nbytes(states)
    if arithmetic == "parameter_golf":  # bf16 embedding and bf16 Adam state, as train_gpt.py
        assert real.tok_emb.weight.dtype == torch.bfloat16
        assert counts["embed"]["bytes"] == 2 * counts["embed"]["numel"]
    assert planned["muon_buffer"] == planned["ddp_buckets"] == 0  # one process: no all-gather


@pytest.mark.parametrize("arithmetic", ["fp32", "parameter_golf"])
def test_muon_state_and_buffers_split_over_ranks_as_the_optimizer_splits_them(arithmetic):
    """With 4 GPUs each rank keeps the momentum of its own matrices (i % 4) and gathers every
    update: its chunk plus the whole buffer, laid out by optim.shard_layout."""
    from speedlab.train.optim import shard_layout

    cfg = small_run(arithmetic, gpus=4)
    counts = memory_probe.parameter_counts(memory_probe.meta_model(cfg["model"], 512, arithmetic))
    matrix = counts["matrix"]
    numels = [n for n, _ in matrix["each"]]
    _, chunk = shard_layout(numels, 4)
    assert memory.rank_share(numels, 4) == chunk < matrix["numel"]
    planned = memory.state_bytes(cfg, counts)
    adam = 2 * (counts["embed"]["bytes"] + counts["scalar"]["bytes"])
    assert planned["optimizer"] == adam + 4 * chunk  # fp32 matrices, fp32 momentum
    width = 2 if arithmetic == "parameter_golf" else 4
    assert planned["muon_buffer"] == width * (chunk + 4 * chunk)
    assert planned["ddp_buckets"] == planned["grads"] == planned["params"]


@pytest.mark.parametrize("arithmetic, model", [("parameter_golf", {}), ("fp32", {}),
                                               ("fp32", NGPT)])  # fmt: skip
def test_activations_measured_on_meta_match_a_real_bf16_forward(arithmetic, model):
    """The meta probe (imitated autocast, flash attention) saves what a CPU bf16 forward saves:
    parameter_golf computes in bf16 by itself, fp32 under CPU autocast."""
    cfg = small_run(arithmetic, **model)
    m, seq = cfg["model"], 64
    probed = memory_probe.probe(
        {"model": m, "vocab_size": 512, "seq_len": seq, "arithmetic": arithmetic}
    )
    real = cast_model(build_model(m, 512), arithmetic, m["kind"])
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=arithmetic == "fp32"):
        one, two = (memory_probe.saved_bytes(real, b, seq, "cpu") for b in (1, 2))
    assert probed["activation_bytes_per_seq"] == two - one > 0
    assert probed["activation_bytes_fixed"] == 2 * one - two


def test_the_estimate_adds_up_and_grows_with_the_micro_batch():
    cfg = small_run("parameter_golf")
    one, four = (memory.estimate(cfg, m, vocab_size=1024) for m in (1, 4))
    parts = ("params", "grads", "optimizer", "muon_buffer", "ddp_buckets", "activations",
             "logits", "fragmentation", "context")  # fmt: skip
    assert four["peak_gb"] == pytest.approx(sum(four[f"{p}_gb"] for p in parts))
    assert four["fragmentation_gb"] == pytest.approx(
        memory.FRAGMENTATION * sum(four[f"{p}_gb"] for p in parts[:-2])
    )
    assert four["activations_gb"] > one["activations_gb"] and four["params_gb"] == one["params_gb"]
    assert (four["micro_batch_seqs"], four["gpu_mem_gb"], four["fits"]) == (4, 80.0, True)
    assert set(memory.estimate(cfg, vocab_size=1024)) >= {
        "micro_batch_seqs", "peak_gb", "gpu_mem_gb", "params_gb", "grads_gb", "optimizer_gb",
        "activations_gb",
    }  # fmt: skip


def fake_profile(per_seq_gb: float):
    """The probe's answer for a model of no weights and per_seq_gb of activations a sequence."""
    return {
        "params": {
            r: {"numel": 0, "bytes": 0, "rows": 0, "each": []}
            for r in ("embed", "matrix", "scalar")
        },  # fmt: skip
        "activation_bytes_per_seq": int(per_seq_gb * 1e9),
        "activation_bytes_fixed": 0,
    }


def test_the_largest_micro_batch_that_fits_is_chosen(monkeypatch):
    cfg = small_run(gpus=2)
    cfg["train"].update(batch_seqs=24, seq_len=8, micro_batch_seqs=None)  # 12 seqs per GPU
    monkeypatch.setattr(memory, "profile", lambda cfg, vocab: fake_profile(5.0))
    # peak = 1.1 x (5 GB x m + logits) + 1.5 GB: 6 -> 34.5 GB, 4 -> 23.5 GB, 3 -> 18 GB
    assert memory.choose_micro_batch(cfg, vocab_size=8, gpu_mem_gb=80) == 12
    assert memory.choose_micro_batch(cfg, vocab_size=8, gpu_mem_gb=30) == 4
    assert memory.choose_micro_batch(cfg, vocab_size=8, gpu_mem_gb=20) == 3
    with pytest.raises(ValueError, match=r"even at 1 sequence.*estimated 7\.0 GB .* against 6 GB"):
        memory.choose_micro_batch(cfg, vocab_size=8, gpu_mem_gb=6)
    cfg["train"]["micro_batch_seqs"] = 6
    assert memory.choose_micro_batch(cfg, vocab_size=8, gpu_mem_gb=80) == 6
    with pytest.raises(ValueError, match=r"train.micro_batch_seqs=6 needs an estimated 34\.5 GB"):
        memory.choose_micro_batch(cfg, vocab_size=8, gpu_mem_gb=30)
    cfg["train"]["micro_batch_seqs"] = 5
    with pytest.raises(ValueError, match="does not divide the 12 sequences per GPU"):
        memory.choose_micro_batch(cfg, vocab_size=8)
    cfg["train"].update(batch_seqs=25, micro_batch_seqs=None)
    with pytest.raises(ValueError, match="train.batch_seqs=25 does not split over train.gpus=2"):
        memory.choose_micro_batch(cfg, vocab_size=8)


def test_gpu_memory_by_model():
    assert memory.gpu_mem_gb({"gpu_model": "h200", "gpu_mem_gb": None}) == 141
    assert memory.gpu_mem_gb({"gpu_model": "a100", "gpu_mem_gb": None}) == 80
    assert memory.gpu_mem_gb({"gpu_model": None, "gpu_mem_gb": None}) == 80
    assert memory.gpu_mem_gb({"gpu_model": "l4", "gpu_mem_gb": None}) == 80
    assert memory.gpu_mem_gb({"gpu_model": "h100", "gpu_mem_gb": 40}) == 40


def test_measured_once_then_read_from_the_cache(monkeypatch, tmp_path):
    two = small_run(n_layer=2)
    runs = [(small_run(), 512), (two, 512), (small_run(), 512)]
    monkeypatch.setenv("SPEEDLAB_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(memory, "_PROFILES", {})
    calls = []
    subprocess_probe = memory._probe_subprocess
    monkeypatch.setattr(memory, "_run_probe", lambda r: calls.append(len(r)) or subprocess_probe(r))
    memory.measure(runs)
    assert calls == [2]  # two shapes, one subprocess
    entries = json.loads((tmp_path / "activation_bytes.json").read_text())
    assert len(entries) == 2
    assert {e["torch"] for e in entries.values()} == {torch.__version__}
    monkeypatch.setattr(memory, "_PROFILES", {})  # a new process: the file answers
    memory.estimate(two, vocab_size=512)
    assert calls == [2]
    memory._store(tmp_path / "activation_bytes.json", {"other": {"x": 1}})  # merged, not lost
    assert len(json.loads((tmp_path / "activation_bytes.json").read_text())) == 3


def test_a_model_that_cannot_fit_is_refused_before_any_job():
    c = copy.deepcopy(BASE)
    c["scale"] = "full"
    c["execution"]["gpu_mem_gb"] = 16
    for condition in c["studies"]["quickstart"]["conditions"].values():
        condition.update({"model.n_layer": 48, "model.d_model": 2048})
    with pytest.raises(ConfigError) as e:
        validate(c)
    message = str(e.value)
    assert message.startswith("invalid configuration:\n  studies.quickstart.conditions.uniform: ")
    assert "against 16 GB (execution.gpu_mem_gb)" in message and "even at 1 sequence" in message
    for key in ("train.seq_len", "model.n_layer", "model.d_model", "train.gpus",
                "execution.gpu_mem_gb", "train.micro_batch_seqs"):  # fmt: skip
        assert key in message
    # the explicit micro-batch of `full` (64) is refused on a GPU too small for it
    c = copy.deepcopy(BASE)
    c["scale"] = "full"
    c["execution"]["gpu_mem_gb"] = 12
    with pytest.raises(ConfigError, match=r"train.micro_batch_seqs=64 needs an estimated \d"):
        validate(c)


def test_cpu_configs_and_cached_gpu_plans_never_import_torch(tmp_path):
    code = (
        "import sys; from speedlab.config import load_config, validate\n"
        f"validate(load_config({str(REPO)!r}, items=sys.argv[1:]))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    env = {"SPEEDLAB_CACHE_DIR": str(tmp_path), "PYTHONPATH": str(REPO / "src"), "PATH": ""}
    for items in ([], ["scale=full"], ["scale=full"]):  # the second full reads the cache
        done = subprocess.run([sys.executable, "-c", code, *items], env=env, capture_output=True,
                              text=True, cwd=tmp_path)  # fmt: skip
        assert done.returncode == 0, done.stderr
    assert (tmp_path / "activation_bytes.json").exists()


def test_a_cpu_run_keeps_a_null_micro_batch_and_a_gpu_run_gets_one():
    assert small_run(gpus=0)["train"]["micro_batch_seqs"] is None
    assert small_run(gpus=1)["train"]["micro_batch_seqs"] == 8  # the whole batch fits
