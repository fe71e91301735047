"""Typed wire messages of the chat transport. Raw protobuf stays inside this module.

* handshake messages (``HandshakeMessage`` with exactly one of client_hello / server_hello /
  client_finish) <-> :class:`~wacrypto.transport.noise.NoiseMessage`;
* :class:`ClientPayload`, the client's encrypted handshake payload;
* chat stanzas carried in transport frames: :class:`Ping`, :class:`Pong`, :class:`StreamError`,
  :class:`Message`, :class:`Ack`.

Parsing untrusted bytes raises only :class:`~wacrypto.errors.HandshakeError` (handshake) or
:class:`~wacrypto.errors.FrameError` (stanzas), both of the :class:`~wacrypto.errors.PeerError`
family.
"""

from __future__ import annotations

import wacrypto.limits as _limits

import enum
from dataclasses import dataclass
from typing import Final, final

from wacrypto.transport._pb import DECODE_ERRORS
from wacrypto._proto import chat_pb2, noise_pb2
from wacrypto.errors import FrameError, HandshakeError, InvalidArgumentError
from wacrypto.transport.noise import NoiseMessage

__all__ = [
    "Ack",
    "ClientPayload",
    "HandshakeKind",
    "Message",
    "Ping",
    "Pong",
    "Stanza",
    "StreamError",
    "StreamErrorCode",
    "decode_handshake",
    "decode_stanza",
    "encode_handshake",
    "encode_stanza",
]

MAX_STANZA_ID_LEN: Final = _limits.MAX_STANZA_ID_LEN
MAX_USER_AGENT_LEN: Final = _limits.MAX_USER_AGENT_LEN
MAX_ERROR_TEXT_LEN: Final = _limits.MAX_ERROR_TEXT_LEN
_MAX_UINT32: Final = 0xFFFFFFFF
_MAX_UINT64: Final = (1 << 64) - 1


class HandshakeKind(enum.Enum):
    CLIENT_HELLO = "client_hello"
    SERVER_HELLO = "server_hello"
    CLIENT_FINISH = "client_finish"


def encode_handshake(kind: HandshakeKind, msg: NoiseMessage) -> bytes:
    m = noise_pb2.HandshakeMessage()
    if kind is HandshakeKind.CLIENT_HELLO:
        sub_h = m.client_hello
        sub_h.SetInParent()
        if msg.ephemeral is not None:
            sub_h.ephemeral = msg.ephemeral
        if msg.static is not None:
            sub_h.static = msg.static
        if msg.payload is not None:
            sub_h.payload = msg.payload
    elif kind is HandshakeKind.SERVER_HELLO:
        sub_s = m.server_hello
        sub_s.SetInParent()
        if msg.ephemeral is not None:
            sub_s.ephemeral = msg.ephemeral
        if msg.static is not None:
            sub_s.static = msg.static
        if msg.payload is not None:
            sub_s.payload = msg.payload
    else:
        if msg.ephemeral is not None:
            raise InvalidArgumentError("ClientFinish has no ephemeral field")
        sub_f = m.client_finish
        sub_f.SetInParent()
        if msg.static is not None:
            sub_f.static = msg.static
        if msg.payload is not None:
            sub_f.payload = msg.payload
    out: bytes = m.SerializeToString(deterministic=True)
    return out


def decode_handshake(kind: HandshakeKind, data: bytes) -> NoiseMessage:
    """Parse a handshake frame that must hold exactly the ``kind`` sub-message."""
    m = noise_pb2.HandshakeMessage()
    try:
        m.ParseFromString(data)
    except DECODE_ERRORS:
        raise HandshakeError("malformed handshake message") from None
    present = [k for k in HandshakeKind if m.HasField(k.value)]
    if present != [kind]:
        raise HandshakeError(f"expected a {kind.value} handshake message")
    if kind is HandshakeKind.CLIENT_FINISH:
        f = m.client_finish
        return NoiseMessage(
            static=bytes(f.static) if f.HasField("static") else None,
            payload=bytes(f.payload) if f.HasField("payload") else None,
        )
    h = m.client_hello if kind is HandshakeKind.CLIENT_HELLO else m.server_hello
    return NoiseMessage(
        ephemeral=bytes(h.ephemeral) if h.HasField("ephemeral") else None,
        static=bytes(h.static) if h.HasField("static") else None,
        payload=bytes(h.payload) if h.HasField("payload") else None,
    )


