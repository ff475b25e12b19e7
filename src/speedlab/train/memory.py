"""Peak GPU memory of one training process, estimated before any job runs, and the micro-batch
that fits it.

A GPU run holds, per process (every rank keeps a whole replica under DDP):
- parameters, stored as train.arithmetic stores them: fp32 = all fp32; parameter_golf =
  the token embedding (and an untied head) bf16, 2-D linear weights and low-dimensional
  parameters fp32;
- gradients, in each parameter's dtype, and with more than one GPU DDP's gradient buckets, a
  second copy of them;
- optimizer state, in each parameter's dtype: Adam (embeddings, low-dimensional parameters, and
  the matrices with optim.matrix_optimizer adam) 2 tensors per parameter; Muon 1 momentum buffer
  (and NorMuon 1 fp32 number per row) for the matrices this rank orthogonalizes (matrix i on
  rank i % world size), and with several ranks its chunk of the updates plus the all-gathered
  buffer of all of them (bf16 with parameter_golf arithmetic, as train_gpt.py's, or with
  optim.split modded2410, whose Muon updates are bf16; else fp32);
- activations: what autograd saves for backward, per micro-batch sequence, measured once per
  (model config, vocabulary, seq_len, arithmetic, torch version) by speedlab.train.memory_probe
  on the meta device and cached in results/.cache/activation_bytes.json. It is eager bf16, with
  PyTorch's composite RMSNorm (its fp32 intermediates) as on CPUs: a compiled model, or a fused
  CUDA norm, saves less, so this errs on the safe side (parameter-golf's compiled baseline
  logs a peak of 10,184 MiB allocated, 10.7 GB, at 64 sequences per GPU; 17.3 GB here);
- the loss's backward working set: two fp32 logit-sized gradients per sequence (seq_len x vocab);
- a fixed allowance: FRAGMENTATION (10%) of all the above for the caching allocator's slack,
  plus CONTEXT_GB (1.5 GB) for the CUDA context, cuBLAS/NCCL workspaces and compiled kernels.

GB here are 10^9 bytes, which leaves headroom against cards sold as "80 GB" (80 GiB minus what
the driver keeps). The probe runs in a subprocess, so that Snakemake's process never imports
torch, unless this process has loaded it already (a trainer, a test); cache hits cost a
dictionary lookup.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

GB = 1e9
CONTEXT_GB = 1.5
FRAGMENTATION = 0.10
# Memory of one GPU by execution.gpu_model; any other model (or none) is taken as 80 GB.
GPU_MEM_GB = {"h100": 80.0, "h200": 141.0, "a100": 80.0}
DEFAULT_GPU_MEM_GB = 80.0
# Bumped whenever the probe measures differently, so that cached numbers are measured again.
PROBE_VERSION = 2
SRC = Path(__file__).resolve().parents[2]
_PROFILES: dict[str, dict] = {}
KEYS_TO_CHANGE = (
    "train.seq_len, model.n_layer / model.d_model, train.gpus (splits the batch, not the "
    "model), execution.gpu_mem_gb (or execution.gpu_model), train.micro_batch_seqs"
)


def gpu_mem_gb(execution: dict) -> float:
    """Memory of one GPU the plan fits a run into: execution.gpu_mem_gb, else by gpu_model."""
    if execution.get("gpu_mem_gb") is not None:
        return float(execution["gpu_mem_gb"])
    return GPU_MEM_GB.get(execution.get("gpu_model") or "", DEFAULT_GPU_MEM_GB)


def cache_path() -> Path:
    """results/.cache/activation_bytes.json under the working directory (SPEEDLAB_CACHE_DIR
    replaces results/.cache)."""
    return Path(os.environ.get("SPEEDLAB_CACHE_DIR", "results/.cache")) / "activation_bytes.json"


def _torch_version() -> str:
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return "none"


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # missing, or torn by a crash: measure again
        return {}


def _store(path: Path, found: dict[str, dict]) -> None:
    """Add entries under an exclusive lock, then replace the file atomically, so parallel
    Snakemake processes neither lose each other's entries nor read half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        entries = {**_read(path), **found}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(entries, f, indent=1, sort_keys=True)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is for everyone
        os.replace(tmp, path)


def _try_store(path: Path, found: dict[str, dict]) -> None:
    try:
        _store(path, found)
    except OSError as e:  # a read-only checkout: plan anyway, measuring again next time
        print(f"speedlab.train.memory: could not cache activations in {path}: {e}",
              file=sys.stderr)  # fmt: skip


def _run_probe(requests: list[dict]) -> list[dict]:
    """The probe's answers: in this process if it has loaded the probe already (a trainer, a
    test), else in a subprocess (one torch start for all the requests)."""
    loaded = sys.modules.get("speedlab.train.memory_probe")
    if loaded is not None:
        return [loaded.probe(r) for r in requests]
    return _probe_subprocess(requests)


