"""The JSON Schema (draft 2020-12) of a vector file; ``generate`` writes it as ``schema.json``."""

from __future__ import annotations

from typing import Any, Final

__all__ = ["SCHEMA"]

_HEX: Final = {"type": "string", "pattern": "^([0-9a-f]{2})*$"}

_STEP: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["expect"],
    "properties": {
        "op": {"enum": ["decrypt", "group_decrypt"]},
        "expect": {"enum": ["plaintext", "reject", "either"]},
        "plaintext": _HEX,
        "body": _HEX,
        "type": {"type": "integer"},
        "error": {"type": "string"},
        "probe": {"type": "boolean"},
    },
}

SCHEMA: Final[dict[str, Any]] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "wacrypto-vectors-v1.schema.json",
    "title": "wacrypto interoperability test vectors, suite version 1",
    "description": "One file per family. Wycheproof-style: every test case has tcId, comment, result "
                   "(valid / invalid / acceptable) and flags; each flag is explained in the file's notes. "
                   "Binary values are lowercase hex.",
    "type": "object",
    "required": ["suite", "suiteVersion", "family", "algorithm", "schema", "provenance", "notes", "numberOfTests",
                 "testGroups"],
    "properties": {
        "suite": {"const": "wacrypto-vectors"},
        "suiteVersion": {"const": 1},
        "family": {"type": "string"},
        "algorithm": {"type": "string"},
        "schema": {"const": "schema.json"},
        "provenance": {
            "type": "object",
            "required": ["generator", "module", "seed", "rng", "how"],
            "properties": {k: {"type": "string"} for k in ("generator", "module", "seed", "rng", "how")},
        },
        "notes": {"type": "object", "additionalProperties": {"type": "string"}},
        "numberOfTests": {"type": "integer", "minimum": 1},
        "testGroups": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["type", "tests"],
                "properties": {
                    "type": {"type": "string"},
                    "tests": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["tcId", "comment", "result", "flags"],
                            "properties": {
                                "tcId": {"type": "integer", "minimum": 1},
                                "comment": {"type": "string"},
                                "result": {"enum": ["valid", "invalid", "acceptable"]},
                                "flags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
                                "steps": {"type": "array", "items": _STEP},
                                "setup": {"type": "object"},
                            },
                        },
                    },
                },
            },
        },
    },
}
