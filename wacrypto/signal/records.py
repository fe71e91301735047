"""Typed records in libsignal's storage protobuf layout (sessions, prekeys, signed prekeys).

The protobuf objects stay private; callers see these classes and bytes.
"""

from __future__ import annotations

from typing import final

from google.protobuf.message import DecodeError, Message

from wacrypto._proto import storage_pb2 as _pb
from wacrypto.errors import InvalidArgumentError, InvalidMessageError
from wacrypto.limits import (
    KEY_TYPE_DJB,
    MAX_ARCHIVED_STATES,
    MAX_PREKEY_ID,
    MAX_RECORD_LEN,
    PRIVATE_KEY_LEN,
    PUBLIC_KEY_LEN,
    SIGNATURE_LEN,
)
from wacrypto.primitives.keys import KeyPair, PrivateKey, PublicKey

SessionState = _pb.SessionStructure
"""Private: one ratchet state (protobuf-backed for fast (de)serialization)."""


def _parse_pb(cls: type[Message], data: bytes, what: str) -> Message:
    if len(data) > MAX_RECORD_LEN:
        raise InvalidMessageError(f"{what}: longer than {MAX_RECORD_LEN} bytes")
    try:
        return cls.FromString(bytes(data))
    except (DecodeError, ValueError, RuntimeError):
        raise InvalidMessageError(f"{what}: malformed protobuf") from None


def _valid_pub(b: bytes) -> bool:
    return len(b) == PUBLIC_KEY_LEN and b[0] == KEY_TYPE_DJB


def validate_state(s: _pb.SessionStructure) -> None:
    """Check that a state has everything a ratchet step needs; raise InvalidMessageError if not."""
    if s.session_version not in (0, 2, 3, 4):
        raise InvalidMessageError(f"session state: unsupported version {s.session_version}")
    if not _valid_pub(s.local_identity_public) or not _valid_pub(s.remote_identity_public):
        raise InvalidMessageError("session state: bad identity key")
    if len(s.root_key) != 32:
        raise InvalidMessageError("session state: bad root key")
    if s.HasField("sender_chain"):
        c = s.sender_chain
        if not _valid_pub(c.sender_ratchet_key) or len(c.sender_ratchet_key_private) != PRIVATE_KEY_LEN:
            raise InvalidMessageError("session state: bad sender ratchet key")
        if len(c.chain_key.key) != 32:
            raise InvalidMessageError("session state: bad sender chain key")
    for c in s.receiver_chains:
        if not _valid_pub(c.sender_ratchet_key) or len(c.chain_key.key) != 32:
            raise InvalidMessageError("session state: bad receiver chain")
        for mk in c.message_keys:
            if len(mk.seed) != 32 and not (len(mk.cipher_key) == 32 and len(mk.mac_key) == 32 and len(mk.iv) == 16):
                raise InvalidMessageError("session state: bad stored message key")
    if s.HasField("pending_pre_key") and not _valid_pub(s.pending_pre_key.base_key):
        raise InvalidMessageError("session state: bad pending prekey")
    if s.alice_base_key and not _valid_pub(s.alice_base_key):
        raise InvalidMessageError("session state: bad base key")


@final
class SessionRecord:
    """A session with one peer device: the current state plus up to 40 archived states (newest first).

    ``to_bytes()`` is libsignal's ``RecordStructure``; records of python-axolotl, whatsmeow and
    libsignal load with ``from_bytes()``.
    """

    __slots__ = ("_pb",)

    def __init__(self, pb: _pb.RecordStructure | None = None) -> None:
        self._pb = pb if pb is not None else _pb.RecordStructure()

    @classmethod
    def from_bytes(cls, data: bytes) -> SessionRecord:
        rec = _parse_pb(_pb.RecordStructure, data, "session record")
        assert isinstance(rec, _pb.RecordStructure)
        if rec.HasField("current_session"):
            validate_state(rec.current_session)
        if len(rec.previous_sessions) > MAX_ARCHIVED_STATES:
            del rec.previous_sessions[MAX_ARCHIVED_STATES:]
        return cls(rec)

    @classmethod
    def _trusted(cls, data: bytes) -> SessionRecord:
        """Load bytes we wrote ourselves (skips deep validation; still a full parse)."""
        return cls(_pb.RecordStructure.FromString(data))

    def to_bytes(self) -> bytes:
        return self._pb.SerializeToString()

    def has_current_state(self) -> bool:
        return self._pb.HasField("current_session") and bool(self._pb.current_session.root_key)

    @property
    def current(self) -> _pb.SessionStructure:
        return self._pb.current_session

    @property
    def archived(self) -> list[bytes]:
        return list(self._pb.previous_sessions)

    def archive_current(self) -> None:
        """Move the current state to the archive (front), keeping at most 40."""
        if self.has_current_state():
            self._pb.previous_sessions.insert(0, self._pb.current_session.SerializeToString())
            if len(self._pb.previous_sessions) > MAX_ARCHIVED_STATES:
                del self._pb.previous_sessions[MAX_ARCHIVED_STATES:]
        self._pb.ClearField("current_session")

    def promote(self, state: _pb.SessionStructure) -> None:
        """Make ``state`` current, archiving the present one."""
        self.archive_current()
        self._pb.current_session.CopyFrom(state)

    def promote_archived(self, index: int, state: _pb.SessionStructure) -> None:
        """Archived state ``index`` decrypted as ``state``: it becomes current."""
        del self._pb.previous_sessions[index]
        self.promote(state)

    def remote_identity(self) -> bytes | None:
        return self._pb.current_session.remote_identity_public if self.has_current_state() else None

    def remote_registration_id(self) -> int:
        return self._pb.current_session.remote_registration_id

    def has_base_key(self, base_key: bytes) -> bool:
        """True if the current or an archived state was set up with Alice's base key ``base_key``."""
        if self.has_current_state() and self._pb.current_session.alice_base_key == base_key:
            return True
        for raw in self._pb.previous_sessions:
            st = _pb.SessionStructure.FromString(raw)
            if st.alice_base_key == base_key:
                return True
        return False

    def __repr__(self) -> str:
        return f"SessionRecord(current={self.has_current_state()}, archived={len(self._pb.previous_sessions)})"


