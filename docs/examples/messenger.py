"""Two accounts talk through the reference chatd, each through its own Messenger.

Everything runs in this one process: a relaying chatd on a free loopback port and, for Alice and
Bob, a key store, a chat connection and a :class:`~wacrypto.chat.messenger.Messenger`. Alice starts
the Signal session from Bob's prekey bundle; then they send each other messages through chatd.

Run from the repository root: ``.venv/bin/python docs/examples/messenger.py``
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

import trio

from wacrypto import Address, KeyStore, MemoryKeyStore, SessionCipher, create_account, get_bundle
from wacrypto.chat import ChatClientConfig, ClientEvent, ClientState, StateChanged
from wacrypto.chat.messenger import Directory, Messenger, open_messenger
from wacrypto.chatd import ChatdServer, ServerKeys
from wacrypto.primitives.keys import KeyPair

ALICE, BOB = Address("alice"), Address("bob")


async def main() -> None:
    # chatd: its own root key and certificate chain; relay=True carries envelopes between clients
    keys, _root, _intermediate = ServerKeys.generate()
    server = ChatdServer(keys, relay=True)

    # two accounts: a key store each (in memory here; `await open_store("sqlite:///alice.db")` from
    # wacrypto.store for a durable one) and a chat key, the long-term static key of the connection
    stores: dict[Address, KeyStore] = {ALICE: MemoryKeyStore(), BOB: MemoryKeyStore()}
    chat_keys = {ALICE: KeyPair.generate(), BOB: KeyPair.generate()}
    directory = Directory()  # Signal address <-> chat key: where to send, and who sent what arrives
    for who in (ALICE, BOB):
        await create_account(stores[who])
        directory.add(who, chat_keys[who].public.u)
    await SessionCipher(stores[ALICE]).process_bundle(BOB, await get_bundle(stores[BOB]))
    print("alice started a session from bob's prekey bundle (X3DH)")

    async with trio.open_nursery() as nursery:
        (port,) = await nursery.start(server.serve, "127.0.0.1", [0])  # 0: any free port
        print(f"chatd is listening on 127.0.0.1:{port}")
        inbox = {who: trio.open_memory_channel[bytes](16) for who in (ALICE, BOB)}

        def messenger(me: Address) -> AbstractAsyncContextManager[Messenger]:
            async def on_message(sender: Address, plaintext: bytes) -> None:
                print(f"{me.name} <- {sender.name}: {plaintext.decode()!r}")
                await inbox[me][0].send(plaintext)

            async def on_event(ev: ClientEvent) -> None:
                if isinstance(ev, StateChanged) and ev.state is ClientState.CONNECTED:
                    print(f"[{me.name} connected to chatd on port {ev.port}]")

            config = ChatClientConfig(host="127.0.0.1", ports=(port,), trusted_root=keys.root_public,
                                      static_key=chat_keys[me])
            return open_messenger(SessionCipher(stores[me]), config, directory, on_message, on_event=on_event)

        async with messenger(ALICE) as alice, messenger(BOB) as bob:
            for text in ("Hello Bob", "Order #1042 is ready"):
                await alice.send(BOB, text.encode())  # durable: in alice's outbox until chatd acks it
                print(f"alice -> bob: {text!r}")
            for _ in range(2):
                await inbox[BOB][1].receive()
            await bob.send(ALICE, b"Thanks, picking it up at 5")
            print("bob -> alice: 'Thanks, picking it up at 5'")
            await inbox[ALICE][1].receive()
            # outbox rows are deleted on chatd's ack; delivered counts messages handled and acked
            while await alice.pending() or await bob.pending() or (alice.delivered, bob.delivered) != (1, 2):
                await trio.sleep(0.01)
            print(f"done: alice's {alice.acked} and bob's {bob.acked} message(s) acknowledged by chatd, "
                  "both outboxes empty")
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
