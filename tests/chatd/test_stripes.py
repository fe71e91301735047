"""Scale-out: one device served by several worker connections, each for a stripe of its chats
(wacrypto/whatsapp/stripes.py). chatd keeps a connection per stripe, delivers each message and
receipt to the stripe of its chat (live and from the mailbox), server stanzas to stripe 0, replies to
the connection that asked; a login with another stripe count replaces the device's connections."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from test_service import NOW, Device, Net, message
from wacrypto.errors import InvalidArgumentError
from wacrypto.testing.stripes import chats_by_stripe
from wacrypto.transport.messages import ClientPayload
from wacrypto.whatsapp.jid import Jid
from wacrypto.whatsapp.stanzas import Receipt, ack_for, prekey_count_query
from wacrypto.whatsapp.stripes import Stripe, stanza_chat, stripe_of
from wacrypto.wire.binary import Node

ACCOUNT = "100@s.whatsapp.net"


def peers_by_stripe(count: int, per: int = 2) -> dict[int, list[str]]:
    """Peer accounts, ``per`` for each stripe of ``count``."""
    return chats_by_stripe(count, per, "2{:05d}@s.whatsapp.net")


class Striped(Net):
    """The Net of test_service, with a device logged in as several stripes."""

    def login_stripe(self, dev: Device, stripe: int, stripes: int, *, limit: int = 1000) -> list[Node]:
        r = self.service.login(dev.jid.user, dev.jid.server, dev.jid.device, dev.static, self.now,
                               stripe=stripe, stripes=stripes)
        assert r.ok
        got: list[Node] = []
        while True:
            nodes, done = self.service.pending_page(dev.jid, self.now, limit, stripe=stripe)
            got += nodes
            if done:
                return got

    def send_from(self, dev: Device, node: Node, stripe: int) -> list[tuple[Jid, int, Node]]:
        return [(o.target, o.stripe, o.node) for o in self.service.handle(dev.jid, node, self.now, stripe=stripe)]


@pytest.fixture
def snet(tmp_path: Path) -> Striped:
    return Striped(tmp_path / "chatd.db")


def test_each_chat_goes_to_its_stripe_live_and_from_the_mailbox(snet: Striped) -> None:
    a = Device.make(ACCOUNT)
    peers = {i: [Device.make(u) for u in users] for i, users in peers_by_stripe(2).items()}
    everyone = [p for ps in peers.values() for p in ps]
    snet.register(a, *everyone)
    for d in (a, *everyone):
        snet.ack(d, snet.take(d))
    snet.service.disconnected(a.jid)
    # a is offline: one message from each peer waits in its mailbox
    for p in everyone:
        snet.one(p, message(f"w-{p.jid.user}", a.jid, a))
    got0 = snet.login_stripe(a, 0, 2, limit=1)  # (pages of one row: the other stripe's are skipped, not lost)
    assert sorted(n.attrs["from"] for n in got0) == sorted(str(p.jid) for p in peers[0])
    got1 = snet.login_stripe(a, 1, 2)
    assert sorted(n.attrs["from"] for n in got1) == sorted(str(p.jid) for p in peers[1])
    # live: each stripe gets its peers' messages, and only those
    for i, ps in peers.items():
        for p in ps:
            outs = [(t, s) for t, s, n in snet.send_from(p, message(f"l-{p.jid.user}", a.jid, a), 0) if t == a.jid]
            assert outs == [(a.jid, i)]
    # a stripe's replies go to it; what it sends reaches the peer, whose receipt comes back to that stripe
    p1 = peers[1][0]
    replies = snet.send_from(a, message("out1", p1.jid, p1), 1)
    assert [(t, s, n.tag) for t, s, n in replies if t == a.jid] == [(a.jid, 1, "ack")]
    (delivered,) = [n for t, _, n in replies if t == p1.jid]
    receipt = Receipt((delivered.attrs["id"],), str(a.jid.user_jid())).to_node()
    back = [(t, s, n.tag) for t, s, n in snet.send_from(p1, receipt, 0) if t == a.jid]
    assert back == [(a.jid, 1, "receipt")]
    # an iq from stripe 1 is answered on stripe 1; the acks of stripe 0's messages end them for good
    (count,) = snet.send_from(a, prekey_count_query("c1"), 1)
    assert count[:2] == (a.jid, 1) and count[2].attrs["type"] == "result"
    for n in got0:
        assert snet.send_from(a, ack_for(n).to_node(), 0) == []
    again0 = snet.login_stripe(a, 0, 2)  # stripe 0 reconnects: its acked ones are gone, the live ones wait
    assert sorted(n.attrs["id"] for n in again0) == sorted(f"l-{p.jid.user}" for p in peers[0])


def two_stripes_and_a_peer(snet: Striped) -> tuple[Device, Device]:
    """The account's device logged in as stripes 0 and 1 of 2, and a registered peer of stripe 1."""
    a = Device.make(ACCOUNT)
    b = Device.make(peers_by_stripe(2)[1][0])
    snet.register(a, b)
    snet.ack(b, snet.take(b))
    snet.service.disconnected(a.jid)
    snet.login_stripe(a, 0, 2)
    snet.login_stripe(a, 1, 2)
    return a, b


