"""train.arithmetic parameter_golf stores and computes what train_gpt.py does; fp32 is unchanged."""

import pytest
import torch

from speedlab.train.models.gpt import GPT
from speedlab.train.models.layers import CastedLinear
from speedlab.train.precision import cast_model


def small(seed=0):
    torch.manual_seed(seed)
    return GPT(vocab_size=64, n_layer=2, d_model=32, n_head=4, n_kv_head=2)


def test_parameter_golf_dtypes_follow_train_gpt():
    reference = small()
    model = cast_model(small(), "parameter_golf")
    params = dict(model.named_parameters())
    assert params["tok_emb.weight"].dtype == torch.bfloat16
    for name, p in params.items():
        if name == "tok_emb.weight":
            continue
        assert p.dtype == torch.float32, name
    # Linear weights went through bf16 and back (.bfloat16() then .float()): bf16 values in fp32.
    for name, p in reference.named_parameters():
        if p.ndim == 2 and "blocks" in name and "resid_mix" not in name:
            torch.testing.assert_close(params[name], p.bfloat16().float(), rtol=0, atol=0)
    assert model.blocks[0].attn.rotary.inv_freq.dtype == torch.bfloat16  # buffers are cast too


def test_parameter_golf_forward_runs_in_bf16_without_autocast():
    model = cast_model(small(), "parameter_golf")
    seen = []
    for m in model.modules():
        if isinstance(m, CastedLinear):
            m.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    x = torch.randint(0, 64, (2, 16))
    loss = model(x, x)
    assert loss.dtype == torch.float32 and set(seen) == {torch.bfloat16}
    loss.backward()
    assert model.blocks[0].attn.c_q.weight.grad.dtype == torch.float32
    assert model.tok_emb.weight.grad.dtype == torch.bfloat16


def test_fp32_is_exactly_the_plain_model():
    a, b = small(), cast_model(small(), "fp32")
    x = torch.randint(0, 64, (2, 16))
    assert torch.equal(a(x, x), b(x, x))
    assert all(p.dtype == torch.float32 for p in b.parameters())


def test_softcap_precision_follows_the_arithmetic():
    """parameter_golf rounds the softcapped logits to bf16 (train_gpt.py applies the cap to the
    bf16 projection); the same weights with the cap on fp32 logits give other numbers."""
    model = cast_model(small(), "parameter_golf")
    x = torch.randint(0, 64, (1, 8))
    with torch.no_grad():
        model.tok_emb.weight.normal_(std=1.0)  # logits far from zero, where rounding shows
        capped = model.logits(x)
        model.softcap_in_compute_dtype = False
        uncapped_bf16 = model.logits(x)
    assert capped.dtype == uncapped_bf16.dtype == torch.float32
    assert torch.equal(capped, capped.bfloat16().float())  # bf16 values
    assert not torch.equal(capped, uncapped_bf16)


def test_unknown_arithmetic_and_ngpt_are_refused_naming_the_key():
    with pytest.raises(ValueError, match="train.arithmetic: unknown 'bf17'"):
        cast_model(small(), "bf17")
    with pytest.raises(ValueError, match="model.kind 'ngpt' trains with train.arithmetic: fp32"):
        cast_model(small(), "parameter_golf", kind="ngpt")
