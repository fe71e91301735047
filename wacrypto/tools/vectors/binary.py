"""Binary stanzas (WhatsApp's WABinary): realistic nodes with their exact encoding (tokens, packed
digits and hex, JIDs of users, devices, LIDs and groups, binary content, long strings, nesting), the
zlib-compressed form, and bytes a decoder must refuse.

Checked in process (the peer protocol has no stanza commands); the test suite also feeds every case
to Baileys' codec. A node in JSON is ``{"tag", "attrs": [[k, v], ...], "content": null |
{"bytes": hex} | {"str": s} | {"nodes": [...]}}`` (the form of ``wacrypto.testing.stanzas``).
``decoded`` is what a decoder reads back: string content written as raw bytes reads back as bytes.
"""

from __future__ import annotations

import zlib
from typing import Any, Callable

from wacrypto.errors import InvalidMessageError
from wacrypto.tools.vectors.common import VectorFile, expect, family_rng
from wacrypto.wire.binary import Content, Node, decode_node, encode_node, node_from_json, node_to_json

FAMILY = "binary"

NOTES = {
    "Tokens": "Tags, attribute names and values from the single- and double-byte token tables.",
    "Jid": "JIDs: users, devices (AD_JID), LIDs, groups, server-only.",
    "Packed": "Digit strings and upper-case hex written packed (two characters per byte).",
    "Binary": "Binary content (ciphertexts) with 8- and 20-bit length prefixes.",
    "LongString": "A raw string longer than 255 bytes (20-bit length prefix).",
    "Nested": "Child lists, several levels deep.",
    "Compressed": "Flags byte 0x02: the body is zlib-compressed.",
    "Truncated": "The stanza is cut short.",
    "BadFlags": "Unknown bits in the flags byte: wacrypto refuses them, Baileys ignores them (a decoder that "
                "accepts must read `decoded`).",
    "TrailingBytes": "Bytes after the end of the node: wacrypto refuses them, Baileys ignores them (a decoder "
                     "that accepts must read `decoded`).",
    "BadTag": "A byte that is not a valid tag where a string or list is expected.",
    "Empty": "Zero bytes.",
}


def _stanzas(rng: Callable[[int], bytes]) -> list[tuple[str, list[str], Node]]:
    enc: Content = rng(153)
    return [
        ("a message with one pkmsg", ["Tokens", "Jid", "Binary", "Nested"],
         Node("message", {"id": "3EB0C431F1A6D2B4E5A7", "to": "4915112345678@s.whatsapp.net", "type": "text"},
              (Node("enc", {"v": "2", "type": "pkmsg"}, enc),))),
        ("a group message to devices", ["Tokens", "Jid", "Binary", "Nested"],
         Node("message", {"id": "ABCDEF0123456789", "to": "120363012345678901@g.us", "type": "text"},
              (Node("participants", {}, tuple(Node("to", {"jid": f"4915112345678:{d}@s.whatsapp.net"},
                                                   (Node("enc", {"v": "2", "type": "msg"}, rng(41)),)) for d in (1, 2, 23))),
               Node("enc", {"v": "2", "type": "skmsg"}, rng(90))))),
        ("a receipt with a LID sender", ["Tokens", "Jid", "Packed"],
         Node("receipt", {"id": "3EB0C431F1A6D2B4E5A7", "from": "123456789012345@lid", "t": "1700000000"})),
        ("an iq usync query", ["Tokens", "Nested"],
         Node("iq", {"id": "1234.5678-9", "xmlns": "usync", "type": "get", "to": "@s.whatsapp.net"},
              (Node("usync", {"sid": "12345678", "mode": "query", "last": "true", "index": "0", "context": "message"},
                    (Node("query", {}, (Node("devices", {"version": "2"}),)),
                     Node("list", {}, (Node("user", {"jid": "4915112345678@s.whatsapp.net"}),)))),))),
        ("presence, no content", ["Tokens"], Node("presence", {"type": "available", "name": "Alice"})),
        ("packed digits and hex", ["Packed"], Node("x", {"n": "0123456789", "h": "DEADBEEF0123", "d": "12-34.5"})),
        ("a raw string of 300 characters", ["LongString"], Node("text", {}, "w" * 300)),
        ("binary content of 300 bytes (20-bit length)", ["Binary"], Node("media", {}, rng(300))),
        ("a non-ASCII raw string", [], Node("note", {"lang": "de"}, "Grüße, 你好 ✓")),
        ("a node nested five levels", ["Nested"],
         Node("a", {}, (Node("b", {}, (Node("c", {}, (Node("d", {}, (Node("e", {"k": "v"}),)),)),)),))),
        ("an empty child list", ["Nested"], Node("list", {}, ())),
        ("empty binary content", ["Binary"], Node("enc", {"v": "2"}, b"")),
        ("server-only and broadcast JIDs", ["Jid"], Node("ack", {"to": "s.whatsapp.net", "from": "status@broadcast"})),
    ]


