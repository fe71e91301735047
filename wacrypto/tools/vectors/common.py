"""What every vector family shares: the file layout, test-case builders and the deterministic RNG.

A vector file (one per family) is a JSON object in the style of Project Wycheproof::

    {"suite": "wacrypto-vectors", "suiteVersion": 1, "family": "xeddsa", "schema": "schema.json",
     "provenance": {...}, "notes": {FLAG: text}, "numberOfTests": N,
     "testGroups": [{"type": ..., ...group fields..., "tests": [
         {"tcId": 1, "comment": "...", "result": "valid" | "invalid" | "acceptable", "flags": [...], ...}]}]}

``tcId`` numbers every case of a file from 1. ``valid`` cases must be accepted with exactly the
expected outputs, ``invalid`` ones must be rejected, and ``acceptable`` ones may go either way (the
flags say which policy decides). All binary values are lowercase hex.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any, Final

import wacrypto
from wacrypto.testing.rng import SeededRng

__all__ = ["SUITE", "SUITE_VERSION", "DEFAULT_SEED", "Mismatch", "VectorFile", "expect", "family_rng", "dump", "flip"]

SUITE: Final = "wacrypto-vectors"
SUITE_VERSION: Final = 1
DEFAULT_SEED: Final = "wacrypto-vectors-1"


class Mismatch(Exception):
    """An implementation's answer differs from what a vector case expects."""


def expect(condition: bool, what: str) -> None:
    """Raise :class:`Mismatch` with ``what`` unless ``condition`` (an ``assert`` that ``-O`` keeps)."""
    if not condition:
        raise Mismatch(what)


def family_rng(seed: str, family: str) -> SeededRng:
    """The family's own RNG: adding a case to one family changes no byte of another."""
    return SeededRng(hashlib.sha256(f"{seed}/{family}".encode()).digest())


class VectorFile:
    """Builds one family's file: groups of cases, numbered in order."""

    def __init__(self, family: str, algorithm: str, seed: str, how: str, notes: dict[str, str]) -> None:
        self.family = family
        self._head: dict[str, Any] = {
            "suite": SUITE,
            "suiteVersion": SUITE_VERSION,
            "family": family,
            "algorithm": algorithm,
            "schema": "schema.json",
            "provenance": {
                "generator": f"wacrypto {wacrypto.__version__} (wacrypto vectors generate)",
                "module": f"wacrypto.tools.vectors.{family}",
                "seed": seed,
                "rng": "SHA-256 counter mode over SHA-256(seed + '/' + family) (wacrypto.testing.SeededRng)",
                "how": how,
            },
            "notes": notes,
        }
        self._groups: list[dict[str, Any]] = []
        self._next = 1
        self._notes = notes

    def group(self, type_: str, **fields: Any) -> list[dict[str, Any]]:
        """A new test group; returns its (empty) list of tests to :meth:`case` into."""
        tests: list[dict[str, Any]] = []
        self._groups.append({"type": type_, **fields, "tests": tests})
        return tests

    def case(self, tests: list[dict[str, Any]], comment: str, result: str, flags: list[str], **fields: Any) -> dict[str, Any]:
        if result not in ("valid", "invalid", "acceptable"):
            raise ValueError(f"bad result {result!r}")
        unknown = [f for f in flags if f not in self._notes]
        if unknown:
            raise ValueError(f"flags without a note: {unknown}")
        tc = {"tcId": self._next, "comment": comment, "result": result, "flags": flags, **fields}
        self._next += 1
        tests.append(tc)
        return tc

    def to_json(self) -> dict[str, Any]:
        ids = [t["tcId"] for g in self._groups for t in g["tests"]]
        if ids != list(range(1, len(ids) + 1)):
            raise ValueError(f"{self.family}: add each group's cases before starting the next group (tcIds out of order)")
        return {**self._head, "numberOfTests": self._next - 1, "testGroups": self._groups}


def dump(data: dict[str, Any]) -> str:
    """The canonical text of a vector file (stable across runs: same input, same bytes)."""
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


def flip(data: bytes, index: int, mask: int = 0x01) -> bytes:
    """``data`` with the byte at ``index`` (negative counts from the end) XOR ``mask``."""
    b = bytearray(data)
    b[index] ^= mask
    return bytes(b)


Builder = Callable[[str], dict[str, Any]]
