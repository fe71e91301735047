"""`wacrypto demo`: two parties in one process, a readable end-to-end transcript.

Part 1: Alice fetches Bob's prekey bundle, runs X3DH, and they hold a short conversation in which
messages arrive out of order, one is replayed and one is tampered with. Part 2: the same sessions
continue through the reference chatd (relaying between them over loopback TCP, first port refused so
the client falls back to the second), with a dropped connection mid-conversation, the server down while
Alice sends, and Alice restarted with messages in her outbox: nothing is lost or duplicated. Each party
keeps its keys in its own store: SQLite files under ``--dir`` by default (the embedded default), or
memory with ``--memory``.

The demo never deletes what it did not make: it uses ``--dir`` only if the folder is new, empty, or
marked as a previous demo's (it writes :data:`MARKER` there), and then removes only its own files.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import trio

from wacrypto.session import account
from wacrypto.address import Address
from wacrypto.session.cipher import CiphertextMessage, SessionCipher
from wacrypto.chat.client import ChatClientConfig
from wacrypto.chat.events import ClientEvent, ClientState, PortFailed, StateChanged
from wacrypto.chatd.server import ChatdServer, ServerKeys
from wacrypto.errors import WacryptoError
from wacrypto.chat.messenger import Directory, Messenger, open_messenger
from wacrypto.primitives.keys import KeyPair
from wacrypto.transport.chat_connection import KeepaliveSettings
from wacrypto.store.memory import MemoryKeyStore
from wacrypto.store.protocols import KeyStore
from wacrypto.tools.cli.common import CliFailure, CliUsageError

MARKER: Final = ".wacrypto-demo"  # written into the --dir the demo uses: a folder it may clear later
_PARTIES: Final = ("alice", "bob")
_SQLITE_SUFFIXES: Final = ("", "-wal", "-shm", "-journal")
_OWN_FILES: Final = frozenset({MARKER} | {f"{p}.db{s}" for p in _PARTIES for s in _SQLITE_SUFFIXES})


def _say(text: str) -> None:
    print(text, flush=True)


def _short(b: bytes, n: int = 12) -> str:
    return b[:n].hex() + ("..." if len(b) > n else "")


async def _open(kind: str, path: Path) -> KeyStore:
    if kind == "memory":
        return MemoryKeyStore()
    from wacrypto.store import open_store

    store: KeyStore = await open_store(f"sqlite:///{path}")
    return store


def prepare_directory(directory: Path) -> None:
    """Make ``directory`` ready for a fresh run: create it, or clear a previous demo's files from it.

    A folder that exists is used only if it is empty, carries :data:`MARKER`, or holds nothing but
    the demo's own store files (a demo from before the marker); anything else is refused with a
    usage error and left untouched. Only the demo's own files are ever removed."""
    if directory.exists() and not directory.is_dir():
        raise CliUsageError(f"--dir {directory} exists and is not a folder; choose another --dir")
    if directory.is_dir():
        names = {p.name for p in directory.iterdir()}
        if names and MARKER not in names and not names <= _OWN_FILES:
            raise CliUsageError(
                f"--dir {directory} is not empty and was not made by `wacrypto demo`: the demo clears the folder "
                "it uses, so it refuses this one; choose a new or empty folder"
            )
        for name in sorted(names & _OWN_FILES - {MARKER}):
            (directory / name).unlink()
    else:
        try:
            directory.mkdir(parents=True)
        except OSError as exc:
            raise CliFailure(f"cannot create --dir {directory}: {exc.strerror or exc}") from None
    (directory / MARKER).write_text(
        "This folder was made by `wacrypto demo` (its SQLite key stores); the next demo run clears them.\n"
    )


