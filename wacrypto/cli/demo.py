"""`wacrypto demo`: two parties in one process, a readable end-to-end transcript.

Alice fetches Bob's prekey bundle, runs X3DH, and they hold a short conversation in which messages
arrive out of order, one is replayed and one is tampered with. Each party keeps its keys in its own
store: SQLite files under ``--dir`` by default (the embedded default), or memory with ``--memory``.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
from pathlib import Path
from typing import Any

import trio

from wacrypto import account
from wacrypto.address import Address
from wacrypto.cipher import CiphertextMessage, SessionCipher
from wacrypto.errors import WacryptoError
from wacrypto.store.memory import MemoryKeyStore
from wacrypto.store.protocols import KeyStore


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


async def run_demo(directory: Path, kind: str, seed: int) -> int:
    rnd = random.Random(seed)
    if kind != "memory":
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
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
        _say("== done: every message decrypted exactly once; the replay and the forgery were rejected")
        return 0
    finally:
        await sa.aclose()
        await sb.aclose()


def _run(args: argparse.Namespace) -> int:
    kind = "memory" if args.memory else "sqlite"
    if kind == "sqlite":
        try:
            import wacrypto.store as st

            if not hasattr(st, "open_store"):
                kind = "memory"
        except ImportError:
            kind = "memory"
    try:
        return trio.run(run_demo, Path(args.dir), kind, args.seed)
    except WacryptoError as exc:
        print(f"demo failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="two parties, X3DH and a conversation, printed as a transcript")
    p.add_argument("--dir", default="demo-data", help="directory for the SQLite stores (default: demo-data)")
    p.add_argument("--memory", action="store_true", help="keep keys in memory instead of SQLite")
    p.add_argument("--seed", type=int, default=1, help="seed of the delivery shuffle")
    p.set_defaults(func=_run)
