"""The plaintext of a WhatsApp message: what is inside an ``<enc>`` once decrypted and unpadded.

:class:`Content` is the part wacrypto understands of WhatsApp's E2E ``Message`` protobuf
(``proto/message.proto``): a text (``conversation``), an image or document reference (what the
recipient needs to download and decrypt the blob), a sender-key distribution for a group, and the ``DeviceSentMessage``
wrapper our own other devices receive. :func:`encode` pads for ``v=2``; :func:`decode` is strict
(padding checked, protobuf parsed, sizes bounded) and raises only
:class:`~wacrypto.errors.InvalidMessageError`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Final, final

from wacrypto._proto import message_pb2
from wacrypto.errors import InvalidArgumentError, InvalidMessageError
from wacrypto.limits import MAX_PLAINTEXT_LEN
from wacrypto.primitives.keys import Rng, system_rng
from wacrypto.primitives.protobuf import parse_message
from wacrypto.whatsapp.padding import pad, unpad

__all__ = ["Content", "DocumentRef", "ImageRef", "SenderKeyDistribution", "decode", "encode"]

_MAX_TEXT: Final = 65536  # characters of a text, at most


@final
@dataclass(frozen=True, slots=True)
class ImageRef:
    """An uploaded, encrypted image: where it is and the keys to read it."""

    url: str
    direct_path: str
    media_key: bytes
    file_sha256: bytes
    file_enc_sha256: bytes
    file_length: int
    mimetype: str = "image/jpeg"
    caption: str = ""

    def __repr__(self) -> str:  # the media key is a secret; the caption is content
        return f"ImageRef(direct_path={self.direct_path!r}, file_length={self.file_length}, mimetype={self.mimetype!r})"


@final
@dataclass(frozen=True, slots=True)
class DocumentRef:
    """An uploaded, encrypted document (any file): where it is and the keys to read it."""

    url: str
    direct_path: str
    media_key: bytes
    file_sha256: bytes
    file_enc_sha256: bytes
    file_length: int
    mimetype: str = "application/octet-stream"
    file_name: str = ""

    def __repr__(self) -> str:  # the media key is a secret; the name is content
        return f"DocumentRef(direct_path={self.direct_path!r}, file_length={self.file_length}, mimetype={self.mimetype!r})"


@final
@dataclass(frozen=True, slots=True)
class SenderKeyDistribution:
    group_id: str
    distribution: bytes  # a serialized SenderKeyDistributionMessage


@final
@dataclass(frozen=True, slots=True)
class Content:
    """One message's plaintext; ``destination`` set: a copy of a message we sent to ``destination``
    (``DeviceSentMessage``), as our own other devices receive it."""

    text: str | None = None
    image: ImageRef | None = None
    distribution: SenderKeyDistribution | None = None
    destination: str | None = None
    phash: str | None = None
    document: DocumentRef | None = None

    def __post_init__(self) -> None:
        if self.text is not None and len(self.text) > _MAX_TEXT:
            raise InvalidArgumentError(f"a text has at most {_MAX_TEXT} characters")

    def __repr__(self) -> str:  # never the text
        kinds = [k for k, v in (("text", self.text), ("image", self.image), ("document", self.document),
                                ("distribution", self.distribution)) if v is not None]
        sent = "" if self.destination is None else ", device_sent"
        return f"Content({'+'.join(kinds) or 'empty'}{sent})"

    def without_distribution(self) -> Content:
        return dataclasses.replace(self, distribution=None)

    def sent_to(self, destination: str | None) -> Content:
        """This content as our own other devices receive it (``DeviceSentMessage``), or unwrapped (None)."""
        return dataclasses.replace(self, destination=destination, phash=None)

    def with_distribution(self, distribution: SenderKeyDistribution | None) -> Content:
        return dataclasses.replace(self, distribution=distribution)


_MEDIA_FIELDS: Final = ("url", "direct_path", "media_key", "file_sha256", "file_enc_sha256", "file_length", "mimetype")


def _fill_media(pb: message_pb2.Image | message_pb2.Document, ref: ImageRef | DocumentRef) -> None:
    """The fields images and documents share (under the same names, at their own numbers)."""
    for name in _MEDIA_FIELDS:
        setattr(pb, name, getattr(ref, name))


def _media_fields(pb: message_pb2.Image | message_pb2.Document,
                  what: str) -> tuple[str, str, bytes, bytes, bytes, int, str]:
    """The shared fields of a received image or document, in ImageRef / DocumentRef order, checked."""
    if len(pb.media_key) != 32 or len(pb.file_sha256) != 32 or len(pb.file_enc_sha256) != 32:
        raise InvalidMessageError(f"{what}: keys and hashes must be 32 bytes")
    return pb.url, pb.direct_path, pb.media_key, pb.file_sha256, pb.file_enc_sha256, pb.file_length, pb.mimetype


def _fill(m: message_pb2.Message, c: Content) -> None:
    if c.text is not None:
        m.conversation = c.text
    if c.image is not None:
        _fill_media(m.image, c.image)
        if c.image.caption:
            m.image.caption = c.image.caption
    if c.document is not None:
        _fill_media(m.document, c.document)
        if c.document.file_name:
            m.document.file_name = c.document.file_name
    if c.distribution is not None:
        m.sender_key_distribution.group_id = c.distribution.group_id
        m.sender_key_distribution.distribution = c.distribution.distribution


def encode(content: Content, *, v: int = 2, rng: Rng = system_rng) -> bytes:
    """The plaintext bytes of ``content`` for an ``<enc v>`` (padded when ``v`` is 2)."""
    m = message_pb2.Message()
    if content.destination is not None:
        m.device_sent.destination_jid = content.destination
        if content.phash is not None:
            m.device_sent.phash = content.phash
        _fill(m.device_sent.message, content)
    else:
        _fill(m, content)
    raw: bytes = m.SerializeToString(deterministic=True)
    if len(raw) > MAX_PLAINTEXT_LEN - 16:
        raise InvalidArgumentError("message too long for one plaintext")
    return pad(raw, rng) if v == 2 else raw


def _text(value: str, what: str) -> str:
    """A string field as received: the protobuf runtime hands invalid UTF-8 through (as bytes, or as
    lone surrogates); such a message is malformed."""
    if not isinstance(value, str):
        raise InvalidMessageError(f"{what}: not UTF-8")
    try:
        value.encode("utf-8")
    except UnicodeError:
        raise InvalidMessageError(f"{what}: not UTF-8") from None
    return value


def _content(m: message_pb2.Message, destination: str | None, phash: str | None) -> Content:
    for what, value in (("text", m.conversation), ("image url", m.image.url), ("image path", m.image.direct_path),
                        ("image type", m.image.mimetype), ("image caption", m.image.caption),
                        ("document url", m.document.url), ("document path", m.document.direct_path),
                        ("document type", m.document.mimetype), ("document name", m.document.file_name),
                        ("document title", m.document.title),
                        ("group id", m.sender_key_distribution.group_id)):
        _text(value, what)
    image = ImageRef(*_media_fields(m.image, "image"), m.image.caption) if m.HasField("image") else None
    document = None
    if m.HasField("document"):
        document = DocumentRef(*_media_fields(m.document, "document"), m.document.file_name)
    dist = None
    if m.HasField("sender_key_distribution"):
        d = m.sender_key_distribution
        if not d.group_id or not d.distribution:
            raise InvalidMessageError("sender key distribution without group or key")
        dist = SenderKeyDistribution(d.group_id, d.distribution)
    text = m.conversation if m.HasField("conversation") else None
    if text is not None and len(text) > _MAX_TEXT:
        raise InvalidMessageError("text too long")
    return Content(text, image, dist, destination, phash, document)


def decode(plaintext: bytes, *, v: int = 2) -> Content:
    """The content of a decrypted ``<enc v>``; :class:`InvalidMessageError` if it is malformed."""
    raw = unpad(plaintext) if v == 2 else bytes(plaintext)
    m = parse_message(message_pb2.Message, raw, "message plaintext", max_len=MAX_PLAINTEXT_LEN)
    if m.HasField("device_sent"):
        ds = m.device_sent
        _text(ds.destination_jid, "destination")
        _text(ds.phash, "phash")
        if not ds.destination_jid:
            raise InvalidMessageError("device-sent message without a destination")
        return _content(ds.message, ds.destination_jid, ds.phash if ds.HasField("phash") else None)
    return _content(m, None, None)
