"""atheris harness: WhatsApp stanzas from the server (and, for chatd, from clients), through the binary
codec and every typed parser.

Invariant: bytes off the wire end as typed stanzas or as a PeerError, never any other exception;
a parsed stanza re-encodes to a node the same parser reads back as the same value.
Run: python fuzz/fuzz_stanzas.py -runs=2000
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import atheris

with atheris.instrument_imports():
    from wacrypto.errors import PeerError
    from wacrypto.whatsapp import stanzas as s
    from wacrypto.whatsapp.jid import Jid
    from wacrypto.whatsapp.retry import RetryReceipt
    from wacrypto.wire.binary import Node, decode_node, encode_node


def _plain(v: Any) -> Node:
    return v.to_node()  # type: ignore[no-any-return]


def _iq(v: Any) -> Node:
    return v.to_node("q1")  # type: ignore[no-any-return]


def _notification(v: Any) -> Node | None:
    if isinstance(v, s.DevicesNotification) and not (v.added or v.removed):
        return None  # nothing to rebuild: a devices notification without <add> or <remove>
    return v.to_node("n1", 1)  # type: ignore[no-any-return]


# parser -> how its value is written again (None: that value has no stanza of its own)
ROUND_TRIP: list[tuple[Callable[[Node], Any], Callable[[Any], Node | None]]] = [
    (s.PrekeyUpload.from_node, _iq), (s.IncomingMessage.from_node, _plain), (s.OutgoingMessage.from_node, _plain),
    (s.Ack.from_node, _plain), (s.Receipt.from_node, _plain), (RetryReceipt.from_node, _plain),
    (s.IqError.from_node, _plain), (s.Success.from_node, _plain), (s.Failure.from_node, _plain),
    (s.StreamError.from_node, _plain), (s.UsyncQuery.from_node, _iq), (s.DeviceIdentityUpload.from_node, _iq),
    (s.KeyIndexListUpload.from_node, _iq), (s.GroupCreate.from_node, _iq), (s.GroupQuery.from_node, _iq),
    (s.GroupInfo.from_node, _plain), (s.GroupMessage.from_node, _plain), (s.KeyDigest.from_node, _plain),
    (s.parse_notification, lambda v: None if v is None else _notification(v)),
    (s.parse_usync_result, lambda v: s.usync_result("q1", "1@lid", v)),
    (s.parse_bundle_query, lambda v: s.bundle_query("q1", v)),
]
OTHER = [s.parse_prekey_count, s.parse_bundle_result, s.missing_bundles, s.parse_group_result, s.is_ping]
G = Jid.parse("1-2@g.us")
SEEDS = [
    encode_node(s.KeyDigest(7, b"\x01" * 32, s.SignedPreKey(1, b"\x02" * 32, b"\x03" * 64), (1, 2, 3), bytes(20)).to_node()),
    encode_node(Node("message", {"id": "m", "from": "1@lid", "t": "5", "type": "text"}, (Node("enc", {"v": "2", "type": "msg"}, b"ct"),))),
    encode_node(Node("receipt", {"id": "a", "from": "1@s.whatsapp.net", "type": "read"}, (Node("list", {}, (Node("item", {"id": "b"}),)),))),
    encode_node(Node("notification", {"type": "devices", "from": "1@lid"}, (Node("add", {}, (Node("device", {"jid": "1:2@lid"}),)),))),
    encode_node(Node("receipt", {"id": "a", "type": "retry", "from": "1@lid"}, (Node("retry", {"count": "2", "id": "a", "t": "1", "v": "1"}),
                                                                               Node("registration", {}, b"\x00\x00\x00\x07")))),
    encode_node(s.UsyncQuery((Jid.parse("1@lid"), Jid.parse("2@s.whatsapp.net"))).to_node("q")),
    encode_node(s.usync_result("q", "1@lid", [s.UsyncDevices(Jid.parse("2@lid"), ((0, None), (3, 1)), b"kil", 4)])),
    encode_node(s.GroupCreate("trip", "k", (Jid.parse("2@lid"),)).to_node("q")),
    encode_node(s.group_result("q", "1@lid", s.GroupInfo(G, "trip", Jid.parse("1@lid"), (Jid.parse("2@lid"),)))),
    encode_node(s.GroupMessage("m", G, ((Jid.parse("2:1@lid"), s.Enc("pkmsg", b"p")),), s.Enc("skmsg", b"s")).to_node()),
    encode_node(s.Ack("m", "1@lid", "message", phash="2:abc", timestamp=3, incoming=True).to_node()),
    encode_node(s.StreamError.replaced().to_node()),
    encode_node(s.IqError("q", 404, "no", "1@lid").to_node()),
    encode_node(s.DeviceIdentityUpload(b"\x0a\x02\x08\x01").to_node("q")),
]


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    raw = bytearray(SEEDS[fdp.ConsumeIntInRange(0, len(SEEDS) - 1)])
    for _ in range(fdp.ConsumeIntInRange(0, 4)):
        raw[fdp.ConsumeIntInRange(0, len(raw) - 1)] = fdp.ConsumeInt(1) & 0xFF
    raw += fdp.ConsumeBytes(fdp.remaining_bytes())
    try:
        node = decode_node(bytes(raw))
    except PeerError:
        return
    for parse, build in ROUND_TRIP:
        try:
            value = parse(node)
        except PeerError:
            continue
        again = build(value)
        if again is not None:
            assert parse(decode_node(encode_node(again))) == value
    for other in OTHER:
        try:
            other(node)
        except PeerError:
            pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
