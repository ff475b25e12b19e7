"""nGPT, the normalized Transformer (Loshchilov et al., arXiv 2410.01131), written from the paper.

Every vector along the model dimension lives on the unit hypersphere: hidden states, embedding
and output-head rows, the d_model side of every weight matrix. Matrix-vector products become
cosine similarities in [-1, 1], so learned scaling vectors put the magnitudes back:

    h_A = Norm(Attn(h))                 h <- Norm(h + alpha_A * (h_A - h))
    h_M = Norm(MLP(h))                  h <- Norm(h + alpha_M * (h_M - h))
    q, k <- s_qk * Norm(RoPE(q)), s_qk * Norm(RoPE(k))      softmax scale sqrt(d_head)
    MLP(h) = (s_u * u) * SiLU(sqrt(d_model) * s_v * v) W_o   with u = h W_u, v = h W_v
    logits = s_z * (E_out h)

Each scaling vector s is stored as a parameter initialised to `scale` and used as
s * (init / scale): with one learning rate for all of them, `scale` sets how fast each moves.
There are no norm layers and no weight decay; `normalize_weights` projects the matrices back onto
the sphere after every optimizer step (the training loop calls `after_step`).

Optimizer split (optim.build_optimizers): the 2-D q/k/v/o and MLP matrices inside `blocks` go to
Muon; every scaling vector is 1-D and so goes to Adam whatever its name; `tok_emb` and `lm_head`
are embedding-like (V x d, unit rows) and get Adam at the embedding learning rate.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speedlab.train.models.layers import Rotary, apply_rotary, head_dims, project_qkv, shape_kwargs


def norm(x: Tensor) -> Tensor:
    return F.normalize(x, dim=-1)


class Scale(nn.Module):
    """A learned vector used as stored * (init / scale), stored initialised to `scale`."""

    def __init__(self, size: int, init: float, scale: float):
        super().__init__()
        self.mult = init / scale
        self.weight = nn.Parameter(torch.full((size,), float(scale)))

    def forward(self) -> Tensor:
        return self.weight * self.mult


def linear(d_in: int, d_out: int, norm_dim: int) -> nn.Linear:
    # norm_dim is the weight dimension of length d_model: 1 (rows) for maps reading the residual
    # stream, 0 (columns) for maps writing into it. normalize_weights reads it.
    layer = nn.Linear(d_in, d_out, bias=False)
    layer.norm_dim = norm_dim
    return layer


class Attention(nn.Module):
    def __init__(self, dim, n_head, n_kv_head, rope_base, sqk_init, sqk_scale):
        super().__init__()
        self.head_dim, kv_dim = head_dims(dim, n_head, n_kv_head)
        self.n_head, self.n_kv_head = n_head, n_kv_head
        self.c_q, self.c_k = linear(dim, dim, 1), linear(dim, kv_dim, 1)
        self.c_v, self.proj = linear(dim, kv_dim, 1), linear(dim, dim, 0)
        # One s_qk per KV head and head channel, shared by the key and every query of its group
        # (the paper shares s_qk between q and k); 1-D so it never lands in Muon.
        self.s_qk = Scale(kv_dim, sqk_init, sqk_scale)
        self.rotary = Rotary(self.head_dim, rope_base)

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = project_qkv(self, x)
        cos, sin = self.rotary(t, x.device)
        s_k = self.s_qk().to(x.dtype).view(1, self.n_kv_head, 1, self.head_dim)
        s_q = s_k.repeat_interleave(self.n_head // self.n_kv_head, dim=1)  # SDPA's GQA grouping
        q = s_q * norm(apply_rotary(q, cos, sin))
        k = s_k * norm(apply_rotary(k, cos, sin))
        # q.k is now a cosine (times s_qk^2), of spread ~1/sqrt(d_head) rather than ~sqrt(d_head):
        # multiply by sqrt(d_head) instead of dividing to keep softmax temperatures useful.
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            is_causal=True,
            scale=math.sqrt(self.head_dim),
            enable_gqa=self.n_kv_head != self.n_head,
        )
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class MLP(nn.Module):
    def __init__(self, dim, mult, suv_init, suv_scale):
        super().__init__()
        hidden = mult * dim
        self.c_u, self.c_v = linear(dim, hidden, 1), linear(dim, hidden, 1)
        self.proj = linear(hidden, dim, 0)
        self.s_u, self.s_v = Scale(hidden, suv_init, suv_scale), Scale(hidden, suv_init, suv_scale)
        # u, v entries are cosines of spread ~1/sqrt(d_model); sqrt(d_model) brings SiLU's input
        # back to O(1), where it is non-linear, instead of its near-linear region around 0.
        self.v_gain = math.sqrt(dim)

    def forward(self, x: Tensor) -> Tensor:
        u = self.c_u(x) * self.s_u().to(x.dtype)
        v = self.c_v(x) * (self.s_v().to(x.dtype) * self.v_gain)
        return self.proj(u * F.silu(v))


class Block(nn.Module):
    def __init__(self, dim, n_head, n_kv_head, mlp_mult, rope_base, c: dict):
        super().__init__()
        self.attn = Attention(dim, n_head, n_kv_head, rope_base, c["sqk_init"], c["sqk_scale"])
        self.mlp = MLP(dim, mlp_mult, c["suv_init"], c["suv_scale"])
        self.attn_alpha = Scale(dim, c["alpha_init"], c["alpha_scale"])
        self.mlp_alpha = Scale(dim, c["alpha_init"], c["alpha_scale"])

    def forward(self, h: Tensor) -> Tensor:
        # Each sub-block proposes a point on the sphere; alpha (an eigen learning rate per channel)
        # sets how far h moves towards it, and the outer Norm retracts onto the sphere again.
        a = self.attn_alpha().to(h.dtype)
        h = norm(h + a * (norm(self.attn(h)) - h))
        m = self.mlp_alpha().to(h.dtype)
        return norm(h + m * (norm(self.mlp(h)) - h))


# The paper's values; None stands for 1/sqrt(d_model), the paper's scale for alpha, s_qk and s_z.
NGPT_DEFAULTS = dict(
    alpha_init=0.05, alpha_scale=None, sqk_init=1.0, sqk_scale=None,
    suv_init=1.0, suv_scale=1.0, sz_init=1.0, sz_scale=None,
)  # fmt: skip


class NGPT(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        n_layer: int,
        d_model: int,
        n_head: int,
        n_kv_head: int | None = None,
        mlp_mult: int = 4,
        rope_base: float = 10000.0,
        **ngpt: float | None,
    ):
        super().__init__()
        if unknown := set(ngpt) - set(NGPT_DEFAULTS):
            raise TypeError(f"NGPT: unknown arguments {sorted(unknown)}")
        c = {**NGPT_DEFAULTS, **{k: v for k, v in ngpt.items() if v is not None}}
        self.cfg = {k: 1.0 / math.sqrt(d_model) if v is None else v for k, v in c.items()}
        c = self.cfg
        n_kv_head = n_kv_head or n_head
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.tok_emb.norm_dim = 1
        self.blocks = nn.ModuleList(
            Block(d_model, n_head, n_kv_head, mlp_mult, rope_base, c) for _ in range(n_layer)
        )
        self.lm_head = linear(d_model, vocab_size, 1)  # untied output embedding, as in the paper
        self.s_z = Scale(vocab_size, c["sz_init"], c["sz_scale"])
        # Only directions matter once rows are normalised, so any isotropic init will do.
        for m in (self.tok_emb, *(x for x in self.modules() if isinstance(x, nn.Linear))):
            nn.init.normal_(m.weight, std=1.0 / math.sqrt(d_model))
        normalize_weights(self)

    def logits(self, idx: Tensor) -> Tensor:
        h = self.tok_emb(idx)  # unit rows, so h starts on the sphere
        for block in self.blocks:
            h = block(h)
        return (self.lm_head(h) * self.s_z().to(h.dtype)).float()

    def forward(self, idx: Tensor, targets: Tensor, reduction: str = "mean") -> Tensor:
        logits = self.logits(idx)
        return F.cross_entropy(
            logits.view(-1, logits.size(-1)), targets.reshape(-1), reduction=reduction
        )

    def after_step(self) -> None:
        """After every optimizer step: the matrices back onto the unit sphere."""
        normalize_weights(self)


@torch.no_grad()
def normalize_weights(model: nn.Module) -> None:
    """Project every matrix back to unit norm along its d_model dimension (`norm_dim`)."""
    for m in model.modules():
        if hasattr(m, "norm_dim"):
            m.weight.copy_(F.normalize(m.weight.float(), dim=m.norm_dim).to(m.weight.dtype))


def build_ngpt(model_cfg: dict, vocab_size: int) -> NGPT:
    return NGPT(vocab_size=vocab_size, **shape_kwargs(model_cfg), **model_cfg["ngpt"])
