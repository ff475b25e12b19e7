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
