"""Messenger end to end over real loopback TCP through the relaying reference chatd, with SQLite
key stores: connections dropped mid-traffic, a sender restarted with messages still in its
outbox, a receiving application that fails once. Every message must reach the other application
exactly once, and every outbox must end empty."""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from wacrypto.session import account
from wacrypto.address import Address
from wacrypto.chat.client import ChatClient, ChatClientConfig, open_chat_client
from wacrypto.chat.events import ClientState
from wacrypto.chatd.server import ChatdServer, ServerKeys
from wacrypto.session.cipher import SessionCipher
from wacrypto.errors import PeerError
from wacrypto.chat.messenger import Directory, Dropped, Messenger, open_messenger
from wacrypto.primitives.keys import KeyPair
from wacrypto.store import open_store
from wacrypto.store.protocols import KeyStore
from wacrypto.transport.chat_connection import KeepaliveSettings, MessageReceived
from wacrypto.chat.envelope import Envelope

KEYS, _, _ = ServerKeys.generate()
ALICE, BOB = Address("alice", 1), Address("bob", 1)


@dataclass
class Party:
    address: Address
    url: str
    chat_key: KeyPair = field(default_factory=KeyPair.generate)
    got: list[tuple[Address, bytes]] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)
    arrived: trio.Event = field(default_factory=trio.Event)


def _config(p: Party, ports: list[int]) -> ChatClientConfig:
    return ChatClientConfig(
        host="127.0.0.1", trusted_root=KEYS.root_public, static_key=p.chat_key, ports=tuple(ports),
        keepalive=KeepaliveSettings(interval=0), backoff_base=0.05, backoff_cap=0.2, connect_timeout=5.0,
    )


@asynccontextmanager
async def running(p: Party, ports: list[int], directory: Directory,
                  on_message: Callable[[Address, bytes], Awaitable[None]] | None = None
                  ) -> AsyncIterator[tuple[Messenger, ChatClient, KeyStore]]:
    """Open the party's store and connection and run its messenger (all closed on exit)."""
    store = await open_store(p.url)

    async def got(sender: Address, plaintext: bytes) -> None:
        p.got.append((sender, plaintext))
        p.arrived.set()

    async def dropped(d: Dropped) -> None:
        p.dropped.append(d)

    try:
        async with open_messenger(SessionCipher(store), _config(p, ports), directory, on_message or got,
                                  on_dropped=dropped) as m:
            yield m, m.client, store
    finally:
        await store.aclose()


async def _pair(tmp_path: Path) -> tuple[Party, Party, Directory]:
    a = Party(ALICE, f"sqlite:///{tmp_path / 'alice.db'}")
    b = Party(BOB, f"sqlite:///{tmp_path / 'bob.db'}")
    for p in (a, b):
        s = await open_store(p.url)
        await account.create_account(s, prekeys=5)
        await s.aclose()
    sa, sb = await open_store(a.url), await open_store(b.url)
    await SessionCipher(sa).process_bundle(BOB, await account.get_bundle(sb))  # Alice starts the session
    await sa.aclose()
    await sb.aclose()
    d = Directory()
    d.add(ALICE, a.chat_key.public.u)
    d.add(BOB, b.chat_key.public.u)
    return a, b, d


async def _wait_for(p: Party, n: int) -> None:
    while len(p.got) < n:
        p.arrived = trio.Event()
        if len(p.got) < n:
            await p.arrived.wait()


async def _drained(m: Messenger) -> None:
    while await m.pending():
        await trio.sleep(0.02)


