"""The golden fixture of issue 12: deterministic token data and the tiny train_gpt.py recipe.

scripts/reference/make_golden_pg.py runs a CPU copy of parameter-golf's train_gpt.py on the data
that write_data() makes, with RECIPE as its environment, and records what it printed in
tests/fixtures/golden_pg/train_gpt_cpu.json. tests/test_golden_pg.py trains speedlab on the same
data with speedlab_config() and compares. Both import this module, so the data, the recipe and
the speedlab config live in one place.

The tokens are a sparse order-1 Markov chain over a 1,024-token vocabulary: each token has a few
successors drawn by a Zipf-like popularity, with Zipf-like weights, and documents start with BOS
(id 1). That is learnable (a bigram model gets far below the unigram entropy), so 50 steps move
the loss a lot and the comparison is not between two flat curves. Only numpy's default_rng is
used, through random() and integers(), whose streams numpy keeps stable.

Sizes: 2 train shards of 40,000 tokens, so that the stream crosses a shard boundary (step 20)
and wraps around the split (step 39): 50 steps x 8 micro-batches x 257 tokens = 102,800 tokens.
The val split is 16 sequences of 256 (+1) tokens.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import yaml

VOCAB = 1024
BOS = 1
SEED = 20240520
TRAIN_SHARD_TOKENS = (40_000, 40_000)
VAL_TOKENS = 16 * 256 + 1
SUCCESSORS = 12  # distinct next tokens per token
ZIPF = 1.1  # exponent of the popularity of tokens and of the weights of successors
MEAN_DOC = 300  # mean document length (tokens)

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "golden_pg" / "train_gpt_cpu.json"

# train_gpt.py's environment for the tiny recipe (issue 12, item 3); everything else is its
# default. 8 micro-batches of 1 sequence on one process: TRAIN_BATCH_TOKENS = 8 x 256 with
# train_gpt.py's fixed grad_accum_steps = 8 // WORLD_SIZE. Validation batches hold one sequence
# (VAL_BATCH_SIZE // 8 = 256 tokens) over the whole val split.
RECIPE = {
    "VOCAB_SIZE": "1024",
    "NUM_LAYERS": "4",
    "MODEL_DIM": "128",
    "NUM_HEADS": "4",
    "NUM_KV_HEADS": "2",
    "MLP_MULT": "2",
    "TRAIN_SEQ_LEN": "256",
    "TRAIN_BATCH_TOKENS": "2048",
    "ITERATIONS": "50",
    "WARMDOWN_ITERS": "15",
    "WARMUP_STEPS": "0",
    "MUON_MOMENTUM_WARMUP_STEPS": "10",
    "MAX_WALLCLOCK_SECONDS": "0",
    "VAL_LOSS_EVERY": "10",
    "VAL_BATCH_SIZE": "2048",
    "TRAIN_LOG_EVERY": "1",
    "SEED": "1337",
}

# The same run for speedlab's trainer (dotted keys into config/config.yaml's defaults).
SPEEDLAB_OVERRIDES = {
    "model.n_layer": 4,
    "model.d_model": 128,
    "model.n_head": 4,
    "model.n_kv_head": 2,
    "model.mlp_mult": 2,
    "model.vocab_size": None,  # the 1,024-wide token_bytes table
    "model.rope_base": 10000.0,
    "model.qk_gain_init": 1.5,
    "model.logit_softcap": 30.0,
    "model.embed_init_std": 0.005,  # TIED_EMBED_INIT_STD
    "optim.embed_lr": 0.05,  # TIED_EMBED_LR
    "optim.matrix_lr": 0.04,
    "optim.scalar_lr": 0.04,
    "optim.momentum": 0.95,
    "optim.momentum_schedule": "uniform",
    "optim.momentum_warmup_start": 0.85,
    "optim.momentum_warmup_steps": 10,
    "optim.ns_steps": 5,
    "optim.adam_beta1": 0.9,
    "optim.adam_beta2": 0.95,
    "optim.adam_eps": 1.0e-8,
    "optim.warmup_steps": 0,
    "optim.warmdown": "parameter_golf",
    "optim.warmdown_iters": 15,
    "train.data_order": "parameter_golf",
    "train.arithmetic": "parameter_golf",
    "train.seq_len": 256,
    "train.batch_seqs": 8,
    "train.micro_batch_seqs": 1,
    "train.steps": 50,
    "train.val_every": 10,
    "train.val_tokens": 0,
    "train.log_every": 1,
    "train.device": "cpu",
    "train.compile": False,
    "quant.scheme": "parameter_golf",
}
SPEEDLAB_SEED = int(RECIPE["SEED"])


def _zipf(n: int) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** ZIPF
    return w / w.sum()


def successor_table(rng: np.random.Generator) -> np.ndarray:
    """Each token's successors, VOCAB x SUCCESSORS ids (never BOS, never the token itself),
    most likely first: a weighted sample without replacement by a Zipf popularity over a random
    ranking of the ids (an exponential race: the smallest -log(u) / popularity win)."""
    ids = np.arange(VOCAB)
    popularity = np.empty(VOCAB)
    popularity[np.argsort(rng.random(VOCAB), kind="stable")] = _zipf(VOCAB)
    popularity[BOS] = 0.0
    with np.errstate(divide="ignore"):
        race = -np.log(rng.random((VOCAB, VOCAB))) / popularity[None, :]
    race[ids, ids] = np.inf
    return np.argsort(race, axis=1, kind="stable")[:, :SUCCESSORS]


def generate_tokens(n: int, rng: np.random.Generator, successors: np.ndarray) -> np.ndarray:
    """n tokens of documents back to back: BOS, one of 64 start tokens, then the chain, whose
    k-th successor is taken with Zipf weight k^-ZIPF."""
    pick = np.searchsorted(np.cumsum(_zipf(SUCCESSORS)), rng.random(n), side="right")
    pick = np.minimum(pick, SUCCESSORS - 1).tolist()
    new_doc = (rng.random(n) < 1.0 / MEAN_DOC).tolist()
    starts = rng.integers(2, 2 + 64, size=n).tolist()
    table = successors.tolist()
    out, prev = [], BOS
    for i in range(n):
        if i == 0 or new_doc[i]:
            prev = BOS
        elif prev == BOS:
            prev = starts[i]
        else:
            prev = table[prev][pick[i]]
        out.append(prev)
    return np.array(out, dtype=np.uint16)


def token_bytes_table() -> np.ndarray:
    """speedlab's (3, V) int16 byte table: one byte per token, no spaces, no boundaries.

    Only val_loss is compared (train_gpt.py takes its byte counts from a SentencePiece model),
    so any valid table does; this one makes val_bpb = val_loss / ln 2.
    """
    table = np.zeros((3, VOCAB), dtype=np.int16)
    table[0] = 1
    return table


def write_data(out_dir: Path) -> dict:
    """Write the fixture's shards, manifests and byte table into out_dir; returns their paths
    ("train", "val" manifests, "token_bytes") and "sha256" of every file by name."""
    from speedlab.data.shards import write_manifest, write_shard

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    successors = successor_table(rng)
    splits = {"train": TRAIN_SHARD_TOKENS, "val": (VAL_TOKENS,)}
    paths = {}
    for split, sizes in splits.items():
        names = []
        for k, size in enumerate(sizes):
            names.append(out_dir / f"fineweb_{split}_{k:06d}.bin")
            write_shard(names[-1], generate_tokens(size, rng, successors))
        paths[split] = out_dir / f"fineweb_{split}.json"
        write_manifest(paths[split], names, list(sizes), vocab_size=VOCAB, source="golden_pg")
    paths["token_bytes"] = out_dir / "token_bytes.npy"
    np.save(paths["token_bytes"], token_bytes_table())
    files = sorted(p for p in out_dir.iterdir() if p.suffix in {".bin", ".json", ".npy"})
    paths["sha256"] = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    return paths


def speedlab_config() -> dict:
    """The resolved speedlab run config of the recipe: config/config.yaml's defaults (no scale)
    with SPEEDLAB_OVERRIDES, validated and resolved like any study's run."""
    return resolved_run("golden_pg", "train_gpt", SPEEDLAB_SEED, SPEEDLAB_OVERRIDES)


def resolved_run(study: str, condition: str, seed: int, overrides: dict) -> dict:
    """config/config.yaml's defaults (no scale) with the overrides as a one-condition study,
    validated and resolved like any study's run."""
    from speedlab.config import run_config, validate

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["scale"] = None
    config["studies"] = {
        study: {"baseline": condition, "seeds": [seed], "conditions": {condition: dict(overrides)}}
    }
    validate(config)
    return run_config(config, study, condition)


def train_speedlab(cfg: dict, seed: int, data: dict, out: Path, meta: dict) -> list[dict]:
    """Train cfg with speedlab in this process on one thread, as the reference scripts run;
    returns its metrics.jsonl rows (summary.json and roundtrip.json are in `out`)."""
    import torch

    from speedlab.train.loop import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(cfg, seed, data["train"], data["val"], data["token_bytes"], out, meta)
    finally:
        torch.set_num_threads(threads)
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
