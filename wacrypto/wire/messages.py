"""Signal v3 wire messages (WhatsApp flavour): parse fully in ``from_bytes``, emit canonically.

Parsing untrusted bytes raises only :class:`~wacrypto.errors.PeerError` subclasses.
"""

from __future__ import annotations

import hmac
from typing import Final, final

from google.protobuf.message import DecodeError, Message

from wacrypto._proto import signal_wire_pb2 as _pb
from wacrypto.errors import InvalidMessageError, LegacyMessageError
from wacrypto.limits import (
    CIPHERTEXT_VERSION,
    KEY_TYPE_DJB,
    MAC_LEN,
    MAX_COUNTER,
    MAX_MESSAGE_LEN,
    MAX_PREKEY_ID,
    PUBLIC_KEY_LEN,
    SIGNATURE_LEN,
    SUPPORTED_VERSIONS,
)
from wacrypto.wire.codec import field_bytes, varint

VERSION_BYTE: Final = bytes(((CIPHERTEXT_VERSION << 4) | CIPHERTEXT_VERSION,))

_T1: Final = b"\x0a"  # field 1, length-delimited
_T2B: Final = b"\x12"  # field 2, length-delimited
_T3B: Final = b"\x1a"
_T4B: Final = b"\x22"
_T1V: Final = b"\x08"  # field 1, varint
_T2V: Final = b"\x10"
_T3V: Final = b"\x18"
_T5V: Final = b"\x28"
_T6V: Final = b"\x30"


def _check_version(data: bytes, what: str) -> int:
    if not data:
        raise InvalidMessageError(f"{what}: empty")
    if len(data) > MAX_MESSAGE_LEN:
        raise InvalidMessageError(f"{what}: longer than {MAX_MESSAGE_LEN} bytes")
    v = data[0] >> 4
    if v not in SUPPORTED_VERSIONS:
        raise LegacyMessageError(f"{what}: unsupported version {v}")
    return v


def _check_key(key: bytes, what: str) -> bytes:
    if len(key) != PUBLIC_KEY_LEN or key[0] != KEY_TYPE_DJB:
        raise InvalidMessageError(f"{what} is not a 33-byte Curve25519 public key")
    return key


def _parse(cls: type[Message], body: bytes, what: str) -> Message:
    try:
        return cls.FromString(body)
    except (DecodeError, ValueError, RuntimeError):
        raise InvalidMessageError(f"{what}: malformed protobuf") from None


def encode_signal_body(ratchet_key: bytes, counter: int, previous_counter: int, ciphertext: bytes) -> bytes:
    """Canonical protobuf of a SignalMessage (without version byte and MAC)."""
    return b"".join(
        (
            _T1,
            varint(len(ratchet_key)),
            ratchet_key,
            _T2V,
            varint(counter),
            _T3V,
            varint(previous_counter),
            _T4B,
            varint(len(ciphertext)),
            ciphertext,
        )
    )


def encode_prekey_message(
    registration_id: int,
    pre_key_id: int | None,
    signed_pre_key_id: int,
    base_key: bytes,
    identity_key: bytes,
    inner: bytes,
) -> bytes:
    """Canonical ``version || protobuf`` of a PreKeySignalMessage (fields in number order)."""
    parts = []
    if pre_key_id is not None:
        parts.append(_T1V + varint(pre_key_id))
    parts.append(field_bytes(_T2B, base_key))
    parts.append(field_bytes(_T3B, identity_key))
    parts.append(field_bytes(_T4B, inner))
    parts.append(_T5V + varint(registration_id))
    parts.append(_T6V + varint(signed_pre_key_id))
    return VERSION_BYTE + b"".join(parts)