def build(seed: str) -> dict[str, Any]:
    rng = family_rng(seed, FAMILY)
    f = VectorFile(FAMILY, "WhatsApp binary XML stanzas (WABinary, flags byte + node)", seed,
                   "Hand-written stanzas (binary parts from the seeded RNG) encoded by wacrypto.wire.binary.", NOTES)
    g = f.group("StanzaEncode", procedure="encode(node) == stanza; decode(stanza) == decoded")
    good: list[bytes] = []
    for comment, flags, node in _stanzas(rng):
        data = encode_node(node)
        good.append(data)
        f.case(g, comment, "valid", flags, node=node_to_json(node), stanza=data.hex(), decoded=node_to_json(decode_node(data)))
    g = f.group("StanzaDecode", procedure="decode(stanza): valid gives `decoded`; invalid must fail")
    body = good[0][1:]
    f.case(g, "zlib-compressed body (flags 0x02)", "valid", ["Compressed"], stanza=(b"\x02" + zlib.compress(body, 9)).hex(),
           decoded=node_to_json(decode_node(good[0])))
    for i, cut in enumerate((1, len(good[0]) // 2, len(good[0]) - 1)):
        f.case(g, f"first message cut to {cut} bytes", "invalid", ["Truncated"], stanza=good[0][:cut].hex())
    lenient = node_to_json(decode_node(good[0]))  # what a decoder that ignores the oddity reads
    f.case(g, "flags byte 0x80", "acceptable", ["BadFlags"], stanza=(b"\x80" + body).hex(), decoded=lenient)
    f.case(g, "flags byte 0x01", "acceptable", ["BadFlags"], stanza=(b"\x01" + body).hex(), decoded=lenient)
    f.case(g, "a byte after the node", "acceptable", ["TrailingBytes"], stanza=(good[0] + b"\x00").hex(), decoded=lenient)
    f.case(g, "compressed body that is not zlib", "invalid", ["Compressed"], stanza=(b"\x02" + body).hex())
    f.case(g, "empty", "invalid", ["Empty"], stanza="")
    f.case(g, "flags byte only", "invalid", ["Truncated", "Empty"], stanza="00")
    f.case(g, "list size tag 0xf8 (LIST_8) with a tag byte 0xff (NIBBLE_8) truncated", "invalid", ["Truncated"],
           stanza="00f801ff")
    f.case(g, "list of size 0 where a node is expected", "invalid", ["BadTag"], stanza="00f800")
    return f.to_json()


def check_encode(data: dict[str, Any], group: dict[str, Any], tc: dict[str, Any]) -> None:
    got = encode_node(node_from_json(tc["node"]))
    expect(got.hex() == tc["stanza"], "different encoding")
    expect(node_to_json(decode_node(got)) == tc["decoded"], "different decoding")


def check_decode(data: dict[str, Any], group: dict[str, Any], tc: dict[str, Any]) -> None:
    try:
        node = decode_node(bytes.fromhex(tc["stanza"]))
    except InvalidMessageError:
        expect(tc["result"] != "valid", "valid stanza refused")
        return
    expect(tc["result"] != "invalid", "invalid stanza accepted")
    expect(node_to_json(node) == tc["decoded"], "different decoding")


LOCAL_CHECKS: dict[str, Callable[[dict[str, Any], dict[str, Any], dict[str, Any]], None]] = {
    "StanzaEncode": check_encode, "StanzaDecode": check_decode,
}
