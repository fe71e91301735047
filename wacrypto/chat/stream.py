"""``NoiseStream``: the Noise transport as a :class:`trio.abc.Stream` over any underlying stream.

Like trio's ``SSLStream`` it wraps a sans-I/O engine (:class:`~wacrypto.transport.NoiseConnection`).
Each ``send_all`` call becomes whole encrypted frames written with one underlying ``send_all``;
``receive_some`` returns decrypted bytes. The handshake runs on first use, or explicitly with
:meth:`NoiseStream.do_handshake`.

Errors: bytes from the peer that fail to parse or authenticate raise the typed
:class:`~wacrypto.errors.PeerError` (``FrameError``, ``HandshakeError``, ``CertificateError``:
each also a :class:`~wacrypto.errors.TransportError`) once, and an EOF inside a frame or the
handshake :class:`~wacrypto.errors.ConnectionClosedError`; afterwards the stream is broken and
raises :class:`trio.BrokenResourceError`. A send interrupted part-way (cancelled or failed) also breaks
the stream, so a frame is never half-written and then followed by another.
"""

from __future__ import annotations

import operator
from typing import Final, final

import trio

from wacrypto.errors import TransportError
from wacrypto.transport.noise_connection import (
    ConnectionClosed,
    ConnectionState,
    FrameReceived,
    HandshakeComplete,
    NeedData,
    NoiseConnection,
)

__all__ = ["NoiseStream"]

RECEIVE_CHUNK: Final = 65536  # bytes asked of the underlying stream per read


