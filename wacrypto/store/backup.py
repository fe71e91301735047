"""Encrypted, integrity-checked backup archives of a whole account.

Layout (all integers big-endian)::

    magic "WACRYPTO-BACKUP\\0" (16) | version 1 (1) | kdf 1 = scrypt (1) | log2 N (1) | r (1) | p (1)
    | salt (16) | nonce (12) | AES-256-GCM( zlib( StoreDump JSON ) ), associated data = the header above

The key is scrypt(password, salt). A wrong password, a flipped bit, a truncated file and a foreign
file all give :class:`BackupError`; nothing is restored from a bad archive.
"""

from __future__ import annotations

import wacrypto.limits as _limits

import hashlib
import os
import struct
import zlib
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from wacrypto.errors import BackupError, InvalidArgumentError
from wacrypto.store.dump import StoreDump

__all__ = ["write_archive", "read_archive", "MAGIC"]

MAGIC: Final = b"WACRYPTO-BACKUP\x00"
VERSION: Final = 1
KDF_SCRYPT: Final = 1
DEFAULT_LOG2_N: Final = _limits.DEFAULT_BACKUP_SCRYPT_LOG2_N
MAX_LOG2_N: Final = _limits.MAX_BACKUP_SCRYPT_LOG2_N
MAX_ARCHIVE_PLAINTEXT: Final = _limits.MAX_BACKUP_PLAINTEXT
_HEADER: Final = struct.Struct(">16sBBBBB16s12s")


def _derive(password: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    if not isinstance(password, str) or not password:
        raise InvalidArgumentError("backup password must be a non-empty string")
    n = 1 << log2_n
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * r * n + (1 << 20), dklen=32)


def write_archive(dump: StoreDump, password: str, *, log2_n: int = DEFAULT_LOG2_N) -> bytes:
    if not 10 <= log2_n <= MAX_LOG2_N:
        raise InvalidArgumentError(f"log2_n must be in 10..{MAX_LOG2_N}")
    salt, nonce = os.urandom(16), os.urandom(12)
    header = _HEADER.pack(MAGIC, VERSION, KDF_SCRYPT, log2_n, 8, 1, salt, nonce)
    key = _derive(password, salt, log2_n, 8, 1)
    return header + AESGCM(key).encrypt(nonce, zlib.compress(dump.to_json(), 6), header)


def read_archive(data: bytes, password: str) -> StoreDump:
    if len(data) < _HEADER.size + 16:
        raise BackupError("not a wacrypto backup (file too short or truncated)")
    magic, version, kdf, log2_n, r, p, salt, nonce = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise BackupError("not a wacrypto backup archive")
    if version != VERSION or kdf != KDF_SCRYPT:
        raise BackupError(f"unsupported backup archive version {version}/kdf {kdf}")
    if not 10 <= log2_n <= MAX_LOG2_N or not 1 <= r <= 32 or not 1 <= p <= 16:
        raise BackupError("backup archive asks for unreasonable key-derivation parameters")
    key = _derive(password, salt, log2_n, r, p)
    try:
        packed = AESGCM(key).decrypt(nonce, data[_HEADER.size :], data[: _HEADER.size])
    except InvalidTag:
        raise BackupError("wrong backup password, or the archive is corrupted or truncated") from None
    try:
        d = zlib.decompressobj()
        raw = d.decompress(packed, MAX_ARCHIVE_PLAINTEXT)
        if d.unconsumed_tail:
            raise BackupError("backup archive is too large")
    except zlib.error:
        raise BackupError("backup archive payload is corrupted") from None
    return StoreDump.from_json(raw)
