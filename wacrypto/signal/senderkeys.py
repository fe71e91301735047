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

import functools
import hashlib
import hmac
from collections import OrderedDict
from typing import Final, final

import nacl.bindings as _nacl
import nacl.exceptions as _nacl_exc

from google.protobuf.message import DecodeError

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
    SIGNATURE_LEN,
)
from wacrypto.primitives.aes import cbc_decrypt, cbc_encrypt
from wacrypto.primitives.keys import KeyPair, Rng, system_rng
from wacrypto.primitives.xeddsa import montgomery_to_edwards
from wacrypto.wire.messages import SenderKeyDistributionMessage, SenderKeyMessage

__all__ = [
    "SenderKeyRecord",
    "SigningKeyCache",
    "create_distribution",
    "decrypt",
    "encrypt",
    "chain_step",
    "group_message_keys",
    "hmac_sha256",
    "new_own_record",
    "process_distribution",
    "xeddsa_verify_cached",
]

_State = _pb.SenderKeyStateStructure
_ZERO32: Final = bytes(32)
_ONE: Final = b"\x01"
_TWO: Final = b"\x02"
_INFO1: Final = b"WhisperGroup\x01"
_INFO2: Final = b"WhisperGroup\x02"
_DJB: Final = bytes((KEY_TYPE_DJB,))
_XEDDSA_PREFIX: Final = b"\xfe" + b"\xff" * 31
_MAX_KEY_ID: Final = 0x7FFFFFFF  # generated key ids are positive int32 (Java peers use int)

# HMAC-SHA256 with 32-byte keys, written out (RFC 2104) over hashlib's one-shot SHA-256: with
# OpenSSL 3 this is ~2x faster than hmac.digest, and a chain step shares the key pads between
# its two HMACs. Checked against hmac.digest in tests/signal/test_senderkeys.py.
_sha256 = hashlib.sha256
_IPAD: Final = bytes(x ^ 0x36 for x in range(256))
_OPAD: Final = bytes(x ^ 0x5C for x in range(256))
_ZERO_INNER: Final = _sha256(bytes(64).translate(_IPAD))  # HMAC key = 32 zero bytes (HKDF salt)
_ZERO_OUTER_PAD: Final = bytes(64).translate(_OPAD)


def _pads(key: bytes) -> tuple[bytes, bytes]:
    """HMAC inner and outer key pads (keys here are 32 bytes; any key of at most 64 bytes works)."""
    if len(key) > 64:
        key = _sha256(key).digest()
    k = key.ljust(64, b"\x00")
    return k.translate(_IPAD), k.translate(_OPAD)


def _hmac_pads(ipad: bytes, opad: bytes, msg: bytes) -> bytes:
    return _sha256(opad + _sha256(ipad + msg).digest()).digest()


def hmac_sha256(key: bytes, msg: bytes) -> bytes:
    """HMAC-SHA256 (same result as ``hmac.digest(key, msg, "sha256")``)."""
    ipad, opad = _pads(key)
    return _hmac_pads(ipad, opad, msg)


def chain_step(chain_key: bytes) -> tuple[bytes, bytes]:
    """(message_seed, next_chain_key) = (HMAC(ck, 0x01), HMAC(ck, 0x02))."""
    ipad, opad = _pads(chain_key)
    return (
        _sha256(opad + _sha256(ipad + _ONE).digest()).digest(),
        _sha256(opad + _sha256(ipad + _TWO).digest()).digest(),
    )


def group_message_keys(seed: bytes) -> tuple[bytes, bytes]:
    """(iv, cipher_key) from a 32-byte message seed: HKDF(zeros, seed, "WhisperGroup", 48)."""
    h = _ZERO_INNER.copy()
    h.update(seed)
    ipad, opad = _pads(_sha256(_ZERO_OUTER_PAD + h.digest()).digest())  # prk = HMAC(zeros, seed)
    t1 = _sha256(opad + _sha256(ipad + _INFO1).digest()).digest()
    t2 = _sha256(opad + _sha256(ipad + t1 + _INFO2).digest()).digest()
    return t1[:16], t1[16:] + t2[:16]


# --------------------------------------------------------------------------- XEdDSA fast paths
# The same algorithm as wacrypto.primitives.xeddsa, with the per-key work done once: for
# signing the scalar a and point A = a*B (one of the two base multiplications), for verifying
# the Montgomery -> Edwards conversion (a modular inverse in Python).


