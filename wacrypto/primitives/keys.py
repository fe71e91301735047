"""Curve25519 key pairs in libsignal's form: public keys are ``0x05 || u`` (33 bytes)."""

from __future__ import annotations

import hmac
import os
from typing import Final, Protocol, final

import nacl.bindings as _nacl
import nacl.exceptions as _nacl_exc

from wacrypto.errors import InvalidArgumentError, InvalidKeyError
from wacrypto.limits import KEY_TYPE_DJB, PRIVATE_KEY_LEN, PUBLIC_KEY_LEN
from wacrypto.primitives.immutable import Immutable, slot_setters

_DJB_PREFIX: Final = bytes([KEY_TYPE_DJB])


class Rng(Protocol):
    """Source of random bytes (``os.urandom`` shaped). Tests pass a seeded one."""

    def __call__(self, n: int, /) -> bytes: ...


def system_rng(n: int, /) -> bytes:
    """The operating system's CSPRNG."""
    return os.urandom(n)


def clamp(priv: bytes) -> bytes:
    """RFC 7748 clamping of a 32-byte scalar."""
    b = bytearray(priv)
    b[0] &= 248
    b[31] &= 127
    b[31] |= 64
    return bytes(b)


def x25519(priv: bytes, pub_u: bytes) -> bytes:
    """Raw X25519; raises :class:`InvalidKeyError` on an all-zero output (low-order point)."""
    try:
        return _nacl.crypto_scalarmult(priv, pub_u)
    except _nacl_exc.RuntimeError:
        raise InvalidKeyError("DH output is all zero (low-order public key)") from None


def x25519_base(priv: bytes) -> bytes:
    return _nacl.crypto_scalarmult_base(priv)


@final
class PublicKey:
    """A Curve25519 public key. ``to_bytes()`` is the 33-byte ``0x05``-prefixed form."""

    __slots__ = ("_u",)

    def __init__(self, u: bytes) -> None:
        if len(u) != 32:
            raise InvalidArgumentError("public key must be 32 bytes (u coordinate)")
        self._u = bytes(u)

    @classmethod
    def from_bytes(cls, data: bytes) -> PublicKey:
        """Parse the 33-byte serialized form. Untrusted input: raises :class:`InvalidKeyError`."""
        if len(data) != PUBLIC_KEY_LEN:
            raise InvalidKeyError(f"public key must be {PUBLIC_KEY_LEN} bytes, got {len(data)}")
        if data[0] != KEY_TYPE_DJB:
            raise InvalidKeyError(f"unknown public key type 0x{data[0]:02x}")
        return cls(bytes(data[1:]))

    @property
    def u(self) -> bytes:
        """The raw 32-byte Montgomery u coordinate."""
        return self._u

    def to_bytes(self) -> bytes:
        return _DJB_PREFIX + self._u

    def verify(self, message: bytes, signature: bytes) -> bool:
        """XEdDSA verification; False for any invalid signature."""
        from wacrypto.primitives.xeddsa import xeddsa_verify

        return xeddsa_verify(self._u, message, signature)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PublicKey):
            return NotImplemented
        return hmac.compare_digest(self._u, other._u)

    def __hash__(self) -> int:
        return hash(self._u)

    def __repr__(self) -> str:
        return f"PublicKey({self.to_bytes().hex()})"


@final
class PrivateKey:
    """A Curve25519 private key (32 bytes, clamped on use). Its repr shows no key bytes."""

    __slots__ = ("_k",)

    def __init__(self, k: bytes) -> None:
        if len(k) != PRIVATE_KEY_LEN:
            raise InvalidArgumentError(f"private key must be {PRIVATE_KEY_LEN} bytes")
        self._k = clamp(bytes(k))

    @classmethod
    def from_bytes(cls, data: bytes) -> PrivateKey:
        return cls(data)

    @classmethod
    def generate(cls, rng: Rng = system_rng) -> PrivateKey:
        return cls(rng(PRIVATE_KEY_LEN))

    def to_bytes(self) -> bytes:
        """The clamped 32-byte scalar (secret!)."""
        return self._k

    def public_key(self) -> PublicKey:
        return PublicKey(x25519_base(self._k))

    def exchange(self, public: PublicKey) -> bytes:
        """X25519 with ``public``; raises :class:`InvalidKeyError` on an all-zero result."""
        return x25519(self._k, public.u)

    def sign(self, message: bytes, rng: Rng = system_rng) -> bytes:
        """XEdDSA signature (64 bytes) as libsignal makes it."""
        from wacrypto.primitives.xeddsa import XEdDSASigner

        return XEdDSASigner(self._k).sign(message, rng(64))

    def __repr__(self) -> str:
        return "PrivateKey(<secret>)"


@final
class KeyPair(Immutable):
    """A private key with its public key (immutable).

    ``KeyPair(private)`` computes the public key; ``KeyPair(private, public)`` checks that
    ``public`` belongs to ``private`` and raises :class:`InvalidArgumentError` if not.
    """

    __slots__ = ("private", "public")
    private: PrivateKey
    public: PublicKey

    def __init__(self, private: PrivateKey, public: PublicKey | None = None) -> None:
        derived = private.public_key()
        if public is not None and public != derived:
            raise InvalidArgumentError("public key does not belong to the private key")
        _KP_PRIVATE(self, private)
        _KP_PUBLIC(self, derived)

    @classmethod
    def _trusted(cls, private: PrivateKey, public: PublicKey) -> KeyPair:
        """A pair read back from our own storage: ``public`` is taken as stored (no base multiplication)."""
        pair = object.__new__(cls)
        _KP_PRIVATE(pair, private)
        _KP_PUBLIC(pair, public)
        return pair

    @classmethod
    def generate(cls, rng: Rng = system_rng) -> KeyPair:
        return cls(PrivateKey.generate(rng))

    def __reduce__(self) -> tuple[object, ...]:
        return (KeyPair._trusted, (self.private, self.public))

    def __repr__(self) -> str:
        return f"KeyPair(public={self.public.to_bytes().hex()}, private=<secret>)"


_KP_PRIVATE, _KP_PUBLIC = slot_setters(KeyPair, "private", "public")


IdentityKeyPair = KeyPair
"""An identity key pair is an ordinary Curve25519 key pair."""
