"""Read the first documents of a Hugging Face dataset by range requests, not whole downloads.

FineWeb's parquet files are ~2 GB each; a study needs a few thousand documents. Through
HfFileSystem, pyarrow fetches a file's footer and then one text column chunk per row group, so
reading N documents costs about N documents' worth of bytes.

With a cache directory, every fetched row group's text column is also kept on disk, keyed by the
commit it came from, so a rerun (after a crash, or by another rule) fetches only what is missing:

    <cache_dir>/<repo>/<commit sha>/<file path>/row_groups.json   rows per group, column names
    <cache_dir>/<repo>/<commit sha>/<file path>/rg00000.parquet   one row group's text column
"""

import json
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from huggingface_hub import HfApi, HfFileSystem, constants, get_session, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_file_system import HfFileSystemFile
from huggingface_hub.utils import build_hf_headers, hf_raise_for_status

from speedlab.files import atomic_path

_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*(\n|\Z)", re.DOTALL)


class HubUnreachable(RuntimeError):
    """The hub did not answer at all (DNS failure, connection refused, timeout)."""


def _unreachable(endpoint: str, repo: str, cause: BaseException) -> HubUnreachable:
    return HubUnreachable(
        f"cannot reach the Hugging Face hub at {endpoint} to read dataset {repo} ({cause}). "
        "Run with network access, or read local files instead: set `data.source: local` with "
        "`data.local: <glob>`."
    )


def hub_endpoint() -> str:
    """The hub's URL: HF_ENDPOINT as it is now (huggingface_hub reads it once, at import)."""
    return os.environ.get("HF_ENDPOINT", constants.ENDPOINT).rstrip("/")


def _fs(endpoint: str) -> HfFileSystem:
    # A cached instance would keep the endpoint and listings of an earlier call.
    return HfFileSystem(endpoint=endpoint, skip_instance_cache=True)


def hub_reachable(endpoint: str | None = None, timeout: float = 5.0) -> bool:
    """Whether the hub answers one short HTTP request (any status counts), within `timeout` s."""
    url = (endpoint or hub_endpoint()).rstrip("/") + "/"
    answers: list[bool] = []
    done = threading.Event()

    def probe() -> None:
        try:
            get_session().head(url, timeout=timeout)
            answers.append(True)  # any HTTP status: something answered
        except Exception:  # refused, unresolvable, timed out, offline mode: no answer
            pass
        finally:
            done.set()

    # Name resolution ignores socket timeouts, so bound the wait itself.
    threading.Thread(target=probe, daemon=True).start()
    done.wait(timeout)
    return bool(answers)


def _train_globs(data_files: object) -> list[str]:
    # A card's data_files is a glob, a list of globs, or a list of {split, path} (path: glob(s)).
    entries = data_files if isinstance(data_files, list) else [data_files]
    splits = [e if isinstance(e, dict) else {"split": "train", "path": e} for e in entries]
    paths = [s["path"] for s in splits if s.get("split", "train") == "train"]
    return [glob for p in paths for glob in ([p] if isinstance(p, str) else p)]


def config_data_files(repo: str, config_name: str, revision: str = "main") -> list[str]:
    """Sorted repo paths of the train parquet files of `config_name`, per the dataset card."""
    endpoint = hub_endpoint()
    return _data_files(_fs(endpoint), endpoint, repo, config_name, revision)


def _data_files(
    fs: HfFileSystem, endpoint: str, repo: str, config_name: str, revision: str
) -> list[str]:
    root = f"datasets/{repo}@{revision}"
    try:
        with fs.open(f"{root}/README.md", "rb") as f:
            card = f.read().decode("utf-8")
        match = _FRONT_MATTER.match(card)
        configs = (yaml.safe_load(match.group(1)) or {}).get("configs", []) if match else []
        by_name = {c.get("config_name"): c for c in configs}
        if config_name not in by_name:
            raise ValueError(
                f"dataset {repo!r} has no config {config_name!r}; "
                f"its card lists: {sorted(map(str, by_name))}"
            )
        globs = _train_globs(by_name[config_name].get("data_files"))
        paths = {p for pattern in globs for p in fs.glob(f"{root}/{pattern}")}
    except FileNotFoundError as err:
        raise FileNotFoundError(f"dataset {repo!r}@{revision} on {endpoint}: {err}") from err
    except (httpx2.ConnectError, httpx2.TimeoutException) as err:
        raise _unreachable(endpoint, repo, err) from err
    return sorted(p[len(root) + 1 :] for p in paths if p.endswith(".parquet"))


