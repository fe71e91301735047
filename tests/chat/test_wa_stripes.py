"""Scale-out over the wire: one account's device served by two WaMessenger workers (stripes 0 and 1
of 2) on one shared store, each holding its stripe's lease, against chatd on loopback. Each chat's
messages and receipts reach the worker of its stripe only; a worker sends only in its own chats;
a worker that is down leaves its chats waiting (not handed to the other), and after a chatd restart
each worker resends its own outbox rows only: every message delivered exactly once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import trio

from wacrypto.chat.wa_messenger import ReceiptReceived, ReceivedMessage
from wacrypto.errors import InstanceConflictError, InvalidArgumentError
from wacrypto.store import open_store
from wacrypto.testing.stripes import chats_by_stripe
from wacrypto.whatsapp.stripes import Stripe
from wa_harness import STEP, Chatd, Running, _handled, _new_device, drained, running

ACCOUNT = "15550009000"


def _texts(r: Running) -> Counter[str]:
    return Counter(e.text or "" for e in r.events if isinstance(e, ReceivedMessage))


async def test_two_workers_serve_their_own_chats(tmp_path: Path) -> None:
    chatd = Chatd(tmp_path / "chatd.db")
    a = await _new_device(tmp_path, ACCOUNT)
    users = chats_by_stripe(2, 2)
    peers = {i: [await _new_device(tmp_path, u.split("@")[0]) for u in us] for i, us in users.items()}
    s0, s1 = Stripe(0, 2), Stripe(1, 2)
    async with trio.open_nursery() as nursery:
        await chatd.start(nursery)
        async with running(a, chatd, stripe=s0) as w0, running(a, chatd, stripe=s1) as w1, \
                running(peers[0][0], chatd) as p00, running(peers[0][1], chatd) as p01, \
                running(peers[1][0], chatd) as p10, running(peers[1][1], chatd) as p11:
            workers = {0: w0, 1: w1}
            clients = {0: [p00, p01], 1: [p10, p11]}
            assert w0.m.prekey_uploads == 1 and w1.m.prekey_uploads == 0  # the account's keys: stripe 0's
            with pytest.raises(InstanceConflictError, match="stripe 1/2"):
                await open_store(a.url, lease_stripe=s1)  # one writer per stripe
            # each peer writes to the account: only the worker of its stripe gets it
            for i, ps in clients.items():
                for p in ps:
                    await p.m.send_text(a.jid, f"to-a from {p.m.me.user}")
            for i, w in workers.items():
                for p in clients[i]:
                    await _handled(w, f"to-a from {p.m.me.user}")
            # each worker answers in its own chats; the delivery receipts come back to it
            for i, w in workers.items():
                for p in clients[i]:
                    mid = await w.m.send_text(p.m.me, f"from stripe {i}")
                    await _handled(p, f"from stripe {i}")
                    await w.wait_for(ReceiptReceived, lambda e, mid=mid: mid in e.ids)
            with pytest.raises(InvalidArgumentError, match="belongs to stripe 1 of 2"):
                await w0.m.send_text(p10.m.me, "not mine")
            assert _texts(w0) == Counter(f"to-a from {p.m.me.user}" for p in clients[0])
            assert _texts(w1) == Counter(f"to-a from {p.m.me.user}" for p in clients[1])
            for r in (w0, w1):
                await drained(r)
        # chatd down: both workers commit sends to their chats (and stripe 1's worker is then down)
        async with running(a, chatd, stripe=s0) as w0, running(a, chatd, stripe=s1) as w1:
            await chatd.stop()
            for i, w in ((0, w0), (1, w1)):
                for p in peers[i]:
                    for k in range(3):
                        await w.m.send_text(p.jid, f"offline {i}.{k}")
            assert await w0.m.pending() == 6 and await w1.m.pending() == 6
        await chatd.start(nursery)
        async with running(a, chatd, stripe=s0) as w0, \
                running(peers[0][0], chatd) as p00, running(peers[1][0], chatd) as p10:
            await drained(w0)  # stripe 0 resent its own six; stripe 1's wait in the outbox for its worker
            async with w0.store.transaction() as tx:
                assert sorted(e.address for e in await tx.outbox_list()) == sorted(
                    f"{p.jid.user}@s.whatsapp.net" for p in peers[1] for _ in range(3))
            for k in range(3):
                await _handled(p00, f"offline 0.{k}")
            await p10.m.send_text(a.jid, "while stripe 1 is down")
            with trio.move_on_after(1.0):
                await w0.next_message("while stripe 1 is down")
                raise AssertionError("stripe 0 got a message of stripe 1's chat")
            async with running(a, chatd, stripe=s1) as w1:
                await _handled(w1, "while stripe 1 is down")
                for k in range(3):
                    await _handled(p10, f"offline 1.{k}")
                await drained(w1)
            with trio.fail_after(STEP):
                await trio.sleep(0.3)
            assert _texts(p00) == Counter(f"offline 0.{k}" for k in range(3))
            assert _texts(p10) == Counter(f"offline 1.{k}" for k in range(3))  # once each
        nursery.cancel_scope.cancel()
