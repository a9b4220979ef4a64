"""A local HTTP(S) chart repository server with conditional GET, gzip and per-path faults."""

from __future__ import annotations

import gzip
import hashlib
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from tests.support.threaded_server import Served, SocketServerThread

if TYPE_CHECKING:
    import trustme


@dataclass(frozen=True)
class _Status:
    status: int
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class _Body:
    body: bytes
    content_type: str
    headers: dict[str, str]


@dataclass(frozen=True)
class _Truncated:
    declared_length: int
    body: bytes


class RepoServer(Served):
    """Serves files under `root`; tests inject faults per path from their own thread."""

    def __init__(self, root: Path, *, tls: trustme.CA | None = None) -> None:
        self.root = root.resolve()
        self.url = ""
        self.requests: list[tuple[str, str, int]] = []
        # Request headers, names lower-cased, in the same order as `requests`.
        self.headers: list[dict[str, str]] = []
        self._tls = tls
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._statuses: dict[str, _Status] = {}
        self._bodies: dict[str, _Body] = {}
        self._delays: dict[str, float] = {}
        self._truncations: dict[str, _Truncated] = {}
        self._gates: dict[str, threading.Event] = {}
        self._connections: set[socket.socket] = set()
        self._server: SocketServerThread | None = None

    # ------------------------------------------------------------------------- lifecycle

    def start(self) -> RepoServer:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.repo = self
        host = "127.0.0.1"
        if self._tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._tls.issue_cert("localhost", "127.0.0.1").configure_cert(context)
            # The handshake is deferred to the handler thread so a client that rejects our
            # certificate (or never speaks) cannot stall the accept loop.
            server.socket = context.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
            host = "localhost"
        port = server.server_address[1]
        self.url = f"{'https' if self._tls is not None else 'http'}://{host}:{port}"
        self._server = SocketServerThread(server, before_close=self._wake_connections).start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()
        self._server.stop()
        self._server = None

    def _wake_connections(self) -> None:
        # Idle keep-alive connections park their handler threads in a blocking read;
        # shutting the sockets down wakes them so server_close() can join every thread.
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    # ---------------------------------------------------------------------------- faults

    def set_status(
        self, path: str, status: int, body: bytes = b"", *, headers: dict[str, str] | None = None
    ) -> None:
        """Answer `status` for `path` (with e.g. a `Location` header for redirects)."""
        with self._lock:
            self._statuses[path] = _Status(status, body, dict(headers or {}))

    def set_body(
        self,
        path: str,
        body: bytes,
        *,
        content_type: str = "application/yaml",
        headers: dict[str, str] | None = None,
    ) -> None:
        """Serve `body` for `path`; a `Content-Encoding` in `headers` means it is pre-encoded."""
        with self._lock:
            self._bodies[path] = _Body(body, content_type, dict(headers or {}))

    def set_delay(self, path: str, seconds: float) -> None:
        with self._lock:
            self._delays[path] = seconds

    def hold(self, path: str) -> None:
        """Requests for `path` wait until `release(path)` (or the server stops)."""
        with self._lock:
            self._gates.setdefault(path, threading.Event())

    def release(self, path: str) -> None:
        with self._lock:
            gate = self._gates.pop(path, None)
        if gate is not None:
            gate.set()

    def _gate(self, path: str) -> threading.Event | None:
        with self._lock:
            return self._gates.get(path)

    def set_truncated(self, path: str, declared_length: int, body: bytes) -> None:
        with self._lock:
            self._truncations[path] = _Truncated(declared_length, body)

    def clear_faults(self) -> None:
        with self._lock:
            self._statuses.clear()
            self._bodies.clear()
            self._delays.clear()
            self._truncations.clear()

    def count(self, path: str, status: int | None = None) -> int:
        with self._lock:
            return sum(
                1 for _, p, s in self.requests if p == path and (status is None or s == status)
            )

    # ------------------------------------------------------------------ handler plumbing

    def _faults(self, path: str) -> tuple[_Status | None, _Body | None, float, _Truncated | None]:
        with self._lock:
            return (
                self._statuses.get(path),
                self._bodies.get(path),
                self._delays.get(path, 0.0),
                self._truncations.get(path),
            )

    def _record(self, method: str, path: str, status: int, headers: dict[str, str]) -> None:
        with self._lock:
            self.requests.append((method, path, status))
            self.headers.append(headers)

    def _track(self, connection: socket.socket, *, open_: bool) -> None:
        with self._lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)


