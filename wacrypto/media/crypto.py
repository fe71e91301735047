"""Pure, streaming WhatsApp media encryption (sans-I/O).

The scheme (``shared/protocol-notes.md`` section 3)::

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

This module is pure: it depends only on ``cryptography``, ``hashlib``, ``hmac`` and wacrypto's own
``errors``/``limits``; no I/O, no threads, no clock. Randomness is a parameter.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol, TypeAlias, final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from wacrypto.errors import InvalidArgumentError, MediaIntegrityError, MediaTooLargeError, UsageError
from wacrypto.limits import (
    DEFAULT_MEDIA_MAX_BYTES,
    MEDIA_IO_CHUNK,
    MEDIA_KEY_LEN,
    MEDIA_MAC_LEN,
    MEDIA_SIDECAR_CHUNK,
)

__all__ = [
    "MediaType",
    "MediaKeys",
    "EncryptedMedia",
    "DecryptedMedia",
    "StagingSink",
    "MediaEncryptor",
    "MediaDecryptor",
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

BytesLike: TypeAlias = bytes | bytearray | memoryview
"""Any contiguous byte buffer accepted as input."""

_BLOCK: Final = 16  # AES block size
_EXPANDED_LEN: Final = 112  # iv 16 + cipher key 32 + mac key 32 + ref key 32
_SIDECAR_OVERLAP: Final = 16  # each sidecar window reaches 16 bytes into the next one
_INTEGRITY_MESSAGE: Final = "media blob failed verification"


# --------------------------------------------------------------------------- media classes


class MediaType(enum.Enum):
    """The message class that carries a media blob; it selects the HKDF ``info`` string.

    The value is the lower-case name used on the command line. Choose by message class, not by
    mimetype: audio sent as a document is :attr:`DOCUMENT`.
    """

    IMAGE = "image"
    STICKER = "sticker"
    VIDEO = "video"
    GIF = "gif"
    PTV = "ptv"
    AUDIO = "audio"
    VOICE = "voice"
    DOCUMENT = "document"
    HISTORY = "history"
    APP_STATE = "app_state"
    STICKER_PACK = "sticker_pack"
    LINK_THUMBNAIL = "link_thumbnail"

    @property
    def info(self) -> bytes:
        """The HKDF ``info`` string for this class, e.g. ``b"WhatsApp Image Keys"``."""
        return _INFO[self]

    @property
    def has_sidecar(self) -> bool:
        """True for the classes whose messages carry a streaming sidecar (video and audio messages)."""
        return self in _SIDECAR_TYPES

    @classmethod
    def parse(cls, name: str) -> MediaType:
        """Look a class up by its value or name, case-insensitively (``"app-state"`` works too).

        Raises :class:`~wacrypto.errors.InvalidArgumentError` for an unknown name."""
        key = name.strip().lower().replace("-", "_")
        for member in cls:
            if member.value == key:
                return member
        raise InvalidArgumentError(f"unknown media type {name!r}; expected one of {', '.join(m.value for m in cls)}")


_INFO: Final[dict[MediaType, bytes]] = {
    MediaType.IMAGE: b"WhatsApp Image Keys",
    MediaType.STICKER: b"WhatsApp Image Keys",
    MediaType.VIDEO: b"WhatsApp Video Keys",
    MediaType.GIF: b"WhatsApp Video Keys",
    MediaType.PTV: b"WhatsApp Video Keys",
    MediaType.AUDIO: b"WhatsApp Audio Keys",
    MediaType.VOICE: b"WhatsApp Audio Keys",
    MediaType.DOCUMENT: b"WhatsApp Document Keys",
    MediaType.HISTORY: b"WhatsApp History Keys",
    MediaType.APP_STATE: b"WhatsApp App State Keys",
    MediaType.STICKER_PACK: b"WhatsApp Sticker Pack Keys",
    MediaType.LINK_THUMBNAIL: b"WhatsApp Link Thumbnail Keys",
}
_SIDECAR_TYPES: Final = frozenset({MediaType.VIDEO, MediaType.GIF, MediaType.PTV, MediaType.AUDIO, MediaType.VOICE})


# --------------------------------------------------------------------------- keys


@final
@dataclass(frozen=True, slots=True)
class MediaKeys:
    """The four values HKDF expands a media key into. ``repr`` shows no key bytes."""

    iv: bytes = field(repr=False)
    cipher_key: bytes = field(repr=False)
    mac_key: bytes = field(repr=False)
    ref_key: bytes = field(repr=False)

    def __repr__(self) -> str:
        return "MediaKeys(<redacted>)"


def generate_media_key(randbytes: Callable[[int], bytes] = os.urandom) -> bytes:
    """Return a fresh 32-byte media key from ``randbytes`` (default: the OS CSPRNG)."""
    key = randbytes(MEDIA_KEY_LEN)
    _check_media_key(key)
    return bytes(key)


def _check_media_key(media_key: object) -> bytes:
    if not isinstance(media_key, (bytes, bytearray, memoryview)):
        raise InvalidArgumentError("media key must be bytes")
    key = bytes(media_key)
    if len(key) != MEDIA_KEY_LEN:
        raise InvalidArgumentError(f"media key must be {MEDIA_KEY_LEN} bytes, got {len(key)}")
    return key


def _check_media_type(media_type: object) -> MediaType:
    if not isinstance(media_type, MediaType):
        raise InvalidArgumentError("media_type must be a MediaType (choose it by message class)")
    return media_type


def _check_digest(value: object, name: str) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, (bytes, bytearray, memoryview)) or len(value) != 32:
        raise InvalidArgumentError(f"{name} must be 32 bytes (a SHA-256 digest)")
    return bytes(value)


def _check_limit(max_bytes: object) -> int | None:
    if max_bytes is None:
        return None
    if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 0:
        raise InvalidArgumentError("max_bytes must be a non-negative int or None")
    return max_bytes


def derive_media_keys(media_key: bytes, media_type: MediaType) -> MediaKeys:
    """Expand ``media_key`` (32 bytes) with HKDF-SHA256 and ``media_type.info`` into :class:`MediaKeys`."""
    key = _check_media_key(media_key)
    mtype = _check_media_type(media_type)
    expanded = HKDF(algorithm=hashes.SHA256(), length=_EXPANDED_LEN, salt=None, info=mtype.info).derive(key)
    return MediaKeys(iv=expanded[0:16], cipher_key=expanded[16:48], mac_key=expanded[48:80], ref_key=expanded[80:112])


def blob_overhead(file_length: int) -> int:
    """Bytes a blob adds to a plaintext of ``file_length`` bytes (padding 1..16 plus the 10-byte MAC)."""
    return _BLOCK - file_length % _BLOCK + MEDIA_MAC_LEN


def upload_token(file_enc_sha256: bytes) -> str:
    """The upload token: ``file_enc_sha256`` in unpadded base64url, as used in the upload URL."""
    return base64.urlsafe_b64encode(file_enc_sha256).rstrip(b"=").decode("ascii")


# --------------------------------------------------------------------------- results


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


class StagingSink(Protocol):
    """Where a decryptor writes *unverified* plaintext, e.g. a private temporary file.

    Same contract as :meth:`io.RawIOBase.write`: the buffer is only valid during the call (it is reused).
    The sink must not be exposed to anyone until :meth:`MediaDecryptor.finalize` has returned."""

    def write(self, data: memoryview, /) -> object: ...


# --------------------------------------------------------------------------- sidecar


class _SidecarBuilder:
    """Incrementally MACs the overlapping windows ``S[n*C : (n+1)*C + 16]`` of ``S = iv || ct || mac``."""

    __slots__ = ("_key", "_pos", "_next", "_open", "_out")

    def __init__(self, mac_key: bytes) -> None:
        self._key = mac_key
        self._pos = 0  # bytes of S seen so far
        self._next = 0  # index of the next window to open
        self._open: list[tuple[int, hmac.HMAC]] = []  # (window end, running MAC), at most 2
        self._out = bytearray()

    def update(self, data: memoryview) -> None:
        start = self._pos
        end = start + len(data)
        while self._next * MEDIA_SIDECAR_CHUNK < end:
            w_start = self._next * MEDIA_SIDECAR_CHUNK
            self._open.append((w_start + MEDIA_SIDECAR_CHUNK + _SIDECAR_OVERLAP, hmac.new(self._key, digestmod=hashlib.sha256)))
            self._next += 1
        done = 0
        for w_end, mac in self._open:
            w_start = w_end - MEDIA_SIDECAR_CHUNK - _SIDECAR_OVERLAP
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
        for _, mac in self._open:
            self._out += mac.digest()[:MEDIA_MAC_LEN]
        self._open.clear()
        return bytes(self._out)


def sidecar_window(index: int, blob_length: int) -> tuple[int, int]:
    """Byte range ``[start, end)`` *of the blob* covered by sidecar entry ``index``.

    The sidecar is defined over ``S = iv || blob``; window 0 therefore also covers the 16-byte iv,
    which is not in the blob: pass ``blob[start:end]`` to :func:`verify_sidecar_chunk`, which prepends
    the iv for window 0. Raises :class:`~wacrypto.errors.InvalidArgumentError` for an index past the end."""
    s_len = blob_length + _BLOCK
    if index < 0 or index * MEDIA_SIDECAR_CHUNK >= s_len:
        raise InvalidArgumentError("sidecar index out of range")
    s_start = index * MEDIA_SIDECAR_CHUNK
    s_end = min(s_start + MEDIA_SIDECAR_CHUNK + _SIDECAR_OVERLAP, s_len)
    return max(s_start - _BLOCK, 0), s_end - _BLOCK


def _sidecar_entry(sidecar: bytes, index: int) -> bytes:
    entry = sidecar[index * MEDIA_MAC_LEN : (index + 1) * MEDIA_MAC_LEN]
    if len(entry) != MEDIA_MAC_LEN:
        raise MediaIntegrityError(_INTEGRITY_MESSAGE)
    return entry


def verify_sidecar_chunk(keys: MediaKeys, sidecar: bytes, index: int, chunk: bytes, *, blob_length: int) -> None:
    """Check ``chunk`` (``blob[start:end]`` for ``start, end = sidecar_window(index, blob_length)``)
    against sidecar entry ``index`` in constant time, for streamed playback of a partial download.

    Raises :class:`~wacrypto.errors.MediaIntegrityError` if it does not match."""
    start, end = sidecar_window(index, blob_length)
    if len(chunk) != end - start:
        raise MediaIntegrityError(_INTEGRITY_MESSAGE)
    mac = hmac.new(keys.mac_key, digestmod=hashlib.sha256)
    if index == 0:
        mac.update(keys.iv)
    mac.update(chunk)
    if not hmac.compare_digest(mac.digest()[:MEDIA_MAC_LEN], _sidecar_entry(sidecar, index)):
        raise MediaIntegrityError(_INTEGRITY_MESSAGE)


def decrypt_sidecar_chunk(keys: MediaKeys, sidecar: bytes, index: int, chunk: bytes, *, blob_length: int) -> bytes:
    """Verify ``chunk`` like :func:`verify_sidecar_chunk`, then return its plaintext.

    Window ``n`` decrypts to plaintext bytes ``[n*65536, (n+1)*65536)`` (fewer at the end). For the last
    window the padding is removed strictly. Only the sidecar MAC vouches for these bytes: the whole-file
    MAC and hashes are checked only by a full :class:`MediaDecryptor` run."""
    verify_sidecar_chunk(keys, sidecar, index, chunk, blob_length=blob_length)
    s = keys.iv + chunk if index == 0 else chunk
    ct_len = blob_length - MEDIA_MAC_LEN
    if ct_len < _BLOCK or ct_len % _BLOCK:
        raise MediaIntegrityError(_INTEGRITY_MESSAGE)
    # in S coordinates the window starts at index*C; ct starts at S offset 16 and ends at 16 + ct_len
    s_start = index * MEDIA_SIDECAR_CHUNK
    body_end = min(s_start + MEDIA_SIDECAR_CHUNK + _BLOCK, _BLOCK + ct_len) - s_start  # ct blocks in this window
    if body_end <= _BLOCK:
        return b""
    dec = Cipher(algorithms.AES(keys.cipher_key), modes.CBC(s[:_BLOCK])).decryptor()
    plain = dec.update(s[_BLOCK:body_end]) + dec.finalize()
    if s_start + body_end == _BLOCK + ct_len:  # last ciphertext block is in this window
        plain = _unpad(plain)
    return plain


# --------------------------------------------------------------------------- padding


def _unpad(block_tail: bytes) -> bytes:
    """Strict PKCS#7 removal; raises the opaque integrity error."""
    if not block_tail:
        raise MediaIntegrityError(_INTEGRITY_MESSAGE)
    pad = block_tail[-1]
    if pad < 1 or pad > _BLOCK or pad > len(block_tail):
        raise MediaIntegrityError(_INTEGRITY_MESSAGE)
    if not hmac.compare_digest(block_tail[-pad:], bytes([pad]) * pad):
        raise MediaIntegrityError(_INTEGRITY_MESSAGE)
    return block_tail[:-pad]


