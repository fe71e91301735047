"""chatd's stanza service (docs/chat-protocol.md), driven with nodes: login, keys, device lists, ADV
uploads, 1:1 and group fan-out with acks and phash, receipts, notifications, offline storage across
restarts, dedup, expiry, and bad stanzas answered without a change of state."""

from __future__ import annotations

import os
import signal
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from wacrypto.chatd.db import ChatdDatabase
from wacrypto.chatd.service import ChatService, Out, replaced_error
from wacrypto.errors import InvalidArgumentError
from wacrypto.primitives.keys import KeyPair
from wacrypto.testing import SeededRng
from wacrypto.testing.stanzas import stanzas
from wacrypto.whatsapp.adv import DeviceIdentity, KeyIndexList, countersign_device_identity, sign_device_identity, sign_key_index_list
from wacrypto.whatsapp.devices import participant_hash
from wacrypto.whatsapp.jid import Jid
from wacrypto.whatsapp.retry import RetryReceipt
from wacrypto.whatsapp.stanzas import (
    Ack, DeviceIdentityUpload, DevicesNotification, Enc, EncryptCountNotification, Failure, GroupCreate, GroupMessage,
    GroupQuery, IdentityChangeNotification, IncomingMessage, IqError, KeyIndexListUpload, OutgoingMessage,
    PrekeyUpload, Receipt, SignedPreKey, StreamCode, StreamError, Success, UsyncQuery, ack_for, bundle_query,
    missing_bundles, parse_bundle_result, parse_group_result, parse_notification, parse_prekey_count,
    parse_usync_result, ping_query, prekey_count_query,
)
from wacrypto.wire.binary import Node

NOW = 1_700_000_000.0
TTL = 30 * 86400.0


@dataclass
class Device:
    jid: Jid
    identity: KeyPair
    static: bytes
    registration_id: int
    rng: SeededRng

    @classmethod
    def make(cls, name: str) -> Device:
        rng = SeededRng(name.encode())
        return cls(Jid.parse(name), KeyPair.generate(rng), rng(32), int.from_bytes(rng(2), "big") + 1, rng)

    def upload(self, first: int = 1, n: int = 10, *, signed_id: int = 1) -> PrekeyUpload:
        spk = KeyPair.generate(self.rng)
        sig = self.identity.private.sign(spk.public.to_bytes(), self.rng)
        keys = tuple((i, KeyPair.generate(self.rng).public.u) for i in range(first, first + n))
        return PrekeyUpload(self.registration_id, self.identity.public.u, keys, SignedPreKey(signed_id, spk.public.u, sig))

    def reinstall(self) -> None:
        self.identity = KeyPair.generate(self.rng)


@dataclass
class Net:
    """A ChatService and what each device has been handed (pushed or pending), in order."""

    path: Path
    now: float = NOW
    inbox: dict[Jid, list[Node]] = field(default_factory=dict)
    service: ChatService = field(init=False)
    ids: Iterator[int] = field(default_factory=lambda: iter(range(1, 10**9)))

    def __post_init__(self) -> None:
        self.service = ChatService(ChatdDatabase(self.path), mailbox_ttl=TTL)

    def restart(self) -> None:
        self.service.db.close()
        self.inbox = {}
        self.__post_init__()

    def login(self, dev: Device, *, limit: int = 1000) -> bool:
        r = self.service.login(dev.jid.user, dev.jid.server, dev.jid.device, dev.static, self.now)
        if not r.ok:
            return False
        assert r.success is not None and Success.from_node(r.success).timestamp == int(self.now)
        while True:
            page = self.service.pending_for(dev.jid, self.now, limit)
            self.inbox.setdefault(dev.jid, []).extend(page)
            if len(page) < limit:
                return True

    def send(self, dev: Device, node: Node) -> list[Node]:
        """``node`` from ``dev``: its own replies; what others get lands in their inboxes."""
        replies = []
        for out in self.service.handle(dev.jid, node, self.now):
            assert isinstance(out, Out)
            if out.target == dev.jid and out.node.tag in ("ack", "iq"):
                replies.append(out.node)
            else:
                assert self.service.is_online(out.target), "a stanza for an offline device"
                self.inbox.setdefault(out.target, []).append(out.node)
        return replies

    def one(self, dev: Device, node: Node) -> Node:
        (reply,) = self.send(dev, node)
        return reply

    def take(self, dev: Device) -> list[Node]:
        got, self.inbox[dev.jid] = self.inbox.get(dev.jid, []), []
        return got

    def ack(self, dev: Device, nodes: list[Node]) -> None:
        for n in nodes:
            assert self.send(dev, ack_for(n).to_node()) == []

    def iq_id(self) -> str:
        return f"q{next(self.ids)}"

    def register(self, *devs: Device) -> None:
        for d in devs:
            assert self.login(d)
            assert self.one(d, d.upload().to_node(self.iq_id())).attrs["type"] == "result"


