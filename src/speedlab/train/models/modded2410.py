"""modded-nanogpt's GPT of the 2024-10-14 record (track 1, "ModernArch"), op for op.

The LMD studies train this architecture as that record's train_gpt2.py builds it: GPT-2's 124M
shape (12 x 768, 6 heads of 128) with rotary embeddings applied before a weightless QK-norm,
ReLU^2 MLPs four times as wide, weightless RMSNorm before every block and before the head, plain
pre-norm residuals (no gains, mixes or skips), fp32 logits without a softcap, and one matrix for
the token embedding and the output head. Every forward and backward op, its order and its
dtype are the record's, and so is the use of the random generator at initialisation, so that a
run started from the same torch seed is bitwise the record's (tests/test_golden_modded.py):

- nn.Linear's default init everywhere (uniform in +-1/sqrt(fan_in)); the output projections of
  attention and MLP are drawn, then zeroed, so every block starts as the identity;
- the tied matrix is drawn as nn.Embedding (normal) and then overwritten by the head's
  nn.Linear init, as the record ties wte.weight = lm_head.weight after building both;
- rotary tables are computed in fp32 and kept in bf16, shaped (1, T, 1, head_dim / 2) for the
  (batch, time, heads, head_dim) layout; q and k are rotated by (x1 cos + x2 sin, -x1 sin +
  x2 cos) and cast back to their own dtype.

Under bf16 autocast (speedlab's CUDA path, as the record trains) the linear layers and attention
run in bf16; on CPUs without autocast, as the golden fixture's CPU copy of the record runs, in
fp32 with the bf16 rotary tables. The optimizer split that goes with it (AdamW on the tied matrix,
the record's Muon on every block matrix) is optim.split: modded2410.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speedlab.train.models.layers import rms_norm


class Rotary(nn.Module):
    """The record's rotary tables: inv_freq in fp32, cos/sin cached in bf16 per length."""

    def __init__(self, head_dim: int, base: float):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2).float() / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self._cache: tuple[int, torch.device, Tensor, Tensor] | None = None

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        seq_len = x.shape[1]
        if self._cache is None or self._cache[:2] != (seq_len, x.device):
            t = torch.arange(seq_len, device=x.device).type_as(self.inv_freq)
            freqs = torch.outer(t, self.inv_freq.to(x.device))
            cos, sin = freqs.cos().bfloat16(), freqs.sin().bfloat16()
            self._cache = (seq_len, x.device, cos[None, :, None, :], sin[None, :, None, :])
        return self._cache[2], self._cache[3]


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    d = x.shape[3] // 2
    x1, x2 = x[..., :d], x[..., d:]
    y1 = x1 * cos + x2 * sin
    y2 = x1 * (-sin) + x2 * cos
    return torch.cat([y1, y2], 3).type_as(x)


def zero_init(layer: nn.Linear) -> nn.Linear:
    layer.weight.data.zero_()  # after nn.Linear's own draw, which the generator's state keeps
    return layer


class Attention(nn.Module):
    def __init__(self, dim: int, n_head: int, rope_base: float):
        super().__init__()
        if dim % n_head:
            raise ValueError(f"model: d_model={dim} must divide by n_head={n_head}")
        self.n_head, self.head_dim = n_head, dim // n_head
        self.c_q = nn.Linear(dim, dim, bias=False)
        self.c_k = nn.Linear(dim, dim, bias=False)
        self.c_v = nn.Linear(dim, dim, bias=False)
        self.c_proj = zero_init(nn.Linear(dim, dim, bias=False))
        self.rotary = Rotary(self.head_dim, rope_base)

    def forward(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        q = self.c_q(x).view(b, t, self.n_head, self.head_dim)
        k = self.c_k(x).view(b, t, self.n_head, self.head_dim)
        v = self.c_v(x).view(b, t, self.n_head, self.head_dim)
        cos, sin = self.rotary(q)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        q, k = rms_norm(q), rms_norm(k)
        y = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
        )
        return self.c_proj(y.transpose(1, 2).contiguous().view_as(x))


class MLP(nn.Module):
    def __init__(self, dim: int, mult: int):
        super().__init__()
        self.c_fc = nn.Linear(dim, mult * dim, bias=False)
        self.c_proj = zero_init(nn.Linear(mult * dim, dim, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.c_proj(F.relu(self.c_fc(x)).square())


class Block(nn.Module):
    def __init__(self, dim: int, n_head: int, mlp_mult: int, rope_base: float):
        super().__init__()
        self.attn = Attention(dim, n_head, rope_base)
        self.mlp = MLP(dim, mlp_mult)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(rms_norm(x))
        return x + self.mlp(rms_norm(x))


class Modded2410(nn.Module):
    """The record's GPT; tok_emb.weight is both the embedding and the output head."""

    def __init__(self, vocab_size: int, n_layer: int, d_model: int, n_head: int, mlp_mult=4,
                 rope_base: float = 10000.0):  # fmt: skip
        super().__init__()
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.blocks = nn.ModuleList(
            Block(d_model, n_head, mlp_mult, rope_base) for _ in range(n_layer)
        )
        # The head's nn.Linear(d_model, vocab) init, drawn last, is what the tied matrix keeps.
        nn.init.kaiming_uniform_(self.tok_emb.weight, a=math.sqrt(5))

    def logits(self, idx: Tensor) -> Tensor:
        x = self.tok_emb(idx)
        for block in self.blocks:
            x = block(x)
        return F.linear(rms_norm(x), self.tok_emb.weight).float()

    def forward(self, idx: Tensor, targets: Tensor, reduction: str = "mean") -> Tensor:
        logits = self.logits(idx)
        flat = logits.view(-1, logits.size(-1))
        return F.cross_entropy(flat, targets.reshape(-1), ignore_index=-1, reduction=reduction)

    def after_step(self) -> None:
        """Called by the training loop after every optimizer step; nothing to do."""


def build_modded2410(model_cfg: dict, vocab_size: int) -> Modded2410:
    """The model of model.kind modded2410, sized by model.n_layer, d_model, n_head, mlp_mult and
    rope_base (qk_gain_init, logit_softcap and embed_init_std are not part of it); every head
    has its own keys and values, so n_kv_head must equal n_head."""
    if model_cfg["n_kv_head"] != model_cfg["n_head"]:
        raise ValueError(
            f"model.kind modded2410 has no grouped-query attention: model.n_kv_head "
            f"({model_cfg['n_kv_head']}) must equal model.n_head ({model_cfg['n_head']})"
        )
    return Modded2410(
        vocab_size,
        model_cfg["n_layer"],
        model_cfg["d_model"],
        model_cfg["n_head"],
        model_cfg["mlp_mult"],
        model_cfg["rope_base"],
    )
