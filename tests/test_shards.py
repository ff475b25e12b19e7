import numpy as np
import pytest

from speedlab.data.shards import (
    HEADER_BYTES,
    MAGIC,
    load_split,
    read_shard,
    write_manifest,
    write_shard,
)


def reference_reader(path):
    """The loader rules of parameter-golf / modded-nanogpt, written independently in numpy."""
    header = np.fromfile(path, dtype="<i4", count=256)
    assert header[0] == 20240520 and header[1] == 1
    n = int(header[2])
    tokens = np.fromfile(path, dtype="<u2", offset=256 * 4)
    assert tokens.size == n
    return tokens


def test_header_and_body_roundtrip(tmp_path):
    tokens = np.random.default_rng(0).integers(0, 65536, size=12345).astype(np.uint16)
    path = tmp_path / "fineweb_train_000000.bin"
    write_shard(path, tokens)
    assert path.stat().st_size == HEADER_BYTES + 2 * tokens.size
    header = np.fromfile(path, dtype="<i4", count=256)
    assert list(header[:3]) == [MAGIC, 1, tokens.size] and not header[3:].any()
    np.testing.assert_array_equal(reference_reader(path), tokens)
    np.testing.assert_array_equal(read_shard(path), tokens)
    assert not list(tmp_path.glob("*.tmp"))


def test_truncated_and_foreign_files_are_rejected(tmp_path):
    path = tmp_path / "s.bin"
    write_shard(path, np.arange(100, dtype=np.uint16))
    data = path.read_bytes()
    path.write_bytes(data[:-2])
    with pytest.raises(ValueError, match="header promises 100 tokens"):
        read_shard(path)
    path.write_bytes(b"\0" * 2048)
    with pytest.raises(ValueError, match="not a token shard"):
        read_shard(path)


def test_out_of_range_ids_are_refused(tmp_path):
    with pytest.raises(ValueError, match="uint16"):
        write_shard(tmp_path / "s.bin", np.array([70000]))
    assert not (tmp_path / "s.bin").exists()


def test_manifest_concatenates_shards_in_order(tmp_path):
    a, b = np.arange(10, dtype=np.uint16), np.arange(10, 15, dtype=np.uint16)
    paths = [tmp_path / "fineweb_val_000000.bin", tmp_path / "fineweb_val_000001.bin"]
    write_shard(paths[0], a)
    write_shard(paths[1], b)
    write_manifest(tmp_path / "fineweb_val.json", paths, [10, 5])
    np.testing.assert_array_equal(load_split(tmp_path / "fineweb_val.json"), np.arange(15))


def test_check_command_names_each_broken_invariant(tmp_path, capsys):
    from speedlab.data.shards import inspect_shard, main

    good = tmp_path / "good.bin"
    write_shard(good, np.array([1, 5, 7, 1, 9], dtype=np.uint16))
    assert inspect_shard(good, vocab=10)[1] == []
    info = inspect_shard(good)[0]
    assert (info["tokens"], info["bos"], info["min_id"], info["max_id"]) == (5, 2, 1, 9)

    data = good.read_bytes()
    bad_magic = tmp_path / "magic.bin"
    bad_magic.write_bytes(b"\x01" + data[1:])
    truncated = tmp_path / "trunc.bin"
    truncated.write_bytes(data[:-1])
    count = tmp_path / "count.bin"
    count.write_bytes(data + b"\x01\x00")
    cases = {
        bad_magic: "magic",
        truncated: "not a whole number of uint16",
        count: "header says 5 tokens, body holds 6",
    }
    for path, problem in cases.items():
        assert any(problem in p for p in inspect_shard(path)[1]), path
    assert "outside the vocabulary" in inspect_shard(good, vocab=8)[1][0]
    with pytest.raises(SystemExit, match="3 of 4 shard"):
        main(["check", str(good), *map(str, cases)])
    err = capsys.readouterr().err
    assert f"{truncated}: FAIL" in err and f"{good}: FAIL" not in err
    main(["info", str(good)])
    assert "tokens=5 bos=2" in capsys.readouterr().out
