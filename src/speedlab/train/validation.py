"""Validation loss and bits per byte, the way parameter-golf counts them.

bpb = (sum of token losses / ln 2) / (sum of the bytes those tokens stand for), the byte count
of each target token coming from token_bytes.npy and the token before it.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch

from speedlab.data.token_bytes import sequence_bytes


def device_of(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device: 'cuda' was asked for but torch sees no CUDA device")
    return torch.device(name)


def autocast(device: torch.device):
    # bf16 autocast on GPUs (as parameter-golf and modded-nanogpt train); fp32 on CPUs, where
    # bf16 matmuls are slow and would make CPU runs differ from the reference numerics.
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def val_slice(tokens: np.ndarray, max_tokens: int) -> np.ndarray:
    """The first max_tokens (+1 for the last target) validation tokens; 0 means all."""
    return tokens if max_tokens <= 0 else tokens[: max_tokens + 1]


def rank_slice(n_seq: int, rank: int, world: int) -> tuple[int, int]:
    """The validation sequences rank `rank` scores: contiguous, as train_gpt.py splits them."""
    return n_seq * rank // world, n_seq * (rank + 1) // world


@torch.no_grad()
def evaluate(model, tokens, byte_table, seq_len: int, batch_seqs: int, world=None, tail=None):
    """Mean loss (nats/token) and bits per byte over the full sequences that fit in `tokens`.

    With a multi-process `world`, each rank scores its slice of the sequences and the sums are
    all-reduced, so every rank returns the same numbers. Each batch's mean loss is weighted by its
    token count in float64, as train_gpt.py sums it. `tail` (the plain module) scores a last,
    shorter batch, so that a compiled `model` only ever sees one shape.
    """
    device = next(model.parameters()).device
    n_seq = (len(tokens) - 1) // seq_len
    if n_seq == 0:
        raise ValueError(f"validation split has {len(tokens)} tokens, fewer than seq_len={seq_len}")
    first, end = rank_slice(n_seq, world.rank, world.size) if world else (0, n_seq)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)  # stays on the device
    n_tokens = n_bytes = 0
    was_training = model.training
    model.eval()
    for start in range(first, end, batch_seqs):
        b = min(batch_seqs, end - start)
        chunk = np.asarray(tokens[start * seq_len : (start + b) * seq_len + 1], dtype=np.int64)
        x, y = chunk[:-1].reshape(b, seq_len), chunk[1:].reshape(b, seq_len)
        scorer = model if b == batch_seqs or tail is None else tail
        with autocast(device):
            loss = scorer(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device))
        loss_sum += loss.detach().double() * y.size
        n_tokens += y.size
        n_bytes += int(sequence_bytes(byte_table, x, y).sum())
    model.train(was_training)
    counts = torch.tensor([n_tokens, n_bytes], dtype=torch.float64, device=device)
    sums = torch.cat([loss_sum.view(1), counts])
    if world is not None:
        world.sum_(sums)
    loss_sum, n_tokens, n_bytes = sums.tolist()
    return {"val_loss": loss_sum / n_tokens, "val_bpb": loss_sum / math.log(2) / n_bytes}
