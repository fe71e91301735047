"""The binary stanza codec: round trips, one canonical form, exact bytes for known stanzas, strict
bounds, and nothing but InvalidMessageError out of hostile bytes."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wacrypto.errors import InvalidArgumentError, InvalidMessageError
from wacrypto.limits import MAX_STANZA_DEPTH
from wacrypto.testing.stanzas import same_node, stanzas
from wacrypto.wire.binary import Node, decode_node, decode_node_body, encode_node, encode_node_body

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(stanzas)
def test_round_trip(n: Node) -> None:
    wire = encode_node(n)
    back = decode_node(wire)
    assert same_node(n, back)
    assert encode_node(back) == wire  # reading back and writing again gives the same bytes


@FAST
@given(stanzas)
def test_compressed_stanza_reads_the_same(n: Node) -> None:
    body = encode_node_body(n)
    assert decode_node(b"\x02" + zlib.compress(body)) == decode_node(b"\x00" + body)


@settings(max_examples=600, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_raises_only_invalid_message(data: bytes) -> None:
    for blob in (data, b"\x00" + data, b"\x02" + data):
        try:
            n = decode_node(blob)
        except InvalidMessageError:
            continue
        assert decode_node(encode_node(n)) == n


@FAST
@given(stanzas, st.data())
def test_every_truncation_fails_cleanly(n: Node, data: st.DataObject) -> None:
    wire = encode_node(n)
    cut = data.draw(st.integers(0, len(wire) - 1))
    with pytest.raises(InvalidMessageError):
        decode_node(wire[:cut])
    with pytest.raises(InvalidMessageError, match="after the stanza"):
        decode_node(wire + b"\x00")


def test_known_bytes() -> None:
    # tokens (single-byte table: message=0x0b to=0x0e id=0x08 t=0x1d enc=0x16 v=0x36 "2"=0x33
    # type=0x04 pkmsg=0x60), AD_JID with device, hex-packed id, nibble-packed timestamp, binary content
    n = Node("message", {"to": "123456:2@s.whatsapp.net", "id": "3EB0ABCDEF", "t": "1700000000"},
             (Node("enc", {"v": "2", "type": "pkmsg"}, b"\x01\x02"),))
    assert encode_node(n).hex() == (
        "00" "f808" "0b"  # flags, list of 8 items, tag "message"
        "0e" "f7" "00" "02" "ff03123456"  # to = AD_JID(domain 0, device 2, nibble "123456")
        "08" "fb053eb0abcdef"  # id = HEX_8 "3EB0ABCDEF"
        "1d" "ff051700000000"  # t = NIBBLE_8 "1700000000"
        "f801" "f806" "16" "36" "33" "04" "60" "fc020102"  # one child: <enc v=2 type=pkmsg> 01 02
    )
    assert decode_node(encode_node(n)) == n
    # odd length: 3 bytes with the high bit set, the last nibble is the 0xF pad
    assert encode_node(Node("iq", {"id": "12345"})).hex().endswith("ff8312345f")


def test_jids_read_back_exactly() -> None:
    for jid in ("123@s.whatsapp.net", "123:7@s.whatsapp.net", "99:255@lid", "@s.whatsapp.net",
                "120363-1690000000@g.us", "status@broadcast", "123_4@s.whatsapp.net", "1:0@lid", "a@b@c"):
        n = Node("iq", {"to": jid})
        assert decode_node(encode_node(n)) == n, jid


def test_strict_reads() -> None:
    good = encode_node(Node("iq", {"id": "x1"}))
    cases: dict[bytes, str | None] = {
        b"": "empty stanza",
        b"\x04" + good[1:]: "unknown stanza flags",
        b"\x02" + b"not zlib": "does not inflate",
        b"\x00\x00": "empty node",
        b"\x00\xf8\x01\x00": "node without a tag",
        b"\x00\xf8\x05\x1e\x08\x33\x08\x33": "repeated attribute",  # <iq id="2" id="2">
        b"\x00\xf8\x01\xf0": "invalid string tag",
        b"\x00\xf8\x01\xf7\x05\x01\x0b": "unknown JID domain",
        b"\x00\xf8\x01\xfa\x00\x00": "JID without a server",
        b"\x00\xf8\x01\xfc\x02\xff\xfe": "not valid UTF-8",
        b"\x00\xf8\x01\xff\x81\x1c": "pad nibble",  # odd nibble string whose pad is not 0xF
        b"\x00\xf8\x01\xff\x01\xc1": "invalid nibble",
        b"\x00\xf8\x02\x0b\xff\x00": "empty packed string",  # found by fuzz/fuzz_binary.py
        b"\x00\xf8\x02\x0b\xff\x41" + b"\x11" * 65: "longer than 127",  # no encoder packs more
        # found by fuzz/fuzz_binary.py: a JID pair whose user has an "_" must stay a string
        b"\x00\xf8\x02\x0b\xfa\xfc\x03a_b\x0b": None,
        b"\x00\xf8\x01\xfd\x10\x00\x01\x61": "top nibble",
        b"\x00\xf8\x02\x19\xf8\x01": "truncated",
    }
    for blob, msg in cases.items():
        if msg is None:
            n = decode_node(blob)
            assert decode_node(encode_node(n)) == n and encode_node(n) == blob
            continue
        with pytest.raises(InvalidMessageError, match=msg):
            decode_node(blob)


def test_depth_limit_both_ways() -> None:
    n = Node("leaf")
    for _ in range(MAX_STANZA_DEPTH):
        n = Node("x", {}, (n,))
    assert decode_node(encode_node(n)) == n
    deeper = Node("x", {}, (n,))
    with pytest.raises(InvalidArgumentError, match="deeper"):
        encode_node(deeper)
    # the same nesting built by hand (each level: list of 2, tag "x" raw, list of 1 child)
    level = b"\xf8\x02\xfc\x01x\xf8\x01"
    blob = b"\x00" + level * (MAX_STANZA_DEPTH + 1) + b"\xf8\x01\xfc\x04leaf"
    with pytest.raises(InvalidMessageError, match="deeper"):
        decode_node(blob)


def test_size_limits() -> None:
    big = Node("enc", {}, bytes(1000))
    assert decode_node(encode_node(big, max_len=1100), max_len=1100) == big
    with pytest.raises(InvalidArgumentError, match="limit"):
        encode_node(big, max_len=900)
    with pytest.raises(InvalidMessageError, match="limit"):
        decode_node(encode_node(big), max_len=900)
    bomb = b"\x02" + zlib.compress(encode_node_body(Node("enc", {}, bytes(100_000))))
    with pytest.raises(InvalidMessageError, match="inflates past"):
        decode_node(bomb, max_len=50_000)
    with pytest.raises(InvalidMessageError, match="truncated or has trailing"):
        decode_node(b"\x02" + zlib.compress(encode_node_body(big))[:-3])


def test_packed_string_lengths() -> None:
    for k in (3, 4, 126, 127, 128, 200):  # (one- and two-digit strings are often tokens)
        for s in ("70" * k)[:k], ("A0" * k)[:k]:
            wire = encode_node_body(Node("iq", {"id": s}))
            assert decode_node_body(wire).attrs["id"] == s
            packed = wire[4] in (0xFF, 0xFB)  # f8 03 <iq> <id> <value tag>
            assert packed == (k <= 127), (k, s[:3])


def test_nodes_are_immutable_and_typed() -> None:
    n = Node("iq", {"id": "1"}, [Node("ping")])
    assert isinstance(n.content, tuple) and n.child("ping") == Node("ping") and n.child("pong") is None
    with pytest.raises(TypeError):
        n.attrs["id"] = "2"  # type: ignore[index]
    with pytest.raises(AttributeError):
        n.tag = "x"  # type: ignore[misc]
    for bad in (lambda: Node(""), lambda: Node("a", {"": "x"}), lambda: Node("a", {"k": 1}),  # type: ignore[dict-item]
                lambda: Node("a", {}, 5), lambda: Node("a", {}, ["x"])):  # type: ignore[arg-type, list-item]
        with pytest.raises(InvalidArgumentError):
            bad()
    with pytest.raises(InvalidArgumentError, match="UTF-8"):
        encode_node(Node("a", {"k": "\ud800"}))
    assert hash(Node("a", {"x": "1", "y": "2"})) == hash(Node("a", {"y": "2", "x": "1"}))


def test_repr_shows_no_content() -> None:
    r = repr(Node("enc", {"type": "msg"}, b"secret-ciphertext"))
    assert "secret" not in r and "17 bytes" in r


def test_an_encoded_stanza_repr_shows_no_bytes() -> None:
    from wacrypto.transport.messages import EncodedNode, decode_stanza, encode_stanza

    node = Node("message", {"id": "1"}, (Node("enc", {"type": "msg"}, b"secret-ciphertext"),))
    enc = EncodedNode(encode_node(node), "message", True)
    assert "secret" not in repr(enc) and "message" in repr(enc)
    assert encode_stanza(enc) == encode_node(node) and decode_stanza(encode_stanza(enc)) == node