async def run_demo(directory: Path, kind: str, seed: int) -> int:
    rnd = random.Random(seed)
    if kind != "memory":
        prepare_directory(directory)
    A, B = Address("alice", 1), Address("bob", 1)
    sa = await _open(kind, directory / "alice.db")
    sb = await _open(kind, directory / "bob.db")
    try:
        ca, cb = SessionCipher(sa), SessionCipher(sb)
        where = "in memory" if kind == "memory" else f"in SQLite under {directory}/"
        _say(f"== wacrypto demo: two parties, keys {where}")
        await account.create_account(sa, prekeys=10)
        await account.create_account(sb, prekeys=10)
        bundle = await account.get_bundle(sb)
        _say(f"bob publishes a bundle: registration id {bundle.registration_id}, identity {_short(bundle.identity_key)},")
        _say(f"    signed prekey #{bundle.signed_prekey_id} (XEdDSA signature checked by alice), one-time prekey #{bundle.prekey_id}")
        await ca.process_bundle(B, bundle)
        _say("alice runs X3DH on the bundle: session started (her first messages are PreKey messages)")

        async def send(c: SessionCipher, who: str, to: Address, text: str) -> CiphertextMessage:
            m = await c.encrypt(to, text.encode())
            kind_s = "PreKeySignalMessage" if m.type == 3 else "SignalMessage"
            _say(f"  {who:>5} -> {to.name:<5} [{kind_s}, {len(m.body)} bytes {_short(m.body, 8)}]  {text!r}")
            return m

        async def recv(c: SessionCipher, who: str, frm: Address, m: CiphertextMessage) -> None:
            try:
                pt = await c.decrypt(frm, m.type, m.body)
                _say(f"  {who:>5} <- {frm.name:<5} decrypted: {pt.decode()!r}")
            except WacryptoError as exc:
                _say(f"  {who:>5} <- {frm.name:<5} rejected: {type(exc).__name__}: {exc}")

        _say("-- alice sends three messages; the network delivers them in a shuffled order")
        batch = [await send(ca, "alice", B, t) for t in ("Hello Bob", "Order #1042 is ready", "Can you confirm?")]
        order = list(range(3))
        rnd.shuffle(order)
        _say(f"   delivery order: {[i + 1 for i in order]}")
        for i in order:
            await recv(cb, "bob", A, batch[i])
        _say("-- bob answers (a new ratchet step: fresh DH keys on both sides)")
        r1 = await send(cb, "bob", A, "Confirmed, thanks!")
        r2 = await send(cb, "bob", A, "Pickup at 5pm")
        await recv(ca, "alice", B, r2)
        await recv(ca, "alice", B, r1)
        _say("-- the network replays a message: it is refused and nothing changes")
        await recv(ca, "alice", B, r1)
        _say("-- an attacker flips one bit of a message: refused, opaque error, state unchanged")
        m = await send(ca, "alice", B, "See you then")
        bad = bytearray(m.body)
        bad[len(bad) // 2] ^= 1
        await recv(cb, "bob", A, CiphertextMessage(m.type, bytes(bad)))
        await recv(cb, "bob", A, m)
        _say("-- a few more turns of the double ratchet")
        for i in range(2):
            await recv(cb, "bob", A, await send(ca, "alice", B, f"ping {i}"))
            await recv(ca, "alice", B, await send(cb, "bob", A, f"pong {i}"))
        _say("== part 1 done: every message decrypted exactly once; the replay and the forgery were rejected")
    finally:
        if kind != "memory":
            await sa.aclose()
            await sb.aclose()
    return await chat_act(directory, kind, (sa, sb))


@asynccontextmanager
async def _party(
    name: str, kind: str, path: Path, mem: KeyStore, chat_key: KeyPair, ports: list[int], root: Any,
    directory: Directory, inbox: list[tuple[str, str]],
) -> AsyncIterator[Messenger]:
    """One coreapp process: its key store, its chat connection and its messenger."""
    store = mem if kind == "memory" else await _open(kind, path)

    async def on_message(sender: Address, plaintext: bytes) -> None:
        inbox.append((sender.name, plaintext.decode()))
        _say(f"  {name:>5} <- {sender.name:<5} {plaintext.decode()!r}")

    async def on_event(ev: ClientEvent) -> None:
        if isinstance(ev, StateChanged) and ev.state is ClientState.CONNECTED:
            _say(f"  [{name} connected on port {ev.port}]")
        elif isinstance(ev, PortFailed):
            _say(f"  [{name}: port {ev.port} failed ({ev.reason}), trying the next]")

    config = ChatClientConfig(
        host="127.0.0.1", trusted_root=root, static_key=chat_key, ports=tuple(ports),
        keepalive=KeepaliveSettings(interval=0), backoff_base=0.1, backoff_cap=0.3, connect_timeout=5.0,
    )
    try:
        async with open_messenger(SessionCipher(store), config, directory, on_message, on_event=on_event) as m:
            yield m
    finally:
        if kind != "memory":
            await store.aclose()


_STEP_TIMEOUT: Final = 30.0  # seconds any step of part 2 may take before the demo gives up


async def _until(cond: Callable[[], bool]) -> None:
    with trio.move_on_after(_STEP_TIMEOUT):
        while not cond():
            await trio.sleep(0.02)
        return
    raise CliFailure(f"a step of the chat part did not finish within {_STEP_TIMEOUT:g} s (is the machine very busy?)")


async def chat_act(directory: Path, kind: str, mem: tuple[KeyStore, KeyStore]) -> int:
    """Part 2: the same sessions continue through the reference chatd, and nothing is lost."""
    A, B = Address("alice", 1), Address("bob", 1)
    keys, _, _ = ServerKeys.generate()
    server = ChatdServer(keys, keepalive=KeepaliveSettings(interval=0), relay=True)
    ka, kb = KeyPair.generate(), KeyPair.generate()
    book = Directory()
    book.add(A, ka.public.u)
    book.add(B, kb.public.u)
    inbox_a: list[tuple[str, str]] = []
    inbox_b: list[tuple[str, str]] = []
    _say("")
    _say("== part 2: the same sessions over the chat connection (reference chatd, relaying)")
    async with trio.open_nursery() as nursery:
        ports = await nursery.start(server.serve, "127.0.0.1", [0, 0])
        await server.refuse_port(ports[0])
        _say(f"chatd listens on {ports[0]} (standing in for 5222, refused for now) and {ports[1]} (for 443)")

        def party(name: str) -> Any:
            i = 0 if name == "alice" else 1
            return _party(name, kind, directory / f"{name}.db", mem[i], (ka, kb)[i], ports, keys.root_public,
                          book, (inbox_a, inbox_b)[i])

        async with party("bob") as mb:
            async with party("alice") as ma:
                await _until(lambda: ma.client.state is ClientState.CONNECTED and mb.client.state is ClientState.CONNECTED)
                _say("-- alice sends five messages; after the second, chatd drops every connection")
                for i, text in enumerate(("Invoice 7781 attached", "Total: 120 EUR", "Due in 14 days",
                                          "Bank details follow", "Thanks!")):
                    await ma.send(B, text.encode())
                    _say(f"  alice -> bob   {text!r}  (in alice's outbox until chatd acknowledges it)")
                    if i == 1:
                        server.drop_connections()
                        _say("  [chatd drops all connections: frames in flight are lost]")
                await _until(lambda: len(inbox_b) == 5)
                await mb.send(A, b"Received all five")
                await _until(lambda: len(inbox_a) == 1)
                await _until(lambda: server.pending(kb.public) == 0)
                _say("-- chatd goes down; alice sends two more messages, then her process stops")
                for port in ports:
                    await server.refuse_port(port)
                server.drop_connections()
                for text in ("Are you there?", "Please call me"):
                    await ma.send(B, text.encode())
                    _say(f"  alice -> bob   {text!r}  (chatd is down: kept in alice's outbox)")
                waiting = await ma.pending()
            _say(f"  [alice stopped with {waiting} message(s) in her outbox, on disk]")
            for port in ports:
                await server.reopen_port(port)
            _say("-- chatd is back; alice starts again and her outbox is sent")
            async with party("alice") as ma:
                await _until(lambda: len(inbox_b) == 7)
                await _until(lambda: server.pending(kb.public) == 0)
                await _until(lambda: ma.acked >= 2)
                left = await ma.pending()
        nursery.cancel_scope.cancel()
    lost = 7 - len(set(inbox_b))
    dup = len(inbox_b) - len(set(inbox_b))
    _say(f"== part 2 done: bob got {len(inbox_b)} of 7 messages ({lost} lost, {dup} duplicated), "
         f"alice got {len(inbox_a)} of 1; {left} left in alice's outbox")
    return 0 if (lost, dup, left, len(inbox_a)) == (0, 0, 0, 1) else 1


def _run(args: argparse.Namespace) -> int:
    kind = "memory" if args.memory else "sqlite"
    if kind == "sqlite":
        try:
            import wacrypto.store as st

            if not hasattr(st, "open_store"):
                kind = "memory"
        except ImportError:
            kind = "memory"
    return trio.run(run_demo, Path(args.dir), kind, args.seed)  # errors: reported by cli.main


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="two parties, X3DH and a conversation, printed as a transcript")
    p.add_argument("--dir", default="demo-data",
                   help="folder for the SQLite stores (default: demo-data); must be new, empty or a previous "
                        "demo's, and only the demo's own files in it are replaced")
    p.add_argument("--memory", action="store_true", help="keep keys in memory instead of SQLite")
    p.add_argument("--seed", type=int, default=1, help="seed of the delivery shuffle")
    p.set_defaults(func=_run)
