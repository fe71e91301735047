"""chatd's media endpoint: the HTTP/1.1 server that :class:`~wacrypto.media.client.MediaClient` talks to.

The contract is the client's (see :mod:`wacrypto.media.client`):

* ``POST /mms/{kind}/{token}?token={token}`` with the encrypted blob as body stores it. ``token`` is
  ``file_enc_sha256`` in unpadded base64url and must be ``SHA256(body)`` (else ``400``; a ``token``
  query parameter that names another blob is a ``400`` too). The answer is ``201`` (new) or ``200``
  (already there: an upload is idempotent and refreshes the blob's age) with
  ``{"url": "{base}/mms/{kind}/{token}", "direct_path": "/mms/{kind}/{token}"}``. A body over
  ``max_blob_bytes`` is a ``413``, as soon as its ``Content-Length`` (or its chunks) say so.
* ``GET`` / ``HEAD /mms/{kind}/{token}`` serves it, ``Accept-Ranges: bytes``; one ``Range`` (``a-b``,
  ``a-``, ``-n``) is answered ``206`` with ``Content-Range``, an unsatisfiable one ``416``, several
  ranges or a malformed header are ignored (``200``, the whole blob). A blob never stored (or already
  pruned) is a ``404``; one older than ``max_age`` is a ``410`` and is deleted. The client takes both
  as "gone, ask the sender to re-upload".

Storage: ``directory/<hex SHA-256>`` per blob (content-addressed, so ``kind`` only names the URL), and
``directory/.partial/`` for uploads in progress. A body is hashed and written to a temporary file as it
arrives, flushed and fsynced, then renamed over the blob's name: a reader, a crash or a cut upload never
sees half a blob, and two concurrent uploads of the same blob each rename a complete copy. Memory per
connection is bounded (one I/O chunk of body, the request head up to ``max_head_bytes``), never a blob.
A sweep (at start, then every ``prune_interval`` seconds) deletes expired blobs and abandoned
temporary files.

HTTP parsing is h11's (sans-I/O); :meth:`MediaServer.handle_stream` drives it on any trio stream. Every
wait on the peer (a read, a write; the whole request head) is bounded by ``timeout``: a connection that
stalls is answered ``408`` where it can be and closed. Whatever the peer sends is answered with a
status or ends the connection; nothing it sends escapes as an exception. ``serve`` listens on the
loopback interface unless given another host.

Fault switch for tests: :meth:`MediaServer.cut_next_download` closes the connection in the middle of the
next download's body, so a client's resume can be exercised.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import BinaryIO, Final, final
from urllib.parse import parse_qs

import h11
import trio

from wacrypto.errors import InvalidArgumentError
from wacrypto.limits import (
    DEFAULT_MEDIA_PRUNE_INTERVAL,
    DEFAULT_MEDIA_RETENTION,
    DEFAULT_MEDIA_SERVER_MAX_BLOB,
    DEFAULT_MEDIA_SERVER_TIMEOUT,
    DEFAULT_PARTIAL_GRACE,
    MEDIA_IO_CHUNK,
    MEDIA_SERVER_LINGER,
    MEDIA_SERVER_MAX_HEAD,
)

__all__ = ["MediaServer", "parse_range"]

PARTIAL_DIR: Final = ".partial"
_RECEIVE: Final = 256 * 1024
_DIGEST_LEN: Final = 32
_TOKEN_LEN: Final = 43  # 32 bytes in unpadded base64url
_PATH: Final = re.compile(r"/mms/([a-z0-9][a-z0-9-]{0,31})/([A-Za-z0-9_-]{43})")
_BLOB_NAME: Final = re.compile(r"[0-9a-f]{64}")
_RANGE: Final = re.compile(r"bytes=([0-9]{0,19})-([0-9]{0,19})", re.I)
_MAX_QUERY_FIELDS: Final = 16
_SERVER: Final = (b"server", b"wacrypto-chatd")


class _Reject(Exception):
    """Internal: answer the request with ``status`` (and close the connection if the body is unread)."""

    def __init__(self, status: int, reason: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers


class _Cut(Exception):
    """Internal: the fault switch cut a download; abort the connection."""


@final
@dataclass(frozen=True, slots=True)
class _Route:
    kind: str
    token: str
    digest: bytes


def _digest_of(token: str) -> bytes | None:
    """``file_enc_sha256`` from its canonical unpadded base64url ``token``, or ``None``."""
    if len(token) != _TOKEN_LEN:
        return None
    raw = base64.urlsafe_b64decode(token + "=")
    return raw if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") == token else None


def _route(target: bytes) -> _Route | None:
    """The blob a request target names (``/mms/{kind}/{token}[?token=...]``), or ``None``."""
    text = target.decode("latin-1")
    path, _, query = text.partition("?")
    match = _PATH.fullmatch(path)
    if match is None:
        return None
    kind, token = match.groups()
    digest = _digest_of(token)
    if digest is None:
        return None
    try:
        params = parse_qs(query, keep_blank_values=True, max_num_fields=_MAX_QUERY_FIELDS)
    except ValueError:  # too many fields
        return None
    if any(t != token for t in params.get("token", [])):
        return None
    return _Route(kind, token, digest)


def parse_range(value: str | None, size: int) -> range | None:
    """The bytes of a ``size``-byte blob that one ``Range`` header value asks for.

    ``None`` means "serve the whole blob": no header, a malformed one, or several ranges (which a
    server may ignore). An empty range means the request cannot be satisfied (``416``): it starts at
    or after the end, or asks for the last 0 bytes."""
    if value is None:
        return None
    match = _RANGE.fullmatch(value.strip())
    if match is None:
        return None
    first_text, last_text = match.groups()
    if not first_text:  # suffix: the last n bytes
        if not last_text:
            return None
        return range(max(0, size - int(last_text)), size)
    first = int(first_text)
    if last_text and int(last_text) < first:
        return None
    if first >= size:
        return range(0)
    return range(first, min(int(last_text) + 1, size) if last_text else size)


def _header(req: h11.Request, name: bytes) -> bytes | None:
    """The value of header ``name`` if it occurs exactly once."""
    values = [v for k, v in req.headers if k == name]
    return values[0] if len(values) == 1 else None


def _open_blob(path: Path) -> BinaryIO:
    return open(path, "rb")


def _remove_if_same(path: Path, inode: int) -> int:
    """Delete ``path`` if it is still the file ``inode`` (not a fresh upload renamed over it); 1 if deleted."""
    try:
        if os.stat(path).st_ino == inode:
            os.unlink(path)
            return 1
    except FileNotFoundError:
        pass
    return 0


def _base_url(address: str, port: int) -> str:
    """``http://address:port`` of a bound socket; a wildcard address is shown as loopback."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(address, address)
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