def message(mid: str, to: Jid, *devices: Device | Jid, count: int | None = None) -> Node:
    jids = [d.jid if isinstance(d, Device) else d for d in devices]
    return OutgoingMessage(mid, str(to), tuple((j, Enc("msg", f"{mid}>{j}".encode(), count=count)) for j in jids)).to_node()


def dump(path: Path) -> list[str]:
    con = sqlite3.connect(path)
    try:
        return list(con.iterdump())
    finally:
        con.close()


@pytest.fixture
def net(tmp_path: Path) -> Net:
    return Net(tmp_path / "chatd.db")


ALICE0, ALICE1 = "111@s.whatsapp.net", "111:1@s.whatsapp.net"
BOB0, BOB1 = "222@s.whatsapp.net", "222:3@s.whatsapp.net"
ALICE, BOB = Jid.parse(ALICE0), Jid.parse(BOB0)


@pytest.fixture
def people(net: Net) -> dict[str, Device]:
    d = {n: Device.make(j) for n, j in (("a0", ALICE0), ("a1", ALICE1), ("b0", BOB0), ("b1", BOB1))}
    net.register(*d.values())
    for dev in d.values():
        net.ack(dev, net.take(dev))  # the devices notifications of registration
    return d


# --------------------------------------------------------------------------- login
def test_login_binds_the_first_key_refuses_others_and_replaces(net: Net) -> None:
    a0 = Device.make(ALICE0)
    first = net.service.login(a0.jid.user, a0.jid.server, 0, a0.static, NOW)
    assert first.ok and not first.replaced and first.device == a0.jid
    other = net.service.login(a0.jid.user, a0.jid.server, 0, b"x" * 32, NOW)
    assert not other.ok and other.failure is not None and Failure.from_node(other.failure).reason == 401
    again = net.service.login(a0.jid.user, a0.jid.server, 0, a0.static, NOW)
    assert again.ok and again.replaced and again.session != first.session
    assert StreamError.from_node(replaced_error()) == StreamError(StreamCode.REPLACED, "replaced")
    assert dict(replaced_error().attrs) == {"code": "440"} and replaced_error().children[0].attrs["type"] == "replaced"
    net.service.disconnected(a0.jid, first.session)  # the replaced connection ends: the new one stays
    assert net.service.is_online(a0.jid)
    net.service.disconnected(a0.jid, again.session)
    assert not net.service.is_online(a0.jid)
    for user, server in (("123", "g.us"), ("", "s.whatsapp.net"), ("abc", "lid")):
        assert not net.service.login(user, server, 0, a0.static, NOW).ok
    with pytest.raises(InvalidArgumentError):
        net.service.handle(a0.jid, ping_query("p"), NOW)  # not logged in: the caller's mistake
    net.restart()  # the binding is durable
    assert not net.service.login(a0.jid.user, a0.jid.server, 0, b"x" * 32, NOW).ok


