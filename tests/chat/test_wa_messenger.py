"""WaMessenger end to end over loopback TCP through the reference chatd serving the WhatsApp
stanzas from its SQLite database (docs/chat-protocol.md), with SQLite key stores."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import trio

from wacrypto.chat.events import ClientState, StateChanged
from wacrypto.errors import ConflictError, InvalidArgumentError, LoggedOutError
from wacrypto.session.groups import GroupCipher
from wacrypto.chat.wa_messenger import (
    DeviceRejected,
    IdentityChanged,
    ReceiptReceived,
    ReceivedMessage,
    SendRejected,
    STANZA_TYPE,
    Undecryptable,
    WaMessenger,
    link_companion,
    open_wa_messenger,
)
from wacrypto.chatd.media import MediaServer
from wacrypto.media.client import MediaClient
from wacrypto.session import account
from wacrypto.store import open_store
from wacrypto.store.protocols import OutboxEntry
from wacrypto.whatsapp.jid import Jid
from wacrypto.whatsapp.stanzas import Enc, OutgoingMessage
from wacrypto.wire.binary import Node, encode_node
from wa_harness import STEP, Chatd, Device, Running, _config, _handled, _new_device, drained, running


async def test_registration_and_a_conversation_both_ways(tmp_path: Path) -> None:
    chatd = Chatd(tmp_path / "chatd.db")
    alice = await _new_device(tmp_path, "15550000001")
    bob = await _new_device(tmp_path, "15550000002")
    async with trio.open_nursery() as nursery:
        await chatd.start(nursery)
        async with running(alice, chatd) as a, running(bob, chatd) as b:
            assert a.m.prekey_uploads == 1 and b.m.prekey_uploads == 1  # 812 each, at registration
            assert chatd.server is not None and chatd.server.db is not None
            mid = await a.m.send_text(bob.jid, "hello bob")
            got = await b.next_message("hello bob")
            assert got.id == mid and got.sender == alice.jid and got.chat == alice.jid.user_jid()
            await b.m.mark_handled(got)
            receipt = await a.wait_for(ReceiptReceived, lambda e: mid in e.ids)
            assert receipt.type is None  # delivered
            await b.m.send_text(alice.jid, "hello alice")
            back = await a.next_message("hello alice")
            await a.m.mark_handled(back)
            with trio.fail_after(STEP):
                while await a.m.pending() or await b.m.pending():
                    await trio.sleep(0.05)
        nursery.cancel_scope.cancel()


async def test_offline_delivery_survives_a_chatd_restart(tmp_path: Path) -> None:
    chatd = Chatd(tmp_path / "chatd.db")
    alice = await _new_device(tmp_path, "15550000001")
    bob = await _new_device(tmp_path, "15550000002")
    async with trio.open_nursery() as nursery:
        await chatd.start(nursery)
        async with running(bob, chatd):
            pass  # registered, then offline
        async with running(alice, chatd) as a:
            ids = [await a.m.send_text(bob.jid, f"offline {i}") for i in range(5)]
            await drained(a)
        await chatd.stop()
        await chatd.start(nursery)  # a new server on the same database, same port
        async with running(bob, chatd) as b:
            for i, mid in enumerate(ids):
                got = await b.next_message(f"offline {i}")
                assert got.id == mid
                await b.m.mark_handled(got)
        async with running(bob, chatd) as b2:
            await trio.sleep(0.5)
            assert not [e for e in b2.events if isinstance(e, ReceivedMessage)]  # acked: gone for good
        nursery.cancel_scope.cancel()


async def test_a_lost_session_is_healed_by_retry_receipts(tmp_path: Path) -> None:
    chatd = Chatd(tmp_path / "chatd.db")
    alice = await _new_device(tmp_path, "15550000001")
    bob = await _new_device(tmp_path, "15550000002")
    async with trio.open_nursery() as nursery:
        await chatd.start(nursery)
        async with running(alice, chatd) as a, running(bob, chatd) as b:
            await b.m.mark_handled(await _exchange(a, b, bob, "one"))
            # bob loses his session with alice (a restore from an old backup, say)
            addr = alice.jid.signal_address()
            async with b.store.transaction(addr) as tx:
                await tx.delete_session(addr)
            mid = await a.m.send_text(bob.jid, "two")
            fail = await b.wait_for(Undecryptable, lambda e: e.id == mid)
            assert fail.retry_count == 1 and not fail.gave_up
            healed = await b.next_message("two")
            assert healed.id == mid
            await b.m.mark_handled(healed)
            assert a.m.retries_answered >= 1
        nursery.cancel_scope.cancel()


async def _exchange(a: Running, b: Running, to: Device, text: str) -> ReceivedMessage:
    await a.m.send_text(to.jid, text)
    return await b.next_message(text)


@pytest.mark.parametrize("policy", ["accept", "refuse"])
async def test_identity_change_policy(tmp_path: Path, policy: str) -> None:
    chatd = Chatd(tmp_path / "chatd.db")
    alice = await _new_device(tmp_path, "15550000001")
    bob = await _new_device(tmp_path, "15550000002")
    async with trio.open_nursery() as nursery:
        await chatd.start(nursery)
        async with running(alice, chatd, identity_policy=policy) as a:
            async with running(bob, chatd) as b:
                await b.m.mark_handled(await _exchange(a, b, bob, "before"))
            # bob reinstalls: a new identity key on the same device (same chat key: same login)
            s = await open_store(bob.url)
            await s.wipe()
            await account.create_account(s, prekeys=0)
            await s.aclose()
            async with running(bob, chatd) as b:
                await b.m.send_text(alice.jid, "after reinstall")
                changed = await a.wait_for(IdentityChanged)
                assert changed.jid.user == bob.jid.user and changed.accepted is (policy == "accept")
                assert len(changed.safety_number.replace(" ", "")) == 60
                if policy == "refuse":
                    await trio.sleep(0.3)
                    assert not [e for e in a.events if isinstance(e, ReceivedMessage) and e.text == "after reinstall"]
                    await a.m.accept_identity(changed.jid)
                got = await a.next_message("after reinstall")
                await a.m.mark_handled(got)
        nursery.cancel_scope.cancel()


async def test_every_device_of_both_accounts_and_adv_fail_closed(tmp_path: Path) -> None:
    chatd = Chatd(tmp_path / "chatd.db")
    alice, alice2 = await _new_device(tmp_path, "15550000001"), await _new_device(tmp_path, "15550000001", 1)
    bob, bob1 = await _new_device(tmp_path, "15550000002"), await _new_device(tmp_path, "15550000002", 1)
    rogue = await _new_device(tmp_path, "15550000002", 2)  # logs in as bob's device 2, never linked by bob
    async with trio.open_nursery() as nursery:
        await chatd.start(nursery)
        async with running(alice, chatd) as a, running(alice2, chatd) as a2, running(bob, chatd) as b, \
                running(bob1, chatd) as b1, running(rogue, chatd) as r:
            for primary, companion in ((a, a2), (b, b1)):
                linked = await link_companion(primary.store, companion.store, key_index=1)
                await primary.m.publish_key_index_list(linked.key_index_list)
                await companion.m.publish_device_identity(linked.device_identity)
            mid = await a.m.send_text(bob.jid, "to all of bob")
            for dev in (b, b1):
                got = await dev.next_message("to all of bob")
                assert got.id == mid and got.sender == alice.jid
                await dev.m.mark_handled(got)
            copy = await a2.next_message("to all of bob")  # our own other device: a DeviceSentMessage
            assert copy.chat == bob.jid.user_jid() and copy.content.destination == str(bob.jid.user_jid())
            await a2.m.mark_handled(copy)
            rejected = await a.wait_for(DeviceRejected, lambda e: e.jid == rogue.jid)
            assert "ADV" in rejected.reason or "identity" in rejected.reason
            await trio.sleep(0.3)
            assert not [e for e in r.events if isinstance(e, ReceivedMessage)]  # never encrypted to it
            # and what the unlinked device sends is not read either
            await r.m.send_text(alice.jid, "from the rogue device")
            await a.wait_for(DeviceRejected, lambda e: e.jid == rogue.jid and "cannot" not in e.reason
                             and e is not rejected)
            assert not [e for e in a.events if isinstance(e, ReceivedMessage) and e.text == "from the rogue device"]
        nursery.cancel_scope.cancel()


async def test_an_image_and_a_group_of_three(tmp_path: Path) -> None:
    chatd = Chatd(tmp_path / "chatd.db")
    alice, bob, carol = [await _new_device(tmp_path, u) for u in ("15550000001", "15550000002", "15550000003")]
    image = tmp_path / "photo.jpg"
    image.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 400)
    async with trio.open_nursery() as nursery:
        await chatd.start(nursery)
        media_server = MediaServer(tmp_path / "media")
        media_port = await nursery.start(media_server.serve, "127.0.0.1", 0)
        async with MediaClient(upload_hosts=[f"http://127.0.0.1:{media_port}"]) as media, \
                running(alice, chatd) as a, running(bob, chatd) as b, running(carol, chatd) as c:
            mid = await a.m.send_image(bob.jid, image, media, caption="look")
            got = await b.wait_for(ReceivedMessage, lambda e: e.id == mid)
            assert got.content.image is not None and got.content.image.caption == "look"
            await WaMessenger.download_media(got, tmp_path / "got.jpg", media)
            assert (tmp_path / "got.jpg").read_bytes() == image.read_bytes()
            await b.m.mark_handled(got)
            report = tmp_path / "report.pdf"
            report.write_bytes(b"%PDF-1.7 " + bytes(range(256)) * 2000)
            did = await a.m.send_media(bob.jid, report, media, kind="document", mimetype="application/pdf")
            doc = await b.wait_for(ReceivedMessage, lambda e: e.id == did)
            assert doc.content.document is not None and doc.content.document.file_name == "report.pdf"
            await WaMessenger.download_media(doc, tmp_path / "got.pdf", media)
            assert (tmp_path / "got.pdf").read_bytes() == report.read_bytes()
            await b.m.mark_handled(doc)
            await b.m.send_read(doc)
            read = await a.wait_for(ReceiptReceived, lambda e: did in e.ids and e.type == "read")
            assert read.sender.user == bob.jid.user

            group = await a.m.create_group("three", [bob.jid, carol.jid])
            assert set(group.participants) >= {bob.jid.user_jid(), carol.jid.user_jid()}
            gid = await a.m.send_group(group.group, "hello group")
            for dev in (b, c):
                msg = await dev.next_message("hello group")
                assert msg.id == gid and msg.chat == group.group and msg.sender == alice.jid
                await dev.m.mark_handled(msg)
            second = await a.m.send_group(group.group, "again")  # the sender key is known now: skmsg only
            for dev in (b, c):
                msg = await dev.next_message("again")
                assert msg.id == second
                await dev.m.mark_handled(msg)
            await b.m.send_group(group.group, "bob here")
            for dev in (a, c):
                msg = await dev.next_message("bob here")
                assert msg.sender == bob.jid
                await dev.m.mark_handled(msg)
        nursery.cancel_scope.cancel()


async def test_prekeys_are_replenished_below_five_and_each_is_handed_out_once(tmp_path: Path) -> None:
    chatd = Chatd(tmp_path / "chatd.db")
    alice = await _new_device(tmp_path, "15550000001")
    bob = await _new_device(tmp_path, "15550000002")
    async with trio.open_nursery() as nursery:
        await chatd.start(nursery)
        async with running(bob, chatd) as b:
            assert chatd.server is not None and chatd.server.db is not None
            db, user = chatd.server.db, str(bob.jid.user_jid())
            assert db.unused_prekeys(user, 0) == 812
            taken = set()
            while db.unused_prekeys(user, 0) > 5:  # others fetched bundles meanwhile
                got = db.take_bundle(user, 0, now=0.0)
                assert got is not None and got[1] is not None
                taken.add(got[1][0])
            assert len(taken) == 807  # never the same one twice
            async with running(alice, chatd) as a:
                await a.m.send_text(bob.jid, "takes the fifth")  # 4 left: the server tells bob
                await _handled(b, "takes the fifth")
                with trio.fail_after(STEP):
                    while b.m.prekey_uploads < 2:
                        await trio.sleep(0.05)
                assert db.unused_prekeys(user, 0) == 4 + 50
                health = await b.m.health()
                assert health.logged_in and health.server_prekeys == 54 and health.outbox_depth == 0
        nursery.cancel_scope.cancel()


async def test_a_message_not_handled_before_a_crash_comes_again_with_the_same_plaintext(tmp_path: Path) -> None:
    # the one-time prekey the pkmsg used is gone after the first decryption: the redelivery is
    # answered from the stored plaintext, never "invalid prekey id"
    chatd = Chatd(tmp_path / "chatd.db")
    alice = await _new_device(tmp_path, "15550000001")
    bob = await _new_device(tmp_path, "15550000002")
    async with trio.open_nursery() as nursery:
        await chatd.start(nursery)
        async with running(alice, chatd) as a:
            async with running(bob, chatd) as b:
                mid = await a.m.send_text(bob.jid, "first contact")
                first = await b.next_message("first contact")
                assert not first.redelivered  # ... and bob "crashes" before handling it
            async with running(bob, chatd) as b:
                again = await b.next_message("first contact")
                assert again.id == mid and again.redelivered
                await b.m.mark_handled(again)
            async with running(bob, chatd) as b:
                await trio.sleep(0.5)
                assert not [e for e in b.events if isinstance(e, ReceivedMessage)]
        nursery.cancel_scope.cancel()


async def test_a_second_connection_of_a_device_replaces_the_first(tmp_path: Path) -> None:
    chatd = Chatd(tmp_path / "chatd.db")
    bob = await _new_device(tmp_path, "15550000002")
    async with trio.open_nursery() as nursery:
        await chatd.start(nursery)
        async with running(bob, chatd) as first:
            second_store = tmp_path / "copy.db"
            copy = Device(bob.jid, f"sqlite:///{second_store}", bob.static)
            s = await open_store(copy.url)
            await account.create_account(s, prekeys=0)
            await s.aclose()
            async with running(copy, chatd):
                with trio.fail_after(STEP):
                    await first.m.client.wait_state(ClientState.CLOSED)  # no reconnect loop
                assert isinstance(first.m.client.error, ConflictError)
        nursery.cancel_scope.cancel()


async def test_chatd_down_mid_conversation_loses_nothing(tmp_path: Path) -> None:
    chatd = Chatd(tmp_path / "chatd.db")
    alice = await _new_device(tmp_path, "15550000001")
    bob = await _new_device(tmp_path, "15550000002")
    async with trio.open_nursery() as nursery:
        await chatd.start(nursery)
        async with running(alice, chatd) as a, running(bob, chatd) as b:
            await a.m.send_text(bob.jid, "before")
            await _handled(b, "before")
            await chatd.stop()
            ids = [await a.m.send_text(bob.jid, f"while down {i}") for i in range(3)]  # committed, queued
            assert await a.m.pending() == 3
            await chatd.start(nursery)
            for i, mid in enumerate(ids):
                assert (await _handled(b, f"while down {i}")).id == mid
            await drained(a)
            assert a.m.reconnects >= 1
        nursery.cancel_scope.cancel()


async def test_a_lost_sender_key_is_healed_by_a_group_retry(tmp_path: Path) -> None:
    chatd = Chatd(tmp_path / "chatd.db")
    alice, bob, carol = [await _new_device(tmp_path, u) for u in ("15550000001", "15550000002", "15550000003")]
    async with trio.open_nursery() as nursery:
        await chatd.start(nursery)
        async with running(alice, chatd) as a, running(bob, chatd) as b, running(carol, chatd) as c:
            group = await a.m.create_group("g", [bob.jid, carol.jid])
            await a.m.send_group(group.group, "one")
            await _handled(b, "one")
            await _handled(c, "one")
            await GroupCipher(c.store).forget(str(group.group), alice.jid.signal_address())
            mid = await a.m.send_group(group.group, "two")
            fail = await c.wait_for(Undecryptable, lambda e: e.id == mid)
            assert fail.retry_count == 1
            healed = await _handled(c, "two")  # sent again pairwise, with a fresh sender key distribution
            assert healed.chat == group.group
            await _handled(b, "two")
            await a.m.send_group(group.group, "three")  # and carol reads the skmsg again
            await _handled(c, "three")
        nursery.cancel_scope.cancel()


async def test_the_key_digest_finds_keys_garbled_on_the_server_and_reuploads(tmp_path: Path) -> None:
    chatd = Chatd(tmp_path / "chatd.db")
    alice = await _new_device(tmp_path, "15550000001")
    bob = await _new_device(tmp_path, "15550000002")
    async with trio.open_nursery() as nursery:
        await chatd.start(nursery)
        async with running(bob, chatd) as b:
            with trio.fail_after(STEP):
                while b.m.prekey_uploads < 1:
                    await trio.sleep(0.05)
        async with running(bob, chatd) as b:  # a plain login: the digest matches
            await trio.sleep(0.3)
            assert b.m.digest_mismatches == 0 and b.m.prekey_uploads == 0
        assert chatd.server is not None and chatd.server.db is not None
        user = str(bob.jid.user_jid())
        with chatd.server.db.transaction() as tx:  # the server's copy of bob's signed prekey is damaged
            rec = tx.device(user, 0)
            assert rec is not None
            tx.set_signed_prekey(user, 0, rec.signed_prekey_id, bytes(32), rec.signed_prekey_signature)
        async with running(bob, chatd) as b:
            with trio.fail_after(STEP):
                while b.m.prekey_uploads < 1:
                    await trio.sleep(0.05)
            assert b.m.digest_mismatches == 1
            async with running(alice, chatd) as a:  # bob's bundle is good again: a session starts
                await a.m.send_text(bob.jid, "after the repair")
                await _handled(b, "after the repair")
        nursery.cancel_scope.cancel()


async def test_pn_to_lid_migration_moves_sessions_identities_and_sender_keys(tmp_path: Path) -> None:
    chatd = Chatd(tmp_path / "chatd.db")
    alice, bob, carol = [await _new_device(tmp_path, u) for u in ("15550000001", "15550000002", "15550000003")]
    async with trio.open_nursery() as nursery:
        await chatd.start(nursery)
        async with running(alice, chatd) as a, running(bob, chatd) as b, running(carol, chatd):
            # bob writes first: alice keeps his session and sender key under his phone number
            await b.m.send_text(alice.jid, "hi from bob")
            await _handled(a, "hi from bob")
            group = await b.m.create_group("g", [alice.jid, carol.jid])
            await b.m.send_group(group.group, "group one")
            await _handled(a, "group one")
            pn = bob.jid.signal_address()
            async with a.store.transaction(pn) as tx:
                assert await tx.load_session(pn) is not None and await tx.get_lid_for_pn(bob.jid.user) is None
            # alice writes back: the device list tells her bob's LID, and his state moves there
            await a.m.send_text(bob.jid, "hi bob")
            got = await _handled(b, "hi bob")
            assert got.sender == alice.jid
            assert a.m.lid_migrations >= 2  # her own account (from <success lid>) and bob's
            async with a.store.transaction() as tx:
                lid_user = await tx.get_lid_for_pn(bob.jid.user)
                assert lid_user is not None
                lid = Jid(lid_user, "lid").signal_address()
                assert await tx.load_session(pn) is None and await tx.get_remote_identity(pn) is None
                assert await tx.load_session(lid) is not None and await tx.get_remote_identity(lid) is not None
                assert await tx.load_sender_key(str(group.group), pn) is None
                assert await tx.load_sender_key(str(group.group), lid) is not None
            await b.m.send_group(group.group, "group two")  # read with the moved sender key: no retry
            await _handled(a, "group two")
            assert not [e for e in a.events if isinstance(e, Undecryptable)]
        nursery.cancel_scope.cancel()


async def test_a_message_the_server_refuses_for_good_leaves_the_outbox_with_an_event(tmp_path: Path) -> None:
    chatd = Chatd(tmp_path / "chatd.db")
    alice = await _new_device(tmp_path, "15550000001")
    bob = await _new_device(tmp_path, "15550000002")
    carol = Jid("15550000003", "s.whatsapp.net")
    # in alice's outbox (a bug, or a store written by something else): a stanza naming a third
    # account's device among bob's: the server answers 488, which no resend will change
    bad = OutgoingMessage("BAD1", str(bob.jid), ((carol, Enc("msg", b"\x33" * 40)),)).to_node()
    s = await open_store(alice.url)
    async with s.transaction() as tx:
        await tx.outbox_put(OutboxEntry("BAD1", str(bob.jid), STANZA_TYPE, encode_node(bad), 0.0))
    await s.aclose()
    async with trio.open_nursery() as nursery:
        await chatd.start(nursery)
        async with running(bob, chatd), running(alice, chatd) as a:
            rejected = await a.wait_for(SendRejected)
            assert rejected.id == "BAD1" and rejected.code == 488
            assert await a.m.pending() == 0
            await a.m.send_text(bob.jid, "the next one goes through")
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("kind", ["pkmsg", "msg"])
async def test_a_backlog_is_read_in_order_with_a_bad_stanza_at_its_place_and_handled_together(
        tmp_path: Path, kind: str) -> None:
    # bob comes back to 41 waiting messages (prekey messages while alice has not heard from him,
    # else plain ones): the worker decrypts the runs of them in one commit each;
    # the garbled one in the middle is reported at its place, the others are handed out in order,
    # once; mark_handled_many acknowledges a batch (alice sees fewer receipts than messages), and a
    # batch not handled before a crash comes again, in order, with its plaintext
    chatd = Chatd(tmp_path / "chatd.db")
    alice = await _new_device(tmp_path, "15550000001")
    bob = await _new_device(tmp_path, "15550000002")
    async with trio.open_nursery() as nursery:
        await chatd.start(nursery)
        async with running(bob, chatd) as b, running(alice, chatd) as a:
            await a.m.send_text(bob.jid, "hello")
            await _handled(b, "hello")
            if kind == "msg":  # a session both ways: the backlog is plain "msg" stanzas
                await b.m.send_text(alice.jid, "hello back")
                await _handled(a, "hello back")
        async with running(alice, chatd) as a:
            first = [await a.m.send_text(bob.jid, f"m{i}") for i in range(20)]
            await drained(a)
        bad = OutgoingMessage("BAD1", str(bob.jid), ((bob.jid, Enc("msg", b"\x33" * 40)),)).to_node()
        s = await open_store(alice.url)
        async with s.transaction() as tx:
            await tx.outbox_put(OutboxEntry("BAD1", str(bob.jid), STANZA_TYPE, encode_node(bad), 0.0))
        await s.aclose()
        async with running(alice, chatd) as a:
            await drained(a)  # the garbled stanza is sent (from the outbox) before the rest
            second = [await a.m.send_text(bob.jid, f"m{i}") for i in range(20, 40)]
            await drained(a)
            ids = first + second
            async with running(bob, chatd) as b:
                with trio.fail_after(STEP):
                    while len([e for e in b.events if isinstance(e, ReceivedMessage)]) < 40:
                        b.changed = trio.Event()
                        await b.changed.wait()
                seen = [e for e in b.events if isinstance(e, (ReceivedMessage, Undecryptable))]
                assert [e.id for e in seen] == first + ["BAD1"] + second
                assert isinstance(seen[20], Undecryptable) and seen[20].error == "InvalidMessageError"
                got = [e for e in seen if isinstance(e, ReceivedMessage)]
                assert [g.text for g in got] == [f"m{i}" for i in range(40)]
                assert not any(g.redelivered for g in got)
                await b.m.mark_handled_many(got[:25])
                receipted: set[str] = set()
                with trio.fail_after(STEP):
                    while not set(ids[:25]) <= receipted:
                        e = await a.wait_for(ReceiptReceived, lambda e: not set(e.ids) <= receipted)
                        receipted |= set(e.ids)
                receipts = [e for e in a.events if isinstance(e, ReceiptReceived) and set(e.ids) & set(ids)]
                assert len(receipts) < 25  # one delivery receipt names many messages
                assert not receipted & set(ids[25:])
            # ... and bob "crashed" before handling the rest
            async with running(bob, chatd) as b:
                with trio.fail_after(STEP):
                    while len([e for e in b.events if isinstance(e, ReceivedMessage)]) < 15:
                        b.changed = trio.Event()
                        await b.changed.wait()
                again = [e for e in b.events if isinstance(e, ReceivedMessage)]
                assert [g.id for g in again] == ids[25:] and all(g.redelivered for g in again)
                assert [g.text for g in again] == [f"m{i}" for i in range(25, 40)]
                await b.m.mark_handled_many(again)
            async with running(bob, chatd) as b:
                await trio.sleep(0.5)
                assert not [e for e in b.events if isinstance(e, ReceivedMessage)]
        nursery.cancel_scope.cancel()


async def test_a_damaged_stanza_in_the_outbox_is_never_sent_and_leaves_it_with_an_event(tmp_path: Path) -> None:
    # stanzas go from the outbox to the connection as committed, not decoded again: one that no
    # longer decodes is caught when the outbox is read, instead of costing the connection
    chatd = Chatd(tmp_path / "chatd.db")
    alice = await _new_device(tmp_path, "15550000001")
    bob = await _new_device(tmp_path, "15550000002")
    s = await open_store(alice.url)
    async with s.transaction() as tx:
        await tx.outbox_put(OutboxEntry("DAMAGED1", str(bob.jid), STANZA_TYPE, b"\xf8\x99garbage", 0.0))
    await s.aclose()
    async with trio.open_nursery() as nursery:
        await chatd.start(nursery)
        async with running(bob, chatd) as b, running(alice, chatd) as a:
            rejected = await a.wait_for(SendRejected)
            assert rejected.id == "DAMAGED1" and rejected.code == 0
            assert await a.m.pending() == 0
            await a.m.send_text(bob.jid, "the next one goes through")
            await _handled(b, "the next one goes through")
            assert a.m.reconnects == 0
        nursery.cancel_scope.cancel()


async def _all_received(r: Running, n: int) -> list[ReceivedMessage]:
    with trio.fail_after(STEP):
        while len(got := [e for e in r.events if isinstance(e, ReceivedMessage)]) < n:
            r.changed = trio.Event()
            await r.changed.wait()
    return got


async def test_concurrent_sends_to_one_chat_commit_together_and_start_one_session(tmp_path: Path) -> None:
    # 30 send_text calls at once to a chat with no session yet: the ones that find the sessions
    # missing start them once (one bundle fetch: bob loses one one-time prekey, not one per send),
    # then the sends commit in groups; every id returned arrives once, with its text (concurrent
    # calls have no order among themselves; trio starts tasks in no fixed order)
    chatd = Chatd(tmp_path / "chatd.db")
    alice = await _new_device(tmp_path, "15550000001")
    bob = await _new_device(tmp_path, "15550000002")
    async with trio.open_nursery() as nursery:
        await chatd.start(nursery)
        async with running(bob, chatd) as b, running(alice, chatd) as a:
            async with b.store.transaction() as tx:
                prekeys = await tx.count_prekeys()
            ids: dict[str, str] = {}

            async def one(text: str) -> None:
                ids[text] = await a.m.send_text(bob.jid, text)

            async with trio.open_nursery() as senders:
                for i in range(30):
                    senders.start_soon(one, f"c{i}")
            got = await _all_received(b, 30)
            assert sorted((g.text, g.id) for g in got) == sorted(ids.items())
            await b.m.mark_handled_many(got)
            async with b.store.transaction() as tx:
                assert await tx.count_prekeys() == prekeys - 1
            # a steady conversation: 40 at once, some cancelled on the way: what returned an id
            # arrives once, what was cancelled either arrives once or never
            async with trio.open_nursery() as senders:
                for i in range(30, 70):
                    senders.start_soon(one, f"c{i}")
                with trio.fail_after(STEP):
                    while len(ids) == 30:  # the first of them committed: cancel the rest under way
                        await trio.sleep(0.001)
                senders.cancel_scope.cancel()
            await a.m.send_text(bob.jid, "last")
            await drained(a)
            got = await _all_received(b, 31)
            await trio.sleep(0.3)
            texts = [e.text for e in b.events if isinstance(e, ReceivedMessage)]
            assert len(texts) == len(set(texts)) and "last" in texts
            assert set(ids) <= set(texts) <= set(ids) | {f"c{i}" for i in range(70)} | {"last"}
            assert not a.m._send_queue  # nothing a cancelled send left behind
        nursery.cancel_scope.cancel()


async def test_a_full_mailbox_share_delays_sends_by_a_backoff_not_the_resend_period(tmp_path: Path) -> None:
    # bob is offline; chatd keeps at most 10 of alice's messages for him and nacks the rest: they
    # stay in alice's outbox, sent again soon (0.25 s, doubling while only nacks come back), so
    # once bob reads his mailbox all 25 arrive within seconds, not after the 30 s resend period
    chatd = Chatd(tmp_path / "chatd.db", mailbox_sender_limit=10)
    alice = await _new_device(tmp_path, "15550000001")
    bob = await _new_device(tmp_path, "15550000002")
    async with trio.open_nursery() as nursery:
        await chatd.start(nursery)
        async with running(bob, chatd) as b, running(alice, chatd) as a:
            await a.m.send_text(bob.jid, "hello")
            await _handled(b, "hello")
        async with running(alice, chatd) as a:
            ids = [await a.m.send_text(bob.jid, f"q{i}") for i in range(25)]
            with trio.fail_after(STEP):
                while a.m.acked < 10:  # the 10 that fit
                    await trio.sleep(0.05)
            await trio.sleep(1.0)
            assert await a.m.pending() == 15  # refused for now, kept
            async with running(bob, chatd) as b:
                t0 = trio.current_time()
                with trio.fail_after(STEP):
                    while len(got := [e for e in b.events if isinstance(e, ReceivedMessage)]) < 25:
                        for e in got:
                            if e._node is not None and (e.sender, e.id) in b.m._emitted:
                                await b.m.mark_handled(e)
                        b.changed = trio.Event()
                        with trio.move_on_after(0.1):
                            await b.changed.wait()
                assert trio.current_time() - t0 < 15  # well inside RESEND_AFTER (30 s)
                assert sorted(e.id for e in got) == sorted(ids)
                assert len({e.id for e in got}) == 25
            await drained(a)
        nursery.cancel_scope.cancel()


async def test_a_refused_login_closes_the_connection_for_good(tmp_path: Path) -> None:
    # chatd binds a device to the chat key of its first login: the same device with another key is
    # refused (<failure reason=401>); the messenger says CLOSED (LoggedOutError) and the client
    # stops there instead of logging in again and again
    chatd = Chatd(tmp_path / "chatd.db")
    bob = await _new_device(tmp_path, "15550000002")
    async with trio.open_nursery() as nursery:
        await chatd.start(nursery)
        async with running(bob, chatd):
            pass
        impostor = Device(bob.jid, bob.url)  # a new static key
        store = await open_store(bob.url)
        try:
            async with open_wa_messenger(store, _config(impostor, chatd.port), bob.jid) as m:
                with trio.fail_after(STEP):
                    async for ev in m.events():
                        if isinstance(ev, StateChanged) and ev.state is ClientState.CLOSED:
                            break
                assert isinstance(ev.error, LoggedOutError) and m.login_error is not None
                assert m.login_error.attrs.get("reason") == "401"
                await trio.sleep(1.0)  # (the client's backoff is 0.05-0.3 s: it would have dialled again)
                assert m.client.state is ClientState.CLOSED and m.client.connections == 1
                assert not m._logged_in.is_set()
        finally:
            await store.aclose()
        nursery.cancel_scope.cancel()


async def test_a_send_cancelled_while_waiting_is_never_sent_later(tmp_path: Path) -> None:
    # A commits (slowly); B and C queue behind it; B then leads a batch of [B, C], D queues behind;
    # the callers of C, then B, then D are cancelled during those commits: nothing of them
    # committed, and C must not be taken along by a later send (E): its caller was told it was
    # cancelled
    chatd = Chatd(tmp_path / "chatd.db")
    alice = await _new_device(tmp_path, "15550000001")
    bob = await _new_device(tmp_path, "15550000002")
    async with trio.open_nursery() as nursery:
        await chatd.start(nursery)
        async with running(bob, chatd) as b, running(alice, chatd) as a:
            await a.m.send_text(bob.jid, "hello")
            await _handled(b, "hello")
            real = a.m._commit_send
            slow = {"on": True}

            async def slow_commit(chat: Jid, batch: list) -> None:  # type: ignore[type-arg]
                if slow["on"]:
                    await trio.sleep(0.3)  # a slow disk, say (cancellable: nothing is written yet)
                await real(chat, batch)

            a.m._commit_send = slow_commit  # type: ignore[method-assign]
            scopes: dict[str, trio.CancelScope] = {}
            returned: dict[str, str] = {}

            async def one(text: str) -> None:
                with trio.CancelScope() as scope:
                    scopes[text] = scope
                    returned[text] = await a.m.send_text(bob.jid, text)

            async with trio.open_nursery() as senders:
                senders.start_soon(one, "A")
                await trio.sleep(0.05)
                senders.start_soon(one, "B")
                await trio.sleep(0.01)
                senders.start_soon(one, "C")
                await trio.sleep(0.35)  # A committed; B leads [B, C] now
                senders.start_soon(one, "D")  # queued behind them
                await trio.sleep(0.01)
                for name in ("C", "B", "D"):
                    scopes[name].cancel()
                    await trio.sleep(0.01)
            slow["on"] = False
            await a.m.send_text(bob.jid, "E")
            await drained(a)
            await trio.sleep(0.3)
            texts = [e.text for e in b.events if isinstance(e, ReceivedMessage)]
            assert set(returned) == {"A"} and texts[1:] == ["A", "E"]
            assert not a.m._send_queue
        nursery.cancel_scope.cancel()


async def test_a_message_too_large_for_a_frame_fails_alone(tmp_path: Path) -> None:
    chatd = Chatd(tmp_path / "chatd.db")
    alice = await _new_device(tmp_path, "15550000001")
    bob = await _new_device(tmp_path, "15550000002")
    async with trio.open_nursery() as nursery:
        await chatd.start(nursery)
        store = await open_store(alice.url)
        cfg = dataclasses.replace(_config(alice, chatd.port), max_frame_len=48 * 1024)  # frames of 48 KiB
        async with running(bob, chatd) as b, open_wa_messenger(store, cfg, alice.jid) as m:
            a = Running(m, store)
            await m.wait_logged_in()
            await a.m.send_text(bob.jid, "hello")
            await _handled(b, "hello")
            big = "x" * (a.m.client.max_stanza_len + 10)
            outcome: dict[str, object] = {}

            async def one(text: str) -> None:
                try:
                    outcome[text[:5]] = await a.m.send_text(bob.jid, text)
                except InvalidArgumentError as exc:
                    outcome[text[:5]] = exc

            async with trio.open_nursery() as senders:  # in one group commit, likely
                for text in ("small1", big, "small2"):
                    senders.start_soon(one, text)
            assert isinstance(outcome["xxxxx"], InvalidArgumentError) and "frame" in str(outcome["xxxxx"])
            assert isinstance(outcome["small"], str)
            await drained(a)
            got = await _all_received(b, 3)
            assert sorted(g.text for g in got[1:]) == ["small1", "small2"]
            assert a.m.client.state is ClientState.CONNECTED
        await store.aclose()
        nursery.cancel_scope.cancel()


async def test_a_pending_nack_resend_does_not_spin_while_logged_out(tmp_path: Path) -> None:
    # a resend round is due (after a nack) when the connection goes: the flusher waits for the
    # next login instead of looping (it burnt a whole core through the reconnect backoff)
    import time

    chatd = Chatd(tmp_path / "chatd.db")
    alice = await _new_device(tmp_path, "15550000001")
    async with trio.open_nursery() as nursery:
        await chatd.start(nursery)
        async with running(alice, chatd) as a:
            await chatd.stop()
            with trio.fail_after(STEP):
                while a.m._logged_in.is_set():
                    await trio.sleep(0.01)
            a.m._resend_at = trio.current_time() + 0.01
            a.m._flush_wake.set()
            cpu = time.process_time()
            await trio.sleep(1.0)
            assert time.process_time() - cpu < 0.4  # a spinning flusher takes about all of the second
        nursery.cancel_scope.cancel()


async def test_a_stanza_too_large_for_a_frame_fails_its_sender_not_the_connection(tmp_path: Path) -> None:
    chatd = Chatd(tmp_path / "chatd.db")
    alice = await _new_device(tmp_path, "15550000001")
    bob = await _new_device(tmp_path, "15550000002")
    async with trio.open_nursery() as nursery:
        await chatd.start(nursery)
        async with running(bob, chatd) as b, running(alice, chatd) as a:
            big = Node("iq", {"id": "big", "type": "set", "to": "s.whatsapp.net"}, b"\x00" * a.m.client.max_stanza_len)
            with pytest.raises(InvalidArgumentError, match="larger than one frame|byte limit"):
                await a.m.client.send_node(big)
            await a.m.send_text(bob.jid, "still connected")
            await _handled(b, "still connected")
            assert a.m.client.connections == 1
        nursery.cancel_scope.cancel()


async def test_acks_that_come_close_together_leave_the_outbox_in_one_commit(tmp_path: Path) -> None:
    # ten sends one after another: their server acks come a few ms apart, and at a low rate each
    # would cost an fsync of its own; they leave the outbox together (ACK_COALESCE), none resent
    chatd = Chatd(tmp_path / "chatd.db")
    alice = await _new_device(tmp_path, "15550000001")
    bob = await _new_device(tmp_path, "15550000002")
    async with trio.open_nursery() as nursery:
        await chatd.start(nursery)
        async with running(alice, chatd) as a, running(bob, chatd) as b:
            await a.m.send_text(bob.jid, "first")  # sessions, device lists: not counted
            await _handled(b, "first")
            await drained(a)
            lane = a.store._lanes[0]  # type: ignore[attr-defined]
            assert lane.conn is not None
            statements: list[str] = []
            lane.conn.raw.set_trace_callback(statements.append)
            sent_before = a.m.sent
            for i in range(10):
                await a.m.send_text(bob.jid, f"m{i}")
            await drained(a)
            lane.conn.raw.set_trace_callback(None)
            for i in range(10):
                await _handled(b, f"m{i}")
            discarding = 0  # commits that took acknowledged messages out of the outbox
            deleting = False
            for q in statements:
                deleting = deleting or q.startswith("DELETE FROM wa_outbox")
                if q.strip().upper() == "COMMIT":
                    discarding += deleting
                    deleting = False
            assert 1 <= discarding <= 3, statements
            assert a.m.sent - sent_before == 10  # nothing sent twice while its ack waited
        nursery.cancel_scope.cancel()
