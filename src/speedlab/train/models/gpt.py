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

from speedlab.train.models.layers import (
    CastedLinear,
    Rotary,
    apply_rotary,
    head_dims,
    project_qkv,
    rms_norm,
)


class Attention(nn.Module):
    def __init__(self, dim: int, n_head: int, n_kv_head: int, rope_base: float, qk_gain: float):
        super().__init__()
        self.head_dim, kv_dim = head_dims(dim, n_head, n_kv_head)
        self.n_head, self.n_kv_head = n_head, n_kv_head
        self.c_q = CastedLinear(dim, dim, bias=False)
        self.c_k = CastedLinear(dim, kv_dim, bias=False)
        self.c_v = CastedLinear(dim, kv_dim, bias=False)
        self.proj = CastedLinear(dim, dim, bias=False)
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
        self.fc = CastedLinear(dim, mult * dim, bias=False)
        self.proj = CastedLinear(mult * dim, dim, bias=False)
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
        # fp32: the softcap acts on fp32 logits; parameter_golf (set by precision.cast_model):
        # on the compute-dtype logits, cast to fp32 only for the loss, as train_gpt.py does.
        self.softcap_in_compute_dtype = False
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
            if isinstance(m, CastedLinear) and getattr(m, "zero_init", False):
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
        logits = F.linear(rms_norm(x), self.tok_emb.weight.to(x.dtype))
        if not self.softcap_in_compute_dtype:
            logits = logits.float()
        return (self.logit_softcap * torch.tanh(logits / self.logit_softcap)).float()

    def forward(self, idx: Tensor, targets: Tensor, reduction: str = "mean") -> Tensor:
        logits = self.logits(idx)
        return F.cross_entropy(
            logits.view(-1, logits.size(-1)), targets.reshape(-1), reduction=reduction
        )

    def after_step(self) -> None:
        """Called by the training loop after every optimizer step; GPT has nothing to do."""
