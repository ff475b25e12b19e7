"""The models speedlab trains, chosen by `model.kind`."""

from __future__ import annotations

from torch import nn

from speedlab.train.models.gpt import GPT
from speedlab.train.models.layers import shape_kwargs
from speedlab.train.models.modded2410 import build_modded2410
from speedlab.train.models.ngpt import build_ngpt


def build_model(model_cfg: dict, vocab_size: int) -> nn.Module:
    """The model `model.kind` names: gpt (parameter-golf baseline), ngpt (normalized) or
    modded2410 (modded-nanogpt's 2024-10-14 record)."""
    kind = model_cfg["kind"]
    if kind == "ngpt":
        return build_ngpt(model_cfg, vocab_size)
    if kind == "modded2410":
        return build_modded2410(model_cfg, vocab_size)
    if kind != "gpt":
        raise ValueError(f"model.kind: unknown model {kind!r} (expected gpt, ngpt or modded2410)")
    return GPT(
        vocab_size=vocab_size,
        **shape_kwargs(model_cfg),
        qk_gain_init=model_cfg["qk_gain_init"],
        logit_softcap=model_cfg["logit_softcap"],
        embed_init_std=model_cfg["embed_init_std"],
    )
