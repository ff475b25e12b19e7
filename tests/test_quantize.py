import json
import math

import numpy as np
import pytest
import torch

from speedlab.data.shards import write_manifest, write_shard
from speedlab.train.models import GPT, build_model
from speedlab.train.quantize import (
    code_bytes,
    compress,
    decompress,
    dequantize_state,
    main,
    payload_bytes,
    quantize_state,
    roundtrip,
)


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


# --- parameter-golf export rules -----------------------------------------------------------------


def _pg_state():
    g = torch.Generator().manual_seed(2)
    return {
        # rows with clip < 1 (scale floored at 1/127) and rows with clip > 1
        "blocks.0.mlp.fc.weight": torch.randn(256, 300, generator=g)
        * torch.linspace(0.01, 20, 256)[:, None],
        "big_vector": torch.randn(70_000, generator=g) * 3,
        "blocks.0.attn_scale": torch.rand(512, generator=g) * 3,
        "blocks.0.resid_mix": torch.randn(2, 512, generator=g),
        "blocks.0.attn.q_gain": torch.rand(8, generator=g) + 1,
        "skip_weights": torch.randn(4, 512, generator=g),
        "blocks.0.skip_weight": torch.randn(16, generator=g),
        "small": torch.randn(64, 64, generator=g),
        "small_bf16": torch.randn(32, generator=g).bfloat16(),
        "small_fp16": torch.randn(32, generator=g).half(),
        "steps": torch.tensor(3),
    }


def test_parameter_golf_payload_of_the_9x512_baseline():
    torch.manual_seed(0)
    model = GPT(1024, 9, 512, 8, 4, 2)
    assert sum(p.numel() for p in model.parameters()) == 17_059_912
    packed = quantize_state(model.state_dict(), scheme="parameter_golf")
    # parameter-golf's logged int8 payload for this shape ("payload:17178912")
    assert payload_bytes(packed) == 17_178_912
    assert len(packed["quantized"]) == 1 + 9 * 6  # tok_emb and the six matrices of each block
    assert all(s.dtype == torch.float16 for s in packed["scales"].values())


def test_parameter_golf_error_is_within_half_a_step_inside_the_clip():
    state = _pg_state()
    packed = quantize_state(state, scheme="parameter_golf")
    assert set(packed["quantized"]) == {"blocks.0.mlp.fc.weight", "big_vector"}
    back = dequantize_state(decompress(compress(packed)))
    w = state["blocks.0.mlp.fc.weight"]
    scale = packed["scales"]["blocks.0.mlp.fc.weight"].float()[:, None]
    clip = torch.quantile(w.abs(), 0.9999984, dim=1, keepdim=True)
    # scale = clip / 127, floored at 1 / 127: rows whose clip is below 1 all sit on the floor
    floor = torch.tensor(1 / 127).half().float()
    assert torch.equal(scale == floor, clip <= 1) and 0 < int((clip <= 1).sum()) < 256
    assert torch.equal(scale, torch.maximum(clip / 127, torch.tensor(1 / 127)).half().float())
    inside = w.abs() <= clip
    err = (back["blocks.0.mlp.fc.weight"] - w).abs()
    # half a step, plus the fp16 rounding of the stored scale times |q| <= 127
    assert (err[inside] <= (scale * (0.5 + 127 * 2**-11)).expand_as(w)[inside]).all()
    assert back["blocks.0.mlp.fc.weight"].dtype == torch.float32
    v, s = state["big_vector"], packed["scales"]["big_vector"]
    assert s.ndim == 0 and s.dtype == torch.float32  # per-tensor rule for a large 1-D tensor
    vclip = torch.quantile(v.abs(), 0.9999984).item()
    assert s.item() == torch.tensor(vclip / 127).item()
    inside = v.abs() <= vclip
    assert ((back["big_vector"] - v).abs()[inside] <= s * 0.5 * (1 + 1e-6)).all()


def test_parameter_golf_passthrough_dtypes():
    state = _pg_state()
    packed = quantize_state(state, scheme="parameter_golf")
    back = dequantize_state(decompress(compress(packed)))
    for name in (
        "blocks.0.attn_scale",
        "blocks.0.resid_mix",
        "blocks.0.attn.q_gain",
        "skip_weights",
        "blocks.0.skip_weight",
    ):
        assert packed["passthrough"][name].dtype == torch.float32
        assert back[name].dtype == torch.float32 and torch.equal(back[name], state[name])
    assert packed["passthrough"]["small"].dtype == torch.float16
    assert packed["passthrough"]["small_bf16"].dtype == torch.float16
    assert packed["passthrough"]["small_fp16"].dtype == torch.float16
    assert packed["passthrough_orig_dtypes"] == {"small": "float32", "small_bf16": "bfloat16"}
    assert torch.equal(back["small"], state["small"].half().float())
    assert back["small_bf16"].dtype == torch.bfloat16
    assert torch.equal(back["small_fp16"], state["small_fp16"])
    assert torch.equal(back["steps"], state["steps"])
    assert set(back) == set(state)


