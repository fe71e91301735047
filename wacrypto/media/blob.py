"""The blob layout and its limits, and the values that describe an encrypted or decrypted blob.

A blob is ``ct || mac``: AES-256-CBC ciphertext of the PKCS#7-padded plaintext (always 1..16 bytes
of padding, so at least one block) followed by the first 10 bytes of
``HMAC-SHA256(mac_key, iv || ct)``. ``file_sha256 = SHA256(plaintext)``,
``file_enc_sha256 = SHA256(blob)``.

Every failure to verify a blob is the same opaque :class:`~wacrypto.errors.MediaIntegrityError`
(:func:`integrity_error`): which check failed is not revealed. Pure: no I/O.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Final, TypeAlias, final

from wacrypto.errors import InvalidArgumentError, MediaIntegrityError
from wacrypto.limits import MEDIA_MAC_LEN
from wacrypto.media.keys import MediaType
from wacrypto.primitives.aes import pkcs7_unpad

__all__ = [
    "BLOCK",
    "BytesLike",
    "EncryptedMedia",
    "DecryptedMedia",
    "as_view",
    "blob_overhead",
    "check_digest",
    "check_limit",
    "integrity_error",
    "is_blob_length",
    "max_blob_length",
    "unpad",
    "upload_token",
]

BytesLike: TypeAlias = bytes | bytearray | memoryview
"""Any contiguous byte buffer accepted as input."""

BLOCK: Final = 16
"""AES block size: the ciphertext is a whole number of these, at least one."""

_INTEGRITY_MESSAGE: Final = "media blob failed verification"


def integrity_error() -> MediaIntegrityError:
    """The one opaque error for any blob that fails verification."""
    return MediaIntegrityError(_INTEGRITY_MESSAGE)


def blob_overhead(file_length: int) -> int:
    """Bytes a blob adds to a plaintext of ``file_length`` bytes (padding 1..16 plus the 10-byte MAC)."""
    return BLOCK - file_length % BLOCK + MEDIA_MAC_LEN


def max_blob_length(max_bytes: int | None) -> int | None:
    """The longest blob a plaintext of at most ``max_bytes`` bytes encrypts to (``None``: no limit)."""
    return None if max_bytes is None else max_bytes + blob_overhead(max_bytes)


def is_blob_length(blob_length: int, max_bytes: int | None) -> bool:
    """Whether a blob of ``blob_length`` bytes can be genuine: whole ciphertext blocks (at least one),
    the MAC, and no longer than a plaintext of ``max_bytes`` (``None``: no limit) encrypts to."""
    limit = max_blob_length(max_bytes)
    ct_len = blob_length - MEDIA_MAC_LEN
    return ct_len >= BLOCK and ct_len % BLOCK == 0 and (limit is None or blob_length <= limit)


def upload_token(file_enc_sha256: bytes) -> str:
    """The upload token: ``file_enc_sha256`` in unpadded base64url, as used in the upload URL."""
    return base64.urlsafe_b64encode(file_enc_sha256).rstrip(b"=").decode("ascii")


def unpad(padded: bytes) -> bytes:
    """Strict PKCS#7 removal from whole blocks; raises the opaque integrity error."""
    plain = pkcs7_unpad(padded)
    if plain is None:
        raise integrity_error()
    return plain


def as_view(data: BytesLike) -> memoryview:
    """A flat byte view of ``data`` (no copy)."""
    view = memoryview(data)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    return view


def check_digest(value: object, name: str) -> bytes | None:
    """``value`` as ``bytes`` if it is ``None`` or a 32-byte SHA-256 digest; else misuse."""
    if value is None:
        return None
    if not isinstance(value, (bytes, bytearray, memoryview)) or len(value) != 32:
        raise InvalidArgumentError(f"{name} must be 32 bytes (a SHA-256 digest)")
    return bytes(value)


def check_limit(max_bytes: object) -> int | None:
    """``max_bytes`` if it is ``None`` or a non-negative int; else misuse."""
    if max_bytes is None:
        return None
    if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 0:
        raise InvalidArgumentError("max_bytes must be a non-negative int or None")
    return max_bytes


@final
@dataclass(frozen=True, slots=True)
class EncryptedMedia:
    """What a media message needs after encryption. ``repr`` hides the media key.

    ``sidecar`` is ``None`` for classes without a streaming sidecar (or when disabled)."""

    media_type: MediaType
    media_key: bytes = field(repr=False)
    file_sha256: bytes
    file_enc_sha256: bytes
    file_length: int
    mac: bytes
    sidecar: bytes | None = None

    @property
    def blob_length(self) -> int:
        """Length of the uploaded blob (ciphertext + MAC)."""
        return self.file_length + blob_overhead(self.file_length)

    @property
    def token(self) -> str:
        """Upload token (base64url of ``file_enc_sha256``)."""
        return upload_token(self.file_enc_sha256)

    def to_json(self) -> dict[str, object]:
        """Hex-encoded fields for JSON output (this *includes* the media key)."""
        out: dict[str, object] = {
            "media_key": self.media_key.hex(),
            "file_sha256": self.file_sha256.hex(),
            "file_enc_sha256": self.file_enc_sha256.hex(),
            "file_length": self.file_length,
        }
        if self.sidecar is not None:
            out["sidecar"] = self.sidecar.hex()
        return out

    def __repr__(self) -> str:
        return (
            f"EncryptedMedia(media_type={self.media_type.value}, file_length={self.file_length}, "
            f"file_sha256={self.file_sha256.hex()}, file_enc_sha256={self.file_enc_sha256.hex()}, "
            f"sidecar={'yes' if self.sidecar is not None else 'no'})"
        )


@final
@dataclass(frozen=True, slots=True)
class DecryptedMedia:
    """Result of a *verified* decryption.

    ``plaintext`` holds the bytes when the decryptor kept them in memory, ``None`` when they went to a
    caller-supplied staging sink (which the caller may now publish)."""

    media_type: MediaType
    file_sha256: bytes
    file_enc_sha256: bytes
    file_length: int
    plaintext: bytes | None = field(default=None, repr=False)
