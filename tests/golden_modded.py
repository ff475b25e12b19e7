"""The golden fixture of model.kind modded2410: data and the tiny recipe of the 2024-10-14 record.

scripts/reference/make_golden_modded.py runs a CPU copy of modded-nanogpt's
records/track_1_short/2024-10-14_ModernArch/train_gpt2.py on the data that write_data() makes,
with RECIPE as its Hyperparameters and MODEL as its GPTConfig, and records what it printed in
tests/fixtures/golden_modded2410/train_gpt2_cpu.json. tests/test_golden_modded.py trains speedlab
on the same data with speedlab_config() and compares. Both import this module, so the data, the
recipe and the speedlab config live in one place.

The data are golden_pg's (tests/golden_pg.py): the same sparse Markov chain over 1,024 tokens,
2 train shards of 40,000 tokens and a val split of 16 x 256 + 1. The record's loader takes spans
of 8 x 256 + 1 tokens, 19 to a shard, so the 50 steps (its first span read twice) cross the
shard boundary at step 21 and wrap around at step 40. The model is padded to
1,152 rows (the 1,024 tokens + 128), as the record pads GPT-2's 50,257 to 50,304.

Recipe: the record's shape scaled down, 4 layers x 192 with its 6 heads (head_dim 32, its 1/6 of
the width) and its 4x ReLU^2 MLP; its learning rates (0.0036 for AdamW, 0.1 x that for Muon),
betas, momentum and weight decay 0; 50 steps with a 15-step warmdown; a batch of 8 sequences of
256 on one process (device_batch_size 8: no accumulation, as the record runs its published
batch); validation every 10 steps on 2 batches of 8 x 256 tokens.
"""

from __future__ import annotations

from pathlib import Path

import golden_pg

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "golden_modded2410" / "train_gpt2_cpu.json"
RECORD = "records/track_1_short/2024-10-14_ModernArch/train_gpt2.py"
VOCAB = golden_pg.VOCAB
PADDED_VOCAB = VOCAB + 128
SEED = 1337  # torch.manual_seed before the model is built (the record seeds nothing)
write_data = golden_pg.write_data

# The record's Hyperparameters for the tiny run (its dataclass fields; the data paths are added
# by the fixture's maker). batch_size = device_batch_size: one micro-batch a step.
RECIPE = {
    "batch_size": 8,
    "device_batch_size": 8,
    "sequence_length": 256,
    "num_iterations": 50,
    "learning_rate": 0.0036,
    "warmup_iters": 0,
    "warmdown_iters": 15,
    "weight_decay": 0,
    "val_loss_every": 10,
    "val_tokens": 2 * 8 * 256,
    "save_every": 0,
}
# Its GPTConfig (the record's n_head 6; n_layer and n_embd scaled down).
MODEL = {"vocab_size": PADDED_VOCAB, "n_layer": 4, "n_head": 6, "n_embd": 192}

# The same run for speedlab's trainer (dotted keys into config/config.yaml's defaults).
SPEEDLAB_OVERRIDES = {
    "model.kind": "modded2410",
    "model.n_layer": MODEL["n_layer"],
    "model.d_model": MODEL["n_embd"],
    "model.n_head": MODEL["n_head"],
    "model.n_kv_head": MODEL["n_head"],
    "model.mlp_mult": 4,
    "model.vocab_size": PADDED_VOCAB,
    "model.rope_base": 10000.0,
    "optim.split": "modded2410",
    "optim.embed_lr": RECIPE["learning_rate"],
    "optim.matrix_lr": 0.1 * RECIPE["learning_rate"],  # the record's product, to the bit
    "optim.momentum": 0.95,
    "optim.momentum_schedule": "uniform",
    "optim.momentum_warmup_steps": 0,
    "optim.ns_steps": 5,
    "optim.adam_beta1": 0.9,
    "optim.adam_beta2": 0.95,
    "optim.adam_eps": 1.0e-8,
    "optim.weight_decay": 0.0,
    "optim.warmup_steps": RECIPE["warmup_iters"],
    "optim.warmdown": "parameter_golf",  # the record's get_lr without a wall-clock cap
    "optim.warmdown_iters": RECIPE["warmdown_iters"],
    "train.data_order": "modded",
    "train.arithmetic": "fp32",
    "train.seq_len": RECIPE["sequence_length"],
    "train.batch_seqs": RECIPE["batch_size"],
    "train.micro_batch_seqs": None,  # the whole share: device_batch_size
    "train.steps": RECIPE["num_iterations"],
    "train.val_every": RECIPE["val_loss_every"],
    "train.val_tokens": RECIPE["val_tokens"],
    "train.log_every": 1,
    "train.device": "cpu",
    "train.compile": False,
}


def speedlab_config() -> dict:
    """The resolved speedlab run config of the recipe: config/config.yaml's defaults (no scale)
    with SPEEDLAB_OVERRIDES, validated and resolved like any study's run."""
    return golden_pg.resolved_run("golden_modded", "record", SEED, SPEEDLAB_OVERRIDES)
