"""Relay mailboxes under abuse (issue: mailbox poisoning). Any client with any Noise key may write to
any mailbox: a stranger flooding a victim, with one key or many, garbage or well-formed messages,
must not keep the victim's correspondents out, and nothing the server acknowledged may be lost.
Real Messengers over loopback TCP through the reference chatd; strangers are raw chat clients."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import pytest
import trio

import wacrypto.chat.messenger as messenger_mod
from wacrypto.address import Address
from wacrypto.chat.client import ChatClient, ChatClientConfig, open_chat_client
from wacrypto.chat.envelope import Envelope
from wacrypto.chat.messenger import Directory, Dropped, Messenger, open_messenger
from wacrypto.chatd.server import ChatdServer, ServerKeys
from wacrypto.errors import PeerError
from wacrypto.primitives.keys import KeyPair
from wacrypto.session import account
from wacrypto.session.cipher import CiphertextMessage, SessionCipher
from wacrypto.store import open_store
from wacrypto.store.protocols import KeyStore
from wacrypto.transport.chat_connection import KeepaliveSettings

KEYS, _, _ = ServerKeys.generate()
ALICE, BOB, CAROL, MALLORY = (Address(n, 1) for n in ("alice", "bob", "carol", "mallory"))
GARBAGE = b"\x33" + bytes(60)  # an envelope body that is no Signal message at all


@dataclass
class Party:
    address: Address
    store: KeyStore
    chat_key: KeyPair = field(default_factory=KeyPair.generate)
    got: list[tuple[Address, bytes]] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)


def _config(key: KeyPair, ports: list[int]) -> ChatClientConfig:
    return ChatClientConfig(
        host="127.0.0.1", trusted_root=KEYS.root_public, static_key=key, ports=tuple(ports),
        keepalive=KeepaliveSettings(interval=0), backoff_base=0.05, backoff_cap=0.2, connect_timeout=5.0,
    )


@asynccontextmanager
async def messenger(p: Party, ports: list[int], directory: Directory) -> AsyncIterator[Messenger]:
    async def got(sender: Address, plaintext: bytes) -> None:
        p.got.append((sender, plaintext))

    async def dropped(d: Dropped) -> None:
        p.dropped.append(d)

    async with open_messenger(SessionCipher(p.store), _config(p.chat_key, ports), directory, got,
                              on_dropped=dropped) as m:
        await m.client.wait_connected()
        yield m


@asynccontextmanager
async def raw_clients(keys: list[KeyPair], ports: list[int]) -> AsyncIterator[list[ChatClient]]:
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(open_chat_client(_config(k, ports))) for k in keys]
        for c in clients:
            await c.wait_connected()
        yield clients


async def _parties() -> tuple[Party, Party, Party, Directory, list[CiphertextMessage]]:
    """Alice, Bob and Carol (each knows the others' chat keys; Alice and Carol hold sessions with Bob
    and Bob one with Alice), and well-formed messages to Bob from Mallory, whom nobody knows."""
    a, b, c = [Party(who, await open_store("memory:")) for who in (ALICE, BOB, CAROL)]
    mallory = await open_store("memory:")
    for s in (a.store, b.store, c.store, mallory):
        await account.create_account(s, prekeys=5)
    for sender in (a, c):
        await SessionCipher(sender.store).process_bundle(BOB, await account.get_bundle(b.store))
    await SessionCipher(b.store).process_bundle(ALICE, await account.get_bundle(a.store))
    m = SessionCipher(mallory)
    await m.process_bundle(BOB, await account.get_bundle(b.store))
    well_formed = [await m.encrypt(BOB, b"mallory %d" % i) for i in range(30)]
    d = Directory()
    for p in (a, b, c):
        d.add(p.address, p.chat_key.public.u)
    return a, b, c, d, well_formed


async def _until(cond: Callable[[], bool | Awaitable[bool]]) -> None:
    """Poll ``cond`` (a plain or an async function) until it holds; 30 s at most."""
    with trio.fail_after(30):
        while True:
            ok = cond()
            if inspect.isawaitable(ok):
                ok = await ok
            if ok:
                return
            await trio.sleep(0.02)


def _texts(p: Party, sender: Address) -> list[bytes]:
    return [pt for who, pt in p.got if who == sender]


async def test_a_stranger_flooding_a_victim_does_not_keep_out_its_correspondents(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mallory floods Bob's mailbox from four keys while Bob is offline, with garbage and with
    well-formed messages, until chatd refuses her. Alice (whom Bob has written to) and Carol (who
    writes to Bob for the first time) still get every message through, none lost, none twice:
    Alice at once up to her own share and the rest on her Messenger's resend; Carol once Bob's
    Messenger has acknowledged (dropped for good) Mallory's garbage."""
    monkeypatch.setattr(messenger_mod, "RESEND_AFTER", 0.2)
    a, b, c, d, well_formed = await _parties()
    server = ChatdServer(KEYS, keepalive=KeepaliveSettings(interval=0), relay=True,
                         mailbox_limit=100, mailbox_sender_limit=20, mailbox_stranger_limit=30)
    bob_key = b.chat_key.public
    async with trio.open_nursery() as nursery:
        ports = await nursery.start(server.serve, "127.0.0.1", [0])
        async with messenger(a, ports, d) as ma:
            async with messenger(b, ports, d) as mb:  # Bob has written to Alice: she is his correspondent
                await mb.send(ALICE, b"hello alice")
                await _until(lambda: len(a.got) == 1)
            # Bob is offline. Mallory: four keys, 25 envelopes each, one in five well-formed
            mallory_keys = [KeyPair.generate() for _ in range(4)]
            async with raw_clients(mallory_keys, ports) as floods:
                for k, flood in enumerate(floods):
                    for i in range(25):
                        msg = well_formed[(k * 25 + i) // 5 % len(well_formed)]
                        body = (msg.type, msg.body) if i % 5 == 0 else (2, GARBAGE)
                        await flood.send_message(Envelope(bob_key.u, *body).to_bytes(), id=f"flood-{i}")
                await _until(lambda: server.relay_refused == 70)
            assert server.pending(bob_key) == 30  # the strangers' share, and not one message more
            waiting = [Envelope.from_bytes(msg.payload) for _, msg in server.mailboxes[bob_key.u].messages()]
            mallory_readable = sum(1 for e in waiting if e.body != GARBAGE)

            async with messenger(c, ports, d) as mc:
                for i in range(25):
                    await ma.send(BOB, b"alice %02d" % i)
                for i in range(3):
                    await mc.send(BOB, b"carol %d" % i)
                # Alice's first 20 are taken (her share); the rest of hers and all of Carol's (the
                # strangers' share is full) wait in their outboxes
                await _until(lambda: server.pending(bob_key) == 50)
                assert await ma.pending() >= 5 and await mc.pending() == 3

                async with messenger(b, ports, d) as mb:
                    async def done() -> bool:
                        return (len(_texts(b, ALICE)) >= 25 and len(_texts(b, CAROL)) >= 3
                                and await ma.pending() == 0 and await mc.pending() == 0
                                and server.pending(bob_key) == mallory_readable)
                    await _until(done)
                    await trio.sleep(0.5)  # a few more resend rounds: nothing may come twice
        nursery.cancel_scope.cancel()
    assert sorted(_texts(b, ALICE)) == [b"alice %02d" % i for i in range(25)]
    assert _texts(b, CAROL) == [b"carol %d" % i for i in range(3)]
    assert not [pt for who, pt in b.got if who not in (ALICE, CAROL)]
    # Mallory's garbage was dropped for good (acknowledged); her well-formed messages are kept, not
    # final: Bob could add her to his directory and read them after a reconnect
    finals = [x for x in b.dropped if x.final]
    assert len(finals) == 30 - mallory_readable and all(isinstance(x.error, PeerError) for x in finals)
    assert len([x for x in b.dropped if not x.final]) == mallory_readable > 0
    assert server.relay_expired == 0


async def test_what_a_stranger_leaves_unread_expires_and_frees_the_room(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mallory fills the strangers' share with well-formed messages that Bob's Messenger cannot read
    (not final: they stay). Carol's first messages are refused meanwhile and stay in her outbox; once
    Mallory's messages have waited mailbox_ttl they are dropped and Carol's get through."""
    monkeypatch.setattr(messenger_mod, "RESEND_AFTER", 0.2)
    a, b, c, d, well_formed = await _parties()
    now = [1000.0]
    server = ChatdServer(KEYS, keepalive=KeepaliveSettings(interval=0), relay=True, mailbox_sender_limit=10,
                         mailbox_stranger_limit=10, mailbox_ttl=3600.0, clock=lambda: now[0])
    bob_key = b.chat_key.public
    async with trio.open_nursery() as nursery:
        ports = await nursery.start(server.serve, "127.0.0.1", [0])
        async with messenger(b, ports, d), raw_clients([KeyPair.generate()], ports) as (mallory,):
            for i, msg in enumerate(well_formed[:12]):
                await mallory.send_message(Envelope(bob_key.u, msg.type, msg.body).to_bytes(), id=f"m{i}")
            await _until(lambda: len(b.dropped) == 10 and server.relay_refused == 2)
            assert not any(x.final for x in b.dropped) and server.pending(bob_key) == 10
            async with messenger(c, ports, d) as mc:
                await mc.send(BOB, b"carol 0")
                await mc.send(BOB, b"carol 1")
                await _until(lambda: server.relay_refused >= 4)
                assert await mc.pending() == 2 and not b.got
                now[0] += 3600.0  # Mallory's messages have waited their time
                async def done() -> bool:
                    return len(b.got) == 2 and await mc.pending() == 0
                await _until(done)
        nursery.cancel_scope.cancel()
    assert b.got == [(CAROL, b"carol 0"), (CAROL, b"carol 1")]
    assert server.relay_expired == 10 and server.pending(bob_key) == 0


async def test_a_chatd_without_relay_leaves_envelopes_with_their_sender() -> None:
    """A server that cannot deliver must not acknowledge: the sender's outbox keeps the message."""
    a, b, _, d, _ = await _parties()
    server = ChatdServer(KEYS, keepalive=KeepaliveSettings(interval=0), relay=False)
    async with trio.open_nursery() as nursery:
        ports = await nursery.start(server.serve, "127.0.0.1", [0])
        async with messenger(a, ports, d) as ma:
            await ma.send(BOB, b"to nobody")
            await _until(lambda: server.undeliverable >= 1)
            assert await ma.pending() == 1 and ma.acked == 0
            # a raw payload (not an envelope) is still taken and acknowledged, as a test sink does
            await ma.client.send_message(b"raw", id="raw-1")
            await _until(lambda: any(m.payload == b"raw" for s in server.all_sessions for m in s.received))
            assert await ma.pending() == 1
        nursery.cancel_scope.cancel()
    assert not any(m.payload != b"raw" for s in server.all_sessions for m in s.received)
