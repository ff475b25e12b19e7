"""The golden test of issue 12: speedlab reproduces parameter-golf's train_gpt.py step for step.

tests/fixtures/golden_pg/train_gpt_cpu*.json hold what a CPU copy of train_gpt.py printed for the
tiny recipe of tests/golden_pg.py (made by scripts/reference/make_golden_pg.py, which each fixture
names with the commit, hashes and patches), one per CPU family it was made on: bf16 matmuls round
differently on different vector units, so the test uses the fixture of this machine's family.
Here speedlab's trainer runs the same recipe on the same generated data, with data_order and
arithmetic parameter_golf, and every step's train loss, the final val_loss and the int8+zlib
roundtrip val_loss must agree within 1e-6.
"""

import json
import math
import re
from pathlib import Path

import golden_pg
import pytest

TOL = 1e-6
PROVENANCE = {
    "command",
    "env",
    "parameter_golf_commit",
    "train_gpt_sha256",
    "train_gpt_cpu_sha256",
    "patches",
    "procedure",
    "data_sha256",
    "python",
    "torch",
    "numpy",
    "cpu",
}


FIXTURES = sorted(golden_pg.FIXTURE.parent.glob("train_gpt_cpu*.json"))


@pytest.fixture(scope="module")
def golden():
    """The fixture made on this machine's CPU family, else the first one."""
    fixtures = [json.loads(path.read_text()) for path in FIXTURES]
    return next((f for f in fixtures if same_cpu_family(f)), fixtures[0])


@pytest.fixture(params=FIXTURES, ids=lambda p: p.name)
def each_golden(request):
    return json.loads(request.param.read_text())


