"""Streaming media encryption: :class:`MediaEncryptor`, its two-thread seam :class:`SplitEncryptor`,
and the one-shot :func:`encrypt`.

Pure: no I/O, no threads (the seam only lets a caller run the two halves on threads of its own);
randomness is a parameter.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from typing import final

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from wacrypto.errors import InvalidArgumentError, MediaTooLargeError, UsageError
from wacrypto.limits import DEFAULT_MEDIA_MAX_BYTES, MEDIA_IO_CHUNK, MEDIA_MAC_LEN
from wacrypto.media.blob import BLOCK, BytesLike, EncryptedMedia, as_view, check_limit
from wacrypto.media.keys import MediaType, check_media_key, check_media_type, derive_media_keys, generate_media_key
from wacrypto.media.sidecar import SidecarBuilder

__all__ = ["MediaEncryptor", "SplitEncryptor", "encrypt"]


def _check_room(view: memoryview, out: bytearray | memoryview) -> None:
    if len(out) < len(view) + BLOCK - 1:
        raise InvalidArgumentError("output buffer must be at least len(data) + 15 bytes")


@final
class MediaEncryptor:
    """Streaming encryption: feed plaintext with :meth:`update`, get blob bytes back.

    ``media_key`` defaults to a fresh random key from ``randbytes``. ``sidecar`` defaults to
    ``media_type.has_sidecar``. More than ``max_bytes`` of plaintext (default 64 MiB, ``None`` for no
    limit) raises :class:`~wacrypto.errors.MediaTooLargeError` from the :meth:`update` that crosses it,
    before any of its bytes are returned.

    The concatenation of every :meth:`update` output and the bytes returned by :meth:`finalize` is the
    blob (``ct || mac``); ``finalize`` also returns the :class:`~wacrypto.media.blob.EncryptedMedia`
    description. Memory use is constant: only the running cipher, MAC and hash states are kept.

    To spread the work over two threads, :meth:`split` the encryptor instead of calling :meth:`update`.
    """

    __slots__ = (
        "_type",
        "_key",
        "_keys",
        "_max",
        "_enc",
        "_sha_plain",
        "_length",
        "_mac",
        "_sha_enc",
        "_sidecar",
        "_done",
        "_finalized",
        "_split",
    )

    def __init__(
        self,
        media_type: MediaType,
        media_key: bytes | None = None,
        *,
        sidecar: bool | None = None,
        max_bytes: int | None = DEFAULT_MEDIA_MAX_BYTES,
        randbytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._type = check_media_type(media_type)
        self._key = generate_media_key(randbytes) if media_key is None else check_media_key(media_key)
        self._keys = derive_media_keys(self._key, self._type)
        self._max = check_limit(max_bytes)
        self._enc = Cipher(algorithms.AES(self._keys.cipher_key), modes.CBC(self._keys.iv)).encryptor()
        self._sha_plain = hashlib.sha256()
        self._length = 0
        self._mac = hmac.new(self._keys.mac_key, self._keys.iv, hashlib.sha256)
        self._sha_enc = hashlib.sha256()
        want_sidecar = self._type.has_sidecar if sidecar is None else bool(sidecar)
        self._sidecar = SidecarBuilder(self._keys.mac_key) if want_sidecar else None
        if self._sidecar is not None:
            self._sidecar.update(memoryview(self._keys.iv))
        self._done = False  # finalized, or failed on the size limit
        self._finalized = False
        self._split: SplitEncryptor | None = None

    def __repr__(self) -> str:
        return f"MediaEncryptor(media_type={self._type.value}, processed={self._length})"

    @property
    def media_key(self) -> bytes:
        """The 32-byte media key in use (random unless given)."""
        return self._key

    @property
    def media_type(self) -> MediaType:
        return self._type

    @property
    def processed(self) -> int:
        """Plaintext bytes consumed so far."""
        return self._length

    # -- the two halves of a step (SplitEncryptor runs them on two threads) --------------------------

    def _cipher(self, view: memoryview, out: bytearray | memoryview, *, hash_plain: bool) -> int:
        """Count, check the limit, hash (if ``hash_plain``) and encrypt ``view`` into ``out``."""
        if self._done:
            raise UsageError("encryptor already finalized")
        new_len = self._length + len(view)
        if self._max is not None and new_len > self._max:
            self._done = True
            raise MediaTooLargeError(f"media is larger than the limit of {self._max} bytes")
        self._length = new_len
        if hash_plain:
            self._sha_plain.update(view)
        return self._enc.update_into(view, out)

    def _auth(self, ct: memoryview) -> None:
        """MAC, blob hash and sidecar over ciphertext bytes ``ct``."""
        self._mac.update(ct)
        self._sha_enc.update(ct)
        if self._sidecar is not None:
            self._sidecar.update(ct)

    # -- public API -------------------------------------------------------------------------------

    def update_into(self, data: BytesLike, out: bytearray | memoryview) -> int:
        """Encrypt ``data`` into ``out`` (at least ``len(data) + 15`` bytes); return bytes written."""
        if self._split is not None:
            raise UsageError("encryptor is split: feed it through its SplitEncryptor")
        view = as_view(data)
        _check_room(view, out)
        n = self._cipher(view, out, hash_plain=True)
        self._auth(memoryview(out)[:n])
        return n

    def update(self, data: BytesLike) -> bytes:
        """Encrypt ``data``; return the blob bytes that are ready (a multiple of 16, maybe empty)."""
        view = as_view(data)
        out = bytearray(len(view) + BLOCK - 1)
        n = self.update_into(view, out)
        del out[n:]
        return bytes(out)

    def split(self) -> SplitEncryptor:
        """Hand the rest of the stream to a :class:`SplitEncryptor`, whose two halves may run on two
        threads; :meth:`update` and :meth:`update_into` are refused from now on. Call :meth:`finalize`
        here once both halves are done."""
        if self._split is not None:
            raise UsageError("encryptor is already split")
        if self._done:
            raise UsageError("encryptor already finalized")
        self._split = SplitEncryptor(self)
        return self._split

    def finalize(self) -> tuple[bytes, EncryptedMedia]:
        """Pad, finish and MAC. Returns ``(last blob bytes, EncryptedMedia)``; the encryptor is spent.

        Raises :class:`~wacrypto.errors.UsageError` if the encryptor is split and its
        authenticating half has not seen every ciphertext byte the encrypting half produced."""
        if self._done:
            raise UsageError("encryptor already finalized")
        if self._split is not None and self._split.pending:
            raise UsageError("SplitEncryptor.authenticate has not seen all the ciphertext yet")
        self._done = self._finalized = True
        pad = BLOCK - self._length % BLOCK
        last = bytearray(2 * BLOCK)
        n = self._enc.update_into(bytes([pad]) * pad, last)
        self._enc.finalize()
        del last[n:]
        self._auth(memoryview(last))
        mac = self._mac.digest()[:MEDIA_MAC_LEN]
        self._sha_enc.update(mac)
        sidecar: bytes | None = None
        if self._sidecar is not None:
            self._sidecar.update(memoryview(mac))
            sidecar = self._sidecar.finish()
        result = EncryptedMedia(
            media_type=self._type,
            media_key=self._key,
            file_sha256=self._sha_plain.digest(),
            file_enc_sha256=self._sha_enc.digest(),
            file_length=self._length,
            mac=mac,
            sidecar=sidecar,
        )
        return bytes(last) + mac, result


@final
class SplitEncryptor:
    """A :class:`MediaEncryptor` cut into two halves that may run concurrently on two threads.

    * :meth:`encrypt_into` (the *front*: one thread) checks the size limit and encrypts a plaintext
      chunk, returning the ciphertext length;
    * :meth:`authenticate` (the *back*: one other thread) must then be given that same plaintext
      chunk and the ciphertext it produced, chunk after chunk in the same order. It feeds the MAC,
      the blob hash and the sidecar.

    The halves touch disjoint state, so ``authenticate`` of chunk ``i`` may overlap
    ``encrypt_into`` of chunk ``i + 1``; the caller must keep both buffers of a chunk unchanged until
    its ``authenticate`` returns. The SHA-256 of the plaintext runs on whichever half has less to do
    (the front when a sidecar loads the back). When both halves are done, call
    :meth:`MediaEncryptor.finalize`. The blob and :class:`~wacrypto.media.blob.EncryptedMedia` are
    exactly those :meth:`MediaEncryptor.update` would have produced.

    ``hashlib``, ``hmac`` and ``cryptography`` release the GIL on large buffers, so with chunks of
    about 1 MiB two threads run faster than one.
    """

    __slots__ = ("_enc", "_plain_in_front", "_encrypted", "_authenticated")

    def __init__(self, encryptor: MediaEncryptor) -> None:
        self._enc = encryptor
        self._plain_in_front = encryptor._sidecar is not None
        self._encrypted = 0  # ciphertext bytes returned by the front
        self._authenticated = 0  # ciphertext bytes seen by the back

    def __repr__(self) -> str:
        return f"SplitEncryptor(encrypted={self._encrypted}, authenticated={self._authenticated})"

    @property
    def pending(self) -> int:
        """Ciphertext bytes the front has produced and the back has not seen yet."""
        return self._encrypted - self._authenticated

    def encrypt_into(self, plain: BytesLike, out: bytearray | memoryview) -> int:
        """Front half: encrypt ``plain`` into ``out`` (at least ``len(plain) + 15`` bytes); return the
        ciphertext length. Raises :class:`~wacrypto.errors.MediaTooLargeError` past the limit."""
        view = as_view(plain)
        _check_room(view, out)
        n = self._enc._cipher(view, out, hash_plain=self._plain_in_front)
        self._encrypted += n
        return n

    def authenticate(self, plain: BytesLike, ct: BytesLike) -> None:
        """Back half: take the plaintext chunk given to :meth:`encrypt_into` and the ``ct`` bytes it
        returned (``out[:n]``)."""
        if self._enc._finalized:  # not _done: the front may have just failed on the limit
            raise UsageError("encryptor already finalized")
        cview = as_view(ct)
        if not self._plain_in_front:
            self._enc._sha_plain.update(as_view(plain))
        self._enc._auth(cview)
        self._authenticated += len(cview)


def encrypt(
    plaintext: BytesLike,
    media_type: MediaType,
    media_key: bytes | None = None,
    *,
    sidecar: bool | None = None,
    max_bytes: int | None = DEFAULT_MEDIA_MAX_BYTES,
    randbytes: Callable[[int], bytes] = os.urandom,
) -> tuple[bytes, EncryptedMedia]:
    """Encrypt ``plaintext`` in memory; return ``(blob, EncryptedMedia)``.

    The size limit is checked before any work. See :class:`MediaEncryptor` for the parameters."""
    view = as_view(plaintext)
    limit = check_limit(max_bytes)
    if limit is not None and len(view) > limit:
        raise MediaTooLargeError(f"media is larger than the limit of {limit} bytes")
    enc = MediaEncryptor(media_type, media_key, sidecar=sidecar, max_bytes=max_bytes, randbytes=randbytes)
    out = bytearray(len(view) + 2 * BLOCK)  # update_into wants len(piece) + 15 bytes of room
    n = 0
    for pos in range(0, len(view), MEDIA_IO_CHUNK):
        piece = view[pos : pos + MEDIA_IO_CHUNK]
        n += enc.update_into(piece, memoryview(out)[n:])
    tail, result = enc.finalize()
    out[n:] = tail
    return bytes(out), result
