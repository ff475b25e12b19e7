"""int8 + zlib roundtrip: how small the trained model compresses and what that costs in bpb.

Each 2-D weight with more than keep_float_max_numel elements becomes per-row int8 with an fp16
scale (rows clipped at a high percentile of |w| so a few outliers do not waste the range);
everything else is kept in float. The whole thing is torch.save'd and zlib-compressed at level 9.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import zlib
from pathlib import Path

import numpy as np
import torch

from speedlab.evaluate import evaluate, val_slice
from speedlab.model import build_model
from speedlab.optim import CONTROL_NAMES
from speedlab.shards import load_split


def quantize_state(state: dict, keep_float_max_numel: int, clip_percentile: float) -> dict:
    packed: dict = {"int8": {}, "scale": {}, "float": {}, "dtype": {}}
    for name, t in state.items():
        t = t.detach().cpu()
        packed["dtype"][name] = str(t.dtype).removeprefix("torch.")
        if t.is_floating_point() and t.ndim == 2 and t.numel() > keep_float_max_numel:
            w = t.float()
            k = max(1, math.ceil(clip_percentile / 100 * w.size(1)))
            clip = w.abs().kthvalue(k, dim=1, keepdim=True).values
            scale = (clip / 127).clamp_min(1e-12).half()
            q = torch.round(w.clamp(-clip, clip) / scale.float()).clamp(-127, 127)
            packed["int8"][name] = q.to(torch.int8).contiguous()
            packed["scale"][name] = scale.squeeze(1).contiguous()
        elif t.is_floating_point():
            # Gains and mixes are few numbers that steer the whole network: keep them exact.
            keep32 = any(c in name for c in CONTROL_NAMES)
            packed["float"][name] = t.float() if keep32 else t.half()
        else:
            packed["float"][name] = t
    return packed


def dequantize_state(packed: dict) -> dict:
    state = {}
    for name, dtype in packed["dtype"].items():
        if name in packed["int8"]:
            w = packed["int8"][name].float() * packed["scale"][name].float()[:, None]
        else:
            w = packed["float"][name]
        state[name] = w.to(getattr(torch, dtype))
    return state


def compress(packed: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(packed, buf)
    return zlib.compress(buf.getvalue(), level=9)


def decompress(blob: bytes) -> dict:
    return torch.load(io.BytesIO(zlib.decompress(blob)), weights_only=True)


def roundtrip(model_pt: Path, val_manifest: Path, token_bytes: Path, out: Path) -> dict:
    ckpt = torch.load(model_pt, map_location="cpu", weights_only=False)
    cfg = ckpt["config"]
    packed = quantize_state(
        ckpt["model"], cfg["quant"]["keep_float_max_numel"], cfg["quant"]["clip_percentile"]
    )
    blob = compress(packed)
    model = build_model(cfg["model"], ckpt["vocab_size"])
    model.load_state_dict(dequantize_state(decompress(blob)))
    tokens = val_slice(load_split(val_manifest), cfg["train"]["val_tokens"])
    table = np.load(token_bytes)
    q = evaluate(model, tokens, table, cfg["train"]["seq_len"], cfg["train"]["batch_seqs"])
    raw = io.BytesIO()
    torch.save(ckpt["model"], raw)
    result = {
        "compressed_bytes": len(blob),
        "raw_state_bytes": raw.getbuffer().nbytes,
        "n_int8_tensors": len(packed["int8"]),
        "n_float_tensors": len(packed["float"]),
        "q_val_loss": q["val_loss"],
        "q_val_bpb": q["val_bpb"],
        "val_loss": ckpt["final"]["val_loss"],
        "val_bpb": ckpt["final"]["val_bpb"],
    }
    result["bpb_increase"] = result["q_val_bpb"] - result["val_bpb"]
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--val", type=Path, required=True, help="val split manifest")
    p.add_argument("--token-bytes", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    r = roundtrip(args.model, args.val, args.token_bytes, args.out)
    print(
        f"int8+zlib: {r['compressed_bytes']:,} bytes; val_bpb {r['val_bpb']:.4f} -> "
        f"{r['q_val_bpb']:.4f} ({r['bpb_increase']:+.4f})"
    )


if __name__ == "__main__":
    main()