@final
class _Conn:
    """One HTTP/1.1 connection: h11's state and the stream, every wait bounded by ``timeout``."""

    def __init__(self, stream: trio.abc.Stream, max_head: int, timeout: float) -> None:
        self.stream = stream
        self.h = h11.Connection(h11.SERVER, max_incomplete_event_size=max_head)
        self.timeout = timeout
        self.method = b""  # of the request being answered (a HEAD answer has no body)

    async def next_event(self) -> object:
        while True:
            ev = self.h.next_event()
            if ev is not h11.NEED_DATA:
                return ev
            with trio.fail_after(self.timeout):
                data = await self.stream.receive_some(_RECEIVE)
            self.h.receive_data(data if isinstance(data, bytes) else bytes(data))

    async def send(self, event: h11.Response | h11.InformationalResponse | h11.Data | h11.EndOfMessage) -> None:
        pieces = self.h.send_with_data_passthrough(event) or []
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)  # a body chunk goes out uncopied
        if data:
            with trio.fail_after(self.timeout):
                await self.stream.send_all(data)

    async def respond(self, status: int, body: bytes, headers: tuple[tuple[bytes, bytes], ...] = (),
                      content_type: bytes = b"application/json") -> None:
        """A whole response; ``Connection: close`` when the request's body was not read to its end."""
        fields = [_SERVER, (b"content-type", content_type), (b"content-length", str(len(body)).encode()), *headers]
        if self.h.their_state is not h11.DONE:
            fields.append((b"connection", b"close"))
        await self.send(_response(status, fields))
        if body and self.method != b"HEAD":
            await self.send(h11.Data(data=body))
        await self.send(h11.EndOfMessage())


def _response(status: int, headers: list[tuple[bytes, bytes]]) -> h11.Response:
    return h11.Response(status_code=status, headers=headers, reason=HTTPStatus(status).phrase.encode("ascii"))


def _error_body(reason: str) -> bytes:
    return json.dumps({"error": reason}).encode()