@final
@dataclass(frozen=True, slots=True)
class ClientPayload:
    """What the client tells the server inside the handshake: its version and user agent."""

    version: tuple[int, int, int] = (0, 1, 0)
    user_agent: str = "wacrypto"

    def __post_init__(self) -> None:
        if len(self.version) != 3 or not all(0 <= v <= _MAX_UINT32 for v in self.version):
            raise InvalidArgumentError("version is three uint32 numbers")
        if len(self.user_agent) > MAX_USER_AGENT_LEN:
            raise InvalidArgumentError("user agent too long")

    def to_bytes(self) -> bytes:
        m = noise_pb2.ClientPayload(
            version_major=self.version[0],
            version_minor=self.version[1],
            version_patch=self.version[2],
            user_agent=self.user_agent,
        )
        out: bytes = m.SerializeToString(deterministic=True)
        return out

    @classmethod
    def from_bytes(cls, data: bytes) -> ClientPayload:
        m = noise_pb2.ClientPayload()
        try:
            m.ParseFromString(data)
        except DECODE_ERRORS:
            raise HandshakeError("malformed client payload") from None
        if not m.HasField("version_major"):
            raise HandshakeError("client payload lacks a version")
        try:
            return cls((m.version_major, m.version_minor, m.version_patch), m.user_agent)
        except InvalidArgumentError as exc:
            raise HandshakeError(f"invalid client payload: {exc}") from None


# --------------------------------------------------------------------------- stanzas
class StreamErrorCode(enum.IntEnum):
    UNKNOWN = 0
    CONFLICT = 1  # replaced by another instance: never auto-reconnect
    LOGGED_OUT = 2  # device logged out / removed: never auto-reconnect
    CLIENT_OUTDATED = 3  # never auto-reconnect
    RESTART_REQUIRED = 4  # reconnect at once
    RATE_LIMITED = 5  # reconnect with an extra penalty


@final
@dataclass(frozen=True, slots=True)
class Ping:
    id: int

    def __post_init__(self) -> None:
        if not 0 <= self.id <= _MAX_UINT64:
            raise InvalidArgumentError("ping id is a uint64")


@final
@dataclass(frozen=True, slots=True)
class Pong:
    id: int

    def __post_init__(self) -> None:
        if not 0 <= self.id <= _MAX_UINT64:
            raise InvalidArgumentError("pong id is a uint64")


@final
@dataclass(frozen=True, slots=True)
class StreamError:
    code: StreamErrorCode
    text: str = ""

    def __post_init__(self) -> None:
        if len(self.text) > MAX_ERROR_TEXT_LEN:
            raise InvalidArgumentError("stream error text too long")


def _check_id(value: str) -> None:
    if not value or len(value) > MAX_STANZA_ID_LEN:
        raise InvalidArgumentError(f"stanza id must be 1..{MAX_STANZA_ID_LEN} characters")


@final
@dataclass(frozen=True, slots=True)
class Message:
    """An application payload; the receiver answers with an :class:`Ack` of the same id once the
    payload is persisted."""

    id: str
    payload: bytes

    def __post_init__(self) -> None:
        _check_id(self.id)


@final
@dataclass(frozen=True, slots=True)
class Ack:
    id: str

    def __post_init__(self) -> None:
        _check_id(self.id)


Stanza = Ping | Pong | StreamError | Message | Ack


def encode_stanza(st: Stanza) -> bytes:
    m = chat_pb2.ChatFrame()
    if type(st) is Message:
        m.message.id = st.id
        m.message.payload = st.payload
    elif type(st) is Ping:
        m.ping.id = st.id
    elif type(st) is Pong:
        m.pong.id = st.id
    elif type(st) is Ack:
        m.ack.id = st.id
    elif type(st) is StreamError:
        m.stream_error.code = int(st.code)  # type: ignore[assignment]
        if st.text:
            m.stream_error.text = st.text
    else:
        raise InvalidArgumentError(f"not a stanza: {type(st).__name__}")
    out: bytes = m.SerializeToString()
    return out


def decode_stanza(data: bytes) -> Stanza:
    """Parse one decrypted frame; raises only :class:`FrameError`."""
    m = chat_pb2.ChatFrame()
    try:
        m.ParseFromString(data)
        kind = m.WhichOneof("kind")
        if kind == "message":
            return Message(m.message.id, bytes(m.message.payload))
        if kind == "ping":
            return Ping(m.ping.id)
        if kind == "pong":
            return Pong(m.pong.id)
        if kind == "ack":
            return Ack(m.ack.id)
        if kind == "stream_error":
            e = m.stream_error
            code = StreamErrorCode(e.code) if e.HasField("code") else StreamErrorCode.UNKNOWN
            return StreamError(code, e.text)
    except DECODE_ERRORS + (InvalidArgumentError,):
        raise FrameError("malformed chat frame") from None
    raise FrameError("chat frame holds no known stanza")
