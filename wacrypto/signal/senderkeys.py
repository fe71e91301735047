"""Sender keys in WhatsApp's format: records, distribution messages, group encrypt and decrypt.

Pure: records and bytes in, bytes out; randomness is a parameter. The sender-key *name* (group id
plus sender address) belongs to the store layer; here a :class:`SenderKeyRecord` holds up to
:data:`~wacrypto.limits.MAX_SENDER_KEY_STATES` states of one name, newest first, in libsignal's
``SenderKeyRecordStructure`` layout (so python-axolotl and whatsmeow records load).

Chain: ``seed = HMAC(ck, 0x01)``, ``next = HMAC(ck, 0x02)``;
``iv(16) || cipher_key(32) = HKDF(salt = zeros, seed, "WhisperGroup", 48)``.
Message: ``0x33 || protobuf || XEdDSA(signing_priv, 0x33 || protobuf)``.

:func:`encrypt` and :func:`decrypt` mutate the record they are given, and only once everything
has succeeded: decrypt checks the signature first, then the iteration, then the ciphertext, and
only then writes the chain and skipped keys. Callers still hand a freshly parsed copy and persist
it only on success.
"""

from __future__ import annotations

import hmac
from collections import OrderedDict
from typing import Final, final

from wacrypto._proto import storage_pb2 as _pb
from wacrypto.errors import (
    DecryptionError,
    DuplicateMessageError,
    InvalidArgumentError,
    InvalidMessageError,
    InvalidSignatureError,
    NoSenderKeyError,
    TooFarAheadError,
)
from wacrypto.limits import (
    CIPHERTEXT_VERSION,
    DEFAULT_MAX_GROUP_FORWARD_JUMP,
    KEY_TYPE_DJB,
    MAX_COUNTER,
    MAX_FORWARD_JUMP_CEILING,
    MAX_PLAINTEXT_LEN,
    MAX_SENDER_KEY_RECORD_LEN,
    MAX_SENDER_KEY_STATES,
    MAX_SENDER_MESSAGE_KEYS,
    PRIVATE_KEY_LEN,
    PUBLIC_KEY_LEN,
)
from wacrypto.primitives.aes import cbc_decrypt, cbc_encrypt
from wacrypto.primitives.kdf import chain_step, hkdf_info, hkdf_sha256_blocks
from wacrypto.primitives.keys import KeyPair, Rng, system_rng
from wacrypto.primitives.protobuf import parse_message
from wacrypto.primitives.xeddsa import XEdDSASigner, xeddsa_verify
from wacrypto.wire.messages import SenderKeyDistributionMessage, SenderKeyMessage

__all__ = [
    "SenderKeyRecord",
    "SigningKeyCache",
    "create_distribution",
    "decrypt",
    "encrypt",
    "group_message_keys",
    "new_own_record",
    "process_distribution",
]

_State = _pb.SenderKeyStateStructure
_INFO_GROUP: Final = hkdf_info(b"WhisperGroup", 48)
_DJB: Final = bytes((KEY_TYPE_DJB,))
_MAX_KEY_ID: Final = 0x7FFFFFFF  # generated key ids are positive int32 (Java peers use int)


def group_message_keys(seed: bytes) -> tuple[bytes, bytes]:
    """(iv, cipher_key) from a 32-byte message seed: HKDF(zeros, seed, "WhisperGroup", 48)."""
    t1, t2 = hkdf_sha256_blocks(seed, None, _INFO_GROUP)
    return t1[:16], t1[16:] + t2[:16]


@final
class SigningKeyCache:
    """Bounded cache of precomputed XEdDSA signing scalars (owned by one GroupCipher; holds secrets)."""

    __slots__ = ("_max", "_entries")

    def __init__(self, max_entries: int = 64) -> None:
        self._max = max_entries
        self._entries: OrderedDict[bytes, XEdDSASigner] = OrderedDict()

    def get(self, private_key: bytes) -> XEdDSASigner:
        s = self._entries.get(private_key)
        if s is None:
            s = XEdDSASigner(private_key)
            self._entries[private_key] = s
            if len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return s

    def clear(self) -> None:
        self._entries.clear()

    def __repr__(self) -> str:
        return f"SigningKeyCache(entries={len(self._entries)})"


# --------------------------------------------------------------------------- records
def _normalize_public(pub: bytes) -> bytes | None:
    if len(pub) == PUBLIC_KEY_LEN and pub[0] == KEY_TYPE_DJB:
        return pub
    if len(pub) == 32:  # raw u, as some ports store it
        return _DJB + pub
    return None


