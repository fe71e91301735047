"""The chat connection state machine of the chat transport (sans-I/O, h11-style).

:class:`ChatConnection` carries typed chat stanzas over a
:class:`~wacrypto.transport.noise_connection.NoiseConnection` and owns the connection lifecycle:
automatic pong answers, keepalive pings with jitter, a pong deadline and the dead-socket rule,
driven by ``next_deadline()`` / ``handle_timeout(now)``. It takes bytes and ``now`` and returns
bytes and events; it never reads a clock or touches a socket. Failures are sticky, as in the
Noise layer; a malformed stanza raises :class:`~wacrypto.errors.FrameError` (a
:class:`~wacrypto.errors.PeerError`), a missed deadline a
:class:`~wacrypto.errors.KeepaliveTimeoutError` or :class:`~wacrypto.errors.HandshakeTimeoutError`
(:class:`~wacrypto.errors.NetworkError`).

Driving loop::

    conn.receive_data(data, now)          # b"" means the peer closed (EOF)
    while (ev := conn.next_event()) is not NEED_DATA: handle(ev)
    sock.send_all(conn.data_to_send())
    # and at conn.next_deadline(): conn.handle_timeout(now)
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, final

from wacrypto.errors import (
    FrameError,
    HandshakeTimeoutError,
    InvalidArgumentError,
    KeepaliveTimeoutError,
    TransportError,
)
from wacrypto.limits import (
    DEFAULT_DEAD_SOCKET,
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_PING_DEADLINE,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_JITTER,
)
from wacrypto.primitives.keys import PublicKey
from wacrypto.transport.certs import CertDetails
from wacrypto.transport.messages import (
    Ack,
    ClientPayload,
    EncodedNode,
    Message,
    Ping,
    Pong,
    Stanza,
    StreamError,
    StreamErrorCode,
    Node,
    decode_stanza,
    encode_stanza,
)
from wacrypto.transport.noise_connection import (
    NEED_DATA,
    ConnectionClosed,
    ConnectionState,
    FrameReceived,
    HandshakeComplete,
    NeedData,
    NoiseConnection,
)

__all__ = [
    "ANSWERED_TAGS",
    "AckReceived",
    "ChatConnection",
    "ChatEvent",
    "Connected",
    "KeepaliveSettings",
    "MessageReceived",
    "NodeReceived",
    "PingReceived",
    "PongReceived",
    "StreamErrorReceived",
    "expects_answer",
]


@final
@dataclass(frozen=True, slots=True)
class KeepaliveSettings:
    """Keepalive policy. ``interval`` 0 disables our own pings (pongs are still answered)."""

    interval: float = DEFAULT_PING_INTERVAL
    jitter: float = DEFAULT_PING_JITTER
    deadline: float = DEFAULT_PING_DEADLINE
    dead_socket: float = DEFAULT_DEAD_SOCKET
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT

    def __post_init__(self) -> None:
        if self.interval < 0 or self.jitter < 0 or self.deadline <= 0 or self.dead_socket <= 0:
            raise InvalidArgumentError("keepalive times must be positive")
        if self.interval and self.jitter >= self.interval:
            raise InvalidArgumentError("jitter must be smaller than the interval")
        if self.handshake_timeout <= 0:
            raise InvalidArgumentError("handshake timeout must be positive")


@final
@dataclass(frozen=True, slots=True)
class Connected:
    remote_static: PublicKey
    server_certificate: CertDetails | None = None
    client_payload: ClientPayload | None = None


@final
@dataclass(frozen=True, slots=True)
class MessageReceived:
    """An application payload; acknowledge it with ``send(Ack(id))`` once it is persisted."""

    id: str
    payload: bytes


@final
@dataclass(frozen=True, slots=True)
class AckReceived:
    id: str


@final
@dataclass(frozen=True, slots=True)
class NodeReceived:
    """Any other stanza (a WhatsApp ``message``, ``receipt``, ``iq``, ``notification``, ``ack``...)."""

    node: Node


@final
@dataclass(frozen=True, slots=True)
class PingReceived:
    """The peer pinged; the pong is already queued."""

    id: int


@final
@dataclass(frozen=True, slots=True)
class PongReceived:
    id: int
    rtt: float  # seconds, from our ping to the bytes carrying the pong


@final
@dataclass(frozen=True, slots=True)
class StreamErrorReceived:
    """The peer ended the stream with a code; the connection is now CLOSED."""

    code: StreamErrorCode
    text: str


ChatEvent = Connected | MessageReceived | AckReceived | NodeReceived | PingReceived | PongReceived | StreamErrorReceived | ConnectionClosed


ANSWERED_TAGS: Final = ("message", "receipt", "notification")  # (and iq get/set) what the peer answers


def expects_answer(stanza: Stanza) -> bool:
    """A stanza the peer answers (so the dead-socket rule applies): a message, receipt or iq request."""
    assert isinstance(stanza, Node)
    return stanza.tag in ANSWERED_TAGS or (
        stanza.tag == "iq" and stanza.attrs.get("type") in ("get", "set"))


@final
class ChatConnection:
    """Typed stanzas and the keepalive lifecycle over a :class:`NoiseConnection`.

    Keepalive (both roles): after ``interval`` (+/- ``jitter``) without inbound bytes, send a
    ping; the pong must arrive within ``deadline``; and once we have sent something that expects
    an answer (a ping or a message), inbound bytes must arrive within ``dead_socket`` (the
    dead-socket rule). The handshake must finish within ``handshake_timeout``. Breaking any of
    these raises :class:`KeepaliveTimeoutError` (or :class:`HandshakeTimeoutError`) from ``handle_timeout``.
    """

    __slots__ = (
        "_noise",
        "_ka",
        "_jitter_rng",
        "_created",
        "_last_rx",
        "_last_ping",
        "_ping_offset",
        "_pending",
        "_unanswered_since",
        "_ping_ids",
    )

    def __init__(
        self,
        noise: NoiseConnection,
        *,
        now: float,
        keepalive: KeepaliveSettings | None = None,
        jitter_rng: Callable[[], float] = random.random,
    ) -> None:
        self._noise = noise
        self._ka = keepalive or KeepaliveSettings()
        self._jitter_rng = jitter_rng
        self._created = now
        self._last_rx = now
        self._last_ping = now
        self._ping_offset = self._draw_offset()
        self._pending: tuple[int, float] | None = None
        self._unanswered_since: float | None = None
        self._ping_ids = 0

    def _draw_offset(self) -> float:
        ka = self._ka
        return ka.interval + ka.jitter * (2.0 * self._jitter_rng() - 1.0)

    # ------------------------------------------------------------------ properties
    @property
    def state(self) -> ConnectionState:
        return self._noise.state

    @property
    def error(self) -> TransportError | None:
        return self._noise.error

    @property
    def noise(self) -> NoiseConnection:
        return self._noise

    @property
    def remote_static(self) -> PublicKey | None:
        return self._noise.remote_static

    # ------------------------------------------------------------------ input
    def receive_data(self, data: bytes | bytearray | memoryview, now: float) -> None:
        """Feed bytes from the peer (``b""`` = EOF) received at ``now``."""
        self._noise.receive_data(data)
        if data:
            self._last_rx = now
            self._unanswered_since = None

    def next_event(self) -> ChatEvent | NeedData:
        noise = self._noise
        while True:
            ev = noise.next_event()
            if type(ev) is FrameReceived:
                try:
                    st = decode_stanza(ev.payload)
                except FrameError as exc:  # the only error decode_stanza raises
                    noise.fail(exc)
                    raise
                t = type(st)
                if t is Node:
                    assert isinstance(st, Node)
                    return NodeReceived(st)
                if t is Message:
                    assert isinstance(st, Message)
                    return MessageReceived(st.id, st.payload)
                if t is Ack:
                    assert isinstance(st, Ack)
                    return AckReceived(st.id)
                if t is Ping:
                    assert isinstance(st, Ping)
                    noise.send_frame(encode_stanza(Pong(st.id)))
                    return PingReceived(st.id)
                if t is Pong:
                    assert isinstance(st, Pong)
                    pending = self._pending
                    if pending is not None and pending[0] == st.id:
                        self._pending = None
                        return PongReceived(st.id, max(0.0, self._last_rx - pending[1]))
                    continue  # a stale or unsolicited pong proves liveness; nothing to report
                assert isinstance(st, StreamError)
                noise.close()
                return StreamErrorReceived(st.code, st.text)
            if type(ev) is HandshakeComplete:
                assert isinstance(ev, HandshakeComplete)
                self._last_ping = self._last_rx
                return Connected(ev.remote_static, ev.server_certificate, ev.client_payload)
            if type(ev) is ConnectionClosed:
                return ConnectionClosed()
            return NEED_DATA

    # ------------------------------------------------------------------ output
    def send(self, stanza: Stanza, now: float) -> None:
        """Queue one stanza (encrypted, framed, whole). Messages and pings arm the dead-socket rule."""
        self._noise.send_frame(encode_stanza(stanza))
        t = type(stanza)
        if t is Message or t is Ping or (t is Node and expects_answer(stanza)) or (
                isinstance(stanza, EncodedNode) and stanza.answered):
            if self._unanswered_since is None:
                self._unanswered_since = now

    def ping(self, now: float) -> int:
        """Send a keepalive ping now (if none is outstanding); returns its id."""
        if self._pending is not None:
            return self._pending[0]
        self._ping_ids += 1
        pid = self._ping_ids
        self.send(Ping(pid), now)
        self._pending = (pid, now)
        self._last_ping = now
        self._ping_offset = self._draw_offset()
        return pid

    def send_stream_error(self, code: StreamErrorCode, text: str = "") -> None:
        """Server side: end the stream with ``code``; the connection is CLOSED afterwards."""
        self._noise.send_frame(encode_stanza(StreamError(code, text)))
        self._noise.close()

    def data_to_send(self) -> bytes:
        return self._noise.data_to_send()

    def close(self) -> None:
        self._noise.close()

    def fail(self, exc: TransportError) -> None:
        self._noise.fail(exc)

    # ------------------------------------------------------------------ time
    def next_deadline(self) -> float | None:
        """The earliest time ``handle_timeout`` has something to do, or None."""
        state = self._noise.state
        if state is ConnectionState.HANDSHAKING:
            return self._created + self._ka.handshake_timeout
        if state is not ConnectionState.OPEN:
            return None
        ka = self._ka
        candidates: list[float] = []
        if self._pending is not None:
            candidates.append(self._pending[1] + ka.deadline)
        elif ka.interval:
            candidates.append(max(self._last_rx, self._last_ping) + self._ping_offset)
        if self._unanswered_since is not None:
            candidates.append(self._unanswered_since + ka.dead_socket)
        return min(candidates) if candidates else None

    def handle_timeout(self, now: float) -> None:
        """Act on deadlines that have passed: send a due ping, or fail the connection."""
        noise = self._noise
        state = noise.state
        if state is ConnectionState.ERROR and noise.error is not None:
            raise noise.error
        ka = self._ka
        if state is ConnectionState.HANDSHAKING:
            if now >= self._created + ka.handshake_timeout:
                exc: TransportError = HandshakeTimeoutError(f"handshake not finished within {ka.handshake_timeout:g}s")
                noise.fail(exc)
                raise exc
            return
        if state is not ConnectionState.OPEN:
            return
        if self._pending is not None and now >= self._pending[1] + ka.deadline:
            exc = KeepaliveTimeoutError(f"no pong within {ka.deadline:g}s")
            noise.fail(exc)
            raise exc
        if self._unanswered_since is not None and now >= self._unanswered_since + ka.dead_socket:
            exc = KeepaliveTimeoutError(f"no inbound bytes for {ka.dead_socket:g}s after a send (dead socket)")
            noise.fail(exc)
            raise exc
        if self._pending is None and ka.interval and now >= max(self._last_rx, self._last_ping) + self._ping_offset:
            self.ping(now)

    def __repr__(self) -> str:
        return f"ChatConnection(role={self._noise.role.value}, state={self._noise.state.value})"