def test_a_login_of_another_stripe_count_replaces_the_device(snet: Striped) -> None:
    a, b = two_stripes_and_a_peer(snet)
    assert snet.service.is_online(a.jid, 0) and snet.service.is_online(a.jid, 1)
    r = snet.service.login(a.jid.user, a.jid.server, 0, a.static, NOW)  # one instance for all again
    assert r.ok and r.replaced
    assert snet.service.is_online(a.jid, 0) and not snet.service.is_online(a.jid, 1)
    with pytest.raises(InvalidArgumentError):
        snet.service.handle(a.jid, prekey_count_query("c2"), NOW, stripe=1)
    snet.service.pending_page(a.jid, NOW, stripe=0)
    outs = snet.send_from(b, message("m1", a.jid, a), 0)
    assert [(t, s) for t, s, _ in outs if t == a.jid] == [(a.jid, 0)]  # unstriped: stripe 0 gets it all
    for bad in [(2, 2), (0, 0), (0, 65)]:
        with pytest.raises(InvalidArgumentError):
            snet.service.login(a.jid.user, a.jid.server, 0, a.static, NOW, stripe=bad[0], stripes=bad[1])


def test_devices_notifications_reach_every_stripe_and_a_gone_stripe_gets_nothing(snet: Striped) -> None:
    a, b = two_stripes_and_a_peer(snet)
    snet.send_from(b, message("hi", a.jid, a), 0)  # b and a correspond: a hears of b's devices
    b1 = Device.make(str(b.jid.with_device(1)))  # b links a companion: the account's devices change
    assert snet.login(b1)
    outs = snet.send_from(b1, b1.upload().to_node(snet.iq_id()), 0)
    notes = sorted(s for t, s, n in outs if t == a.jid and n.tag == "notification")
    assert notes == [0, 1]  # each stripe keeps device lists: each is told
    snet.service.disconnected(a.jid)
    snet.login_stripe(a, 0, 2)
    assert snet.service.pending_page(a.jid, NOW, stripe=1) == ([], True)  # no stripe-1 connection: nothing


def test_stanza_chat_names_the_conversation() -> None:
    assert stanza_chat(Node("message", {"from": "5:3@s.whatsapp.net", "id": "x"})) == "5@s.whatsapp.net"
    assert stanza_chat(Node("message", {"from": "12-34@g.us", "participant": "5@s.whatsapp.net"})) == "12-34@g.us"
    assert stanza_chat(Node("receipt", {"from": "7@lid"})) == "7@lid"
    assert stanza_chat(Node("notification", {"from": "s.whatsapp.net", "type": "encrypt"})) is None
    assert stanza_chat(Node("notification", {"from": "9@s.whatsapp.net", "type": "devices"})) == "9@s.whatsapp.net"
    assert stanza_chat(Node("iq", {"from": "9@s.whatsapp.net"})) is None
    assert stanza_chat(Node("message", {"from": "not a jid"})) is None
    assert stanza_chat(Node("message", {})) is None
    own = Jid.parse("100@s.whatsapp.net")  # what our own other device sent to 7: the chat with 7
    copy = Node("message", {"from": "100:1@s.whatsapp.net", "recipient": "7@s.whatsapp.net"})
    assert stanza_chat(copy, own) == "7@s.whatsapp.net" and stanza_chat(copy) == "100@s.whatsapp.net"
    assert stanza_chat(Node("message", {"from": "5@s.whatsapp.net", "recipient": "7@s.whatsapp.net"}), own) \
        == "5@s.whatsapp.net"  # (a recipient from anyone else is not believed)
    assert Stripe.parse("3/4") == Stripe(3, 4) and str(Stripe(3, 4)) == "3/4"
    for bad in ("4/4", "1", "a/b", "-1/2", "0/0", "0/65"):
        with pytest.raises(InvalidArgumentError):
            Stripe.parse(bad)


@given(st.integers(1, 64), st.lists(st.integers(0, 10**12), min_size=1, max_size=30))
def test_every_chat_belongs_to_exactly_one_stripe(count: int, users: list[int]) -> None:
    stripes = [Stripe(i, count) for i in range(count)]
    for u in users:
        for chat in (f"{u}@s.whatsapp.net", f"{u}:7@s.whatsapp.net", f"{u}-1@g.us"):
            owners = [s for s in stripes if s.owns(chat)]
            assert len(owners) == 1 and owners[0].index == stripe_of(chat, count)
        assert stripe_of(f"{u}:7@s.whatsapp.net", count) == stripe_of(f"{u}@s.whatsapp.net", count)  # per account


