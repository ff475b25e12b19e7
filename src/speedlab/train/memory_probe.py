"""What a model holds on a GPU, measured on PyTorch's meta device (no memory, no compute).

speedlab.train.memory plans GPU runs from these numbers; it runs this module in a subprocess
(`python -m speedlab.train.memory_probe` with a JSON list of requests on stdin, the list of
answers on stdout), so
that planning never imports torch into Snakemake's process.

- Parameters: the model is built on the meta device and stored as `train.arithmetic` stores it
  (speedlab.train.precision.cast_model), then counted by the optimizer that owns them: the token
  embedding and an untied head (Adam at embed_lr), the blocks' 2-D matrices (Muon, or AdamW), the
  rest (Adam at scalar_lr), as speedlab.train.optim.build_optimizers splits them.
- Activations: one forward of a 1- and of a 2-sequence batch, counting the bytes of every tensor
  autograd saves for backward (torch.autograd.graph.saved_tensors_hooks), each storage once and
  parameters not at all. The difference is the cost of one more sequence; the rest (rotary tables,
  weight copies cast for the matmuls) is paid once per micro-batch. The forward runs as it does on
  a GPU: bf16 autocast for matmuls and attention (imitated here, since autocast has no meta
  backend), and attention as a flash kernel saves it (q, k, v, output and the fp32 log-sum-exp;
  PyTorch's CPU flash kernel, whose meta implementation exists, saves exactly those).
"""

from __future__ import annotations

import json
import sys

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_map

from speedlab.train.models import build_model
from speedlab.train.optim import CONTROL_NAMES
from speedlab.train.precision import cast_model

EMBED_NAMES = ("tok_emb.weight", "lm_head.weight")
# What CUDA autocast runs in bf16 among the ops speedlab's models call.
LOW_PRECISION = {
    F.linear,
    torch.matmul,
    torch.Tensor.__matmul__,
    torch.mm,
    torch.bmm,
    torch.addmm,
    torch.baddbmm,
    F.scaled_dot_product_attention,
}


def _bf16(x):
    is_float = isinstance(x, torch.Tensor) and x.is_floating_point()
    return x.to(torch.bfloat16) if is_float else x


def _flash_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **_):
    """SDPA as a flash kernel runs it (meta's default is the math path, which keeps the whole
    attention matrix); enable_gqa is implied by k/v having fewer heads than q."""
    if attn_mask is not None:
        raise ValueError("memory probe: attention masks are not modelled")
    op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    return op(q, k, v, dropout_p, is_causal, scale=scale)[0]


class GpuForward(TorchFunctionMode):
    """bf16 autocast for matmuls and flash attention, as a CUDA forward runs them."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in LOW_PRECISION:
            args, kwargs = tree_map(_bf16, (args, kwargs))
        if func is F.scaled_dot_product_attention:
            return _flash_attention(*args, **kwargs)
        return func(*args, **kwargs)


def meta_model(model_cfg: dict, vocab_size: int, arithmetic: str) -> torch.nn.Module:
    """The model on the meta device, stored as train.arithmetic stores it."""
    with torch.device("meta"):
        model = build_model(model_cfg, vocab_size)
    return cast_model(model, arithmetic, model_cfg["kind"])


def role(name: str, param: torch.Tensor) -> str:
    """Which optimizer owns a parameter: embed, matrix or scalar (optim.build_optimizers)."""
    if name in EMBED_NAMES:
        return "embed"
    in_block = name.startswith("blocks.")
    if in_block and param.ndim == 2 and not any(c in name for c in CONTROL_NAMES):
        return "matrix"
    return "scalar"


def parameter_counts(model: torch.nn.Module) -> dict:
    """{role: {numel, bytes, rows, each}}: elements, bytes as stored, rows (NorMuon's state), and
    each tensor's (numel, rows) in the order the optimizer lists them (Muon shares its matrices
    out to ranks in that order)."""
    roles = ("embed", "matrix", "scalar")
    counts = {r: {"numel": 0, "bytes": 0, "rows": 0, "each": []} for r in roles}
    for name, p in model.named_parameters():
        c = counts[role(name, p)]
        rows = p.size(0) if p.ndim == 2 else 0
        c["numel"] += p.numel()
        c["bytes"] += p.numel() * p.element_size()
        c["rows"] += rows
        c["each"].append([p.numel(), rows])
    return counts


def saved_bytes(model: torch.nn.Module, batch: int, seq_len: int, device="meta") -> int:
    """Bytes autograd keeps for backward after one forward (and the loss) of `batch` sequences;
    each storage counted once, the model's own parameters not at all."""
    params = {p.untyped_storage()._cdata for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage._cdata not in params:
            seen[storage._cdata] = storage.nbytes()
        return t

    idx = torch.zeros(batch, seq_len, dtype=torch.long, device=device)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(idx, idx)
    return sum(seen.values())


def probe(request: dict) -> dict:
    """Parameter counts and saved-activation bytes (per sequence, and fixed per micro-batch)."""
    model = meta_model(request["model"], request["vocab_size"], request["arithmetic"])
    seq_len = request["seq_len"]
    with GpuForward():
        one, two = (saved_bytes(model, b, seq_len) for b in (1, 2))
    return {
        "params": parameter_counts(model),
        "activation_bytes_per_seq": two - one,
        "activation_bytes_fixed": 2 * one - two,
        "torch": torch.__version__,
    }


if __name__ == "__main__":
    json.dump([probe(request) for request in json.load(sys.stdin)], sys.stdout)