@final
class SignalMessage:
    """A ratchet message: ``version || protobuf || mac8``."""

    __slots__ = ("version", "ratchet_key", "counter", "previous_counter", "ciphertext", "serialized")

    def __init__(
        self,
        version: int,
        ratchet_key: bytes,
        counter: int,
        previous_counter: int,
        ciphertext: bytes,
        serialized: bytes,
    ) -> None:
        self.version = version
        self.ratchet_key = ratchet_key
        self.counter = counter
        self.previous_counter = previous_counter
        self.ciphertext = ciphertext
        self.serialized = serialized

    @classmethod
    def from_bytes(cls, data: bytes) -> SignalMessage:
        data = bytes(data)
        v = _check_version(data, "SignalMessage")
        if len(data) < 1 + MAC_LEN + 1:
            raise InvalidMessageError("SignalMessage: too short")
        m = _parse(_pb.SignalMessage, data[1:-MAC_LEN], "SignalMessage")
        assert isinstance(m, _pb.SignalMessage)
        if not (m.HasField("ratchet_key") and m.HasField("counter") and m.HasField("ciphertext")):
            raise InvalidMessageError("SignalMessage: missing field")
        ct = m.ciphertext
        if not ct or len(ct) % 16:
            raise InvalidMessageError("SignalMessage: ciphertext is not whole AES blocks")
        return cls(v, _check_key(m.ratchet_key, "ratchet key"), m.counter, m.previous_counter, ct, data)

    def to_bytes(self) -> bytes:
        return self.serialized

    @property
    def mac(self) -> bytes:
        return self.serialized[-MAC_LEN:]

    @property
    def mac_input(self) -> bytes:
        """The bytes covered by the MAC (as received: version byte and protobuf)."""
        return self.serialized[:-MAC_LEN]

    def verify_mac(self, expected: bytes) -> bool:
        return hmac.compare_digest(self.serialized[-MAC_LEN:], expected[:MAC_LEN])

    def __repr__(self) -> str:
        return f"SignalMessage(v={self.version}, counter={self.counter}, len={len(self.serialized)})"


@final
class PreKeySignalMessage:
    """The first messages of a session: X3DH parameters around an inner :class:`SignalMessage`."""

    __slots__ = (
        "version",
        "registration_id",
        "pre_key_id",
        "signed_pre_key_id",
        "base_key",
        "identity_key",
        "message",
        "serialized",
    )

    def __init__(
        self,
        version: int,
        registration_id: int,
        pre_key_id: int | None,
        signed_pre_key_id: int,
        base_key: bytes,
        identity_key: bytes,
        message: SignalMessage,
        serialized: bytes,
    ) -> None:
        self.version = version
        self.registration_id = registration_id
        self.pre_key_id = pre_key_id
        self.signed_pre_key_id = signed_pre_key_id
        self.base_key = base_key
        self.identity_key = identity_key
        self.message = message
        self.serialized = serialized

    @classmethod
    def create(
        cls,
        registration_id: int,
        pre_key_id: int | None,
        signed_pre_key_id: int,
        base_key: bytes,
        identity_key: bytes,
        message: SignalMessage,
    ) -> PreKeySignalMessage:
        ser = encode_prekey_message(
            registration_id, pre_key_id, signed_pre_key_id, base_key, identity_key, message.serialized
        )
        return cls(CIPHERTEXT_VERSION, registration_id, pre_key_id, signed_pre_key_id, base_key, identity_key, message, ser)

    @classmethod
    def from_bytes(cls, data: bytes) -> PreKeySignalMessage:
        data = bytes(data)
        v = _check_version(data, "PreKeySignalMessage")
        m = _parse(_pb.PreKeySignalMessage, data[1:], "PreKeySignalMessage")
        assert isinstance(m, _pb.PreKeySignalMessage)
        if not (
            m.HasField("signed_pre_key_id")
            and m.HasField("base_key")
            and m.HasField("identity_key")
            and m.HasField("message")
        ):
            raise InvalidMessageError("PreKeySignalMessage: missing field")
        if m.signed_pre_key_id > MAX_PREKEY_ID or (m.HasField("pre_key_id") and m.pre_key_id > MAX_PREKEY_ID):
            raise InvalidMessageError("PreKeySignalMessage: prekey id out of range")
        inner = SignalMessage.from_bytes(m.message)
        if inner.version != v:
            raise InvalidMessageError("PreKeySignalMessage: inner message version differs")
        return cls(
            v,
            m.registration_id,
            m.pre_key_id if m.HasField("pre_key_id") else None,
            m.signed_pre_key_id,
            _check_key(m.base_key, "base key"),
            _check_key(m.identity_key, "identity key"),
            inner,
            data,
        )

    def to_bytes(self) -> bytes:
        return self.serialized

    def __repr__(self) -> str:
        return (
            f"PreKeySignalMessage(v={self.version}, registration_id={self.registration_id}, "
            f"pre_key_id={self.pre_key_id}, signed_pre_key_id={self.signed_pre_key_id})"
        )


