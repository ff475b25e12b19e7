"""The golden test of model.kind modded2410: speedlab reproduces the 2024-10-14 modded-nanogpt
record (records/track_1_short/2024-10-14_ModernArch/train_gpt2.py) step for step.

tests/fixtures/golden_modded2410/train_gpt2_cpu.json holds what a CPU copy of the record printed
for the tiny recipe of tests/golden_modded.py (made by scripts/reference/make_golden_modded.py,
which the fixture names with the commit, hashes and patches). Here speedlab's trainer runs the
same recipe on the same generated data, with model.kind, optim.split and train.data_order set
to the record's, and every step's train loss and every validation's loss must agree within
1e-6 on the fixture's CPU family (bitwise is what it measures). speedlab's val_loss is the
float64 mean of the batches' losses, the record's their fp32 sum over the count: so each
validation's batch losses are checked to 1e-6 (through their float64 mean) and the record's own
mean to 1e-5.
"""

import json
import math
import re
import statistics

import golden_modded
import golden_pg
import pytest
from test_golden_pg import tolerance, train_loss_diffs

TOL = 1e-6
# Another CPU family rounds the bf16 Newton-Schulz and matmuls differently (golden_pg's recipe,
# whose Muon is bf16 too, drifts up to 1.2e-2 in 50 steps between two Xeons, 2026-12-02); this
# recipe was not measured on a second family. The errors this test exists for are far larger:
# the record's data order alone changes the losses by up to 0.18, its optimizer split by 2.5.
OTHER_CPU_TOL = 5e-2
FP32_SUM_TOL = 1e-5  # the record's fp32 sum of 2 batch means around 3, against float64
PROVENANCE = {
    "command",
    "env",
    "modded_nanogpt_commit",
    "record",
    "record_sha256",
    "record_cpu_sha256",
    "patches",
    "hyperparameters",
    "gpt_config",
    "torch_seed",
    "procedure",
    "data_sha256",
    "python",
    "torch",
    "numpy",
    "cpu",
}


@pytest.fixture(scope="module")
def golden():
    return json.loads(golden_modded.FIXTURE.read_text())


def test_fixture_records_its_provenance(golden, tmp_path):
    prov = golden["provenance"]
    assert set(prov) >= PROVENANCE
    assert prov["modded_nanogpt_commit"] == "f411b3d346aa52d3504324ca93c230fd84c6c07f"
    assert prov["record"] == golden_modded.RECORD
    for key in ("record_sha256", "record_cpu_sha256"):
        assert re.fullmatch(r"[0-9a-f]{64}", prov[key]), key
    assert prov["patches"] and all(isinstance(p, str) and p for p in prov["patches"])
    assert prov["hyperparameters"] == golden_modded.RECIPE  # the recipe here is the one run
    assert prov["gpt_config"] == golden_modded.MODEL and prov["torch_seed"] == golden_modded.SEED
    assert prov["data_sha256"] == golden_modded.write_data(tmp_path)["sha256"]
    steps = golden_modded.RECIPE["num_iterations"]
    assert len(golden["train_loss"]) == steps
    every = golden_modded.RECIPE["val_loss_every"]
    assert [v["step"] for v in golden["val"]] == list(range(0, steps + 1, every))
    assert all(len(v["batch_losses"]) == 2 for v in golden["val"])
    numbers = [*golden["train_loss"], *(v["val_loss"] for v in golden["val"])]
    assert all(math.isfinite(x) for x in numbers)


def train_speedlab(tmp_path) -> dict:
    """Train the recipe with speedlab in this process (one thread); returns its numbers."""
    data, out = golden_modded.write_data(tmp_path / "data"), tmp_path / "run"
    meta = {"study": "golden_modded", "condition": "record"}
    cfg, seed = golden_modded.speedlab_config(), golden_modded.SEED
    rows = golden_pg.train_speedlab(cfg, seed, data, out, meta)
    return {
        "train_loss": {r["step"]: r["train_loss"] for r in rows if "train_loss" in r},
        "val_loss": {r["step"]: r["val_loss"] for r in rows if "val_loss" in r},
    }