def test_ping_is_answered(net: Net) -> None:
    a0 = Device.make(ALICE0)
    net.login(a0)
    assert net.one(a0, ping_query("ping.1")) == Node("iq", {"id": "ping.1", "type": "result", "from": "s.whatsapp.net"})


# --------------------------------------------------------------------------- keys
def test_prekeys_count_fetch_once_low_water_and_missing(net: Net) -> None:
    b0, a0, a1 = Device.make(BOB0), Device.make(ALICE0), Device.make(ALICE1)
    for d in (b0, a0, a1):
        net.login(d)
    assert parse_prekey_count(net.one(b0, prekey_count_query("c0"))) == 0  # nothing uploaded yet
    bad = b0.upload(n=3)
    forged = PrekeyUpload(bad.registration_id, bad.identity, bad.prekeys,
                          SignedPreKey(1, bad.signed_prekey.public, bytes(64)))
    err = IqError.from_node(net.one(b0, forged.to_node("u0")))
    assert err.code == 406 and parse_prekey_count(net.one(b0, prekey_count_query("c1"))) == 0
    assert net.one(b0, b0.upload(n=6).to_node("u1")).attrs["type"] == "result"
    assert parse_prekey_count(net.one(b0, prekey_count_query("c2"))) == 6
    handed = []
    for i in range(7):
        fetcher = (a0, a1)[i % 2]
        res = net.one(fetcher, bundle_query(f"f{i}", [b0.jid, Jid.parse("999@s.whatsapp.net")]))
        (bundle,) = parse_bundle_result(res)
        assert bundle.bundle.signature_valid() and bundle.bundle.registration_id == b0.registration_id
        assert missing_bundles(res) == [Jid.parse("999@s.whatsapp.net")]
        handed.append(bundle.bundle.prekey_id)
    assert handed == [1, 2, 3, 4, 5, 6, None]  # each once, then bundles without one
    counts = [parse_notification(n) for n in net.take(b0)]
    assert counts == [EncryptCountNotification(c) for c in (4, 3, 2, 1, 0)]  # below 5: tell the device
    net.restart()
    net.login(b0)
    assert [parse_notification(n) for n in net.take(b0)] == counts  # never acked: handed out again
    assert parse_prekey_count(net.one(b0, prekey_count_query("c3"))) == 0


def test_identity_change_tells_correspondents_and_drops_old_prekeys(net: Net, people: dict[str, Device]) -> None:
    a0, a1, b0, b1 = people["a0"], people["a1"], people["b0"], people["b1"]
    carol = Device.make("333@s.whatsapp.net")
    net.register(carol)
    net.take(carol)
    assert net.one(a0, message("m1", BOB, b0, b1, a1)).tag == "ack"  # alice and bob now correspond
    for d in people.values():
        net.take(d)
    b0.reinstall()
    assert net.one(b0, b0.upload(first=100, n=2).to_node("u")).attrs["type"] == "result"
    for d in (a0, a1, b1):
        assert [parse_notification(n) for n in net.take(d)] == [IdentityChangeNotification(b0.jid)]
    assert net.take(carol) == [] and net.take(b0) == []
    assert parse_prekey_count(net.one(b0, prekey_count_query("c"))) == 2  # the old 10 are gone
    (bundle,) = parse_bundle_result(net.one(a0, bundle_query("f", [b0.jid])))
    assert bundle.bundle.identity_key[1:] == b0.identity.public.u and bundle.bundle.prekey_id == 100


