"""Muon or AdamW for the hidden matrices, Adam for the rest, and the schedules that drive them.

Muon (Keller Jordan et al.): SGD-momentum whose update is replaced by its nearest semi-orthogonal
matrix, computed with an odd quintic polynomial iteration (Newton-Schulz or Polar Express). Each
transformer layer gets its own parameter group (momentum, lr and weight-decay multipliers) so that
layer-wise schedules can be studied. Optional extras, all off by default: decoupled (cautious)
weight decay and NorMuon's neuron-wise normalization of the orthogonalized update.

Two arithmetics (train.arithmetic). fp32: the iteration in fp32 on CPUs (bf16 on GPUs), the rest of
Muon's step in the parameters' dtype, torch's default Adam. parameter_golf: train_gpt.py's, on
every device: the iteration in bf16 with a bf16 result, the shape scale multiplied in bf16, the
update cast to the parameter's dtype only when applied, fused Adam. Both apply every option.

optim.split: modded2410 is the 2024-10-14 modded-nanogpt record's optimizers instead (see
record_optimizers): fused AdamW on the tied embedding/head, and its Muon on every block matrix,
whose step differs from speedlab's in three places: its Newton-Schulz groups the quintic as
aX + bAX + (cA)(AX) with A = XX^T, always in bf16; the update is scaled by sqrt(max(rows, cols))
(sqrt(cols) per third for a 3d x d matrix, orthogonalized in thirds) instead of sqrt(max(1,
rows / cols)); and that scale is folded into the step's alpha, not multiplied into the update.

Under torch.distributed with several processes each rank orthogonalizes only its share of the
matrices (matrix i of the flattened list goes to rank i % world size, so the work is spread even
with one group per layer), keeps momentum only for those, and one all-gather per step gives every
rank every update. Each update is computed exactly as one process would compute it, so the weights
are bitwise those of a single-process run.
"""

from __future__ import annotations

import itertools

import torch
import torch.distributed as dist
from torch import Tensor

from speedlab.train.schedules import (
    layer_momenta,
    lr_multiplier,
    parameter_golf_lr_multiplier,
    per_layer_list,
    wd_multiplier,
)

ARITHMETICS = ("fp32", "parameter_golf")
# optim.split: speedlab's three optimizers, or the 2024-10-14 modded-nanogpt record's two.
SPLITS = ("speedlab", "modded2410")

# Quintic coefficients chosen to push singular values towards 1 as fast as possible from (0, 1];
# they do not converge exactly to 1 (the result lands in roughly [0.7, 1.2]), which is enough.
NS_COEFFS = (3.4445, -4.7750, 2.0315)

# Polar Express (Amsel, Persson, Musco, Gower 2025, arXiv 2505.16932): step t applies its own odd
# quintic p_t(x) = a_t x + b_t x^3 + c_t x^5, the minimax-optimal one (closest to 1 in the worst
# case) on the interval the singular values occupy after step t-1, starting from [1e-3, 1]; the
# paper proves this greedy choice gives the optimal composition. Two tweaks from the paper make it
# safe in bf16: early polynomials are "cushioned" (not optimised for values below ~0.02 x the top,
# so they do not blow up noise), and each p_t is built for an interval slightly wider than the
# exact one, so rounding that pushes a value just past the top is pulled back, not amplified; for
# the same reason the input is divided by (1 + safety) ||X||_F. The numbers (and safety = 2e-2)
# are those of KellerJordan/modded-nanogpt train_gpt.py, `polar_express_coeffs` ("computed for
# num_iters=5, safety_factor=2e-2, cushion=2"); karpathy/nanochat's optim.py has the same table.
POLAR_EXPRESS_COEFFS = (
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
)
POLAR_EXPRESS_SAFETY = 1.02
# After five steps the singular values lie in about [0.85, 1.14]; as the interval shrinks to 1 the
# optimal quintic tends to 15/8 x - 10/8 x^3 + 3/8 x^5 (p(1) = 1, p'(1) = p''(1) = 0), which the
# authors' NoahAmsel/PolarExpress repo uses for every further step. So do we.
POLAR_EXPRESS_TAIL = (15 / 8, -10 / 8, 3 / 8)


