"""Muon for the hidden matrices, Adam for everything else, and the schedules that drive them.

Muon (Keller Jordan et al.): SGD-momentum whose update is replaced by its nearest semi-orthogonal
matrix, computed with a quintic Newton-Schulz iteration. Each transformer layer gets its own
momentum so that layer-wise momentum schedules can be studied.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Quintic coefficients chosen to push singular values towards 1 as fast as possible from (0, 1];
# they do not converge exactly to 1 (the result lands in roughly [0.7, 1.2]), which is enough.
NS_COEFFS = (3.4445, -4.7750, 2.0315)


def newton_schulz5(g: Tensor, steps: int = 5, eps: float = 1e-7) -> Tensor:
    """Approximately orthogonalize a 2-D matrix (U V^T of its SVD) with `steps` NS iterations."""
    a, b, c = NS_COEFFS
    # bf16 halves the cost on GPUs and the iteration is robust to it; CPUs gain nothing from it.
    x = g.bfloat16() if g.is_cuda else g.float()
    x = x / (x.norm() + eps)  # Frobenius norm >= spectral norm, so singular values start <= 1
    transposed = x.size(0) > x.size(1)
    if transposed:  # iterate on the smaller Gram matrix
        x = x.T
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.T if transposed else x).to(g.dtype)


def layer_momenta(schedule: str, n_layer: int, value: float, first: float, last: float) -> list:
    """Target Muon momentum of each layer, first layer first."""
    if schedule == "uniform":
        return [value] * n_layer
    if schedule == "linear":
        if n_layer == 1:
            return [first]
        return [first + (last - first) * i / (n_layer - 1) for i in range(n_layer)]
    raise ValueError(f"optim.momentum_schedule: unknown schedule {schedule!r}")


class Muon(torch.optim.Optimizer):
    def __init__(self, params, lr: float, momentum: float, nesterov: bool = True, ns_steps=5):
        super().__init__(
            params, dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps)
        )

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            mu = group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p.grad))
                buf.mul_(mu).add_(p.grad)
                g = p.grad.add(buf, alpha=mu) if group["nesterov"] else buf
                update = newton_schulz5(g, group["ns_steps"])
                # Orthogonal updates of tall matrices have a smaller RMS; rescale so every matrix
                # moves by a comparable amount per step.
                update *= max(1.0, p.size(0) / p.size(1)) ** 0.5
                p.add_(update, alpha=-group["lr"])


# Parameters that steer the network rather than transform features: they get Adam at scalar_lr.
CONTROL_NAMES = ("attn_scale", "mlp_scale", "resid_mix", "q_gain", "skip_weights")


def build_optimizers(model, optim_cfg: dict) -> list[torch.optim.Optimizer]:
    """Split parameters into Muon (per-layer groups), embedding Adam and scalar Adam."""
    n_layer = len(model.blocks)
    momenta = layer_momenta(
        optim_cfg["momentum_schedule"],
        n_layer,
        optim_cfg["momentum"],
        optim_cfg["momentum_first"],
        optim_cfg["momentum_last"],
    )
    muon_groups = []
    for i, (block, mu) in enumerate(zip(model.blocks, momenta, strict=True)):
        mats = [
            p
            for name, p in block.named_parameters()
            if p.ndim == 2 and not any(c in name for c in CONTROL_NAMES)
        ]
        muon_groups.append(dict(params=mats, momentum=mu, target_momentum=mu, layer=i))
    muon_ids = {id(p) for g in muon_groups for p in g["params"]}
    scalars = [
        p
        for name, p in model.named_parameters()
        if id(p) not in muon_ids and name != "tok_emb.weight"
    ]
    betas = (optim_cfg["adam_beta1"], optim_cfg["adam_beta2"])
    eps = optim_cfg["adam_eps"]
    optimizers = [
        torch.optim.Adam(
            [dict(params=[model.tok_emb.weight], lr=optim_cfg["embed_lr"])], betas=betas, eps=eps
        ),
        torch.optim.Adam([dict(params=scalars, lr=optim_cfg["scalar_lr"])], betas=betas, eps=eps),
        Muon(
            muon_groups,
            lr=optim_cfg["matrix_lr"],
            momentum=optim_cfg["momentum"],
            ns_steps=optim_cfg["ns_steps"],
        ),
    ]
    for opt in optimizers:
        for group in opt.param_groups:
            group["base_lr"] = group["lr"]
    return optimizers


def lr_multiplier(
    step: int, total_steps: int, warmup_steps: int, warmdown_frac: float, elapsed_frac=0.0
) -> float:
    """Linear warmup, constant, then linear warmdown to zero over the last warmdown_frac.

    Progress is the larger of the step fraction and `elapsed_frac` (training time over the
    wall-clock budget), so a time-limited run warms down before its time runs out.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    remaining = 1.0 - max(step / total_steps, elapsed_frac)
    if warmdown_frac > 0 and remaining < warmdown_frac:
        return max(remaining, 0.0) / warmdown_frac
    return 1.0


def apply_schedules(optimizers, step: int, total_steps: int, optim_cfg: dict, elapsed_frac=0.0):
    """Set every group's lr and Muon momentum for `step`; returns the lr multiplier."""
    mult = lr_multiplier(
        step, total_steps, optim_cfg["warmup_steps"], optim_cfg["warmdown_frac"], elapsed_frac
    )
    warm = optim_cfg["momentum_warmup_steps"]
    frac = min(step / warm, 1.0) if warm > 0 else 1.0
    start = optim_cfg["momentum_warmup_start"]
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = group["base_lr"] * mult
            if "target_momentum" in group:
                group["momentum"] = (1 - frac) * start + frac * group["target_momentum"]
    return mult