# --------------------------------------------------------------------------- devices, ADV and usync
def test_devices_notifications_usync_and_md(net: Net) -> None:
    a0, b0 = Device.make(ALICE0), Device.make(BOB0)
    net.register(a0, b0)
    net.one(b0, message("hi", ALICE, a0))  # bob is alice's correspondent
    net.take(a0)
    rng = SeededRng(b"adv")
    kil = sign_key_index_list(a0.identity, KeyIndexList(7, 5, 1, frozenset({1})), rng)
    assert net.one(a0, KeyIndexListUpload(kil).to_node("k")).attrs["type"] == "result"
    a1 = Device.make(ALICE1)
    net.login(a1)
    assert IqError.from_node(net.one(a1, KeyIndexListUpload(kil).to_node("k1"))).code == 406  # not the primary
    assert IqError.from_node(net.one(a1, DeviceIdentityUpload(b"x").to_node("d0"))).code == 400  # not one
    adv = countersign_device_identity(a1.identity, sign_device_identity(a0.identity, a1.identity.public,
                                                                        DeviceIdentity(7, 5, 1), rng), rng)
    assert IqError.from_node(net.one(a1, DeviceIdentityUpload(adv).to_node("d1"))).code == 404  # keys first
    assert IqError.from_node(net.one(a0, DeviceIdentityUpload(adv).to_node("d2"))).code == 406  # a primary
    net.one(a1, a1.upload().to_node("u"))
    added = DevicesNotification(ALICE, (a1.jid,), (), kil)
    assert [parse_notification(n) for n in net.take(a0)] == [added]
    assert [parse_notification(n) for n in net.take(b0)] == [added]  # a correspondent
    assert net.one(a1, DeviceIdentityUpload(adv).to_node("d3")).attrs["type"] == "result"
    res = parse_usync_result(net.one(b0, UsyncQuery((ALICE, Jid.parse("999@lid"))).to_node("s")))
    assert [(u.user, u.devices, u.key_index_list) for u in res] == [(ALICE, ((0, None), (1, 1)), kil),
                                                                     (Jid.parse("999@lid"), (), None)]
    assert res[0].key_index_ts == int(NOW)
    (bundle,) = parse_bundle_result(net.one(b0, bundle_query("f", [a1.jid])))
    assert bundle.device_identity == adv
    outs = net.service.remove_device(a1.jid, NOW)
    assert outs[0] == Out(a1.jid, StreamError(StreamCode.LOGGED_OUT, "device_removed").to_node())
    removed = DevicesNotification(ALICE, (), (a1.jid,), kil)
    assert [parse_notification(o.node) for o in outs[1:]] == [removed, removed]
    assert not net.service.is_online(a1.jid) and not net.login(a1)  # its key is refused now
    res = parse_usync_result(net.one(b0, UsyncQuery((ALICE,)).to_node("s2")))
    assert res[0].devices == ((0, None),)


# --------------------------------------------------------------------------- messages
def test_fan_out_acks_with_the_servers_phash(net: Net, people: dict[str, Device]) -> None:
    a0, a1, b0, b1 = people["a0"], people["a1"], people["b0"], people["b1"]
    ack = Ack.from_node(net.one(a0, message("m1", BOB, b0, b1, a1)))
    expected = participant_hash([b0.jid, b1.jid, a1.jid])
    assert (ack.id, ack.to, ack.stanza_class, ack.phash, ack.timestamp, ack.error) == ("m1", BOB0, "message",
                                                                                      expected, int(NOW), None)
    for dev, recipient in ((b0, None), (b1, None), (a1, BOB0)):
        (got,) = net.take(dev)
        inc = IncomingMessage.from_node(got)
        assert (inc.id, inc.sender, inc.recipient, inc.encs) == ("m1", ALICE0, recipient,
                                                                 (Enc("msg", f"m1>{dev.jid}".encode()),))
    # a stale list (bob1 unknown to alice): acked with the server's hash, which differs from hers
    ack = Ack.from_node(net.one(a0, message("m2", BOB, b0, a1, Jid.parse("222:9@s.whatsapp.net"))))
    assert ack.phash == expected != participant_hash([b0.jid, a1.jid, Jid.parse("222:9@s.whatsapp.net")])
    assert len(net.take(b0)) == 1 and net.take(b1) == []  # 222:9 is not registered: nothing kept for it
    before = dump(net.path)
    for bad in (message("m3", BOB, b0, Jid.parse("333@s.whatsapp.net")), message("m4", BOB, a0)):
        assert Ack.from_node(net.one(a0, bad)).error == 488  # another account's device, or itself
    assert dump(net.path) == before


