"""HellaSwag at the end of a run (eval.hellaswag): completion-style, as modded-nanogpt's optional
eval scores it.

Each example is a context and four endings. The context (after the BOS token that opens every
training document) and each ending are tokenized with the run's own tokenizer; the ending's tokens
are scored by their mean cross-entropy given the context (the "acc_norm" flavour: a per-token
average, so a long ending is not punished for its length), and the ending with the lowest mean
wins. The four endings go through the model as one padded batch; a sequence longer than the
model's seq_len + 1 loses tokens from the left (the context's start). Accuracy comes with a 95%
Wilson interval, scipy's binomtest(...).proportion_ci(method="wilson").

The examples are the file the data stage prepared (speedlab.data.hellaswag_format.PREPARED,
relative to the workflow's directory, an input of the run); the tokenizer is the shards' (the
manifest's `tokenizer`, found as speedlab.train.export finds it). Rank 0 alone scores.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from speedlab.data import hellaswag_format as fmt
from speedlab.train import export
from speedlab.train.validation import autocast

LEVEL = 0.95


def maybe_score(model, cfg: dict, train_manifest, path: str | Path | None = None) -> dict:
    """{hellaswag_acc, hellaswag_lo, hellaswag_hi, hellaswag_n} when eval.hellaswag is on, else
    {}. `path`: the examples (default: where the data stage leaves them)."""
    spec = (cfg.get("eval") or {}).get("hellaswag")
    if not spec:
        return {}
    n = spec["examples"]
    items = fmt.read_jsonl(path or fmt.prepared_path(n), n)
    encode, bos = tokenizer(train_manifest)
    seq_len = cfg["train"]["seq_len"]
    correct = sum(predict(model, pairs(encode, bos, ex), seq_len) == ex.label for ex in items)
    return result(int(correct), n)


def tokenizer(train_manifest):
    """(encode: text -> ids, BOS id) of the shards' SentencePiece model."""
    found = export.tokenizer_of(train_manifest)
    if found["path"] is None or not found["path"].endswith(".model"):
        raise ValueError(
            f"eval.hellaswag: needs the shards' SentencePiece model; {train_manifest} names "
            f"tokenizer {found['name']!r}, found at {found['path']!r}"
        )
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=found["path"])
    bos = json.loads(Path(train_manifest).read_text()).get("bos_id", sp.bos_id())
    return (lambda text: sp.encode(text)), int(bos)


def pairs(encode, bos: int, ex: fmt.Example) -> list[tuple[list[int], list[int]]]:
    """(context ids, ending ids) per ending. The ending is tokenized in place, after the context
    and a space; its ids are those past the longest prefix shared with the context's own."""
    ctx = encode(ex.context)
    out = []
    for ending in ex.endings:
        whole = encode(f"{ex.context} {ending}")
        k = 0
        while k < min(len(ctx), len(whole)) and ctx[k] == whole[k]:
            k += 1
        if k == len(whole):
            raise ValueError(f"eval.hellaswag: ending {ending!r} encodes to no tokens")
        out.append(([bos, *whole[:k]], whole[k:]))
    return out


def batch(seqs: list[tuple[list[int], list[int]]], seq_len: int):
    """(inputs, targets, mask of the ending's targets), right-padded to the longest sequence."""
    rows = []
    for ctx, end in seqs:
        seq = (ctx + end)[-(seq_len + 1) :]
        rows.append((seq, min(len(end), len(seq) - 1)))
    width = max(len(seq) for seq, _ in rows) - 1
    x = torch.zeros(len(rows), width, dtype=torch.long)
    y = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width)
    for i, (seq, n_end) in enumerate(rows):
        t = len(seq) - 1
        x[i, :t], y[i, :t] = torch.tensor(seq[:-1]), torch.tensor(seq[1:])
        mask[i, t - n_end : t] = 1.0
    return x, y, mask


@torch.no_grad()
def ending_losses(model, seqs, seq_len: int) -> torch.Tensor:
    """The mean cross-entropy (nats/token) of each ending's tokens, one batch for all."""
    device = next(model.parameters()).device
    x, y, mask = (t.to(device) for t in batch(seqs, seq_len))
    was_training = model.training
    model.eval()
    with autocast(device):
        losses = model(x, y, reduction="none").float().view(x.shape)
    model.train(was_training)
    return ((losses * mask).sum(1) / mask.sum(1)).cpu()


def predict(model, seqs, seq_len: int) -> int:
    """The index of the ending with the lowest mean loss per token."""
    return int(torch.argmin(ending_losses(model, seqs, seq_len)))


def result(correct: int, n: int) -> dict:
    from scipy.stats import binomtest

    ci = binomtest(correct, n).proportion_ci(confidence_level=LEVEL, method="wilson")
    return {"hellaswag_acc": correct / n, "hellaswag_lo": float(ci.low),
            "hellaswag_hi": float(ci.high), "hellaswag_n": n}  # fmt: skip
