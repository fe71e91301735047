"""Interoperability test vectors: ``wacrypto vectors generate DIR`` and ``wacrypto vectors check``.

One module per family builds that family's file (``build(seed) -> dict``); :func:`generate` writes
them all plus ``schema.json`` (the JSON Schema every file validates against). The same seed gives the
same bytes on every run. :mod:`.check` replays a suite against any implementation through the
JSON-lines peer protocol.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Final

from wacrypto.tools.vectors.common import DEFAULT_SEED, SUITE_VERSION, dump
from wacrypto.tools.vectors.schema import SCHEMA

__all__ = ["FAMILIES", "DEFAULT_SEED", "SUITE_VERSION", "build_all", "generate"]

# family name -> module (each has FAMILY and build(seed))
FAMILIES: Final = ("xeddsa", "x3dh", "ratchet", "invalid_messages", "sender_keys", "fingerprint", "media", "noise",
                   "binary")


def build_all(seed: str = DEFAULT_SEED, families: tuple[str, ...] = FAMILIES) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for fam in families:
        mod = importlib.import_module(f"wacrypto.tools.vectors.{fam}")
        out[fam] = mod.build(seed)
    return out


def generate(directory: Path, seed: str = DEFAULT_SEED, families: tuple[str, ...] = FAMILIES) -> list[Path]:
    """Write one ``<family>.json`` per family, ``schema.json`` and ``README.md`` (the format in prose) into
    ``directory`` (created if missing)."""
    from wacrypto.tools.vectors.readme import readme

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    files = build_all(seed, families)
    for fam, data in files.items():
        p = directory / f"{fam}.json"
        p.write_text(dump(data), encoding="utf-8")
        written.append(p)
    p = directory / "schema.json"
    p.write_text(dump(SCHEMA), encoding="utf-8")
    written.append(p)
    p = directory / "README.md"
    p.write_text(readme(files), encoding="utf-8")
    written.append(p)
    return written