@given(st.integers(1, 64).flatmap(lambda n: st.tuples(st.integers(0, n - 1), st.just(n))))
def test_the_client_payload_carries_the_stripe(stripe: tuple[int, int]) -> None:
    p = ClientPayload(username="100", server="s.whatsapp.net", stripe=stripe[0], stripes=stripe[1])
    assert ClientPayload.from_bytes(p.to_bytes()) == p
    with pytest.raises(InvalidArgumentError):
        ClientPayload(username="100", stripe=stripe[1], stripes=stripe[1])


# --------------------------------------------------------------------------- the striped mailbox, as a model
STRIPES = 3
A = Device.make(ACCOUNT)
PEERS = [Device.make(u) for users in chats_by_stripe(STRIPES, 1, "2{:05d}@s.whatsapp.net").values() for u in users] \
    + [Device.make(chats_by_stripe(STRIPES, 2, "2{:05d}@s.whatsapp.net")[0][1])]


class StripedMailboxMachine(RuleBasedStateMachine):
    """A device served by 3 stripe connections that come and go, peers writing to it, acks: each
    message reaches only the connection of its chat's stripe, once per connection until acked, never
    after; what waits while a stripe is down reaches it at its next login; other stripes' logins,
    pages and acks never take it away."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        self.net = Striped(Path(self.dir.name) / "chatd.db")
        self.net.register(A, *PEERS)
        for d in (A, *PEERS):
            self.net.ack(d, self.net.take(d))
        self.net.service.disconnected(A.jid)
        self.session: dict[int, int] = {}  # live stripe -> its login's session
        self.waiting: dict[str, Node | None] = {}  # message id -> the node last given (None: not given yet)
        self.given: dict[int, list[str]] = {i: [] for i in range(STRIPES)}  # on its current connection
        self.owner = {str(p.jid): stripe_of(p.jid, STRIPES) for p in PEERS}
        self.sent_by: dict[str, str] = {}  # message id -> the peer that sent it
        self.n = 0

    def teardown(self) -> None:
        self.net.service.db.close()
        self.dir.cleanup()

    def _take(self, stripe: int, nodes: list[Node]) -> None:
        for node in nodes:
            mid = node.attrs["id"]
            assert node.tag == "message" and mid in self.waiting, "given what does not wait"
            assert self.owner[node.attrs["from"]] == stripe, "given to another stripe than its chat's"
            assert mid not in self.given[stripe], "given twice on one connection"
            self.given[stripe].append(mid)
            self.waiting[mid] = node

    @rule(stripe=st.integers(0, STRIPES - 1), limit=st.sampled_from([1, 2, 1000]))
    def login(self, stripe: int, limit: int) -> None:
        r = self.net.service.login(A.jid.user, A.jid.server, 0, A.static, NOW, stripe=stripe, stripes=STRIPES)
        assert r.ok
        self.session[stripe], self.given[stripe] = r.session, []
        while True:
            nodes, done = self.net.service.pending_page(A.jid, NOW, limit, stripe=stripe)
            self._take(stripe, nodes)
            if done:
                break
        mine = sorted(m for m, n in self.waiting.items() if self.owner[self._from(m)] == stripe)
        assert sorted(self.given[stripe]) == mine  # everything of its chats that waits, once

    def _from(self, mid: str) -> str:
        return self.sent_by[mid]

    @precondition(lambda self: bool(self.session))
    @rule(data=st.data())
    def disconnect(self, data: st.DataObject) -> None:
        stripe = data.draw(st.sampled_from(sorted(self.session)))
        self.net.service.disconnected(A.jid, self.session.pop(stripe))

    @rule(peer=st.sampled_from(PEERS))
    def send(self, peer: Device) -> None:
        mid, self.n = f"m{self.n}", self.n + 1
        self.sent_by[mid] = str(peer.jid)
        self.waiting[mid] = None
        outs = self.net.send_from(peer, message(mid, A.jid, A), 0)
        pushed = [(s, n) for t, s, n in outs if t == A.jid]
        for s, n in pushed:
            assert s in self.session, "pushed to a stripe that is not connected"
            self._take(s, [n])
        if self.owner[str(peer.jid)] in self.session:
            assert len(pushed) == 1  # its stripe is connected and caught up: at once
        else:
            assert pushed == []

    @precondition(lambda self: any(self.given[s] for s in self.session))
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        stripe = data.draw(st.sampled_from([s for s in sorted(self.session) if self.given[s]]))
        mid = data.draw(st.sampled_from(self.given[stripe]))
        node = self.waiting.pop(mid, None)
        if node is not None:
            assert self.net.send_from(A, ack_for(node).to_node(), stripe) == []

    @invariant()
    def each_live_stripe_was_given_all_of_its_own(self) -> None:
        for stripe in self.session:
            mine = {m for m in self.waiting if self.owner[self._from(m)] == stripe}
            assert mine <= set(self.given[stripe])


StripedMailboxMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
test_striped_mailbox = StripedMailboxMachine.TestCase
