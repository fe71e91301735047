"""Typed wire messages of the chat transport. Raw protobuf stays inside this module.

* handshake messages (``HandshakeMessage`` with exactly one of client_hello / server_hello /
  client_finish) <-> :class:`~wacrypto.transport.noise.NoiseMessage`;
* :class:`ClientPayload`, the client's encrypted handshake payload;
* chat stanzas carried in transport frames, one WABinary node each (``docs/chat-protocol.md``):
  :class:`Ping`, :class:`Pong`, :class:`StreamError` (the transport's own), :class:`Message` and
  :class:`Ack` (the relay of our own envelopes, ``<message type="relay">``), and any other
  :class:`~wacrypto.wire.binary.Node` (the WhatsApp stanzas, handled above the transport).

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
from wacrypto._proto import noise_pb2
from wacrypto.errors import FrameError, HandshakeError, InvalidArgumentError, InvalidMessageError
from wacrypto.wire.binary import Node, decode_node, encode_node
from wacrypto.wire.stream_error import StreamCode, conflict_type, parse_stream_error, stream_error_node
from wacrypto.transport.noise import NoiseMessage

__all__ = [
    "Ack",
    "ClientPayload",
    "EncodedNode",
    "HandshakeKind",
    "Node",
    "PING_ID_PREFIX",
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
    "node_stanza",
    "stanza_node",
]

MAX_STANZA_ID_LEN: Final = _limits.MAX_STANZA_ID_LEN
MAX_USER_AGENT_LEN: Final = _limits.MAX_USER_AGENT_LEN
MAX_ERROR_TEXT_LEN: Final = _limits.MAX_ERROR_TEXT_LEN
MAX_USERNAME_LEN: Final = 64
MAX_STRIPES: Final = _limits.MAX_STRIPES
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
    """What the client tells the server inside the handshake: its version and user agent, and the
    account (``username`` at ``server``) and ``device`` it logs in as (empty: an anonymous relay client),
    and for a device served by several worker processes, the ``stripe`` of ``stripes`` of its chats this
    connection serves (:mod:`wacrypto.whatsapp.stripes`; 0 of 1: all of them)."""

    version: tuple[int, int, int] = (0, 1, 0)
    user_agent: str = "wacrypto"
    username: str = ""
    server: str = ""
    device: int = 0
    stripe: int = 0
    stripes: int = 1

    def __post_init__(self) -> None:
        if len(self.version) != 3 or not all(0 <= v <= _MAX_UINT32 for v in self.version):
            raise InvalidArgumentError("version is three uint32 numbers")
        if len(self.user_agent) > MAX_USER_AGENT_LEN:
            raise InvalidArgumentError("user agent too long")
        if len(self.username) > MAX_USERNAME_LEN or len(self.server) > MAX_USERNAME_LEN:
            raise InvalidArgumentError("username or server too long")
        if not 0 <= self.device <= 0xFFFF:
            raise InvalidArgumentError("device is a number 0..65535")
        if not (1 <= self.stripes <= MAX_STRIPES and 0 <= self.stripe < self.stripes):
            raise InvalidArgumentError(f"stripe is 0..stripes-1 of stripes 1..{MAX_STRIPES}")

    def to_bytes(self) -> bytes:
        m = noise_pb2.ClientPayload(
            version_major=self.version[0],
            version_minor=self.version[1],
            version_patch=self.version[2],
            user_agent=self.user_agent,
        )
        if self.username:
            m.username = self.username
            m.server = self.server
            m.device = self.device
            if self.stripes > 1:
                m.stripe = self.stripe
                m.stripes = self.stripes
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
            return cls((m.version_major, m.version_minor, m.version_patch), m.user_agent, m.username, m.server,
                       m.device, m.stripe, m.stripes if m.HasField("stripes") else 1)
        except InvalidArgumentError as exc:
            raise HandshakeError(f"invalid client payload: {exc}") from None


# --------------------------------------------------------------------------- stanzas
StreamErrorCode = StreamCode  # the codes' one table: wacrypto/wire/stream_error.py


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


@final
@dataclass(frozen=True, slots=True)
class EncodedNode:
    """A WhatsApp stanza already encoded (WABinary node bytes, as an outbox keeps it): sent as it
    is, not decoded and encoded again. ``tag`` is the node's tag; ``answered``: the peer answers it
    (the dead-socket rule applies). Only ever sent; received frames are decoded."""

    data: bytes
    tag: str
    answered: bool

    def __repr__(self) -> str:  # the bytes hold ciphertext and identities: never shown
        return f"EncodedNode(<{self.tag}> {len(self.data)} bytes)"


Stanza = Ping | Pong | StreamError | Message | Ack | Node | EncodedNode

PING_ID_PREFIX: Final = "ping."
_SERVER: Final = "s.whatsapp.net"


def _ping_id(text: str | None) -> int | None:
    """The number of a transport ping id ``ping.<n>``, or None for any other id."""
    if text is None or not text.startswith(PING_ID_PREFIX):
        return None
    digits = text[len(PING_ID_PREFIX):]
    if not digits.isdigit() or not digits.isascii() or len(digits) > 20:
        return None
    n = int(digits)
    return n if n <= _MAX_UINT64 else None


def stanza_node(st: Stanza) -> Node:
    """The WABinary node of a stanza (see docs/chat-protocol.md)."""
    t = type(st)
    if t is Node:
        assert isinstance(st, Node)
        return st
    if t is Message:
        assert isinstance(st, Message)
        return Node("message", {"id": st.id, "type": "relay"}, st.payload)
    if t is Ack:
        assert isinstance(st, Ack)
        return Node("ack", {"class": "message", "id": st.id})
    if t is Ping:
        assert isinstance(st, Ping)
        return Node("iq", {"id": f"{PING_ID_PREFIX}{st.id}", "type": "get", "xmlns": "w:p", "to": _SERVER},
                    (Node("ping"),))
    if t is Pong:
        assert isinstance(st, Pong)
        return Node("iq", {"id": f"{PING_ID_PREFIX}{st.id}", "type": "result"})
    if t is StreamError:
        assert isinstance(st, StreamError)
        return stream_error_node(st.code, conflict=conflict_type(st.code), text=st.text)
    if t is EncodedNode:
        assert isinstance(st, EncodedNode)
        return decode_node(st.data)
    raise InvalidArgumentError(f"not a stanza: {type(st).__name__}")


def node_stanza(node: Node) -> Stanza:
    """The typed stanza a node stands for, or the node itself (everything the transport does not handle)."""
    tag, attrs = node.tag, node.attrs
    if tag == "iq":
        pid = _ping_id(attrs.get("id"))
        if pid is not None:
            kind = attrs.get("type")
            if kind == "get" and attrs.get("xmlns") == "w:p" and node.child("ping") is not None:
                return Ping(pid)
            if kind == "result" and node.content is None:
                return Pong(pid)
        return node
    if tag == "message" and attrs.get("type") == "relay" and set(attrs) == {"id", "type"}:
        if isinstance(node.content, bytes):
            return Message(attrs["id"], node.content)
        raise FrameError("relay message without a payload")
    if tag == "ack" and set(attrs) == {"class", "id"} and attrs["class"] == "message" and node.content is None:
        return Ack(attrs["id"])
    if tag == "stream:error":
        end = parse_stream_error(node)
        return StreamError(end.code, end.text)
    return node


def encode_stanza(st: Stanza) -> bytes:
    if type(st) is EncodedNode:
        assert isinstance(st, EncodedNode)
        return st.data
    return encode_node(stanza_node(st))


def decode_stanza(data: bytes) -> Stanza:
    """Parse one decrypted frame; raises only :class:`FrameError`."""
    try:
        return node_stanza(decode_node(data))
    except (InvalidMessageError, InvalidArgumentError) as exc:
        raise FrameError(f"malformed stanza: {exc}") from None
