import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import FINEWEB_JSONL, REPO, fineweb_texts
from speedlab.config import validate
from speedlab.data.documents import iter_local_texts, local_files, prepare_corpus
from speedlab.data.hub import HubUnreachable


def data_config(**data) -> dict:
    """`data` as the validated config holds it: the schema's defaults filled in."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["data"] = {"corpus": "test", **data}
    return validate(config)["data"]


def outputs(tmp_path):
    return tmp_path / "train.parquet", tmp_path / "val.parquet", tmp_path / "source.json"


def read(path):
    return pq.read_table(path).column("text").to_pylist()


def test_local_jsonl_split_val_is_the_first_docs(tmp_path):
    data = data_config(source="local", local=str(FINEWEB_JSONL), max_docs=120, val_docs=20)
    record = prepare_corpus(data, *outputs(tmp_path))
    docs = fineweb_texts(120)
    assert read(tmp_path / "val.parquet") == docs[:20]
    assert read(tmp_path / "train.parquet") == docs[20:]
    assert record["n_train"] == 100 and json.loads((tmp_path / "source.json").read_text())


def test_parquet_gzip_and_globs_in_order(tmp_path):
    docs = fineweb_texts(30)
    pq.write_table(pa.table({"body": docs[:10]}), tmp_path / "a.parquet", row_group_size=3)
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as f:
        f.writelines(json.dumps({"body": d}) + "\n" for d in docs[10:])
    got = list(iter_local_texts([str(tmp_path / "*.parquet"), str(tmp_path / "*.gz")], "body"))
    assert got == docs


def test_glob_matching_nothing_names_the_glob(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data.local: the glob '.*nothing-\*.jsonl'"):
        local_files(str(tmp_path / "nothing-*.jsonl"))


def test_missing_text_column_names_file_and_line(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"text": "ok"}\n{"content": "no"}\n')
    with pytest.raises(ValueError, match=r"d.jsonl:2: expected a JSON object with a 'text'"):
        list(iter_local_texts(str(tmp_path / "d.jsonl")))


def test_too_few_documents_for_validation(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"text": "one"}\n{"text": "two"}\n')
    data = data_config(source="local", local=str(tmp_path / "d.jsonl"), max_docs=10, val_docs=5)
    with pytest.raises(ValueError, match="data.val_docs"):
        prepare_corpus(data, *outputs(tmp_path))
    assert not (tmp_path / "train.parquet").exists()


def test_offline_without_fallback_fails_at_once_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    data = data_config(source="hf", max_docs=10, val_docs=2)
    with pytest.raises(HubUnreachable, match=r"127.0.0.1:9.*make run DATA="):
        prepare_corpus(data, *outputs(tmp_path))


def test_offline_with_fallback_reads_local_files_and_records_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    data = data_config(source="hf", offline_fallback=[str(FINEWEB_JSONL)], max_docs=30, val_docs=5)
    record = prepare_corpus(data, *outputs(tmp_path))
    assert record["source"] == "offline_fallback" and record["wanted"]["name"] == "sample-10BT"
    assert read(tmp_path / "val.parquet") == fineweb_texts(5)


def test_non_utf8_jsonl_names_file_and_line(tmp_path):
    (tmp_path / "d.jsonl").write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(ValueError, match=r"d.jsonl:2: not valid UTF-8 \(byte 0xe9"):
        list(iter_local_texts(str(tmp_path / "d.jsonl")))


def test_parquet_without_the_text_column(tmp_path):
    pq.write_table(pa.table({"body": ["a", "b"]}), tmp_path / "d.parquet")
    with pytest.raises(KeyError, match=r"d.parquet: no column 'text' \(columns: \['body'\]\)"):
        list(iter_local_texts(str(tmp_path / "d.parquet")))


def test_empty_document_set(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"text": ""}\n{"text": "   "}\n')
    data = data_config(source="local", local=str(tmp_path / "d.jsonl"), max_docs=10, val_docs=1)
    with pytest.raises(ValueError, match=r"no non-empty documents \(.*d.jsonl\)"):
        prepare_corpus(data, *outputs(tmp_path))
    assert not list(tmp_path.glob("*.parquet"))


def test_corpus_params_keep_what_decides_the_documents():
    from speedlab.data.documents import corpus_params

    hf = {"source": "hf", "corpus": "c", "hf": {"repo": "r"}, "offline_fallback": ["f"],
          "local": "x/*.jsonl", "pretokenized": {"train_shards": 7}, "max_docs": 10}  # fmt: skip
    assert corpus_params(hf) == {
        "source": "hf", "corpus": "c", "hf": {"repo": "r"}, "offline_fallback": ["f"],
        "max_docs": 10,
    }  # fmt: skip
    local = dict(hf, source="local")
    assert corpus_params(local) == {
        "source": "local",
        "corpus": "c",
        "local": "x/*.jsonl",
        "max_docs": 10,
    }
    assert "pretokenized" in hf  # the config itself is left as it is


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"source": "hf", "max_docs": 10, "val_docs": 2},
         ["cannot be reached to read HuggingFaceFW/fineweb (sample-10BT)",
          "data.offline_fallback is not set"]),
        ({"source": "local", "local": str(FINEWEB_JSONL), "text_column": "body",
          "max_docs": 10, "val_docs": 2},
         [f"{FINEWEB_JSONL}:1: expected a JSON object with a 'body' field"]),
    ],
)  # fmt: skip
def test_the_data_stage_fails_with_one_line(tmp_path, cli_env, data, expected):
    import subprocess
    import sys

    env = dict(cli_env, HF_ENDPOINT="http://127.0.0.1:9")  # nothing listens there
    train, val, source = outputs(tmp_path)
    data = json.dumps(data_config(**data))
    cmd = [sys.executable, "-m", "speedlab.data.documents", "--data", data,
           "--train", train, "--val", val, "--source", source]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    line = p.stderr.strip().splitlines()[-1]
    assert line.startswith("prepare_corpus: ") and all(e in line for e in expected), line
    assert not list(tmp_path.glob("*.parquet"))