@final
class MediaServer:
    """The media endpoint of the reference chatd (see the module docstring).

    :param directory: where blobs are kept (created if missing).
    :param max_blob_bytes: the largest body an upload may have (default: the blob of a 64 MiB file).
    :param max_age: seconds a blob is served after its last upload (default 30 days); older is ``410``.
    :param timeout: seconds any read or write may wait for the peer, and for a whole request head.
    :param max_head_bytes: request line and headers, at most (``431`` beyond).
    :param prune_interval: seconds between sweeps while serving.
    :param public_url: the base of the ``url`` in upload answers (default ``http://address:port`` as bound).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_blob_bytes: int = DEFAULT_MEDIA_SERVER_MAX_BLOB,
        max_age: float = DEFAULT_MEDIA_RETENTION,
        timeout: float = DEFAULT_MEDIA_SERVER_TIMEOUT,
        max_head_bytes: int = MEDIA_SERVER_MAX_HEAD,
        prune_interval: float = DEFAULT_MEDIA_PRUNE_INTERVAL,
        public_url: str | None = None,
    ) -> None:
        if max_blob_bytes < 1 or max_head_bytes < 256:
            raise InvalidArgumentError("max_blob_bytes must be at least 1 and max_head_bytes at least 256")
        if not (max_age > 0 and timeout > 0 and prune_interval > 0):
            raise InvalidArgumentError("max_age, timeout and prune_interval must be > 0 seconds")
        self.directory = Path(directory)
        self._partial = self.directory / PARTIAL_DIR
        self._partial.mkdir(parents=True, exist_ok=True)
        self.max_blob_bytes = max_blob_bytes
        self.max_age = max_age
        self._timeout = timeout
        self._max_head = max_head_bytes
        self._prune_interval = prune_interval
        self._public_url = public_url.rstrip("/") if public_url else None
        self.url: str | None = self._public_url  # the base URL, known once serving
        self._cut_after: int | None = None
        # what happened, for operators and tests
        self.connections = 0  # open now
        self.stored = 0  # uploads that created a blob
        self.deduplicated = 0  # uploads of a blob that was already there
        self.rejected = 0  # requests answered 4xx/5xx
        self.downloads = 0  # GETs answered 200
        self.partial_downloads = 0  # GETs answered 206
        self.expired = 0  # blobs deleted for their age
        self.bytes_received = 0  # upload body bytes
        self.bytes_sent = 0  # download body bytes

    def __repr__(self) -> str:
        return f"MediaServer(directory={str(self.directory)!r}, url={self.url!r})"

    def path_of(self, file_enc_sha256: bytes) -> Path:
        """Where the blob with this ``file_enc_sha256`` is (or would be) kept."""
        if len(file_enc_sha256) != _DIGEST_LEN:
            raise InvalidArgumentError("file_enc_sha256 is 32 bytes")
        return self.directory / file_enc_sha256.hex()

    def cut_next_download(self, after_bytes: int) -> None:
        """Fault switch for tests: close the connection after ``after_bytes`` body bytes of the next GET."""
        if after_bytes < 0:
            raise InvalidArgumentError("after_bytes must be >= 0")
        self._cut_after = after_bytes

    # ------------------------------------------------------------------ storage
    def _is_expired(self, mtime: float, now: float) -> bool:
        return now - mtime > self.max_age

    def prune(self, now: float | None = None) -> int:
        """Delete expired blobs and temporary files abandoned for over an hour; returns the blobs
        deleted. Blocking (``serve`` runs it in a thread); an unreadable entry is skipped."""
        current = time.time() if now is None else now
        removed = 0
        for entry, grace, blob in self._entries():
            try:
                if current - entry.stat(follow_symlinks=False).st_mtime > grace:
                    os.unlink(entry.path)
                    removed += blob
            except OSError:
                continue
        self.expired += removed
        return removed

    def _entries(self) -> Iterator[tuple[os.DirEntry[str], float, bool]]:
        for folder, grace, blob in ((self.directory, self.max_age, True), (self._partial, DEFAULT_PARTIAL_GRACE, False)):
            try:
                with os.scandir(folder) as it:
                    entries = list(it)
            except OSError:
                continue
            for entry in entries:
                if entry.is_file(follow_symlinks=False) and (not blob or _BLOB_NAME.fullmatch(entry.name)):
                    yield entry, grace, blob

    def _publish(self, tmp: str, final_path: Path) -> bool:
        """Rename the complete temporary file over the blob's name; ``True`` if it was already there."""
        existed = final_path.exists()
        os.replace(tmp, final_path)
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return existed

    @staticmethod
    def _flush(f: BinaryIO, data: bytearray) -> None:
        f.write(data)

    @staticmethod
    def _finish(f: BinaryIO) -> None:
        f.flush()
        os.fsync(f.fileno())
        f.close()

    # ------------------------------------------------------------------ serving
    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``host:port`` (0 picks a free port) until cancelled; reports the bound port."""
        listeners = await trio.open_tcp_listeners(port, host=host)
        listener = listeners[0]
        for extra in listeners[1:]:  # one address per name, so that port 0 means one port
            await extra.aclose()
        address, bound = listener.socket.getsockname()[:2]
        self.url = self._public_url or _base_url(address, bound)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._prune_loop)
            task_status.started(bound)
            await trio.serve_listeners(self.handle_stream, [listener], handler_nursery=nursery)

    async def _prune_loop(self) -> None:
        while True:
            await trio.to_thread.run_sync(self.prune)
            await trio.sleep(self._prune_interval)

    async def handle_stream(self, stream: trio.abc.Stream) -> None:
        """Serve HTTP requests on ``stream`` (any trio stream) until the peer or an error ends it."""
        conn = _Conn(stream, self._max_head, self._timeout)
        self.connections += 1
        try:
            await self._serve_requests(conn)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError, _Cut):
            pass  # the peer went away or stalled while we were sending: nothing to answer
        finally:
            self.connections -= 1
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)

    async def _serve_requests(self, conn: _Conn) -> None:
        h = conn.h
        while True:
            try:
                try:
                    with trio.fail_after(self._timeout):
                        ev = await conn.next_event()
                except trio.TooSlowError:
                    if h.their_state is h11.IDLE and not h.trailing_data[0]:
                        return  # an idle connection between requests
                    raise _Reject(408, "request head too slow") from None
                if not isinstance(ev, h11.Request):
                    return  # the peer closed (or pipelined past a response we still owe)
                conn.method = ev.method
                await self._dispatch(conn, ev)
            except _Reject as exc:
                await self._refuse(conn, exc.status, exc.reason, exc.headers)
            except h11.RemoteProtocolError as exc:
                await self._refuse(conn, exc.error_status_hint, "malformed request")
            except trio.TooSlowError:
                await self._refuse(conn, 408, "request body too slow")
            except OSError:
                await self._refuse(conn, 500, "storage failed")
            if h.our_state is h11.DONE and h.their_state is h11.DONE:
                h.start_next_cycle()
                conn.method = b""
                continue
            if h.their_state in (h11.IDLE, h11.SEND_BODY, h11.ERROR):  # the peer may still be sending
                await self._linger(conn)
            return

    async def _refuse(self, conn: _Conn, status: int, reason: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        """Answer with an error if a response can still be sent; never raises for the peer's sake."""
        self.rejected += 1
        if conn.h.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        try:
            await conn.respond(status, _error_body(reason), headers)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            pass

    async def _linger(self, conn: _Conn) -> None:
        """Before closing with a request body unread, stop sending and drain what the peer still
        sends for a while: closing on unread bytes resets the connection, and a reset may destroy
        the answer before the peer has read it."""
        try:
            if isinstance(conn.stream, trio.abc.HalfCloseableStream):
                await conn.stream.send_eof()
            with trio.move_on_after(MEDIA_SERVER_LINGER):
                while await conn.stream.receive_some(_RECEIVE):
                    pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def _dispatch(self, conn: _Conn, req: h11.Request) -> None:
        # h11 bounds an incomplete head; one that arrived whole in a single read is measured here
        if len(req.method) + len(req.target) + sum(len(k) + len(v) + 4 for k, v in req.headers) > self._max_head:
            raise _Reject(431, "request head too large")
        route = _route(req.target)
        if req.method == b"POST":
            if route is None:
                raise _Reject(400 if req.target.startswith(b"/mms/") else 404, "no such upload path")
            await self._upload(conn, req, route)
        elif req.method in (b"GET", b"HEAD"):
            await self._discard_body(conn)
            if route is None:
                raise _Reject(404, "no such blob")
            await self._download(conn, req, route, head=req.method == b"HEAD")
        else:
            raise _Reject(405, "method not allowed", ((b"allow", b"GET, HEAD, POST"),))

    async def _discard_body(self, conn: _Conn) -> None:
        """Read a request's body (a GET has none, as a rule) to its end, so the connection can serve
        the next request; more than a request head's worth is refused."""
        skipped = 0
        while isinstance(ev := await conn.next_event(), h11.Data):
            skipped += len(ev.data)
            if skipped > self._max_head:
                raise _Reject(413, "unexpected request body")

    # ------------------------------------------------------------------ upload
    async def _upload(self, conn: _Conn, req: h11.Request, route: _Route) -> None:
        declared = _header(req, b"content-length")
        if declared is not None and int(declared) > self.max_blob_bytes:  # h11 checked it is a number
            raise _Reject(413, "blob too large")
        if conn.h.they_are_waiting_for_100_continue:
            await conn.send(h11.InformationalResponse(status_code=100, headers=[_SERVER], reason=b"Continue"))
        fd, tmp = tempfile.mkstemp(prefix=route.digest.hex()[:16] + ".", suffix=".part", dir=self._partial)
        f = os.fdopen(fd, "wb")
        hasher = hashlib.sha256()
        size = 0
        pending = bytearray()  # written in pieces of about MEDIA_IO_CHUNK, each a thread hop
        try:
            while True:
                ev = await conn.next_event()
                if isinstance(ev, h11.EndOfMessage):
                    break
                if not isinstance(ev, h11.Data):  # pragma: no cover - h11 gives only these in a body
                    raise _Reject(400, "malformed body")
                size += len(ev.data)
                self.bytes_received += len(ev.data)
                if size > self.max_blob_bytes:
                    raise _Reject(413, "blob too large")
                hasher.update(ev.data)
                pending += ev.data
                if len(pending) >= MEDIA_IO_CHUNK:
                    await trio.to_thread.run_sync(self._flush, f, pending)
                    pending = bytearray()
            await trio.to_thread.run_sync(self._flush, f, pending)
            await trio.to_thread.run_sync(self._finish, f)
            if not hmac.compare_digest(hasher.digest(), route.digest):
                raise _Reject(400, "body does not match its token")
            existed = await trio.to_thread.run_sync(self._publish, tmp, self.path_of(route.digest))
        finally:
            f.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if existed:
            self.deduplicated += 1
        else:
            self.stored += 1
        direct_path = f"/mms/{route.kind}/{route.token}"
        body = json.dumps({"url": f"{self.url or ''}{direct_path}", "direct_path": direct_path}).encode()
        await conn.respond(200 if existed else 201, body)

    # ------------------------------------------------------------------ download
    async def _download(self, conn: _Conn, req: h11.Request, route: _Route, *, head: bool) -> None:
        path = self.path_of(route.digest)
        try:
            f = await trio.to_thread.run_sync(_open_blob, path)
        except FileNotFoundError:
            raise _Reject(404, "no such blob") from None
        try:
            st = os.fstat(f.fileno())
            if self._is_expired(st.st_mtime, time.time()):
                self.expired += await trio.to_thread.run_sync(_remove_if_same, path, st.st_ino)
                raise _Reject(410, "blob expired")
            size = st.st_size
            raw_range = _header(req, b"range")
            span = parse_range(raw_range.decode("latin-1") if raw_range is not None else None, size)
            if span is not None and not span:
                raise _Reject(416, "range not satisfiable", ((b"content-range", f"bytes */{size}".encode()),))
            first, stop = (span.start, span.stop) if span is not None else (0, size)
            headers = [_SERVER, (b"content-type", b"application/octet-stream"),
                       (b"content-length", str(stop - first).encode()), (b"accept-ranges", b"bytes")]
            if span is not None:
                headers.append((b"content-range", f"bytes {first}-{stop - 1}/{size}".encode()))
            await conn.send(_response(206 if span is not None else 200, headers))
            if not head:
                await self._send_body(conn, f, first, stop - first)
            await conn.send(h11.EndOfMessage())
        finally:
            f.close()
        if span is not None:
            self.partial_downloads += 1
        else:
            self.downloads += 1

    async def _send_body(self, conn: _Conn, f: BinaryIO, first: int, length: int) -> None:
        cut, self._cut_after = self._cut_after, None
        await trio.to_thread.run_sync(f.seek, first)
        sent = 0
        while sent < length:
            data = await trio.to_thread.run_sync(f.read, min(MEDIA_IO_CHUNK, length - sent))
            if not data:  # pragma: no cover - blobs are never rewritten in place
                raise _Cut("blob shrank while being sent")
            if cut is not None and sent + len(data) >= cut:
                data = data[: cut - sent]
                with trio.fail_after(conn.timeout):
                    await conn.stream.send_all(data)
                self.bytes_sent += len(data)
                raise _Cut("fault switch: download cut")
            await conn.send(h11.Data(data=data))
            sent += len(data)
            self.bytes_sent += len(data)
