"""The Noise connection state machine of the chat transport (sans-I/O, h11-style).

:class:`NoiseConnection` is framing + the WhatsApp Noise_XX handshake (client or server role) +
the transport cipher states, for one TCP connection. Frames are opaque bytes; the chat layer on
top is :class:`~wacrypto.transport.chat_connection.ChatConnection`, and the trio adapter
:class:`wacrypto.chat.NoiseStream` wraps it as a stream.

It takes bytes and returns bytes and events; it never reads a clock or touches a socket. Any
failure is **sticky**: the connection enters ``ERROR`` and every later call re-raises the same
typed :class:`~wacrypto.errors.TransportError`. Bad bytes from the other side raise the
:class:`~wacrypto.errors.PeerError` family (:class:`~wacrypto.errors.FrameError`,
:class:`~wacrypto.errors.HandshakeError`, :class:`~wacrypto.errors.CertificateError`); an EOF
before the handshake ended or inside a frame raises :class:`~wacrypto.errors.ConnectionClosedError`.

Driving loop::

    conn.receive_data(data)               # b"" means the peer closed (EOF)
    while (ev := conn.next_event()) is not NEED_DATA: handle(ev)
    sock.send_all(conn.data_to_send())
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Final, final

from wacrypto.errors import (
    ConnectionClosedError,
    InvalidArgumentError,
    TransportError,
    UsageError,
)
from wacrypto.limits import DEFAULT_MAX_FRAME_LEN, MAX_FRAME_LEN, NOISE_TAG_LEN
from wacrypto.primitives.keys import KeyPair, PublicKey, Rng, system_rng
from wacrypto.transport.certs import CertChain, CertDetails
from wacrypto.transport.framing import DEFAULT_HEADER, FrameDecoder, FrameEncoder, make_intro
from wacrypto.transport.messages import ClientPayload, HandshakeKind, decode_handshake, encode_handshake
from wacrypto.transport.noise import CipherState, HandshakeState, Role

__all__ = [
    "NEED_DATA",
    "ClientSettings",
    "ConnectionClosed",
    "ConnectionState",
    "FrameReceived",
    "HandshakeComplete",
    "NeedData",
    "NoiseConnection",
    "NoiseEvent",
    "ServerSettings",
]


class ConnectionState(enum.Enum):
    HANDSHAKING = "handshaking"
    OPEN = "open"
    CLOSED = "closed"  # orderly: EOF, stream error, or close()
    ERROR = "error"  # sticky: a TransportError happened


@final
class NeedData:
    """Sentinel: feed more bytes with ``receive_data`` (or wait for a deadline)."""

    _instance: NeedData | None = None

    def __new__(cls) -> NeedData:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData()


# --------------------------------------------------------------------------- settings
@final
@dataclass(frozen=True, slots=True)
class ClientSettings:
    """Client (initiator) side: its long-term static key and the certificate root it trusts."""

    static: KeyPair
    trusted_root: PublicKey
    header: bytes = DEFAULT_HEADER
    routing_info: bytes | None = None
    payload: ClientPayload = field(default_factory=ClientPayload)
    max_frame_len: int = DEFAULT_MAX_FRAME_LEN

    def __repr__(self) -> str:
        return f"ClientSettings(static={self.static.public.to_bytes().hex()}, root={self.trusted_root.u.hex()})"


@final
@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Server (responder) side: its static key and the certificate chain for that key."""

    static: KeyPair
    cert_chain: CertChain
    max_frame_len: int = DEFAULT_MAX_FRAME_LEN

    def __repr__(self) -> str:
        return f"ServerSettings(static={self.static.public.to_bytes().hex()})"


# --------------------------------------------------------------------------- noise-level events
@final
@dataclass(frozen=True, slots=True)
class HandshakeComplete:
    remote_static: PublicKey
    server_certificate: CertDetails | None = None  # on the client: the verified leaf
    client_payload: ClientPayload | None = None  # on the server: what the client said
    header: bytes | None = None  # on the server: the intro header the client sent
    routing_info: bytes | None = None  # on the server: the ED pre-intro, if any


@final
@dataclass(frozen=True, slots=True)
class FrameReceived:
    payload: bytes


