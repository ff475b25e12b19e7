"""A loopback stand-in for the Hugging Face Hub, enough for HfFileSystem and hf_hub_download.

It serves dataset and model repos snapshotted from local directories and answers the requests that
huggingface_hub 2.4.0 makes (found by logging them): repo info, tree listing (cursor pagination
announced in a Link header, as the Hub does), paths-info, and file resolve (HEAD with the headers
hf_hub_download checks, GET with Range). Every request is logged with the bytes sent, so a test
can tell how much of a file was fetched; requests it does not know land in `unhandled`.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit


def point_client_at(server: FakeHub, tmp_path: Path, monkeypatch) -> None:
    """Send this test's huggingface_hub to the loopback hub, with its own cache under tmp_path,
    no telemetry, no offline mode and no stored token. huggingface_hub reads these at import
    (without telemetry off it would fetch an agent registry from huggingface.co, and a stored
    token would be sent to the server), so its constants are set as well as the environment."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no_token"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_home" / "hub"))


COMMIT = "0123456789abcdef0123456789abcdef01234567"
_DATE = "2024-05-01T00:00:00.000Z"
_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")
_API = re.compile(
    r"/api/(datasets|models)/([^/]+/[^/]+)(?:/(revision|tree|paths-info)/([^/]+)(?:/(.*))?)?$"
)
_RESOLVE = re.compile(r"/(datasets/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")  # no prefix: a model


@dataclass
class Served:
    method: str
    path: str  # as requested, query string included
    range: str | None
    status: int
    nbytes: int  # body bytes written
    dropped: bool = False


class FakeHub:
    """Serve repos over HTTP on 127.0.0.1; use as a context manager or start()/stop()."""

    def __init__(self, page_size: int = 1000):
        self.page_size = page_size  # tree entries per page; the Hub's is 1000 (50 with expand)
        self.repos: dict[str, dict[str, bytes]] = {}  # dataset repos
        self.models: dict[str, dict[str, bytes]] = {}  # model repos
        self.log: list[Served] = []
        self.unhandled: list[str] = []
        self._drops: dict[str, list[int | None]] = {}  # path -> [GETs to let through, to cut]
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"hub": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add_dataset(self, repo_id: str, root: Path) -> None:
        """Serve the files under `root` (read now) as dataset repo `repo_id`."""
        self.repos[repo_id] = _snapshot(root)

    def add_model(self, repo_id: str, root: Path) -> None:
        """Serve the files under `root` (read now) as model repo `repo_id`."""
        self.models[repo_id] = _snapshot(root)

    def drop(self, path_in_repo: str, times: int | None = 1, after: int = 0) -> None:
        """Cut the connection mid-body on GETs of a file: `times` of them (None: all) from the
        `after`-th on (0-based), so a test can fail the footer read or a later row group."""
        with self._lock:
            self._drops[path_in_repo] = [after, times]

    def bytes_served(self, path_in_repo: str) -> int:
        """Body bytes sent by GETs of one file, dropped ones included."""
        suffix = "/" + path_in_repo
        with self._lock:
            return sum(s.nbytes for s in self.log if s.method == "GET" and s.path.endswith(suffix))

    def gets(self, path_in_repo: str) -> list[Served]:
        suffix = "/" + path_in_repo
        with self._lock:
            return [s for s in self.log if s.method == "GET" and s.path.endswith(suffix)]

    def _record(self, served: Served) -> None:
        with self._lock:
            self.log.append(served)

    def _should_drop(self, path_in_repo: str) -> bool:
        with self._lock:
            state = self._drops.get(path_in_repo)
            if state is None:
                return False
            if state[0]:
                state[0] -= 1
                return False
            if state[1] is None:
                return True
            state[1] -= 1
            return state[1] >= 0


def _snapshot(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in Path(root).rglob("*") if p.is_file())
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in files}


