"""chatd's relay and keys.

A sender whose acknowledgement from chatd was lost sends the same message again. If the recipient
already took and acknowledged it, chatd must acknowledge the resend without delivering it twice, and
must not keep it: the recipient will never acknowledge it again (found by `make demo` under load:
the copy stayed in the mailbox and the demo waited for an empty one)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trio

from wacrypto.chat.client import ChatClientConfig, open_chat_client
from wacrypto.chat.envelope import Envelope
from wacrypto.chatd.server import ChatdServer, Mailbox, ServerKeys
from wacrypto.errors import InvalidArgumentError, PeerError
from wacrypto.primitives.keys import KeyPair
from wacrypto.transport.chat_connection import AckReceived, KeepaliveSettings, MessageReceived
from wacrypto.transport.messages import Message

KEYS, _, _ = ServerKeys.generate()


async def next_of(events: "trio.MemoryReceiveChannel[object]", kind: type) -> object:
    """The next event of ``kind`` (state changes and the like are skipped)."""
    while not isinstance(ev := await events.receive(), kind):
        pass
    return ev


def _config(key: KeyPair, ports: list[int]) -> ChatClientConfig:
    return ChatClientConfig(host="127.0.0.1", trusted_root=KEYS.root_public, static_key=key, ports=tuple(ports),
                            keepalive=KeepaliveSettings(interval=0), backoff_base=0.05, backoff_cap=0.2)


async def test_a_resend_of_a_delivered_message_is_acknowledged_not_delivered_again() -> None:
    alice, bob = KeyPair.generate(), KeyPair.generate()
    server = ChatdServer(KEYS, keepalive=KeepaliveSettings(interval=0), relay=True)
    env = Envelope(bob.public.u, 2, b"\x33" + bytes(40)).to_bytes()
    async with trio.open_nursery() as n:
        ports = await n.start(server.serve, "127.0.0.1", [0])
        async with open_chat_client(_config(alice, ports)) as a, open_chat_client(_config(bob, ports)) as b:
            await a.wait_connected()
            await b.wait_connected()
            bob_events, alice_events = b.events(), a.events()
            with trio.fail_after(20):
                await a.send_message(env, id="m1")
                got = await next_of(bob_events, MessageReceived)
                assert isinstance(got, MessageReceived)
                await b.ack(got.id)
                while server.pending(bob.public):
                    await trio.sleep(0.01)
                await next_of(alice_events, AckReceived)
                await a.send_message(env, id="m1")  # the resend: its first ack was "lost"
                ack = await next_of(alice_events, AckReceived)
                assert isinstance(ack, AckReceived) and ack.id == "m1"  # acknowledged...
                with trio.move_on_after(0.5):
                    extra = await next_of(bob_events, MessageReceived)
                    raise AssertionError(f"delivered twice: {extra}")
                assert server.pending(bob.public) == 0  # ...and not kept
                await a.send_message(env, id="m2")  # a new id is still delivered
                assert isinstance(await next_of(bob_events, MessageReceived), MessageReceived)
        n.cancel_scope.cancel()


def test_mailbox_remembers_acknowledged_ids_until_their_time() -> None:
    box = Mailbox()
    box.add("d1", Message("d1", b"x"), b"s" * 32, stranger=False, expires=100.0)
    assert box.delivered("d1", until=50.0) and not box.delivered("d1", until=50.0)
    assert len(box) == 0 and box.was_delivered("d1", now=10.0) and box.remembered == 1
    box.expire(now=60.0)
    assert not box.was_delivered("d1", now=60.0) and box.remembered == 0
    # a message that comes back after its id was forgotten is a new arrival
    box.add("d1", Message("d1", b"x"), b"s" * 32, stranger=False, expires=200.0)
    assert [a for a, _ in box.arrivals()] == [("d1", 2)]


def test_an_expired_chain_in_our_own_key_folder_is_a_local_error(tmp_path: Path) -> None:
    keys, root, inter = ServerKeys.generate(now=time.time() - 3 * 365 * 86400)  # leaf expired 2 years ago
    keys.save(Path(tmp_path), root, inter)
    with pytest.raises(InvalidArgumentError, match="does not verify") as e:
        ServerKeys.load(Path(tmp_path))
    assert not isinstance(e.value, PeerError)  # our own files: not a peer's fault
