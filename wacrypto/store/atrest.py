"""Optional encryption of private keys and record blobs at rest (AES-256-GCM).

Each value is sealed with a fresh 96-bit nonce and bound to its table and row key as associated data,
so rows cannot be swapped or moved. The key never enters the database: only a check value sealed with
it, so opening a store with a wrong or missing key fails clearly instead of returning garbage.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import Final, final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from wacrypto.errors import InvalidArgumentError, StoreError

__all__ = ["AtRestKey", "load_key", "key_from_env", "ENV_KEY", "ENV_KEY_FILE"]

ENV_KEY: Final = "WACRYPTO_STORE_KEY"
ENV_KEY_FILE: Final = "WACRYPTO_STORE_KEY_FILE"
_MAGIC: Final = b"\xa7\x01"
_CHECK: Final = b"wacrypto at-rest key check v1"


@final
class AtRestKey:
    """A 32-byte data key; ``seal``/``open`` values bound to a (table, row key) label."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, (bytes, bytearray)) or len(key) != 32:
            raise InvalidArgumentError("at-rest key must be 32 bytes")
        self._aead = AESGCM(bytes(key))

    def __repr__(self) -> str:
        return "AtRestKey(<secret>)"

    def seal(self, label: bytes, value: bytes) -> bytes:
        nonce = os.urandom(12)
        return _MAGIC + nonce + self._aead.encrypt(nonce, value, label)

    def open(self, label: bytes, blob: bytes) -> bytes:
        if blob[:2] != _MAGIC or len(blob) < 2 + 12 + 16:
            raise StoreError("stored value is not encrypted although an at-rest key is configured")
        try:
            return self._aead.decrypt(blob[2:14], blob[14:], label)
        except InvalidTag:
            raise StoreError("stored value failed authentication (wrong at-rest key or tampered row)") from None

    def check_value(self) -> bytes:
        return self.seal(b"check", _CHECK)

    def verify(self, check: bytes) -> bool:
        try:
            return self.open(b"check", check) == _CHECK
        except StoreError:
            return False


def load_key(text_or_bytes: bytes) -> bytes:
    """Accept 32 raw bytes, 64 hex digits or base64 of 32 bytes (surrounding whitespace ignored)."""
    if len(text_or_bytes) == 32:
        return bytes(text_or_bytes)
    t = text_or_bytes.strip()
    candidates: list[bytes] = []
    try:
        candidates.append(bytes.fromhex(t.decode("ascii")))
    except (ValueError, UnicodeDecodeError):
        pass
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            candidates.append(decode(t))
        except (ValueError, binascii.Error):
            pass
    for k in candidates:
        if len(k) == 32:
            return k
    raise InvalidArgumentError("at-rest key must be 32 bytes: raw, 64 hex digits or base64")


def key_from_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return load_key(f.read())
    except OSError as exc:
        raise InvalidArgumentError(f"cannot read at-rest key file {path}: {exc.strerror}") from None


def key_from_env() -> bytes | None:
    """The at-rest key named by ``WACRYPTO_STORE_KEY`` (hex/base64) or ``WACRYPTO_STORE_KEY_FILE``."""
    v = os.environ.get(ENV_KEY)
    if v:
        return load_key(v.encode())
    p = os.environ.get(ENV_KEY_FILE)
    if p:
        return key_from_file(p)
    return None
