"""WhatsApp's variant of ``Noise_XX_25519_AESGCM_SHA256`` as a table-driven state machine (sans-I/O).

Differences from the Noise specification (rev 34), all from docs/protocol-notes.md section 2:

* the protocol name padded with NULs to 32 bytes is ``h`` and ``ck`` (the spec does the same for
  names of at most HASHLEN bytes);
* the prologue is the 4-byte ``WA`` intro header;
* the first message (``-> e``) carries no payload and its empty payload is **not** hashed;
* the AES-GCM nonce is ``8 zero bytes || uint32_be(counter)`` (the spec's ``4 zero bytes ||
  uint64_be(counter)`` is the same bytes while the counter fits 32 bits; we close before it wraps);
* the handshake messages travel as protobuf fields (ephemeral/static/payload), not concatenated.

The pattern is data (:data:`WA_XX`); :class:`HandshakeState` walks it for either role.
"""

from __future__ import annotations

import enum
import hashlib
import struct
from dataclasses import dataclass
from typing import Final, final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from wacrypto.errors import (
    ConnectionClosedError,
    FrameError,
    HandshakeError,
    InvalidArgumentError,
    InvalidKeyError,
    UsageError,
)
from wacrypto.limits import MAX_NOISE_COUNTER, NOISE_TAG_LEN
from wacrypto.primitives.kdf import hkdf_info, hkdf_sha256_blocks
from wacrypto.primitives.keys import KeyPair, PrivateKey, PublicKey, Rng, system_rng, x25519

__all__ = [
    "WA_XX",
    "CipherState",
    "HandshakePattern",
    "HandshakeState",
    "MessagePattern",
    "NoiseMessage",
    "Role",
    "hkdf2",
]

DH_LEN: Final = 32
HASH_LEN: Final = 32
_NONCE: Final = struct.Struct(">8xI")
_NONCE_PACK: Final = _NONCE.pack


class Role(enum.Enum):
    INITIATOR = "initiator"  # the client
    RESPONDER = "responder"  # the server


@dataclass(frozen=True, slots=True)
class MessagePattern:
    """One handshake message: who sends it, its tokens, and whether it carries a payload."""

    sender: Role
    tokens: tuple[str, ...]
    payload: bool


@dataclass(frozen=True, slots=True)
class HandshakePattern:
    name: bytes
    messages: tuple[MessagePattern, ...]


WA_XX: Final = HandshakePattern(
    name=b"Noise_XX_25519_AESGCM_SHA256",
    messages=(
        MessagePattern(Role.INITIATOR, ("e",), payload=False),  # ClientHello: no payload, not hashed
        MessagePattern(Role.RESPONDER, ("e", "ee", "s", "es"), payload=True),  # ServerHello
        MessagePattern(Role.INITIATOR, ("s", "se"), payload=True),  # ClientFinish
    ),
)


_NOISE_HKDF2: Final = hkdf_info(b"", 64)


def hkdf2(ck: bytes, ikm: bytes) -> tuple[bytes, bytes]:
    """Noise HKDF with two outputs: RFC 5869 HKDF-SHA256 with salt ``ck`` and empty info."""
    out1, out2 = hkdf_sha256_blocks(ikm, ck, _NOISE_HKDF2)
    return out1, out2


