"""Media classes and key derivation: which HKDF ``info`` string a blob uses and what the media key expands to.

``expanded = HKDF-SHA256(ikm=media_key, salt=none, info=MediaType.info, L=112)`` is split into
``iv = expanded[0:16]``, ``cipher_key = expanded[16:48]``, ``mac_key = expanded[48:80]`` and
``ref_key = expanded[80:112]`` (``docs/protocol-notes.md`` section 3). HKDF is
:func:`wacrypto.primitives.kdf.hkdf_sha256_blocks`, the one implementation the Signal layers use too
(with the expand inputs of each ``info`` string computed once).

Pure: no I/O; randomness is a parameter.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, final

from wacrypto.errors import InvalidArgumentError
from wacrypto.limits import MEDIA_KEY_LEN
from wacrypto.primitives.kdf import hkdf_info, hkdf_sha256_blocks

__all__ = [
    "MediaType",
    "MediaKeys",
    "generate_media_key",
    "derive_media_keys",
    "check_media_key",
    "check_media_type",
]

_EXPANDED_LEN: Final = 112  # iv 16 + cipher key 32 + mac key 32 + ref key 32


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
_EXPAND: Final = {m: hkdf_info(m.info, _EXPANDED_LEN) for m in MediaType}  # HKDF expand inputs per class


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


def check_media_key(media_key: object) -> bytes:
    """``media_key`` as ``bytes`` if it is a 32-byte buffer; else :class:`~wacrypto.errors.InvalidArgumentError`."""
    if not isinstance(media_key, (bytes, bytearray, memoryview)):
        raise InvalidArgumentError("media key must be bytes")
    key = bytes(media_key)
    if len(key) != MEDIA_KEY_LEN:
        raise InvalidArgumentError(f"media key must be {MEDIA_KEY_LEN} bytes, got {len(key)}")
    return key


def check_media_type(media_type: object) -> MediaType:
    """``media_type`` if it is a :class:`MediaType` (never guessed from a string or mimetype)."""
    if not isinstance(media_type, MediaType):
        raise InvalidArgumentError("media_type must be a MediaType (choose it by message class)")
    return media_type


def generate_media_key(randbytes: Callable[[int], bytes] = os.urandom) -> bytes:
    """Return a fresh 32-byte media key from ``randbytes`` (default: the OS CSPRNG)."""
    return check_media_key(randbytes(MEDIA_KEY_LEN))


def derive_media_keys(media_key: bytes, media_type: MediaType) -> MediaKeys:
    """Expand ``media_key`` (32 bytes) with HKDF-SHA256 and ``media_type.info`` into :class:`MediaKeys`."""
    key = check_media_key(media_key)
    mtype = check_media_type(media_type)
    expanded = b"".join(hkdf_sha256_blocks(key, None, _EXPAND[mtype]))[:_EXPANDED_LEN]
    return MediaKeys(iv=expanded[0:16], cipher_key=expanded[16:48], mac_key=expanded[48:80], ref_key=expanded[80:112])
