"""Per-step and per-layer schedules: learning rate, weight decay, Muon momentum per layer.

Plain arithmetic without torch, so the analysis (the momentum-per-layer figure) can draw exactly
what the trainer applied.
"""

from __future__ import annotations


def layer_momenta(
    schedule: str, n_layer: int, value: float, first: float, last: float, values=None
) -> list:
    """Target Muon momentum of each layer, first layer (closest to the embedding) first.

    uniform: `value` everywhere. linear: `first` at layer 0 to `last` at layer n_layer-1, linear
    in the layer index. inverse: the linear schedule reversed, i.e. `first` at the LAST layer and
    `last` at layer 0 (the same two numbers, mirrored along the depth). list: `values`, one per
    layer, first layer first.
    """
    if schedule == "uniform":
        return [value] * n_layer
    if schedule in ("linear", "inverse"):
        if n_layer == 1:
            return [first]
        ramp = [first + (last - first) * i / (n_layer - 1) for i in range(n_layer)]
        return ramp if schedule == "linear" else ramp[::-1]
    if schedule == "list":
        if values is None:
            raise ValueError("optim.momentum_list is required with momentum_schedule: list")
        return per_layer_list("momentum_list", values, n_layer)
    raise ValueError(f"optim.momentum_schedule: unknown schedule {schedule!r}")


def per_layer_list(key: str, values, n_layer: int) -> list:
    """`values` as a list of exactly n_layer floats, else a ValueError naming optim.<key>."""
    if len(values) != n_layer:
        raise ValueError(
            f"optim.{key} has {len(values)} values but the model has n_layer={n_layer}"
        )
    return [float(v) for v in values]


def wd_multiplier(schedule: str, step: int, total_steps: int, elapsed_frac=0.0) -> float:
    """Weight-decay factor: constant = 1; linear_to_zero = 1 - progress over the whole run.

    Progress is measured as in lr_multiplier (the larger of step fraction and elapsed_frac).
    """
    if schedule == "constant":
        return 1.0
    if schedule == "linear_to_zero":
        return max(1.0 - max(step / total_steps, elapsed_frac), 0.0)
    raise ValueError(f"optim.wd_schedule: unknown schedule {schedule!r}")


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


def parameter_golf_lr_multiplier(
    step: int,
    total_steps: int,
    warmup_steps: int,
    warmdown_iters: int,
    elapsed_s: float = 0.0,
    wallclock_s: float | None = None,
) -> float:
    """train_gpt.py's lr_mul (optim.warmdown: parameter_golf), after a linear warmup if any.

    Without a wall-clock cap: linear to zero over the last warmdown_iters steps. With one, the
    warmdown lasts warmdown_iters steps at the mean step time measured so far, and it ends when
    the cap does: the multiplier is the time left over the warmdown's length, once that is less
    than 1. Computed in milliseconds, as train_gpt.py does, so the floats are the same as its own.
    warmdown_iters <= 0 means no warmdown.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if warmdown_iters <= 0:
        return 1.0
    if not wallclock_s:  # None or 0: no cap (train_gpt.py: MAX_WALLCLOCK_SECONDS <= 0)
        if max(total_steps - warmdown_iters, 0) <= step < total_steps:
            return max((total_steps - step) / max(warmdown_iters, 1), 0.0)
        return 1.0
    elapsed_ms, cap_ms = 1000.0 * elapsed_s, 1000.0 * wallclock_s
    warmdown_ms = warmdown_iters * (elapsed_ms / max(step, 1))
    remaining_ms = max(cap_ms - elapsed_ms, 0.0)
    return remaining_ms / max(warmdown_ms, 1e-9) if remaining_ms <= warmdown_ms else 1.0
