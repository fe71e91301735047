"""What an operator and a user notice of a WaMessenger's health over loopback chatd: the Prometheus
endpoint and health() after a conversation with decrypt failures healed by retry receipts; device
lists that follow the server's devices notifications; a signed prekey rotated at login without
breaking a peer's older bundle; a group member's identity change under both identity policies."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
import trio

from wacrypto.chat.events import ClientState
from wacrypto.chat.metrics import MessengerMetrics, serve_metrics
from wacrypto.chat.wa_messenger import (
    DeviceRejected,
    IdentityChanged,
    ReceivedMessage,
    Undecryptable,
    link_companion,
    open_wa_messenger,
)
from wacrypto.chatd.server import Session
from wacrypto.errors import LoggedOutError
from wacrypto.session import account
from wacrypto.store import open_store
from wacrypto.transport.chat_connection import NodeReceived
from wacrypto.transport.messages import StreamErrorCode
from wacrypto.whatsapp.jid import LID_SERVER, Jid
from wacrypto.whatsapp.stanzas import Enc, OutgoingMessage
from wacrypto.wire.binary import Node
from wacrypto.wire.messages import PreKeySignalMessage
from wa_harness import STEP, Chatd, Running, _config, _handled, _new_device, running


def _samples(text: str) -> dict[str, float]:
    """``name{labels}`` -> value of a Prometheus text exposition (comments left out)."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


