"""XEdDSA signatures over Curve25519 keys, libsignal's variant (64 bytes, sign bit of A in s[63]).

Signing uses libsodium's Ed25519 scalar arithmetic (PyNaCl); verification converts the Montgomery
u coordinate to an Edwards y and runs ordinary Ed25519 verification.
"""

from __future__ import annotations

import hashlib
from typing import Final

import nacl.bindings as _nacl
import nacl.exceptions as _nacl_exc

from wacrypto.errors import InvalidArgumentError

_P: Final = 2**255 - 19
_HASH_PREFIX: Final = b"\xfe" + b"\xff" * 31
_ZERO32: Final = bytes(32)


def _clamp_scalar(priv: bytes) -> bytes:
    b = bytearray(priv)
    b[0] &= 248
    b[31] &= 127
    b[31] |= 64
    return bytes(b)


def xeddsa_sign(private_key: bytes, message: bytes, random64: bytes) -> bytes:
    """Sign ``message`` with a 32-byte Curve25519 private key. ``random64`` is 64 random bytes."""
    if len(private_key) != 32:
        raise InvalidArgumentError("private key must be 32 bytes")
    if len(random64) != 64:
        raise InvalidArgumentError("XEdDSA needs 64 random bytes")
    k = _clamp_scalar(private_key)
    a = _nacl.crypto_core_ed25519_scalar_reduce(k + _ZERO32)
    big_a = _nacl.crypto_scalarmult_ed25519_base_noclamp(a)
    sign_bit = big_a[31] & 0x80
    r = _nacl.crypto_core_ed25519_scalar_reduce(
        hashlib.sha512(_HASH_PREFIX + k + message + random64).digest()
    )
    big_r = _nacl.crypto_scalarmult_ed25519_base_noclamp(r)
    h = _nacl.crypto_core_ed25519_scalar_reduce(hashlib.sha512(big_r + big_a + message).digest())
    s = bytearray(_nacl.crypto_core_ed25519_scalar_add(_nacl.crypto_core_ed25519_scalar_mul(h, a), r))
    s[31] = (s[31] & 0x7F) | sign_bit
    return big_r + bytes(s)


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


def xeddsa_verify(public_u: bytes, message: bytes, signature: bytes) -> bool:
    """True iff ``signature`` is a valid XEdDSA signature of ``message`` by the key ``public_u``.

    ``public_u`` may be the raw 32-byte u or the 33-byte ``0x05`` form. Never raises on bad input.
    """
    if len(public_u) == 33:
        if public_u[0] != 0x05:
            return False
        public_u = public_u[1:]
    if len(public_u) != 32 or len(signature) != 64:
        return False
    sign = signature[63] >> 7
    ed = montgomery_to_edwards(public_u, sign)
    if ed is None:
        return False
    sig = bytearray(signature)
    sig[63] &= 0x7F
    if sig[63] & 0xE0:
        return False
    try:
        _nacl.crypto_sign_open(bytes(sig) + message, ed)
    except (_nacl_exc.BadSignatureError, _nacl_exc.ValueError, _nacl_exc.TypeError):
        return False
    return True