@contextmanager
def running(root: Path, *, tls: trustme.CA | None = None) -> Iterator[RepoServer]:
    """For fixtures: `with running(tmp_path) as server: yield server`."""
    with RepoServer(root, tls=tls) as server:
        yield server


class _Server(ThreadingHTTPServer):
    # Non-daemon handler threads let server_close() join them all: nothing outlives stop().
    daemon_threads = False
    repo: RepoServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up (timeouts, refused certificates) are expected in these tests.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "RepoServer/1"
    # A safety net only: stop() wakes idle connections itself.
    timeout = 30
    server: _Server

    def setup(self) -> None:
        self.server.repo._track(self.request, open_=True)
        try:
            if isinstance(self.request, ssl.SSLSocket):
                self.request.do_handshake()
            super().setup()
        except BaseException:
            # finish() never runs when setup() fails, so untrack here.
            self.server.repo._track(self.request, open_=False)
            raise

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.repo._track(self.request, open_=False)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # Also reached from send_error() on requests too malformed to have headers.
        raw_headers = getattr(self, "headers", None)
        headers = {k.lower(): v for k, v in raw_headers.items()} if raw_headers else {}
        status = int(code) if str(code).isdigit() else 0
        self.server.repo._record(self.command or "", self._path(), status, headers)

    def do_GET(self) -> None:
        self._serve(send_body=True)

    def do_HEAD(self) -> None:
        self._serve(send_body=False)

    def _path(self) -> str:
        return unquote(urlsplit(getattr(self, "path", "") or "").path)

    def _serve(self, *, send_body: bool) -> None:
        repo = self.server.repo
        path = self._path()
        gate = repo._gate(path)
        while gate is not None and not gate.wait(0.05):
            if repo._stopping.is_set():
                self.close_connection = True
                return
        status, override, delay, truncated = repo._faults(path)
        if delay and repo._stopping.wait(delay):
            self.close_connection = True
            return
        if status is not None:
            headers = {"Content-Type": "text/plain", **status.headers}
            self._send(status.status, status.body, headers, send_body)
            return
        if truncated is not None:
            self.send_response(200)
            self.send_header("Content-Type", "application/yaml")
            self.send_header("Content-Length", str(truncated.declared_length))
            self.end_headers()
            self.wfile.write(truncated.body)
            self.close_connection = True
            return

        if override is not None:
            data, content_type, extra = override.body, override.content_type, override.headers
            modified = None
        else:
            found = self._file(repo.root, path)
            if found is None:
                self._send(404, b"not found\n", {"Content-Type": "text/plain"}, send_body)
                return
            data, modified = found.read_bytes(), found.stat().st_mtime
            content_type, extra = _content_type(found), {}

        etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
        headers = {"Content-Type": content_type, "ETag": etag, **extra}
        if modified is not None:
            headers["Last-Modified"] = formatdate(modified, usegmt=True)
        if self._not_modified(etag, modified):
            self._send(304, b"", headers, send_body=False)
            return
        if "content-encoding" not in {name.lower() for name in extra} and self._accepts_gzip():
            data = gzip.compress(data, mtime=0)
            headers["Content-Encoding"] = "gzip"
            headers["Vary"] = "Accept-Encoding"
        self._send(200, data, headers, send_body)

    def _send(self, status: int, body: bytes, headers: dict[str, str], send_body: bool) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if status != 304:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body and status != 304:
            self.wfile.write(body)

    @staticmethod
    def _file(root: Path, path: str) -> Path | None:
        candidate = (root / path.lstrip("/")).resolve()
        if not candidate.is_relative_to(root) or not candidate.is_file():
            return None
        return candidate

    def _not_modified(self, etag: str, modified: float | None) -> bool:
        if_none_match = self.headers.get("If-None-Match")
        if if_none_match is not None:
            tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
            return "*" in tags or etag in tags
        if_modified_since = self.headers.get("If-Modified-Since")
        if if_modified_since is None or modified is None:
            return False
        try:
            since = parsedate_to_datetime(if_modified_since).timestamp()
        except (TypeError, ValueError):
            return False
        # HTTP dates have whole-second precision.
        return int(modified) <= since

    def _accepts_gzip(self) -> bool:
        for coding in self.headers.get("Accept-Encoding", "").split(","):
            name, _, params = coding.strip().partition(";")
            if name.strip().lower() in ("gzip", "*"):
                return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
        return False


def _content_type(path: Path) -> str:
    return {
        ".yaml": "application/yaml",
        ".yml": "application/yaml",
        ".json": "application/json",
        ".tgz": "application/gzip",
    }.get(path.suffix, "application/octet-stream")