def test_dedup_a_resend_is_acked_again_not_kept_twice(net: Net, people: dict[str, Device]) -> None:
    a0, b0 = people["a0"], people["b0"]
    first = net.one(a0, message("m1", BOB, b0))
    net.now += 5
    assert net.one(a0, message("m1", BOB, b0)) == first  # same ack, same t
    (got,) = net.take(b0)
    net.ack(b0, [got])
    assert net.one(a0, message("m1", BOB, b0)) == first and net.take(b0) == []  # after the ack too
    answer = net.one(a0, message("m1", BOB, b0, count=1))  # answering a retry receipt: a new stanza
    (again,) = net.take(b0)
    assert Ack.from_node(answer).error is None and IncomingMessage.from_node(again).encs[0].count == 1
    net.restart()
    net.login(b0)
    assert [IncomingMessage.from_node(n).encs[0].count for n in net.take(b0)] == [1]


def test_offline_storage_survives_restarts_until_acked_then_expires(net: Net, people: dict[str, Device]) -> None:
    a0, b0, b1 = people["a0"], people["b0"], people["b1"]
    net.service.disconnected(b0.jid)
    net.service.disconnected(b1.jid)
    for i in range(5):
        net.one(a0, message(f"m{i}", BOB, b0, b1))
    assert net.take(b0) == []  # offline: kept only
    net.restart()
    net.login(b0, limit=2)  # in pages
    first = net.take(b0)
    assert [n.attrs["id"] for n in first] == [f"m{i}" for i in range(5)]
    net.ack(b0, first[:3])
    net.restart()
    net.login(b0)
    assert [n.attrs["id"] for n in net.take(b0)] == ["m3", "m4"]  # unacked ones again, acked ones never
    net.now += 10
    assert net.service.expire(NOW + TTL + 1) == 2 + 5  # b0's two and b1's five
    net.restart()
    net.login(b1)
    assert net.take(b1) == []


def test_a_device_catching_up_gets_new_deliveries_in_order(net: Net, people: dict[str, Device]) -> None:
    a0, b0 = people["a0"], people["b0"]
    net.service.disconnected(b0.jid)
    net.one(a0, message("m1", BOB, b0))
    r = net.service.login(b0.jid.user, b0.jid.server, b0.jid.device, b0.static, NOW)
    assert r.ok
    net.one(a0, message("m2", BOB, b0))  # not pushed: b0 has not caught up yet
    assert net.take(b0) == []
    assert [n.attrs["id"] for n in net.service.pending_for(b0.jid, NOW, 1)] == ["m1"]
    assert [n.attrs["id"] for n in net.service.pending_for(b0.jid, NOW, 10)] == ["m2"]
    net.one(a0, message("m3", BOB, b0))  # caught up: pushed at once
    assert [n.attrs["id"] for n in net.take(b0)] == ["m3"]
    assert net.service.pending_for(b0.jid, NOW, 10) == []  # and not handed out twice


