"""speedlab.data.hub against a loopback hub (tests/hub_server.py) serving real FineWeb documents."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from huggingface_hub import hf_hub_download
from test_data import data_config

from hub_server import COMMIT, FakeHub, point_client_at
from speedlab.data.hub import (
    HubUnreachable,
    config_data_files,
    hub_reachable,
    iter_hub_texts,
)

FINEWEB = Path(__file__).parents[1].parent / "shared/data/fineweb"
DOCS = FINEWEB / "fineweb_CC-MAIN-2024-10_first1000docs.jsonl"
REPO = "HuggingFaceFW/fineweb"
SAMPLE = ["sample/10BT/000_00000.parquet", "sample/10BT/001_00000.parquet"]
DUMP = "data/CC-MAIN-2024-10/000_00000.parquet"
ROWS_PER_GROUP = 40
CARD = """---
license: odc-by
pretty_name: FineWeb
configs:
- config_name: default
  data_files:
  - split: train
    path: data/*/*
- config_name: sample-10BT
  data_files:
  - split: train
    path: sample/10BT/*
- config_name: CC-MAIN-2024-10
  data_files:
  - split: train
    path: data/CC-MAIN-2024-10/*
- config_name: second-half
  data_files: sample/10BT/001_*
---
# FineWeb (a small loopback copy for tests)
"""

pytestmark = pytest.mark.skipif(not DOCS.exists(), reason=f"needs the FineWeb sample {DOCS}")


@pytest.fixture(scope="module")
def repo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A FineWeb-like repo: the card, and 1000 real documents in three parquet files."""
    rows = [json.loads(line) for line in DOCS.read_text().splitlines()]
    root = tmp_path_factory.mktemp("fineweb")
    (root / "README.md").write_text(CARD)
    for path, part in [(SAMPLE[0], rows[:300]), (SAMPLE[1], rows[300:600]), (DUMP, rows[600:])]:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(part), root / path, row_group_size=ROWS_PER_GROUP)
    return root


@pytest.fixture
def hub(repo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with FakeHub() as server:
        server.add_dataset(REPO, repo_dir)
        point_client_at(server, tmp_path, monkeypatch)
        yield server
    assert server.unhandled == [], "the client made requests the loopback hub does not know"


def local_texts(repo_dir: Path, files: list[str]) -> list[str]:
    return [
        t for f in files for t in pq.read_table(repo_dir / f, columns=["text"])["text"].to_pylist()
    ]


def test_config_data_files(hub: FakeHub) -> None:
    assert config_data_files(REPO, "sample-10BT") == SAMPLE
    assert config_data_files(REPO, "CC-MAIN-2024-10") == [DUMP]
    assert config_data_files(REPO, "default") == [DUMP]
    assert config_data_files(REPO, "second-half") == SAMPLE[1:]


def test_tree_pagination(hub: FakeHub) -> None:
    hub.page_size = 1  # every listing spans pages, followed through the Link header
    assert config_data_files(REPO, "sample-10BT") == SAMPLE
    assert any("cursor=" in s.path for s in hub.log)


def test_unknown_config_lists_the_configs(hub: FakeHub) -> None:
    with pytest.raises(ValueError, match="sample-100BT") as err:
        config_data_files(REPO, "sample-100BT")
    assert REPO in str(err.value)
    assert "sample-10BT" in str(err.value) and "CC-MAIN-2024-10" in str(err.value)


@pytest.mark.parametrize("n", [1, 45, 450, 600, 5000])
def test_first_n_docs_match_local_read(hub: FakeHub, repo_dir: Path, n: int) -> None:
    texts = list(iter_hub_texts(REPO, "sample-10BT", max_docs=n))
    assert texts == local_texts(repo_dir, SAMPLE)[:n]  # 5000: all 600 there are
    if n <= 300:
        assert hub.gets(SAMPLE[1]) == []  # the second file is not even opened


def test_small_n_fetches_only_part_of_the_file(hub: FakeHub, repo_dir: Path) -> None:
    assert len(list(iter_hub_texts(REPO, "sample-10BT", max_docs=5))) == 5
    size = (repo_dir / SAMPLE[0]).stat().st_size
    gets = hub.gets(SAMPLE[0])
    assert all(g.status == 206 for g in gets), "every read of the parquet file is a range read"
    assert len(gets) == 2  # the footer, then the text column of the first row group
    assert hub.bytes_served(SAMPLE[0]) < size / 3


@pytest.mark.parametrize("after", [0, 3], ids=["footer", "third-row-group"])
def test_a_dropped_connection_is_resumed(hub: FakeHub, repo_dir: Path, after: int) -> None:
    hub.drop(SAMPLE[0], times=1, after=after)  # after=3: 80 documents are out when it drops
    texts = list(iter_hub_texts(REPO, "sample-10BT", max_docs=450, backoff=0.01))
    assert texts == local_texts(repo_dir, SAMPLE)[:450]
    assert sum(g.dropped for g in hub.gets(SAMPLE[0])) == 1
    # The resumed read skips row groups already yielded: nothing but the footer is fetched twice.
    column_chunks = [g.range for g in hub.gets(SAMPLE[0]) if not g.dropped]
    assert len(column_chunks) - len(set(column_chunks)) == (1 if after else 0)


def test_a_connection_that_always_drops_gives_up(hub: FakeHub) -> None:
    hub.drop(SAMPLE[0], times=None)
    start = time.monotonic()
    with pytest.raises(ConnectionError, match=r"000_00000\.parquet.*failed 3 times") as err:
        list(iter_hub_texts(REPO, "sample-10BT", max_docs=10, retries=2, backoff=0.01))
    assert time.monotonic() - start < 5
    assert len(hub.gets(SAMPLE[0])) == 3
    assert REPO in str(err.value)


def test_missing_repo_is_file_not_found(hub: FakeHub) -> None:
    with pytest.raises(FileNotFoundError, match="nobody/nothing"):
        list(iter_hub_texts("nobody/nothing", "sample-10BT", max_docs=5))
    with pytest.raises(FileNotFoundError, match="nobody/nothing"):
        config_data_files("nobody/nothing", "sample-10BT")


def test_missing_column_names_the_columns(hub: FakeHub) -> None:
    with pytest.raises(ValueError, match="'content'") as err:
        next(iter_hub_texts(REPO, "sample-10BT", max_docs=5, text_column="content"))
    assert "'text'" in str(err.value) and "'url'" in str(err.value)


def test_hub_reachable(hub: FakeHub) -> None:
    assert hub_reachable(hub.url)
    assert hub_reachable()  # from HF_ENDPOINT
    start = time.monotonic()
    assert not hub_reachable("http://127.0.0.1:9", timeout=2.0)  # nothing listens on port 9
    assert time.monotonic() - start < 3


def test_unreachable_hub_says_how_to_go_on(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    start = time.monotonic()
    with pytest.raises(HubUnreachable, match=r"127\.0\.0\.1:9") as err:
        list(iter_hub_texts(REPO, "sample-10BT", max_docs=5))
    assert time.monotonic() - start < 3
    assert "data.source: local" in str(err.value) and "data.local" in str(err.value)


def test_the_loopback_hub_serves_hf_hub_download(
    hub: FakeHub, repo_dir: Path, tmp_path: Path
) -> None:
    # The server speaks enough of the Hub for the ordinary download path too (HEAD, then GET).
    path = hf_hub_download(
        REPO, SAMPLE[1], repo_type="dataset", cache_dir=tmp_path / "cache", endpoint=hub.url
    )
    assert Path(path).read_bytes() == (repo_dir / SAMPLE[1]).read_bytes()
    assert [s.method for s in hub.log] == ["HEAD", "GET"]


def test_a_cached_read_makes_no_request_for_the_files(
    hub: FakeHub, repo_dir: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    first = list(iter_hub_texts(REPO, "sample-10BT", max_docs=450, cache_dir=cache))
    assert first == local_texts(repo_dir, SAMPLE)[:450]
    # Keyed by the commit `main` pointed to; 450 docs = all 8 groups of file 0, 4 of file 1.
    groups = cache / REPO / COMMIT / SAMPLE[0]
    assert sorted(p.name for p in groups.iterdir()) == [
        *(f"rg{i:05d}.parquet" for i in range(8)),
        "row_groups.json",
    ]
    assert len(list((cache / REPO / COMMIT / SAMPLE[1]).glob("rg*.parquet"))) == 4
    assert pq.read_table(groups / "rg00000.parquet").column_names == ["text"]
    hub.log.clear()
    assert list(iter_hub_texts(REPO, "sample-10BT", max_docs=450, cache_dir=cache)) == first
    assert hub.gets(SAMPLE[0]) == [] and hub.gets(SAMPLE[1]) == []  # not even the footers


def test_an_interrupted_read_fetches_only_the_missing_groups(
    hub: FakeHub, repo_dir: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(RuntimeError, match="killed"):
        for i, _ in enumerate(iter_hub_texts(REPO, "sample-10BT", max_docs=450, cache_dir=cache)):
            if i == 99:  # mid-way through row group 2 of file 0
                raise RuntimeError("killed")
    before = [g.range for g in hub.gets(SAMPLE[0])]
    assert len(before) == 4  # the footer, then groups 0, 1, 2
    hub.log.clear()
    texts = list(iter_hub_texts(REPO, "sample-10BT", max_docs=450, cache_dir=cache))
    assert texts == local_texts(repo_dir, SAMPLE)[:450]
    after = [g.range for g in hub.gets(SAMPLE[0])]
    assert set(before) & set(after) == {before[0]}  # only the footer is fetched again
    assert len(after) == 1 + 5  # the footer, then groups 3..7


def test_a_cache_for_a_missing_repo_names_it(hub: FakeHub, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nobody/nothing"):
        next(iter_hub_texts("nobody/nothing", "sample-10BT", max_docs=5, cache_dir=tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_the_data_stage_reads_the_hub_like_local_files(
    hub: FakeHub, repo_dir: Path, tmp_path: Path
) -> None:
    from speedlab.data.documents import prepare_corpus

    def split(data: dict, out: Path) -> tuple[list[str], list[str], dict]:
        out.mkdir()
        record = prepare_corpus(data, out / "train.parquet", out / "val.parquet", out / "s.json")
        read = [pq.read_table(out / f"{s}.parquet")["text"].to_pylist() for s in ("train", "val")]
        return read[0], read[1], record

    common = {"max_docs": 450, "val_docs": 50}
    cache = tmp_path / "cache"
    hf = {"source": "hf", "hf": {"repo": REPO, "name": "sample-10BT", "cache_dir": str(cache)}}
    local = {"source": "local", "local": [str(repo_dir / f) for f in SAMPLE]}
    h_train, h_val, record = split(data_config(**hf, **common), tmp_path / "hf")
    l_train, l_val, _ = split(data_config(**local, **common), tmp_path / "local")
    assert (h_train, h_val) == (l_train, l_val) and len(h_train) == 400
    assert record["source"] == "hf" and record["name"] == "sample-10BT"
    assert list(cache.rglob("rg*.parquet"))  # row groups kept for the next read
