import pytest
import torch

from speedlab.train.models.gpt import GPT


def test_parameter_golf_baseline_size():
    # 9 layers x 512, 8 heads / 4 KV heads, MLP x2, vocab 1024: parameter-golf's baseline.
    model = GPT(vocab_size=1024, n_layer=9, d_model=512, n_head=8, n_kv_head=4, mlp_mult=2)
    assert sum(p.numel() for p in model.parameters()) == 17_059_912


def test_causal_and_identity_at_init():
    torch.manual_seed(0)
    model = GPT(vocab_size=50, n_layer=2, d_model=32, n_head=4, n_kv_head=2)
    x = torch.randint(0, 50, (2, 16))
    y = x.clone()
    y[:, 10:] = (y[:, 10:] + 1) % 50
    with torch.no_grad():
        for block in model.blocks:  # leave the zero init so the test sees attention work
            torch.nn.init.normal_(block.attn.proj.weight, std=0.1)
        a, b = model.logits(x), model.logits(y)
    torch.testing.assert_close(a[:, :10], b[:, :10])
    assert not torch.allclose(a[:, 10:], b[:, 10:])


def test_loss_at_init_is_near_uniform():
    torch.manual_seed(0)
    model = GPT(vocab_size=256, n_layer=2, d_model=64, n_head=4, n_kv_head=2)
    x, y = torch.randint(0, 256, (2, 4, 32))
    loss = model(x, y)
    assert abs(loss.item() - torch.log(torch.tensor(256.0)).item()) < 0.05


def test_modded124m_preset_shape():
    import yaml

    from conftest import REPO
    from speedlab.config import run_config, validate
    from speedlab.train.loop import padded_vocab
    from speedlab.train.models import build_model

    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["scale"] = "modded124m"
    cfg = run_config(validate(config), "quickstart", "uniform")
    vocab = padded_vocab(50257, cfg["model"]["vocab_size"])
    model = build_model(cfg["model"], vocab)
    assert vocab == 50304 and model.tok_emb.weight.shape == (50304, 768) and len(model.blocks) == 12
    # embedding 50304*768 + 12 blocks of (4*768^2 attention + 8*768^2 MLP + 4*768+6 gains)
    # + 6 skip weights of 768: the GPT-2-small-sized baseline of modded-nanogpt.
    blocks = 12 * (12 * 768**2 + 4 * 768 + 6)
    assert sum(p.numel() for p in model.parameters()) == 50304 * 768 + blocks + 6 * 768


def test_flops_and_mfu():
    import torch

    from speedlab.train.loop import flops_per_token, mfu, padded_vocab

    assert flops_per_token(1000, {"n_layer": 2, "d_model": 8}, 16) == 6000 + 12 * 2 * 8 * 16
    assert mfu(1e12, torch.device("cpu"), 100.0) is None
    with pytest.raises(ValueError, match="model.vocab_size=10 is smaller"):
        padded_vocab(1024, 10)


# model.kind modded2410: modded-nanogpt's 2024-10-14 record GPT (tests/test_golden_modded.py
# checks training against the record itself; these check the model's parts without it).
def modded_cfg(**shape) -> dict:
    shape = {"n_layer": 2, "d_model": 48, "n_head": 6, "n_kv_head": 6, "mlp_mult": 4, **shape}
    return {"kind": "modded2410", "rope_base": 10000.0, **shape}


def test_modded2410_is_gpt2_small():
    from speedlab.train.models import build_model

    with torch.device("meta"):
        model = build_model(modded_cfg(n_layer=12, d_model=768), 50304)
    # one 50304 x 768 matrix for embedding and head, and 12 blocks of 4 + 8 matrices of 768^2
    assert sum(p.numel() for p in model.parameters()) == 50304 * 768 + 12 * 12 * 768**2
    assert all(p.ndim == 2 for p in model.blocks.parameters())
    assert model.blocks[0].attn.head_dim == 128


def test_modded2410_draws_its_init_as_the_record_does():
    """The record builds nn.Embedding, then each block's c_q, c_k, c_v, c_proj, c_fc, c_proj as
    nn.Linear, then the head nn.Linear(d, V) whose weight the embedding is tied to; the output
    projections are zeroed after their draw."""
    from torch import nn

    from speedlab.train.models import build_model

    d, vocab = 48, 100
    torch.manual_seed(5)
    model = build_model(modded_cfg(d_model=d), vocab)
    after = torch.rand(3)
    torch.manual_seed(5)
    nn.Embedding(vocab, d)
    shapes = [(d, d)] * 4 + [(d, 4 * d), (4 * d, d)]
    drawn = [[nn.Linear(i, o, bias=False).weight for i, o in shapes] for _ in model.blocks]
    head = nn.Linear(d, vocab, bias=False).weight
    assert torch.equal(torch.rand(3), after)  # the generator was used as much, no more
    assert torch.equal(model.tok_emb.weight, head)
    for block, (q, k, v, _, fc, _) in zip(model.blocks, drawn, strict=True):
        attn = block.attn
        for got, want in ((attn.c_q, q), (attn.c_k, k), (attn.c_v, v), (block.mlp.c_fc, fc)):
            assert torch.equal(got.weight, want)
        assert not attn.c_proj.weight.any() and not block.mlp.c_proj.weight.any()


