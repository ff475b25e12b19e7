"""data.pretokenized against a loopback hub serving parameter-golf-like and gpt2-like repos.

The sp1024 repo holds real FineWeb documents tokenized with the community sp1024 model, at the
paths parameter-golf's downloader uses; a decoy sp4096 folder checks that only the preset's
folder is read.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm

from conftest import fineweb_texts
from hub_server import COMMIT, FakeHub, point_client_at
from speedlab.data.pretokenized import PRESETS, byte_table, fetch_pretokenized, main
from speedlab.data.shards import HEADER_BYTES, load_split, read_shard, write_shard

SHARED = Path(__file__).resolve().parents[1].parent / "shared/data"
MODEL = SHARED / "tokenizer_lab_retrain/fineweb_1024_bpe.model"
SP = PRESETS["sp1024"]
GPT2 = PRESETS["gpt2"]
VAL = f"{SP.folder}/fineweb_val_000000.bin"
TRAIN = [f"{SP.folder}/fineweb_train_{i:06d}.bin" for i in range(3)]

pytestmark = pytest.mark.skipif(not MODEL.exists(), reason=f"needs the sp1024 model {MODEL}")


@pytest.fixture(scope="module")
def sp_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Val = 50 documents, 3 train shards of 100 documents each, BOS (1) before every one."""
    sp = spm.SentencePieceProcessor(model_file=str(MODEL))
    docs = [np.array([SP.bos_id, *ids], dtype=np.uint16) for ids in sp.encode(fineweb_texts(350))]
    root = tmp_path_factory.mktemp("parameter-golf")
    parts = [(VAL, docs[:50])] + [
        (t, docs[50 + 100 * i : 150 + 100 * i]) for i, t in enumerate(TRAIN)
    ]
    for path, part in parts:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        write_shard(root / path, np.concatenate(part))
    decoy = root / "datasets/datasets/fineweb10B_sp4096/fineweb_train_000000.bin"
    decoy.parent.mkdir(parents=True)
    write_shard(decoy, np.arange(10))
    (root / SP.tokenizer).parent.mkdir(parents=True)
    (root / SP.tokenizer).write_bytes(MODEL.read_bytes())
    (root / "README.md").write_text("# parameter-golf (a small loopback copy for tests)\n")
    return root


@pytest.fixture
def hub(sp_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with FakeHub() as server:
        server.add_dataset(SP.repo, sp_repo)
        point_client_at(server, tmp_path, monkeypatch)
        yield server
    assert server.unhandled == [], "the client made requests the loopback hub does not know"


def bin_gets(hub: FakeHub) -> list[str]:
    return [s.path for s in hub.log if s.method == "GET" and s.path.endswith(".bin")]


def test_fetch_sp1024(hub: FakeHub, sp_repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = fetch_pretokenized("sp1024", 2, out)
    names = ["fineweb_val_000000.bin", "fineweb_train_000000.bin", "fineweb_train_000001.bin"]
    for name, served in zip(names, [VAL, *TRAIN[:2]], strict=True):
        assert (out / name).read_bytes() == (sp_repo / served).read_bytes()
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            *names,
            "fineweb_train.json",
            "fineweb_val.json",
            "fineweb_1024_bpe.model",
            "token_bytes.npy",
        ]
    )
    assert (out / "fineweb_1024_bpe.model").read_bytes() == MODEL.read_bytes()
    assert bin_gets(hub) == [f"/datasets/{SP.repo}/resolve/{COMMIT}/{p}" for p in [VAL, *TRAIN[:2]]]

    train = json.loads((out / "fineweb_train.json").read_text())
    counts = [len(read_shard(sp_repo / p)) for p in TRAIN[:2]]
    assert train["shards"] == names[1:] and train["tokens"] == counts
    assert train["total_tokens"] == sum(counts)
    assert train["source"] == SP.repo and train["preset"] == "sp1024"
    assert train["revision"] == COMMIT and train["bos_id"] == 1
    assert train["tokenizer"] == "fineweb_1024_bpe.model"
    assert json.loads((out / "fineweb_val.json").read_text())["shards"] == names[:1]

    tokens = load_split(out / "fineweb_train.json")
    expected = np.concatenate([np.asarray(read_shard(sp_repo / p)) for p in TRAIN[:2]])
    np.testing.assert_array_equal(tokens, expected)
    assert tokens[0] == 1
    assert np.load(out / "token_bytes.npy").shape == (3, 1024)
    assert result["train"] == names[1:] and result["val_tokens"] == len(read_shard(sp_repo / VAL))
    assert result["token_bytes"] == str(out / "token_bytes.npy")


