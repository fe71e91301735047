"""Signal v3 wire messages (WhatsApp flavour): parse fully in ``from_bytes``, emit canonically.

Parsing untrusted bytes raises only :class:`~wacrypto.errors.PeerError` subclasses.

The message types are immutable and their ``serialized`` bytes always are the message: an instance
comes only from ``from_bytes`` (the fields are read from the bytes) or from ``create`` (the bytes
are encoded from the fields); calling the class itself raises :class:`InvalidArgumentError`.
Copies and pickles re-parse the bytes.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any, ClassVar, Final, Self, final

from wacrypto._proto import signal_wire_pb2 as _pb
from wacrypto.errors import InvalidArgumentError, InvalidMessageError, LegacyMessageError
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
from wacrypto.primitives.immutable import Immutable, slot_setters
from wacrypto.primitives.protobuf import M, parse_message
from wacrypto.wire.codec import field_bytes, varint

VERSION_BYTE: Final = bytes(((CIPHERTEXT_VERSION << 4) | CIPHERTEXT_VERSION,))
WHISPER_TYPE: Final = 2
"""Envelope type of a :class:`SignalMessage` (1 is read as 2)."""
PREKEY_TYPE: Final = 3
"""Envelope type of a :class:`PreKeySignalMessage`."""
_new = object.__new__

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


def _parse_ciphertext_message(
    cls: type[M], data: bytes, trailer: int, what: str, first: str, second: str
) -> tuple[int, M]:
    """(version, protobuf) of ``version || protobuf || trailer`` (a MAC or a signature of ``trailer`` bytes).

    Fields ``first``, ``second`` and ``ciphertext`` must be present (zero counters are encoded, so
    present means sent) and the ciphertext must be whole AES blocks.
    """
    v = _check_version(data, what)
    if len(data) < 1 + trailer + 1:
        raise InvalidMessageError(f"{what}: too short")
    m = parse_message(cls, data[1:-trailer], what)
    if not (m.HasField(first) and m.HasField(second) and m.HasField("ciphertext")):
        raise InvalidMessageError(f"{what}: missing field")
    ct = m.ciphertext  # type: ignore[attr-defined]
    if not ct or len(ct) % 16:
        raise InvalidMessageError(f"{what}: ciphertext is not whole AES blocks")
    return v, m


class _WireMessage(Immutable):
    """Shared behaviour of the wire types: no public constructor, value semantics on the bytes."""

    __slots__ = ()
    serialized: bytes
    _setters: ClassVar[tuple[Callable[[Any, Any], None], ...]] = ()  # the slots' setters, in __slots__ order

    @classmethod
    def _make(cls, *fields: object) -> Self:
        """The trusted constructor (``from_bytes`` and ``create`` only): fields in ``__slots__`` order."""
        self = _new(cls)
        for set_field, value in zip(cls._setters, fields, strict=True):
            set_field(self, value)
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise InvalidArgumentError(
            f"{type(self).__name__} is made by {type(self).__name__}.from_bytes() (or .create()), "
            "so that its bytes and its fields always agree"
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Any:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        return self.serialized

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self).from_bytes, (self.serialized,))

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _WireMessage)
        return self.serialized == other.serialized

    def __hash__(self) -> int:
        return hash(self.serialized)


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
class SignalMessage(_WireMessage):
    """A ratchet message: ``version || protobuf || mac8``. Made by :meth:`from_bytes`; immutable."""

    __slots__ = ("version", "ratchet_key", "counter", "previous_counter", "ciphertext", "serialized")
    version: int
    ratchet_key: bytes
    counter: int
    previous_counter: int
    ciphertext: bytes

    @classmethod
    def from_bytes(cls, data: bytes) -> SignalMessage:
        data = bytes(data)
        v, m = _parse_ciphertext_message(_pb.SignalMessage, data, MAC_LEN, "SignalMessage", "ratchet_key", "counter")
        self = _new(cls)  # the setters unrolled: this is the decrypt hot path
        _sm_version(self, v)
        _sm_ratchet_key(self, _check_key(m.ratchet_key, "ratchet key"))
        _sm_counter(self, m.counter)
        _sm_previous_counter(self, m.previous_counter)
        _sm_ciphertext(self, m.ciphertext)
        _sm_serialized(self, data)
        return self

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


SignalMessage._setters = slot_setters(SignalMessage, *SignalMessage.__slots__)
_sm_version, _sm_ratchet_key, _sm_counter, _sm_previous_counter, _sm_ciphertext, _sm_serialized = SignalMessage._setters


@final
class PreKeySignalMessage(_WireMessage):
    """The first messages of a session: X3DH parameters around an inner :class:`SignalMessage`.

    Made by :meth:`from_bytes` or :meth:`create`; immutable.
    """

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
    version: int
    registration_id: int
    pre_key_id: int | None
    signed_pre_key_id: int
    base_key: bytes
    identity_key: bytes
    message: SignalMessage

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
        """Encode a PreKeySignalMessage around ``message`` (the fields are checked as a peer would)."""
        if pre_key_id is not None and not 0 <= pre_key_id <= MAX_PREKEY_ID:
            raise InvalidArgumentError("prekey id out of range")
        if not 0 <= signed_pre_key_id <= MAX_PREKEY_ID or not 0 <= registration_id <= 0xFFFFFFFF:
            raise InvalidArgumentError("signed prekey id or registration id out of range")
        for key in (base_key, identity_key):
            if len(key) != PUBLIC_KEY_LEN or key[0] != KEY_TYPE_DJB:
                raise InvalidArgumentError("base key and identity key must be 33-byte Curve25519 public keys")
        ser = encode_prekey_message(
            registration_id, pre_key_id, signed_pre_key_id, base_key, identity_key, message.serialized
        )
        return cls._make(
            CIPHERTEXT_VERSION, registration_id, pre_key_id, signed_pre_key_id, base_key, identity_key, message, ser
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> PreKeySignalMessage:
        data = bytes(data)
        v = _check_version(data, "PreKeySignalMessage")
        m = parse_message(_pb.PreKeySignalMessage, data[1:], "PreKeySignalMessage")
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
        return cls._make(
            v,
            m.registration_id,
            m.pre_key_id if m.HasField("pre_key_id") else None,
            m.signed_pre_key_id,
            _check_key(m.base_key, "base key"),
            _check_key(m.identity_key, "identity key"),
            inner,
            data,
        )

    def __repr__(self) -> str:
        return (
            f"PreKeySignalMessage(v={self.version}, registration_id={self.registration_id}, "
            f"pre_key_id={self.pre_key_id}, signed_pre_key_id={self.signed_pre_key_id})"
        )


PreKeySignalMessage._setters = slot_setters(PreKeySignalMessage, *PreKeySignalMessage.__slots__)


@final
class SenderKeyMessage(_WireMessage):
    """A group message: ``version || protobuf || xeddsa_signature64`` (WhatsApp format).

    Made by :meth:`from_bytes` (the sender's side encodes with :meth:`encode_body` and signs); immutable.
    """

    __slots__ = ("version", "key_id", "iteration", "ciphertext", "serialized")
    version: int
    key_id: int
    iteration: int
    ciphertext: bytes

    @staticmethod
    def encode_body(key_id: int, iteration: int, ciphertext: bytes) -> bytes:
        """``version || protobuf``: the bytes the signature covers."""
        return b"".join(
            (VERSION_BYTE, _T1V, varint(key_id), _T2V, varint(iteration), field_bytes(_T3B, ciphertext))
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> SenderKeyMessage:
        data = bytes(data)
        v, m = _parse_ciphertext_message(_pb.SenderKeyMessage, data, SIGNATURE_LEN, "SenderKeyMessage", "id", "iteration")
        self = _new(cls)  # the setters unrolled: this is the group decrypt hot path
        _skm_version(self, v)
        _skm_key_id(self, m.id)
        _skm_iteration(self, m.iteration)
        _skm_ciphertext(self, m.ciphertext)
        _skm_serialized(self, data)
        return self

    @property
    def signed_part(self) -> bytes:
        return self.serialized[:-SIGNATURE_LEN]

    @property
    def signature(self) -> bytes:
        return self.serialized[-SIGNATURE_LEN:]

    def __repr__(self) -> str:
        return f"SenderKeyMessage(id={self.key_id}, iteration={self.iteration}, len={len(self.serialized)})"


SenderKeyMessage._setters = slot_setters(SenderKeyMessage, *SenderKeyMessage.__slots__)
_skm_version, _skm_key_id, _skm_iteration, _skm_ciphertext, _skm_serialized = SenderKeyMessage._setters


@final
class SenderKeyDistributionMessage(_WireMessage):
    """Carries a sender's chain key and signing key to a group member (inside a pairwise session).

    Made by :meth:`from_bytes` or :meth:`create`; immutable. Its repr shows no key bytes.
    """

    __slots__ = ("version", "key_id", "iteration", "chain_key", "signing_key", "serialized")
    version: int
    key_id: int
    iteration: int
    chain_key: bytes
    signing_key: bytes

    @classmethod
    def create(cls, key_id: int, iteration: int, chain_key: bytes, signing_key: bytes) -> SenderKeyDistributionMessage:
        """Encode an SKDM (the fields are checked as a receiver would)."""
        if not 0 <= key_id <= 0xFFFFFFFF or not 0 <= iteration <= MAX_COUNTER:
            raise InvalidArgumentError("key id or iteration out of range")
        if len(chain_key) != 32:
            raise InvalidArgumentError("chain key must be 32 bytes")
        if len(signing_key) != PUBLIC_KEY_LEN or signing_key[0] != KEY_TYPE_DJB:
            raise InvalidArgumentError("signing key must be a 33-byte Curve25519 public key")
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
        return cls._make(CIPHERTEXT_VERSION, key_id, iteration, chain_key, signing_key, ser)

    @classmethod
    def from_bytes(cls, data: bytes) -> SenderKeyDistributionMessage:
        data = bytes(data)
        v = _check_version(data, "SenderKeyDistributionMessage")
        m = parse_message(_pb.SenderKeyDistributionMessage, data[1:], "SenderKeyDistributionMessage")
        if not (m.HasField("id") and m.HasField("iteration") and m.HasField("chain_key") and m.HasField("signing_key")):
            raise InvalidMessageError("SenderKeyDistributionMessage: missing field")
        if len(m.chain_key) != 32:
            raise InvalidMessageError("SenderKeyDistributionMessage: chain key must be 32 bytes")
        if m.iteration > MAX_COUNTER:
            raise InvalidMessageError("SenderKeyDistributionMessage: iteration out of range")
        return cls._make(v, m.id, m.iteration, m.chain_key, _check_key(m.signing_key, "signing key"), data)

    def __repr__(self) -> str:
        return f"SenderKeyDistributionMessage(id={self.key_id}, iteration={self.iteration})"


SenderKeyDistributionMessage._setters = slot_setters(SenderKeyDistributionMessage, *SenderKeyDistributionMessage.__slots__)