def _odd_quintic_iteration(g: Tensor, coeffs, safety: float, eps: float, arithmetic: str) -> Tensor:
    """Apply X <- aX + b(XX^T)X + c(XX^T)^2 X for each (a, b, c), i.e. p(s) to every singular
    value s of X = G / (safety ||G||_F), leaving the singular vectors alone.

    fp32 arithmetic returns G's dtype; parameter_golf returns the bf16 iterate itself.
    """
    pg = arithmetic == "parameter_golf"
    # bf16 halves the cost on GPUs and the iteration is robust to it; CPUs gain nothing from it,
    # but train_gpt.py's arithmetic is bf16 wherever it runs.
    x = g.bfloat16() if pg or g.is_cuda else g.float()
    x = x / (x.norm() * safety + eps)  # Frobenius norm >= spectral norm: singular values <= 1
    transposed = x.size(0) > x.size(1)
    if transposed:  # iterate on the smaller Gram matrix
        x = x.T
    for a, b, c in coeffs:
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    x = x.T if transposed else x
    return x if pg else x.to(g.dtype)


def newton_schulz5(g: Tensor, steps: int = 5, eps: float = 1e-7, arithmetic="fp32") -> Tensor:
    """Approximately orthogonalize a 2-D matrix (U V^T of its SVD) with `steps` NS iterations."""
    return _odd_quintic_iteration(g, [NS_COEFFS] * steps, 1.0, eps, arithmetic)


def newton_schulz5_modded2410(g: Tensor, steps: int = 5, eps: float = 1e-7) -> Tensor:
    """The record's zeropower_via_newtonschulz5, op for op: bf16 whatever g's dtype, the input
    divided by its norm + eps, and X <- aX + bB + (cA)B with A = XX^T, B = AX; returns bf16."""
    a, b, c = NS_COEFFS
    x = g.bfloat16()
    x = x / (x.norm() + eps)
    transposed = g.size(0) > g.size(1)
    if transposed:
        x = x.T
    for _ in range(steps):
        gram = x @ x.T
        gx = gram @ x
        x = a * x + b * gx + c * gram @ gx
    return x.T if transposed else x


def modded2410_update(g: Tensor, steps: int, orthogonalize=newton_schulz5_modded2410) -> Tensor:
    """The record's orthogonalized update of one matrix (unscaled): a 3d x d matrix (grouped
    q/k/v) is orthogonalized in its three d x d parts, anything else as a whole."""
    if g.size(0) == 3 * g.size(1):
        return torch.cat([orthogonalize(part, steps) for part in g.split(g.size(1))])
    return orthogonalize(g, steps)


def modded2410_scale(p: Tensor) -> float:
    """The record's factor on the orthogonalized update (its RMS then about 1): sqrt(cols) for
    a 3d x d matrix, else sqrt(max(rows, cols))."""
    if p.size(0) == 3 * p.size(1):
        return p.size(1) ** 0.5
    return max(p.size(0), p.size(1)) ** 0.5


def polar_express(g: Tensor, steps: int = 5, eps: float = 1e-7, arithmetic="fp32") -> Tensor:
    """Approximately orthogonalize a 2-D matrix with `steps` Polar Express iterations.

    Built for 5 steps (singular values of the result within about [0.85, 1.14] for an input
    spectrum spanning 1e-3..1); fewer steps stop mid-way, where the early polynomials deliberately
    overshoot (values up to ~2), so use at least 5.
    """
    coeffs = itertools.chain(POLAR_EXPRESS_COEFFS, itertools.repeat(POLAR_EXPRESS_TAIL))
    return _odd_quintic_iteration(
        g, list(itertools.islice(coeffs, steps)), POLAR_EXPRESS_SAFETY, eps, arithmetic
    )


ORTHOGONALIZERS = {"newton_schulz5": newton_schulz5, "polar_express": polar_express}


def _layer_mults(optim_cfg: dict, key: str, n_layer: int) -> list:
    values = optim_cfg[key]
    return [1.0] * n_layer if values is None else per_layer_list(key, values, n_layer)