def test_a_rerun_downloads_nothing_and_drops_extra_shards(hub: FakeHub, tmp_path: Path) -> None:
    out = tmp_path / "out"
    fetch_pretokenized("sp1024", 3, out)
    hub.log.clear()
    fetch_pretokenized("sp1024", 1, out)
    assert bin_gets(hub) == []  # the HF cache has them: only HEADs asking whether they changed
    assert sorted(p.name for p in out.glob("*.bin")) == [
        "fineweb_train_000000.bin",
        "fineweb_val_000000.bin",
    ]
    assert json.loads((out / "fineweb_train.json").read_text())["shards"] == [
        "fineweb_train_000000.bin"
    ]


def test_too_many_train_shards_says_how_many_there_are(hub: FakeHub, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"has 3 train shards.*asked for 4") as err:
        fetch_pretokenized("sp1024", 4, tmp_path / "out")
    assert SP.repo in str(err.value)
    assert bin_gets(hub) == []
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage", ["magic", "truncated", "vocab"])
def test_a_bad_shard_is_named_and_never_placed(hub: FakeHub, tmp_path: Path, damage: str) -> None:
    data = bytearray(hub.repos[SP.repo][TRAIN[1]])
    if damage == "magic":
        data[:4] = (1234).to_bytes(4, "little")
    elif damage == "truncated":
        data = data[:-2]
    else:  # a token id past the sp1024 vocabulary
        data[HEADER_BYTES + 2 : HEADER_BYTES + 4] = (4000).to_bytes(2, "little")
    hub.repos[SP.repo][TRAIN[1]] = bytes(data)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="fineweb_train_000001.bin") as err:
        fetch_pretokenized("sp1024", 2, out)
    assert SP.repo in str(err.value)
    assert not (out / "fineweb_train_000001.bin").exists()
    assert not list(out.glob("*.tmp")) and not list(out.glob("*.json"))


def test_a_missing_repo_is_named(hub: FakeHub, tmp_path: Path) -> None:
    del hub.repos[SP.repo]
    with pytest.raises(FileNotFoundError, match=SP.repo):
        fetch_pretokenized("sp1024", 1, tmp_path / "out")


def byte_level_vocab_and_docs(n_docs: int) -> tuple[dict[str, int], list[np.ndarray], list[str]]:
    """A GPT-2-shaped byte-level vocabulary (its 256 byte tokens in GPT-2's order, then FineWeb's
    commonest " word" tokens, <|endoftext|> last at 50256) and real FineWeb documents encoded
    with it greedily: a known word is one token, anything else its bytes."""
    from collections import Counter

    from speedlab.data.token_bytes import byte_level_alphabet

    char = {b: c for c, b in byte_level_alphabet().items()}
    vocab = {c: i for i, c in enumerate(sorted(char.values(), key=ord))}
    docs = fineweb_texts(n_docs)
    words = Counter(w for d in docs for w in d.split(" ") if w)
    for w, _ in words.most_common():
        token = "".join(char[b] for b in (" " + w).encode())
        if len(vocab) == GPT2.bos_id:
            break
        vocab.setdefault(token, len(vocab))
    while len(vocab) < GPT2.bos_id:  # the sample has fewer distinct words than GPT-2 tokens
        vocab["".join(char[b] for b in f" x{len(vocab)}".encode())] = len(vocab)
    vocab["<|endoftext|>"] = GPT2.bos_id
    encoded = []
    for d in docs:
        ids = [GPT2.bos_id]
        for k, w in enumerate(d.split(" ")):
            piece = (" " if k else "") + w
            token = "".join(char[b] for b in piece.encode())
            ids += [vocab[token]] if token in vocab else [vocab[char[b]] for b in piece.encode()]
        encoded.append(np.array(ids, dtype=np.uint16))
    return vocab, encoded, docs


