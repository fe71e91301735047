"""Plaintext padding of WhatsApp ``enc v="2"`` messages (``v="3"`` is unpadded).

The sender appends ``n`` bytes of value ``n`` (1 <= n <= 15, as whatsmeow; Baileys pads up to 16
and receivers accept either); the receiver refuses an empty plaintext, a pad byte of 0 or longer
than the plaintext, and any pad byte that differs from the last. Pure: randomness is a parameter.
"""

from __future__ import annotations

import hmac
from typing import Final

from wacrypto.errors import InvalidArgumentError, InvalidMessageError
from wacrypto.primitives.keys import Rng, system_rng

__all__ = ["MAX_PAD", "pad", "unpad"]

MAX_PAD: Final = 15  # what we add at most (whatsmeow's range); we accept any 1..255 on receive


def pad(plaintext: bytes, rng: Rng = system_rng) -> bytes:
    """``plaintext`` with 1 to 15 pad bytes (the count drawn from ``rng``)."""
    if not isinstance(plaintext, (bytes, bytearray, memoryview)):
        raise InvalidArgumentError("plaintext must be bytes")
    n = rng(1)[0] & 0x0F or MAX_PAD
    return bytes(plaintext) + bytes((n,)) * n


def unpad(padded: bytes) -> bytes:
    """The plaintext inside ``padded``; :class:`InvalidMessageError` if the padding is malformed."""
    if not padded:
        raise InvalidMessageError("padded plaintext is empty")
    n = padded[-1]
    if n == 0 or n > len(padded):
        raise InvalidMessageError("padding length is out of range")
    # compare all pad bytes at once (no early exit that times how many matched)
    if not hmac.compare_digest(padded[-n:], bytes((n,)) * n):
        raise InvalidMessageError("padding bytes differ")
    return bytes(padded[:-n])
