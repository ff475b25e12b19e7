"""GPT in the parameter-golf style, sized by config.

RMSNorm without weights, RoPE, grouped-query attention with QK-norm and a learned per-head query
gain, relu^2 MLP, per-channel attention/MLP output scales, a learned per-channel mix of the
residual stream with the normalized embedding x0, U-Net style skips from the first half of the
blocks to the second half, tied embeddings and a tanh logit softcap. Output projections start at
zero so every block begins as the identity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def rms_norm(x: Tensor) -> Tensor:
    return F.rms_norm(x, (x.size(-1),))


class Rotary(nn.Module):
    def __init__(self, head_dim: int, base: float):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self._cache: tuple[int, torch.device, Tensor, Tensor] | None = None

    def forward(self, seq_len: int, device: torch.device) -> tuple[Tensor, Tensor]:
        # Cached per (length, device): the tables are recomputed only when the shape changes.
        if self._cache is None or self._cache[0] != seq_len or self._cache[1] != device:
            t = torch.arange(seq_len, device=device, dtype=torch.float32)
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


class Attention(nn.Module):
    def __init__(self, dim: int, n_head: int, n_kv_head: int, rope_base: float, qk_gain: float):
        super().__init__()
        self.head_dim, kv_dim = head_dims(dim, n_head, n_kv_head)
        self.n_head, self.n_kv_head = n_head, n_kv_head
        self.c_q = nn.Linear(dim, dim, bias=False)
        self.c_k = nn.Linear(dim, kv_dim, bias=False)
        self.c_v = nn.Linear(dim, kv_dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)
        self.proj.zero_init = True
        self.q_gain = nn.Parameter(torch.full((n_head,), qk_gain))
        self.rotary = Rotary(self.head_dim, rope_base)

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = project_qkv(self, x)
        # QK-norm keeps attention logits bounded whatever the weight scale; the learned gain
        # restores the temperature the normalization takes away.
        q, k = rms_norm(q), rms_norm(k)
        cos, sin = self.rotary(t, x.device)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        q = q * self.q_gain.to(q.dtype)[None, :, None, None]
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, enable_gqa=self.n_kv_head != self.n_head
        )
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class MLP(nn.Module):
    def __init__(self, dim: int, mult: int):
        super().__init__()
        self.fc = nn.Linear(dim, mult * dim, bias=False)
        self.proj = nn.Linear(mult * dim, dim, bias=False)
        self.proj.zero_init = True

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(F.relu(self.fc(x)).square())


class Block(nn.Module):
    def __init__(self, dim, n_head, n_kv_head, mlp_mult, rope_base, qk_gain):
        super().__init__()
        self.attn = Attention(dim, n_head, n_kv_head, rope_base, qk_gain)
        self.mlp = MLP(dim, mlp_mult)
        self.attn_scale = nn.Parameter(torch.ones(dim))
        self.mlp_scale = nn.Parameter(torch.ones(dim))
        # Starts as "use the residual stream only"; the model learns how much of x0 to mix back.
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(dim), torch.zeros(dim))))

    def forward(self, x: Tensor, x0: Tensor) -> Tensor:
        mix = self.resid_mix.to(x.dtype)
        x = mix[0] * x + mix[1] * x0
        x = x + self.attn_scale.to(x.dtype) * self.attn(rms_norm(x))
        return x + self.mlp_scale.to(x.dtype) * self.mlp(rms_norm(x))


class GPT(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        n_layer: int,
        d_model: int,
        n_head: int,
        n_kv_head: int,
        mlp_mult: int = 2,
        rope_base: float = 10000.0,
        qk_gain_init: float = 1.5,
        logit_softcap: float = 30.0,
        embed_init_std: float = 0.005,
    ):
        super().__init__()
        self.logit_softcap = logit_softcap
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.blocks = nn.ModuleList(
            Block(d_model, n_head, n_kv_head, mlp_mult, rope_base, qk_gain_init)
            for _ in range(n_layer)
        )
        self.n_encoder = n_layer // 2
        n_skip = min(self.n_encoder, n_layer - self.n_encoder)
        self.skip_weights = nn.Parameter(torch.ones(n_skip, d_model))
        nn.init.normal_(self.tok_emb.weight, std=embed_init_std)
        for m in self.modules():
            if isinstance(m, nn.Linear) and getattr(m, "zero_init", False):
                nn.init.zeros_(m.weight)

    def logits(self, idx: Tensor) -> Tensor:
        x = x0 = rms_norm(self.tok_emb(idx))
        skips = []
        for block in self.blocks[: self.n_encoder]:
            x = block(x, x0)
            skips.append(x)
        for i, block in enumerate(self.blocks[self.n_encoder :]):
            if skips:
                x = x + self.skip_weights[i].to(x.dtype) * skips.pop()
            x = block(x, x0)
        logits = F.linear(rms_norm(x), self.tok_emb.weight.to(x.dtype)).float()
        return self.logit_softcap * torch.tanh(logits / self.logit_softcap)

    def forward(self, idx: Tensor, targets: Tensor, reduction: str = "mean") -> Tensor:
        logits = self.logits(idx)
        return F.cross_entropy(
            logits.view(-1, logits.size(-1)), targets.reshape(-1), reduction=reduction
        )


SHAPE_KEYS = ("n_layer", "d_model", "n_head", "n_kv_head", "mlp_mult", "rope_base")


def shape_kwargs(model_cfg: dict) -> dict:
    """The config keys every model kind is sized by."""
    return {k: model_cfg[k] for k in SHAPE_KEYS}


def build_model(model_cfg: dict, vocab_size: int) -> nn.Module:
    """The model `model.kind` names: gpt (parameter-golf baseline) or ngpt (normalized)."""
    kind = model_cfg.get("kind", "gpt")
    if kind == "ngpt":
        from speedlab.ngpt import build_ngpt

        return build_ngpt(model_cfg, vocab_size)
    if kind != "gpt":
        raise ValueError(f"model.kind: unknown model {kind!r} (expected gpt or ngpt)")
    return GPT(
        vocab_size=vocab_size,
        **shape_kwargs(model_cfg),
        qk_gain_init=model_cfg["qk_gain_init"],
        logit_softcap=model_cfg["logit_softcap"],
        embed_init_std=model_cfg["embed_init_std"],
    )