async def test_dropped_connections_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    a, b, d = await _pair(tmp_path)
    server = ChatdServer(KEYS, keepalive=KeepaliveSettings(interval=0), relay=True)
    async with trio.open_nursery() as nursery:
        ports = await nursery.start(server.serve, "127.0.0.1", [0, 0])
        async with running(a, ports, d) as (ma, ca, _), running(b, ports, d) as (mb, cb, _):
            await ca.wait_connected()
            await cb.wait_connected()
            with trio.fail_after(60):
                await ma.send(BOB, b"a0")
                await _wait_for(b, 1)  # Bob has a session once he has read Alice's first message
                for i in range(1, 40):
                    await ma.send(BOB, b"a%d" % i)
                    if i % 3 == 0:
                        await mb.send(ALICE, b"b%d" % i)
                    if i % 10 == 9:
                        server.drop_connections()  # mid-traffic: unacknowledged frames are lost
                        await trio.sleep(0.01)
                await _wait_for(b, 40)
                await _wait_for(a, 13)
                await _drained(ma)
                await _drained(mb)
                while server.pending(a.chat_key.public) or server.pending(b.chat_key.public):
                    await trio.sleep(0.02)  # every delivery acknowledged: the mailboxes empty
            assert ca.connections > 1 and cb.connections > 1  # they did reconnect
        nursery.cancel_scope.cancel()
    assert collections.Counter(b.got) == collections.Counter((ALICE, b"a%d" % i) for i in range(40))
    assert collections.Counter(a.got) == collections.Counter((BOB, b"b%d" % i) for i in range(3, 40, 3))
    assert not a.dropped and not b.dropped


async def test_outbox_survives_a_restart_while_the_server_is_down(tmp_path: Path) -> None:
    a, b, d = await _pair(tmp_path)
    server = ChatdServer(KEYS, keepalive=KeepaliveSettings(interval=0), relay=True)
    async with trio.open_nursery() as nursery:
        ports = await nursery.start(server.serve, "127.0.0.1", [0, 0])
        for port in ports:
            await server.refuse_port(port)  # chatd is down
        async with running(a, ports, d) as (ma, ca, _):
            for i in range(5):
                await ma.send(BOB, b"offline %d" % i)
            assert ca.state is not ClientState.CONNECTED
            assert await ma.pending() == 5
        # Alice's process is gone; her messages are only in her database
        for port in ports:
            await server.reopen_port(port)
        async with running(b, ports, d), running(a, ports, d) as (ma, _, _):
            with trio.fail_after(30):
                await _wait_for(b, 5)
                await _drained(ma)
        nursery.cancel_scope.cancel()
    assert sorted(b.got) == [(ALICE, b"offline %d" % i) for i in range(5)]


async def test_a_failing_handler_sees_the_message_again_after_restart(tmp_path: Path) -> None:
    a, b, d = await _pair(tmp_path)
    server = ChatdServer(KEYS, keepalive=KeepaliveSettings(interval=0), relay=True)
    handled: list[bytes] = []
    failures: list[bytes] = []

    async def flaky(sender: Address, plaintext: bytes) -> None:
        if plaintext == b"two" and not failures:  # the application fails on "two", once
            failures.append(plaintext)
            raise RuntimeError("application failed")
        handled.append(plaintext)
        b.arrived.set()

    async with trio.open_nursery() as nursery:
        ports = await nursery.start(server.serve, "127.0.0.1", [0, 0])
        async with running(a, ports, d) as (ma, _, _):
            for word in (b"one", b"two", b"three"):
                await ma.send(BOB, word)
            with pytest.raises(BaseException) as info:  # the failing handler ends Bob's messenger
                async with running(b, ports, d, flaky):
                    with trio.fail_after(30):
                        await trio.sleep_forever()
            assert info.group_contains(RuntimeError, match="application failed") if isinstance(
                info.value, BaseExceptionGroup) else isinstance(info.value, RuntimeError)
            assert handled == [b"one"]
            async with running(b, ports, d, flaky):  # Bob restarts: "two" comes again, from his store
                with trio.fail_after(30):
                    while len(handled) < 3:
                        b.arrived = trio.Event()
                        await b.arrived.wait()
                    await _drained(ma)
        nursery.cancel_scope.cancel()
    assert handled == [b"one", b"two", b"three"] and failures == [b"two"]


