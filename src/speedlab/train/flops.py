"""A model's size and training FLOPs from its config alone, without torch: the config resolves
a run's horizon by compute (train.target_flops, train.tokens_per_param) from these before any
job, where building the model to count its parameters would load torch.

Parameters are counted as `sum(p.numel() for p in model.parameters())` counts them, for every
model.kind (tests/test_compute.py checks each against the built model): all of them, the
embedding included and a tied head once. That is the count nanochat's base_train multiplies by
its data:param ratio (target_param_data_ratio = 20, Chinchilla's tokens per parameter).

FLOPs per token (flops_per_token, which the trainer reports too) are 6 per parameter plus causal
attention's 12 x layers x d_model x seq_len (tests/test_flops.py checks them against torch's
FlopCounterMode).
"""

from __future__ import annotations


def _kv_dim(m: dict) -> int:
    return m["n_kv_head"] * (m["d_model"] // m["n_head"])


def _gpt_params(m: dict, vocab: int) -> int:
    # q, k, v, out projections, q_gain, relu^2 MLP, attn/mlp scales, resid_mix (2 x d);
    # tied embedding; U-Net skip weights (one per decoder block with an encoder partner).
    d, n_layer, hidden = m["d_model"], m["n_layer"], m["mlp_mult"] * m["d_model"]
    block = 2 * d * d + 2 * d * _kv_dim(m) + m["n_head"] + 2 * d * hidden + 4 * d
    return vocab * d + n_layer * block + (n_layer // 2) * d


def _ngpt_params(m: dict, vocab: int) -> int:
    # q, k, v, out, s_qk (kv_dim); u, v, out of the SiLU MLP, s_u, s_v; two alphas;
    # untied embedding and head, s_z.
    d, kv, hidden = m["d_model"], _kv_dim(m), m["mlp_mult"] * m["d_model"]
    block = 2 * d * d + 2 * d * kv + kv + 3 * d * hidden + 2 * hidden + 2 * d
    return 2 * vocab * d + vocab + m["n_layer"] * block


def _modded2410_params(m: dict, vocab: int) -> int:
    # four d x d attention matrices, the MLP, weightless norms, tied embedding.
    d = m["d_model"]
    return vocab * d + m["n_layer"] * (4 * d * d + 2 * d * m["mlp_mult"] * d)


PARAMS = {"gpt": _gpt_params, "ngpt": _ngpt_params, "modded2410": _modded2410_params}


def n_params(model_cfg: dict, tokenizer_vocab: int) -> int:
    """The model's parameter count (its embedding rows: model.vocab_size, else the
    tokenizer's vocabulary)."""
    vocab = model_cfg["vocab_size"] or tokenizer_vocab
    return PARAMS[model_cfg["kind"]](model_cfg, vocab)


def flops_per_token(n_params: int, model_cfg: dict, seq_len: int) -> int:
    """Training FLOPs per token: 6 per parameter (forward + backward matmuls, the tied head
    included) plus causal attention's 12 * layers * d_model * seq_len (PaLM's estimate)."""
    return 6 * n_params + 12 * model_cfg["n_layer"] * model_cfg["d_model"] * seq_len


def tokens_per_step(train_cfg: dict) -> int:
    return train_cfg["batch_seqs"] * train_cfg["seq_len"]


def horizon_steps(cfg: dict, tokenizer_vocab: int) -> int | None:
    """The steps train.target_flops or train.tokens_per_param sets (None when neither is set):
    round(target_flops / (FLOPs per token x tokens per step)), or round(tokens_per_param x
    parameters / tokens per step). ValueError names the keys when both are set or when the
    horizon is shorter than one step."""
    t = cfg["train"]
    flops, ratio = t["target_flops"], t["tokens_per_param"]
    if flops is None and ratio is None:
        return None
    if flops is not None and ratio is not None:
        raise ValueError(
            f"train.target_flops ({flops:g}) and train.tokens_per_param ({ratio:g}) both set "
            "the horizon: set one of them"
        )
    params, step_tokens = n_params(cfg["model"], tokenizer_vocab), tokens_per_step(t)
    if flops is not None:
        per_step = flops_per_token(params, cfg["model"], t["seq_len"]) * step_tokens
        key, value, steps = "target_flops", flops, round(flops / per_step)
        unit = f"{per_step:.4g} FLOPs"
    else:
        key, value, steps = "tokens_per_param", ratio, round(ratio * params / step_tokens)
        unit = f"{step_tokens / params:.4g} tokens per parameter ({params:,} parameters)"
    if steps < 1:
        raise ValueError(f"train.{key} ({value:g}) is less than half a step: one step is {unit}")
    return steps