# --------------------------------------------------------------------------- receipts
def test_receipts_are_relayed_and_acked(net: Net, people: dict[str, Device]) -> None:
    a0, a1, b0, b1 = people["a0"], people["a1"], people["b0"], people["b1"]
    net.one(a0, message("m1", BOB, b0, b1, a1))
    for d in people.values():
        net.take(d)
    ack = Ack.from_node(net.one(b0, Receipt(("m1",), ALICE0).to_node()))
    assert (ack.stanza_class, ack.id, ack.type) == ("receipt", "m1", None)
    for d in (a0, a1):
        (got,) = net.take(d)
        r = Receipt.from_node(got)
        assert (r.ids, r.chat, r.type, r.timestamp) == (("m1",), BOB0, None, int(NOW))
    assert net.take(b1) == []  # bob's other device is not told
    net.one(b0, Receipt(("m1",), ALICE0, "read").to_node())  # another receipt for the same id
    (read,) = net.take(a0)
    net.ack(a0, [read])
    assert [n.attrs["type"] for n in net.take(a1)] == ["read"]
    retry = RetryReceipt("m1", ALICE1, 1, str(int(NOW)), b0.registration_id)
    assert Ack.from_node(net.one(b0, retry.to_node())).type == "retry"
    (got,) = net.take(a1)
    assert RetryReceipt.from_node(got) == RetryReceipt("m1", BOB0, 1, str(int(NOW)), b0.registration_id)
    assert net.take(a0) == []  # the retry names a1: only a1 gets it
    net.restart()
    net.login(a0)
    assert [n.attrs.get("type") for n in net.take(a0)] == [None]  # the delivery one, never acked; read was


# --------------------------------------------------------------------------- groups
def test_groups_create_query_send_and_receipts(net: Net, people: dict[str, Device]) -> None:
    a0, a1, b0, b1 = people["a0"], people["a1"], people["b0"], people["b1"]
    carol, dave = Device.make("333@s.whatsapp.net"), Device.make("444@s.whatsapp.net")
    net.register(carol, dave)
    create = GroupCreate("trip", "k1", (BOB, carol.jid))
    info = parse_group_result(net.one(a0, create.to_node("g1")))
    assert (info.subject, info.creator, set(info.participants)) == ("trip", ALICE, {ALICE, BOB, carol.jid})
    assert parse_group_result(net.one(a0, create.to_node("g2"))) == info  # a resend: the same group
    assert parse_group_result(net.one(b1, GroupQuery(info.group).to_node("g3"))) == info
    assert IqError.from_node(net.one(dave, GroupQuery(info.group).to_node("g4"))).code == 403
    assert IqError.from_node(net.one(dave, GroupQuery(Jid.parse("9-9@g.us")).to_node("g5"))).code == 404
    msg = GroupMessage("gm1", info.group, ((b1.jid, Enc("pkmsg", b"skdm for b1")),), Enc("skmsg", b"to all"))
    ack = Ack.from_node(net.one(a0, msg.to_node()))
    members = [a1.jid, b0.jid, b1.jid, carol.jid]
    assert ack.phash == participant_hash(members) and ack.to == str(info.group)
    for d in (a1, b0, b1, carol):
        (got,) = net.take(d)
        inc = IncomingMessage.from_node(got)
        assert (inc.sender, inc.participant) == (str(info.group), ALICE0)
        want = (Enc("pkmsg", b"skdm for b1"),) if d is b1 else ()
        assert inc.encs == want + (Enc("skmsg", b"to all"),)
        net.ack(d, [got])
    assert net.take(a0) == [] and net.take(dave) == []
    before = dump(net.path)
    assert Ack.from_node(net.one(dave, msg.to_node())).error == 488  # not a participant
    outsider = GroupMessage("gm2", info.group, ((dave.jid, Enc("msg", b"x")),), Enc("skmsg", b"y"))
    assert Ack.from_node(net.one(a0, outsider.to_node())).error == 488  # a device of a non-member
    assert dump(net.path) == before
    net.one(carol, Receipt(("gm1",), str(info.group), "read", participant=ALICE0).to_node())
    for d in (a0, a1):
        (got,) = net.take(d)
        r = Receipt.from_node(got)
        assert (r.chat, r.participant, r.type) == (str(info.group), "333@s.whatsapp.net", "read")


