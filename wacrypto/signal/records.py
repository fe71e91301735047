"""Typed records in libsignal's storage protobuf layout (sessions, prekeys, signed prekeys).

The protobuf objects stay private to this layer: callers (``session/``) see these classes, bytes
and the record-level steps below (:func:`initiate`, :func:`respond`, :func:`decrypt_stored`,
:meth:`SessionRecord.encrypt`, :func:`export_record`), which run the ratchet on the record's states.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import final

from wacrypto._proto import storage_pb2 as _pb
from wacrypto.errors import DecryptionError, DuplicateMessageError, InvalidArgumentError, InvalidMessageError, PeerError
from wacrypto.limits import (
    DEFAULT_MAX_FORWARD_JUMP,
    KEY_TYPE_DJB,
    MAX_ARCHIVED_STATES,
    MAX_PREKEY_ID,
    MAX_RECORD_LEN,
    PRIVATE_KEY_LEN,
    PUBLIC_KEY_LEN,
    SIGNATURE_LEN,
)
from wacrypto.primitives.immutable import Immutable, slot_setters
from wacrypto.primitives.keys import KeyPair, PrivateKey, PublicKey, Rng, system_rng
from wacrypto.primitives.protobuf import DECODE_ERRORS, M, parse_message
from wacrypto.signal import ratchet
from wacrypto.signal.bundle import PreKeyBundle
from wacrypto.wire.messages import PREKEY_TYPE, WHISPER_TYPE, PreKeySignalMessage, SignalMessage, encode_prekey_message

SessionState = _pb.SessionStructure
"""Private: one ratchet state (protobuf-backed for fast (de)serialization)."""


def _parse_pb(cls: type[M], data: bytes, what: str) -> M:
    return parse_message(cls, bytes(data), what, max_len=MAX_RECORD_LEN)


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

    def archived_states(self) -> Iterator[tuple[int, SessionState]]:
        """``(index, state)`` of each archived state that can still send, newest first (parsed copies).

        An archived blob that does not parse is skipped: it can decrypt nothing.
        """
        for i, blob in enumerate(self._pb.previous_sessions):
            try:
                st = _pb.SessionStructure.FromString(blob)
            except DECODE_ERRORS:
                continue
            if st.HasField("sender_chain"):
                yield i, st

    def can_send(self) -> bool:
        """True if the current state has a sending chain."""
        return self.has_current_state() and self._pb.current_session.HasField("sender_chain")

    def encrypt(self, plaintext: bytes) -> tuple[int, bytes]:
        """Encrypt on the current state's sending chain (advancing it): ``(message type, body)``.

        Until the peer has answered, the message is a PreKeySignalMessage (type 3) carrying the
        X3DH parameters; afterwards a SignalMessage (type 2). Raises :class:`InvalidArgumentError`
        if the record cannot send (check :meth:`can_send` first).
        """
        state = self._pb.current_session
        if not state.HasField("sender_chain"):
            raise InvalidArgumentError("session record has no sending chain")
        inner = ratchet.encrypt(state, plaintext)
        if not state.HasField("pending_pre_key"):
            return WHISPER_TYPE, inner
        pk = state.pending_pre_key
        body = encode_prekey_message(
            state.local_registration_id,
            pk.pre_key_id if pk.HasField("pre_key_id") else None,
            pk.signed_pre_key_id,
            pk.base_key,
            state.local_identity_public,
            inner,
        )
        return PREKEY_TYPE, body

    def remote_identity(self) -> bytes | None:
        return self._pb.current_session.remote_identity_public if self.has_current_state() else None

    def remote_registration_id(self) -> int:
        return self._pb.current_session.remote_registration_id

    def has_base_key(self, base_key: bytes) -> bool:
        """True if the current or an archived state was set up with Alice's base key ``base_key``."""
        if self.has_current_state() and self._pb.current_session.alice_base_key == base_key:
            return True
        for raw in self._pb.previous_sessions:
            try:
                st = _pb.SessionStructure.FromString(raw)
            except DECODE_ERRORS:
                continue  # an unreadable archived state was set up with no key we can match
            if st.alice_base_key == base_key:
                return True
        return False

    def __repr__(self) -> str:
        return f"SessionRecord(current={self.has_current_state()}, archived={len(self._pb.previous_sessions)})"


