"""Shared fixtures: deterministic RNGs and two-party setups on the memory store."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest


class SeededRng:
    """Deterministic byte source (SHA-256 in counter mode) for reproducible tests and vectors."""

    def __init__(self, seed: bytes) -> None:
        self._seed = seed
        self._n = 0

    def __call__(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            out += hashlib.sha256(self._seed + self._n.to_bytes(8, "big")).digest()
            self._n += 1
        return out[:n]


@pytest.fixture
def seeded_rng() -> Callable[[bytes], SeededRng]:
    return SeededRng