# --------------------------------------------------------------------------- bad input, durability
BAD = [
    Node("iq", {"id": "1", "type": "set", "xmlns": "encrypt"}),
    Node("iq", {"id": "2", "type": "get", "xmlns": "encrypt"}, (Node("key", {}, (Node("user", {"jid": "g@g.us"}),)),)),
    Node("iq", {"id": "3", "type": "get", "xmlns": "nope"}),
    Node("iq", {"id": "4", "type": "get", "xmlns": "usync"}, (Node("usync"),)),
    Node("iq", {"id": "5", "type": "set", "xmlns": "w:g2", "to": "g.us"},
         (Node("create", {"subject": "x" * 101, "key": "k"}),)),
    Node("message", {"id": "6", "to": "not a jid"}),
    Node("message", {"id": "7", "to": BOB0}),
    Node("message", {"id": "8", "to": BOB0}, (Node("participants", {}, (
        Node("to", {"jid": BOB0}, (Node("enc", {"v": "2", "type": "msg"}, b"a"),)),
        Node("to", {"jid": BOB0}, (Node("enc", {"v": "2", "type": "msg"}, b"b"),)))),)),
    Node("message", {"id": "10", "to": "1-2@g.us"}, (Node("enc", {"v": "2", "type": "msg"}, b"a"),)),
    Node("receipt", {"id": "11"}),
    Node("receipt", {"id": "12", "to": BOB0, "type": "retry"}),
    Node("presence", {"id": "13"}),
]


def test_bad_stanzas_are_answered_and_change_nothing(net: Net, people: dict[str, Device]) -> None:
    a0 = people["a0"]
    before = dump(net.path)
    for node in BAD:
        (reply,) = net.send(a0, node)
        if node.tag == "iq":
            assert IqError.from_node(reply).code == 400
        else:
            assert Ack.from_node(reply).error in (487, 488) and reply.attrs["id"] == node.attrs["id"]
    too_long = Node("message", {"id": "9" * 200, "to": BOB0}, (Node("enc", {"v": "2", "type": "msg"}, b"a"),))
    for silent in (Node("ack", {"id": "x"}), Node("presence", {"type": "available"}), Node("iq", {"type": "get"}),
                   too_long):  # nothing to answer with (an ack is never acked; no usable id)
        assert net.send(a0, silent) == []
    assert dump(net.path) == before
    assert all(net.take(d) == [] for d in people.values())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=stanzas, shell=st.sampled_from(["iq", "message", "receipt", "ack", "notification"]))
def test_hostile_nodes_never_raise(net: Net, people: dict[str, Device], n: Node, shell: str) -> None:
    a0 = people["a0"]
    for node in (n, Node(shell, {"id": "h", "to": BOB0, "type": "get", "xmlns": "encrypt"}, (n,))):
        for out in net.service.handle(a0.jid, node, NOW):
            assert out.target == a0.jid or net.service.is_online(out.target)


def _child_sends_then_dies(path: str, w: int, a0: Device, b0: Device) -> None:  # pragma: no cover - in a child
    service = ChatService(ChatdDatabase(path))
    service.login(a0.jid.user, a0.jid.server, 0, a0.static, NOW)
    (ack,) = service.handle(a0.jid, message("m1", BOB, b0), NOW)
    os.write(w, ack.node.attrs["id"].encode())
    os.kill(os.getpid(), signal.SIGKILL)  # before anything else could be written or closed


def test_what_was_acked_survives_a_kill(net: Net, people: dict[str, Device]) -> None:
    a0, b0 = people["a0"], people["b0"]
    net.service.disconnected(b0.jid)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        _child_sends_then_dies(str(net.path), w, a0, b0)
    os.close(w)
    assert os.read(r, 100) == b"m1"  # the ack left the service...
    os.waitpid(pid, 0)
    net.restart()
    net.login(b0)
    assert [n.attrs["id"] for n in net.take(b0)] == ["m1"]  # ...so the message was on disk


# --------------------------------------------------------------------------- the mailbox, as a model
DEVS = [Device.make(j) for j in (ALICE0, ALICE1, BOB0)]