class Muon(torch.optim.Optimizer):
    """Muon over 2-D matrices; split across ranks under torch.distributed (see the module doc)."""

    def __init__(
        self,
        params,
        lr: float,
        momentum: float,
        nesterov: bool = True,
        ns_steps=5,
        orthogonalize: str = "newton_schulz5",
        weight_decay: float = 0.0,
        cautious_wd: bool = False,
        normuon: bool = False,
        normuon_beta2: float = 0.95,
        arithmetic: str = "fp32",
        step_rule: str = "speedlab",
    ):
        if orthogonalize not in ORTHOGONALIZERS:
            raise ValueError(f"optim.orthogonalize: unknown method {orthogonalize!r}")
        if step_rule not in SPLITS:
            raise ValueError(f"optim.split: unknown {step_rule!r} (expected one of {SPLITS})")
        _check_arithmetic(arithmetic)
        self.arithmetic, self.step_rule = arithmetic, step_rule
        defaults = dict(
            lr=lr,
            momentum=momentum,
            nesterov=nesterov,
            ns_steps=ns_steps,
            orthogonalize=orthogonalize,
            weight_decay=weight_decay,
            cautious_wd=cautious_wd,
            normuon=normuon,
            normuon_beta2=normuon_beta2,
        )
        super().__init__(params, defaults)
        self.orthogonalizers = {**ORTHOGONALIZERS, "modded2410": newton_schulz5_modded2410}

    def compile(self) -> None:
        """torch.compile the orthogonalization (as train_gpt.py and the modded-nanogpt record
        compile their Newton-Schulz); the loop does this when it compiles the model, so its
        warm-up compiles both."""
        self.orthogonalizers = {k: torch.compile(f) for k, f in self.orthogonalizers.items()}

    def matrices(self) -> list[tuple[dict, Tensor]]:
        """(group, matrix) for every matrix, groups in order: the list the ranks share out."""
        return [(group, p) for group in self.param_groups for p in group["params"]]

    @torch.no_grad()
    def step(self):
        rank, world = _rank_and_world()
        matrices = self.matrices()
        if world == 1 or not matrices:
            for group, p in matrices:
                if p.grad is not None:
                    self._apply(group, p, self._update(group, p))
            return
        updates = self._shared_updates(matrices, rank, world)
        for (group, p), update in zip(matrices, updates, strict=True):
            if p.grad is not None:  # the same on every rank (DDP gives every rank every grad)
                self._apply(group, p, update)

    def _update(self, group: dict, p: Tensor) -> Tensor:
        """p's step direction: Nesterov momentum, orthogonalized, (NorMuon), shape-scaled."""
        state, mu = self.state[p], group["momentum"]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p.grad)
        buf = state["momentum_buffer"]
        buf.mul_(mu).add_(p.grad)
        g = p.grad.add(buf, alpha=mu) if group["nesterov"] else buf
        if self.step_rule == "modded2410":  # bf16, unscaled: _apply scales it in alpha
            return modded2410_update(g, group["ns_steps"], self.orthogonalizers["modded2410"])
        orthogonalize = self.orthogonalizers[group["orthogonalize"]]
        update = orthogonalize(g, group["ns_steps"], arithmetic=self.arithmetic)
        if group["normuon"]:
            update = normuon_normalize(update, state, group["normuon_beta2"])
        # Orthogonal updates of tall matrices have a smaller RMS; rescale so every matrix moves by
        # a comparable amount per step (in place: in bf16 under parameter_golf arithmetic).
        update *= max(1.0, p.size(0) / p.size(1)) ** 0.5
        return update

    def _apply(self, group: dict, p: Tensor, update: Tensor) -> None:
        """Weight decay (if any), then p <- p - lr * update, in p's dtype (the record's rule:
        p <- p - (lr * scale) * update, the scale in the step's alpha, as its add_ has it)."""
        lr, wd = group["lr"], group["weight_decay"]
        scale = modded2410_scale(p) if self.step_rule == "modded2410" else 1.0
        update = update.to(p.dtype)  # exact from bf16; add_ would cast the same way
        if wd:
            # Decoupled decay, p <- p (1 - lr wd), with the scheduled lr of the update.
            # Cautious (Chen et al. 2025, arXiv 2510.12402): decay only the entries where the
            # step -lr * update already moves p towards zero, sign(update) == sign(p), so decay
            # never fights the optimizer's own direction.
            if group["cautious_wd"]:
                p.mul_(torch.where(update * p > 0, 1 - lr * wd, 1.0))
            else:
                p.mul_(1 - lr * wd)
        p.add_(update, alpha=-lr * scale)  # x 1.0 is exact: speedlab's rule is unchanged

    def _shared_updates(self, matrices, rank: int, world: int) -> list[Tensor]:
        """Every matrix's update, each computed on its own rank, all-gathered in one collective."""
        offsets, chunk = shard_layout([p.numel() for _, p in matrices], world)
        first = matrices[0][1]
        bf16 = self.arithmetic == "parameter_golf" or self.step_rule == "modded2410"
        dtype = torch.bfloat16 if bf16 else first.dtype
        mine = torch.zeros(chunk, dtype=dtype, device=first.device)
        for i in range(rank, len(matrices), world):
            group, p = matrices[i]
            if p.grad is not None:
                start = offsets[i] - rank * chunk
                mine[start : start + p.numel()] = self._update(group, p).reshape(-1)
        gathered = torch.empty(world * chunk, dtype=dtype, device=first.device)
        _all_gather(gathered, mine)
        pieces = zip(offsets, matrices, strict=True)
        return [gathered[o : o + p.numel()].view_as(p) for o, (_, p) in pieces]

    def full_state_dict(self) -> dict:
        """state_dict() with every rank's momentum (a collective: call it on every rank).

        Under several processes each rank holds state only for its own matrices, so a checkpoint
        written by one rank needs this; load_state_dict then keeps each rank's own share.
        """
        state = self.state_dict()
        if _rank_and_world()[1] == 1:
            return state
        on_cpu = {i: {k: v.cpu() for k, v in s.items()} for i, s in state["state"].items()}
        shares = [None] * dist.get_world_size()
        dist.all_gather_object(shares, on_cpu)
        state["state"] = {i: s for share in shares for i, s in share.items()}
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        rank, world = _rank_and_world()
        for i, (_, p) in enumerate(self.matrices()):
            if i % world != rank:
                self.state.pop(p, None)


