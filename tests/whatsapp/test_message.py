"""The plaintext of a WhatsApp message: our proto, padding for v=2, strict decoding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wacrypto._proto import message_pb2
from wacrypto.errors import InvalidArgumentError, InvalidMessageError
from wacrypto.whatsapp.message import Content, DocumentRef, ImageRef, SenderKeyDistribution, decode, encode
from wacrypto.whatsapp.padding import unpad

_h32 = st.binary(min_size=32, max_size=32)
_images = st.builds(ImageRef, st.text(max_size=40), st.text(max_size=40), _h32, _h32, _h32,
                    st.integers(0, 2**40), st.sampled_from(["image/jpeg", "image/png"]), st.text(max_size=20))
_contents = st.builds(
    Content,
    st.none() | st.text(max_size=200),
    st.none() | _images,
    st.none() | st.builds(SenderKeyDistribution, st.text(min_size=1, max_size=30), st.binary(min_size=1, max_size=80)),
    st.none() | st.text(min_size=1, max_size=30),
    st.none(),
    st.none() | st.builds(DocumentRef, st.text(max_size=40), st.text(max_size=40), _h32, _h32, _h32,
                          st.integers(0, 2**40), st.just("application/pdf"), st.text(max_size=20)),
)


@given(_contents, st.sampled_from([2, 3]))
def test_round_trip(content: Content, v: int) -> None:
    got = decode(encode(content, v=v), v=v)
    assert got == content


def test_v2_is_padded_and_v3_is_not() -> None:
    c = Content(text="hello")
    raw = encode(c, v=3)
    assert message_pb2.Message.FromString(raw).conversation == "hello"
    padded = encode(c, v=2)
    assert len(padded) > len(raw) and unpad(padded) == raw


def test_field_numbers_are_whatsapps() -> None:
    # conversation = 1 (string), device-sent = 31 wrapping a Message at its field 2
    assert encode(Content(text="hi"), v=3) == b"\x0a\x02hi"
    sent = encode(Content(text="hi", destination="1@s.whatsapp.net"), v=3)
    assert sent[:2] == b"\xfa\x01"  # field 31, length-delimited


def test_document_field_numbers_differ_from_the_image_ones() -> None:
    doc = DocumentRef("u", "/p", b"\x01" * 32, b"\x02" * 32, b"\x03" * 32, 5, "application/pdf", "a.pdf")
    m = message_pb2.Message.FromString(encode(Content(document=doc), v=3))
    raw = m.document.SerializeToString()
    assert b"\x3a\x20" + b"\x01" * 32 in raw  # media key: field 7 (in an image it is field 8)
    assert b"\x42\x05a.pdf" in raw  # file name: field 8


def test_bad_padding_and_bad_protobuf_are_refused() -> None:
    with pytest.raises(InvalidMessageError):
        decode(b"", v=2)
    with pytest.raises(InvalidMessageError):
        decode(b"\x0a\x02hi\x03\x03\x02", v=2)
    with pytest.raises(InvalidMessageError):
        decode(b"\x0a\x09hi\x01", v=2)
    bad_image = message_pb2.Message()
    bad_image.image.media_key = b"short"
    with pytest.raises(InvalidMessageError):
        decode(bad_image.SerializeToString(), v=3)


def test_repr_hides_the_text_and_the_media_key() -> None:
    img = ImageRef("u", "/p", b"\x01" * 32, b"\x02" * 32, b"\x03" * 32, 10, caption="secret caption")
    c = Content(text="secret text", image=img)
    assert "secret" not in repr(c) and "secret" not in repr(img) and "0101" not in repr(img)


def test_too_long_text_is_refused() -> None:
    with pytest.raises(InvalidArgumentError):
        Content(text="x" * 70000)


def test_invalid_utf8_in_a_text_is_refused() -> None:
    # found by fuzz/fuzz_message.py: the protobuf runtime hands invalid UTF-8 through as surrogates
    with pytest.raises(InvalidMessageError):
        decode(b"\x0a\x04\xfb\xfb\xfb\xfb", v=3)
    with pytest.raises(InvalidMessageError):
        decode(b"\xfa\x01\x03\x0a\x01\xff", v=3)
