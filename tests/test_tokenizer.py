import hashlib
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sentencepiece as spm
from test_data import data_config

from speedlab.data.documents import prepare_corpus
from speedlab.data.encode import BOS_ID, encode_split
from speedlab.data.shards import load_split, read_shard
from speedlab.data.token_bytes import sequence_bytes, token_byte_table
from speedlab.data.tokenizer import train_tokenizer


def test_tokenizer_options_follow_parameter_golf(sp_model):
    sp = spm.SentencePieceProcessor(model_file=str(sp_model))
    assert [sp.pad_id(), sp.bos_id(), sp.eos_id(), sp.unk_id()] == [0, 1, 2, 3]
    assert sp.vocab_size() == 512
    assert sum(sp.is_byte(i) for i in range(sp.vocab_size())) == 256  # byte fallback
    assert sp.encode("2024") == [sp.piece_to_id(c) for c in "2024"]  # digits split
    assert not sp.id_to_piece(sp.encode("Hello")[0]).startswith("▁")  # no dummy prefix


def test_token_bytes_sum_to_utf8_length_of_each_decoded_doc(sp_model, texts):
    sp = spm.SentencePieceProcessor(model_file=str(sp_model))
    table = token_byte_table(sp)
    docs = texts[:50] + ["  leading spaces", "emoji 🦀 and ünïcödé", "x\n\ny", "ĳ ﬁ ①"]
    for doc in docs:
        ids = np.array([BOS_ID, *sp.encode(doc)])
        n_bytes = sequence_bytes(table, ids[:-1], ids[1:]).sum()
        assert n_bytes == len(sp.decode(ids[1:].tolist()).encode("utf-8")), doc[:60]


def test_bos_rule_drops_the_space_of_a_leading_piece(sp_model):
    sp = spm.SentencePieceProcessor(model_file=str(sp_model))
    table = token_byte_table(sp)
    word = sp.piece_to_id("▁the")
    assert table[1, word] == 1 and table[0, word] == 3
    assert sequence_bytes(table, np.array([BOS_ID]), np.array([word]))[0] == 3
    assert sequence_bytes(table, np.array([word]), np.array([word]))[0] == 4
    assert table[:2, BOS_ID].sum() == 0 and table[2, BOS_ID] == 1


def test_shards_hold_every_doc_after_a_bos(tmp_path, sp_model, texts):
    pq.write_table(pa.table({"text": texts[:40]}), tmp_path / "val.parquet")
    counts = encode_split(tmp_path / "val.parquet", sp_model, tmp_path, "val", 5000, 2)
    assert len(counts) > 1 and all(c == 5000 for c in counts[:-1])
    tokens = load_split(tmp_path / "fineweb_val.json")
    sp = spm.SentencePieceProcessor(model_file=str(sp_model))
    expected = np.concatenate([[BOS_ID, *sp.encode(t)] for t in texts[:40]])
    np.testing.assert_array_equal(tokens, expected)
    assert (tokens == BOS_ID).sum() == 40
    assert read_shard(tmp_path / "fineweb_val_000000.bin").size == 5000


def test_tokenizer_never_sees_validation_documents(tmp_path, texts):
    # A made-up word repeated all over the validation documents: had the tokenizer been trained
    # on them, BPE would have spent merges on it.
    marker = "qzvxqzvxqzvx"
    docs = [f"{marker} {t} {marker * 20}" for t in texts[:30]] + texts[30:300]
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    data = data_config(
        source="local", local=str(tmp_path / "docs.jsonl"), max_docs=300, val_docs=30
    )
    prepare_corpus(data, tmp_path / "train.parquet", tmp_path / "val.parquet", tmp_path / "s.json")
    train_tokenizer(tmp_path / "train.parquet", tmp_path / "sp.model", 512, None, 1)
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "sp.model"))
    pieces = [sp.id_to_piece(i) for i in range(sp.vocab_size())]
    assert not [p for p in pieces if "qzv" in p or "zvx" in p]
    val = pq.read_table(tmp_path / "val.parquet").column("text").to_pylist()
    assert val == docs[:30]


def _shard_hashes(d, split):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in d.glob(f"*_{split}_*.bin")}


@pytest.fixture
def docs_parquet(tmp_path, texts):
    pq.write_table(pa.table({"text": texts[:200]}), tmp_path / "docs.parquet", row_group_size=37)
    return tmp_path / "docs.parquet"


def test_same_bytes_whatever_the_worker_count(tmp_path, sp_model, docs_parquet):
    one, many = tmp_path / "one", tmp_path / "many"
    encode_split(docs_parquet, sp_model, one, "train", 20_000, threads=1, batch_docs=16)
    encode_split(docs_parquet, sp_model, many, "train", 20_000, threads=2, batch_docs=64)
    assert len(_shard_hashes(one, "train")) > 3
    assert _shard_hashes(one, "train") == _shard_hashes(many, "train")
    assert (one / "fineweb_train.json").read_text() == (many / "fineweb_train.json").read_text()