def shard_layout(numels: list[int], world: int) -> tuple[list[int], int]:
    """Where each matrix's update sits in the all-gathered buffer, and each rank's chunk size.

    Matrix i belongs to rank i % world; rank r's matrices fill its chunk in order, and the chunk
    [r * chunk, (r + 1) * chunk) is what rank r contributes (padded to the largest share).
    """
    filled = [0] * world
    local = []
    for i, n in enumerate(numels):
        local.append(filled[i % world])
        filled[i % world] += n
    chunk = max(filled)
    return [(i % world) * chunk + off for i, off in enumerate(local)], chunk


def _rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _all_gather(output: Tensor, local: Tensor) -> None:
    # torch >= 2.13 names it all_gather_single; older versions only all_gather_into_tensor.
    gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    gather(output, local)


def _check_arithmetic(arithmetic: str) -> None:
    if arithmetic not in ARITHMETICS:
        raise ValueError(
            f"train.arithmetic: unknown arithmetic {arithmetic!r} (expected one of {ARITHMETICS})"
        )


def normuon_normalize(o: Tensor, state: dict, beta2: float, eps: float = 1e-8) -> Tensor:
    """NorMuon (Li et al. 2025, arXiv 2510.05491, Algorithm 1) on an orthogonalized update O.

    v <- beta2 v + (1 - beta2) mean_cols(O * O) is an EMA (no bias correction, as in the paper) of
    each row's mean square, one number per output neuron of the (out, in) weight; O / (sqrt(v) +
    eps) gives every neuron a comparable step. The paper then rescales to RMS 0.2 (Adam's); we
    rescale to ||O||_F instead, so the update's RMS and hence Muon's lr keep their meaning.
    """
    o32 = o.float()
    row_ms = o32.square().mean(dim=1, keepdim=True)
    v = state.setdefault("neuron_second_moment", torch.zeros_like(row_ms))
    v.mul_(beta2).add_(row_ms, alpha=1 - beta2)
    normed = o32 / (v.sqrt() + eps)
    # clamp: an all-zero update (zero gradient) stays zero instead of 0/0.
    normed *= o32.norm() / normed.norm().clamp_min(1e-30)
    return normed.to(o.dtype)


# Parameters that steer the network rather than transform features: they get Adam at scalar_lr.
CONTROL_NAMES = ("attn_scale", "mlp_scale", "resid_mix", "q_gain", "skip_weights")


