"""``SessionCipher.decrypt_once_many`` (WaMessenger decrypts a queued run of one sender's messages in
one commit with it) is, message for message, what ``decrypt_once`` one at a time gives: the same
plaintexts, redelivery flags and errors, in order, however the deliveries are cut into batches, and
the same session afterwards."""

from __future__ import annotations

import random

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from wacrypto.address import Address
from wacrypto.errors import MissingStateError, PeerError
from wacrypto.session import account
from wacrypto.session.cipher import SessionCipher
from wacrypto.store.memory import MemoryKeyStore

A = Address("alice", 1)
B = Address("bob", 1)

# one delivery: which of alice's messages (a resend of an earlier one is a duplicate), garbled or not
deliveries = st.lists(st.tuples(st.integers(0, 11), st.sampled_from([False, False, False, True])),
                      min_size=1, max_size=24)


def _seeded(seed: int) -> random.Random:
    return random.Random(seed)


async def _bobs() -> tuple[SessionCipher, SessionCipher, SessionCipher, list[tuple[int, bytes]]]:
    """Alice, and two bobs in the same state (one restored from the other's dump, the same seeded
    randomness), alice's 12 messages after the session is established both ways."""
    alice_store, bob_store = MemoryKeyStore(), MemoryKeyStore()
    await account.create_account(alice_store, prekeys=2)
    await account.create_account(bob_store, prekeys=2)
    alice = SessionCipher(alice_store)
    bob = SessionCipher(bob_store)
    await alice.process_bundle(B, await account.get_bundle(bob_store))
    m = await alice.encrypt(B, b"hello")
    await bob.decrypt(A, m.type, m.body)
    r = await bob.encrypt(A, b"hi")
    await alice.decrypt(B, r.type, r.body)
    twin = MemoryKeyStore()
    await twin.load(await bob_store.dump())
    msgs = []
    for i in range(12):
        if i == 6:  # a new ratchet step in the middle: bob answers, alice's next chain is a new one
            r = await bob.encrypt(A, b"reply")
            await alice.decrypt(B, r.type, r.body)
            r2 = await SessionCipher(twin).encrypt(A, b"reply")
            assert r2.type == r.type
        c = await alice.encrypt(B, b"m%d" % i)
        msgs.append((c.type, c.body))
    clock = iter(range(10**6)).__next__
    one = SessionCipher(bob_store, rng=_seeded(7).randbytes, clock=lambda: float(clock()))
    clock2 = iter(range(10**6)).__next__
    many = SessionCipher(twin, rng=_seeded(7).randbytes, clock=lambda: float(clock2()))
    return alice, one, many, msgs


def _outcome(x: object) -> object:
    if isinstance(x, (PeerError, MissingStateError)):
        return type(x).__name__
    return (x.plaintext, x.redelivered)  # type: ignore[attr-defined]


@settings(max_examples=40, deadline=None)
@given(deliveries, st.lists(st.integers(1, 6), min_size=1, max_size=24))
def test_batches_decrypt_exactly_as_one_at_a_time(plan: list[tuple[int, bool]], cuts: list[int]) -> None:
    async def main() -> None:
        _, one, many, msgs = await _bobs()
        items = []
        for i, garbled in plan:
            t, body = msgs[i]
            if garbled:
                body = body[:-1] + bytes([body[-1] ^ 1])  # the MAC fails
            items.append((t, body))
        singly = []
        for t, body in items:
            try:
                singly.append(_outcome(await one.decrypt_once(A, t, body)))
            except (PeerError, MissingStateError) as exc:
                singly.append(_outcome(exc))
        batched: list[object] = []
        pos, k = 0, 0
        while pos < len(items):
            size = cuts[k % len(cuts)]
            k += 1
            batched += [_outcome(x) for x in await many.decrypt_once_many(A, items[pos:pos + size])]
            pos += size
        assert batched == singly
        async with one.store.transaction(A) as tx1, many.store.transaction(A) as tx2:
            assert await tx1.load_session(A) == await tx2.load_session(A)

    trio.run(main)


async def test_a_batch_after_handled_ones_reports_duplicates_at_their_place() -> None:
    _, one, _, msgs = await _bobs()
    got = await one.decrypt_once_many(A, msgs[:3])
    await one.mark_handled_many([(A, g.digest) for g in got[:2]])  # type: ignore[union-attr]
    again = await one.decrypt_once_many(A, [msgs[0], msgs[2], msgs[1], msgs[3]])
    assert [_outcome(x) for x in again] == ["DuplicateMessageError", (b"m2", True), "DuplicateMessageError",
                                            (b"m3", False)]
