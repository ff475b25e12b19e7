import pytest
import torch

from speedlab.model import GPT
from speedlab.optim import (
    Muon,
    apply_schedules,
    build_optimizers,
    layer_momenta,
    lr_multiplier,
    newton_schulz5,
)

OPTIM = dict(
    matrix_lr=0.04,
    scalar_lr=0.04,
    embed_lr=0.05,
    momentum=0.95,
    momentum_schedule="uniform",
    momentum_first=0.95,
    momentum_last=0.95,
    momentum_warmup_steps=0,
    momentum_warmup_start=0.85,
    ns_steps=5,
    adam_beta1=0.9,
    adam_beta2=0.95,
    adam_eps=1e-8,
    warmup_steps=0,
    warmdown_frac=0.0,
)


@pytest.mark.parametrize("shape", [(64, 64), (128, 32), (32, 96)])
def test_newton_schulz_gives_near_orthogonal_updates(shape):
    g = torch.Generator().manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(shape[0], min(shape), generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(shape[1], min(shape), generator=g, dtype=torch.float64))
    # A spectrum spanning a factor 30, like a real gradient's top directions.
    s = torch.logspace(0, -1.5, min(shape), dtype=torch.float64)
    grad = u @ torch.diag(s) @ v.T
    o = newton_schulz5(grad.float()).double()
    sv = torch.linalg.svdvals(o)
    # The quintic trades exactness for speed: singular values land near 1, not on it.
    assert sv.min() > 0.6 and sv.max() < 1.25
    polar = u @ v.T
    assert (o * polar).sum() / (o.norm() * polar.norm()) > 0.97


def test_newton_schulz_never_amplifies_beyond_its_band():
    # Square Gaussian matrices have singular values near zero that 5 steps cannot lift, but no
    # direction may ever grow past the band's top.
    g = torch.randn(256, 256, generator=torch.Generator().manual_seed(1))
    assert torch.linalg.svdvals(newton_schulz5(g)).max() < 1.25


def test_layer_momenta():
    assert layer_momenta("uniform", 3, 0.95, 0.0, 0.0) == [0.95] * 3
    got = layer_momenta("linear", 4, 0.95, 0.98, 0.90)
    assert got == pytest.approx([0.98, 0.98 - 0.08 / 3, 0.98 - 0.16 / 3, 0.90])
    assert layer_momenta("linear", 1, 0.95, 0.98, 0.90) == [0.98]
    with pytest.raises(ValueError, match="momentum_schedule"):
        layer_momenta("cosine", 4, 0.95, 0.98, 0.90)


def test_each_layer_gets_its_momentum_after_warmup():
    model = GPT(vocab_size=64, n_layer=4, d_model=32, n_head=2, n_kv_head=1)
    cfg = dict(
        OPTIM,
        momentum_schedule="linear",
        momentum_first=0.98,
        momentum_last=0.90,
        momentum_warmup_steps=10,
    )
    muon = build_optimizers(model, cfg)[-1]
    assert isinstance(muon, Muon)
    apply_schedules([muon], 0, 100, cfg)
    assert [g["momentum"] for g in muon.param_groups] == pytest.approx([0.85] * 4)
    apply_schedules([muon], 5, 100, cfg)
    assert muon.param_groups[0]["momentum"] == pytest.approx(0.5 * 0.85 + 0.5 * 0.98)
    apply_schedules([muon], 10, 100, cfg)
    want = layer_momenta("linear", 4, 0.95, 0.98, 0.90)
    assert [g["momentum"] for g in muon.param_groups] == pytest.approx(want)
    # Every layer's six matrices (q, k, v, out, fc, proj) and nothing else are Muon's.
    assert [len(g["params"]) for g in muon.param_groups] == [6] * 4


def test_every_parameter_has_exactly_one_optimizer():
    model = GPT(vocab_size=64, n_layer=3, d_model=32, n_head=2, n_kv_head=1)
    owned = [
        id(p)
        for opt in build_optimizers(model, OPTIM)
        for g in opt.param_groups
        for p in g["params"]
    ]
    assert sorted(owned) == sorted(id(p) for p in model.parameters())


def test_lr_schedule():
    assert lr_multiplier(0, 100, 10, 0.2) == pytest.approx(0.1)
    assert lr_multiplier(50, 100, 10, 0.2) == 1.0
    assert lr_multiplier(90, 100, 0, 0.2) == pytest.approx(0.5)
    assert lr_multiplier(99, 100, 0, 0.2) == pytest.approx(0.05)
