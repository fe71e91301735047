"""End-to-end messaging benchmark: Alice -> relaying chatd -> Bob over loopback TCP, in one run.

Three rows, each N messages of --size bytes in one established conversation, sent one after another
(the sender awaits each send(); delivery and acknowledgements run concurrently):

  transport   ChatClient -> chatd -> ChatClient with envelopes of the same size and an ack per
              message (no Signal, no key store): the floor the messenger runs on
  memory      Messenger on MemoryKeyStore: encrypt_durable + outbox + relay + decrypt_once + ack
  sqlite      the same on SQLite files (WAL, synchronous=FULL): a durable commit per send (ratchet step +
              outbox row); receiving, handled marks and outbox deletes commit in batches of what is queued

Reported: messages/s from the first send to the last delivery (all outboxes empty), and the latency
from send() to Bob's on_message (p50/p99). chatd and both clients share this one process (one core).

Run: .venv/bin/python bench/bench_messenger.py [--count 2000] [--size 64]
Writes bench/results/messenger.json and bench/results/messenger.txt.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from wacrypto.session import account  # noqa: E402
from wacrypto.address import Address  # noqa: E402
from wacrypto.chat.client import ChatClient, ChatClientConfig, open_chat_client  # noqa: E402
from wacrypto.chatd.server import ChatdServer, ServerKeys  # noqa: E402
from wacrypto.session.cipher import SessionCipher  # noqa: E402
from wacrypto.chat.messenger import Directory, Messenger, open_messenger  # noqa: E402
from wacrypto.primitives.keys import KeyPair  # noqa: E402
from wacrypto.store import open_store  # noqa: E402
from wacrypto.store.protocols import KeyStore  # noqa: E402
from wacrypto.transport.chat_connection import KeepaliveSettings, MessageReceived  # noqa: E402
from wacrypto.chat.envelope import Envelope  # noqa: E402

RESULTS = REPO / "bench" / "results"
KEYS, _, _ = ServerKeys.generate()
ALICE, BOB = Address("alice", 1), Address("bob", 1)


def _config(key: KeyPair, ports: list[int]) -> ChatClientConfig:
    return ChatClientConfig(host="127.0.0.1", trusted_root=KEYS.root_public, static_key=key, ports=tuple(ports),
                            keepalive=KeepaliveSettings(interval=0))


def _pcts(lat: list[float]) -> dict[str, float]:
    s = sorted(lat)
    return {"p50_ms": round(s[len(s) // 2] * 1e3, 2), "p99_ms": round(s[min(len(s) - 1, int(len(s) * 0.99))] * 1e3, 2)}


async def bench_transport(ports: list[int], count: int, size: int) -> dict[str, Any]:
    ka, kb = KeyPair.generate(), KeyPair.generate()
    body = os.urandom(size + 53)  # about the size of a SignalMessage carrying `size` bytes
    sent_at: dict[str, float] = {}
    lat: list[float] = []
    done = trio.Event()

    acks_send, acks_recv = trio.open_memory_channel[str](count)

    async def bob_loop(client: ChatClient) -> None:
        async for ev in client.events():
            if isinstance(ev, MessageReceived):
                lat.append(time.perf_counter() - sent_at[ev.id])
                acks_send.send_nowait(ev.id)  # acked by their own task, as the Messenger does
                if len(lat) == count:
                    done.set()

    async def bob_acks(client: ChatClient) -> None:
        async for mid in acks_recv:
            await client.ack(mid)

    async def drain_acks(client: ChatClient) -> None:
        async for _ev in client.events():
            pass

    async with open_chat_client(_config(kb, ports)) as cb, open_chat_client(_config(ka, ports)) as ca:
        await cb.wait_connected()
        await ca.wait_connected()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(bob_loop, cb)
            nursery.start_soon(bob_acks, cb)
            nursery.start_soon(drain_acks, ca)
            env = Envelope(kb.public.u, 2, body).to_bytes()
            t0 = time.perf_counter()
            for i in range(count):
                mid = f"t{i}"
                sent_at[ChatdServer.delivery_id(ka.public.u, mid)] = time.perf_counter()  # as chatd delivers it
                await ca.send_message(env, id=mid)
            await done.wait()
            elapsed = time.perf_counter() - t0
            nursery.cancel_scope.cancel()
    return {"msgs_per_s": round(count / elapsed), **_pcts(lat)}


@asynccontextmanager
async def _messenger(store: KeyStore, key: KeyPair, ports: list[int], book: Directory, got: list[float],
                     sent_at: dict[bytes, float], done: trio.Event, count: int) -> AsyncIterator[Messenger]:
    async def on_message(sender: Address, plaintext: bytes) -> None:
        got.append(time.perf_counter() - sent_at[plaintext[:8]])
        if len(got) == count:
            done.set()

    async with open_messenger(SessionCipher(store), _config(key, ports), book, on_message) as m:
        await m.client.wait_connected()
        yield m


async def bench_messenger(ports: list[int], kind: str, count: int, size: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="wacrypto-bench-msg-") as d:
        urls = ("memory:", "memory:") if kind == "memory" else (f"sqlite:///{d}/alice.db", f"sqlite:///{d}/bob.db")
        sa, sb = await open_store(urls[0]), await open_store(urls[1])
        try:
            await account.create_account(sa, prekeys=1)
            await account.create_account(sb, prekeys=1)
            await SessionCipher(sa).process_bundle(BOB, await account.get_bundle(sb))
            ka, kb = KeyPair.generate(), KeyPair.generate()
            book = Directory()
            book.add(ALICE, ka.public.u)
            book.add(BOB, kb.public.u)
            got: list[float] = []
            sent_at: dict[bytes, float] = {}
            done = trio.Event()
            pad = b"." * max(0, size - 8)
            # an established session (Bob has answered once), as in a running conversation
            ca, cb = SessionCipher(sa), SessionCipher(sb)
            m = await ca.encrypt(BOB, b"hello")
            await cb.decrypt(ALICE, m.type, m.body)
            r = await cb.encrypt(ALICE, b"hi")
            await ca.decrypt(BOB, r.type, r.body)
            async with _messenger(sb, kb, ports, book, got, sent_at, done, count), \
                    _messenger(sa, ka, ports, book, [], {}, trio.Event(), -1) as ma:
                t0 = time.perf_counter()
                for i in range(count):
                    tag = i.to_bytes(8, "big")
                    sent_at[tag] = time.perf_counter()
                    await ma.send(BOB, tag + pad)
                await done.wait()
                while await ma.pending():
                    await trio.sleep(0.001)
                elapsed = time.perf_counter() - t0
        finally:
            await sa.aclose()
            await sb.aclose()
    return {"msgs_per_s": round(count / elapsed), **_pcts(got)}


async def run(count: int, size: int) -> dict[str, Any]:
    server = ChatdServer(KEYS, keepalive=KeepaliveSettings(interval=0), relay=True)
    out: dict[str, Any] = {}
    async with trio.open_nursery() as nursery:
        ports = await nursery.start(server.serve, "127.0.0.1", [0])
        out["transport"] = await bench_transport(ports, count, size)
        print(f"[bench_messenger] transport: {out['transport']}", file=sys.stderr, flush=True)
        for kind in ("memory", "sqlite"):
            out[kind] = await bench_messenger(ports, kind, count, size)
            print(f"[bench_messenger] {kind}: {out[kind]}", file=sys.stderr, flush=True)
        nursery.cancel_scope.cancel()
    return out


def render(res: dict[str, Any]) -> str:
    lines = [
        "wacrypto messenger benchmark: alice -> relaying chatd -> bob, loopback TCP, one process",
        f"date {res['date']}  {res['host']}  python {res['python']}",
        f"{res['count']} messages of {res['size']} bytes in one conversation, sent one after another",
        "",
        f"{'row':<11}{'msgs/s':>9}{'p50 ms':>9}{'p99 ms':>9}  what",
    ]
    what = {
        "transport": "ChatClient envelopes + acks only (no Signal, no store)",
        "memory": "Messenger, MemoryKeyStore (encrypt_durable, outbox, decrypt_once, acks)",
        "sqlite": "Messenger, SQLite (WAL, synchronous=FULL): a commit per send, batched ones on receive",
    }
    for row in ("transport", "memory", "sqlite"):
        r = res[row]
        lines.append(f"{row:<11}{r['msgs_per_s']:>9}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}  {what[row]}")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    res: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": f"{platform.platform()}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}",
        "python": platform.python_version(),
        "count": args.count,
        "size": args.size,
    }
    res.update(trio.run(run, args.count, args.size))
    text = render(res)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "messenger.json").write_text(json.dumps(res, indent=2) + "\n")
    (args.out / "messenger.txt").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
