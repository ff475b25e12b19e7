"""int8 + zlib roundtrip: how small the trained model compresses and what that costs in bpb.

The training job runs it at its end on its own device(s) (loop.score_roundtrip, as train_gpt.py
does); `python -m speedlab.train.quantize` recomputes it from a finished run's model.pt, e.g. with
another --scheme.

Two schemes, picked by `quant.scheme` in the run config (or --scheme):

- "simple" (default): each 2-D weight with more than keep_float_max_numel elements becomes
  per-row int8 with an fp16 scale (rows clipped at clip_percentile of |w| so a few outliers do not
  waste the range); everything else is kept in float (control tensors fp32, the rest fp16).
- "parameter_golf": the export rules of openai/parameter-golf's train_gpt.py
  (quantize_state_dict_int8), with its fixed constants; the config's keep_float_max_numel and
  clip_percentile are not used. Float tensors with <= 65,536 elements are passed through (control
  tensors as fp32, other fp32/bf16 ones as fp16); larger 2-D ones get a per-row clip at the
  0.9999984 quantile of |w|, scale = max(clip / 127, 1 / 127) stored as fp16, and
  q = round(clamp(w, -clip, clip) / scale); larger tensors of other ranks get one fp32 scale,
  clip / 127 (1.0 when the clip is 0); non-float tensors are passed through.

Either way the packed dict is torch.save'd and zlib-compressed at level 9. payload_bytes counts the
bytes of the packed tensors (int8 values + scales + passthrough), as parameter-golf's
int8_payload_bytes does; the artifact is the compressed model plus the training code
(CODE_FILES), as parameter-golf counts its train_gpt.py.
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

from speedlab.data.shards import load_split
from speedlab.train.models import build_model
from speedlab.train.optim import CONTROL_NAMES
from speedlab.train.precision import cast_model
from speedlab.train.validation import device_of, evaluate, val_slice

SCHEMES = ("simple", "parameter_golf")

# parameter-golf's constants (train_gpt.py: CONTROL_TENSOR_NAME_PATTERNS, INT8_KEEP_FLOAT_MAX_NUMEL,
# INT8_CLIP_PERCENTILE / 100, "__quant_format__"). Names match by substring, as there.
PG_CONTROL_PATTERNS = (
    "attn_scale",
    "attn_scales",
    "mlp_scale",
    "mlp_scales",
    "resid_mix",
    "resid_mixes",
    "q_gain",
    "skip_weight",
    "skip_weights",
)
PG_KEEP_FLOAT_MAX_NUMEL = 65_536
PG_CLIP_Q = 99.99984 / 100.0
PG_FORMAT = "int8_clean_per_row_v1"

# The training code whose bytes count towards the artifact (parameter-golf counts train_gpt.py):
# the models, the optimizers and their schedules, the loop; paths relative to speedlab/train/.
CODE_FILES = (
    "models/__init__.py",
    "models/layers.py",
    "models/gpt.py",
    "models/ngpt.py",
    "optim.py",
    "schedules.py",
    "loop.py",
)


def quantize_state(
    state: dict,
    keep_float_max_numel: int | None = None,
    clip_percentile: float | None = None,
    scheme: str = "simple",
) -> dict:
    """Pack a state dict with the given scheme; "parameter_golf" takes no thresholds."""
    if scheme == "parameter_golf":
        if keep_float_max_numel is not None or clip_percentile is not None:
            raise ValueError(
                "scheme parameter_golf uses the reference's fixed thresholds "
                f"({PG_KEEP_FLOAT_MAX_NUMEL:,} elements, clip quantile {PG_CLIP_Q}); pass none"
            )
        return _quantize_parameter_golf(state)
    if scheme != "simple":
        raise ValueError(f"unknown quantization scheme {scheme!r}; expected one of {SCHEMES}")
    if keep_float_max_numel is None or clip_percentile is None:
        raise ValueError("scheme simple needs keep_float_max_numel and clip_percentile")
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


def _quantize_pg_tensor(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    w = t.float()
    if w.ndim == 2:  # one clip and one fp16 scale per row
        clip = torch.quantile(w.abs(), PG_CLIP_Q, dim=1)[:, None]
        scale = (clip / 127.0).clamp_min(1.0 / 127.0)
        q = torch.round(torch.maximum(torch.minimum(w, clip), -clip) / scale).clamp(-127, 127)
        return q.to(torch.int8).contiguous(), scale.squeeze(1).half().contiguous()
    clip = float(torch.quantile(w.abs().flatten(), PG_CLIP_Q).item())
    scale = torch.tensor(clip / 127.0 if clip > 0 else 1.0, dtype=torch.float32)
    q = torch.round(w.clamp(-clip, clip) / scale).clamp(-127, 127)
    return q.to(torch.int8).contiguous(), scale


def _quantize_parameter_golf(state: dict) -> dict:
    # Same keys, insertion order and optional entries as the reference's object, so that the
    # torch.save'd and compressed sizes are comparable with parameter-golf's logs.
    quantized, scales, dtypes, passthrough, orig_dtypes, qmeta = {}, {}, {}, {}, {}, {}
    for name, tensor in state.items():
        t = tensor.detach().cpu().contiguous()
        if not t.is_floating_point():
            passthrough[name] = t
        elif t.numel() <= PG_KEEP_FLOAT_MAX_NUMEL:
            if any(p in name for p in PG_CONTROL_PATTERNS):
                passthrough[name] = t.float().contiguous()
            elif t.dtype in (torch.float32, torch.bfloat16):
                orig_dtypes[name] = str(t.dtype).removeprefix("torch.")
                passthrough[name] = t.half().contiguous()
            else:
                passthrough[name] = t
        else:
            quantized[name], scales[name] = _quantize_pg_tensor(t)
            if scales[name].ndim > 0:
                qmeta[name] = {"scheme": "per_row", "axis": 0}
            dtypes[name] = str(t.dtype).removeprefix("torch.")
    packed: dict = {
        "__quant_format__": PG_FORMAT,
        "quantized": quantized,
        "scales": scales,
        "dtypes": dtypes,
        "passthrough": passthrough,
    }
    if qmeta:
        packed["qmeta"] = qmeta
    if orig_dtypes:
        packed["passthrough_orig_dtypes"] = orig_dtypes
    return packed


def scheme_of(packed: dict) -> str:
    return "parameter_golf" if packed.get("__quant_format__") == PG_FORMAT else "simple"


def dequantize_state(packed: dict) -> dict:
    if scheme_of(packed) == "parameter_golf":
        return _dequantize_parameter_golf(packed)
    state = {}
    for name, dtype in packed["dtype"].items():
        if name in packed["int8"]:
            w = packed["int8"][name].float() * packed["scale"][name].float()[:, None]
        else:
            w = packed["float"][name]
        state[name] = w.to(getattr(torch, dtype))
    return state


def _dequantize_parameter_golf(packed: dict) -> dict:
    state = {}
    for name, q in packed["quantized"].items():
        s = packed["scales"][name].float()
        s = s.view(q.shape[0], *([1] * (q.ndim - 1))) if s.ndim > 0 else float(s.item())
        state[name] = (q.float() * s).to(getattr(torch, packed["dtypes"][name])).contiguous()
    orig_dtypes = packed.get("passthrough_orig_dtypes", {})
    for name, t in packed["passthrough"].items():
        dtype = orig_dtypes.get(name)
        state[name] = t.to(getattr(torch, dtype)) if dtype else t
    return state


def payload_bytes(packed: dict) -> int:
    """Bytes of all packed tensors: int8 values, scales and passthrough (int8_payload_bytes)."""
    if scheme_of(packed) == "parameter_golf":
        groups = packed["quantized"], packed["scales"], packed["passthrough"]
    else:
        groups = packed["int8"], packed["scale"], packed["float"]
    return sum(t.numel() * t.element_size() for g in groups for t in g.values())


def code_bytes(files: tuple[str, ...] = CODE_FILES) -> int:
    """UTF-8 size of the training code (as parameter-golf counts len(code.encode("utf-8")))."""
    here = Path(__file__).parent
    return sum(len((here / f).read_text(encoding="utf-8").encode("utf-8")) for f in files)


def compress(packed: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(packed, buf)
    return zlib.compress(buf.getvalue(), level=9)


def decompress(blob: bytes) -> dict:
    return torch.load(io.BytesIO(zlib.decompress(blob)), weights_only=True)


def export(state: dict, quant_cfg: dict, scheme: str | None = None) -> tuple[dict, bytes]:
    """The packed state and its compressed blob, by `scheme` (None: the config's quant.scheme)."""
    scheme = scheme or quant_cfg["scheme"]
    if scheme == "simple":
        packed = quantize_state(
            state, quant_cfg["keep_float_max_numel"], quant_cfg["clip_percentile"]
        )
    else:
        packed = quantize_state(state, scheme=scheme)
    return packed, compress(packed)


def state_bytes(state: dict) -> int:
    """Size of the torch.save'd raw state dict (train_gpt.py's "Serialized model" bytes)."""
    raw = io.BytesIO()
    torch.save(state, raw)
    return raw.getbuffer().nbytes


def result(packed: dict, blob: bytes, raw_bytes: int, q: dict, final: dict) -> dict:
    """roundtrip.json: sizes, and val_loss / val_bpb before (`final`) and after (`q`)."""
    pg = scheme_of(packed) == "parameter_golf"
    code = code_bytes()
    out = {
        "scheme": scheme_of(packed),
        "payload_bytes": payload_bytes(packed),
        "compressed_bytes": len(blob),
        "code_bytes": code,
        "artifact_bytes": len(blob) + code,
        "raw_state_bytes": raw_bytes,
        "n_int8_tensors": len(packed["quantized" if pg else "int8"]),
        "n_float_tensors": len(packed["passthrough" if pg else "float"]),
        "q_val_loss": q["val_loss"],
        "q_val_bpb": q["val_bpb"],
        "val_loss": final["val_loss"],
        "val_bpb": final["val_bpb"],
    }
    out["bpb_increase"] = out["q_val_bpb"] - out["val_bpb"]
    return out


def describe(r: dict) -> str:
    return (
        f"int8+zlib ({r['scheme']}): payload {r['payload_bytes']:,} bytes, compressed "
        f"{r['compressed_bytes']:,}, code+model {r['artifact_bytes']:,}; val_bpb "
        f"{r['val_bpb']:.4f} -> {r['q_val_bpb']:.4f} ({r['bpb_increase']:+.4f})"
    )


def roundtrip(
    model_pt: Path,
    val_manifest: Path,
    token_bytes: Path,
    out: Path,
    scheme: str | None = None,
    device: str = "cpu",
) -> dict:
    """Recompute a finished run's roundtrip from its model.pt (the training job already wrote
    roundtrip.json): quantize, compress, reload into a model of the run's arithmetic, evaluate
    on `device` in the run's micro-batch size."""
    ckpt = torch.load(model_pt, map_location="cpu", weights_only=False)
    cfg, tcfg = ckpt["config"], ckpt["config"]["train"]
    packed, blob = export(ckpt["model"], cfg["quant"], scheme)
    target = device_of(device)
    model = build_model(cfg["model"], ckpt["vocab_size"])
    cast_model(model, tcfg.get("arithmetic", "fp32"), cfg["model"]["kind"])
    model.load_state_dict(dequantize_state(decompress(blob)))
    tokens = val_slice(load_split(val_manifest), tcfg["val_tokens"])
    batch = tcfg.get("micro_batch_seqs") or tcfg["batch_seqs"]
    q = evaluate(model.to(target), tokens, np.load(token_bytes), tcfg["seq_len"], batch)
    r = result(packed, blob, state_bytes(ckpt["model"]), q, ckpt["final"])
    Path(out).write_text(json.dumps(r, indent=2) + "\n")
    return r


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--val", type=Path, required=True, help="val split manifest")
    p.add_argument("--token-bytes", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument(
        "--scheme",
        choices=SCHEMES,
        default=None,
        help="quantization rules (default: the run config's quant.scheme)",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA when there is one), cpu, cuda")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    r = roundtrip(args.model, args.val, args.token_bytes, args.out, args.scheme, args.device)
    print(describe(r))


if __name__ == "__main__":
    main()
