"""HKDF-SHA256 and the Signal chain steps, on the one-shot ``hmac.digest`` fast path."""

from __future__ import annotations

import hmac
from typing import Final

_ZERO_SALT: Final = bytes(32)
_SEED_INPUT: Final = b"\x01"
_CHAIN_INPUT: Final = b"\x02"


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    return hmac.digest(key, data, "sha256")


def hkdf_sha256(ikm: bytes, salt: bytes | None, info: bytes, length: int) -> bytes:
    """RFC 5869 HKDF with SHA-256 (``salt=None`` means 32 zero bytes)."""
    prk = hmac.digest(salt if salt else _ZERO_SALT, ikm, "sha256")
    out = b""
    t = b""
    i = 1
    while len(out) < length:
        t = hmac.digest(prk, t + info + bytes((i,)), "sha256")
        out += t
        i += 1
    return out[:length]


def chain_step(chain_key: bytes) -> tuple[bytes, bytes]:
    """(message_seed, next_chain_key) of a symmetric-ratchet chain key."""
    return (
        hmac.digest(chain_key, _SEED_INPUT, "sha256"),
        hmac.digest(chain_key, _CHAIN_INPUT, "sha256"),
    )
