"""The application envelope a relaying chatd carries between clients (``proto/chat.proto`` Envelope).

A sender names the recipient by its 32-byte chat key (the Curve25519 static key of its Noise
connection); the server stamps the sender's chat key, as the handshake authenticated it, before it
delivers. The body is a Signal message of ``type`` 3 (PreKeySignalMessage) or 2 (SignalMessage);
the relay does not look inside it, :meth:`Envelope.signal_message` does.
Parsing untrusted bytes raises only :class:`~wacrypto.errors.PeerError` (``from_bytes``:
:class:`~wacrypto.errors.InvalidMessageError`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, final

from google.protobuf.message import DecodeError

from wacrypto._proto import chat_pb2
from wacrypto.errors import InvalidArgumentError, InvalidMessageError
from wacrypto.limits import MAX_MESSAGE_LEN
from wacrypto.wire.messages import PreKeySignalMessage, SignalMessage

__all__ = ["CHAT_KEY_LEN", "PREKEY_MESSAGE_TYPE", "SIGNAL_MESSAGE_TYPE", "Envelope"]

CHAT_KEY_LEN: Final = 32
_TYPES: Final = (2, 3)
SIGNAL_MESSAGE_TYPE: Final = 2
PREKEY_MESSAGE_TYPE: Final = 3


@final
@dataclass(frozen=True, slots=True)
class Envelope:
    recipient: bytes
    type: int
    body: bytes
    sender: bytes | None = None  # set by the server

    def __post_init__(self) -> None:
        if len(self.recipient) != CHAT_KEY_LEN or (self.sender is not None and len(self.sender) != CHAT_KEY_LEN):
            raise InvalidArgumentError("chat keys are 32 bytes")
        if self.type not in _TYPES:
            raise InvalidArgumentError(f"envelope type must be one of {_TYPES}")
        if not self.body or len(self.body) > MAX_MESSAGE_LEN:
            raise InvalidArgumentError(f"envelope body must be 1..{MAX_MESSAGE_LEN} bytes")

    def stamped(self, sender: bytes) -> Envelope:
        """This envelope as the server delivers it: with the authenticated sender's chat key."""
        return Envelope(self.recipient, self.type, self.body, bytes(sender))

    def signal_message(self) -> SignalMessage | PreKeySignalMessage:
        """The body parsed as the Signal message its ``type`` names, without any key or session:
        raises a :class:`~wacrypto.errors.PeerError` if the body is not one at all (such a body
        can never be decrypted, whatever state the recipient fetches later)."""
        if self.type == PREKEY_MESSAGE_TYPE:
            return PreKeySignalMessage.from_bytes(self.body)
        return SignalMessage.from_bytes(self.body)

    def to_bytes(self) -> bytes:
        m = chat_pb2.Envelope(recipient=self.recipient, type=self.type, body=self.body)
        if self.sender is not None:
            m.sender = self.sender
        out: bytes = m.SerializeToString()
        return out

    @classmethod
    def from_bytes(cls, data: bytes) -> Envelope:
        if len(data) > MAX_MESSAGE_LEN + 128:
            raise InvalidMessageError("envelope: too long")
        m = chat_pb2.Envelope()
        try:
            m.ParseFromString(bytes(data))
        except (DecodeError, ValueError, RuntimeError):
            raise InvalidMessageError("envelope: malformed protobuf") from None
        if not (m.HasField("recipient") and m.HasField("type") and m.HasField("body")):
            raise InvalidMessageError("envelope: missing field")
        try:
            return cls(m.recipient, m.type, m.body, m.sender if m.HasField("sender") else None)
        except InvalidArgumentError as exc:
            raise InvalidMessageError(f"envelope: {exc}") from None

    def __repr__(self) -> str:
        return f"Envelope(type={self.type}, len={len(self.body)})"