@pytest.mark.slow  # about 30 s on one core
def test_speedlab_matches_the_record_step_for_step(tmp_path, golden):
    got = train_speedlab(tmp_path)
    steps = len(golden["train_loss"])
    assert sorted(got["train_loss"]) == list(range(1, steps + 1)), "a train_loss row per step"
    diffs = train_loss_diffs(got, golden)
    for v in golden["val"]:
        f64_mean = statistics.fmean(v["batch_losses"])
        diffs[f"val_loss step {v['step']}"] = abs(got["val_loss"][v["step"]] - f64_mean)
    worst = max(diffs, key=diffs.get)
    print(f"largest difference from the record: {worst}: {diffs[worst]:.3e}")
    fp32 = {v["step"]: abs(got["val_loss"][v["step"]] - v["val_loss"]) for v in golden["val"]}
    print(f"val_loss against the record's fp32 mean: largest {max(fp32.values()):.3e}")
    tol = tolerance(golden, TOL, OTHER_CPU_TOL)
    bad = {k: f"{d:.3e}" for k, d in diffs.items() if not d <= tol}
    assert not bad, f"{len(bad)} value(s) differ from the record by more than {tol}: {bad}"
    assert all(d <= max(tol, FP32_SUM_TOL) for d in fp32.values()), fp32


class RecordLoader:
    """The record's DistributedDataLoader, as its train loop drives it: one rank's batches."""

    def __init__(self, shards, b: int, t: int, rank: int, world: int):
        self.shards, self.b, self.t, self.rank, self.world = shards, b, t, rank, world
        self.shard, self.pos = 0, rank * b * t

    def next_batch(self):
        tokens, bt = self.shards[self.shard], self.b * self.t
        buf = tokens[self.pos : self.pos + bt + 1]
        self.pos += bt * self.world
        if self.pos + (bt * self.world + 1) > len(tokens):  # the next shard, wrapping around
            self.shard, self.pos = (self.shard + 1) % len(self.shards), self.rank * bt
        return buf[:-1].reshape(self.b, self.t), buf[1:].reshape(self.b, self.t)

    def steps(self, n: int):
        """The batch of each of n steps: loaded once, rewound, then loaded after each step."""
        first = self.next_batch()
        self.shard, self.pos = 0, self.rank * self.b * self.t  # train_loader.reset()
        batches = [first]
        for _ in range(n - 1):
            batches.append(self.next_batch())
        return batches


@pytest.mark.parametrize("world, micro", [(1, None), (1, 2), (2, None), (3, 1)])
def test_modded_order_is_the_records_loader(tmp_path, world, micro):
    """Every rank's rows of every step, across uneven shards (ranks change shards at different
    steps) and around the wrap, are what the record's loader gives that rank; speedlab's
    micro-batches are consecutive rows of the rank's span."""
    import numpy as np

    from speedlab.data.shards import SplitReader, write_manifest, write_shard
    from speedlab.train.batches import Batches
    from speedlab.train.loop import micro_batches

    lengths, t, per_rank = (1000, 1337, 850), 16, 4
    rng = np.random.default_rng(0)
    shards = [rng.integers(0, 50_000, n).astype(np.uint16) for n in lengths]
    names = [tmp_path / f"fineweb_train_{k:06d}.bin" for k in range(len(shards))]
    for name, tokens in zip(names, shards, strict=True):
        write_shard(name, tokens)
    write_manifest(tmp_path / "train.json", names, list(lengths))
    cfg = {"data_order": "modded", "seq_len": t, "batch_seqs": per_rank * world}
    split = micro_batches(per_rank * world, micro, world)
    batches = Batches(SplitReader(tmp_path / "train.json"), cfg, split, world, seed=0)
    steps = 60  # about 4 passes over the shards
    for rank in range(world):
        record = RecordLoader([s.astype(np.int64) for s in shards], per_rank, t, rank, world)
        for step, (x, y) in enumerate(record.steps(steps)):
            got = [batches.get(step, i, rank) for i in range(split[1])]
            assert np.array_equal(np.concatenate([g[0] for g in got]), x), (rank, step)
            assert np.array_equal(np.concatenate([g[1] for g in got]), y), (rank, step)


def test_modded_order_refuses_shards_the_record_refuses(tmp_path):
    import numpy as np

    from speedlab.data.shards import SplitReader, write_manifest, write_shard
    from speedlab.train.batches import Batches

    names = [tmp_path / "a.bin", tmp_path / "b.bin"]  # enough in all, but not in each
    for name in names:
        write_shard(name, np.zeros(2 * 4 * 16, dtype=np.uint16))  # no +1 token
    write_manifest(tmp_path / "train.json", names, [2 * 4 * 16] * 2)
    cfg = {"data_order": "modded", "seq_len": 16, "batch_seqs": 8}
    with pytest.raises(ValueError, match="modded: a shard has 128 tokens, fewer than 129"):
        Batches(SplitReader(tmp_path / "train.json"), cfg, (4, 1, 4), 2, seed=0)
