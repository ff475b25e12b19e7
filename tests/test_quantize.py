import torch

from speedlab.quantize import compress, decompress, dequantize_state, quantize_state


def test_int8_roundtrip_error_is_within_half_a_step():
    g = torch.Generator().manual_seed(0)
    state = {
        "w": torch.randn(256, 300, generator=g) * torch.linspace(0.01, 2, 256)[:, None],
        "small": torch.randn(8, 8, generator=g),
        "attn_scale": torch.rand(300, generator=g),
        "steps": torch.tensor(3),
    }
    packed = quantize_state(state, keep_float_max_numel=64, clip_percentile=100.0)
    assert set(packed["int8"]) == {"w"}
    back = dequantize_state(decompress(compress(packed)))
    scale = packed["scale"]["w"].float()[:, None]
    err = (back["w"] - state["w"]).abs()
    # round-to-nearest leaves at most half a quantization step (plus fp16 rounding of the scale)
    assert (err <= scale * 0.5 + state["w"].abs() * 2e-3).all()
    assert (err.amax(dim=1) > 0).all()
    torch.testing.assert_close(back["small"], state["small"], atol=2e-3, rtol=1e-3)
    torch.testing.assert_close(back["attn_scale"], state["attn_scale"], atol=0, rtol=0)
    assert back["steps"].item() == 3 and back["w"].dtype == torch.float32


def test_percentile_clip_bounds_outliers_and_compression_shrinks():
    w = torch.randn(64, 4096, generator=torch.Generator().manual_seed(1))
    w[0, 0] = 1000.0
    packed = quantize_state({"w": w}, 0, clip_percentile=99.9)
    back = dequantize_state(packed)["w"]
    assert back[0, 0] < 10  # the outlier is clipped, so the rest of row 0 keeps its resolution
    kept = w[0].abs() <= packed["scale"]["w"][0].float() * 127  # inside the row's clip range
    assert kept.sum() > 4000 and (back[0][kept] - w[0][kept]).abs().max() < 0.05
    raw = w.numel() * 4
    assert len(compress(packed)) < raw / 3.5