def build_optimizers(
    model, optim_cfg: dict, arithmetic: str = "fp32"
) -> list[torch.optim.Optimizer]:
    """Split parameters into embedding Adam, scalar Adam and the block matrices (Muon, or AdamW
    with optim.matrix_optimizer: adam; one group per layer), in that order.

    Every group carries its own schedule targets (base_lr; the matrices' base_wd and, for Muon,
    target_momentum), which apply_schedules scales step by step. `arithmetic` is
    train.arithmetic: parameter_golf makes the Adams fused, as train_gpt.py's are (their state
    takes each parameter's dtype: bf16 for a bf16 token embedding), and Muon's math bf16.
    optim.split: modded2410 builds the record's two instead (record_optimizers), with the same
    per-layer matrix groups.
    """
    _check_arithmetic(arithmetic)
    wd_multiplier(optim_cfg["wd_schedule"], 0, 1)  # fail now on a bad name
    split = optim_cfg.get("split", "speedlab")
    if split not in SPLITS:
        raise ValueError(f"optim.split: unknown {split!r} (expected one of {SPLITS})")
    matrix_groups = _matrix_groups(model, optim_cfg)
    muon_ids = {id(p) for g in matrix_groups for p in g["params"]}
    # Token embeddings and an untied output head (nGPT's lm_head) learn at embed_lr.
    embed_names = ("tok_emb.weight", "lm_head.weight")
    named = dict(model.named_parameters())
    embeds = [named[n] for n in embed_names if n in named]
    scalars = [p for n, p in named.items() if id(p) not in muon_ids and n not in embed_names]
    if split == "modded2410":
        optimizers = record_optimizers(embeds, scalars, matrix_groups, optim_cfg)
    else:
        adam = _adam_options(optim_cfg, arithmetic)
        optimizers = [
            torch.optim.Adam([dict(params=embeds, lr=optim_cfg["embed_lr"])], **adam),
            torch.optim.Adam([dict(params=scalars, lr=optim_cfg["scalar_lr"])], **adam),
            _matrix_optimizer(matrix_groups, optim_cfg, arithmetic),
        ]
    for opt in optimizers:
        for group in opt.param_groups:
            group["base_lr"] = group["lr"]
    owned = [id(p) for opt in optimizers for g in opt.param_groups for p in g["params"]]
    assert sorted(owned) == sorted(id(p) for p in model.parameters()), (
        "every parameter must sit in exactly one optimizer"
    )
    return optimizers


def record_optimizers(embeds, scalars, matrix_groups, optim_cfg: dict) -> list:
    """optim.split: modded2410, the 2024-10-14 modded-nanogpt record's optimizers.

    Its train_gpt2.py gives lm_head.parameters() (the matrix tied to the embedding) to fused
    AdamW at the learning rate (embed_lr here; betas, eps from the config, weight decay 0, as
    its Hyperparameters set) and every parameter of transformer.h to its Muon at 0.1 x that
    (matrix_lr; nesterov, ns_steps, the momentum of each layer's group). The blocks must hold
    only matrices, as model.kind modded2410's do: the record has no gains or mixes.
    """
    if scalars:
        raise ValueError(
            f"optim.split: modded2410 has no optimizer for the model's {len(scalars)} "
            "non-matrix parameter(s); it is the record's split for model.kind modded2410"
        )
    bad = {k: optim_cfg[k] for k in ("matrix_optimizer", "orthogonalize", "normuon")}
    if bad != {"matrix_optimizer": "muon", "orthogonalize": "newton_schulz5", "normuon": False}:
        raise ValueError(f"optim.split: modded2410 is the record's own Muon, not {bad}")
    betas = (optim_cfg["adam_beta1"], optim_cfg["adam_beta2"])
    adamw = torch.optim.AdamW(
        [dict(params=embeds, lr=optim_cfg["embed_lr"])],
        betas=betas,
        eps=optim_cfg["adam_eps"],
        weight_decay=0.0,
        fused=True,
    )
    muon = Muon(
        matrix_groups,
        lr=optim_cfg["matrix_lr"],
        momentum=optim_cfg["momentum"],
        ns_steps=optim_cfg["ns_steps"],
        cautious_wd=optim_cfg["cautious_wd"],
        step_rule="modded2410",
    )
    return [adamw, muon]


def _adam_options(optim_cfg: dict, arithmetic: str) -> dict:
    """betas and eps from the config; fused=True under parameter_golf arithmetic (else torch's
    default, which keeps the fp32 path as it was)."""
    options = dict(
        betas=(optim_cfg["adam_beta1"], optim_cfg["adam_beta2"]), eps=optim_cfg["adam_eps"]
    )
    if arithmetic == "parameter_golf":
        options["fused"] = True
    return options


def _matrix_groups(model, optim_cfg: dict) -> list[dict]:
    """One group per transformer block: its 2-D weights, with the layer's momentum target and
    lr / weight-decay multipliers."""
    n_layer = len(model.blocks)
    momenta = layer_momenta(
        optim_cfg["momentum_schedule"],
        n_layer,
        optim_cfg["momentum"],
        optim_cfg["momentum_first"],
        optim_cfg["momentum_last"],
        optim_cfg["momentum_list"],
    )
    lr_mults = _layer_mults(optim_cfg, "lr_mult_list", n_layer)
    wd_mults = _layer_mults(optim_cfg, "wd_mult_list", n_layer)
    weight_decay = _weight_decay(model, optim_cfg)
    groups = []
    for i, (block, mu) in enumerate(zip(model.blocks, momenta, strict=True)):
        mats = [
            p
            for name, p in block.named_parameters()
            if p.ndim == 2 and not any(c in name for c in CONTROL_NAMES)
        ]
        wd = weight_decay * wd_mults[i]
        groups.append(
            dict(
                params=mats,
                momentum=mu,
                target_momentum=mu,
                layer=i,
                lr=optim_cfg["matrix_lr"] * lr_mults[i],  # x 1.0 is exact: no list, no change
                weight_decay=wd,
                base_wd=wd,
            )
        )
    return groups