class _RangeFile(HfFileSystemFile):
    # HfFileSystemFile retries each range request itself, sleeping up to 23 s in all before it
    # gives up; fail at once instead so iter_hub_texts' own retry (and backoff) is the only one.
    def _fetch_range(self, start: int, end: int) -> bytes:
        headers = {"range": f"bytes={start}-{end - 1}", **build_hf_headers(token=self.fs.token)}
        response = get_session().get(
            self.url(), headers=headers, timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT
        )
        hf_raise_for_status(response)
        return response.content


class _RemoteParquet:
    """One parquet file on the hub, opened (and its footer fetched) only when first needed, so a
    read served wholly from the cache makes no request for the file at all."""

    def __init__(self, fs: HfFileSystem, path: str):
        self.fs, self.path = fs, path
        self._file: _RangeFile | None = None
        self._pf: pq.ParquetFile | None = None

    @property
    def pf(self) -> pq.ParquetFile:
        if self._pf is None:
            # cache "none": one request per pyarrow read, with no read-ahead past what was asked.
            self._file = _RangeFile(self.fs, self.path, mode="rb", cache_type="none")
            # pre_buffer would coalesce the column of all row groups into one request.
            self._pf = pq.ParquetFile(self._file, pre_buffer=False)
        return self._pf

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def _write_atomic(path: Path, write) -> None:
    with atomic_path(path) as tmp:
        write(tmp)


def _layout(remote: _RemoteParquet, cache: Path | None) -> dict:
    """Rows per row group and column names: from the cache, else from the footer (then cached)."""
    meta = cache / "row_groups.json" if cache else None
    if meta is not None and meta.exists():
        return json.loads(meta.read_text())
    pf = remote.pf
    layout = {
        "rows": [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)],
        "columns": pf.schema_arrow.names,
    }
    if meta is not None:
        _write_atomic(meta, lambda tmp: tmp.write_text(json.dumps(layout)))
    return layout


def _group_texts(
    remote: _RemoteParquet, group: int, rows: int, column: str, cache: Path | None
) -> list[str]:
    """One row group's texts, from the cache if it holds them, else fetched (then cached)."""
    cached = cache / f"rg{group:05d}.parquet" if cache else None
    if cached is not None and cached.exists():
        try:
            table = pq.read_table(cached)
            if column in table.column_names and table.num_rows == rows:
                return table[column].to_pylist()
        except pa.ArrowInvalid:
            pass  # unreadable (written by something else?): fetch it again
    table = remote.pf.read_row_group(group, columns=[column])
    if cached is not None:
        # Cached before any text is yielded, so a consumer that dies mid-group keeps it too.
        _write_atomic(cached, lambda tmp: pq.write_table(table, tmp))
    return table.column(0).to_pylist()


def _file_texts(
    fs: HfFileSystem, root: str, path: str, column: str, skip: int, cache: Path | None
) -> Iterator[str]:
    """The texts of one parquet file from row `skip` on, fetching only the row groups needed."""
    remote = _RemoteParquet(fs, f"{root}/{path}")
    try:
        layout = _layout(remote, cache)
        if column not in layout["columns"]:
            raise ValueError(f"{root}/{path} has no column {column!r}; it has {layout['columns']}")
        rows = layout["rows"]
        first = 0
        while first < len(rows) and skip >= rows[first]:
            skip -= rows[first]
            first += 1
        for group in range(first, len(rows)):
            # One row group at a time, so nothing past the last needed group is fetched.
            texts = _group_texts(remote, group, rows[group], column, cache)
            yield from texts[skip:]
            skip = 0
    finally:
        remote.close()


def _resolve_commit(endpoint: str, repo: str, revision: str) -> str:
    """The commit sha `revision` points to now: cached row groups of `main` must not outlive it."""
    if re.fullmatch(r"[0-9a-f]{40}", revision):
        return revision
    try:
        sha = HfApi(endpoint=endpoint).dataset_info(repo, revision=revision).sha
    except (RepositoryNotFoundError, RevisionNotFoundError) as err:
        raise FileNotFoundError(f"dataset {repo!r}@{revision} on {endpoint}: {err}") from err
    except (httpx2.ConnectError, httpx2.TimeoutException) as err:
        raise _unreachable(endpoint, repo, err) from err
    return sha or revision


