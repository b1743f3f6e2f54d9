"""A small fake Hugging Face Hub for tests: real HTTP on 127.0.0.1, spoken to by the real huggingface_hub.

It implements the part of the Hub's wire format that ``HfApi.dataset_info``, ``HfApi.list_repo_tree`` and
``hf_hub_download`` use (as read from huggingface_hub 2.4's source):

* ``GET /api/datasets/{owner}/{name}[/revision/{rev}]`` -> repo info JSON with the commit ``sha``.
* ``GET /api/datasets/{owner}/{name}/tree/{rev}[/{path}]?recursive=&expand=&cursor=`` -> a JSON page of
  ``{"type": "file"|"directory", "oid", "size", "path", "lfs": {"oid", "size", "pointerSize"}}`` entries,
  paginated with a ``Link: <...>; rel="next"`` header.
* ``HEAD|GET /datasets/{owner}/{name}/resolve/{rev}/{path}``:
  - LFS files: ``302`` to a separate "CDN" server (another port, so the client treats it as a foreign host
    and stops there, like with the real CDN) with ``X-Repo-Commit``, ``ETag`` (pointer oid),
    ``X-Linked-Etag`` (sha256) and ``X-Linked-Size``;
  - plain git files: ``200`` with ``X-Repo-Commit``, ``ETag`` (git blob oid) and the content.
* ``HEAD|GET /cdn/{owner}/{name}/{sha256}`` on the CDN server: the bytes, with ``Range`` support (``206`` +
  ``Content-Range``) so interrupted downloads can resume.
* Errors carry ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``, ``GatedRepo``) as
  the Hub does, which huggingface_hub maps to its exception classes.

No xet headers (``X-Xet-Hash``, ``Link: rel="xet-auth"``) are ever sent, so the client takes its plain HTTP
download path. Faults can be injected per file name: 503 answers, a connection cut halfway through a
download, or served bytes that do not match the listed sha256. Every request is logged.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

__all__ = ["FakeHub", "HubFile", "LoggedRequest", "closed_port_endpoint"]


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class HubFile:
    """A file in a fake repo. LFS files are described by their pointer in git, like on the Hub."""

    path: str
    data: bytes
    lfs: bool = True

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def pointer(self) -> bytes:
        return (
            f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {len(self.data)}\n"
        ).encode()

    @property
    def oid(self) -> str:
        return _git_oid(self.pointer if self.lfs else self.data)

    def tree_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "file", "oid": self.oid, "size": len(self.data), "path": self.path}
        if self.lfs:
            entry["lfs"] = {"oid": self.sha256, "size": len(self.data), "pointerSize": len(self.pointer)}
        return entry


@dataclass
class Checkout:
    repo_id: str
    commit: str
    files: dict[str, HubFile] = field(default_factory=dict)
    gated: bool = False


@dataclass(frozen=True)
class LoggedRequest:
    server: str  # "hub" or "cdn"
    method: str
    path: str  # URL path, unquoted
    status: int
    filename: str | None  # repo file concerned, for resolve/cdn requests
    range: str | None  # Range header sent by the client


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, hub: FakeHub, role: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hub = hub
        self.role = role

    def handle_error(self, request: Any, client_address: Any) -> None:  # quiet on client disconnects
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence the default stderr log
        pass

    def do_GET(self) -> None:  # noqa: N802
        self.server.hub._dispatch(self, "GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self.server.hub._dispatch(self, "HEAD")


_INFO = re.compile(r"^/api/datasets/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<rev>[^/]+))?$")
_TREE = re.compile(r"^/api/datasets/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$")
_RESOLVE = re.compile(r"^/datasets/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_CDN = re.compile(r"^/cdn/(?P<repo>[^/]+/[^/]+)/(?P<sha>[0-9a-f]{64})$")


class FakeHub:
    """The fake Hub: ``start()`` it (or use it as a context manager) and point ``endpoint`` at it.

    Fault injection, all keyed by the file's path in the repo and counting down per request:
    ``fail_requests`` answers any resolve/CDN request with 503; ``fail_downloads`` answers content GETs
    with 503; ``cut_downloads`` sends ``cut_fraction`` of a full content GET's body, then closes the
    connection.
    ``corrupt`` holds paths whose served bytes differ from the listed sha256 (same size).
    """

    def __init__(self, *, page_size: int = 1000) -> None:
        self.page_size = page_size
        self.repos: dict[str, Checkout] = {}
        self.log: list[LoggedRequest] = []
        self.fail_requests: dict[str, int] = {}
        self.fail_downloads: dict[str, int] = {}
        self.cut_downloads: dict[str, int] = {}
        self.corrupt: set[str] = set()
        #: where a cut download stops, as a fraction of the body
        self.cut_fraction = 0.5
        self._lock = threading.Lock()
        self._servers: list[_Server] = []
        self._threads: list[threading.Thread] = []

    # -- setup ------------------------------------------------------------------------------------

    def add_dataset(
        self, repo_id: str, files: dict[str, bytes], *, lfs: bool = True, gated: bool = False
    ) -> str:
        """Create (or replace) a dataset repo with ``files``; returns its commit sha."""
        digest = hashlib.sha1(repo_id.encode())
        for path in sorted(files):
            digest.update(path.encode() + b"\0" + hashlib.sha256(files[path]).digest())
        repo = Checkout(repo_id=repo_id, commit=digest.hexdigest(), gated=gated)
        repo.files = {path: HubFile(path, data, lfs=lfs) for path, data in files.items()}
        self.repos[repo_id] = repo
        return repo.commit

    def start(self) -> FakeHub:
        for role in ("hub", "cdn"):
            server = _Server(self, role)
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers.clear()
        self._threads.clear()

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._servers[0].server_address[1]}"

    @property
    def cdn(self) -> str:
        return f"http://127.0.0.1:{self._servers[1].server_address[1]}"

    # -- inspection -------------------------------------------------------------------------------

    def requests(
        self, *, method: str | None = None, filename: str | None = None, kind: str | None = None
    ) -> list[LoggedRequest]:
        """Logged requests, filtered; ``kind`` is "info", "tree", "resolve" or "cdn"."""
        with self._lock:
            items = list(self.log)
        out = []
        for r in items:
            if method is not None and r.method != method:
                continue
            if filename is not None and r.filename != filename:
                continue
            if kind is not None and _kind(r) != kind:
                continue
            out.append(r)
        return out

    def file_gets(self, filename: str | None = None) -> list[LoggedRequest]:
        """GET requests for file contents (resolve or CDN URLs), whatever their answer."""
        return [r for r in self.requests(method="GET", filename=filename) if _kind(r) in ("resolve", "cdn")]

    def clear_log(self) -> None:
        with self._lock:
            self.log.clear()

    # -- request handling -------------------------------------------------------------------------

    def _take(self, counter: dict[str, int], filename: str) -> bool:
        with self._lock:
            left = counter.get(filename, 0)
            if left > 0:
                counter[filename] = left - 1
                return True
            return False

    def _dispatch(self, h: _Handler, method: str) -> None:
        split = urlsplit(h.path)
        path = split.path
        query = parse_qs(split.query)
        role = h.server.role
        filename: str | None = None
        status = 500
        try:
            if role == "hub" and (m := _TREE.match(path)):
                status = self._tree(h, method, m["repo"], unquote(m["rev"]), unquote(m["path"] or ""), query)
            elif role == "hub" and (m := _INFO.match(path)):
                status = self._info(h, method, m["repo"], unquote(m["rev"]) if m["rev"] else None)
            elif role == "hub" and (m := _RESOLVE.match(path)):
                filename = unquote(m["path"])
                status = self._resolve(h, method, m["repo"], unquote(m["rev"]), filename)
            elif role == "cdn" and (m := _CDN.match(path)):
                repo = self.repos.get(m["repo"])
                hit = [f for f in repo.files.values() if f.sha256 == m["sha"]] if repo else []
                filename = hit[0].path if hit else None
                status = self._cdn(h, method, hit[0] if hit else None)
            else:
                status = self._error(h, method, 404, None, "Not Found")
        finally:
            with self._lock:
                self.log.append(
                    LoggedRequest(role, method, unquote(path), status, filename, h.headers.get("Range"))
                )

    def _send(
        self, h: _Handler, method: str, status: int, body: bytes, headers: dict[str, str] | None = None
    ) -> int:
        h.send_response(status)
        for key, value in (headers or {}).items():
            h.send_header(key, value)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if method != "HEAD" and body:
            h.wfile.write(body)
        return status

    def _json(self, h: _Handler, method: str, payload: Any, headers: dict[str, str] | None = None) -> int:
        body = json.dumps(payload).encode()
        return self._send(h, method, 200, body, {"Content-Type": "application/json", **(headers or {})})

    def _error(
        self, h: _Handler, method: str, status: int, code: str | None, message: str, **extra: str
    ) -> int:
        headers = {"Content-Type": "application/json", "X-Error-Message": message, **extra}
        if code:
            headers["X-Error-Code"] = code
        return self._send(h, method, status, json.dumps({"error": message}).encode(), headers)

    def _repo_at(self, h: _Handler, method: str, repo_id: str, rev: str | None) -> Checkout | int:
        repo = self.repos.get(repo_id)
        if repo is None:
            return self._error(h, method, 404, "RepoNotFound", "Repository not found")
        if rev not in (None, "main", repo.commit):
            return self._error(h, method, 404, "RevisionNotFound", "Invalid rev id: " + str(rev))
        return repo

    def _info(self, h: _Handler, method: str, repo_id: str, rev: str | None) -> int:
        repo = self._repo_at(h, method, repo_id, rev)
        if isinstance(repo, int):
            return repo
        payload = {
            "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24],
            "id": repo_id,
            "author": repo_id.split("/")[0],
            "sha": repo.commit,
            "private": False,
            "gated": "auto" if repo.gated else False,
            "disabled": False,
            "tags": [],
            "siblings": [{"rfilename": p} for p in sorted(repo.files)],
        }
        return self._json(h, method, payload)

    def _tree(
        self, h: _Handler, method: str, repo_id: str, rev: str, prefix: str, query: dict[str, list[str]]
    ) -> int:
        repo = self._repo_at(h, method, repo_id, rev)
        if isinstance(repo, int):
            return repo
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        base = prefix.strip("/") + "/" if prefix.strip("/") else ""
        entries: dict[str, dict[str, Any]] = {}
        for path, f in repo.files.items():
            if not path.startswith(base):
                continue
            parts = path[len(base) :].split("/")
            for i in range(1, len(parts)):  # folders on the way
                folder = base + "/".join(parts[:i])
                if recursive or i == 1:
                    entries.setdefault(
                        folder,
                        {
                            "type": "directory",
                            "oid": hashlib.sha1(folder.encode()).hexdigest(),
                            "size": 0,
                            "path": folder,
                        },
                    )
            if recursive or len(parts) == 1:
                entries[path] = f.tree_entry()
        if base and not entries:
            return self._error(h, method, 404, "EntryNotFound", f"{prefix} does not exist")
        ordered = [entries[k] for k in sorted(entries)]
        start = int(query.get("cursor", ["0"])[0])
        page = ordered[start : start + self.page_size]
        headers: dict[str, str] = {}
        if start + self.page_size < len(ordered):
            here = f"{self.endpoint}{quote(urlsplit(h.path).path)}"
            nxt = f"{here}?recursive={str(recursive).lower()}&expand=false&cursor={start + self.page_size}"
            headers["Link"] = f'<{nxt}>; rel="next"'
        return self._json(h, method, page, headers)

    def _resolve(self, h: _Handler, method: str, repo_id: str, rev: str, filename: str) -> int:
        repo = self._repo_at(h, method, repo_id, rev)
        if isinstance(repo, int):
            return repo
        if repo.gated:
            return self._error(h, method, 403, "GatedRepo", "Access to this dataset is restricted.")
        if self._take(self.fail_requests, filename):
            return self._error(h, method, 503, None, "Service Unavailable")
        f = repo.files.get(filename)
        if f is None:
            return self._error(
                h, method, 404, "EntryNotFound", "Entry not found", **{"X-Repo-Commit": repo.commit}
            )
        if f.lfs:
            location = f"{self.cdn}/cdn/{repo_id}/{f.sha256}"
            headers = {
                "Location": location,
                "X-Repo-Commit": repo.commit,
                "ETag": f'"{f.oid}"',
                "X-Linked-Etag": f'"{f.sha256}"',
                "X-Linked-Size": str(len(f.data)),
            }
            return self._send(h, method, 302, b"", headers)
        return self._content(h, method, f, {"X-Repo-Commit": repo.commit, "ETag": f'"{f.oid}"'})

    def _cdn(self, h: _Handler, method: str, f: HubFile | None) -> int:
        if f is None:
            return self._error(h, method, 404, None, "NoSuchKey")
        if self._take(self.fail_requests, f.path):
            return self._error(h, method, 503, None, "Service Unavailable")
        return self._content(h, method, f, {"ETag": f'"{f.sha256}"'})

    def _content(self, h: _Handler, method: str, f: HubFile, headers: dict[str, str]) -> int:
        data = f.data
        if f.path in self.corrupt:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        if method == "GET" and self._take(self.fail_downloads, f.path):
            return self._error(h, method, 503, None, "Service Unavailable")
        headers = {**headers, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        status, start, end = 200, 0, len(data)
        rng = h.headers.get("Range")
        if rng:
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
            if not m or int(m[1]) >= len(data):
                return self._error(
                    h, method, 416, None, "Range Not Satisfiable", **{"Content-Range": f"bytes */{len(data)}"}
                )
            start = int(m[1])
            end = min(int(m[2]) + 1, len(data)) if m[2] else len(data)
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
        body = data[start:end]
        if method == "GET" and status == 200 and self._take(self.cut_downloads, f.path):
            # Promise the whole body, send part of it, then drop the connection.
            h.send_response(200)
            for key, value in headers.items():
                h.send_header(key, value)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body[: int(len(body) * self.cut_fraction)])
            h.wfile.flush()
            h.close_connection = True
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return 200
        return self._send(h, method, status, body, headers)


def _kind(r: LoggedRequest) -> str:
    if r.server == "cdn":
        return "cdn"
    if _TREE.match(r.path):
        return "tree"
    if _INFO.match(r.path):
        return "info"
    if _RESOLVE.match(r.path):
        return "resolve"
    return "other"


def closed_port_endpoint() -> str:
    """An http endpoint on 127.0.0.1 where nothing listens (connections are refused at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"