@final
@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed the connection in an orderly way (EOF on a frame boundary)."""


NoiseEvent = HandshakeComplete | FrameReceived | ConnectionClosed


@final
class NoiseConnection:
    """Framing + Noise handshake + transport ciphers for one TCP connection.

    ``wall_time`` (unix seconds) is required on the client: it checks certificate validity.
    """

    __slots__ = (
        "_role",
        "_settings",
        "_wall_time",
        "_hs",
        "_decoder",
        "_encoder",
        "_out",
        "_send",
        "_recv",
        "_state",
        "_error",
        "_eof",
        "_max_payload",
        "_ephemeral",
        "_rng",
    )

    def __init__(
        self,
        settings: ClientSettings | ServerSettings,
        *,
        wall_time: float | None = None,
        rng: Rng = system_rng,
        ephemeral: KeyPair | None = None,
    ) -> None:
        if not NOISE_TAG_LEN < settings.max_frame_len <= MAX_FRAME_LEN:
            raise InvalidArgumentError("max_frame_len out of range")
        self._settings = settings
        self._out: list[bytes] = []
        self._send: CipherState | None = None
        self._recv: CipherState | None = None
        self._state = ConnectionState.HANDSHAKING
        self._error: TransportError | None = None
        self._eof = False
        self._ephemeral = ephemeral
        self._rng = rng
        self._max_payload = settings.max_frame_len - NOISE_TAG_LEN
        self._wall_time = wall_time
        if isinstance(settings, ClientSettings):
            if wall_time is None:
                raise InvalidArgumentError("a client connection needs wall_time for certificate checks")
            self._role = Role.INITIATOR
            hs = HandshakeState(Role.INITIATOR, settings.static, settings.header, e=ephemeral, rng=rng)
            self._hs: HandshakeState | None = hs
            self._decoder = FrameDecoder(settings.max_frame_len)
            self._encoder = FrameEncoder(make_intro(settings.header, settings.routing_info), settings.max_frame_len)
            hello = hs.write_message()
            self._out.append(self._encoder.encode(encode_handshake(HandshakeKind.CLIENT_HELLO, hello)))
        else:
            self._role = Role.RESPONDER
            self._hs = None  # created when the intro header (the prologue) has arrived
            self._decoder = FrameDecoder(settings.max_frame_len, expect_intro=True)
            self._encoder = FrameEncoder(b"", settings.max_frame_len)

    # ------------------------------------------------------------------ properties
    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def role(self) -> Role:
        return self._role

    @property
    def error(self) -> TransportError | None:
        return self._error

    @property
    def max_payload(self) -> int:
        """Largest plaintext one frame can carry."""
        return self._max_payload

    @property
    def remote_static(self) -> PublicKey | None:
        return self._hs.remote_static if self._hs is not None else None

    @property
    def handshake_hash(self) -> bytes | None:
        """The final handshake hash ``h`` (channel binding), once open."""
        return self._hs.handshake_hash if self._hs is not None and self._hs.complete else None

    # ------------------------------------------------------------------ internals
    def _fail(self, exc: TransportError) -> TransportError:
        if self._error is None:
            self._error = exc
        self._state = ConnectionState.ERROR
        self._out.clear()
        return self._error

    def _check_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _handshake_frame(self, frame: bytes) -> HandshakeComplete | None:
        settings = self._settings
        if isinstance(settings, ServerSettings):
            hs = self._hs
            if hs is None:
                # ClientHello: the prologue is the intro header the client actually sent
                header = self._decoder.header or b""
                hs = HandshakeState(Role.RESPONDER, settings.static, header, e=self._ephemeral, rng=self._rng)
                self._hs = hs
                hs.read_message(decode_handshake(HandshakeKind.CLIENT_HELLO, frame))
                reply = hs.write_message(settings.cert_chain.to_bytes())
                self._out.append(self._encoder.encode(encode_handshake(HandshakeKind.SERVER_HELLO, reply)))
                return None
            payload = hs.read_message(decode_handshake(HandshakeKind.CLIENT_FINISH, frame))
            client_payload = ClientPayload.from_bytes(payload)
            self._send, self._recv = hs.split()
            self._state = ConnectionState.OPEN
            rs = hs.remote_static
            assert rs is not None
            return HandshakeComplete(
                rs,
                client_payload=client_payload,
                header=self._decoder.header,
                routing_info=self._decoder.routing_info,
            )
        # initiator: ServerHello
        hs = self._hs
        assert hs is not None and self._wall_time is not None
        payload = hs.read_message(decode_handshake(HandshakeKind.SERVER_HELLO, frame))
        rs = hs.remote_static
        assert rs is not None
        leaf = CertChain.from_bytes(payload).verify(settings.trusted_root, rs, self._wall_time)
        finish = hs.write_message(settings.payload.to_bytes())
        self._out.append(self._encoder.encode(encode_handshake(HandshakeKind.CLIENT_FINISH, finish)))
        self._send, self._recv = hs.split()
        self._state = ConnectionState.OPEN
        return HandshakeComplete(rs, server_certificate=leaf)

    # ------------------------------------------------------------------ public API
    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes from the peer; ``b""`` means EOF."""
        self._check_error()
        if self._eof:
            if data:
                raise UsageError("receive_data after EOF")
            return
        if not data:
            self._eof = True
            return
        self._decoder.feed(data)

    def next_event(self) -> NoiseEvent | NeedData:
        """The next event, or :data:`NEED_DATA`. Raises the connection's typed error (sticky)."""
        self._check_error()
        if self._state is ConnectionState.CLOSED:
            return ConnectionClosed()
        try:
            while True:
                frame = self._decoder.next_frame()
                if frame is None:
                    if self._eof:
                        if self._decoder.buffered:
                            raise ConnectionClosedError("connection closed in the middle of a frame")
                        if self._state is ConnectionState.HANDSHAKING:
                            raise ConnectionClosedError("connection closed during the handshake")
                        self._state = ConnectionState.CLOSED
                        return ConnectionClosed()
                    return NEED_DATA
                recv = self._recv
                if recv is not None:
                    return FrameReceived(recv.decrypt(frame))
                done = self._handshake_frame(frame)
                if done is not None:
                    return done
        except TransportError as exc:
            raise self._fail(exc) from None

    def send_frame(self, payload: bytes) -> None:
        """Encrypt ``payload`` as one frame and queue it (all or nothing)."""
        self._check_error()
        send = self._send
        if self._state is not ConnectionState.OPEN or send is None:
            raise ConnectionClosedError("connection is not open")
        if len(payload) > self._max_payload:
            raise InvalidArgumentError(f"frame payload larger than {self._max_payload} bytes")
        try:
            self._out.append(self._encoder.encode(send.encrypt(payload)))
        except TransportError as exc:
            raise self._fail(exc) from None

    def seal(self, payload: bytes) -> bytes:
        """Fast path of ``send_frame`` + ``data_to_send``: the bytes to write now, ending with
        ``payload`` as one encrypted frame (after anything already queued)."""
        send = self._send
        if send is None or self._state is not ConnectionState.OPEN:
            self._check_error()
            raise ConnectionClosedError("connection is not open")
        n = len(payload) + NOISE_TAG_LEN
        if n - NOISE_TAG_LEN > self._max_payload:
            raise InvalidArgumentError(f"frame payload larger than {self._max_payload} bytes")
        try:
            frame = n.to_bytes(3, "big") + send.encrypt(payload)
        except TransportError as exc:
            raise self._fail(exc) from None
        if self._out:
            self._out.append(frame)
            return self.data_to_send()
        return frame

    def read_payloads(self) -> list[bytes]:
        """Fast path of ``next_event`` while OPEN: decrypt every complete frame already received.

        Returns an empty list when more bytes are needed *or* when ``next_event`` has something
        else to report (EOF); call ``next_event`` then. Errors are the same, and sticky."""
        self._check_error()
        recv = self._recv
        if recv is None or self._state is not ConnectionState.OPEN:
            return []
        out: list[bytes] = []
        next_frame = self._decoder.next_frame
        decrypt = recv.decrypt
        try:
            while (frame := next_frame()) is not None:
                out.append(decrypt(frame))
        except TransportError as exc:
            raise self._fail(exc) from None
        return out

    def data_to_send(self) -> bytes:
        """Bytes to write to the socket now (possibly empty). Each frame is whole."""
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return data

    def close(self) -> None:
        """Local orderly close: nothing more may be sent; pending bytes may still be flushed."""
        if self._state is not ConnectionState.ERROR:
            self._state = ConnectionState.CLOSED

    def fail(self, exc: TransportError) -> None:
        """Mark the connection failed from outside (e.g. the socket broke)."""
        self._fail(exc)

    def __repr__(self) -> str:
        return f"NoiseConnection(role={self._role.value}, state={self._state.value})"
