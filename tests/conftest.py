import json
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FINEWEB = SHARED / "data" / "fineweb"
FINEWEB_JSONL = FINEWEB / "fineweb_CC-MAIN-2024-10_first1000docs.jsonl"


def pytest_configure(config):
    if not FINEWEB_JSONL.exists():
        raise pytest.UsageError(
            f"the tests read real FineWeb text from {FINEWEB}; put the shared/ folder beside "
            "the checkout"
        )


def fineweb_texts(n: int | None = None) -> list[str]:
    texts = []
    with open(FINEWEB_JSONL) as f:
        for line in f:
            texts.append(json.loads(line)["text"])
            if n is not None and len(texts) == n:
                break
    return texts


@pytest.fixture(scope="session")
def texts():
    return fineweb_texts(400)


@pytest.fixture(scope="session")
def sp_model(tmp_path_factory, texts):
    """A 512-piece tokenizer trained by speedlab on real FineWeb documents (not the first 50)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from speedlab.data.tokenizer import train_tokenizer

    d = tmp_path_factory.mktemp("tok")
    pq.write_table(pa.table({"text": texts[50:]}), d / "train.parquet")
    train_tokenizer(d / "train.parquet", d / "sp.model", 512, None, 1)
    return d / "sp.model"


def snakemake_cmd(workdir: Path, *args) -> list[str]:
    """snakemake on this repository's workflow, run in `workdir` with its config.yaml."""
    return [
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        *args,
    ]


def smoke_quickstart_config() -> dict:
    """The quickstart at smoke scale on 400 local FineWeb documents (seconds per run)."""
    import yaml

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["scale"] = "smoke"
    config["data"].update(source="local", local=str(FINEWEB_JSONL), max_docs=400, val_docs=40)
    return config


EXTERNAL_TRAINER = REPO / "tests" / "fixtures" / "external_trainer"


def external_study(seeds=(1, 2)) -> dict:
    """A study trained by an external script (tests/fixtures/external_trainer/train_tiny.py,
    a real bigram model that prints parameter-golf's log format), its settings by environment
    variables, as parameter-golf's authors run train_gpt.py."""
    return {
        "baseline": "lr_low",
        "seeds": list(seeds),
        "metric": "q_val_bpb",
        "trainer": {
            "kind": "command",
            "command": "{python} train_tiny.py",
            "source": {"path": str(EXTERNAL_TRAINER)},
            "env": {"DATA_PATH": "{data_dir}", "LR": "{lr}", "ITERATIONS": "{steps}"},
            "seed": "SEED",
            "log_format": "parameter_golf",
        },
        "conditions": {"lr_low": {"params": {"lr": 0.005}}, "lr_high": {"params": {"lr": 0.05}}},
        "overrides": {"train.steps": 30},
    }


@pytest.fixture(scope="session")
def shards(tmp_path_factory, sp_model, texts):
    """Train/val shards of real FineWeb text with the session tokenizer, and its byte table."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import sentencepiece as spm

    from speedlab.data.encode import encode_split
    from speedlab.data.token_bytes import token_byte_table

    d = tmp_path_factory.mktemp("shards")
    pq.write_table(pa.table({"text": texts[:50]}), d / "val.parquet")
    pq.write_table(pa.table({"text": texts[50:]}), d / "train.parquet")
    for split in ("train", "val"):
        encode_split(d / f"{split}.parquet", sp_model, d, split, 10**8, 1)
    np.save(
        d / "token_bytes.npy",
        token_byte_table(spm.SentencePieceProcessor(model_file=str(sp_model))),
    )
    return d


@pytest.fixture(scope="module")
def probe_here(tmp_path_factory):
    """GPU plans measure activations in this process (the probe is loaded: no subprocess), into
    a session cache rather than the checkout's results/.cache."""
    from speedlab.train import memory_probe  # noqa: F401  (loaded: no probe subprocess)

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPEEDLAB_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "memcache"))
        yield


@pytest.fixture
def cli_env():
    """Environment for subprocesses: this interpreter's scripts first on PATH."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(REPO / "src")
    return env