def _weight_decay(model, optim_cfg: dict) -> float:
    weight_decay = optim_cfg["weight_decay"]
    d_ref = optim_cfg["wd_scale_ref_dim"]
    if d_ref is not None:
        # d = the model width (d_model, the residual stream): the input dim of every Muon matrix
        # except the MLP's output projection (mlp_mult * d_model), which shares the model's
        # factor so that a model of width d_ref decays exactly at weight_decay.
        weight_decay *= (d_ref / model.tok_emb.weight.size(1)) ** 2
    return weight_decay


def _matrix_optimizer(
    groups: list[dict], optim_cfg: dict, arithmetic: str
) -> torch.optim.Optimizer:
    if optim_cfg["matrix_optimizer"] == "adam":
        # The same per-layer groups (lr and wd multipliers, wd schedule), without momenta.
        for group in groups:
            del group["momentum"], group["target_momentum"]
        return torch.optim.AdamW(
            groups, lr=optim_cfg["matrix_lr"], **_adam_options(optim_cfg, arithmetic)
        )
    return Muon(
        groups,
        lr=optim_cfg["matrix_lr"],
        momentum=optim_cfg["momentum"],
        ns_steps=optim_cfg["ns_steps"],
        orthogonalize=optim_cfg["orthogonalize"],
        cautious_wd=optim_cfg["cautious_wd"],
        normuon=optim_cfg["normuon"],
        normuon_beta2=optim_cfg["normuon_beta2"],
        arithmetic=arithmetic,
    )


def apply_schedules(
    optimizers, step: int, total_steps: int, optim_cfg: dict, elapsed_s=0.0, wallclock_s=None
) -> dict:
    """Set every group's lr, weight decay and Muon momentum for `step` (0-based, the step about to
    run) from the targets the group carries; elapsed_s is the training time so far and
    wallclock_s the cap (train.max_wallclock_s; None = none). Returns what the metrics log:
    lr_mult, and the first and last layer's momentum."""
    capped = wallclock_s is not None and wallclock_s > 0
    elapsed_frac = elapsed_s / wallclock_s if capped else 0.0
    mult = _lr_mult(optim_cfg, step, total_steps, elapsed_s, wallclock_s if capped else None)
    wd_mult = wd_multiplier(optim_cfg["wd_schedule"], step, total_steps, elapsed_frac)
    warm = optim_cfg["momentum_warmup_steps"]
    frac = min(step / warm, 1.0) if warm > 0 else 1.0
    start = optim_cfg["momentum_warmup_start"]
    momenta = []
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = group["base_lr"] * mult
            if "target_momentum" in group:
                group["momentum"] = (1 - frac) * start + frac * group["target_momentum"]
                momenta.append(group["momentum"])
            if "base_wd" in group:
                group["weight_decay"] = group["base_wd"] * wd_mult
    logged = {"lr_mult": mult}
    if momenta:
        logged.update(momentum_first=momenta[0], momentum_last=momenta[-1])
    return logged


def _lr_mult(optim_cfg: dict, step: int, total_steps: int, elapsed_s: float, wallclock_s) -> float:
    """optim.warmdown's rule (after optim.warmup_steps of linear warmup); wallclock_s: the cap."""
    warmup, rule = optim_cfg["warmup_steps"], optim_cfg["warmdown"]
    if rule == "parameter_golf":
        iters = optim_cfg["warmdown_iters"]
        return parameter_golf_lr_multiplier(
            step, total_steps, warmup, iters, elapsed_s, wallclock_s
        )
    if rule != "fraction":
        raise ValueError(
            f"optim.warmdown: unknown rule {rule!r} (expected fraction or parameter_golf)"
        )
    elapsed_frac = elapsed_s / wallclock_s if wallclock_s else 0.0
    return lr_multiplier(step, total_steps, warmup, optim_cfg["warmdown_frac"], elapsed_frac)
