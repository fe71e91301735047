"""Canonical protobuf encoding helpers for the hot path.

The generated protobuf classes parse untrusted bytes; encoding of our few wire messages is done
here so the output is canonical by construction (fields in number order, zero counters present),
which is what whatsmeow needs to re-verify MACs and signatures.
"""

from __future__ import annotations

_SMALL = [bytes((i,)) for i in range(128)]


def varint(n: int) -> bytes:
    if n < 128:
        return _SMALL[n]
    out = bytearray()
    while n >= 128:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field_bytes(tag: bytes, data: bytes) -> bytes:
    return tag + varint(len(data)) + data
