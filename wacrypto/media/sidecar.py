"""The streaming sidecar: per-window MACs that let a player check (and decrypt) a partial download.

``sidecar = concat over n of HMAC-SHA256(mac_key, S[n*65536 : (n+1)*65536 + 16])[:10]`` where
``S = iv || ct || mac`` and ``n`` runs while ``n*65536 < len(S)``: each window reaches 16 bytes into
the next one, so that window ``n`` carries the CBC iv of its first ciphertext block.

Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final, final

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from wacrypto.errors import InvalidArgumentError
from wacrypto.limits import MEDIA_MAC_LEN, MEDIA_SIDECAR_CHUNK
from wacrypto.media.blob import BLOCK, integrity_error, is_blob_length, unpad
from wacrypto.media.keys import MediaKeys
from wacrypto.primitives.kdf import hmac_sha256

__all__ = ["SidecarBuilder", "sidecar_window", "verify_sidecar_chunk", "decrypt_sidecar_chunk"]

_OVERLAP: Final = 16  # each sidecar window reaches 16 bytes into the next one


@final
class SidecarBuilder:
    """Incrementally MACs the overlapping windows ``S[n*C : (n+1)*C + 16]`` of ``S = iv || ct || mac``.

    Feed ``S`` in order and in any chunking with :meth:`update`; :meth:`finish` returns the sidecar."""

    __slots__ = ("_key", "_pos", "_next", "_open", "_out")

    def __init__(self, mac_key: bytes) -> None:
        self._key = mac_key
        self._pos = 0  # bytes of S seen so far
        self._next = 0  # index of the next window to open
        self._open: list[tuple[int, hmac.HMAC]] = []  # (window end, running MAC), at most 2
        self._out = bytearray()

    def __repr__(self) -> str:
        return f"SidecarBuilder(seen={self._pos})"

    def update(self, data: memoryview) -> None:
        """MAC the next bytes of ``S`` into every window they fall in."""
        start = self._pos
        end = start + len(data)
        while self._next * MEDIA_SIDECAR_CHUNK < end:
            w_start = self._next * MEDIA_SIDECAR_CHUNK
            self._open.append((w_start + MEDIA_SIDECAR_CHUNK + _OVERLAP, hmac.new(self._key, digestmod=hashlib.sha256)))
            self._next += 1
        done = 0
        for w_end, mac in self._open:
            w_start = w_end - MEDIA_SIDECAR_CHUNK - _OVERLAP
            lo = max(w_start, start)
            hi = min(w_end, end)
            if lo < hi:
                mac.update(data[lo - start : hi - start])
            if w_end <= end:
                self._out += mac.digest()[:MEDIA_MAC_LEN]
                done += 1
        if done:
            del self._open[:done]
        self._pos = end

    def finish(self) -> bytes:
        """Close the windows still open (the last one or two) and return the whole sidecar."""
        for _, mac in self._open:
            self._out += mac.digest()[:MEDIA_MAC_LEN]
        self._open.clear()
        return bytes(self._out)


def sidecar_window(index: int, blob_length: int) -> tuple[int, int]:
    """Byte range ``[start, end)`` *of the blob* covered by sidecar entry ``index``.

    The sidecar is defined over ``S = iv || blob``; window 0 therefore also covers the 16-byte iv,
    which is not in the blob: pass ``blob[start:end]`` to :func:`verify_sidecar_chunk`, which prepends
    the iv for window 0. Raises :class:`~wacrypto.errors.InvalidArgumentError` for an index past the end."""
    s_len = blob_length + BLOCK
    if index < 0 or index * MEDIA_SIDECAR_CHUNK >= s_len:
        raise InvalidArgumentError("sidecar index out of range")
    s_start = index * MEDIA_SIDECAR_CHUNK
    s_end = min(s_start + MEDIA_SIDECAR_CHUNK + _OVERLAP, s_len)
    return max(s_start - BLOCK, 0), s_end - BLOCK


def _sidecar_entry(sidecar: bytes, index: int) -> bytes:
    entry = sidecar[index * MEDIA_MAC_LEN : (index + 1) * MEDIA_MAC_LEN]
    if len(entry) != MEDIA_MAC_LEN:
        raise integrity_error()
    return entry


def verify_sidecar_chunk(keys: MediaKeys, sidecar: bytes, index: int, chunk: bytes, *, blob_length: int) -> None:
    """Check ``chunk`` (``blob[start:end]`` for ``start, end = sidecar_window(index, blob_length)``)
    against sidecar entry ``index`` in constant time, for streamed playback of a partial download.

    Raises :class:`~wacrypto.errors.MediaIntegrityError` if it does not match."""
    start, end = sidecar_window(index, blob_length)
    if len(chunk) != end - start:
        raise integrity_error()
    mac = hmac_sha256(keys.mac_key, keys.iv + chunk if index == 0 else bytes(chunk))
    if not hmac.compare_digest(mac[:MEDIA_MAC_LEN], _sidecar_entry(sidecar, index)):
        raise integrity_error()


def decrypt_sidecar_chunk(keys: MediaKeys, sidecar: bytes, index: int, chunk: bytes, *, blob_length: int) -> bytes:
    """Verify ``chunk`` like :func:`verify_sidecar_chunk`, then return its plaintext.

    Window ``n`` decrypts to plaintext bytes ``[n*65536, (n+1)*65536)`` (fewer at the end). For the last
    window the padding is removed strictly. Only the sidecar MAC vouches for these bytes: the whole-file
    MAC and hashes are checked only by a full :class:`~wacrypto.media.decryptor.MediaDecryptor` run."""
    verify_sidecar_chunk(keys, sidecar, index, chunk, blob_length=blob_length)
    s = keys.iv + chunk if index == 0 else chunk
    if not is_blob_length(blob_length, None):
        raise integrity_error()
    ct_len = blob_length - MEDIA_MAC_LEN
    # in S coordinates the window starts at index*C; ct starts at S offset 16 and ends at 16 + ct_len
    s_start = index * MEDIA_SIDECAR_CHUNK
    body_end = min(s_start + MEDIA_SIDECAR_CHUNK + BLOCK, BLOCK + ct_len) - s_start  # ct blocks in this window
    if body_end <= BLOCK:
        return b""
    dec = Cipher(algorithms.AES(keys.cipher_key), modes.CBC(s[:BLOCK])).decryptor()
    plain = dec.update(s[BLOCK:body_end]) + dec.finalize()
    if s_start + body_end == BLOCK + ct_len:  # last ciphertext block is in this window
        plain = unpad(plain)
    return plain