def test_modded2410_blocks_start_as_the_identity_and_are_causal():
    from speedlab.train.models import build_model
    from speedlab.train.models.layers import rms_norm

    torch.manual_seed(0)
    model = build_model(modded_cfg(), 64)
    x = torch.randint(0, 64, (2, 16))
    with torch.no_grad():
        emb = model.tok_emb.weight
        torch.testing.assert_close(model.logits(x), rms_norm(emb[x]) @ emb.T, rtol=0, atol=0)
        for block in model.blocks:  # leave the zero init so the test sees attention work
            torch.nn.init.normal_(block.attn.c_proj.weight, std=0.1)
        y = x.clone()
        y[:, 10:] = (y[:, 10:] + 1) % 64
        a, b = model.logits(x), model.logits(y)
    torch.testing.assert_close(a[:, :10], b[:, :10])
    assert not torch.allclose(a[:, 10:], b[:, 10:])
    with pytest.raises(ValueError, match="n_kv_head .3. must equal model.n_head .6."):
        build_model(modded_cfg(n_kv_head=3), 64)


def test_modded2410_rotary_tables_are_bf16_as_the_records():
    from speedlab.train.models.modded2410 import Rotary, apply_rotary

    rotary = Rotary(8, 10000.0)
    q = torch.randn(1, 5, 2, 8)
    cos, sin = rotary(q)
    assert cos.dtype == sin.dtype == torch.bfloat16 and cos.shape == (1, 5, 1, 4)
    out = apply_rotary(q, cos, sin)
    assert out.dtype == torch.float32
    # a rotation of each (x1, x2) pair: norms kept up to the bf16 tables' rounding
    pairs = lambda z: z[..., :4] ** 2 + z[..., 4:] ** 2  # noqa: E731
    torch.testing.assert_close(pairs(out), pairs(q), rtol=1e-2, atol=1e-3)
    torch.testing.assert_close(out[:, 0], q[:, 0])  # position 0 is not rotated


def test_modded2410_split_is_the_records():
    """optim.split modded2410: fused AdamW (weight decay 0) on the tied matrix alone, the
    record's Muon on every block matrix; a model with gains has nothing to put them in."""
    import yaml

    from conftest import REPO
    from speedlab.config import run_config, validate
    from speedlab.train.models import build_model
    from speedlab.train.optim import Muon, build_optimizers

    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    overrides = {"model.kind": "modded2410", "model.n_kv_head": 4, "optim.split": "modded2410"}
    config["studies"] = {"s": {"baseline": "c", "seeds": [0], "conditions": {"c": overrides}}}
    cfg = run_config(validate(config), "s", "c")
    model = build_model(cfg["model"], 64)
    adamw, muon = build_optimizers(model, cfg["optim"])
    assert isinstance(adamw, torch.optim.AdamW) and isinstance(muon, Muon)
    (group,) = adamw.param_groups
    assert group["params"] == [model.tok_emb.weight] and group["fused"]
    assert group["weight_decay"] == 0 and group["lr"] == cfg["optim"]["embed_lr"]
    assert muon.step_rule == "modded2410" and len(muon.param_groups) == len(model.blocks)
    assert sum(len(g["params"]) for g in muon.param_groups) == 6 * len(model.blocks)
    cfg["model"]["kind"] = "gpt"
    with pytest.raises(ValueError, match="no optimizer for the model's .* non-matrix"):
        build_optimizers(build_model(cfg["model"], 64), cfg["optim"])


def record_newton_schulz(g, steps=5, eps=1e-7):
    """The record's zeropower_via_newtonschulz5, as its text has it."""
    a, b, c = (3.4445, -4.7750, 2.0315)
    x = g.bfloat16()
    x /= x.norm() + eps
    if g.size(0) > g.size(1):
        x = x.T
    for _ in range(steps):
        mat_a = x @ x.T
        mat_b = mat_a @ x
        x = a * x + b * mat_b + c * mat_a @ mat_b
    if g.size(0) > g.size(1):
        x = x.T
    return x


@pytest.mark.parametrize("shape", [(8, 8), (32, 8), (8, 32), (24, 8)])
def test_modded2410_muon_step_is_the_records(shape):
    """Two steps of Muon with step_rule modded2410 on one matrix: Nesterov momentum, the
    record's bf16 Newton-Schulz (a 3d x d matrix in thirds), p -= (lr * scale) * update."""
    from speedlab.train.optim import Muon

    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(shape))
    want, buf = p.detach().clone(), torch.zeros(shape)
    opt = Muon([p], lr=0.01, momentum=0.95, step_rule="modded2410")
    rows, cols = shape
    for _ in range(2):
        p.grad = torch.randn(shape)
        buf.mul_(0.95).add_(p.grad)
        g = p.grad.add(buf, alpha=0.95)
        if rows == 3 * cols:
            g = torch.cat([record_newton_schulz(part) for part in g.split(cols)])
            scale = cols**0.5
        else:
            g, scale = record_newton_schulz(g), max(rows, cols) ** 0.5
        want.add_(g, alpha=-0.01 * scale)
        opt.step()
        assert torch.equal(p.detach(), want)
