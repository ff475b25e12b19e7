"""train.arithmetic: how a run stores its weights and where it rounds.

- fp32: every weight, gradient and optimizer state in fp32; on CUDA the forward runs under bf16
  autocast. The CPU path is plain fp32 throughout.
- parameter_golf: train_gpt.py's precision, on CPUs (no autocast) and on CUDA (bf16 autocast).
  The model is built in fp32 and cast to bf16 as a whole (buffers too: the rotary frequencies,
  hence its position tables, are bf16), then the linear layers go back to fp32 (their weights
  keep the bf16 rounding: what train_gpt.py's .bfloat16() then .float() leaves) and so do the
  low-dimensional and control parameters. The token embedding stays bf16, so its output, and with
  it the whole forward, is bf16; linear weights are cast at use (CastedLinear); the logit softcap
  runs on the bf16 logits. The optimizers' side (bf16 Newton-Schulz, fused Adam) is in optim.py.
"""

from __future__ import annotations

import torch
from torch import nn

from speedlab.train.models.layers import CastedLinear
from speedlab.train.optim import CONTROL_NAMES

ARITHMETICS = ("fp32", "parameter_golf")


def cast_model(model: nn.Module, arithmetic: str, kind: str = "gpt") -> nn.Module:
    """Store the model's tensors as `arithmetic` asks (in place); returns the model."""
    if arithmetic not in ARITHMETICS:
        raise ValueError(f"train.arithmetic: unknown {arithmetic!r}; expected one of {ARITHMETICS}")
    if arithmetic == "fp32":
        return model
    if kind != "gpt":
        raise ValueError(
            f"train.arithmetic: parameter_golf is train_gpt.py's precision for its GPT; "
            f"model.kind {kind!r} trains with train.arithmetic: fp32"
        )
    model.bfloat16()
    for module in model.modules():
        if isinstance(module, CastedLinear):
            module.float()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim < 2 or any(c in name for c in CONTROL_NAMES):
                param.data = param.data.float()
    model.softcap_in_compute_dtype = True
    return model


def set_cuda_math(arithmetic: str) -> None:
    """train_gpt.py's fast-math settings on CUDA: TF32 matmuls, flash attention only."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    if arithmetic == "parameter_golf":  # bf16 activations throughout: flash always applies
        torch.backends.cuda.enable_flash_sdp(True)
        torch.backends.cuda.enable_cudnn_sdp(False)
        torch.backends.cuda.enable_mem_efficient_sdp(False)
        torch.backends.cuda.enable_math_sdp(False)
