"""Token windows per (step, micro-batch, rank): the reader streams shards without loading them,
and data_order parameter_golf reads what train_gpt.py's DistributedTokenLoader reads."""

import json

import numpy as np
import pytest

from speedlab.data.shards import SplitReader, write_manifest, write_shard
from speedlab.train.batches import Batches


@pytest.fixture
def split(tmp_path):
    """Three shards of uneven length holding 0..N-1, so a token's value is its position."""
    lengths, names, start = [50, 17, 33], [], 0
    for i, n in enumerate(lengths):
        names.append(f"fineweb_train_{i:06d}.bin")
        write_shard(tmp_path / names[-1], np.arange(start, start + n))
        start += n
    write_manifest(tmp_path / "fineweb_train.json", names, lengths)
    return tmp_path / "fineweb_train.json", start


def test_reader_crosses_shards_and_wraps_around(split):
    manifest, total = split
    reader = SplitReader(manifest)
    assert reader.total == total == 100
    np.testing.assert_array_equal(reader.read(45, 30), np.arange(45, 75))  # 3 shards
    np.testing.assert_array_equal(reader.read(90, 25), np.arange(90, 115) % 100)  # wraps
    np.testing.assert_array_equal(reader.read(1234, 5), np.arange(34, 39))
    assert reader.read(0, 1).dtype == np.int64


def test_parameter_golf_order_is_train_gpt_streaming(split):
    """Each micro-step takes world * (micro*T + 1) fresh tokens from the stream, one span per rank
    side by side; the extra token is not reused (train_gpt.py's next_batch)."""
    manifest, _ = split
    reader = SplitReader(manifest)
    tcfg = {"data_order": "parameter_golf", "seq_len": 4, "batch_seqs": 8}
    world, accum, micro = 2, 2, 2  # 4 sequences per rank in 2 micro-batches of 2
    batches = Batches(reader, tcfg, (4, accum, micro), world, seed=0)
    span = micro * 4 + 1
    stream, pos = np.arange(10_000) % 100, 0
    for step in range(7):  # 7 steps x 2 micro-steps x 2 ranks x 9 tokens: wraps the 100 twice
        for i in range(accum):
            chunk = stream[pos : pos + world * span]
            pos += world * span
            for rank in range(world):
                x, y = batches.get(step, i, rank)
                local = chunk[rank * span : (rank + 1) * span]
                np.testing.assert_array_equal(x, local[:-1].reshape(micro, 4))
                np.testing.assert_array_equal(y, local[1:].reshape(micro, 4))


def test_fixed_order_splits_one_span_per_step_over_ranks_and_micro_batches(split):
    manifest, _ = split
    reader = SplitReader(manifest)
    tcfg = {"data_order": "fixed", "seq_len": 4, "batch_seqs": 4}
    whole = Batches(reader, tcfg, (4, 1, 4), 1, seed=0)
    parts = Batches(reader, tcfg, (2, 2, 1), 2, seed=0)
    for step in (0, 3, 11):
        x, y = whole.get(step, 0, 0)
        for rank in range(2):
            for i in range(2):
                px, py = parts.get(step, i, rank)
                np.testing.assert_array_equal(px, x[rank * 2 + i : rank * 2 + i + 1])
                np.testing.assert_array_equal(py, y[rank * 2 + i : rank * 2 + i + 1])


def test_a_split_smaller_than_one_batch_is_refused_naming_the_keys(split):
    manifest, _ = split
    tcfg = {"data_order": "parameter_golf", "seq_len": 64, "batch_seqs": 8}
    with pytest.raises(ValueError, match=r"train.micro_batch_seqs \* train.seq_len \+ 1"):
        Batches(SplitReader(manifest), tcfg, (8, 1, 8), 1, seed=0)


def test_a_truncated_shard_is_refused_by_name(split):
    manifest, _ = split
    shard = manifest.parent / json.loads(manifest.read_text())["shards"][1]
    shard.write_bytes(shard.read_bytes()[:-2])
    with pytest.raises(ValueError, match="fineweb_train_000001.bin: .* header promises 17"):
        SplitReader(manifest)
