"""Pure, streaming WhatsApp media encryption (sans-I/O).

The scheme (``docs/protocol-notes.md`` section 3)::

    expanded   = HKDF-SHA256(ikm=media_key, salt=none, info=MediaType.info, L=112)
    iv         = expanded[0:16]    cipher_key = expanded[16:48]
    mac_key    = expanded[48:80]   ref_key    = expanded[80:112]   (unused by the cipher)
    ct         = AES-256-CBC(cipher_key, iv, PKCS7(plaintext))      (always 1..16 bytes of padding)
    mac        = HMAC-SHA256(mac_key, iv || ct)[:10]
    blob       = ct || mac                                          (what is uploaded)
    file_sha256     = SHA256(plaintext)
    file_enc_sha256 = SHA256(blob)
    sidecar    = concat over n of HMAC-SHA256(mac_key, S[n*65536 : (n+1)*65536 + 16])[:10]
                 where S = iv || ct || mac and n runs while n*65536 < len(S)

**Which key?** The HKDF ``info`` string follows the *message class* that carries the media, never its
mimetype: an MP3 sent as a document uses :attr:`MediaType.DOCUMENT` ("WhatsApp Document Keys"), a voice
note uses :attr:`MediaType.VOICE` ("WhatsApp Audio Keys"). Every API here therefore takes an explicit
:class:`MediaType`; there is no guessing.

**Verification** (:class:`MediaDecryptor`) checks, in this order: blob length, ``SHA256(blob)`` against
``file_enc_sha256`` (when given), the MAC in constant time, strict PKCS#7 padding, ``SHA256(plaintext)``
against ``file_sha256`` (when given). Any failure raises one opaque :class:`~wacrypto.errors.MediaIntegrityError`
and no plaintext ever reaches the caller before all checks passed: plaintext is written only to a
*staging* sink that the caller must keep private until :meth:`MediaDecryptor.finalize` returns
(:func:`wacrypto.media.files.decrypt_file` uses a temporary file published by atomic rename), or is kept
inside the decryptor and handed out by ``finalize``.

This module gathers the sans-I/O media core, which lives in one module per part:

* :mod:`wacrypto.media.keys`      -- :class:`MediaType`, :class:`MediaKeys`, key generation and derivation;
* :mod:`wacrypto.media.blob`      -- the blob layout and limits, :class:`EncryptedMedia`, :class:`DecryptedMedia`;
* :mod:`wacrypto.media.sidecar`   -- the streaming sidecar;
* :mod:`wacrypto.media.encryptor` -- :class:`MediaEncryptor`, its two-thread seam :class:`SplitEncryptor`, :func:`encrypt`;
* :mod:`wacrypto.media.decryptor` -- :class:`MediaDecryptor`, its two-thread seam :class:`SplitDecryptor`, :func:`decrypt`.

They are pure: they depend only on ``cryptography``, ``hashlib``, ``hmac``, wacrypto's own
``errors``/``limits`` and ``primitives`` (HKDF, PKCS#7); no I/O, no threads, no clock. Randomness is
a parameter.
"""

from __future__ import annotations

from wacrypto.media.blob import BytesLike, DecryptedMedia, EncryptedMedia, blob_overhead, upload_token
from wacrypto.media.decryptor import MediaDecryptor, SplitDecryptor, StagingSink, decrypt
from wacrypto.media.encryptor import MediaEncryptor, SplitEncryptor, encrypt
from wacrypto.media.keys import MediaKeys, MediaType, derive_media_keys, generate_media_key
from wacrypto.media.sidecar import decrypt_sidecar_chunk, sidecar_window, verify_sidecar_chunk

__all__ = [
    "BytesLike",
    "MediaType",
    "MediaKeys",
    "EncryptedMedia",
    "DecryptedMedia",
    "StagingSink",
    "MediaEncryptor",
    "MediaDecryptor",
    "SplitEncryptor",
    "SplitDecryptor",
    "generate_media_key",
    "derive_media_keys",
    "encrypt",
    "decrypt",
    "blob_overhead",
    "sidecar_window",
    "verify_sidecar_chunk",
    "decrypt_sidecar_chunk",
    "upload_token",
]
