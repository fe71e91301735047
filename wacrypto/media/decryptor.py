"""Streaming verification and decryption: :class:`MediaDecryptor`, its two-thread seam
:class:`SplitDecryptor`, and the one-shot :func:`decrypt`.

**Verification** checks, in this order: blob length, ``SHA256(blob)`` against ``file_enc_sha256``
(when given), the MAC in constant time, strict PKCS#7 padding, ``SHA256(plaintext)`` against
``file_sha256`` (when given). Any failure raises one opaque :class:`~wacrypto.errors.MediaIntegrityError`
and no plaintext ever reaches the caller before all checks passed: plaintext is written only to a
*staging* sink that the caller must keep private until :meth:`MediaDecryptor.finalize` returns
(:func:`wacrypto.media.files.decrypt_file` uses a temporary file published by atomic rename), or is
kept inside the decryptor and handed out by ``finalize``.

Pure: no I/O, no threads.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final, Protocol, final

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from wacrypto.errors import InvalidArgumentError, MediaIntegrityError, UsageError
from wacrypto.limits import DEFAULT_MEDIA_MAX_BYTES, MEDIA_IO_CHUNK, MEDIA_MAC_LEN
from wacrypto.media.blob import (
    BLOCK,
    BytesLike,
    DecryptedMedia,
    as_view,
    check_digest,
    check_limit,
    integrity_error,
    is_blob_length,
    max_blob_length,
    unpad,
)
from wacrypto.media.keys import MediaType, check_media_key, check_media_type, derive_media_keys

__all__ = ["StagingSink", "MediaDecryptor", "SplitDecryptor", "decrypt"]

_OPEN: Final = 0
_FINISHED: Final = 1
_FAILED: Final = 2


class StagingSink(Protocol):
    """Where a decryptor writes *unverified* plaintext, e.g. a private temporary file.

    Same contract as :meth:`io.RawIOBase.write`: the buffer is only valid during the call (it is reused).
    The sink must not be exposed to anyone until :meth:`MediaDecryptor.finalize` has returned."""

    def write(self, data: memoryview, /) -> object: ...


@final
class _MemoryStaging:
    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def write(self, data: memoryview, /) -> int:
        self.buf += data
        return len(data)


@final
class MediaDecryptor:
    """Streaming verification and decryption of a blob (``ct || mac``), in any chunking.

    Feed blob bytes with :meth:`update`; :meth:`finalize` then runs the checks in the documented order
    and raises :class:`~wacrypto.errors.MediaIntegrityError` (one opaque error for a truncated, padded,
    extended or corrupted blob, a wrong key or a wrong hash) or returns
    :class:`~wacrypto.media.blob.DecryptedMedia`.

    Plaintext goes to ``staging`` as it is decrypted (minus the last block, held back for the padding
    check) and *is unverified until finalize returns*: the staging sink must be private (a temporary file
    that is deleted on error and published afterwards). Without ``staging`` the decryptor keeps the
    plaintext in memory and returns it in ``DecryptedMedia.plaintext``.

    A blob longer than ``max_bytes`` of plaintext allows (default 64 MiB, ``None`` = no limit) is
    rejected as soon as the excess arrives, with the same opaque error.

    When the blob's length is known up front (a file), :meth:`split` spreads the work over two threads.
    """

    __slots__ = (
        "_type",
        "_keys",
        "_want_enc",
        "_want_plain",
        "_staging",
        "_memory",
        "_max_blob",
        "_dec",
        "_mac",
        "_sha_enc",
        "_sha_plain",
        "_tail",
        "_held",
        "_out",
        "_ct_len",
        "_plain_len",
        "_state",
        "_split",
    )

    def __init__(
        self,
        media_type: MediaType,
        media_key: bytes,
        *,
        file_enc_sha256: bytes | None = None,
        file_sha256: bytes | None = None,
        staging: StagingSink | None = None,
        max_bytes: int | None = DEFAULT_MEDIA_MAX_BYTES,
    ) -> None:
        self._type = check_media_type(media_type)
        self._keys = derive_media_keys(check_media_key(media_key), self._type)
        self._want_enc = check_digest(file_enc_sha256, "file_enc_sha256")
        self._want_plain = check_digest(file_sha256, "file_sha256")
        self._max_blob = max_blob_length(check_limit(max_bytes))
        self._memory = _MemoryStaging() if staging is None else None
        self._staging: StagingSink = self._memory if self._memory is not None else staging  # type: ignore[assignment]
        self._out = bytearray()
        self._start()

    def _start(self) -> None:
        """(Re)set the running state to "no byte seen"."""
        self._dec = Cipher(algorithms.AES(self._keys.cipher_key), modes.CBC(self._keys.iv)).decryptor()
        self._mac = hmac.new(self._keys.mac_key, self._keys.iv, hashlib.sha256)
        self._sha_enc = hashlib.sha256()
        self._sha_plain = hashlib.sha256()
        self._tail = b""  # last <= 10 bytes seen: the MAC candidate
        self._held = b""  # last decrypted block, held back for the padding check
        self._ct_len = 0
        self._plain_len = 0
        self._state = _OPEN
        self._split: SplitDecryptor | None = None

    def __repr__(self) -> str:
        return f"MediaDecryptor(media_type={self._type.value}, received={self.received})"

    @property
    def received(self) -> int:
        """Blob bytes consumed so far."""
        return self._ct_len + len(self._tail)

    def _fail(self) -> MediaIntegrityError:
        self._state = _FAILED
        return integrity_error()

    def _check_open(self) -> None:
        if self._state == _FINISHED:
            raise UsageError("decryptor already finalized")
        if self._state == _FAILED:
            raise integrity_error()

    # -- the two halves of a step over ciphertext bytes (SplitDecryptor runs them on two threads) ---

    def _auth_ct(self, ct: memoryview) -> None:
        self._mac.update(ct)
        self._sha_enc.update(ct)

    def _decrypt_ct(self, ct: memoryview) -> None:
        if self._max_blob is not None and self._ct_len + len(ct) + MEDIA_MAC_LEN > self._max_blob:
            raise self._fail()
        self._ct_len += len(ct)
        for pos in range(0, len(ct), MEDIA_IO_CHUNK):
            piece = ct[pos : pos + MEDIA_IO_CHUNK]
            need = len(piece) + BLOCK - 1
            if len(self._out) < need:
                self._out = bytearray(max(need, min(MEDIA_IO_CHUNK, 2 * need)))
            n = self._dec.update_into(piece, self._out)
            if n == 0:
                continue
            out = memoryview(self._out)
            if self._held:
                self._release(memoryview(self._held))
            self._release(out[: n - BLOCK])
            self._held = bytes(out[n - BLOCK : n])

    def _release(self, plain: memoryview) -> None:
        if plain:
            self._sha_plain.update(plain)
            self._plain_len += len(plain)
            self._staging.write(plain)

    # -- public API -------------------------------------------------------------------------------

    def update(self, data: BytesLike) -> None:
        """Consume the next blob bytes. Plaintext (unverified) goes only to the staging sink."""
        self._check_open()
        if self._split is not None:
            raise UsageError("decryptor is split: feed it through its SplitDecryptor")
        view = as_view(data)
        if not view:
            return
        try:
            if len(view) >= MEDIA_MAC_LEN:
                if self._tail:
                    self._auth_ct(memoryview(self._tail))
                    self._decrypt_ct(memoryview(self._tail))
                body = view[: len(view) - MEDIA_MAC_LEN]
                self._auth_ct(body)
                self._decrypt_ct(body)
                self._tail = bytes(view[len(view) - MEDIA_MAC_LEN :])
            else:
                joined = self._tail + bytes(view)
                cut = max(len(joined) - MEDIA_MAC_LEN, 0)
                if cut:
                    head = memoryview(joined)[:cut]
                    self._auth_ct(head)
                    self._decrypt_ct(head)
                self._tail = joined[cut:]
        except MediaIntegrityError:
            raise
        except Exception:
            self._state = _FAILED
            raise

    def split(self, blob_length: int) -> SplitDecryptor:
        """Hand the whole blob, ``blob_length`` bytes long, to a :class:`SplitDecryptor` whose two
        halves may run on two threads; :meth:`update` is refused from now on. Call :meth:`finalize`
        here once both halves are done.

        Must come before any :meth:`update`. A length no genuine blob (within ``max_bytes``) has
        fails at once with the opaque :class:`~wacrypto.errors.MediaIntegrityError`."""
        self._check_open()
        if isinstance(blob_length, bool) or not isinstance(blob_length, int) or blob_length < 0:
            raise InvalidArgumentError("blob_length must be a non-negative int")
        if self._split is not None:
            raise UsageError("decryptor is already split")
        if self.received:
            raise UsageError("split the decryptor before feeding it any bytes")
        if not is_blob_length(blob_length, None) or (self._max_blob is not None and blob_length > self._max_blob):
            raise self._fail()
        self._split = SplitDecryptor(self, blob_length)
        return self._split

    def restart(self) -> None:
        """Forget every byte consumed and start over at byte 0 with the same key, expected hashes,
        limit and staging sink, e.g. when a download cannot resume. The caller must empty the staging
        sink first (the in-memory one is emptied here). Also allowed after a failure."""
        if self._state == _FINISHED:
            raise UsageError("decryptor already finalized")
        if self._memory is not None:
            self._memory.buf = bytearray()
        self._start()

    def finalize(self) -> DecryptedMedia:
        """Run every check; return the verified result or raise the opaque integrity error.

        Raises :class:`~wacrypto.errors.UsageError` if the decryptor is split and its authenticating
        half has not seen every ciphertext byte the decrypting half took."""
        self._check_open()
        if self._split is not None and self._split.pending:
            raise UsageError("SplitDecryptor.authenticate has not seen all the ciphertext yet")
        # 1. length: at least one block of ciphertext, whole blocks, then a full MAC
        if len(self._tail) != MEDIA_MAC_LEN or self._ct_len < BLOCK or self._ct_len % BLOCK:
            raise self._fail()
        # 2. SHA256(blob)
        self._sha_enc.update(self._tail)
        enc_digest = self._sha_enc.digest()
        if self._want_enc is not None and not hmac.compare_digest(enc_digest, self._want_enc):
            raise self._fail()
        # 3. MAC, constant time
        if not hmac.compare_digest(self._mac.digest()[:MEDIA_MAC_LEN], self._tail):
            raise self._fail()
        # 4. strict PKCS#7 on the held-back last block
        self._dec.finalize()
        try:
            last = unpad(self._held)
        except MediaIntegrityError:
            raise self._fail() from None
        self._release(memoryview(last))
        # 5. SHA256(plaintext)
        plain_digest = self._sha_plain.digest()
        if self._want_plain is not None and not hmac.compare_digest(plain_digest, self._want_plain):
            raise self._fail()
        self._state = _FINISHED
        plaintext: bytes | None = None
        if self._memory is not None:
            plaintext = bytes(self._memory.buf)
            self._memory.buf = bytearray()
        return DecryptedMedia(
            media_type=self._type,
            file_sha256=plain_digest,
            file_enc_sha256=enc_digest,
            file_length=self._plain_len,
            plaintext=plaintext,
        )


@final
class SplitDecryptor:
    """A :class:`MediaDecryptor` of a blob of known length, cut into two halves that may run
    concurrently on two threads.

    Give every chunk of the blob, in order, to both halves:

    * :meth:`decrypt` (the *front*: one thread) checks the length, decrypts and writes the
      (unverified) plaintext to the staging sink, and keeps the trailing MAC;
    * :meth:`authenticate` (the *back*: one other thread) feeds the MAC and the blob hash. It needs
      only the ciphertext (the first ``blob_length - 10`` bytes) and ignores bytes past it, so the
      chunk holding the MAC may go to the front alone.

    The halves touch disjoint state, so ``authenticate`` of chunk ``i`` may overlap ``decrypt`` of
    chunk ``i + 1``; the caller must keep a chunk's buffer unchanged until its ``authenticate``
    returns. When both are done, :meth:`MediaDecryptor.finalize` runs the checks as usual: a blob
    that turns out shorter than announced fails there, one longer fails in :meth:`decrypt` as soon as
    the excess arrives.
    """

    __slots__ = ("_dec", "_blob_length", "_ct_end", "_front", "_back", "_decrypted", "_authenticated")

    def __init__(self, decryptor: MediaDecryptor, blob_length: int) -> None:
        self._dec = decryptor
        self._blob_length = blob_length
        self._ct_end = blob_length - MEDIA_MAC_LEN
        self._front = 0  # blob bytes seen by the front
        self._back = 0  # blob bytes seen by the back
        self._decrypted = 0  # ciphertext bytes decrypted by the front
        self._authenticated = 0  # ciphertext bytes authenticated by the back

    def __repr__(self) -> str:
        return f"SplitDecryptor(blob_length={self._blob_length}, received={self._front})"

    @property
    def blob_length(self) -> int:
        return self._blob_length

    @property
    def pending(self) -> int:
        """Ciphertext bytes the front has taken and the back has not seen yet."""
        return self._decrypted - self._authenticated

    def decrypt(self, chunk: BytesLike) -> None:
        """Front half: the next ``chunk`` of the blob."""
        dec = self._dec
        dec._check_open()
        view = as_view(chunk)
        start = self._front
        end = start + len(view)
        if end > self._blob_length:
            raise dec._fail()
        ct = max(min(end, self._ct_end) - start, 0)
        try:
            if ct:
                dec._decrypt_ct(view[:ct])
        except MediaIntegrityError:
            raise
        except Exception:
            dec._state = _FAILED
            raise
        if ct < len(view):
            dec._tail += bytes(view[ct:])
        self._front = end
        self._decrypted += ct

    def authenticate(self, chunk: BytesLike) -> None:
        """Back half: the same ``chunk`` given to :meth:`decrypt` (its bytes past the ciphertext are
        ignored)."""
        if self._dec._state == _FINISHED:
            raise UsageError("decryptor already finalized")
        view = as_view(chunk)
        start = self._back
        ct = max(min(start + len(view), self._ct_end) - start, 0)
        if ct:
            self._dec._auth_ct(view[:ct])
        self._back = start + len(view)
        self._authenticated += ct


def decrypt(
    blob: BytesLike,
    media_type: MediaType,
    media_key: bytes,
    *,
    file_enc_sha256: bytes | None = None,
    file_sha256: bytes | None = None,
    max_bytes: int | None = DEFAULT_MEDIA_MAX_BYTES,
) -> bytes:
    """Verify and decrypt ``blob`` in memory; return the plaintext only if every check passed.

    Raises :class:`~wacrypto.errors.MediaIntegrityError` otherwise (one opaque error)."""
    dec = MediaDecryptor(
        media_type, media_key, file_enc_sha256=file_enc_sha256, file_sha256=file_sha256, max_bytes=max_bytes
    )
    dec.update(blob)
    result = dec.finalize()
    assert result.plaintext is not None
    return result.plaintext