async def test_unreadable_messages_are_reported_acknowledged_and_harmless(tmp_path: Path) -> None:
    a, b, d = await _pair(tmp_path)
    server = ChatdServer(KEYS, keepalive=KeepaliveSettings(interval=0), relay=True)
    bob_key = b.chat_key.public.u
    async with trio.open_nursery() as nursery:
        ports = await nursery.start(server.serve, "127.0.0.1", [0, 0])
        async with running(b, ports, d):
            # a stranger (not in Bob's directory) and Alice's connection sending a forged message
            store = await open_store(a.url)
            try:
                cipher = SessionCipher(store)
                good = await cipher.encrypt(BOB, b"the real one")
                forged = bytearray((await cipher.encrypt(BOB, b"tampered")).body)
                forged[-12] ^= 1
                relayed = await cipher.encrypt(BOB, b"a well-formed message, sent on by a stranger")
            finally:
                await store.aclose()
            stranger = Party(Address("mallory", 1), "memory:")
            async with open_chat_client(_config(stranger, ports)) as mc, open_chat_client(_config(a, ports)) as ac:
                await mc.wait_connected()
                await ac.wait_connected()
                await mc.send_message(Envelope(bob_key, relayed.type, relayed.body).to_bytes(), id="from-stranger")
                await mc.send_message(Envelope(bob_key, 2, b"\x33" + bytes(60)).to_bytes(), id="stranger-garbage")
                await ac.send_message(Envelope(bob_key, 3, bytes(forged)).to_bytes(), id="forged")
                await ac.send_message(Envelope(bob_key, good.type, good.body).to_bytes(), id="good")
                with trio.fail_after(30):
                    await _wait_for(b, 1)
                    while len(b.dropped) < 3 or server.pending(b.chat_key.public) > 1:
                        await trio.sleep(0.02)
        nursery.cancel_scope.cancel()
    assert b.got == [(ALICE, b"the real one")]  # the forgery changed nothing in Bob's session
    names = {ChatdServer.delivery_id(stranger.chat_key.public.u, "from-stranger"): "from-stranger",
             ChatdServer.delivery_id(stranger.chat_key.public.u, "stranger-garbage"): "stranger-garbage",
             ChatdServer.delivery_id(a.chat_key.public.u, "forged"): "forged"}
    reasons = {names[x.message_id]: x for x in b.dropped}
    assert sorted(reasons) == ["forged", "from-stranger", "stranger-garbage"]
    # the forgery is gone for good; the stranger's message stays with the server (Bob may add the
    # stranger to his directory and read it after a reconnect)
    assert reasons["forged"].sender == ALICE and isinstance(reasons["forged"].error, PeerError)
    assert reasons["forged"].final
    assert reasons["from-stranger"].sender is None and isinstance(reasons["from-stranger"].error, PeerError)
    assert not reasons["from-stranger"].final and server.pending(b.chat_key.public) == 1
    # bytes that are not a Signal message at all can never become readable, whoever sent them:
    # acknowledged and gone, so a stranger's garbage cannot pile up in Bob's mailbox
    garbage = reasons["stranger-garbage"]
    assert garbage.sender is None and isinstance(garbage.error, PeerError) and garbage.final


async def test_restarted_sender_keeps_its_order_while_new_messages_arrive(tmp_path: Path) -> None:
    """Messages from before a restart go out before the ones sent while the outbox is re-read."""
    a, b, d = await _pair(tmp_path)
    server = ChatdServer(KEYS, keepalive=KeepaliveSettings(interval=0), relay=True)
    async with trio.open_nursery() as nursery:
        ports = await nursery.start(server.serve, "127.0.0.1", [0])
        await server.refuse_port(ports[0])
        async with running(a, ports, d) as (ma, _, _):
            for i in range(20):
                await ma.send(BOB, b"old%02d" % i)
        await server.reopen_port(ports[0])
        async with running(b, ports, d), running(a, ports, d) as (ma, ca, _):
            i = 0
            while ca.state is not ClientState.CONNECTED or i < 30:  # keep sending while she reconnects
                await ma.send(BOB, b"new%02d" % i)
                i += 1
            with trio.fail_after(30):
                await _wait_for(b, 20 + i)
                await _drained(ma)
        nursery.cancel_scope.cancel()
    order = [pt.decode() for _, pt in b.got]
    assert order == [f"old{k:02d}" for k in range(20)] + [f"new{k:02d}" for k in range(i)]