def _etag(path: str, data: bytes) -> str:
    # The Hub's ETag is the sha256 for LFS files (parquet here), the git blob id otherwise.
    return hashlib.sha256(data).hexdigest() if path.endswith(".parquet") else _git_oid(data)


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _entry(path: str, data: bytes | None, expand: bool) -> dict:
    """A tree / paths-info entry as the Hub's JSON spells it."""
    if data is None:
        entry = {"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "path": path}
    else:
        entry = {"type": "file", "oid": _git_oid(data), "size": len(data), "path": path}
        if path.endswith(".parquet"):
            entry["lfs"] = {"oid": _etag(path, data), "size": len(data), "pointerSize": 134}
    if expand:
        entry["lastCommit"] = {"id": COMMIT, "title": "Upload", "date": _DATE}
    return entry


def _dirs(files: dict[str, bytes]) -> set[str]:
    return {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive like the Hub; every reply has a Content-Length
    disable_nagle_algorithm = True  # else each reply waits ~40 ms on a delayed ACK
    hub: FakeHub

    def log_message(self, format: str, *args: object) -> None:
        pass  # the hub's own log is enough; keep pytest output clean

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        self._dispatch()

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        self._query = parse_qs(url.query)
        path = unquote(url.path)
        if path in ("", "/"):  # hub_reachable() probes the root
            return self._send(200, b"loopback hub\n", {"Content-Type": "text/plain"})
        if m := _RESOLVE.match(path):
            self._kind = "datasets" if m.group(1) else "models"
            return self._resolve(*m.groups()[1:])
        if m := _API.match(path):
            self._kind = m.group(1)
            return self._api(*m.groups()[1:])
        self._unhandled()

    def _unhandled(self) -> None:
        self.hub.unhandled.append(f"{self.command} {self.path}")
        self._send(404, b"unknown route", {"Content-Type": "text/plain"})

    def _repo(self, repo_id: str, rev: str | None) -> dict[str, bytes] | None:
        """The repo's files, or None after answering 404 the way the Hub does."""
        repos = self.hub.repos if self._kind == "datasets" else self.hub.models
        if repo_id not in repos:
            self._error(404, "RepoNotFound", "Repository not found")
            return None
        if rev not in (None, "main", COMMIT):
            self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            return None
        return repos[repo_id]

    def _api(self, repo_id: str, kind: str | None, rev: str | None, rest: str | None) -> None:
        files = self._repo(repo_id, rev)
        if files is None:
            return
        if kind in (None, "revision") and self.command == "GET":
            info = {"id": repo_id, "sha": COMMIT, "private": False, "disabled": False}
            siblings = [{"rfilename": p} for p in sorted(files)]
            return self._json(info | {"lastModified": _DATE, "tags": [], "siblings": siblings})
        if kind == "tree" and self.command == "GET":
            return self._tree(repo_id, rev, files, (rest or "").strip("/"))
        if kind == "paths-info" and self.command == "POST":
            form = parse_qs(self._body)  # sent form-encoded: paths=a&paths=b&expand=false
            expand = form.get("expand", ["false"])[0].lower() == "true"
            known = set(files) | _dirs(files)
            wanted = [p for p in form.get("paths", []) if p in known]
            return self._json([_entry(p, files.get(p), expand) for p in wanted])
        self._unhandled()

    def _tree(self, repo_id: str, rev: str, files: dict[str, bytes], root: str) -> None:
        recursive = self._query.get("recursive", ["false"])[0].lower() == "true"
        expand = self._query.get("expand", ["false"])[0].lower() == "true"
        dirs = _dirs(files)
        if root and root not in dirs:
            return self._error(404, "EntryNotFound", f"{root} does not exist on {rev}")
        prefix = root + "/" if root else ""
        paths = sorted(p for p in dirs | set(files) if p.startswith(prefix))
        if not recursive:
            paths = [p for p in paths if "/" not in p[len(prefix) :]]
        start = int(self._query.get("cursor", ["0"])[0])
        page = paths[start : start + self.hub.page_size]
        headers = {}
        if start + len(page) < len(paths):  # more to come: a cursor link, as the Hub sends
            url = f"{self.hub.url}/api/{self._kind}/{repo_id}/tree/{rev}" + (
                f"/{quote(root)}" if root else ""
            )
            query = f"recursive={str(recursive).lower()}&expand={str(expand).lower()}"
            headers["Link"] = f'<{url}?{query}&cursor={start + len(page)}>; rel="next"'
        self._json([_entry(p, files.get(p), expand) for p in page], headers)

    def _resolve(self, repo_id: str, rev: str, path_in_repo: str) -> None:
        files = self._repo(repo_id, rev)
        if files is None:
            return
        if path_in_repo not in files:
            return self._error(404, "EntryNotFound", f"{path_in_repo} does not exist on {rev}")
        data = files[path_in_repo]
        # hf_hub_download needs X-Repo-Commit and ETag; Content-Length gives it the size.
        headers = {
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
            "ETag": f'"{_etag(path_in_repo, data)}"',
            "X-Repo-Commit": COMMIT,
        }
        start, end, status = 0, len(data), 200
        if rng := self.headers.get("Range"):
            m = _RANGE.match(rng.strip())
            if m and m.group(1):
                start = int(m.group(1))
                end = min(len(data), int(m.group(2)) + 1) if m.group(2) else len(data)
            elif m and m.group(2):  # suffix range: the last N bytes
                start = max(0, len(data) - int(m.group(2)))
            if m is None or start >= end:
                return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
        drop = self.command == "GET" and self.hub._should_drop(path_in_repo)
        self._send(status, data[start:end], headers, drop=drop)

    def _error(self, status: int, code: str, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Error-Code": code,
            "X-Error-Message": message,
        }
        self._send(status, body, headers)

    def _json(self, obj: object, headers: dict[str, str] | None = None) -> None:
        self._send(
            200, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})}
        )

    def _send(self, status: int, body: bytes, headers: dict[str, str], drop: bool = False) -> None:
        """Reply; with `drop`, promise the whole body but send half and cut the connection."""
        sent = b"" if self.command == "HEAD" else body[: len(body) // 2] if drop else body
        # Logged before replying: the client may have its answer before this thread runs on.
        rng = self.headers.get("Range")
        self.hub._record(Served(self.command, self.path, rng, status, len(sent), drop))
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(sent)
        if drop:
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
