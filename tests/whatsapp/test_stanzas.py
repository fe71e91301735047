"""WhatsApp stanzas: each type survives the binary codec, has the documented layout, and its parser
lets nothing but InvalidMessageError out of hostile nodes."""

from __future__ import annotations

import string
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wacrypto.errors import InvalidArgumentError, InvalidMessageError, PeerError
from wacrypto.primitives.keys import KeyPair
from wacrypto.signal.bundle import PreKeyBundle
from wacrypto.testing import SeededRng
from wacrypto.testing.stanzas import stanzas
from wacrypto.whatsapp.jid import Jid
from wacrypto.whatsapp.stanzas import (
    Ack, DeviceBundle, DeviceIdentityUpload, DevicesNotification, Enc, EncryptCountNotification, Failure, GroupCreate,
    GroupInfo, GroupMessage, GroupQuery, IdentityChangeNotification, IncomingMessage, IqError, KeyIndexListUpload,
    NackCode, OutgoingMessage, PrekeyUpload, Receipt, SignedPreKey, StreamCode, StreamError, Success, UsyncDevices,
    UsyncQuery, ack_for, bundle_query, bundle_result, group_result, is_ping, missing_bundles, parse_bundle_query,
    parse_bundle_result, parse_group_result, parse_notification, parse_prekey_count, parse_usync_result, ping_query,
    prekey_count_query, prekey_count_result, usync_result,
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


# --------------------------------------------------------------------------- the chat protocol's stanzas
def test_server_stanzas_have_the_documented_layout() -> None:
    assert is_ping(wire(ping_query("ping.1"))) and not is_ping(wire(prekey_count_query("q")))
    ack = Ack("m1", "222@s.whatsapp.net", "message", phash="2:abc", timestamp=7, incoming=True)
    assert dict(ack.to_node().attrs) == {"id": "m1", "from": "222@s.whatsapp.net", "class": "message", "phash": "2:abc",
                                         "t": "7"}
    assert Ack.from_node(wire(ack.to_node())) == ack and ack.origin == "222@s.whatsapp.net"
    assert StreamError.replaced().to_node() == Node("stream:error", {"code": "440"}, (Node("conflict", {"type": "replaced"}),))
    assert StreamError.from_node(Node("stream:error", {"code": "503"})).code is StreamCode.INTERNAL  # unknown: other
    assert Failure(401).to_node() == Node("failure", {"reason": "401"})
    err = IqError("q1", 404, "no such group", "111@s.whatsapp.net")
    assert wire(err.to_node()).child("error") == Node("error", {"code": "404", "text": "no such group"})
    q = UsyncQuery((Jid.parse("111@s.whatsapp.net"),)).to_node("s1")
    assert [c.tag for c in q.child("usync").children] == ["query", "list"]  # type: ignore[union-attr]
    res = usync_result("s1", "222@lid", [UsyncDevices(Jid.parse("111@s.whatsapp.net"), ((0, None), (4, 2)), b"kil", 9)])
    user = res.child("usync").child("list").child("user")  # type: ignore[union-attr]
    devs = user.child("devices")  # type: ignore[union-attr]
    assert [dict(d.attrs) for d in devs.child("device-list").children] == [{"id": "0"}, {"id": "4", "key-index": "2"}]  # type: ignore[union-attr]
    assert devs.child("key-index-list") == Node("key-index-list", {"ts": "9"}, b"kil")  # type: ignore[union-attr]
    gm = GroupMessage("g1", Jid.parse("1-2@g.us"), ((ALICE, Enc("pkmsg", b"skdm")),), Enc("skmsg", b"all"))
    assert [c.tag for c in wire(gm.to_node()).children] == ["participants", "enc"]
    with pytest.raises(InvalidArgumentError):
        GroupMessage("g2", Jid.parse("1-2@g.us"))
    with pytest.raises(InvalidMessageError, match="one skmsg"):
        GroupMessage.from_node(Node("message", {"id": "g", "to": "1-2@g.us"}, (Enc("msg", b"x").to_node(),)))
    with pytest.raises(InvalidArgumentError):
        DevicesNotification(ALICE).to_node("n1", 1)
    both = DevicesNotification(Jid.parse("111@s.whatsapp.net"), (ALICE,), (Jid.parse("111:5@s.whatsapp.net"),), b"k")
    assert [c.tag for c in both.to_node("n", 1).children] == ["add", "remove"]


_users = st.builds(Jid, st.text("0123456789", min_size=1, max_size=15), st.sampled_from(["s.whatsapp.net", "lid"]))
_devices = st.builds(lambda u, d: u.with_device(d), _users, st.integers(0, 255))
_groups = st.builds(lambda a, b: Jid(f"{a}-{b}", "g.us"), st.integers(1, 10**12), st.integers(0, 10**9))
_ids = st.text(string.ascii_letters + string.digits + ".-_", min_size=1, max_size=40)
_texts = st.text(st.characters(codec="utf-8"), max_size=100)
_encs = st.builds(Enc, st.sampled_from(["pkmsg", "msg"]), st.binary(max_size=40), st.sampled_from([2, 3]),
                  st.none() | st.integers(0, 999))
_skmsgs = st.builds(Enc, st.just("skmsg"), st.binary(max_size=40))
_times = st.integers(0, 2**63 - 1)
_small = st.none() | st.integers(0, 0xFFFFFFFF)
_user_sets = st.lists(_users, max_size=6, unique=True).map(tuple)


def _notifications() -> st.SearchStrategy[Any]:
    devices = st.lists(_devices, min_size=1, max_size=4).map(tuple)
    return (st.builds(EncryptCountNotification, st.integers(0, 0xFFFFFFFF))
            | st.builds(IdentityChangeNotification, _devices)
            | st.builds(DevicesNotification, _users, devices, st.just(()), st.none() | st.binary(max_size=60))
            | st.builds(DevicesNotification, _users, st.just(()), devices, st.none() | st.binary(max_size=60))
            | st.builds(DevicesNotification, _users, devices, devices, st.none() | st.binary(max_size=60)))


def _usync_devices() -> st.SearchStrategy[UsyncDevices]:
    devs = st.dictionaries(st.integers(0, 255), st.none() | st.integers(0, 0xFFFFFFFF), max_size=5)
    return st.builds(lambda u, d, k, ts: UsyncDevices(u, tuple(d.items()), k, None if k is None else ts),
                     _users, devs, st.none() | st.binary(max_size=60), st.none() | _times)


# (values, value -> node, node -> value): each parser reads back what its builder wrote, through the codec
ROUND_TRIPS: list[tuple[st.SearchStrategy[Any], Callable[[Any], Node], Callable[[Node], Any]]] = [
    (st.builds(Ack, _ids, st.sampled_from(["111@s.whatsapp.net", "1-2@g.us"]), st.sampled_from(["message", "receipt"]),
               st.none() | _devices.map(str), st.none() | _users.map(str), st.none() | st.sampled_from(["read", "text"]),
               st.none() | st.integers(0, 999), st.none() | st.just("2:AAAAAAAA"), st.none() | _times, st.booleans()),
     lambda a: a.to_node(), Ack.from_node),
    (_notifications(), lambda n: n.to_node("n1", 5), parse_notification),
    (st.builds(IqError, _ids, st.integers(100, 999), _texts, st.none() | _devices.map(str)),
     lambda e: e.to_node(), IqError.from_node),
    (st.builds(Success, _times, st.none() | _users), lambda s: s.to_node(), Success.from_node),
    (st.builds(Failure, st.integers(0, 999)), lambda f: f.to_node(), Failure.from_node),
    (st.builds(StreamError, st.sampled_from(StreamCode), st.none() | st.sampled_from(["replaced", "device_removed"])),
     lambda e: e.to_node(), StreamError.from_node),
    (st.builds(UsyncQuery, st.lists(_users, min_size=1, max_size=5).map(tuple), st.sampled_from(["message", "interactive"])),
     lambda q: q.to_node("s1"), UsyncQuery.from_node),
    (st.lists(_usync_devices(), max_size=4), lambda us: usync_result("s1", "1@lid", us), parse_usync_result),
    (st.builds(DeviceIdentityUpload, st.binary(max_size=300)), lambda u: u.to_node("d1"), DeviceIdentityUpload.from_node),
    (st.builds(KeyIndexListUpload, st.binary(max_size=300)), lambda u: u.to_node("k1"), KeyIndexListUpload.from_node),
    (st.builds(GroupCreate, _texts, _ids, _user_sets), lambda c: c.to_node("g1"), GroupCreate.from_node),
    (st.builds(GroupQuery, _groups), lambda q: q.to_node("g2"), GroupQuery.from_node),
    (st.builds(GroupInfo, _groups, _texts, _users, _user_sets), lambda i: group_result("g3", "1@lid", i),
     parse_group_result),
    (st.builds(lambda i, g, encs, sk, t, dev, ph: GroupMessage(i, g, tuple(encs.items()), sk, t, dev, ph),
               _ids, _groups, st.dictionaries(_devices, _encs, min_size=1, max_size=4), st.none() | _skmsgs,
               st.sampled_from(["text", "media"]), st.none() | st.binary(max_size=60), st.none() | st.just("2:abc"))
     | st.builds(GroupMessage, _ids, _groups, st.just(()), _skmsgs),
     lambda m: m.to_node(), GroupMessage.from_node),
    (st.lists(_devices, min_size=1, max_size=6), lambda ds: bundle_query("b1", ds), parse_bundle_query),
    (st.lists(_devices, max_size=6), lambda ds: bundle_result("b2", "1@lid", [], ds), missing_bundles),
]


@pytest.mark.parametrize("values, build, parse", ROUND_TRIPS, ids=[p.__qualname__ for _, _, p in ROUND_TRIPS])
def test_builders_and_parsers_are_symmetric(values: st.SearchStrategy[Any], build: Callable[[Any], Node],
                                             parse: Callable[[Node], Any]) -> None:
    @settings(max_examples=60, deadline=None)
    @given(values)
    def check(value: Any) -> None:
        assert parse(wire(build(value))) == value

    check()


PARSERS: list[Callable[[Node], object]] = [
    PrekeyUpload.from_node, parse_prekey_count, parse_bundle_result, DeviceBundle.from_node, OutgoingMessage.from_node,
    IncomingMessage.from_node, Enc.from_node, Ack.from_node, Receipt.from_node, parse_notification,
    SignedPreKey.from_node, parse_bundle_query, missing_bundles, IqError.from_node, Success.from_node,
    Failure.from_node, StreamError.from_node, UsyncQuery.from_node, UsyncDevices.from_node, parse_usync_result,
    DeviceIdentityUpload.from_node, KeyIndexListUpload.from_node, GroupCreate.from_node, GroupQuery.from_node,
    GroupInfo.from_node, parse_group_result, GroupMessage.from_node,
]


@settings(max_examples=300, deadline=None)
@given(stanzas)
def test_hostile_nodes_raise_only_peer_errors(n: Node) -> None:
    for parse in PARSERS:
        for node in (n, Node("iq", {"xmlns": "encrypt", "type": "set", "id": "1", "from": "1@lid"}, (n,)),
                     Node("iq", {"xmlns": "usync", "type": "get", "id": "1", "to": "1-2@g.us"}, (Node("usync", {}, (n,)),)),
                     Node("iq", {"xmlns": "w:g2", "type": "set", "id": "1", "from": "1@lid"}, (Node("create", {}, (n,)),)),
                     Node("message", {"id": "1", "from": "1@lid", "t": "1", "to": "1@lid"}, (n,)),
                     Node("message", {"id": "1", "to": "1-2@g.us"}, (Node("participants", {}, (n,)),)),
                     Node("notification", {"type": "devices", "from": "1@lid"}, (Node("add", {}, (n,)),))):
            try:
                parse(node)
            except PeerError:
                pass