async def _raw_client(key: KeyPair, ports: list[int]) -> AsyncIterator[ChatClient]:
    async with open_chat_client(_config(Party(Address("raw", 1), "memory:", key), ports)) as c:
        await c.wait_connected()
        yield c


async def test_relay_delivers_a_mailbox_larger_than_a_send_queue_and_keeps_senders_apart(tmp_path: Path) -> None:
    """700 messages wait for an offline recipient (the per-connection send queue holds 256); two
    senders use the same message ids. All arrive once, on one stable connection."""
    server = ChatdServer(KEYS, keepalive=KeepaliveSettings(interval=0), relay=True)
    ka, kc, kb = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    got: list[bytes] = []
    async with trio.open_nursery() as nursery:
        ports = await nursery.start(server.serve, "127.0.0.1", [0])
        raw = asynccontextmanager(_raw_client)
        async with raw(ka, ports) as alice, raw(kc, ports) as carol:
            for i in range(350):
                for who, c in ((b"a", alice), (b"c", carol)):
                    await c.send_message(Envelope(kb.public.u, 2, who + b"%d" % i).to_bytes(), id=f"m{i}")
            with trio.fail_after(30):
                while server.pending(kb.public) < 700:
                    await trio.sleep(0.02)
        async with raw(kb, ports) as bob:
            with trio.fail_after(30):
                async for ev in bob.events():
                    if isinstance(ev, MessageReceived):
                        got.append(Envelope.from_bytes(ev.payload).body)
                        await bob.ack(ev.id)
                        if len(got) == 700:
                            break
            assert bob.connections == 1
            with trio.fail_after(30):
                while server.pending(kb.public):
                    await trio.sleep(0.02)
        nursery.cancel_scope.cancel()
    assert sorted(got) == sorted(w + b"%d" % i for i in range(350) for w in (b"a", b"c"))


async def test_messages_to_unknown_recipients_do_not_hold_up_the_rest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Outbox rows whose recipient has no chat key (say, the directory lost it) are passed over;
    the messages behind them, more than one outbox batch further on, still go out."""
    import wacrypto.chat.messenger as messenger_mod

    monkeypatch.setattr(messenger_mod, "OUTBOX_BATCH", 3)
    a, b, d = await _pair(tmp_path)
    carol = Address("carol", 1)
    store = await open_store(a.url)
    try:
        other = await open_store("memory:")
        await account.create_account(other, prekeys=1)
        await SessionCipher(store).process_bundle(carol, await account.get_bundle(other))
        for i in range(7):  # carol is in no directory: these can never be sent from here
            await SessionCipher(store).encrypt_durable(carol, b"c%d" % i, f"carol-{i}")
    finally:
        await store.aclose()
    server = ChatdServer(KEYS, keepalive=KeepaliveSettings(interval=0), relay=True)
    async with trio.open_nursery() as nursery:
        ports = await nursery.start(server.serve, "127.0.0.1", [0])
        async with running(b, ports, d), running(a, ports, d) as (ma, _, _):
            for i in range(5):
                await ma.send(BOB, b"b%d" % i)
            with trio.fail_after(20):
                await _wait_for(b, 5)
            assert await ma.pending() == 7  # carol's stay in the outbox
        nursery.cancel_scope.cancel()
    assert [pt for _, pt in b.got] == [b"b%d" % i for i in range(5)]