def decrypt_stored(
    raw: bytes,
    message: SignalMessage,
    *,
    max_forward_jump: int = DEFAULT_MAX_FORWARD_JUMP,
    rng: Rng = system_rng,
) -> tuple[bytes, SessionRecord]:
    """Decrypt ``message`` with the stored record ``raw`` (bytes we wrote): ``(plaintext, new record)``.

    Tries the current state, then the archived ones newest first; the state that decrypts becomes
    current. A duplicate raises :class:`DuplicateMessageError` at once; otherwise the current
    state's error is raised unless it is the opaque :class:`DecryptionError` (raised last).
    ``raw`` is never changed: each trial works on a freshly parsed copy.
    """
    rec = SessionRecord._trusted(raw)
    first_error: PeerError | None = None
    if rec.has_current_state():
        try:
            return ratchet.decrypt(rec.current, message, max_forward_jump=max_forward_jump, rng=rng), rec
        except DuplicateMessageError:
            raise
        except PeerError as exc:
            first_error = exc
        rec = SessionRecord._trusted(raw)  # the trial mutated the copy: start again from the bytes
    for i, state in rec.archived_states():
        try:
            pt = ratchet.decrypt(state, message, max_forward_jump=max_forward_jump, rng=rng)
        except DuplicateMessageError:
            raise
        except (PeerError, ValueError, RuntimeError):
            continue
        rec.promote_archived(i, state)
        return pt, rec
    if first_error is not None and not isinstance(first_error, DecryptionError):
        raise first_error
    raise DecryptionError("message could not be decrypted")


def initiate(
    record: SessionRecord,
    *,
    local_identity: KeyPair,
    local_registration_id: int,
    bundle: PreKeyBundle,
    base_priv: bytes,
    timestamp_ms: int,
    rng: Rng = system_rng,
) -> None:
    """X3DH as initiator with a bundle whose signature the caller verified: the new state becomes current.

    Until the peer answers, :meth:`SessionRecord.encrypt` makes PreKeySignalMessages.
    """
    state = ratchet.new_state_alice(
        local_identity_pub=local_identity.public.to_bytes(),
        local_identity_priv=local_identity.private.to_bytes(),
        remote_identity=bundle.identity_key,
        their_signed_prekey=bundle.signed_prekey,
        their_one_time_prekey=bundle.prekey,
        base_priv=base_priv,
        rng=rng,
    )
    pk = state.pending_pre_key
    if bundle.prekey_id is not None:
        pk.pre_key_id = bundle.prekey_id
    pk.signed_pre_key_id = bundle.signed_prekey_id
    pk.base_key = state.alice_base_key
    pk.timestamp = timestamp_ms
    state.remote_registration_id = bundle.registration_id
    state.local_registration_id = local_registration_id
    record.promote(state)


def respond(
    record: SessionRecord,
    message: PreKeySignalMessage,
    *,
    local_identity: KeyPair,
    local_registration_id: int,
    signed_prekey: SignedPreKeyRecord,
    one_time_prekey: PreKeyRecord | None,
    max_forward_jump: int = DEFAULT_MAX_FORWARD_JUMP,
    rng: Rng = system_rng,
) -> bytes:
    """X3DH as responder on a PreKeySignalMessage, then its first decrypt: returns the plaintext.

    On success the new state is current in ``record``; on any error ``record`` is unchanged
    (a key agreement that fails is the opaque :class:`DecryptionError`).
    """
    try:
        state = ratchet.new_state_bob(
            local_identity_pub=local_identity.public.to_bytes(),
            local_identity_priv=local_identity.private.to_bytes(),
            remote_identity=message.identity_key,
            signed_prekey_pub=signed_prekey.key_pair.public.to_bytes(),
            signed_prekey_priv=signed_prekey.key_pair.private.to_bytes(),
            one_time_prekey_priv=one_time_prekey.key_pair.private.to_bytes() if one_time_prekey else None,
            their_base_key=message.base_key,
        )
    except PeerError:
        raise DecryptionError("message could not be decrypted") from None
    state.remote_registration_id = message.registration_id
    state.local_registration_id = local_registration_id
    pt = ratchet.decrypt(state, message.message, max_forward_jump=max_forward_jump, rng=rng)
    record.promote(state)
    return pt


def _expand_message_keys(state: SessionState) -> None:
    for ch in state.receiver_chains:
        for mk in ch.message_keys:
            if mk.seed and not mk.cipher_key:
                mk.cipher_key, mk.mac_key, mk.iv = ratchet.message_keys(mk.seed)