def _as_view(data: BytesLike) -> memoryview:
    view = memoryview(data)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    return view


# --------------------------------------------------------------------------- encryptor


@final
class MediaEncryptor:
    """Streaming encryption: feed plaintext with :meth:`update`, get blob bytes back.

    ``media_key`` defaults to a fresh random key from ``randbytes``. ``sidecar`` defaults to
    ``media_type.has_sidecar``. More than ``max_bytes`` of plaintext (default 64 MiB, ``None`` for no
    limit) raises :class:`~wacrypto.errors.MediaTooLargeError` from the :meth:`update` that crosses it,
    before any of its bytes are returned.

    The concatenation of every :meth:`update` output and the bytes returned by :meth:`finalize` is the
    blob (``ct || mac``); ``finalize`` also returns the :class:`EncryptedMedia` description. Memory use
    is constant: only the running cipher, MAC and hash states are kept.
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
        self._type = _check_media_type(media_type)
        self._key = generate_media_key(randbytes) if media_key is None else _check_media_key(media_key)
        self._keys = derive_media_keys(self._key, self._type)
        self._max = _check_limit(max_bytes)
        self._enc = Cipher(algorithms.AES(self._keys.cipher_key), modes.CBC(self._keys.iv)).encryptor()
        self._sha_plain = hashlib.sha256()
        self._length = 0
        self._mac = hmac.new(self._keys.mac_key, self._keys.iv, hashlib.sha256)
        self._sha_enc = hashlib.sha256()
        want_sidecar = self._type.has_sidecar if sidecar is None else bool(sidecar)
        self._sidecar = _SidecarBuilder(self._keys.mac_key) if want_sidecar else None
        if self._sidecar is not None:
            self._sidecar.update(memoryview(self._keys.iv))
        self._done = False

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

    # -- the two halves of a step; the threaded file pipeline runs them on different threads --------

    def _cipher_step(self, view: memoryview, out: bytearray | memoryview, *, hash_plain: bool = True) -> int:
        """Count, hash (unless ``hash_plain`` is false: then the caller must call :meth:`_plain_step`)
        and encrypt plaintext ``view`` into ``out``; return the ciphertext length."""
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

    def _plain_step(self, view: memoryview) -> None:
        """Hash plaintext ``view`` (for a pipeline that moved this pass to another thread)."""
        self._sha_plain.update(view)

    @property
    def _has_sidecar(self) -> bool:
        return self._sidecar is not None

    def _auth_step(self, ct: memoryview) -> None:
        """MAC, enc-hash and sidecar over ciphertext bytes ``ct``."""
        self._mac.update(ct)
        self._sha_enc.update(ct)
        if self._sidecar is not None:
            self._sidecar.update(ct)

    # -- public API -------------------------------------------------------------------------------

    def update_into(self, data: BytesLike, out: bytearray | memoryview) -> int:
        """Encrypt ``data`` into ``out`` (at least ``len(data) + 15`` bytes); return bytes written."""
        view = _as_view(data)
        if len(out) < len(view) + _BLOCK - 1:
            raise InvalidArgumentError("output buffer must be at least len(data) + 15 bytes")
        n = self._cipher_step(view, out)
        self._auth_step(memoryview(out)[:n])
        return n

    def update(self, data: BytesLike) -> bytes:
        """Encrypt ``data``; return the blob bytes that are ready (a multiple of 16, maybe empty)."""
        view = _as_view(data)
        out = bytearray(len(view) + _BLOCK - 1)
        n = self.update_into(view, out)
        del out[n:]
        return bytes(out)

    def finalize(self) -> tuple[bytes, EncryptedMedia]:
        """Pad, finish and MAC. Returns ``(last blob bytes, EncryptedMedia)``; the encryptor is spent."""
        if self._done:
            raise UsageError("encryptor already finalized")
        self._done = True
        pad = _BLOCK - self._length % _BLOCK
        last = bytearray(2 * _BLOCK)
        n = self._enc.update_into(bytes([pad]) * pad, last)
        self._enc.finalize()
        del last[n:]
        self._auth_step(memoryview(last))
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


# --------------------------------------------------------------------------- decryptor


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
    extended or corrupted blob, a wrong key or a wrong hash) or returns :class:`DecryptedMedia`.

    Plaintext goes to ``staging`` as it is decrypted (minus the last block, held back for the padding
    check) and *is unverified until finalize returns*: the staging sink must be private (a temporary file
    that is deleted on error and published afterwards). Without ``staging`` the decryptor keeps the
    plaintext in memory and returns it in ``DecryptedMedia.plaintext``.

    A blob longer than ``max_bytes`` of plaintext allows (default 64 MiB, ``None`` = no limit) is
    rejected as soon as the excess arrives, with the same opaque error.
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
        self._type = _check_media_type(media_type)
        self._keys = derive_media_keys(_check_media_key(media_key), self._type)
        self._want_enc = _check_digest(file_enc_sha256, "file_enc_sha256")
        self._want_plain = _check_digest(file_sha256, "file_sha256")
        limit = _check_limit(max_bytes)
        self._max_blob = None if limit is None else limit + blob_overhead(limit)
        self._memory = _MemoryStaging() if staging is None else None
        self._staging: StagingSink = self._memory if self._memory is not None else staging  # type: ignore[assignment]
        self._dec = Cipher(algorithms.AES(self._keys.cipher_key), modes.CBC(self._keys.iv)).decryptor()
        self._mac = hmac.new(self._keys.mac_key, self._keys.iv, hashlib.sha256)
        self._sha_enc = hashlib.sha256()
        self._sha_plain = hashlib.sha256()
        self._tail = b""  # last <= 10 bytes seen: the MAC candidate
        self._held = b""  # last decrypted block, held back for the padding check
        self._out = bytearray()
        self._ct_len = 0
        self._plain_len = 0
        self._state = 0  # 0 open, 1 finished, 2 failed

    def __repr__(self) -> str:
        return f"MediaDecryptor(media_type={self._type.value}, received={self._ct_len + len(self._tail)})"

    @property
    def received(self) -> int:
        """Blob bytes consumed so far."""
        return self._ct_len + len(self._tail)

    def _fail(self) -> MediaIntegrityError:
        self._state = 2
        return MediaIntegrityError(_INTEGRITY_MESSAGE)

    def _check_open(self) -> None:
        if self._state == 1:
            raise UsageError("decryptor already finalized")
        if self._state == 2:
            raise MediaIntegrityError(_INTEGRITY_MESSAGE)

    # -- the two halves of a step over ciphertext bytes (the file pipeline runs them on two threads) --

    def _auth_ct(self, ct: memoryview) -> None:
        self._mac.update(ct)
        self._sha_enc.update(ct)

    def _decrypt_ct(self, ct: memoryview) -> None:
        if self._max_blob is not None and self._ct_len + len(ct) + MEDIA_MAC_LEN > self._max_blob:
            raise self._fail()
        self._ct_len += len(ct)
        for pos in range(0, len(ct), MEDIA_IO_CHUNK):
            piece = ct[pos : pos + MEDIA_IO_CHUNK]
            need = len(piece) + _BLOCK - 1
            if len(self._out) < need:
                self._out = bytearray(max(need, min(MEDIA_IO_CHUNK, 2 * need)))
            n = self._dec.update_into(piece, self._out)
            if n == 0:
                continue
            out = memoryview(self._out)
            if self._held:
                self._release(memoryview(self._held))
            self._release(out[: n - _BLOCK])
            self._held = bytes(out[n - _BLOCK : n])

    def _release(self, plain: memoryview) -> None:
        if plain:
            self._sha_plain.update(plain)
            self._plain_len += len(plain)
            self._staging.write(plain)

    def _set_tail(self, tail: bytes) -> None:
        self._tail = tail

    # -- public API -------------------------------------------------------------------------------

    def update(self, data: BytesLike) -> None:
        """Consume the next blob bytes. Plaintext (unverified) goes only to the staging sink."""
        self._check_open()
        view = _as_view(data)
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
            self._state = 2
            raise

    def finalize(self) -> DecryptedMedia:
        """Run every check; return the verified result or raise the opaque integrity error."""
        self._check_open()
        # 1. length: at least one block of ciphertext, whole blocks, then a full MAC
        if len(self._tail) != MEDIA_MAC_LEN or self._ct_len < _BLOCK or self._ct_len % _BLOCK:
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
            last = _unpad(self._held)
        except MediaIntegrityError:
            raise self._fail() from None
        self._release(memoryview(last))
        # 5. SHA256(plaintext)
        plain_digest = self._sha_plain.digest()
        if self._want_plain is not None and not hmac.compare_digest(plain_digest, self._want_plain):
            raise self._fail()
        self._state = 1
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


# --------------------------------------------------------------------------- one-shot helpers


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
    view = _as_view(plaintext)
    limit = _check_limit(max_bytes)
    if limit is not None and len(view) > limit:
        raise MediaTooLargeError(f"media is larger than the limit of {limit} bytes")
    enc = MediaEncryptor(media_type, media_key, sidecar=sidecar, max_bytes=max_bytes, randbytes=randbytes)
    out = bytearray(len(view) + 2 * _BLOCK)  # update_into wants len(piece) + 15 bytes of room
    n = 0
    for pos in range(0, len(view), MEDIA_IO_CHUNK):
        piece = view[pos : pos + MEDIA_IO_CHUNK]
        n += enc.update_into(piece, memoryview(out)[n:])
    tail, result = enc.finalize()
    out[n:] = tail
    return bytes(out), result


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
