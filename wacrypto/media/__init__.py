"""WhatsApp media encryption: pure streaming crypto, file helpers, trio streams and an HTTP client.

* :mod:`wacrypto.media.crypto`  -- the sans-I/O core, gathered from one module per part:
  :mod:`~wacrypto.media.keys` (media classes, key derivation), :mod:`~wacrypto.media.blob` (blob layout,
  limits, results), :mod:`~wacrypto.media.sidecar`, :mod:`~wacrypto.media.encryptor` and
  :mod:`~wacrypto.media.decryptor` (streaming, with a two-thread seam: :class:`SplitEncryptor`,
  :class:`SplitDecryptor`).
* :mod:`wacrypto.media.files`   -- constant-memory file encrypt/decrypt, atomic publish, hash overlap.
* :mod:`wacrypto.media.streams` -- the same for trio byte streams.
* :mod:`wacrypto.media.client`  -- upload/download over HTTP (httpx on trio) with retries and resume.
* :mod:`wacrypto.media.prune`   -- retention clean-up of a local media folder.
"""

from __future__ import annotations

from wacrypto.media.blob import DecryptedMedia, EncryptedMedia, upload_token
from wacrypto.media.decryptor import MediaDecryptor, SplitDecryptor, decrypt
from wacrypto.media.encryptor import MediaEncryptor, SplitEncryptor, encrypt
from wacrypto.media.files import decrypt_file, encrypt_file
from wacrypto.media.keys import MediaKeys, MediaType, derive_media_keys, generate_media_key
from wacrypto.media.sidecar import decrypt_sidecar_chunk, sidecar_window, verify_sidecar_chunk

__all__ = [
    "DecryptedMedia",
    "EncryptedMedia",
    "MediaDecryptor",
    "MediaEncryptor",
    "MediaKeys",
    "MediaType",
    "SplitDecryptor",
    "SplitEncryptor",
    "decrypt",
    "decrypt_file",
    "decrypt_sidecar_chunk",
    "derive_media_keys",
    "encrypt",
    "encrypt_file",
    "generate_media_key",
    "sidecar_window",
    "upload_token",
    "verify_sidecar_chunk",
]
