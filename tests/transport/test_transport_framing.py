"""Framing: intro once, 3-byte lengths, hard limit, and any split of the stream parses the same."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wacrypto.errors import FrameError, InvalidArgumentError
from wacrypto.limits import MAX_FRAME_LEN
from wacrypto.transport.framing import FrameDecoder, FrameEncoder, encode_frame, make_intro


def frames_of(decoder: FrameDecoder) -> list[bytes]:
    out = []
    while (f := decoder.next_frame()) is not None:
        out.append(f)
    return out


def test_intro_is_sent_once_glued_before_the_first_frame() -> None:
    enc = FrameEncoder(b"WA\x06\x03")
    assert enc.encode(b"abc") == b"WA\x06\x03\x00\x00\x03abc"
    assert enc.encode(b"") == b"\x00\x00\x00"


def test_edge_routing_pre_intro() -> None:
    intro = make_intro(b"WA\x04\x00", b"route")
    assert intro == b"ED\x00\x01\x00\x00\x05routeWA\x04\x00"
    dec = FrameDecoder(expect_intro=True)
    dec.feed(intro + encode_frame(b"x"))
    assert frames_of(dec) == [b"x"]
    assert dec.header == b"WA\x04\x00" and dec.routing_info == b"route"


@pytest.mark.parametrize("header", [b"XA\x06\x03", b"WA\x06", b"wa\x06\x03"])
def test_bad_header_is_refused_by_the_encoder(header: bytes) -> None:
    with pytest.raises(InvalidArgumentError):
        make_intro(header)


@pytest.mark.parametrize("garbage", [b"GET / HTTP/1.1\r\n", b"\x16\x03\x01\x02\x00", b"EDxx"])
def test_server_refuses_a_stream_without_the_wa_intro(garbage: bytes) -> None:
    dec = FrameDecoder(expect_intro=True)
    dec.feed(garbage)
    with pytest.raises(FrameError):
        dec.next_frame()


@pytest.mark.parametrize("limit", [1, 100, 65536])
def test_frame_size_edges(limit: int) -> None:
    for n in (0, limit - 1, limit):
        dec = FrameDecoder(limit)
        dec.feed(encode_frame(b"z" * n))
        assert frames_of(dec) == [b"z" * n]
    dec = FrameDecoder(limit)
    dec.feed((limit + 1).to_bytes(3, "big"))  # only the prefix: refused before any body arrives
    with pytest.raises(FrameError):
        dec.next_frame()
    with pytest.raises(InvalidArgumentError):
        FrameEncoder(max_frame_len=limit).encode(b"z" * (limit + 1))


def test_wire_maximum() -> None:
    with pytest.raises(InvalidArgumentError):
        encode_frame(b"\0" * (MAX_FRAME_LEN + 1))
    dec = FrameDecoder(MAX_FRAME_LEN)
    dec.feed(b"\xff\xff\xff")
    assert dec.next_frame() is None  # 2^24-1 is legal at the wire maximum; waits for the body


@settings(max_examples=200, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=300), max_size=12),
    cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=30),
    with_intro=st.booleans(),
)
def test_any_split_gives_the_same_frames(payloads: list[bytes], cuts: list[int], with_intro: bool) -> None:
    enc = FrameEncoder(make_intro(b"WA\x06\x03", b"r" if with_intro else None) if with_intro else b"")
    stream = b"".join(enc.encode(p) for p in payloads)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    dec = FrameDecoder(expect_intro=with_intro)
    got: list[bytes] = []
    for a, b in zip(points, points[1:]):
        dec.feed(stream[a:b])
        got.extend(frames_of(dec))
    assert got == payloads
    assert dec.buffered == 0


def test_split_at_every_byte_boundary() -> None:
    payloads = [b"", b"a", b"hello world" * 20, bytes(range(256))]
    stream = FrameEncoder(b"WA\x06\x03").encode(payloads[0]) + b"".join(encode_frame(p) for p in payloads[1:])
    for k in range(len(stream) + 1):
        dec = FrameDecoder(expect_intro=True)
        dec.feed(stream[:k])
        got = frames_of(dec)
        dec.feed(stream[k:])
        got += frames_of(dec)
        assert got == payloads, k