def _transient(err: BaseException) -> bool:
    if isinstance(err, HfHubHTTPError):
        return err.response.status_code in (408, 429, 500, 502, 503, 504)
    return isinstance(err, httpx2.TransportError)  # refused, reset, cut short, timed out


def _retry_or_raise(
    err: Exception, failures: int, retries: int, endpoint: str, repo: str, path: str
) -> None:
    """Return when a read that failed `failures` times in a row may be retried; else raise."""
    if not _transient(err):
        raise err
    if failures > retries:
        if isinstance(err, (httpx2.ConnectError, httpx2.TimeoutException)):
            raise _unreachable(endpoint, repo, err) from err
        raise ConnectionError(
            f"reading {path} of dataset {repo!r} from {endpoint} failed {failures} times in a "
            f"row; last error: {err!r}"
        ) from err


def iter_hub_texts(
    repo: str,
    config_name: str,
    max_docs: int,
    text_column: str = "text",
    revision: str = "main",
    retries: int = 4,
    backoff: float = 1.0,
    cache_dir: str | Path | None = None,
) -> Iterator[str]:
    """Yield the first `max_docs` texts of the config's train files, in file and row order.

    Dropped connections, timeouts and 5xx answers are retried up to `retries` times in a row
    (after `backoff` seconds, doubling each time), resuming after the last document yielded, so
    none is yielded twice.

    With `cache_dir`, `revision` is pinned to its commit sha first (one request) and every row
    group read is kept under `cache_dir/<repo>/<sha>/<file path>/`; a later call reads what is
    there from disk, so an interrupted read resumes where it stopped.
    """
    endpoint = hub_endpoint()
    if cache_dir is not None:
        revision = _resolve_commit(endpoint, repo, revision)
    fs, root = _fs(endpoint), f"datasets/{repo}@{revision}"
    files = _data_files(fs, endpoint, repo, config_name, revision)
    cache_root = Path(cache_dir, repo, revision) if cache_dir is not None else None
    done, index, skip, failures = 0, 0, 0, 0
    while done < max_docs and index < len(files):
        try:
            cache = cache_root / files[index] if cache_root else None
            for text in _file_texts(fs, root, files[index], text_column, skip, cache):
                yield text
                done, skip, failures = done + 1, skip + 1, 0
                if done >= max_docs:
                    return
            index, skip = index + 1, 0
        except (FileNotFoundError, EntryNotFoundError, RepositoryNotFoundError) as err:
            raise FileNotFoundError(f"dataset {repo!r}: {files[index]} not found ({err})") from err
        except Exception as err:
            failures += 1
            _retry_or_raise(err, failures, retries, endpoint, repo, files[index])
            time.sleep(backoff * 2 ** (failures - 1))


def download_file(repo: str, path: str, revision: str = "main") -> Path:
    """One whole file of dataset `repo` at the commit `revision` points to now, downloaded by
    hf_hub_download into the Hugging Face cache (for small files, such as an eval set).

    Without an answering hub (offline mode included) the copy an earlier download left in the
    cache is used; with none there, HubUnreachable names the file. A missing repo, revision or
    file is a FileNotFoundError naming it.
    """
    endpoint = hub_endpoint()
    try:  # one quick request: hf_hub_download itself retries an unreachable hub for ~20 s
        _resolve_commit(endpoint, repo, revision)
    except (HubUnreachable, OfflineModeIsEnabled) as err:
        try:
            local = hf_hub_download(
                repo, path, repo_type="dataset", revision=revision, local_files_only=True
            )
        except LocalEntryNotFoundError:
            raise HubUnreachable(
                f"cannot reach the Hugging Face hub at {endpoint} to download {path} of dataset "
                f"{repo}, and no earlier download of it is in the Hugging Face cache "
                f"({err.__cause__ or err}). Run once with network access (or set HF_ENDPOINT to "
                "a hub mirror) to fetch it."
            ) from err
        return Path(local)
    try:
        # By the revision's name, so the cache maps it to the commit (for a later offline read).
        local = hf_hub_download(
            repo, path, repo_type="dataset", revision=revision, endpoint=endpoint
        )
    except LocalEntryNotFoundError as err:  # the hub stopped answering mid-way
        message = f"downloading {path} of dataset {repo} from {endpoint}: {err}"
        raise HubUnreachable(message) from err
    except (EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError) as err:
        raise FileNotFoundError(
            f"dataset {repo!r}@{revision} on {endpoint} has no file {path} ({err})"
        ) from err
    return Path(local)