class MailboxMachine(RuleBasedStateMachine):
    """Every message reaches every listed device exactly once per connection until that device acks
    it, and never after; resends are never delivered twice; restarts lose nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        self.net = Net(Path(self.dir.name) / "chatd.db")
        self.net.register(*DEVS)
        for d in DEVS:
            self.net.ack(d, self.net.take(d))  # the registration notifications
        self.sent: dict[tuple[str, str], list[Device]] = {}  # (sender, id) -> the devices it listed
        self.waiting: dict[Jid, dict[tuple[str, str], Node | None]] = {d.jid: {} for d in DEVS}
        self.done: set[tuple[Jid, str, str]] = set()  # (device, sender, id) acked
        self.given: dict[Jid, list[tuple[str, str]]] = {d.jid: [] for d in DEVS}  # on its current connection
        self.n = 0

    def teardown(self) -> None:
        self.net.service.db.close()
        self.dir.cleanup()

    def _collect(self) -> None:
        for d in DEVS:
            for node in self.net.take(d):
                key = (node.attrs["from"], node.attrs["id"])
                assert node.tag == "message" and key in self.waiting[d.jid], "given what does not wait for it"
                assert key not in self.given[d.jid], "given twice on one connection"
                self.given[d.jid].append(key)
                self.waiting[d.jid][key] = node

    def _connect(self, dev: Device) -> None:
        self.given[dev.jid] = []
        assert self.net.login(dev, limit=2)

    @rule(sender=st.sampled_from(DEVS), data=st.data(), resend=st.booleans())
    def send(self, sender: Device, data: st.DataObject, resend: bool) -> None:
        if not self.net.service.is_online(sender.jid):
            self._connect(sender)
            self._collect()
        mine = sorted(i for s, i in self.sent if s == str(sender.jid))
        if resend and mine:
            mid = data.draw(st.sampled_from(mine))
            to = self.sent[(str(sender.jid), mid)]  # the same stanza again: nothing new is kept
        else:
            mid, self.n = f"m{self.n}", self.n + 1
            to = data.draw(st.lists(st.sampled_from([d for d in DEVS if d is not sender]), min_size=1,
                                        unique_by=lambda d: d.jid))
            self.sent[(str(sender.jid), mid)] = to
            for d in to:
                self.waiting[d.jid][(str(sender.jid), mid)] = None  # kept; delivered when it can be
        peer = BOB if sender.jid.user_jid() == ALICE else ALICE
        reply = self.net.one(sender, message(mid, peer, *to))
        assert reply.tag == "ack" and "error" not in reply.attrs
        self._collect()

    @rule(dev=st.sampled_from(DEVS))
    def login(self, dev: Device) -> None:
        self._connect(dev)
        self._collect()
        assert sorted(self.given[dev.jid]) == sorted(self.waiting[dev.jid])  # everything waiting, once

    @rule(dev=st.sampled_from(DEVS))
    def disconnect(self, dev: Device) -> None:
        self.net.service.disconnected(dev.jid)

    @precondition(lambda self: any(self.given[d.jid] and self.net.service.is_online(d.jid) for d in DEVS))
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        dev = data.draw(st.sampled_from([d for d in DEVS if self.given[d.jid] and self.net.service.is_online(d.jid)]))
        key = data.draw(st.sampled_from(self.given[dev.jid]))
        node = self.waiting[dev.jid].pop(key, None)
        if node is not None:  # (not acked on this connection yet)
            self.net.ack(dev, [node])
            self.done.add((dev.jid, *key))

    @rule()
    def restart(self) -> None:
        self.net.restart()
        self.given = {d.jid: [] for d in DEVS}

    @invariant()
    def the_mailbox_holds_what_waits(self) -> None:
        with self.net.service.db.transaction() as tx:
            for d in DEVS:
                assert tx.count(str(d.jid), now=self.net.now) == len(self.waiting[d.jid])
                assert not {(d.jid, *k) for k in self.waiting[d.jid]} & self.done


MailboxMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
TestMailboxMachine = MailboxMachine.TestCase