GPT2_FILES = ["fineweb_val_000000.bin"] + [f"fineweb_train_{i:06d}.bin" for i in (1, 2, 3)]


@pytest.fixture(scope="module")
def gpt2_repos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    """modded-nanogpt's layout (files at the repo root, train numbered from 000001), a model repo
    with the vocab.json, and the documents of each shard (val first)."""
    vocab, encoded, docs = byte_level_vocab_and_docs(400)
    root, tok = tmp_path_factory.mktemp("gpt2"), tmp_path_factory.mktemp("gpt2-model")
    (tok / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    parts = [range(0, 50), range(50, 200), range(200, 350), range(350, 400)]
    for name, part in zip(GPT2_FILES, parts, strict=True):
        write_shard(root / name, np.concatenate([encoded[i] for i in part]))
    return root, tok, docs[:50]


def test_fetch_gpt2_with_its_byte_table(hub: FakeHub, gpt2_repos, tmp_path: Path) -> None:
    """GPT-2's vocab.json comes from its model repo: the byte table counts every UTF-8 byte of
    the documents exactly."""
    from speedlab.data.token_bytes import sequence_bytes

    root, tok, val_docs = gpt2_repos
    files = GPT2_FILES
    hub.add_dataset(GPT2.repo, root)
    hub.add_model(GPT2.tokenizer_repo, tok)

    out = tmp_path / "out"
    result = fetch_pretokenized("gpt2", 2, out)
    assert result["train"] == files[1:3]
    assert result["tokenizer_source"] == f"{GPT2.tokenizer_repo}@{COMMIT}"
    assert all((out / f).read_bytes() == (root / f).read_bytes() for f in files[:3])
    assert not (out / files[3]).exists()
    manifest = json.loads((out / "fineweb_train.json").read_text())
    assert manifest["bos_id"] == 50256 and manifest["tokenizer"] == "vocab.json"
    table = np.load(out / "token_bytes.npy")
    assert table.shape == (3, 50257) and table[2].sum() == 1 and table[2, 50256] == 1
    assert not table[1].any()  # a byte-level token's space is one of its own bytes

    val = np.asarray(load_split(out / "fineweb_val.json")).astype(np.int64)
    counted = sequence_bytes(table, val[:-1], val[1:]).sum()
    assert counted == sum(len(d.encode()) for d in val_docs)


def test_a_missing_tokenizer_repo_is_named(hub: FakeHub, tmp_path: Path) -> None:
    root = tmp_path / "gpt2"
    root.mkdir()
    for name in ("fineweb_val_000000.bin", "fineweb_train_000001.bin"):
        write_shard(root / name, np.full(10, GPT2.bos_id))
    hub.add_dataset(GPT2.repo, root)
    with pytest.raises(FileNotFoundError, match=f"tokenizer repo.*{GPT2.tokenizer_repo}"):
        fetch_pretokenized("gpt2", 1, tmp_path / "out")
    assert not (tmp_path / "out/token_bytes.npy").exists()


@pytest.mark.parametrize(
    ("vocab", "error"),
    [
        ('{"a": 0, "b": 3, "<|endoftext|>": 1}', "not 0..2 without gaps"),
        ('{"a": 0, "b": 1}', "special token"),
        ('{"a": 0, "\\u4e2d": 1, "<|endoftext|>": 2}', "outside the byte-level alphabet"),
        ('["a", "b"]', "expected a JSON object"),
        ("{not json", "not a JSON vocabulary"),
    ],
)
def test_a_bad_vocab_json_is_named(tmp_path: Path, vocab: str, error: str) -> None:
    (tmp_path / "vocab.json").write_text(vocab)
    with pytest.raises(ValueError, match=error) as err:
        byte_table("gpt2", tmp_path / "vocab.json")
    assert "vocab.json" in str(err.value)


def test_cli(hub: FakeHub, tmp_path: Path) -> None:
    out = tmp_path / "shards"
    main(["--preset", "sp1024", "--train-shards", "1", "--revision", "main", "--out-dir", str(out)])
    assert json.loads((out / "fineweb_train.json").read_text())["shards"] == [
        "fineweb_train_000000.bin"
    ]
    assert (out / "token_bytes.npy").exists()


def test_cli_errors_are_one_line(hub: FakeHub, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"^fetch_pretokenized: .*'willdepueoai/parameter-golf'"):
        main(["--preset", "sp1024", "--train-shards", "99", "--revision", "main",
              "--out-dir", str(tmp_path)])  # fmt: skip


@pytest.mark.parametrize("preset", ["sp1024", "gpt2"])
def test_an_unreachable_hub_is_one_line_naming_the_repo(
    preset: str, tmp_path: Path, cli_env: dict
) -> None:
    import subprocess
    import sys

    env = dict(cli_env, HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf"))
    p = subprocess.run(
        [sys.executable, "-m", "speedlab.data.pretokenized", "--preset", preset,
         "--train-shards", "1", "--revision", "main", "--out-dir", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    (line,) = p.stderr.strip().splitlines()
    assert line.startswith("fetch_pretokenized: cannot reach the Hugging Face hub at http://127")
    assert PRESETS[preset].repo in line and "no offline fallback" in line
    assert "--config scale=smoke" in line  # what a catalogue study can do offline


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["sp1024", "gpt2"])
def test_a_study_trains_on_the_official_shards_through_snakemake(
    preset: str, sp_repo: Path, gpt2_repos, tmp_path: Path, cli_env: dict
) -> None:
    import subprocess

    import pandas as pd
    import yaml

    from conftest import REPO

    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["scale"] = "smoke"
    config["data"] = {
        "corpus": "pg",
        "source": "pretokenized",
        "pretokenized": {"preset": preset, "train_shards": 2},
    }
    config["studies"]["quickstart"]["seeds"] = [0, 1]
    if preset == "gpt2":  # a 50,257-row embedding and head: ~1 s per step on one core
        smoke = config["scales"]["smoke"]
        smoke.update({"train.steps": 8, "train.val_every": 8, "train.val_tokens": 2048})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    with FakeHub() as server:
        server.add_dataset(SP.repo, sp_repo)
        server.add_dataset(GPT2.repo, gpt2_repos[0])
        server.add_model(GPT2.tokenizer_repo, gpt2_repos[1])
        env = dict(cli_env, HF_ENDPOINT=server.url, HF_HOME=str(tmp_path / "hf"),
                   HF_HUB_DISABLE_TELEMETRY="1")  # fmt: skip
        p = subprocess.run(
            ["snakemake", "--cores", "2", "--snakefile", str(REPO / "Snakefile"),
             "--directory", str(tmp_path), "--configfile", str(tmp_path / "c.yaml")],
            capture_output=True, text=True, env=env, timeout=600,
        )  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    shards = tmp_path / "results/shards/pretokenized" / preset
    served = sp_repo / TRAIN[1] if preset == "sp1024" else gpt2_repos[0] / GPT2_FILES[1]
    assert (shards / "fineweb_train_000001.bin").read_bytes() == served.read_bytes()
    assert not (tmp_path / "results/data").exists()  # no documents, no tokenizer training
    runs = pd.read_parquet(tmp_path / "results/studies/quickstart/runs.parquet")
    assert len(runs) == 4 and runs["q_val_bpb"].between(1, 10).all()
    vocab = 1024 if preset == "sp1024" else 50257  # the embedding has a row per token
    assert (runs["n_params"] > vocab * runs["cfg.model.d_model"]).all()
    assert (tmp_path / "results/studies/quickstart/report.md").exists()