def test_killed_run_resumes_to_identical_shards(tmp_path, sp_model, docs_parquet, monkeypatch):
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    encode_split(docs_parquet, sp_model, clean, "train", 15_000, threads=2)
    import speedlab.data.shards

    real_write, calls = speedlab.data.shards.write_shard, []

    def dies_on_fourth(path, tokens):
        calls.append(path)
        if len(calls) == 4:
            real_write(path, tokens[: len(tokens) // 2])  # a shard cut short, as if killed
            raise KeyboardInterrupt("killed")
        real_write(path, tokens)

    monkeypatch.setattr(speedlab.data.shards, "write_shard", dies_on_fourth)
    with pytest.raises(KeyboardInterrupt):
        encode_split(docs_parquet, sp_model, killed, "train", 15_000, threads=2)
    assert not (killed / "fineweb_train.json").exists()  # incomplete split: no manifest
    monkeypatch.setattr(speedlab.data.shards, "write_shard", real_write)
    resumed = []
    monkeypatch.setattr(
        speedlab.data.shards, "write_shard", lambda p, t: (resumed.append(p.name), real_write(p, t))
    )
    encode_split(docs_parquet, sp_model, killed, "train", 15_000, threads=2)
    assert resumed[0] == "fineweb_train_000003.bin"  # the three complete shards were kept
    assert _shard_hashes(killed, "train") == _shard_hashes(clean, "train")
    assert not (killed / "fineweb_train.progress.json").exists()


def test_progress_from_other_inputs_is_not_resumed(tmp_path, sp_model, docs_parquet, texts):
    out = tmp_path / "out"
    (out).mkdir()
    (out / "fineweb_train.progress.json").write_text(
        json.dumps({"fingerprint": {"stale": 1}, "shards": [{"name": "fineweb_train_000000.bin"}]})
    )
    (out / "fineweb_train_000009.bin").write_bytes(b"junk from an older run")
    encode_split(docs_parquet, sp_model, out, "train", 10**8, threads=1)
    assert sorted(p.name for p in out.glob("*.bin")) == ["fineweb_train_000000.bin"]


def test_bpb_invariant_over_the_whole_val_split(tmp_path, sp_model, texts):
    pq.write_table(pa.table({"text": texts[:50]}), tmp_path / "val.parquet")
    encode_split(tmp_path / "val.parquet", sp_model, tmp_path, "val", 10**8, 2)
    tokens = load_split(tmp_path / "fineweb_val.json").astype(np.int64)
    sp = spm.SentencePieceProcessor(model_file=str(sp_model))
    counted = sequence_bytes(token_byte_table(sp), tokens[:-1], tokens[1:]).sum()
    docs = np.split(tokens, np.flatnonzero(tokens == BOS_ID)[1:])
    decoded = sum(len(sp.decode(d[1:].tolist()).encode("utf-8")) for d in docs)
    assert counted == decoded


def test_empty_document_set_is_refused(tmp_path, sp_model):
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), tmp_path / "none.parquet")
    with pytest.raises(ValueError, match=r"none.parquet: no documents to tokenize"):
        encode_split(tmp_path / "none.parquet", sp_model, tmp_path / "o", "val", 100, 1)
    assert not (tmp_path / "o" / "fineweb_val.json").exists()


def test_byte_level_alphabet_is_gpt2s():
    """GPT-2's byte-level alphabet: its first 256 vocab ids are the bytes in the order of their
    characters, so "!" is 0, a newline ("Ċ") 198 and a space ("Ġ") 220 (checked once against
    the 50,256 ranks of tiktoken's gpt2 file, shipped in openai-whisper's sdist)."""
    from speedlab.data.token_bytes import byte_level_alphabet, byte_level_table

    alphabet = byte_level_alphabet()
    assert sorted(alphabet.values()) == list(range(256))
    assert alphabet["Ġ"] == 32 and alphabet["Ċ"] == 10 and alphabet["!"] == 33
    order = [alphabet[c] for c in sorted(alphabet, key=ord)]
    assert order[0] == ord("!") and order[198] == ord("\n") and order[220] == ord(" ")
    vocab = {c: i for i, c in enumerate(sorted(alphabet, key=ord))}
    vocab |= {"Ġthe": 256, "Ġcaf\u00c3\u00a9": 257, "<|endoftext|>": 258}  # " café" is 6 bytes
    table = byte_level_table(vocab, ["<|endoftext|>"])
    assert table[0, :256].tolist() == [1] * 256
    assert table[:, 256:].T.tolist() == [[4, 0, 0], [6, 0, 0], [0, 0, 1]]


@pytest.mark.parametrize("text", ["0", "-3", "1.5", "all", "true"])
def test_train_max_docs_must_be_a_positive_integer_or_null(text, tmp_path, capsys):
    from speedlab.data.tokenizer import main

    args = ["train", "--docs", "d.parquet", "--model", "m", "--vocab-size", "300"]
    with pytest.raises(SystemExit):
        main([*args, "--max-docs", text, "--threads", "1"])
    assert "--max-docs: expected a positive integer or null" in capsys.readouterr().err


def test_train_max_docs_reads_null_and_numbers():
    from speedlab.data.tokenizer import max_docs

    assert max_docs("null") is None and max_docs("40") == 40