@final
class NoiseStream(trio.abc.Stream):
    def __init__(self, transport_stream: trio.abc.Stream, connection: NoiseConnection) -> None:
        self.transport_stream = transport_stream
        self._conn = connection
        self._hs_lock = trio.Lock()
        self._handshake: HandshakeComplete | None = None
        self._plain = bytearray()
        self._eof = False
        self._closed = False
        self._broken: BaseException | None = None
        self._send_busy = False
        self._recv_busy = False

    # ------------------------------------------------------------------ info
    @property
    def connection(self) -> NoiseConnection:
        return self._conn

    @property
    def handshake(self) -> HandshakeComplete | None:
        """What the handshake established (peer static key, verified certificate...), once done."""
        return self._handshake

    # ------------------------------------------------------------------ internals
    def _check_usable(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("NoiseStream is closed")
        if self._broken is not None:
            raise trio.BrokenResourceError("NoiseStream is broken") from self._broken

    def _break(self, exc: BaseException) -> None:
        if self._broken is None:
            self._broken = exc

    async def _flush(self) -> None:
        data = self._conn.data_to_send()
        if data:
            try:
                await self.transport_stream.send_all(data)
            except BaseException as exc:
                self._break(exc)
                raise

    async def do_handshake(self) -> HandshakeComplete:
        """Run the Noise handshake if it has not run yet; returns its result."""
        self._check_usable()
        async with self._hs_lock:
            self._check_usable()
            if self._handshake is not None:
                return self._handshake
            conn = self._conn
            try:
                await self._flush()  # the client's intro + ClientHello
                while True:
                    ev = conn.next_event()
                    await self._flush()  # ServerHello / ClientFinish, if that event queued one
                    if isinstance(ev, HandshakeComplete):
                        self._handshake = ev
                        return ev
                    if isinstance(ev, NeedData):
                        conn.receive_data(await self.transport_stream.receive_some(RECEIVE_CHUNK))
                    else:  # pragma: no cover - no other event can come before the handshake ends
                        raise trio.BrokenResourceError("unexpected event during the handshake")
            except BaseException as exc:  # a failed or interrupted handshake breaks the stream
                self._break(exc)
                raise

    # ------------------------------------------------------------------ Stream API
    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._send_busy:
            raise trio.BusyResourceError("another task is using this stream for sending")
        self._send_busy = True
        try:
            if self._handshake is not None and self._broken is None and not self._closed and data:
                conn = self._conn
                if len(data) <= conn._max_payload:  # hot path: one frame, written whole
                    wire = conn.seal(bytes(data))
                    try:
                        await self.transport_stream.send_all(wire)
                    except BaseException as exc:
                        self._break(exc)
                        raise
                    return
            self._check_usable()
            if self._handshake is None:
                await self.do_handshake()
            if not data:
                await trio.lowlevel.checkpoint()
                return
            conn = self._conn
            if conn.state is not ConnectionState.OPEN:
                raise trio.ClosedResourceError("NoiseStream is closed")
            step = conn.max_payload
            if len(data) <= step:  # fast path: one frame, no queue
                wire = conn.seal(bytes(data))
                try:
                    await self.transport_stream.send_all(wire)
                except BaseException as exc:
                    self._break(exc)
                    raise
                return
            view = memoryview(data).cast("B")
            for i in range(0, len(view), step):
                conn.send_frame(bytes(view[i : i + step]))
            await self._flush()
        finally:
            self._send_busy = False

    async def wait_send_all_might_not_block(self) -> None:
        if self._send_busy:
            raise trio.BusyResourceError("another task is using this stream for sending")
        self._send_busy = True
        try:
            self._check_usable()
            await self.transport_stream.wait_send_all_might_not_block()
        finally:
            self._send_busy = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if max_bytes is not None:
            max_bytes = operator.index(max_bytes)
            if max_bytes < 1:
                raise ValueError("max_bytes must be >= 1")
        if self._recv_busy:
            raise trio.BusyResourceError("another task is using this stream for receiving")
        self._recv_busy = True
        try:
            self._check_usable()
            if self._handshake is None:
                await self.do_handshake()
            plain = self._plain
            did_io = False
            conn = self._conn
            # fast path while open: decrypt whole frames straight into the returned bytes
            while not plain and not self._eof and conn.state is ConnectionState.OPEN:
                payloads = conn.read_payloads()
                if payloads:
                    data = payloads[0] if len(payloads) == 1 else b"".join(payloads)
                    if not data:
                        continue  # empty frames carry nothing; b"" would mean EOF
                    if max_bytes is None or len(data) <= max_bytes:
                        if not did_io:
                            await trio.lowlevel.checkpoint()
                        return data
                    plain += data
                    break
                ev = conn.next_event()
                if isinstance(ev, NeedData):
                    await self._fill()
                    did_io = True
                elif isinstance(ev, ConnectionClosed):
                    self._eof = True
                elif isinstance(ev, FrameReceived):  # pragma: no cover - read_payloads took them
                    plain += ev.payload
            while not plain and not self._eof:
                payloads = conn.read_payloads()  # fast path while open
                if payloads:
                    plain += b"".join(payloads)
                    break
                ev = conn.next_event()
                if isinstance(ev, FrameReceived):
                    plain += ev.payload
                    # decrypt whatever else is already buffered, without more I/O
                    while True:
                        ev = conn.next_event()
                        if isinstance(ev, FrameReceived):
                            plain += ev.payload
                        else:
                            if isinstance(ev, ConnectionClosed):
                                self._eof = True
                            break
                elif isinstance(ev, ConnectionClosed):
                    self._eof = True
                else:
                    try:
                        raw = await self.transport_stream.receive_some(RECEIVE_CHUNK)
                    except trio.BrokenResourceError as exc:
                        self._break(exc)
                        raise
                    did_io = True
                    conn.receive_data(raw)
            if not did_io:
                await trio.lowlevel.checkpoint()
            if not plain:
                return b""
            if max_bytes is None or max_bytes >= len(plain):
                out = bytes(plain)
                plain.clear()
            else:
                out = bytes(plain[:max_bytes])
                del plain[:max_bytes]
            return out
        except TransportError as exc:
            self._break(exc)
            raise
        finally:
            self._recv_busy = False

    async def _fill(self) -> None:
        """One read from the underlying stream into the connection (unless EOF was seen)."""
        if self._eof or self._conn.state is not ConnectionState.OPEN:
            await trio.lowlevel.checkpoint()
            return
        try:
            data = await self.transport_stream.receive_some(RECEIVE_CHUNK)
        except trio.BrokenResourceError as exc:
            self._break(exc)
            raise
        self._conn.receive_data(data)

    async def aclose(self) -> None:
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        self._conn.close()
        await self.transport_stream.aclose()

    def __repr__(self) -> str:
        return f"NoiseStream({self._conn!r})"