def _probe_subprocess(requests: list[dict]) -> list[dict]:
    """`python -m speedlab.train.memory_probe` with this interpreter and this checkout's code."""
    pythonpath = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-m", "speedlab.train.memory_probe"],
        input=json.dumps(requests), capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": pythonpath},
    )  # fmt: skip
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        shapes = "; ".join(f"{r['model']} at seq_len {r['seq_len']}" for r in requests)
        hint = (
            "; planning GPU runs needs torch in the environment that runs snakemake"
            if "No module named 'torch'" in last
            else ""
        )
        raise ValueError(
            f"could not measure the activations of {shapes} ({sys.executable} -m "
            f"speedlab.train.memory_probe: {last}){hint}"
        )
    return json.loads(done.stdout)


def _request(cfg: dict, vocab_size: int | None) -> tuple[str, dict]:
    """(cache key, probe request) of a run's model shape."""
    t = cfg["train"]
    request = {"model": cfg["model"], "vocab_size": model_vocab(cfg, vocab_size),
               "seq_len": t["seq_len"], "arithmetic": t["arithmetic"],
               "torch": _torch_version(), "probe": PROBE_VERSION}  # fmt: skip
    text = json.dumps(request, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:24], request


def measure(runs: list[tuple[dict, int | None]]) -> None:
    """Make sure the probe's numbers of every (run config, tokenizer vocabulary) are known:
    from this process, the cache file, or measured in one subprocess for all that are missing."""
    wanted = dict(_request(cfg, vocab) for cfg, vocab in runs)
    missing = {k: r for k, r in wanted.items() if k not in _PROFILES}
    if not missing:
        return
    path = cache_path()
    cached = _read(path)
    _PROFILES.update({k: cached[k] for k in missing if k in cached})
    todo = {k: r for k, r in missing.items() if k not in cached}
    if todo:
        results = _run_probe(list(todo.values()))
        found = {
            k: {"request": r, **res} for (k, r), res in zip(todo.items(), results, strict=True)
        }
        _try_store(path, found)
        _PROFILES.update(found)


def profile(cfg: dict, vocab_size: int | None) -> dict:
    """The probe's numbers (parameters by role, activation bytes) of a run's model shape."""
    key, _ = _request(cfg, vocab_size)
    if key not in _PROFILES:
        measure([(cfg, vocab_size)])
    return _PROFILES[key]


def model_vocab(cfg: dict, vocab_size: int | None) -> int:
    """Embedding rows: model.vocab_size, else the tokenizer's (`vocab_size`)."""
    vocab = cfg["model"]["vocab_size"] or vocab_size
    if vocab is None:
        raise ValueError("model.vocab_size is null: the estimate needs the tokenizer's vocabulary")
    return int(vocab)


def rank_share(sizes: list[int], world: int) -> int:
    """The most any rank holds when item i goes to rank i % world (Muon's split)."""
    return max(sum(sizes[r::world]) for r in range(world))


def _muon_bytes(cfg: dict, matrix: dict) -> tuple[int, int]:
    """(state, update buffers) of Muon on its busiest rank. Each rank keeps the momentum (and
    NorMuon's fp32 per-row moment) of its own matrices only; with several ranks it fills its
    chunk of the updates and all-gathers everyone's, in bf16 under parameter_golf arithmetic
    and with optim.split modded2410."""
    world = world_size(cfg["train"])
    numels = [n for n, _ in matrix["each"]]
    chunk = rank_share(numels, world)
    state = chunk * matrix["bytes"] // max(matrix["numel"], 1)
    if cfg["optim"]["normuon"]:
        state += 4 * rank_share([r for _, r in matrix["each"]], world)
    bf16 = (
        cfg["train"]["arithmetic"] == "parameter_golf" or cfg["optim"].get("split") == "modded2410"
    )
    width = 2 if bf16 else 4
    return state, ((1 + world) * chunk * width if world > 1 else 0)


def state_bytes(cfg: dict, params: dict) -> dict:
    """Bytes of parameters, gradients, optimizer state, Muon's update buffers and DDP's
    gradient buckets on one process."""
    stored = {r: c["bytes"] for r, c in params.items()}
    total = sum(stored.values())
    adam = 2 * (stored["embed"] + stored["scalar"])
    if cfg["optim"]["matrix_optimizer"] == "muon":
        matrix_state, buffers = _muon_bytes(cfg, params["matrix"])
    else:  # AdamW: two states per matrix element, on every rank
        matrix_state, buffers = 2 * stored["matrix"], 0
    return {
        "params": total,
        "grads": total,
        "optimizer": adam + matrix_state,
        "muon_buffer": buffers,
        "ddp_buckets": total if world_size(cfg["train"]) > 1 else 0,
    }