_L: Final = 2**252 + 27742317777372353535851937790883648493  # order of the Ed25519 base point


@final
class _Signer:
    """XEdDSA signing with the key-dependent part done once: scalar ``a`` and point ``A = a*B``.

    Scalar arithmetic mod L is done on Python ints (cheaper than a libsodium round trip per
    operation); the one remaining base-point multiplication per signature is libsodium's.
    """

    __slots__ = ("k", "a", "big_a", "sign_bit")

    def __init__(self, private_key: bytes) -> None:
        b = bytearray(private_key)
        b[0] &= 248
        b[31] &= 127
        b[31] |= 64
        self.k = bytes(b)
        self.a = int.from_bytes(self.k, "little") % _L
        self.big_a = _nacl.crypto_scalarmult_ed25519_base_noclamp(self.a.to_bytes(32, "little"))
        self.sign_bit = self.big_a[31] & 0x80

    def sign(self, message: bytes, random64: bytes) -> bytes:
        sha512 = hashlib.sha512
        r = int.from_bytes(sha512(_XEDDSA_PREFIX + self.k + message + random64).digest(), "little") % _L
        big_r = _nacl.crypto_scalarmult_ed25519_base_noclamp(r.to_bytes(32, "little"))
        h = int.from_bytes(sha512(big_r + self.big_a + message).digest(), "little") % _L
        s = bytearray(((h * self.a + r) % _L).to_bytes(32, "little"))
        s[31] = (s[31] & 0x7F) | self.sign_bit
        return big_r + s

    def __repr__(self) -> str:
        return "_Signer(<secret>)"


@final
class SigningKeyCache:
    """Bounded cache of precomputed XEdDSA signing scalars (owned by one GroupCipher; holds secrets)."""

    __slots__ = ("_max", "_entries")

    def __init__(self, max_entries: int = 64) -> None:
        self._max = max_entries
        self._entries: OrderedDict[bytes, _Signer] = OrderedDict()

    def get(self, private_key: bytes) -> _Signer:
        s = self._entries.get(private_key)
        if s is None:
            s = _Signer(private_key)
            self._entries[private_key] = s
            if len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return s

    def clear(self) -> None:
        self._entries.clear()

    def __repr__(self) -> str:
        return f"SigningKeyCache(entries={len(self._entries)})"


@functools.lru_cache(maxsize=1024)
def _edwards_y(public_u: bytes) -> bytes | None:
    return montgomery_to_edwards(public_u, 0)


def xeddsa_verify_cached(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """XEdDSA verification (same rules as ``primitives.xeddsa.xeddsa_verify``), caching the key conversion."""
    if len(public_key) == PUBLIC_KEY_LEN:
        if public_key[0] != KEY_TYPE_DJB:
            return False
        public_key = public_key[1:]
    if len(public_key) != 32 or len(signature) != SIGNATURE_LEN:
        return False
    y = _edwards_y(bytes(public_key))
    if y is None:
        return False
    last = signature[63]
    if last & 0x80:
        y = y[:31] + bytes((y[31] | 0x80,))
    last &= 0x7F
    if last & 0xE0:
        return False
    try:
        _nacl.crypto_sign_open(signature[:63] + bytes((last,)) + message, y)
    except (_nacl_exc.BadSignatureError, _nacl_exc.ValueError, _nacl_exc.TypeError):
        return False
    return True


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
        if len(data) > MAX_SENDER_KEY_RECORD_LEN:
            raise InvalidMessageError(f"sender key record: longer than {MAX_SENDER_KEY_RECORD_LEN} bytes")
        try:
            rec = _pb.SenderKeyRecordStructure.FromString(bytes(data))
        except (DecodeError, ValueError, RuntimeError):
            raise InvalidMessageError("sender key record: malformed protobuf") from None
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
    signer = signers.get(priv) if signers is not None else _Signer(priv)
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
    if not xeddsa_verify_cached(st.sender_signing_key.public, message.signed_part, message.signature):
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
        ipad, opad = _pads(chain_key)
        if i >= keep_from:
            skipped.append((i, _hmac_pads(ipad, opad, _ONE)))
        chain_key = _hmac_pads(ipad, opad, _TWO)
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
