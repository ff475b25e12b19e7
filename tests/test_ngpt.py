import math

import pytest
import torch

from speedlab.train.models.ngpt import NGPT, build_ngpt, normalize_weights


def tiny(**kw) -> NGPT:
    torch.manual_seed(0)
    args = dict(vocab_size=64, n_layer=2, d_model=32, n_head=4, n_kv_head=2, mlp_mult=2)
    return NGPT(**{**args, **kw})


def model_dim_norms(model: NGPT) -> dict[str, torch.Tensor]:
    """Norm of every vector along d_model, spelled out per matrix rather than read from norm_dim."""
    norms = {
        "tok_emb": model.tok_emb.weight.norm(dim=1),  # (V, d): rows
        "lm_head": model.lm_head.weight.norm(dim=1),  # (V, d): rows
    }
    for i, b in enumerate(model.blocks):
        for name, lin in (("c_q", b.attn.c_q), ("c_k", b.attn.c_k), ("c_v", b.attn.c_v)):
            norms[f"{i}.attn.{name}"] = lin.weight.norm(dim=1)  # (out, d): rows, the input side
        norms[f"{i}.attn.proj"] = b.attn.proj.weight.norm(dim=0)  # (d, d): columns, output side
        norms[f"{i}.mlp.c_u"] = b.mlp.c_u.weight.norm(dim=1)  # (hidden, d): rows
        norms[f"{i}.mlp.c_v"] = b.mlp.c_v.weight.norm(dim=1)  # (hidden, d): rows
        norms[f"{i}.mlp.proj"] = b.mlp.proj.weight.norm(dim=0)  # (d, hidden): columns
    return norms


def assert_unit(model: NGPT, atol=1e-5):
    for name, n in model_dim_norms(model).items():
        torch.testing.assert_close(n, torch.ones_like(n), atol=atol, rtol=0, msg=name)


def test_normalize_weights_gives_unit_vectors_along_d_model():
    model = tiny()
    assert_unit(model)  # normalized at construction
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(torch.rand_like(p) * 3 + 0.1)
    normalize_weights(model)
    assert_unit(model)
    # Every 2-D parameter is covered, and the scaling vectors are left alone.
    assert sum(p.ndim == 2 for p in model.parameters()) == 2 + 7 * len(model.blocks)


def test_hidden_states_are_unit_norm_after_every_block():
    model = tiny()
    seen = []
    for block in model.blocks:
        block.register_forward_hook(lambda m, i, out: seen.append(out.detach()))
    model.logits(torch.randint(0, 64, (2, 16)))
    assert len(seen) == len(model.blocks)
    for h in seen:
        torch.testing.assert_close(h.norm(dim=-1), torch.ones(2, 16), atol=1e-5, rtol=0)


def test_alpha_and_scales_have_their_init_values():
    model = tiny(alpha_init=0.1)
    d = 32
    for b in model.blocks:
        for alpha in (b.attn_alpha, b.mlp_alpha):
            torch.testing.assert_close(alpha(), torch.full((d,), 0.1))
            # Stored at alpha_scale = 1/sqrt(d_model), so Adam moves it in those units.
            torch.testing.assert_close(alpha.weight, torch.full((d,), 1 / math.sqrt(d)))
        torch.testing.assert_close(b.attn.s_qk(), torch.ones(16))
        torch.testing.assert_close(b.mlp.s_u(), torch.ones(64))
    torch.testing.assert_close(model.s_z(), torch.ones(64))
    assert tiny().blocks[0].attn_alpha()[0].item() == pytest.approx(0.05)


def test_causal():
    model = tiny()
    x = torch.randint(0, 64, (2, 16))
    y = x.clone()
    y[:, 10:] = (y[:, 10:] + 1) % 64
    with torch.no_grad():
        a, b = model.logits(x), model.logits(y)
    torch.testing.assert_close(a[:, :10], b[:, :10])
    assert not torch.allclose(a[:, 10:], b[:, 10:])


def test_mha_and_gqa_run():
    x = torch.randint(0, 64, (2, 8))
    for kv in (4, 2, 1, None):
        loss = tiny(n_kv_head=kv)(x, x)
        assert loss.ndim == 0 and torch.isfinite(loss)
    assert tiny()(x, x, reduction="none").shape == (16,)


def test_training_lowers_loss_and_keeps_weights_on_the_sphere():
    model = tiny()
    # A fixed repeating pattern: every next token is predictable from the current one.
    pattern = torch.tensor([3, 17, 42, 8, 61, 25, 9, 33])
    seq = pattern.repeat(5)
    x, y = seq[:-1].expand(4, -1), seq[1:].expand(4, -1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        normalize_weights(model)
        losses.append(loss.item())
    assert losses[0] == pytest.approx(math.log(64), abs=0.3)  # logits are cosines: near uniform
    # Logits are s_z times cosines, so the loss can only fall as fast as s_z grows (~0.06/step).
    assert losses[-1] < 0.5 * losses[0]
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False))
    assert model.s_z().mean() > 1.5
    assert_unit(model)


def test_build_ngpt_reads_config_and_defaults():
    cfg = dict(n_layer=2, d_model=64, n_head=4, n_kv_head=2, mlp_mult=2, rope_base=10000.0)
    model = build_ngpt({**cfg, "ngpt": {}}, vocab_size=50)
    assert len(model.blocks) == 2 and model.lm_head.weight.shape == (50, 64)
    assert model.cfg["alpha_scale"] == pytest.approx(1 / 8)
    assert model.cfg["suv_scale"] == 1.0
    model = build_ngpt({**cfg, "ngpt": {"alpha_init": 0.2, "sz_scale": None}}, vocab_size=50)
    assert model.cfg["alpha_init"] == 0.2 and model.cfg["sz_scale"] == pytest.approx(1 / 8)
    with pytest.raises(TypeError, match="alpha_int"):
        build_ngpt({**cfg, "ngpt": {"alpha_int": 0.2}}, vocab_size=50)


def test_after_step_puts_ngpt_back_on_the_sphere_and_leaves_gpt_alone():
    from speedlab.train.models.gpt import GPT

    model = tiny()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)
    model.after_step()  # what the training loop calls after every optimizer step
    assert_unit(model)
    gpt = GPT(vocab_size=64, n_layer=2, d_model=32, n_head=4, n_kv_head=2)
    before = {k: v.clone() for k, v in gpt.state_dict().items()}
    gpt.after_step()
    assert all(torch.equal(before[k], v) for k, v in gpt.state_dict().items())