async def _scrape(port: int) -> dict[str, float]:
    async with httpx.AsyncClient() as http:
        resp = await http.get(f"http://127.0.0.1:{port}/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    return _samples(resp.text)


async def _drained(*devs: Running) -> None:
    with trio.fail_after(STEP):
        while any([await d.m.pending() for d in devs]):
            await trio.sleep(0.05)


async def _lose_session(dev: Running, peer: Jid) -> None:
    """``dev`` loses its session with the device ``peer`` (a restore from an old backup, say),
    under whichever name it keeps it: the phone number's or, once known, the LID's."""
    async with dev.store.transaction() as tx:
        lid = await tx.get_lid_for_pn(peer.user)
    names = [peer.signal_address()] + ([] if lid is None else [Jid(lid, LID_SERVER, peer.device).signal_address()])
    for addr in names:
        async with dev.store.transaction(addr) as tx:
            await tx.delete_session(addr)
    async with dev.store.transaction() as tx:
        assert not [a for a in await tx.list_sessions() if a in names]


async def test_metrics_endpoint_and_health_after_failures_healed_by_retries(tmp_path: Path) -> None:
    chatd = Chatd(tmp_path / "chatd.db")
    alice = await _new_device(tmp_path, "15550000001")
    bob = await _new_device(tmp_path, "15550000002")
    metrics = MessengerMetrics()
    async with trio.open_nursery() as nursery:
        await chatd.start(nursery)
        port = await nursery.start(serve_metrics, metrics, "127.0.0.1", 0)
        async with running(alice, chatd) as a, running(bob, chatd, metrics=metrics) as b:
            await a.m.send_text(bob.jid, "hi bob")
            await _handled(b, "hi bob")
            await b.m.send_text(alice.jid, "hi alice")
            await _handled(a, "hi alice")
            # bob loses his session with alice: her next message fails, his retry receipt heals it
            await _lose_session(b, alice.jid)
            mid = await a.m.send_text(bob.jid, "lost on bob")
            await b.wait_for(Undecryptable, lambda e: e.id == mid)
            await _handled(b, "lost on bob")
            # and alice loses hers with bob: bob answers her retry receipts
            await _lose_session(a, bob.jid)
            mid = await b.m.send_text(alice.jid, "lost on alice")
            await _handled(a, "lost on alice")
            await _drained(a, b)
            health = await b.m.health()
            got = await _scrape(port)
            assert got["wacrypto_messages_sent_total"] == 2 and got["wacrypto_messages_acked_total"] == 2
            assert got["wacrypto_messages_received_total"] == 2
            # bob could not read alice's message once: without a session his first retry receipt
            # already carries a fresh bundle, and her resend on the session built from it is read
            assert got['wacrypto_decrypt_failures_total{final="false",kind="NoSessionError"}'] == 1
            assert not [k for k in got if k.startswith("wacrypto_decrypt_failures_total") and 'final="true"' in k]
            assert got['wacrypto_retry_receipts_total{direction="sent"}'] == 1
            assert got['wacrypto_retry_receipts_total{direction="received"}'] == 1  # alice's, answered
            assert got["wacrypto_send_ack_seconds_count"] == 2 == got['wacrypto_send_ack_seconds_bucket{le="+Inf"}']
            assert got["wacrypto_receive_handle_seconds_count"] == 2
            assert got["wacrypto_outbox_depth"] == 0 and got["wacrypto_reconnects_total"] == 0
            async with httpx.AsyncClient() as http:
                assert (await http.get(f"http://127.0.0.1:{port}/")).status_code == 404
            assert health.state == "connected" and health.logged_in
            assert health.outbox_depth == 0 and health.oldest_outbox_age == 0.0 and health.in_flight == 0
            # 812 uploaded at registration (the count checked at login); one used by alice's first
            # message, one made for the retry receipt with keys and used by her rebuilt session
            assert health.server_prekeys == 812 and health.local_prekeys == 811
            assert (health.retries_sent, health.retries_answered) == (1, 1)
            assert (health.sent, health.acked, health.received, health.reconnects) == (2, 2, 2, 0)

            # chatd goes down: what bob writes waits in his outbox, and health() says how long
            await chatd.stop()
            await b.m.send_text(alice.jid, "while chatd is down")
            await trio.sleep(0.3)
            down = await b.m.health()
            assert down.state != "connected" and not down.logged_in
            assert down.outbox_depth == 1 and down.oldest_outbox_age >= 0.3
            assert (await _scrape(port))["wacrypto_outbox_depth"] == 1
            await chatd.start(nursery)
            await _handled(a, "while chatd is down")
            await _drained(b)
            up = await b.m.health()
            assert up.outbox_depth == 0 and up.reconnects == 1 and up.acked == 3
            got = await _scrape(port)
            assert got["wacrypto_reconnects_total"] == 1 and got["wacrypto_outbox_depth"] == 0
            assert got["wacrypto_messages_acked_total"] == 3 and got["wacrypto_send_ack_seconds_count"] == 3
        nursery.cancel_scope.cancel()


class _Wire:
    """Every stanza each logged-in device sent, as the server received it (its ``on_event``)."""

    def __init__(self) -> None:
        self.sent: list[tuple[Jid, Node]] = []

    async def __call__(self, session: Session, ev: object) -> None:
        p = session.client_payload
        if isinstance(ev, NodeReceived) and p is not None and p.username:
            self.sent.append((Jid(p.username, p.server or "s.whatsapp.net", p.device), ev.node))

    def _stanza(self, sender: Jid, message_id: str) -> OutgoingMessage:
        """The first ``<message>`` of that id (a resend answering a retry receipt has the same)."""
        node = next(n for s, n in self.sent if s == sender and n.tag == "message" and n.attrs.get("id") == message_id)
        return OutgoingMessage.from_node(node)

    def devices_named(self, sender: Jid, message_id: str) -> set[Jid]:
        """The devices ``sender``'s stanza ``message_id`` carried an ``<enc>`` for."""
        return {j for j, _ in self._stanza(sender, message_id).encs if j is not None}

    def enc_for(self, sender: Jid, message_id: str, device: Jid) -> Enc:
        (enc,) = [e for j, e in self._stanza(sender, message_id).encs if j == device]
        return enc

    def iqs(self, sender: Jid, xmlns: str) -> int:
        """How many ``<iq xmlns>`` queries ``sender`` made."""
        return sum(1 for s, n in self.sent if s == sender and n.tag == "iq" and n.attrs.get("xmlns") == xmlns)


async def test_device_lists_follow_the_servers_devices_notifications(tmp_path: Path) -> None:
    wire = _Wire()
    chatd = Chatd(tmp_path / "chatd.db", on_event=wire)
    alice = await _new_device(tmp_path, "15550000001")
    bob, bob1 = await _new_device(tmp_path, "15550000002"), await _new_device(tmp_path, "15550000002", 1)
    async with trio.open_nursery() as nursery:
        await chatd.start(nursery)
        async with running(alice, chatd) as a, running(bob, chatd) as b:
            first = await a.m.send_text(bob.jid, "just your phone")
            await _handled(b, "just your phone")
            assert wire.devices_named(alice.jid, first) == {bob.jid}  # alice caches bob's one device
            # bob links a companion (the QR scan), publishes the account's new key-index list, and
            # the companion logs in for the first time: alice hears of it from the server
            s1 = await open_store(bob1.url)
            linked = await link_companion(b.store, s1, key_index=1)
            await s1.aclose()
            await b.m.publish_key_index_list(linked.key_index_list)
            async with running(bob1, chatd) as b1:
                await b1.m.publish_device_identity(linked.device_identity)
                await b.m.send_text(alice.jid, "I have a laptop now")  # after the notification, in order
                await _handled(a, "I have a laptop now")
                second = await a.m.send_text(bob.jid, "hello both")
                for dev in (b, b1):
                    got = await _handled(dev, "hello both")
                    assert got.id == second and got.sender == alice.jid
                assert wire.devices_named(alice.jid, second) == {bob.jid, bob1.jid}
                assert not [e for e in a.events if isinstance(e, DeviceRejected)]

                # (removing a device from a live server: ChatService.remove_device has the rules and
                # tests/chatd/test_service.py proves them; a live-server method is a leftover)
        nursery.cancel_scope.cancel()


async def test_an_old_signed_prekey_is_rotated_at_login_and_kept_for_older_bundles(tmp_path: Path) -> None:
    skew = [0.0]  # the server's wall clock runs ahead on demand: mailboxes expire
    wire = _Wire()
    chatd = Chatd(tmp_path / "chatd.db", mailbox_ttl=60.0, wall_clock=lambda: time.time() + skew[0], on_event=wire)
    alice, bob, carol = [await _new_device(tmp_path, u) for u in ("15550000001", "15550000002", "15550000003")]
    user = str(bob.jid.user_jid())
    async with trio.open_nursery() as nursery:
        await chatd.start(nursery)
        assert chatd.server is not None and chatd.server.db is not None
        db = chatd.server.db
        async with running(bob, chatd, signed_prekey_max_age=0.001):
            pass  # registered: 812 prekeys and the signed prekey bob's account was created with
        old = db.device(user, 0)
        assert old is not None
        async with running(alice, chatd) as a:
            # alice writes while bob is away, on a session from his bundle with the old signed
            # prekey; he stays away longer than the server keeps it: the message expires
            await a.m.send_text(bob.jid, "lost in the mailbox")
            await _drained(a)
            skew[0] = 61.0
            async with running(bob, chatd, signed_prekey_max_age=0.001) as b:
                with trio.fail_after(STEP):
                    while (rec := db.device(user, 0)) is None or rec.signed_prekey_id == old.signed_prekey_id:
                        await trio.sleep(0.05)
                # the server holds bob's new signed prekey, and the bundle it hands out carries it
                assert rec.signed_prekey != old.signed_prekey and rec.identity == old.identity
                assert rec.registration_id == old.registration_id
                # alice has not heard from bob: her next message is again a pkmsg on the old bundle
                mid = await a.m.send_text(bob.jid, "on your old signed prekey")
                got = await _handled(b, "on your old signed prekey")
                assert got.sender == alice.jid
                pk = wire.enc_for(alice.jid, mid, bob.jid)
                assert pk.type == "pkmsg" and PreKeySignalMessage.from_bytes(pk.ciphertext).signed_pre_key_id == \
                    old.signed_prekey_id
                # read at once: no retry receipt, and the expired message never shows up
                assert not [e for e in b.events if isinstance(e, Undecryptable)] and a.m.retries_answered == 0
                assert not [e for e in b.events if isinstance(e, ReceivedMessage) and e.text == "lost in the mailbox"]
                async with b.store.transaction() as tx:
                    kept = await tx.list_signed_prekeys()
                assert {old.signed_prekey_id, rec.signed_prekey_id} <= set(kept)
                async with running(carol, chatd) as c:  # a newcomer starts on the new one
                    await c.m.send_text(bob.jid, "on your new signed prekey")
                    await _handled(b, "on your new signed prekey")
        nursery.cancel_scope.cancel()


def _waiting(chatd: Chatd, device: Jid) -> list[str]:
    """The ids of what the server keeps for ``device`` until it acknowledges them."""
    assert chatd.server is not None and chatd.server.db is not None
    return [q.msg_id for q in chatd.server.db.pending(str(device), now=time.time())]


@pytest.mark.parametrize("policy", ["accept", "refuse"])
async def test_a_group_member_reinstalls_with_a_new_identity(tmp_path: Path, policy: str) -> None:
    chatd = Chatd(tmp_path / "chatd.db")
    alice, bob, carol = [await _new_device(tmp_path, u) for u in ("15550000001", "15550000002", "15550000003")]
    async with trio.open_nursery() as nursery:
        await chatd.start(nursery)
        async with running(alice, chatd, identity_policy=policy) as a, \
                running(carol, chatd, identity_policy=policy) as c:
            async with running(bob, chatd) as b:
                group = await a.m.create_group("trip", [bob.jid, carol.jid])
                await b.m.send_group(group.group, "before")
                for dev in (a, c):
                    await _handled(dev, "before")
                before = [await dev.m.safety_number(bob.jid) for dev in (a, c)]
            # bob reinstalls: a new identity key on the same device (same chat key: same login)
            s = await open_store(bob.url)
            await s.wipe()
            await account.create_account(s, prekeys=0)
            await s.aclose()
            async with running(bob, chatd) as b:
                mid = await b.m.send_group(group.group, "after reinstall")
                numbers = []
                for dev, me, old in ((a, alice, before[0]), (c, carol, before[1])):
                    changed = await dev.wait_for(IdentityChanged)
                    assert changed.jid == bob.jid and changed.accepted is (policy == "accept")
                    assert changed.safety_number != old
                    # the number both sides compare: what bob's phone shows for this member
                    assert changed.safety_number == await b.m.safety_number(me.jid)
                    numbers.append(changed.safety_number)
                if policy == "refuse":
                    await trio.sleep(0.3)
                    for dev, me in ((a, alice), (c, carol)):  # held: not read, and the server keeps it
                        assert not [e for e in dev.events if isinstance(e, ReceivedMessage) and e.id == mid]
                        assert mid in _waiting(chatd, me.jid)
                    for dev in (a, c):
                        await dev.m.accept_identity(bob.jid)
                for dev, number in zip((a, c), numbers):
                    got = await _handled(dev, "after reinstall")
                    assert got.id == mid and got.chat == group.group and got.sender == bob.jid
                    assert await dev.m.safety_number(bob.jid) == number  # the new key is the one trusted now
                for me in (alice, carol):  # acknowledged once handled (the server commits the ack soon after)
                    with trio.fail_after(STEP):
                        while mid in _waiting(chatd, me.jid):
                            await trio.sleep(0.01)
                # and the group goes on with bob's new sender key, both ways
                await b.m.send_group(group.group, "still here")
                await a.m.send_group(group.group, "welcome back")
                for dev in (a, c):
                    await _handled(dev, "still here")
                await _handled(b, "welcome back")
                assert not [e for dev in (a, b, c) for e in dev.events if isinstance(e, Undecryptable)]
        nursery.cancel_scope.cancel()


async def test_a_steady_conversation_asks_for_no_device_lists(tmp_path: Path) -> None:
    wire = _Wire()
    chatd = Chatd(tmp_path / "chatd.db", on_event=wire)
    alice = await _new_device(tmp_path, "15550000001")
    bob = await _new_device(tmp_path, "15550000002")
    async with trio.open_nursery() as nursery:
        await chatd.start(nursery)
        async with running(alice, chatd) as a, running(bob, chatd) as b:
            await a.m.send_text(bob.jid, "first")  # bob's devices and her own: asked for once
            await _handled(b, "first")
            await _drained(a)
            await trio.sleep(0.2)
            asked = wire.iqs(alice.jid, "usync")
            for i in range(3):
                await a.m.send_text(bob.jid, f"steady {i}")
                await _handled(b, f"steady {i}")
            await _drained(a)
            await trio.sleep(0.2)  # (the queries an ack triggers come just after it)
            assert wire.iqs(alice.jid, "usync") == asked  # the cache and the server's phash agree
        nursery.cancel_scope.cancel()


async def test_a_companion_linked_after_its_first_login_gets_the_next_message(tmp_path: Path) -> None:
    chatd = Chatd(tmp_path / "chatd.db")
    alice = await _new_device(tmp_path, "15550000001")
    bob, bob1 = await _new_device(tmp_path, "15550000002"), await _new_device(tmp_path, "15550000002", 1)
    async with trio.open_nursery() as nursery:
        await chatd.start(nursery)
        async with running(alice, chatd) as a, running(bob, chatd) as b:
            await a.m.send_text(bob.jid, "just your phone")
            await _handled(b, "just your phone")
            async with running(bob1, chatd) as b1:  # logs in (registers) first, is linked after
                linked = await link_companion(b.store, b1.store, key_index=1)
                await b.m.publish_key_index_list(linked.key_index_list)
                await b1.m.publish_device_identity(linked.device_identity)
                await b.m.send_text(alice.jid, "I have a laptop now")
                await _handled(a, "I have a laptop now")
                mid = await a.m.send_text(bob.jid, "hello both")
                await _handled(b, "hello both")
                assert not [e for e in a.events if isinstance(e, DeviceRejected)]
                assert (await _handled(b1, "hello both")).id == mid
        nursery.cancel_scope.cancel()