@final
class CipherState:
    """One direction of the transport: an AES-GCM key (one AESGCM object) and a 32-bit counter.

    A frame too short or failing its tag raises :class:`FrameError` (a :class:`~wacrypto.errors.PeerError`); the
    caller must treat it as fatal for the connection. An exhausted counter (a local limit) raises
    :class:`ConnectionClosedError`.
    """

    __slots__ = ("_aead", "_n")

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise InvalidArgumentError("cipher key must be 32 bytes")
        self._aead = AESGCM(key)
        self._n = 0

    @property
    def counter(self) -> int:
        return self._n

    def encrypt(self, plaintext: bytes, ad: bytes | None = None) -> bytes:
        n = self._n
        if n > MAX_NOISE_COUNTER:
            raise ConnectionClosedError("noise counter exhausted; reconnect")
        self._n = n + 1
        return self._aead.encrypt(_NONCE_PACK(n), plaintext, ad)

    def decrypt(self, ciphertext: bytes, ad: bytes | None = None) -> bytes:
        if len(ciphertext) < NOISE_TAG_LEN:
            raise FrameError("frame shorter than an authentication tag")
        n = self._n
        if n > MAX_NOISE_COUNTER:
            raise ConnectionClosedError("noise counter exhausted; reconnect")
        self._n = n + 1
        try:
            return self._aead.decrypt(_NONCE_PACK(n), ciphertext, ad)
        except InvalidTag:
            raise FrameError("frame failed authentication") from None

    def __repr__(self) -> str:
        return f"CipherState(counter={self._n}, key=<secret>)"


@dataclass(frozen=True, slots=True)
class NoiseMessage:
    """The token outputs of one handshake message, as they travel in protobuf fields."""

    ephemeral: bytes | None = None
    static: bytes | None = None
    payload: bytes | None = None


class _State(enum.Enum):
    RUNNING = 1
    DONE = 2
    FAILED = 3