def export_record(raw: bytes) -> bytes:
    """The stored record ``raw`` with cipher/mac/iv next to each stored seed, for peers that read only the expanded form."""
    rec = SessionRecord._trusted(raw)._pb
    if rec.HasField("current_session"):
        _expand_message_keys(rec.current_session)
    for i, blob in enumerate(rec.previous_sessions):
        st = _pb.SessionStructure.FromString(blob)
        _expand_message_keys(st)
        rec.previous_sessions[i] = st.SerializeToString()
    out: bytes = rec.SerializeToString()
    return out


@final
class PreKeyRecord(Immutable):
    """A one-time prekey (24-bit id). Immutable."""

    __slots__ = ("id", "key_pair")
    id: int
    key_pair: KeyPair

    def __init__(self, id: int, key_pair: KeyPair) -> None:
        if not 0 <= id <= MAX_PREKEY_ID:
            raise InvalidArgumentError("prekey id must fit in 24 bits")
        _PK_ID(self, id)
        _PK_PAIR(self, key_pair)

    def __reduce__(self) -> tuple[object, ...]:
        return (PreKeyRecord, (self.id, self.key_pair))

    def to_bytes(self) -> bytes:
        return _pb.PreKeyRecordStructure(
            id=self.id, public_key=self.key_pair.public.to_bytes(), private_key=self.key_pair.private.to_bytes()
        ).SerializeToString()

    @classmethod
    def from_bytes(cls, data: bytes, *, trusted: bool = False) -> PreKeyRecord:
        """``trusted``: a record we wrote; take its stored public key instead of recomputing it."""
        m = _parse_pb(_pb.PreKeyRecordStructure, data, "prekey record")
        if len(m.private_key) != PRIVATE_KEY_LEN or m.id > MAX_PREKEY_ID:
            raise InvalidMessageError("prekey record: bad private key or id")
        return cls(m.id, _pair(m.private_key, m.public_key, trusted))

    def __repr__(self) -> str:
        return f"PreKeyRecord(id={self.id})"


_PK_ID, _PK_PAIR = slot_setters(PreKeyRecord, "id", "key_pair")


@final
class SignedPreKeyRecord(Immutable):
    """A signed prekey: key pair, XEdDSA signature over the 33-byte public key, creation time (ms). Immutable."""

    __slots__ = ("id", "key_pair", "signature", "timestamp")
    id: int
    key_pair: KeyPair
    signature: bytes
    timestamp: int

    def __init__(self, id: int, key_pair: KeyPair, signature: bytes, timestamp: int) -> None:
        if not 0 <= id <= MAX_PREKEY_ID:
            raise InvalidArgumentError("signed prekey id must fit in 24 bits")
        if len(signature) != SIGNATURE_LEN:
            raise InvalidArgumentError("signature must be 64 bytes")
        _SPK_ID(self, id)
        _SPK_PAIR(self, key_pair)
        _SPK_SIG(self, bytes(signature))
        _SPK_TS(self, timestamp)

    def __reduce__(self) -> tuple[object, ...]:
        return (SignedPreKeyRecord, (self.id, self.key_pair, self.signature, self.timestamp))

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
        if len(m.private_key) != PRIVATE_KEY_LEN or len(m.signature) != SIGNATURE_LEN or m.id > MAX_PREKEY_ID:
            raise InvalidMessageError("signed prekey record: bad field")
        return cls(m.id, _pair(m.private_key, m.public_key, trusted), m.signature, m.timestamp)

    def __repr__(self) -> str:
        return f"SignedPreKeyRecord(id={self.id}, timestamp={self.timestamp})"


_SPK_ID, _SPK_PAIR, _SPK_SIG, _SPK_TS = slot_setters(SignedPreKeyRecord, "id", "key_pair", "signature", "timestamp")


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
    if len(m.private_key) != PRIVATE_KEY_LEN:
        raise InvalidMessageError("identity key pair: bad private key")
    if trusted:
        return _pair(m.private_key, m.public_key, True)
    pair = KeyPair(PrivateKey(m.private_key))
    if m.public_key and PublicKey.from_bytes(m.public_key) != pair.public:
        raise InvalidMessageError("identity key pair: public key does not match private key")
    return pair
