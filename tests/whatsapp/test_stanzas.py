"""WhatsApp stanzas: each type survives the binary codec, has the documented layout, and its parser
lets nothing but InvalidMessageError out of hostile nodes."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings

from wacrypto.errors import InvalidArgumentError, InvalidMessageError, PeerError
from wacrypto.primitives.keys import KeyPair
from wacrypto.signal.bundle import PreKeyBundle
from wacrypto.testing import SeededRng
from wacrypto.testing.stanzas import stanzas
from wacrypto.whatsapp.jid import Jid
from wacrypto.whatsapp.stanzas import (
    Ack, DeviceBundle, DevicesNotification, Enc, EncryptCountNotification, IdentityChangeNotification,
    IncomingMessage, NackCode, OutgoingMessage, PrekeyUpload, Receipt, SignedPreKey, ack_for, bundle_query,
    bundle_result, parse_bundle_result, parse_notification, parse_prekey_count, prekey_count_query,
    prekey_count_result,
)
from wacrypto.wire.binary import Node, decode_node, encode_node

RNG = SeededRng(b"stanzas")
IDENTITY, SIGNED, ONE = (KeyPair.generate(RNG) for _ in range(3))
SKEY = SignedPreKey(9, SIGNED.public.u, IDENTITY.private.sign(SIGNED.public.to_bytes(), RNG))
ALICE = Jid.parse("111:2@s.whatsapp.net")


def wire(n: Node) -> Node:
    return decode_node(encode_node(n))


def test_prekey_upload_and_count() -> None:
    up = PrekeyUpload(0x0A0B0C0D, IDENTITY.public.u, ((1, ONE.public.u), (2, SIGNED.public.u)), SKEY)
    n = up.to_node("q1")
    assert dict(n.attrs) == {"id": "q1", "xmlns": "encrypt", "type": "set", "to": "s.whatsapp.net"}
    assert [c.tag for c in n.children] == ["registration", "type", "identity", "list", "skey"]
    assert PrekeyUpload.from_node(wire(n)) == up
    assert wire(prekey_count_query("q2")).child("count") is not None
    assert parse_prekey_count(wire(prekey_count_result("q2", "111@s.whatsapp.net", 4))) == 4
    dup = PrekeyUpload(1, IDENTITY.public.u, ((1, ONE.public.u), (1, ONE.public.u)), SKEY).to_node("q")
    with pytest.raises(InvalidMessageError, match="repeated"):
        PrekeyUpload.from_node(dup)


def test_bundle_fetch_round_trip_keeps_a_verifiable_bundle() -> None:
    b = PreKeyBundle(77, 2, IDENTITY.public.to_bytes(), SKEY.key_id, SIGNED.public.to_bytes(), SKEY.signature,
                     5, ONE.public.to_bytes())
    no_otk = PreKeyBundle(78, 0, IDENTITY.public.to_bytes(), SKEY.key_id, SIGNED.public.to_bytes(), SKEY.signature)
    q = wire(bundle_query("q3", [ALICE, Jid.parse("111@s.whatsapp.net")]))
    assert [u.attrs["jid"] for u in q.child("key").children] == ["111:2@s.whatsapp.net", "111@s.whatsapp.net"]  # type: ignore[union-attr]
    entries = [DeviceBundle(ALICE, b, b"adv"), DeviceBundle(Jid.parse("111@s.whatsapp.net"), no_otk)]
    res = wire(bundle_result("q3", "222@s.whatsapp.net", entries))
    got = parse_bundle_result(res)
    assert got == entries and got[0].bundle.signature_valid()
    with_error = Node(res.tag, res.attrs, (Node("list", {}, (*res.child("list").children,  # type: ignore[union-attr]
                                                              Node("user", {"jid": "3@lid"}, (Node("error", {"code": "404"}),)))),))
    assert parse_bundle_result(with_error) == entries


def test_messages_out_and_in() -> None:
    one = OutgoingMessage("m1", "111@s.whatsapp.net", ((None, Enc("pkmsg", b"\x33ct")),))
    n = wire(one.to_node())
    assert [c.tag for c in n.children] == ["enc"] and OutgoingMessage.from_node(n) == one
    fan = OutgoingMessage("m2", "111@s.whatsapp.net", ((ALICE, Enc("msg", b"a")), (Jid.parse("111@s.whatsapp.net"),
                          Enc("pkmsg", b"b", count=2))), device_identity=b"adv", phash="2:abcdEF==")
    n = wire(fan.to_node())
    assert [c.tag for c in n.children] == ["participants", "device-identity"]
    assert OutgoingMessage.from_node(n) == fan
    inc = IncomingMessage("m3", "120363@g.us", 1_700_000_000, (Enc("skmsg", b"s"), Enc("pkmsg", b"p", v=3)),
                          participant="111:2@s.whatsapp.net")
    back = IncomingMessage.from_node(wire(inc.to_node()))
    assert back == inc and back.sending_device == ALICE
    with pytest.raises(InvalidArgumentError):
        OutgoingMessage("m", "x@g.us", ((None, Enc("msg", b"")), (ALICE, Enc("msg", b"")))).to_node()


def test_acks_and_receipts() -> None:
    msg = Node("message", {"id": "m1", "from": "120363@g.us", "participant": "111:2@s.whatsapp.net", "type": "text"})
    ok = ack_for(msg)
    assert dict(ok.to_node().attrs) == {"id": "m1", "to": "120363@g.us", "class": "message",
                                        "participant": "111:2@s.whatsapp.net"}
    nack = ack_for(msg, error=NackCode.PARSE_ERROR)
    assert nack.to_node().attrs["error"] == "487" and nack.to_node().attrs["type"] == "text"
    assert Ack.from_node(wire(nack.to_node())) == nack
    r = Receipt(("a", "b", "c"), "111@s.whatsapp.net", "read", timestamp=5)
    n = wire(r.to_node())
    assert n.attrs["id"] == "a" and [i.attrs["id"] for i in n.child("list").children] == ["b", "c"]  # type: ignore[union-attr]
    assert Receipt.from_node(n) == r
    with pytest.raises(InvalidMessageError):
        Receipt.from_node(Node("receipt", {"id": "a", "type": "retry", "from": "1@lid"}))


def test_notifications() -> None:
    assert parse_notification(Node("notification", {"type": "encrypt", "from": "s.whatsapp.net"},
                                   (Node("count", {"value": "3"}),))) == EncryptCountNotification(3)
    assert parse_notification(Node("notification", {"type": "encrypt", "from": "111@s.whatsapp.net"},
                                   (Node("identity"),))) == IdentityChangeNotification(Jid.parse("111@s.whatsapp.net"))
    dev = Node("notification", {"type": "devices", "from": "111@s.whatsapp.net"}, (
        Node("add", {}, (Node("device", {"jid": "111:3@s.whatsapp.net", "key-index": "2"}),
                         Node("key-index-list", {"ts": "1"}, b"signed"))),
        Node("remove", {}, (Node("device", {"jid": "111:1@s.whatsapp.net"}),))))
    assert parse_notification(wire(dev)) == DevicesNotification(
        Jid.parse("111@s.whatsapp.net"), (Jid.parse("111:3@s.whatsapp.net"),), (Jid.parse("111:1@s.whatsapp.net"),), b"signed")
    assert parse_notification(Node("notification", {"type": "picture", "from": "1@lid"})) is None


PARSERS: list[Callable[[Node], object]] = [
    PrekeyUpload.from_node, parse_prekey_count, parse_bundle_result, DeviceBundle.from_node, OutgoingMessage.from_node,
    IncomingMessage.from_node, Enc.from_node, Ack.from_node, Receipt.from_node, parse_notification,
    SignedPreKey.from_node,
]


@settings(max_examples=300, deadline=None)
@given(stanzas)
def test_hostile_nodes_raise_only_peer_errors(n: Node) -> None:
    for parse in PARSERS:
        for node in (n, Node("iq", {"xmlns": "encrypt", "type": "set", "id": "1", "from": "1@lid"}, (n,)),
                     Node("message", {"id": "1", "from": "1@lid", "t": "1", "to": "1@lid"}, (n,)),
                     Node("notification", {"type": "devices", "from": "1@lid"}, (Node("add", {}, (n,)),))):
            try:
                parse(node)
            except PeerError:
                pass
