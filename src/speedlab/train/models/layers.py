"""Layers every model kind shares: RMSNorm, a linear layer that casts its weight to the input's
dtype, rotary embeddings, q/k/v projection, shape keys."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def rms_norm(x: Tensor) -> Tensor:
    return F.rms_norm(x, (x.size(-1),))


class CastedLinear(nn.Linear):
    """nn.Linear whose weight is cast to the input's dtype at use: with train.arithmetic
    parameter_golf the weight is stored in fp32 while the activations are bf16 (on CPUs too,
    without autocast). With fp32 inputs and weights it is exactly nn.Linear."""

    def forward(self, x: Tensor) -> Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.weight.to(x.dtype), bias)


class Rotary(nn.Module):
    def __init__(self, head_dim: int, base: float):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self._cache: tuple[int, torch.device, Tensor, Tensor] | None = None

    def forward(self, seq_len: int, device: torch.device) -> tuple[Tensor, Tensor]:
        # Cached per (length, device): the tables are recomputed only when the shape changes.
        # Positions take inv_freq's dtype: fp32, or bf16 once a parameter_golf model has been
        # cast (train_gpt.py's .bfloat16() casts this buffer too, and its tables follow).
        if self._cache is None or self._cache[0] != seq_len or self._cache[1] != device:
            t = torch.arange(seq_len, device=device, dtype=self.inv_freq.dtype)
            freqs = torch.outer(t, self.inv_freq.to(device))
            self._cache = (seq_len, device, freqs.cos()[None, None], freqs.sin()[None, None])
        return self._cache[2], self._cache[3]


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    half = x.size(-1) // 2
    x1, x2 = x[..., :half], x[..., half:]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1)


def head_dims(dim: int, n_head: int, n_kv_head: int) -> tuple[int, int]:
    """(head_dim, kv_dim) of grouped-query attention, after checking the shapes fit."""
    if dim % n_head or n_head % n_kv_head:
        raise ValueError(
            f"model: d_model={dim} must divide by n_head={n_head}, "
            f"and n_head by n_kv_head={n_kv_head}"
        )
    return dim // n_head, n_kv_head * (dim // n_head)


def project_qkv(attn: nn.Module, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """q, k, v of shape (batch, heads, time, head_dim) from an attention's c_q, c_k, c_v."""
    b, t, _ = x.shape
    q = attn.c_q(x).view(b, t, attn.n_head, attn.head_dim).transpose(1, 2)
    k = attn.c_k(x).view(b, t, attn.n_kv_head, attn.head_dim).transpose(1, 2)
    v = attn.c_v(x).view(b, t, attn.n_kv_head, attn.head_dim).transpose(1, 2)
    return q, k, v


SHAPE_KEYS = ("n_layer", "d_model", "n_head", "n_kv_head", "mlp_mult", "rope_base")


def shape_kwargs(model_cfg: dict) -> dict:
    """The config keys every model kind is sized by."""
    return {k: model_cfg[k] for k in SHAPE_KEYS}