def world_size(t: dict) -> int:
    """Processes of a run: train.gpus (at least one) on each of train.nodes."""
    return max(t["gpus"], 1) * t.get("nodes", 1)


def _over(t: dict) -> str:
    nodes = t.get("nodes", 1)
    return f"train.gpus={t['gpus']}" + (f" x train.nodes={nodes}" if nodes > 1 else "")


def per_rank_seqs(cfg: dict) -> int:
    """Sequences each process takes per optimizer step (train.batch_seqs over the processes)."""
    t = cfg["train"]
    world = world_size(t)
    if t["batch_seqs"] % world:
        raise ValueError(f"train.batch_seqs={t['batch_seqs']} does not split over {_over(t)}")
    return t["batch_seqs"] // world


def estimate(cfg: dict, micro_batch_seqs: int | None = None, *, vocab_size: int | None = None,
             gpu_mem_gb: float = DEFAULT_GPU_MEM_GB) -> dict:  # fmt: skip
    """Peak GPU memory (GB) of one process of the run `cfg` (a resolved run config) at
    `micro_batch_seqs` sequences per forward (default: train.micro_batch_seqs, else the whole
    per-rank batch). `vocab_size` is the tokenizer's, needed when model.vocab_size is null."""
    t = cfg["train"]
    micro = micro_batch_seqs or t["micro_batch_seqs"] or per_rank_seqs(cfg)
    vocab = model_vocab(cfg, vocab_size)
    prof = profile(cfg, vocab_size)
    parts = state_bytes(cfg, prof["params"])
    parts["activations"] = micro * prof["activation_bytes_per_seq"] + prof["activation_bytes_fixed"]
    parts["logits"] = micro * 2 * t["seq_len"] * vocab * 4
    parts["fragmentation"] = FRAGMENTATION * sum(parts.values())
    gb = {f"{k}_gb": v / GB for k, v in parts.items()}
    peak = sum(parts.values()) / GB + CONTEXT_GB
    return {
        "micro_batch_seqs": micro,
        "peak_gb": peak,
        "gpu_mem_gb": gpu_mem_gb,
        "fits": peak <= gpu_mem_gb,
        **gb,
        "context_gb": CONTEXT_GB,
        "activation_bytes_per_token": prof["activation_bytes_per_seq"] / t["seq_len"],
    }


def _breakdown(e: dict) -> str:
    names = ("params", "grads", "optimizer", "muon_buffer", "ddp_buckets", "activations", "logits")
    return ", ".join(f"{n} {e[n + '_gb']:.1f}" for n in names if e[n + "_gb"] >= 0.05)


def _largest_fitting(cfg: dict, per_rank: int, kw: dict) -> int | None:
    divisors = sorted((d for d in range(1, per_rank + 1) if per_rank % d == 0), reverse=True)
    return next((m for m in divisors if estimate(cfg, m, **kw)["fits"]), None)


def choose_micro_batch(cfg: dict, *, vocab_size: int | None = None,
                       gpu_mem_gb: float = DEFAULT_GPU_MEM_GB) -> int:  # fmt: skip
    """train.micro_batch_seqs if set (refused if it does not fit), else the largest divisor of
    the per-rank batch whose estimate fits one GPU; ValueError with the numbers and the keys to
    change if even one sequence does not fit."""
    per_rank, t = per_rank_seqs(cfg), cfg["train"]
    kw = dict(vocab_size=vocab_size, gpu_mem_gb=gpu_mem_gb)
    explicit = t["micro_batch_seqs"]
    if explicit and per_rank % explicit:
        raise ValueError(
            f"train.micro_batch_seqs={explicit} does not divide the {per_rank} sequences per GPU "
            f"(train.batch_seqs={t['batch_seqs']} over {_over(t)})"
        )
    fitting = _largest_fitting(cfg, per_rank, kw)
    if fitting is None:
        e = estimate(cfg, 1, **kw)
        raise ValueError(
            f"does not fit one GPU even at 1 sequence per micro-batch: estimated "
            f"{e['peak_gb']:.1f} GB ({_breakdown(e)}, + {FRAGMENTATION:.0%} and {CONTEXT_GB:g} "
            f"GB fixed) against {gpu_mem_gb:g} GB (execution.gpu_mem_gb); change {KEYS_TO_CHANGE}"
        )
    if explicit and explicit != fitting:
        e = estimate(cfg, explicit, **kw)
        if not e["fits"]:
            raise ValueError(
                f"train.micro_batch_seqs={explicit} needs an estimated {e['peak_gb']:.1f} GB per "
                f"GPU ({_breakdown(e)}), more than the {gpu_mem_gb:g} GB of one GPU "
                f"(execution.gpu_mem_gb): the largest that fits is {fitting} (null chooses it); "
                f"or change {KEYS_TO_CHANGE}"
            )
    return explicit or fitting