@final
class HandshakeState:
    """Walks a :class:`HandshakePattern` for one role. Pure: keys and randomness are parameters.

    ``e`` fixes the ephemeral key (known-answer tests); otherwise one is generated from ``rng``.
    """

    __slots__ = (
        "_pattern",
        "_role",
        "_s",
        "_e",
        "_rng",
        "_re",
        "_rs",
        "_h",
        "_ck",
        "_k",
        "_n",
        "_step",
        "_state",
    )

    def __init__(
        self,
        role: Role,
        s: KeyPair,
        prologue: bytes,
        *,
        pattern: HandshakePattern = WA_XX,
        e: KeyPair | None = None,
        rng: Rng = system_rng,
    ) -> None:
        self._pattern = pattern
        self._role = role
        self._s = s
        self._e = e
        self._rng = rng
        self._re: bytes | None = None
        self._rs: bytes | None = None
        name = pattern.name
        self._h = name.ljust(HASH_LEN, b"\x00") if len(name) <= HASH_LEN else hashlib.sha256(name).digest()
        self._ck = self._h
        self._k: AESGCM | None = None
        self._n = 0
        self._step = 0
        self._state = _State.RUNNING
        self._mix_hash(prologue)

    # ------------------------------------------------------------------ symmetric state
    def _mix_hash(self, data: bytes) -> None:
        self._h = hashlib.sha256(self._h + data).digest()

    def _mix_key(self, ikm: bytes) -> None:
        self._ck, temp_k = hkdf2(self._ck, ikm)
        self._k = AESGCM(temp_k)
        self._n = 0

    def _encrypt_and_hash(self, plaintext: bytes) -> bytes:
        if self._k is None:
            out = plaintext
        else:
            out = self._k.encrypt(_NONCE.pack(self._n), plaintext, self._h)
            self._n += 1
        self._mix_hash(out)
        return out

    def _decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        if self._k is None:
            out = ciphertext
        else:
            try:
                out = self._k.decrypt(_NONCE.pack(self._n), ciphertext, self._h)
            except InvalidTag:
                raise HandshakeError("handshake message failed authentication") from None
            self._n += 1
        self._mix_hash(ciphertext)
        return out

    def _dh(self, token: str) -> bytes:
        initiator = self._role is Role.INITIATOR
        if token == "ee":
            local, remote = self._e, self._re
        elif token == "ss":
            local, remote = self._s, self._rs
        elif token == "es":
            local, remote = (self._e, self._rs) if initiator else (self._s, self._re)
        else:  # "se"
            local, remote = (self._s, self._re) if initiator else (self._e, self._rs)
        if local is None or remote is None:  # pragma: no cover - impossible with a valid pattern
            raise UsageError(f"handshake pattern uses {token} before its keys are known")
        try:
            return x25519(local.private.to_bytes(), remote)
        except InvalidKeyError:
            raise HandshakeError("peer sent a low-order public key") from None

    # ------------------------------------------------------------------ public API
    @property
    def role(self) -> Role:
        return self._role

    @property
    def complete(self) -> bool:
        return self._state is _State.DONE

    @property
    def handshake_hash(self) -> bytes:
        return self._h

    @property
    def remote_static(self) -> PublicKey | None:
        return PublicKey(self._rs) if self._rs is not None else None

    @property
    def remote_ephemeral(self) -> PublicKey | None:
        return PublicKey(self._re) if self._re is not None else None

    @property
    def local_ephemeral(self) -> PublicKey | None:
        return self._e.public if self._e is not None else None

    def _current(self, sending: bool) -> MessagePattern:
        if self._state is _State.FAILED:
            raise HandshakeError("handshake already failed")
        if self._state is _State.DONE:
            raise UsageError("handshake is complete")
        msg = self._pattern.messages[self._step]
        if (msg.sender is self._role) != sending:
            raise UsageError("not this side's turn to " + ("write" if sending else "read"))
        return msg

    def _advance(self) -> None:
        self._step += 1
        if self._step == len(self._pattern.messages):
            self._state = _State.DONE

    def write_message(self, payload: bytes = b"") -> NoiseMessage:
        """Produce this side's next handshake message."""
        msg = self._current(sending=True)
        if not msg.payload and payload:
            raise InvalidArgumentError("this handshake message carries no payload")
        ephemeral = static = None
        for token in msg.tokens:
            if token == "e":
                if self._e is None:
                    self._e = KeyPair(PrivateKey.generate(self._rng))
                ephemeral = self._e.public.u
                self._mix_hash(ephemeral)
            elif token == "s":
                static = self._encrypt_and_hash(self._s.public.u)
            else:
                self._mix_key(self._dh(token))
        out_payload = self._encrypt_and_hash(payload) if msg.payload else None
        self._advance()
        return NoiseMessage(ephemeral=ephemeral, static=static, payload=out_payload)

    def read_message(self, message: NoiseMessage) -> bytes:
        """Consume the peer's next handshake message; returns its decrypted payload.

        Any failure raises :class:`HandshakeError` and the state is failed for good.
        """
        msg = self._current(sending=False)
        try:
            for token in msg.tokens:
                if token == "e":
                    if message.ephemeral is None or len(message.ephemeral) != DH_LEN:
                        raise HandshakeError("missing or malformed ephemeral key")
                    self._re = bytes(message.ephemeral)
                    self._mix_hash(self._re)
                elif token == "s":
                    want = DH_LEN + (NOISE_TAG_LEN if self._k is not None else 0)
                    if message.static is None or len(message.static) != want:
                        raise HandshakeError("missing or malformed static key")
                    self._rs = self._decrypt_and_hash(bytes(message.static))
                else:
                    self._mix_key(self._dh(token))
            if msg.payload:
                if message.payload is None:
                    raise HandshakeError("missing handshake payload")
                if self._k is not None and len(message.payload) < NOISE_TAG_LEN:
                    raise HandshakeError("handshake payload shorter than a tag")
                payload = self._decrypt_and_hash(bytes(message.payload))
            else:
                if message.payload:
                    raise HandshakeError("unexpected payload in a payload-less handshake message")
                payload = b""
        except HandshakeError:
            self._state = _State.FAILED
            raise
        self._advance()
        return payload

    def split(self) -> tuple[CipherState, CipherState]:
        """``(send, receive)`` cipher states for this role. The first HKDF output is client->server."""
        if self._state is not _State.DONE:
            raise UsageError("split() before the handshake is complete")
        k1, k2 = hkdf2(self._ck, b"")
        c2s, s2c = CipherState(k1), CipherState(k2)
        return (c2s, s2c) if self._role is Role.INITIATOR else (s2c, c2s)

    def __repr__(self) -> str:
        return f"HandshakeState(role={self._role.value}, step={self._step}, state={self._state.name})"