@final
class PreKeyRecord:
    """A one-time prekey (24-bit id)."""

    __slots__ = ("id", "key_pair")

    def __init__(self, id: int, key_pair: KeyPair) -> None:
        if not 0 <= id <= MAX_PREKEY_ID:
            raise InvalidArgumentError("prekey id must fit in 24 bits")
        self.id = id
        self.key_pair = key_pair

    def to_bytes(self) -> bytes:
        return _pb.PreKeyRecordStructure(
            id=self.id, public_key=self.key_pair.public.to_bytes(), private_key=self.key_pair.private.to_bytes()
        ).SerializeToString()

    @classmethod
    def from_bytes(cls, data: bytes, *, trusted: bool = False) -> PreKeyRecord:
        """``trusted``: a record we wrote; take its stored public key instead of recomputing it."""
        m = _parse_pb(_pb.PreKeyRecordStructure, data, "prekey record")
        assert isinstance(m, _pb.PreKeyRecordStructure)
        if len(m.private_key) != PRIVATE_KEY_LEN or m.id > MAX_PREKEY_ID:
            raise InvalidMessageError("prekey record: bad private key or id")
        return cls(m.id, _pair(m.private_key, m.public_key, trusted))

    def __repr__(self) -> str:
        return f"PreKeyRecord(id={self.id})"


@final
class SignedPreKeyRecord:
    """A signed prekey: key pair, XEdDSA signature over the 33-byte public key, creation time (ms)."""

    __slots__ = ("id", "key_pair", "signature", "timestamp")

    def __init__(self, id: int, key_pair: KeyPair, signature: bytes, timestamp: int) -> None:
        if not 0 <= id <= MAX_PREKEY_ID:
            raise InvalidArgumentError("signed prekey id must fit in 24 bits")
        if len(signature) != SIGNATURE_LEN:
            raise InvalidArgumentError("signature must be 64 bytes")
        self.id = id
        self.key_pair = key_pair
        self.signature = signature
        self.timestamp = timestamp

    def to_bytes(self) -> bytes:
        return _pb.SignedPreKeyRecordStructure(
            id=self.id,
            public_key=self.key_pair.public.to_bytes(),
            private_key=self.key_pair.private.to_bytes(),
            signature=self.signature,
            timestamp=self.timestamp,
        ).SerializeToString()

    @classmethod
    def from_bytes(cls, data: bytes, *, trusted: bool = False) -> SignedPreKeyRecord:
        """``trusted``: a record we wrote; take its stored public key instead of recomputing it."""
        m = _parse_pb(_pb.SignedPreKeyRecordStructure, data, "signed prekey record")
        assert isinstance(m, _pb.SignedPreKeyRecordStructure)
        if len(m.private_key) != PRIVATE_KEY_LEN or len(m.signature) != SIGNATURE_LEN or m.id > MAX_PREKEY_ID:
            raise InvalidMessageError("signed prekey record: bad field")
        return cls(m.id, _pair(m.private_key, m.public_key, trusted), m.signature, m.timestamp)

    def __repr__(self) -> str:
        return f"SignedPreKeyRecord(id={self.id}, timestamp={self.timestamp})"


def identity_to_bytes(pair: KeyPair) -> bytes:
    """Serialize an identity key pair (``IdentityKeyPairStructure``)."""
    return _pb.IdentityKeyPairStructure(
        public_key=pair.public.to_bytes(), private_key=pair.private.to_bytes()
    ).SerializeToString()


def _pair(private: bytes, public: bytes, trusted: bool) -> KeyPair:
    if trusted and len(public) == PUBLIC_KEY_LEN and public[0] == KEY_TYPE_DJB:
        return KeyPair._trusted(PrivateKey(private), PublicKey(public[1:]))
    return KeyPair(PrivateKey(private))


def identity_from_bytes(data: bytes, *, trusted: bool = False) -> KeyPair:
    """``trusted``: our own stored identity; take its public key instead of recomputing it."""
    m = _parse_pb(_pb.IdentityKeyPairStructure, data, "identity key pair")
    assert isinstance(m, _pb.IdentityKeyPairStructure)
    if len(m.private_key) != PRIVATE_KEY_LEN:
        raise InvalidMessageError("identity key pair: bad private key")
    if trusted:
        return _pair(m.private_key, m.public_key, True)
    pair = KeyPair(PrivateKey(m.private_key))
    if m.public_key and PublicKey.from_bytes(m.public_key) != pair.public:
        raise InvalidMessageError("identity key pair: public key does not match private key")
    return pair
