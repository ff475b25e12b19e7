"""Which tokens each micro-batch of each rank trains on: train.data_order.

- fixed: step s reads one consecutive span of batch_seqs * seq_len + 1 tokens (span s, wrapping
  around), the same for every seed; each rank and micro-batch takes its rows of it.
- seeded: the seed picks batch_seqs random windows per step (a checkpoint keeps the generator).
- parameter_golf: train_gpt.py's DistributedTokenLoader. The shards are one stream, shard after
  shard, wrapping around; every micro-batch of every rank takes the next micro_batch_seqs *
  seq_len + 1 tokens (the extra token gives the last target and is not reused), the ranks of one
  micro-step side by side. So step s, micro-batch i, rank r starts at token
  ((s * accum + i) * world + r) * (micro * seq_len + 1).
- modded: the DistributedDataLoader of modded-nanogpt's 2024-10-14 record (train_gpt2.py),
  whose device batch B is the rank's whole share of the step (batch_seqs / world), as the
  record runs its published batch (8 GPUs x 64, one micro-batch each). Each rank reads spans of
  B * seq_len + 1 tokens within one shard: rank r's k-th span of a shard starts at
  (k * world + r) * B * seq_len, and the rank moves on to the next shard (wrapping around) when
  world * B * seq_len + 1 tokens from its next position (a whole step's, though it reads only
  its own span) would pass the shard's end: so a shard of L tokens gives rank r
  max(1, (L - 1 - r * B * seq_len) // (world * B * seq_len)) spans, and ranks can change shards
  at different steps, as the record's do. The record loads its first
  batch, rewinds the loader and loads again before the first backward, so its first batch
  trains twice: step s reads span max(s - 1, 0). speedlab's micro-batches (when the memory plan
  splits the share) are consecutive rows of the span; a record run with accumulation
  (device_batch_size below the share) reads shorter spans, which this order does not model.

The order is a function of the step (and, for seeded, of the generator's state), so a resumed
run and the compile warm-up's rewind read exactly what an uninterrupted run reads.
"""

from __future__ import annotations

import copy

import numpy as np

from speedlab.data.shards import SplitReader

ORDERS = ("fixed", "seeded", "parameter_golf", "modded")


class Batches:
    """(x, y) int64 arrays of shape (micro, seq_len) for (step, micro-batch, rank)."""

    def __init__(self, reader: SplitReader, train_cfg: dict, split, world_size: int, seed: int):
        if train_cfg["data_order"] not in ORDERS:
            raise ValueError(f"train.data_order: unknown {train_cfg['data_order']!r}")
        self.reader, self.order, self.t = reader, train_cfg["data_order"], train_cfg["seq_len"]
        self.b = train_cfg["batch_seqs"]
        self.per_rank, self.accum, self.micro = split
        self.world = world_size
        by_micro = self.order == "parameter_golf"  # spans of one micro-batch
        need = (self.micro if by_micro else self.b) * self.t + 1
        if reader.total < need:
            raise ValueError(
                f"train split has {reader.total} tokens, fewer than one batch ({need} = "
                + ("train.micro_batch_seqs" if by_micro else "train.batch_seqs")
                + " * train.seq_len + 1)"
            )
        self.rng = np.random.default_rng(seed)
        self._starts: tuple[int, np.ndarray] | None = None  # seeded: this step's windows
        self._spans: dict[int, np.ndarray] = {}  # modded: each rank's spans per shard, summed
        if self.order == "modded":
            self._check_modded_shards()

    def state(self) -> dict:
        """What resumes the order exactly: the seeded generator's state (a copy)."""
        return copy.deepcopy(self.rng.bit_generator.state)

    def restore(self, state: dict) -> None:
        """Back to a state() taken earlier (a checkpoint's, or the compile warm-up's rewind)."""
        self.rng.bit_generator.state = state
        self._starts = None

    def get(self, step: int, micro: int, rank: int) -> tuple[np.ndarray, np.ndarray]:
        """Micro-batch `micro` of rank `rank` at 0-based `step`."""
        span = self.micro * self.t + 1
        if self.order == "parameter_golf":
            chunk = self.reader.read(((step * self.accum + micro) * self.world + rank) * span, span)
            return chunk[:-1].reshape(self.micro, self.t), chunk[1:].reshape(self.micro, self.t)
        if self.order == "modded":
            start = self._modded_start(step, rank) + micro * self.micro * self.t
            chunk = self.reader.read(start, span)
            return chunk[:-1].reshape(self.micro, self.t), chunk[1:].reshape(self.micro, self.t)
        first = rank * self.per_rank + micro * self.micro  # this micro-batch's rows of the step
        if self.order == "fixed":
            n_spans = self.reader.total // (self.b * self.t)
            start = (step % max(n_spans - 1, 1)) * self.b * self.t + first * self.t
            chunk = self.reader.read(start, self.micro * self.t + 1)
            return chunk[:-1].reshape(self.micro, self.t), chunk[1:].reshape(self.micro, self.t)
        rows = np.stack([self.reader.read(s, self.t + 1) for s in self._seeded(step)])
        rows = rows[first : first + self.micro]
        return rows[:, :-1], rows[:, 1:]

    def _check_modded_shards(self) -> None:
        """The record's loader asserts that every shard holds one span per rank and one token."""
        need = self.world * self.per_rank * self.t + 1
        short = [n for n in self.reader.lengths if n < need]
        if short:
            raise ValueError(
                f"train.data_order modded: a shard has {min(short)} tokens, fewer than "
                f"{need} (train.batch_seqs x train.seq_len + 1)"
            )

    def _modded_start(self, step: int, rank: int) -> int:
        """Where in the split rank `rank`'s span of 0-based `step` starts."""
        bt, stride = self.per_rank * self.t, self.world * self.per_rank * self.t
        if rank not in self._spans:
            per_shard = [max(1, (n - 1 - rank * bt) // stride) for n in self.reader.lengths]
            self._spans[rank] = np.cumsum([0, *per_shard])
        spans = self._spans[rank]
        k = max(step - 1, 0) % int(spans[-1])  # the first span trains twice
        shard = int(np.searchsorted(spans, k, side="right")) - 1
        return int(self.reader.starts[shard]) + rank * bt + (k - int(spans[shard])) * stride

    def _seeded(self, step: int) -> np.ndarray:
        # Every rank draws the whole step's windows (same seed, same draws) and takes its rows.
        if self._starts is None or self._starts[0] != step:
            starts = self.rng.integers(0, self.reader.total - self.t - 1, size=self.b)
            self._starts = (step, starts)
        return self._starts[1]