@final
class SenderKeyRecord:
    """The sender-key states of one (group, sender), newest first, at most 5.

    ``to_bytes()`` is libsignal's ``SenderKeyRecordStructure``; records written by python-axolotl
    and whatsmeow load with ``from_bytes()`` (which validates and trims them to our limits).
    """

    __slots__ = ("_pb",)

    def __init__(self, pb: _pb.SenderKeyRecordStructure | None = None) -> None:
        self._pb = pb if pb is not None else _pb.SenderKeyRecordStructure()

    @classmethod
    def from_bytes(cls, data: bytes) -> SenderKeyRecord:
        """Parse and validate an untrusted record. Raises only :class:`InvalidMessageError`."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidMessageError("sender key record: not bytes")
        rec = parse_message(
            _pb.SenderKeyRecordStructure, bytes(data), "sender key record", max_len=MAX_SENDER_KEY_RECORD_LEN
        )
        states = rec.sender_key_states
        if len(states) > MAX_SENDER_KEY_STATES:
            del states[MAX_SENDER_KEY_STATES:]
        for st in states:
            if not st.HasField("sender_chain_key") or len(st.sender_chain_key.seed) != 32:
                raise InvalidMessageError("sender key record: bad chain key")
            pub = _normalize_public(st.sender_signing_key.public)
            if pub is None:
                raise InvalidMessageError("sender key record: bad signing key")
            st.sender_signing_key.public = pub
            priv = st.sender_signing_key.private
            if priv and len(priv) != PRIVATE_KEY_LEN:
                raise InvalidMessageError("sender key record: bad signing private key")
            mks = st.sender_message_keys
            for mk in mks:
                if len(mk.seed) != 32:
                    raise InvalidMessageError("sender key record: bad stored message key")
            if len(mks) > MAX_SENDER_MESSAGE_KEYS:
                del mks[: len(mks) - MAX_SENDER_MESSAGE_KEYS]
        return cls(rec)

    @classmethod
    def _trusted(cls, data: bytes) -> SenderKeyRecord:
        """Load bytes we wrote ourselves (a full parse, no deep validation)."""
        return cls(_pb.SenderKeyRecordStructure.FromString(data))

    def to_bytes(self) -> bytes:
        out: bytes = self._pb.SerializeToString()
        return out

    def is_empty(self) -> bool:
        return len(self._pb.sender_key_states) == 0

    def key_ids(self) -> list[int]:
        """Key ids of the states, newest first."""
        return [s.sender_key_id for s in self._pb.sender_key_states]

    def _newest(self) -> _State | None:
        states = self._pb.sender_key_states
        first: _State | None = states[0] if len(states) else None
        return first

    def _state(self, key_id: int) -> _State | None:
        for s in self._pb.sender_key_states:
            if s.sender_key_id == key_id:
                return s
        return None

    def _add_state(self, key_id: int, iteration: int, chain_key: bytes, signing_public: bytes, signing_private: bytes | None) -> None:
        states = self._pb.sender_key_states
        st = _State()
        st.sender_key_id = key_id
        st.sender_chain_key.iteration = iteration
        st.sender_chain_key.seed = chain_key
        st.sender_signing_key.public = signing_public
        if signing_private is not None:
            st.sender_signing_key.private = signing_private
        st.message_version = CIPHERTEXT_VERSION
        states.insert(0, st)
        if len(states) > MAX_SENDER_KEY_STATES:
            del states[MAX_SENDER_KEY_STATES:]

    def __repr__(self) -> str:
        return f"SenderKeyRecord(key_ids={self.key_ids()})"


# --------------------------------------------------------------------------- operations
def new_own_record(rng: Rng = system_rng) -> SenderKeyRecord:
    """A fresh own sender key: random key id, chain key and signing key pair, iteration 0."""
    key_id = int.from_bytes(rng(4), "big") & _MAX_KEY_ID
    chain_key = rng(32)
    signing = KeyPair.generate(rng)
    rec = SenderKeyRecord()
    rec._add_state(key_id, 0, chain_key, signing.public.to_bytes(), signing.private.to_bytes())
    return rec


def create_distribution(record: SenderKeyRecord) -> SenderKeyDistributionMessage:
    """The SKDM for the newest state: its key id, current iteration, chain key and signing public key."""
    st = record._newest()
    if st is None:
        raise NoSenderKeyError("no sender key state")
    ck = st.sender_chain_key
    return SenderKeyDistributionMessage.create(st.sender_key_id, ck.iteration, ck.seed, st.sender_signing_key.public)


def process_distribution(record: SenderKeyRecord, skdm: SenderKeyDistributionMessage) -> bool:
    """Install the sender key carried by ``skdm``. Returns True if the record changed.

    An SKDM for a state we already hold (same key id and signing key) changes nothing: replaying
    an old SKDM must not rewind the chain (that would make spent messages decrypt again). An
    SKDM reusing a key id with another signing key replaces that state.
    """
    existing = record._state(skdm.key_id)
    if existing is not None:
        if hmac.compare_digest(existing.sender_signing_key.public, skdm.signing_key):
            return False
        states = record._pb.sender_key_states
        for i, s in enumerate(states):
            if s.sender_key_id == skdm.key_id:
                del states[i]
                break
    record._add_state(skdm.key_id, skdm.iteration, skdm.chain_key, skdm.signing_key, None)
    return True


def encrypt(
    record: SenderKeyRecord,
    plaintext: bytes,
    *,
    rng: Rng = system_rng,
    signers: SigningKeyCache | None = None,
) -> bytes:
    """Encrypt with the newest (own) state and advance its chain. Returns the SenderKeyMessage bytes."""
    if len(plaintext) > MAX_PLAINTEXT_LEN:
        raise InvalidArgumentError(f"plaintext longer than {MAX_PLAINTEXT_LEN} bytes")
    st = record._newest()
    if st is None:
        raise NoSenderKeyError("no sender key state")
    priv = st.sender_signing_key.private
    if len(priv) != PRIVATE_KEY_LEN:
        raise NoSenderKeyError("this sender key has no signing private key (it is not our own)")
    ck = st.sender_chain_key
    iteration = ck.iteration
    if iteration >= MAX_COUNTER:
        raise NoSenderKeyError("sender key chain exhausted: rotate it")
    seed, next_key = chain_step(ck.seed)
    iv, key = group_message_keys(seed)
    body = SenderKeyMessage.encode_body(st.sender_key_id, iteration, cbc_encrypt(key, iv, plaintext))
    signer = signers.get(priv) if signers is not None else XEdDSASigner(priv)
    signature = signer.sign(body, rng(64))
    ck.seed = next_key
    ck.iteration = iteration + 1
    return body + signature


def decrypt(
    record: SenderKeyRecord,
    message: SenderKeyMessage,
    *,
    max_forward_jump: int = DEFAULT_MAX_GROUP_FORWARD_JUMP,
    max_message_keys: int = MAX_SENDER_MESSAGE_KEYS,
) -> bytes:
    """Decrypt ``message``; on success update the chain and skipped keys of ``record``.

    Order of checks: state for the key id (:class:`NoSenderKeyError`), signature
    (:class:`InvalidSignatureError`), iteration (:class:`DuplicateMessageError` for a spent or
    forgotten one, :class:`TooFarAheadError` beyond ``max_forward_jump``), ciphertext
    (:class:`DecryptionError`, opaque). Any error leaves ``record`` untouched.
    """
    if not 0 <= max_forward_jump <= MAX_FORWARD_JUMP_CEILING:
        raise InvalidArgumentError(f"max_forward_jump must be in 0..{MAX_FORWARD_JUMP_CEILING}")
    if not 0 <= max_message_keys <= MAX_SENDER_MESSAGE_KEYS:
        raise InvalidArgumentError(f"max_message_keys must be in 0..{MAX_SENDER_MESSAGE_KEYS}")
    st = record._state(message.key_id)
    if st is None:
        raise NoSenderKeyError(f"no sender key state for key id {message.key_id}")
    if not xeddsa_verify(st.sender_signing_key.public, message.signed_part, message.signature):
        raise InvalidSignatureError("sender key message signature does not verify")
    ck = st.sender_chain_key
    current = ck.iteration
    target = message.iteration
    if target >= MAX_COUNTER:
        raise TooFarAheadError("group message iteration out of range")
    mks = st.sender_message_keys
    if target < current:
        for i, mk in enumerate(mks):
            if mk.iteration == target:
                iv, key = group_message_keys(mk.seed)
                pt = cbc_decrypt(key, iv, message.ciphertext)
                if pt is None:
                    raise DecryptionError("message could not be decrypted")
                del mks[i]
                return pt
        raise DuplicateMessageError(f"group message iteration {target} already received (or its key expired)")
    jump = target - current
    if jump > max_forward_jump:
        raise TooFarAheadError(f"group message iteration jumps {jump} ahead (limit {max_forward_jump})")
    chain_key = ck.seed
    # Derive forward on locals; keep only the seeds that would survive the cap.
    keep_from = target - max_message_keys  # iterations below this would be evicted at once
    skipped: list[tuple[int, bytes]] = []
    i = current
    while i < target:
        seed, chain_key = chain_step(chain_key)
        if i >= keep_from:
            skipped.append((i, seed))
        i += 1
    seed, next_key = chain_step(chain_key)
    iv, key = group_message_keys(seed)
    pt = cbc_decrypt(key, iv, message.ciphertext)
    if pt is None:
        raise DecryptionError("message could not be decrypted")
    # Success: commit to the state.
    for it, sd in skipped:
        mk = mks.add()
        mk.iteration = it
        mk.seed = sd
    excess = len(mks) - max_message_keys
    if excess > 0:
        del mks[:excess]
    ck.seed = next_key
    ck.iteration = target + 1
    return pt
