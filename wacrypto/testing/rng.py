"""A deterministic byte source for reproducible tests and vectors."""

from __future__ import annotations

import hashlib
from typing import final


@final
class SeededRng:
    """Deterministic byte source (SHA-256 in counter mode): ``SeededRng(b"seed")(n)`` gives ``n`` bytes.

    Usable wherever wacrypto takes an ``rng`` callable. Never use it for real keys.
    """

    __slots__ = ("_seed", "_n")

    def __init__(self, seed: bytes) -> None:
        self._seed = seed
        self._n = 0

    def __call__(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            out += hashlib.sha256(self._seed + self._n.to_bytes(8, "big")).digest()
            self._n += 1
        return bytes(out[:n])

    def __repr__(self) -> str:
        return f"SeededRng(<{len(self._seed)}-byte seed>, drawn={self._n})"