def test_fixture_data_is_deterministic_and_the_fixtures_own(tmp_path, each_golden):
    a = golden_pg.write_data(tmp_path / "a")
    golden_pg.write_data(tmp_path / "b")
    assert set(a["sha256"]) == {
        "fineweb_train_000000.bin",
        "fineweb_train_000001.bin",
        "fineweb_train.json",
        "fineweb_val_000000.bin",
        "fineweb_val.json",
        "token_bytes.npy",
    }
    for name in a["sha256"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    # The fixture was made from exactly these bytes (a numpy whose streams changed would not).
    assert a["sha256"] == each_golden["provenance"]["data_sha256"]


def test_fixture_data_wraps_around_two_shards(tmp_path):
    from speedlab.data.shards import load_split

    data = golden_pg.write_data(tmp_path)
    manifest = json.loads(data["train"].read_text())
    assert len(manifest["shards"]) == 2
    steps, micro, seq = 50, 8, 256
    assert steps * micro * (seq + 1) > manifest["total_tokens"]  # the stream wraps at least once
    tokens = load_split(data["train"])
    assert tokens.max() < golden_pg.VOCAB and (tokens == golden_pg.BOS).any()
    assert len(load_split(data["val"])) == 16 * seq + 1


def test_fixture_records_its_provenance(each_golden):
    golden = each_golden
    prov = golden["provenance"]
    assert set(prov) >= PROVENANCE
    assert re.fullmatch(r"[0-9a-f]{40}", prov["parameter_golf_commit"])
    for key in ("train_gpt_sha256", "train_gpt_cpu_sha256"):
        assert re.fullmatch(r"[0-9a-f]{64}", prov[key]), key
    assert prov["patches"] and all(isinstance(p, str) and p for p in prov["patches"])
    assert golden_pg.RECIPE.items() <= prov["env"].items()  # the recipe here is the one run
    assert "train_gpt_cpu.py" in prov["command"]
    steps = int(golden_pg.RECIPE["ITERATIONS"])
    assert len(golden["train_loss"]) == steps
    assert [v["step"] for v in golden["val"]] == list(range(0, steps + 1, 10))
    assert golden["final_val_loss"] == golden["val"][-1]["val_loss"]
    numbers = [*golden["train_loss"], golden["final_val_loss"], golden["roundtrip_val_loss"]]
    assert all(math.isfinite(x) for x in numbers)


def train_speedlab(tmp_path) -> dict:
    """Train the recipe with speedlab in this process (one thread); returns its numbers, the
    roundtrip's as the training job scored it."""
    data, out = golden_pg.write_data(tmp_path / "data"), tmp_path / "run"
    meta = {"study": "golden_pg", "condition": "train_gpt"}
    cfg, seed = golden_pg.speedlab_config(), golden_pg.SPEEDLAB_SEED
    rows = golden_pg.train_speedlab(cfg, seed, data, out, meta)
    roundtrip_json = out / "roundtrip.json"
    return {
        "train_loss": {r["step"]: r["train_loss"] for r in rows if "train_loss" in r},
        "val_loss": {r["step"]: r["val_loss"] for r in rows if "val_loss" in r},
        "final_val_loss": json.loads((out / "summary.json").read_text())["val_loss"],
        "roundtrip_val_loss": json.loads(roundtrip_json.read_text())["q_val_loss"],
    }


@pytest.mark.slow  # about a minute on one core
def test_speedlab_matches_train_gpt_step_for_step(tmp_path, golden):
    got = train_speedlab(tmp_path)
    steps = len(golden["train_loss"])
    assert sorted(got["train_loss"]) == list(range(1, steps + 1)), "a train_loss row per step"
    diffs = train_loss_diffs(got, golden)
    diffs["final val_loss"] = abs(got["final_val_loss"] - golden["final_val_loss"])
    diffs["roundtrip val_loss"] = abs(got["roundtrip_val_loss"] - golden["roundtrip_val_loss"])
    worst = max(diffs, key=diffs.get)
    print(f"largest difference from train_gpt.py: {worst}: {diffs[worst]:.3e}")
    for v in golden["val"]:  # reported, not asserted: the final one is
        d = abs(got["val_loss"].get(v["step"], math.nan) - v["val_loss"])
        print(f"val_loss step {v['step']}: difference {d:.3e}")
    tol = tolerance(golden, TOL, OTHER_CPU_TOL)
    bad = {k: f"{d:.3e}" for k, d in diffs.items() if not d <= tol}
    assert not bad, f"{len(bad)} value(s) differ from train_gpt.py by more than {tol}: {bad}"


def train_loss_diffs(got: dict, golden: dict) -> dict[str, float]:
    """|speedlab - reference| of every step's train loss, by step."""
    return {
        f"train_loss step {s}": abs(got["train_loss"][s] - ref)
        for s, ref in enumerate(golden["train_loss"], start=1)
    }


def tolerance(golden: dict, same: float, other: float) -> float:
    """`same` on the fixture's CPU family, else `other` (said in the test's output)."""
    if same_cpu_family(golden):
        return same
    print(f"this CPU's vector units differ from the fixture's ({golden['provenance']['cpu']}):"
          f" bf16 rounds differently, so the check is to {other}, not {same}")  # fmt: skip
    return other


# On another CPU family the same bf16 program rounds differently. Against the avx512_fp16 Xeon's
# fixture, measured 2026-12-02: an EPYC with avx512_bf16 alone gives losses up to 6.9e-3 away
# after 50 steps, a Xeon with amx_bf16 1.21e-2 (both bitwise against the reference run on their
# own CPU); a wrong recipe is off by far more. Rerunning the reference script on the CPU at hand
# (scripts/reference/make_golden_pg.py --out tests/fixtures/golden_pg/train_gpt_cpu_<family>.json)
# restores the bitwise check there.
OTHER_CPU_TOL = 2e-2


def same_cpu_family(golden: dict) -> bool:
    """The fixture's vector-unit flags are this machine's (then its numbers are bitwise)."""
    wanted = set(golden["provenance"]["cpu"]["flags"])
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return False
    known = {"avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16"}
    return flags & known == wanted & known