def test_parameter_golf_clip_is_the_torch_quantile_per_row():
    g = torch.Generator().manual_seed(3)
    w = torch.randn(4, 2**19, generator=g) * 40  # long rows: the quantile clips the top ~1
    w[0, 7] = 1e4
    packed = quantize_state({"w": w}, scheme="parameter_golf")
    clip = torch.quantile(w.abs(), 0.9999984, dim=1)
    # torch.quantile interpolates linearly between order statistics, with q and the index
    # arithmetic in the input's dtype (float32); numpy agrees when asked for the same
    expected = np.quantile(w.abs().numpy(), np.float32(0.9999984), axis=1)
    np.testing.assert_allclose(clip.double().numpy(), expected, rtol=1e-6)
    assert torch.equal(packed["scales"]["w"], (clip / 127).half())
    # the clip sits 16% of the way from the second-largest |w| to the outlier, which is clipped
    assert 1e3 < clip[0] < 2e3
    back = dequantize_state(packed)["w"]
    torch.testing.assert_close(back[0, 7], clip[0], rtol=2e-3, atol=0)
    assert packed["quantized"]["w"].abs().max() == 127


def test_parameter_golf_blob_roundtrips_into_the_model():
    torch.manual_seed(1)
    model = GPT(512, 2, 256, 4, 2, 2)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    packed = quantize_state(model.state_dict(), scheme="parameter_golf")
    blob = compress(packed)
    loaded = decompress(blob)
    assert loaded["__quant_format__"] == "int8_clean_per_row_v1"
    for group in ("quantized", "scales", "passthrough"):
        assert loaded[group].keys() == packed[group].keys()
        assert all(torch.equal(loaded[group][k], packed[group][k]) for k in packed[group])
    assert compress(loaded) == blob
    clone = GPT(512, 2, 256, 4, 2, 2)
    clone.load_state_dict(dequantize_state(loaded), strict=True)
    assert len(blob) < payload_bytes(packed) + 4096


def test_scheme_arguments_are_checked():
    with pytest.raises(ValueError, match="fixed thresholds"):
        quantize_state({}, 65_536, 99.99984, scheme="parameter_golf")
    with pytest.raises(ValueError, match="unknown"):
        quantize_state({}, 64, 100.0, scheme="gptq")
    with pytest.raises(ValueError, match="needs"):
        quantize_state({})


def test_payload_bytes_counts_every_packed_tensor_for_the_simple_scheme():
    state = {"w": torch.randn(16, 16), "attn_scale": torch.ones(16), "n": torch.tensor(1)}
    packed = quantize_state(state, keep_float_max_numel=0, clip_percentile=100.0)
    assert payload_bytes(packed) == 16 * 16 + 16 * 2 + 16 * 4 + 8


def _tiny_run(tmp_path, scheme_in_config):
    """A checkpoint as the trainer writes it (a validated config), a val shard, a byte table."""
    import yaml

    from conftest import REPO
    from speedlab.config import run_config, validate

    torch.manual_seed(0)
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["scale"] = "smoke"  # 2 x 64, which the test's sizes below rely on
    cfg = run_config(validate(config), "quickstart", "uniform")
    cfg["train"].update(val_tokens=0, seq_len=32, batch_seqs=4)
    assert cfg["quant"] == {"keep_float_max_numel": 4096, "clip_percentile": 99.99984,
                            "scheme": "simple"}  # fmt: skip
    cfg["quant"]["scheme"] = scheme_in_config
    vocab = 1040  # the embedding (66,560 elements) is the one tensor above 65,536
    model = build_model(cfg["model"], vocab)
    final = {"val_loss": 5.7, "val_bpb": 3.0}
    ckpt = {"model": model.state_dict(), "config": cfg, "vocab_size": vocab, "final": final}
    torch.save(ckpt, tmp_path / "model.pt")
    tokens = np.random.default_rng(0).integers(0, vocab, 32 * 8 + 1)
    write_shard(tmp_path / "val_000.bin", tokens)
    write_manifest(tmp_path / "val.json", [tmp_path / "val_000.bin"], [len(tokens)])
    np.save(tmp_path / "tb.npy", np.stack([np.full(vocab, 2), np.zeros(vocab), np.zeros(vocab)]))
    return model.state_dict(), (tmp_path / "model.pt", tmp_path / "val.json", tmp_path / "tb.npy")


@pytest.mark.parametrize(
    ("in_config", "argument", "expected"),
    [
        ("simple", None, "simple"),  # the schema's default
        ("parameter_golf", None, "parameter_golf"),
        ("parameter_golf", "simple", "simple"),  # the argument overrides the config
    ],
)
def test_roundtrip_reports_sizes(tmp_path, in_config, argument, expected):
    state, inputs = _tiny_run(tmp_path, in_config)
    out = tmp_path / "roundtrip.json"
    r = roundtrip(*inputs, out, argument)
    assert r["scheme"] == expected
    if expected == "parameter_golf":
        packed = quantize_state(state, scheme="parameter_golf")
    else:
        packed = quantize_state(state, 4096, 99.99984)
    assert r["payload_bytes"] == payload_bytes(packed)
    assert r["compressed_bytes"] == len(compress(packed))
    assert r["code_bytes"] == code_bytes() > 0
    assert r["artifact_bytes"] == r["compressed_bytes"] + r["code_bytes"]
    assert json.loads(out.read_text()) == r
    assert math.isfinite(r["q_val_bpb"]) and r["n_int8_tensors"] > 0


def test_cli_scheme_flag(tmp_path, capsys):
    _, (model_pt, val, tb) = _tiny_run(tmp_path, "simple")
    out = tmp_path / "roundtrip.json"
    args = ["--model", str(model_pt), "--val", str(val), "--token-bytes", str(tb)]
    main([*args, "--out", str(out), "--scheme", "parameter_golf"])
    r = json.loads(out.read_text())
    assert r["scheme"] == "parameter_golf" and r["n_int8_tensors"] == 1
    assert f"payload {r['payload_bytes']:,} bytes" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([*args, "--out", str(out), "--scheme", "int4"])
