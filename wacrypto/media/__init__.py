"""WhatsApp media encryption: pure streaming crypto, file helpers, trio streams and an HTTP client.

* :mod:`wacrypto.media.crypto`  -- sans-I/O: keys, :class:`MediaEncryptor`, :class:`MediaDecryptor`, sidecar.
* :mod:`wacrypto.media.files`   -- constant-memory file encrypt/decrypt, atomic publish, hash overlap.
* :mod:`wacrypto.media.streams` -- the same for trio byte streams.
* :mod:`wacrypto.media.client`  -- upload/download over HTTP (httpx on trio) with retries and resume.
* :mod:`wacrypto.media.prune`   -- retention clean-up of a local media folder.
"""

from __future__ import annotations

from wacrypto.media.crypto import (
    DecryptedMedia,
    EncryptedMedia,
    MediaDecryptor,
    MediaEncryptor,
    MediaKeys,
    MediaType,
    decrypt,
    decrypt_sidecar_chunk,
    derive_media_keys,
    encrypt,
    generate_media_key,
    sidecar_window,
    upload_token,
    verify_sidecar_chunk,
)
from wacrypto.media.files import decrypt_file, encrypt_file

__all__ = [
    "DecryptedMedia",
    "EncryptedMedia",
    "MediaDecryptor",
    "MediaEncryptor",
    "MediaKeys",
    "MediaType",
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