@final
class SenderKeyMessage:
    """A group message: ``version || protobuf || xeddsa_signature64`` (WhatsApp format)."""

    __slots__ = ("version", "key_id", "iteration", "ciphertext", "serialized")

    def __init__(self, version: int, key_id: int, iteration: int, ciphertext: bytes, serialized: bytes) -> None:
        self.version = version
        self.key_id = key_id
        self.iteration = iteration
        self.ciphertext = ciphertext
        self.serialized = serialized

    @staticmethod
    def encode_body(key_id: int, iteration: int, ciphertext: bytes) -> bytes:
        """``version || protobuf``: the bytes the signature covers."""
        return b"".join(
            (VERSION_BYTE, _T1V, varint(key_id), _T2V, varint(iteration), field_bytes(_T3B, ciphertext))
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> SenderKeyMessage:
        data = bytes(data)
        v = _check_version(data, "SenderKeyMessage")
        if len(data) < 1 + SIGNATURE_LEN + 1:
            raise InvalidMessageError("SenderKeyMessage: too short")
        m = _parse(_pb.SenderKeyMessage, data[1:-SIGNATURE_LEN], "SenderKeyMessage")
        assert isinstance(m, _pb.SenderKeyMessage)
        if not (m.HasField("id") and m.HasField("iteration") and m.HasField("ciphertext")):
            raise InvalidMessageError("SenderKeyMessage: missing field")
        if not m.ciphertext or len(m.ciphertext) % 16:
            raise InvalidMessageError("SenderKeyMessage: ciphertext is not whole AES blocks")
        return cls(v, m.id, m.iteration, m.ciphertext, data)

    @property
    def signed_part(self) -> bytes:
        return self.serialized[:-SIGNATURE_LEN]

    @property
    def signature(self) -> bytes:
        return self.serialized[-SIGNATURE_LEN:]

    def to_bytes(self) -> bytes:
        return self.serialized

    def __repr__(self) -> str:
        return f"SenderKeyMessage(id={self.key_id}, iteration={self.iteration}, len={len(self.serialized)})"


@final
class SenderKeyDistributionMessage:
    """Carries a sender's chain key and signing key to a group member (inside a pairwise session)."""

    __slots__ = ("version", "key_id", "iteration", "chain_key", "signing_key", "serialized")

    def __init__(
        self, version: int, key_id: int, iteration: int, chain_key: bytes, signing_key: bytes, serialized: bytes
    ) -> None:
        self.version = version
        self.key_id = key_id
        self.iteration = iteration
        self.chain_key = chain_key
        self.signing_key = signing_key
        self.serialized = serialized

    @classmethod
    def create(cls, key_id: int, iteration: int, chain_key: bytes, signing_key: bytes) -> SenderKeyDistributionMessage:
        ser = b"".join(
            (
                VERSION_BYTE,
                _T1V,
                varint(key_id),
                _T2V,
                varint(iteration),
                field_bytes(_T3B, chain_key),
                field_bytes(_T4B, signing_key),
            )
        )
        return cls(CIPHERTEXT_VERSION, key_id, iteration, chain_key, signing_key, ser)

    @classmethod
    def from_bytes(cls, data: bytes) -> SenderKeyDistributionMessage:
        data = bytes(data)
        v = _check_version(data, "SenderKeyDistributionMessage")
        m = _parse(_pb.SenderKeyDistributionMessage, data[1:], "SenderKeyDistributionMessage")
        assert isinstance(m, _pb.SenderKeyDistributionMessage)
        if not (m.HasField("id") and m.HasField("iteration") and m.HasField("chain_key") and m.HasField("signing_key")):
            raise InvalidMessageError("SenderKeyDistributionMessage: missing field")
        if len(m.chain_key) != 32:
            raise InvalidMessageError("SenderKeyDistributionMessage: chain key must be 32 bytes")
        if m.iteration > MAX_COUNTER:
            raise InvalidMessageError("SenderKeyDistributionMessage: iteration out of range")
        return cls(v, m.id, m.iteration, m.chain_key, _check_key(m.signing_key, "signing key"), data)

    def to_bytes(self) -> bytes:
        return self.serialized

    def __repr__(self) -> str:
        return f"SenderKeyDistributionMessage(id={self.key_id}, iteration={self.iteration})"
