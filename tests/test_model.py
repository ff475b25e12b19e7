import torch

from speedlab.model import GPT


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
