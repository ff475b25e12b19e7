import pytest
import torch
import yaml

from conftest import REPO
from speedlab.config import run_config, validate
from speedlab.train.models.gpt import GPT
from speedlab.train.optim import (
    Muon,
    apply_schedules,
    build_optimizers,
    newton_schulz5,
    normuon_normalize,
    polar_express,
)
from speedlab.train.schedules import (
    layer_momenta,
    lr_multiplier,
    parameter_golf_lr_multiplier,
    wd_multiplier,
)


def _quickstart_optim() -> dict:
    """The quickstart's optim section, validated: complete, every schema default filled in."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    return run_config(validate(config), "quickstart", "uniform")["optim"]


OPTIM = {**_quickstart_optim(), "momentum_warmup_steps": 0, "warmdown_frac": 0.0}


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
    logged = apply_schedules([muon], 10, 100, cfg)
    want = layer_momenta("linear", 4, 0.95, 0.98, 0.90)
    # What the metrics log: the lr multiplier and the first and last layer's momentum.
    assert logged == pytest.approx({"lr_mult": 1.0, "momentum_first": 0.98, "momentum_last": 0.9})
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


def test_a_parameter_in_two_optimizers_is_refused():
    model = GPT(vocab_size=64, n_layer=2, d_model=32, n_head=2, n_kv_head=1)  # mlp.fc: 64 x 32
    model.blocks[0].mlp.fc.weight = model.tok_emb.weight  # now both an embedding and a matrix
    with pytest.raises(AssertionError, match="exactly one optimizer"):
        build_optimizers(model, OPTIM)


def test_lr_schedule():
    assert lr_multiplier(0, 100, 10, 0.2) == pytest.approx(0.1)
    assert lr_multiplier(50, 100, 10, 0.2) == 1.0
    assert lr_multiplier(90, 100, 0, 0.2) == pytest.approx(0.5)
    assert lr_multiplier(99, 100, 0, 0.2) == pytest.approx(0.05)


def _well_conditioned(shape, seed=0, decades=1.5):
    g = torch.Generator().manual_seed(seed)
    k = min(shape)
    u, _ = torch.linalg.qr(torch.randn(shape[0], k, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(shape[1], k, generator=g, dtype=torch.float64))
    s = torch.logspace(0, -decades, k, dtype=torch.float64)
    return (u @ torch.diag(s) @ v.T).float(), u @ v.T


@pytest.mark.parametrize("shape", [(64, 64), (128, 32), (32, 96)])
def test_polar_express_is_closer_to_orthogonal_than_newton_schulz(shape):
    grad, polar = _well_conditioned(shape)
    sv_ns = torch.linalg.svdvals(newton_schulz5(grad, 5).double())
    sv_pe = torch.linalg.svdvals(polar_express(grad, 5).double())
    assert sv_ns.min() > 0.6 and sv_ns.max() < 1.25
    assert sv_pe.min() > 0.8 and sv_pe.max() < 1.15
    assert (sv_pe - 1).abs().max() < (sv_ns - 1).abs().max()
    o = polar_express(grad).double()
    assert (o * polar).sum() / (o.norm() * polar.norm()) > 0.99
    # Past the 5-step table the limit quintic converges fast: 8 steps is orthogonal to fp32.
    assert torch.allclose(
        torch.linalg.svdvals(polar_express(grad, 8)), torch.ones(min(shape)), atol=1e-3
    )
    assert polar_express(grad).shape == grad.shape


def test_polar_express_never_amplifies_beyond_its_band():
    g = torch.randn(256, 256, generator=torch.Generator().manual_seed(1))
    assert torch.linalg.svdvals(polar_express(g)).max() < 1.15


def test_inverse_and_list_momenta():
    linear = layer_momenta("linear", 4, 0.95, 0.98, 0.90)
    inverse = layer_momenta("inverse", 4, 0.95, 0.98, 0.90)
    assert inverse == linear[::-1]
    assert inverse[-1] == 0.98 and inverse[0] == 0.90  # momentum_first lands on the LAST layer
    assert layer_momenta("inverse", 1, 0.95, 0.98, 0.90) == [0.98]
    assert layer_momenta("list", 3, 0.95, 0, 0, [0.9, 0.8, 0.7]) == [0.9, 0.8, 0.7]
    with pytest.raises(ValueError, match=r"optim\.momentum_list has 2 values .* n_layer=3"):
        layer_momenta("list", 3, 0.95, 0, 0, [0.9, 0.8])
    with pytest.raises(ValueError, match=r"optim\.momentum_list"):
        layer_momenta("list", 3, 0.95, 0, 0)


def _layer_matrix_ids(model, i):
    blk = model.blocks[i]
    mats = (blk.attn.c_q, blk.attn.c_k, blk.attn.c_v, blk.attn.proj, blk.mlp.fc, blk.mlp.proj)
    return sorted(id(m.weight) for m in mats)


@pytest.mark.parametrize(
    "extra, want",
    [
        (
            dict(momentum_schedule="inverse", momentum_first=0.99, momentum_last=0.90),
            [0.90, 0.93, 0.96, 0.99],
        ),
        (
            dict(momentum_schedule="list", momentum_list=[0.91, 0.97, 0.93, 0.95]),
            [0.91, 0.97, 0.93, 0.95],
        ),
    ],
)
def test_inverse_and_list_schedules_land_on_the_right_layers(extra, want):
    model = GPT(vocab_size=64, n_layer=4, d_model=32, n_head=2, n_kv_head=1)
    cfg = dict(
        OPTIM,
        lr_mult_list=[1.0, 0.5, 2.0, 1.5],
        wd_mult_list=[0, 1, 2, 3],
        weight_decay=0.1,
        **extra,
    )
    muon = build_optimizers(model, cfg)[-1]
    apply_schedules([muon], 0, 100, cfg)
    assert [g["momentum"] for g in muon.param_groups] == pytest.approx(want)
    for i, group in enumerate(muon.param_groups):
        assert group["layer"] == i
        assert sorted(id(p) for p in group["params"]) == _layer_matrix_ids(model, i)
    assert [g["lr"] for g in muon.param_groups] == pytest.approx([0.04, 0.02, 0.08, 0.06])
    assert [g["weight_decay"] for g in muon.param_groups] == pytest.approx([0, 0.1, 0.2, 0.3])


@pytest.mark.parametrize("key", ["momentum_list", "lr_mult_list", "wd_mult_list"])
def test_wrong_list_length_names_the_key(key):
    model = GPT(vocab_size=64, n_layer=3, d_model=32, n_head=2, n_kv_head=1)
    cfg = dict(OPTIM, momentum_schedule="list", momentum_list=[0.9] * 3)
    cfg[key] = [0.9] * 4
    with pytest.raises(ValueError, match=rf"optim\.{key} has 4 values .* n_layer=3"):
        build_optimizers(model, cfg)


@pytest.mark.parametrize("key, bad", [("orthogonalize", "svd"), ("wd_schedule", "cosine")])
def test_unknown_names_are_rejected(key, bad):
    model = GPT(vocab_size=64, n_layer=2, d_model=32, n_head=2, n_kv_head=1)
    with pytest.raises(ValueError, match=rf"optim\.{key}"):
        build_optimizers(model, dict(OPTIM, **{key: bad}))


def _muon_on(p, **kw):
    return Muon([dict(params=[p])], lr=0.1, momentum=0.9, **kw)


def test_weight_decay_of_a_zero_gradient_matrix():
    lr, wd = 0.1, 0.5
    for cautious in (False, True):
        p = torch.nn.Parameter(torch.randn(8, 16, generator=torch.Generator().manual_seed(0)))
        p0 = p.detach().clone()
        opt = _muon_on(p, weight_decay=wd, cautious_wd=cautious)
        want = p0.clone()
        for _ in range(3):
            p.grad = torch.zeros_like(p)
            opt.step()
            if not cautious:
                want.mul_(1 - lr * wd)
        # Cautious: the update is zero, so its sign never matches the weight's: nothing decays.
        assert torch.equal(p.detach(), want)


def test_cautious_weight_decay_only_where_update_and_weight_agree_in_sign():
    gen = torch.Generator().manual_seed(0)
    w0, grad = torch.randn(16, 32, generator=gen), torch.randn(16, 32, generator=gen)
    after = {}
    for name, kw in {"none": {}, "cautious": dict(weight_decay=0.5, cautious_wd=True)}.items():
        p = torch.nn.Parameter(w0.clone())
        p.grad = grad.clone()
        _muon_on(p, **kw).step()
        after[name] = p.detach()
    update = (w0 - after["none"]) / 0.1  # the step is p -= lr * update
    mask = update * w0 > 0
    assert 0.2 < mask.float().mean() < 0.8
    torch.testing.assert_close(after["cautious"] - after["none"], -0.1 * 0.5 * w0 * mask)


def test_weight_decay_schedule_and_width_scaling():
    assert wd_multiplier("constant", 99, 100) == 1.0
    assert wd_multiplier("linear_to_zero", 0, 100) == 1.0
    assert wd_multiplier("linear_to_zero", 99, 100) == pytest.approx(0.01)
    assert wd_multiplier("linear_to_zero", 10, 100, elapsed_frac=0.6) == pytest.approx(0.4)
    model = GPT(vocab_size=64, n_layer=2, d_model=32, n_head=2, n_kv_head=1)
    cfg = dict(OPTIM, weight_decay=0.1, wd_schedule="linear_to_zero")
    muon = build_optimizers(model, cfg)[-1]
    apply_schedules([muon], 0, 1000, cfg)
    assert muon.param_groups[0]["weight_decay"] == pytest.approx(0.1)
    apply_schedules([muon], 999, 1000, cfg)
    assert muon.param_groups[0]["weight_decay"] == pytest.approx(1e-4)  # ~0 at the last step
    for d_ref, factor in ((64, 4.0), (16, 0.25), (32, 1.0)):
        muon = build_optimizers(model, dict(OPTIM, weight_decay=0.1, wd_scale_ref_dim=d_ref))[-1]
        assert [g["weight_decay"] for g in muon.param_groups] == pytest.approx([0.1 * factor] * 2)


def test_normuon_keeps_the_update_rms_and_equalises_rows():
    gen = torch.Generator().manual_seed(0)
    o = torch.randn(16, 32, generator=gen) * torch.logspace(0, 1, 16)[:, None]
    out = normuon_normalize(o, {}, 0.95)
    assert out.norm() == pytest.approx(o.norm().item(), rel=1e-5)
    rows = out.norm(dim=1)
    assert torch.allclose(rows, rows.mean().expand_as(rows), rtol=1e-5)
    # In the optimizer: same step size as plain Muon, equal per-neuron (row) step norms.
    w0, grad = torch.randn(24, 48, generator=gen), torch.randn(24, 48, generator=gen)
    deltas = {}
    for normuon in (False, True):
        p = torch.nn.Parameter(w0.clone())
        p.grad = grad.clone()
        _muon_on(p, normuon=normuon).step()
        deltas[normuon] = w0 - p.detach()
    assert deltas[True].norm() == pytest.approx(deltas[False].norm().item(), rel=1e-4)
    rows = deltas[True].norm(dim=1)
    assert rows.std() / rows.mean() < 1e-3 < deltas[False].norm(dim=1).std() / rows.mean()
    # A zero gradient gives a zero step, not NaN.
    assert torch.equal(normuon_normalize(torch.zeros(4, 8), {}, 0.95), torch.zeros(4, 8))


def test_new_options_train():
    torch.manual_seed(0)
    model = GPT(vocab_size=64, n_layer=2, d_model=32, n_head=2, n_kv_head=1)
    cfg = dict(
        OPTIM,
        orthogonalize="polar_express",
        normuon=True,
        weight_decay=0.1,
        cautious_wd=True,
        wd_schedule="linear_to_zero",
    )
    opts = build_optimizers(model, cfg)
    x = torch.randint(0, 64, (4, 17))
    losses = []
    for step in range(8):
        apply_schedules(opts, step, 8, cfg)
        loss = model(x[:, :-1], x[:, 1:])
        loss.backward()
        losses.append(loss.item())
        for opt in opts:
            opt.step()
        model.zero_grad(set_to_none=True)
    assert losses[-1] < losses[0]


def test_adam_for_the_matrices_keeps_the_layer_groups_and_steps_like_adamw():
    """optim.matrix_optimizer: adam (nGPT's recipe): the blocks' matrices get AdamW with the
    per-layer lr multipliers and the wd schedule, and step exactly like torch's AdamW."""
    torch.manual_seed(0)
    model = GPT(vocab_size=64, n_layer=2, d_model=32, n_head=2, n_kv_head=1)
    cfg = dict(OPTIM, matrix_optimizer="adam", matrix_lr=1e-3, weight_decay=0.1,
               lr_mult_list=[1.0, 0.5], wd_schedule="linear_to_zero")  # fmt: skip
    opts = build_optimizers(model, cfg)
    adam = opts[-1]
    assert type(adam) is torch.optim.AdamW
    assert [g["lr"] for g in adam.param_groups] == pytest.approx([1e-3, 5e-4])
    assert all("momentum" not in g for g in adam.param_groups)
    assert list(apply_schedules(opts, 500, 1000, cfg)) == ["lr_mult"]  # no momentum to log
    assert [g["weight_decay"] for g in adam.param_groups] == pytest.approx([0.05, 0.05])
    p = adam.param_groups[1]["params"][0]
    ref_p = torch.nn.Parameter(p.detach().clone())
    ref = torch.optim.AdamW([ref_p], lr=5e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.05)
    for _ in range(3):
        g = torch.randn_like(p)
        p.grad, ref_p.grad = g.clone(), g.clone()
        adam.step()
        ref.step()
    torch.testing.assert_close(p.detach(), ref_p.detach(), rtol=0, atol=0)


def test_adam_for_the_matrices_rejects_muon_only_options():
    import copy

    import yaml

    from conftest import REPO
    from speedlab.config import validate

    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for key, value in (("momentum_schedule", "linear"), ("normuon", True)):
        config = copy.deepcopy(base)
        config["defaults"]["optim"].update(matrix_optimizer="adam", **{key: value})
        with pytest.raises(ValueError, match=key):
            validate(config)


# --- train.arithmetic: parameter_golf, and optim.warmdown: parameter_golf (issue 12) ----------

REFERENCE = REPO / "reference" / "parameter-golf" / "train_gpt.py"


def test_parameter_golf_muon_step_is_bf16_as_train_gpt():
    """The arithmetic written out: fp32 momentum, Newton-Schulz on the bf16 copy normalized in
    bf16, the shape scale multiplied in bf16, the bf16 update cast to fp32 when applied."""
    gen = torch.Generator().manual_seed(0)
    w0 = torch.randn(48, 16, generator=gen)  # tall: the transposed iteration, scale sqrt(3)
    grads = [torch.randn(48, 16, generator=gen) for _ in range(3)]
    got = {}
    for arithmetic in ("fp32", "parameter_golf"):
        p = torch.nn.Parameter(w0.clone())
        opt = _muon_on(p, arithmetic=arithmetic)
        for g in grads:
            p.grad = g.clone()
            opt.step()
        got[arithmetic] = p.detach()
    want, buf = w0.clone(), torch.zeros_like(w0)
    a, b, c = (3.4445, -4.7750, 2.0315)
    for g in grads:
        buf.mul_(0.9).add_(g)
        x = g.add(buf, alpha=0.9).bfloat16()
        x = (x / (x.norm() + 1e-7)).T
        for _ in range(5):
            gram = x @ x.T
            x = a * x + (b * gram + c * gram @ gram) @ x
        x = x.T * 3**0.5
        assert x.dtype == torch.bfloat16
        want.add_(x.float(), alpha=-0.1)
    assert torch.equal(got["parameter_golf"], want)
    assert not torch.equal(got["fp32"], want)  # fp32 arithmetic iterates in fp32 on the CPU


@pytest.mark.skipif(not REFERENCE.exists(), reason="needs the git-ignored reference/ clone")
def test_parameter_golf_optimizers_equal_train_gpt_bitwise():
    """speedlab's optimizers against train_gpt.py's own Muon (imported from reference/, never
    copied) and fused Adams, on train_gpt.py's precision: 20 steps, bitwise."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_gpt_reference", REFERENCE)
    tg = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tg)
    cfg = dict(OPTIM, momentum_warmup_steps=10, warmdown="parameter_golf", warmdown_iters=7)
    ours, theirs = _golf_model(), _golf_model()
    opts = build_optimizers(ours, cfg, "parameter_golf")
    twin = dict(theirs.named_parameters())
    twin_of = {id(p): twin[n] for n, p in ours.named_parameters()}
    betas, eps = (cfg["adam_beta1"], cfg["adam_beta2"]), cfg["adam_eps"]
    matrices = [twin_of[id(p)] for g in opts[2].param_groups for p in g["params"]]
    ref_muon = tg.Muon(matrices, cfg["matrix_lr"], cfg["momentum"], cfg["ns_steps"])
    adams = [
        torch.optim.Adam([twin_of[id(p)] for p in g["params"]], g["lr"], betas, eps=eps, fused=True)
        for g in (opt.param_groups[0] for opt in opts[:2])
    ]
    ref = [ref_muon, *adams]
    bases = [o.param_groups[0]["lr"] for o in ref]
    for step in range(20):
        mult = apply_schedules(opts, step, 20, cfg)["lr_mult"]
        assert mult == (max((20 - step) / 7, 0.0) if step >= 13 else 1.0)
        frac = min(step / 10, 1.0)
        start = cfg["momentum_warmup_start"]
        ref_muon.param_groups[0]["momentum"] = (1 - frac) * start + frac * cfg["momentum"]
        for o, base in zip(ref, bases, strict=True):
            o.param_groups[0]["lr"] = base * mult
        gen = torch.Generator().manual_seed(100 + step)
        for name, p in ours.named_parameters():
            p.grad = torch.randn(p.shape, generator=gen).to(p.dtype)
            twin[name].grad = p.grad.clone()
        for o in opts + ref:
            o.step()
    for name, p in ours.named_parameters():
        assert torch.equal(p, twin[name]), name


def _golf_model():
    """A small GPT in train_gpt.py's precision: bf16 token embedding, bf16-rounded fp32 matrices."""
    torch.manual_seed(0)
    model = GPT(vocab_size=64, n_layer=2, d_model=48, n_head=2, n_kv_head=1)
    model.tok_emb.to(torch.bfloat16)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2 and p.dtype == torch.float32:
                p.copy_(p.bfloat16().float())
    return model


def test_parameter_golf_adams_are_fused_with_bf16_state_for_the_bf16_embedding():
    model = _golf_model()
    opts = build_optimizers(model, OPTIM, "parameter_golf")
    assert [o.defaults["fused"] for o in opts[:2]] == [True, True]
    assert not build_optimizers(_golf_model(), OPTIM)[0].defaults["fused"]  # fp32: as before
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    for o in opts:
        o.step()
    state = opts[0].state[model.tok_emb.weight]
    assert state["exp_avg"].dtype == state["exp_avg_sq"].dtype == torch.bfloat16
    adamw = build_optimizers(_golf_model(), dict(OPTIM, matrix_optimizer="adam"), "parameter_golf")
    assert adamw[-1].defaults["fused"] is True


def test_unknown_arithmetic_names_the_key():
    model = GPT(vocab_size=64, n_layer=2, d_model=32, n_head=2, n_kv_head=1)
    with pytest.raises(ValueError, match=r"train\.arithmetic"):
        build_optimizers(model, OPTIM, "bf16")


def test_parameter_golf_warmdown_by_steps():
    # 50 steps, warmdown_iters 15: train_gpt.py's (total - step) / warmdown_iters on [35, 50).
    assert parameter_golf_lr_multiplier(40, 50, 0, 15) == (50 - 40) / 15
    assert parameter_golf_lr_multiplier(40, 50, 0, 15) == 0.6666666666666666
    assert parameter_golf_lr_multiplier(34, 50, 0, 15) == 1.0
    assert parameter_golf_lr_multiplier(35, 50, 0, 15) == 1.0  # 15 / 15
    assert parameter_golf_lr_multiplier(49, 50, 0, 15) == 1 / 15
    assert parameter_golf_lr_multiplier(0, 50, 0, 200) == 50 / 200  # warmdown from the start
    assert parameter_golf_lr_multiplier(40, 50, 0, 0) == 1.0  # warmdown_iters <= 0: none
    assert parameter_golf_lr_multiplier(3, 50, 10, 15) == 0.4  # optim.warmup_steps come first


def test_parameter_golf_warmdown_by_the_clock():
    # 60 s cap, 10 steps in 30 s: 3000 ms a step, so the warmdown is 15 x 3000 = 45000 ms long
    # and 30000 ms are left: 30000 / 45000.
    assert parameter_golf_lr_multiplier(10, 20000, 0, 15, 30.0, 60.0) == 30000.0 / 45000.0
    assert parameter_golf_lr_multiplier(10, 20000, 0, 15, 10.0, 60.0) == 1.0  # 50 s left > 15 s
    assert parameter_golf_lr_multiplier(10, 20000, 0, 15, 61.0, 60.0) == 0.0  # past the cap
    assert parameter_golf_lr_multiplier(0, 20000, 0, 15, 0.0, 60.0) == 1.0  # nothing measured
    # The steps alone decide without a cap (None or 0, as train_gpt.py's MAX_WALLCLOCK_SECONDS).
    assert parameter_golf_lr_multiplier(40, 50, 0, 15, 30.0, None) == (50 - 40) / 15
    assert parameter_golf_lr_multiplier(40, 50, 0, 15, 30.0, 0) == (50 - 40) / 15


def test_apply_schedules_takes_seconds_and_the_cap():
    model = GPT(vocab_size=64, n_layer=2, d_model=32, n_head=2, n_kv_head=1)
    golf = dict(OPTIM, warmdown="parameter_golf", warmdown_iters=15)
    opts = build_optimizers(model, golf)
    assert apply_schedules(opts, 40, 50, golf)["lr_mult"] == (50 - 40) / 15
    assert opts[-1].param_groups[0]["lr"] == OPTIM["matrix_lr"] * ((50 - 40) / 15)
    logged = apply_schedules(opts, 10, 20000, golf, elapsed_s=30.0, wallclock_s=60.0)
    assert logged["lr_mult"] == 30000.0 / 45000.0
    # The fraction rule: elapsed_s / wallclock_s is the elapsed fraction it always took.
    frac = dict(OPTIM, warmdown_frac=0.6, weight_decay=0.1, wd_schedule="linear_to_zero")
    opts = build_optimizers(model, frac)
    logged = apply_schedules(opts, 10, 100, frac, elapsed_s=30.0, wallclock_s=60.0)
    assert logged["lr_mult"] == lr_multiplier(10, 100, 0, 0.6, 0.5)
    assert opts[-1].param_groups[0]["weight_decay"] == 0.1 * wd_multiplier(
        "linear_to_zero", 10, 100, 0.5
    )
    assert apply_schedules(opts, 10, 100, frac, elapsed_s=30.0)["lr_mult"] == 1.0  # no cap
