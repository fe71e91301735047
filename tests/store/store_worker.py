"""Worker process for the crash and race tests: real SessionCiphers on real databases.

    store_worker.py setup  ALICE_URL BOB_URL
    store_worker.py run    ALICE_URL BOB_URL LOGDIR MORE     (prints READY; killed at random moments)
    store_worker.py race   ALICE_URL BOB_URL PREFIX COUNT    (encrypt_durable COUNT messages alice -> bob)
    store_worker.py drain  ALICE_URL BOB_URL                 (bob decrypts alice's whole outbox; prints JSON)
    store_worker.py bundles ALICE_URL - COUNT                (COUNT bundles of alice's; prints their prekey ids)

``run`` alternates: alice and bob each send one message (ratchet step + outbox row + send counter in
one transaction), then each delivers its outbox to the other with ``decrypt_once``; the receiver logs
``id redelivered plaintext`` with one O_APPEND write + fsync, marks the message handled, and the sender
drops the outbox row (the ack). With MORE messages sent per side it drains, checks that a fresh message
decrypts both ways and prints ``DONE {json}``.
"""

from __future__ import annotations

import json
import os
import sys
import time

import trio

from wacrypto.session import account
from wacrypto.address import Address
from wacrypto.session.cipher import SessionCipher
from wacrypto.errors import DuplicateMessageError
from wacrypto.store import open_store
from wacrypto.store.protocols import OutboxEntry

A = Address("alice", 1)
B = Address("bob", 1)


async def setup(au: str, bu: str) -> None:
    a, b = await open_store(au), await open_store(bu)
    await account.create_account(a, prekeys=5)
    await account.create_account(b, prekeys=5)
    ca, cb = SessionCipher(a), SessionCipher(b)
    await ca.process_bundle(B, await account.get_bundle(b))
    m = await ca.encrypt(B, b"hello")
    assert await cb.decrypt(A, m.type, m.body) == b"hello"
    r = await cb.encrypt(A, b"hello back")
    assert await ca.decrypt(B, r.type, r.body) == b"hello back"
    await a.aclose()
    await b.aclose()


async def _counter(tx: object, key: str) -> int:
    raw = await tx.get_meta(key)  # type: ignore[attr-defined]
    return int(raw) if raw else 0


async def run(au: str, bu: str, logdir: str, more: int) -> None:
    a, b = await open_store(au), await open_store(bu)
    ca, cb = SessionCipher(a), SessionCipher(b)
    sides = [("alice", A, B, a, ca, b, cb), ("bob", B, A, b, cb, a, ca)]
    logs = {name: os.open(os.path.join(logdir, f"{name}.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) for name, *_ in sides}
    limits = {}
    for name, me, peer, st, *_ in sides:
        async with st.transaction(peer) as tx:
            limits[name] = await _counter(tx, "sent") + more
    print("READY", flush=True)
    while True:
        busy = False
        for name, me, peer, st, cme, pst, cpeer in sides:
            async with st.transaction(peer) as tx:
                n = await _counter(tx, "sent")
                if n < limits[name]:
                    mid = f"{name}-{n}"
                    msg = await cme.encrypt_in(tx, peer, f"msg {mid}".encode())
                    await tx.outbox_put(OutboxEntry(mid, str(peer), msg.type, msg.body, time.time()))
                    await tx.set_meta("sent", str(n + 1).encode())
                    busy = True
            async with st.transaction(peer) as tx:
                pending = await tx.outbox_list(limit=4)
            for e in pending:
                busy = True
                peer_log = logs["bob" if name == "alice" else "alice"]
                try:
                    rm = await cpeer.decrypt_once(me, e.msg_type, e.body)
                    os.write(peer_log, f"{e.message_id} {int(rm.redelivered)} {rm.plaintext.decode()}\n".encode())
                    os.fsync(peer_log)
                    await cpeer.mark_handled(me, rm.digest)
                except DuplicateMessageError:
                    os.write(peer_log, f"{e.message_id} dup -\n".encode())
                    os.fsync(peer_log)
                async with st.transaction(peer) as tx:
                    await tx.outbox_remove(e.message_id)
        if not busy:
            break
    # every session still works both ways
    m = await ca.encrypt(B, b"final a->b")
    assert await cb.decrypt(A, m.type, m.body) == b"final a->b"
    r = await cb.encrypt(A, b"final b->a")
    assert await ca.decrypt(B, r.type, r.body) == b"final b->a"
    sent = {}
    for name, me, peer, st, *_ in sides:
        async with st.transaction(peer) as tx:
            sent[name] = await _counter(tx, "sent")
    print("DONE " + json.dumps(sent), flush=True)
    await a.aclose()
    await b.aclose()


async def race(au: str, bu: str, prefix: str, count: int) -> None:
    a = await open_store(au)
    ca = SessionCipher(a)
    print("READY", flush=True)
    for i in range(count):
        await ca.encrypt_durable(B, f"{prefix}-{i}".encode(), f"{prefix}-{i}")
    await a.aclose()


async def drain(au: str, bu: str) -> None:
    a, b = await open_store(au), await open_store(bu)
    cb = SessionCipher(b)
    async with a.transaction(B) as tx:
        entries = await tx.outbox_list(limit=100000)
    got, errors = [], []
    for e in entries:
        try:
            got.append((await cb.decrypt(A, e.msg_type, e.body)).decode())
        except Exception as exc:  # noqa: BLE001 - reported to the test
            errors.append(f"{e.message_id}: {type(exc).__name__}")
    print(json.dumps({"ids": [e.message_id for e in entries], "plaintexts": got, "errors": errors}), flush=True)
    await a.aclose()
    await b.aclose()


async def bundles(au: str, count: int) -> None:
    a = await open_store(au)
    ids = [(await account.get_bundle(a)).prekey_id for _ in range(count)]
    print(json.dumps(ids), flush=True)
    await a.aclose()


def main() -> None:
    mode, au, bu, *rest = sys.argv[1:]
    if mode == "setup":
        trio.run(setup, au, bu)
    elif mode == "run":
        trio.run(run, au, bu, rest[0], int(rest[1]))
    elif mode == "race":
        trio.run(race, au, bu, rest[0], int(rest[1]))
    elif mode == "drain":
        trio.run(drain, au, bu)
    elif mode == "bundles":
        trio.run(bundles, au, int(rest[0]))
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
