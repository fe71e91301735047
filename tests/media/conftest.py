"""Fixtures for the media tests: a real local HTTP media server with fault injection, and the Baileys peer."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

NODE_DIR = Path(__file__).parent / "node"


# --------------------------------------------------------------------------- local media server


@dataclass
class ServerState:
    """What the server stores and which faults it injects. Tests mutate it directly."""

    blobs: dict[str, bytes] = field(default_factory=dict)  # path -> body
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # (method, path, Range)
    fail_next: int = 0  # answer this many requests with 500 first
    drop_after: int | None = None  # once: send only this many body bytes of a GET, then cut the connection
    honour_range: bool = True
    expired_status: dict[str, int] = field(default_factory=dict)  # path -> 403/404/410
    check_token: bool = True  # reject uploads whose body does not hash to the token
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
        pass

    def _fault(self) -> bool:
        st = self.server.state
        with st.lock:
            st.requests.append((self.command, self.path, self.headers.get("Range")))
            if st.fail_next > 0:
                st.fail_next -= 1
                fail = True
            else:
                fail = False
        if fail:
            self._reply(500, b"try again")
        return fail

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        if self._fault():
            return
        parts = urlsplit(self.path)
        token = parts.path.rsplit("/", 1)[-1]
        query = parse_qs(parts.query)
        digest = base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=").decode()
        st = self.server.state
        if st.check_token and (digest != token or query.get("token") != [token]):
            self._reply(400, b"token mismatch")
            return
        path = f"/d/{token}"
        with st.lock:
            st.blobs[path] = body
        doc = {"url": f"{self.server.base}{path}", "direct_path": path}
        self._reply(200, json.dumps(doc).encode(), {"Content-Type": "application/json"})

    def do_GET(self) -> None:  # noqa: N802
        if self._fault():
            return
        st = self.server.state
        path = urlsplit(self.path).path
        if path in st.expired_status:
            self._reply(st.expired_status[path], b"gone")
            return
        blob = st.blobs.get(path)
        if blob is None:
            self._reply(404, b"not found")
            return
        start = 0
        status = 200
        headers = {"Accept-Ranges": "bytes"} if st.honour_range else {}
        rng = self.headers.get("Range")
        if rng and st.honour_range and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[6:-1])
            if start >= len(blob):
                self._reply(416, b"", {"Content-Range": f"bytes */{len(blob)}"})
                return
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(blob) - 1}/{len(blob)}"
        body = blob[start:]
        with st.lock:
            drop, st.drop_after = st.drop_after, None
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if drop is not None and drop < len(body):
            self.wfile.write(body[:drop])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: ServerState
    base: str


@pytest.fixture
def media_server() -> Iterator[_Server]:
    """A real HTTP media server on 127.0.0.1 (random port), with ``.state`` and ``.base``."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.state = ServerState()
    server.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def dead_host() -> str:
    """A base URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --------------------------------------------------------------------------- the Baileys peer


Peer = Callable[[dict[str, Any]], dict[str, Any]]


@pytest.fixture(scope="session")
def node_peer() -> Peer:
    """A function sending one JSON request to ``node/interop.js`` (Baileys) and returning its answer.

    Baileys is installed from the lockfile (``npm ci``) if missing.
    Fails (never skips) when node/npm are absent or the install fails: interop is part of the suite."""
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("node and npm are required for the media interop tests (apt-get install nodejs npm)")
    marker = NODE_DIR / "node_modules" / "@whiskeysockets" / "baileys" / "package.json"
    if not marker.exists():
        proc = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--omit=optional", "--omit=peer", "--ignore-scripts"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "npm_config_loglevel": "error"},
        )
        if proc.returncode != 0 or not marker.exists():
            pytest.fail(f"npm ci in {NODE_DIR} failed:\n{proc.stdout}\n{proc.stderr}")
    script = NODE_DIR / "interop.js"

    def peer(request: dict[str, Any]) -> dict[str, Any]:
        proc = subprocess.run(
            [node, str(script)], input=json.dumps(request), capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        answer: dict[str, Any] = json.loads(proc.stdout)
        return answer

    return peer
