"""Runs one :class:`~wacrypto.transport.ChatConnection` over one trio stream (client and server).

One nursery per connection with three tasks: a reader (socket -> connection -> events), a writer
(outgoing stanzas -> connection -> socket) and a timer (``next_deadline`` / ``handle_timeout``).
Every write goes through one lock that takes ``data_to_send()`` and writes it whole, so frames
stay in order and are never interleaved. Socket failures become typed transport errors.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Final, final

import trio

from wacrypto.errors import ConnectionClosedError, TransportError
from wacrypto.transport.chat_connection import ChatConnection, ChatEvent, Connected, StreamErrorReceived
from wacrypto.transport.noise_connection import ConnectionClosed, ConnectionState, NeedData
from wacrypto.transport.messages import Stanza

__all__ = ["PING_REQUEST", "ConnectionDriver", "Outgoing", "PingRequest", "single_transport_error"]

RECEIVE_CHUNK: Final = 65536  # bytes per socket read
WRITE_BATCH: Final = 256  # stanzas coalesced into one socket write at most


@final
class PingRequest:
    """Outgoing item: send a keepalive-style ping now (its pong is reported with the RTT)."""

    def __repr__(self) -> str:
        return "PING_REQUEST"


PING_REQUEST: Final = PingRequest()
Outgoing = Stanza | PingRequest | None  # None only wakes the writer

EventHandler = Callable[[ChatEvent], Awaitable[None]]


async def _nothing() -> None:
    return None


@final
class ConnectionDriver:
    """Drives ``conn`` over ``stream``. :meth:`handshake` first, then :meth:`run` until it ends.

    ``gate`` is awaited before each read and each timer action (the reference server's "stop
    answering" fault); clients pass none.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        conn: ChatConnection,
        *,
        gate: Callable[[], Awaitable[None]] = _nothing,
    ) -> None:
        self.stream = stream
        self.conn = conn
        self.gate = gate
        self._lock = trio.Lock()
        self._timer_scope: trio.CancelScope | None = None

    async def flush(self) -> None:
        await self.gate()
        lock = self._lock
        try:
            lock.acquire_nowait()  # free (the common case): no scheduler pass just for the lock
        except trio.WouldBlock:
            await lock.acquire()
        try:
            data = self.conn.data_to_send()
            if data:
                try:
                    await self.stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                    err = ConnectionClosedError(f"connection lost while sending: {exc or type(exc).__name__}")
                    self.conn.fail(err)
                    raise err from exc
        finally:
            lock.release()

    def _rearm(self) -> None:
        scope = self._timer_scope
        if scope is not None:
            d = self.conn.next_deadline()
            scope.deadline = math.inf if d is None else d

    async def _read(self) -> bytes | bytearray:
        try:
            return await self.stream.receive_some(RECEIVE_CHUNK)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            err = ConnectionClosedError(f"connection lost while receiving: {exc or type(exc).__name__}")
            self.conn.fail(err)
            raise err from exc

    async def handshake(self) -> Connected:
        """Run the Noise handshake; raises a typed :class:`TransportError` on failure.

        Callers bound it with ``trio.move_on_after`` / ``fail_after``.
        """
        conn = self.conn
        while True:
            ev = conn.next_event()
            await self.flush()
            if isinstance(ev, Connected):
                return ev
            if isinstance(ev, NeedData):
                await self.gate()
                data = await self._read()
                conn.receive_data(data, trio.current_time())
                continue
            raise ConnectionClosedError("connection closed during the handshake")  # pragma: no cover

    async def run(
        self,
        outgoing: trio.MemoryReceiveChannel[Outgoing],
        on_event: EventHandler,
    ) -> ChatEvent:
        """Run until the peer ends the stream; returns the terminal event (``ConnectionClosed`` or
        ``StreamErrorReceived``). Raises a typed :class:`TransportError` on failure."""
        result: list[ChatEvent] = []
        try:
            await self._run(outgoing, on_event, result)
        except BaseExceptionGroup as eg:
            err = single_transport_error(eg)
            if err is None:
                raise
            raise err from None
        if not result:  # pragma: no cover - the nursery only ends by the reader or an exception
            raise ConnectionClosedError("connection ended without a reason")
        return result[0]

    async def _run(
        self,
        outgoing: trio.MemoryReceiveChannel[Outgoing],
        on_event: EventHandler,
        result: list[ChatEvent],
    ) -> None:
        async with trio.open_nursery() as nursery:

            async def reader() -> None:
                conn = self.conn
                while True:
                    # first whatever is already buffered (bytes that came with the handshake's
                    # last message), then one more read
                    while True:
                        ev = conn.next_event()
                        if isinstance(ev, NeedData):
                            break
                        if isinstance(ev, (ConnectionClosed, StreamErrorReceived)):
                            await self.flush()
                            result.append(ev)
                            nursery.cancel_scope.cancel()
                            return
                        await on_event(ev)
                    await self.flush()
                    self._rearm()
                    await self.gate()
                    data = await self._read()
                    await self.gate()  # a fault switch flipped while we were reading drops the bytes
                    conn.receive_data(data, trio.current_time())

            async def writer() -> None:
                conn = self.conn
                while True:
                    item = await outgoing.receive()
                    now = trio.current_time()
                    n = 0
                    while True:
                        if item is PING_REQUEST:
                            conn.ping(now)
                        elif item is not None:
                            assert not isinstance(item, PingRequest)
                            conn.send(item, now)
                        n += 1
                        if n >= WRITE_BATCH:
                            break
                        try:
                            item = outgoing.receive_nowait()
                        except trio.WouldBlock:
                            break
                    await self.flush()
                    if conn.state is ConnectionState.CLOSED:  # closed locally (e.g. a stream error sent)
                        result.append(ConnectionClosed())
                        nursery.cancel_scope.cancel()
                        return
                    self._rearm()

            async def timer() -> None:
                conn = self.conn
                while True:
                    d = conn.next_deadline()
                    with trio.CancelScope(deadline=math.inf if d is None else d) as scope:
                        self._timer_scope = scope
                        await trio.sleep_forever()
                    self._timer_scope = None
                    await self.gate()
                    conn.handle_timeout(trio.current_time())
                    await self.flush()

            nursery.start_soon(reader)
            nursery.start_soon(writer)
            nursery.start_soon(timer)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        out: list[BaseException] = []
        for e in exc.exceptions:
            out.extend(_leaves(e))
        return out
    return [exc]


def single_transport_error(eg: BaseExceptionGroup[BaseException]) -> TransportError | None:
    """The transport error that ended a nursery, if transport errors (and cancellations) are all
    it holds; None when something else (a bug, KeyboardInterrupt) must propagate as is."""
    leaves = _leaves(eg)
    errs = [e for e in leaves if isinstance(e, TransportError)]
    if errs and all(isinstance(e, (TransportError, trio.Cancelled)) for e in leaves):
        return errs[0]
    return None
