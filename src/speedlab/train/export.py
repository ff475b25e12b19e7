"""Weights other tools can load: model.safetensors and config.json beside each run's model.pt.

model.pt is speedlab's own checkpoint (a pickled dict: weights, resolved config, summary);
nothing else should have to unpickle it. Each finished run therefore also writes

- model.safetensors: the weights (safetensors.torch.save_model, which stores a tied
  embedding/head once and restores the tie on load), and
- config.json: what rebuilds the model: `model` (speedlab's model keys: kind, n_layer, d_model,
  heads, ...), `vocab_size` (the embedding rows), `seq_len`, `arithmetic` (the dtypes the
  weights were trained in: precision.cast_model) and `tokenizer` (the shards' tokenizer file
  name and, where it is found, its path).

    python -m speedlab.train.export RUN_DIR OUT [--tokenizer FILE]   (or `speedlab export`)

writes that pair, and the tokenizer file, into OUT from a finished run. `load(OUT)` rebuilds the
model in a fresh process: speedlab.train.models.build_model(config["model"], vocab_size) and
safetensors' load_model.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from torch import nn

from speedlab.files import atomic_path
from speedlab.train.models import build_model
from speedlab.train.precision import cast_model

FORMAT = "speedlab-weights-1"
WEIGHTS, CONFIG = "model.safetensors", "config.json"


def tokenizer_of(train_manifest: str | Path | None) -> dict:
    """The shards' tokenizer: its file name from the manifest, and its path where it is (next
    to the shards for official ones, results/tokenizer/ for speedlab's own)."""
    if train_manifest is None or not Path(train_manifest).exists():
        return {"name": None, "path": None}
    manifest = Path(train_manifest)
    name = json.loads(manifest.read_text()).get("tokenizer")
    candidates = [manifest.parent / name, Path("results/tokenizer") / name] if name else []
    found = next((p for p in candidates if p.is_file()), None)
    return {"name": name, "path": str(found) if found else None}


def weights_config(cfg: dict, vocab_size: int, tokenizer: dict) -> dict:
    return {
        "format": FORMAT,
        "model": cfg["model"],
        "vocab_size": vocab_size,
        "seq_len": cfg["train"]["seq_len"],
        "arithmetic": cfg["train"]["arithmetic"],
        "tokenizer": tokenizer,
    }


def write_weights(model: nn.Module, config: dict, out_dir: Path) -> None:
    """model.safetensors (atomically) and config.json into out_dir."""
    from safetensors.torch import save_model

    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / WEIGHTS) as tmp:
        save_model(model, str(tmp))
    with atomic_path(out_dir / CONFIG) as tmp:
        tmp.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def load(weights_dir: str | Path, device: str = "cpu") -> tuple[nn.Module, dict]:
    """(model, config) rebuilt from a folder holding model.safetensors and config.json."""
    from safetensors.torch import load_model

    weights_dir = Path(weights_dir)
    config = json.loads((weights_dir / CONFIG).read_text())
    if config.get("format") != FORMAT:
        raise ValueError(f"{weights_dir / CONFIG}: not a speedlab weights config ({FORMAT})")
    model = build_model(config["model"], config["vocab_size"])
    cast_model(model, config["arithmetic"], config["model"]["kind"])  # the dtypes it trained in
    load_model(model, str(weights_dir / WEIGHTS), device=device)
    return model.to(device), config


def export(run_dir: Path, out: Path, tokenizer: Path | None = None) -> list[Path]:
    """A finished run's weights, config and tokenizer into out; returns the files written."""
    model_pt = run_dir / "model.pt"
    if not model_pt.is_file():
        raise FileNotFoundError(f"{run_dir}: no model.pt (is it a finished speedlab run?)")
    ckpt = torch.load(model_pt, map_location="cpu", weights_only=False)
    model = build_model(ckpt["config"]["model"], ckpt["vocab_size"])
    cast_model(model, ckpt["config"]["train"]["arithmetic"], ckpt["config"]["model"]["kind"])
    model.load_state_dict(ckpt["model"])
    provenance = run_dir / "provenance.json"
    inputs = json.loads(provenance.read_text())["inputs"] if provenance.exists() else {}
    found = tokenizer_of(inputs.get("train"))
    source = tokenizer or (Path(found["path"]) if found["path"] else None)
    if source is not None:
        if not source.is_file():
            raise FileNotFoundError(f"--tokenizer {source}: no such file")
        found = {"name": source.name, "path": source.name}
    write_weights(model, weights_config(ckpt["config"], ckpt["vocab_size"], found), out)
    written = [out / WEIGHTS, out / CONFIG]
    if source is not None:
        shutil.copyfile(source, out / source.name)
        written.append(out / source.name)
    return written


def main(argv=None, prog: str | None = None) -> None:
    p = argparse.ArgumentParser(prog=prog, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("run_dir", type=Path, help="a finished run: results/runs/<study>/<c>/seed<N>")
    p.add_argument("out", type=Path, help="the folder to write into")
    p.add_argument("--tokenizer", type=Path, help="the tokenizer file (default: the run's)")
    args = p.parse_args(argv)
    try:
        written = export(args.run_dir, args.out, args.tokenizer)
    except (OSError, ValueError, KeyError) as e:
        raise SystemExit(f"speedlab export: {e}") from None
    print("\n".join(str(path) for path in written))


if __name__ == "__main__":
    main()
