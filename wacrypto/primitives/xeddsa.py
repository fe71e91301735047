"""XEdDSA signatures over Curve25519 keys, libsignal's variant (64 bytes, sign bit of A in s[63]).

One implementation, two shapes: :class:`XEdDSASigner` does the key-dependent work once (the
clamped scalar ``a`` and the point ``A = a*B``), so a sender signing many messages with one key
pays one base-point multiplication per signature; :func:`xeddsa_sign` is a one-shot signer over
it. Scalar arithmetic mod L is done on Python ints (cheaper than a libsodium round trip per
operation); the base-point multiplications are libsodium's (PyNaCl).

Verification converts the Montgomery u coordinate to an Edwards y (a modular inverse, cached per
key) and runs ordinary Ed25519 verification.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Final, final

import nacl.bindings as _nacl
import nacl.exceptions as _nacl_exc

from wacrypto.errors import InvalidArgumentError
from wacrypto.limits import KEY_TYPE_DJB, PUBLIC_KEY_LEN, SIGNATURE_LEN
from wacrypto.primitives.keys import clamp

__all__ = ["XEdDSASigner", "montgomery_to_edwards", "xeddsa_sign", "xeddsa_verify"]

_P: Final = 2**255 - 19
_L: Final = 2**252 + 27742317777372353535851937790883648493  # order of the Ed25519 base point
_HASH_PREFIX: Final = b"\xfe" + b"\xff" * 31
_VERIFY_ERRORS: Final = (_nacl_exc.BadSignatureError, _nacl_exc.ValueError, _nacl_exc.TypeError)
_base_mult = _nacl.crypto_scalarmult_ed25519_base_noclamp


@final
class XEdDSASigner:
    """XEdDSA signing key: a 32-byte Curve25519 private key with ``a`` and ``A = a*B`` precomputed.

    Holds secrets: its repr shows none.
    """

    __slots__ = ("_k", "_a", "_big_a", "_sign_bit")

    def __init__(self, private_key: bytes) -> None:
        if len(private_key) != 32:
            raise InvalidArgumentError("private key must be 32 bytes")
        self._k = clamp(private_key)
        self._a = int.from_bytes(self._k, "little") % _L
        self._big_a = _base_mult(self._a.to_bytes(32, "little"))
        self._sign_bit = self._big_a[31] & 0x80

    def sign(self, message: bytes, random64: bytes) -> bytes:
        """Sign ``message``; ``random64`` is 64 random bytes."""
        if len(random64) != 64:
            raise InvalidArgumentError("XEdDSA needs 64 random bytes")
        sha512 = hashlib.sha512
        r = int.from_bytes(sha512(_HASH_PREFIX + self._k + message + random64).digest(), "little") % _L
        big_r = _base_mult(r.to_bytes(32, "little"))
        h = int.from_bytes(sha512(big_r + self._big_a + message).digest(), "little") % _L
        s = bytearray(((h * self._a + r) % _L).to_bytes(32, "little"))
        s[31] = (s[31] & 0x7F) | self._sign_bit
        return big_r + s

    def __repr__(self) -> str:
        return "XEdDSASigner(<secret>)"


def xeddsa_sign(private_key: bytes, message: bytes, random64: bytes) -> bytes:
    """Sign ``message`` with a 32-byte Curve25519 private key. ``random64`` is 64 random bytes."""
    return XEdDSASigner(private_key).sign(message, random64)


def montgomery_to_edwards(u_bytes: bytes, sign: int) -> bytes | None:
    """Edwards y (with sign bit) for Montgomery u, or None if u maps to no point."""
    u = int.from_bytes(u_bytes, "little") & ((1 << 255) - 1)
    if u >= _P:
        return None
    denom = (u + 1) % _P
    if denom == 0:
        return None
    y = (u - 1) * pow(denom, -1, _P) % _P
    out = bytearray(y.to_bytes(32, "little"))
    out[31] |= (sign & 1) << 7
    return bytes(out)


@functools.lru_cache(maxsize=1024)
def _edwards_y(public_u: bytes) -> bytes | None:
    return montgomery_to_edwards(public_u, 0)


def xeddsa_verify(public_u: bytes, message: bytes, signature: bytes) -> bool:
    """True iff ``signature`` is a valid XEdDSA signature of ``message`` by the key ``public_u``.

    ``public_u`` may be the raw 32-byte u or the 33-byte ``0x05`` form. Never raises on bad input.
    The Montgomery -> Edwards conversion of the last 1024 keys is cached (public data only).
    """
    if len(public_u) == PUBLIC_KEY_LEN:
        if public_u[0] != KEY_TYPE_DJB:
            return False
        public_u = public_u[1:]
    if len(public_u) != 32 or len(signature) != SIGNATURE_LEN:
        return False
    y = _edwards_y(bytes(public_u))
    if y is None:
        return False
    last = signature[63]
    if last & 0x80:
        y = y[:31] + bytes((y[31] | 0x80,))
    last &= 0x7F
    if last & 0xE0:
        return False
    try:
        _nacl.crypto_sign_open(bytes(signature[:63]) + bytes((last,)) + message, y)
    except _VERIFY_ERRORS:
        return False
    return True
