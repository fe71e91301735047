"""GroupCipher and fan-out through the key store: one transaction per operation, nothing changes on failure."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from wacrypto.session import account
from wacrypto.address import Address
from wacrypto.session.cipher import PREKEY_TYPE, WHISPER_TYPE, SessionCipher
from wacrypto.errors import (
    DuplicateMessageError,
    InvalidArgumentError,
    InvalidMessageError,
    InvalidSignatureError,
    NoSenderKeyError,
    NoSessionError,
    TooFarAheadError,
    UntrustedIdentityError,
)
from wacrypto.session.groups import FanOutResult, GroupCipher, fan_out
from wacrypto.primitives.keys import KeyPair
from wacrypto.store.memory import MemoryKeyStore
from wacrypto.wire.messages import SenderKeyDistributionMessage, SenderKeyMessage

G = "120363000000000001@g.us"
ALICE = Address("alice", 1)
BOB = Address("bob", 1)
CAROL = Address("carol", 2)


class CountingStore:
    """A MemoryKeyStore whose transactions count the calls made on them."""

    def __init__(self) -> None:
        self.inner = MemoryKeyStore()
        self.calls: Counter[str] = Counter()
        self.transactions = 0

    @asynccontextmanager
    async def transaction(self, *addresses: Any) -> AsyncIterator[Any]:
        self.transactions += 1
        async with self.inner.transaction(*addresses) as tx:
            yield _CountingTx(tx, self.calls)

    async def aclose(self) -> None:
        await self.inner.aclose()


class _CountingTx:
    def __init__(self, tx: Any, calls: Counter[str]) -> None:
        self._tx, self._calls = tx, calls

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self._tx, name)

        async def counted(*a: Any, **kw: Any) -> Any:
            self._calls[name] += 1
            return await fn(*a, **kw)

        return counted


async def group_of(*members: Address) -> dict[Address, GroupCipher]:
    """Each member has a store with its own key and every other member's key installed."""
    ciphers = {m: GroupCipher(MemoryKeyStore()) for m in members}
    for m, gc in ciphers.items():
        skdm = await gc.create_distribution(G, m)
        for other, ogc in ciphers.items():
            if other != m:
                await ogc.process_distribution(G, m, skdm)
    return ciphers


# --------------------------------------------------------------------------- GroupCipher
async def test_group_round_trip_three_members() -> None:
    g = await group_of(ALICE, BOB, CAROL)
    for sender in (ALICE, BOB, CAROL):
        body = await g[sender].encrypt(G, sender, b"from " + sender.name.encode())
        for receiver in g:
            if receiver != sender:
                assert await g[receiver].decrypt(G, sender, body) == b"from " + sender.name.encode()


async def test_create_distribution_is_stable_until_rotation() -> None:
    gc = GroupCipher(MemoryKeyStore())
    a = await gc.create_distribution(G, ALICE)
    assert await gc.create_distribution(G, ALICE) == a
    await gc.encrypt(G, ALICE, b"x")
    b = SenderKeyDistributionMessage.from_bytes(await gc.create_distribution(G, ALICE))
    first = SenderKeyDistributionMessage.from_bytes(a)
    assert (b.key_id, b.iteration, b.signing_key) == (first.key_id, 1, first.signing_key)
    c = SenderKeyDistributionMessage.from_bytes(await gc.rotate(G, ALICE))
    assert c.iteration == 0 and c.signing_key != first.signing_key and c.chain_key != first.chain_key


async def test_failures_change_nothing_in_store() -> None:
    g = await group_of(ALICE, BOB)
    store = g[BOB].store
    assert isinstance(store, MemoryKeyStore)
    body = await g[ALICE].encrypt(G, ALICE, b"hello")
    assert await g[BOB].decrypt(G, ALICE, body) == b"hello"
    snap = store.snapshot()
    tampered = bytearray(body)
    tampered[-5] ^= 1
    cases: list[tuple[bytes, type[Exception]]] = [
        (body, DuplicateMessageError),
        (bytes(tampered), InvalidSignatureError),
        (body[:10], InvalidMessageError),
        (b"", InvalidMessageError),
    ]
    for data, exc in cases:
        with pytest.raises(exc):
            await g[BOB].decrypt(G, ALICE, data)
        assert store.snapshot() == snap
    with pytest.raises(NoSenderKeyError):
        await g[BOB].decrypt(G, CAROL, body)
    with pytest.raises(NoSenderKeyError):
        await g[BOB].decrypt("other-group", ALICE, body)
    assert store.snapshot() == snap
    # the next genuine message still decrypts
    assert await g[BOB].decrypt(G, ALICE, await g[ALICE].encrypt(G, ALICE, b"next")) == b"next"


async def test_forward_jump_setting() -> None:
    alice = GroupCipher(MemoryKeyStore())
    bob = GroupCipher(MemoryKeyStore(), max_forward_jump=3)
    await bob.process_distribution(G, ALICE, await alice.create_distribution(G, ALICE))
    bodies = [await alice.encrypt(G, ALICE, b"%d" % i) for i in range(5)]
    with pytest.raises(TooFarAheadError):
        await bob.decrypt(G, ALICE, bodies[4])
    assert await bob.decrypt(G, ALICE, bodies[3]) == b"3"
    assert await bob.decrypt(G, ALICE, bodies[4]) == b"4"
    for i in range(3):
        assert await bob.decrypt(G, ALICE, bodies[i]) == b"%d" % i
    with pytest.raises(InvalidArgumentError):
        GroupCipher(MemoryKeyStore(), max_forward_jump=0)
    with pytest.raises(InvalidArgumentError):
        GroupCipher(MemoryKeyStore(), max_forward_jump=25_001)


async def test_rotation_after_member_leaves() -> None:
    g = await group_of(ALICE, BOB, CAROL)
    old = await g[ALICE].encrypt(G, ALICE, b"before")
    # carol leaves: alice rotates and forgets carol's key; only bob gets the new SKDM
    new_skdm = await g[ALICE].rotate(G, ALICE, removed=[CAROL])
    assert not await g[ALICE].has_sender_key(G, CAROL)
    await g[BOB].process_distribution(G, ALICE, new_skdm)
    after = await g[ALICE].encrypt(G, ALICE, b"after")
    assert SenderKeyMessage.from_bytes(after).key_id != SenderKeyMessage.from_bytes(old).key_id
    assert await g[BOB].decrypt(G, ALICE, after) == b"after"
    # a late message of the old key still decrypts for bob (old state kept, up to 5)
    assert await g[BOB].decrypt(G, ALICE, old) == b"before"
    # carol, who left, cannot read the new key's messages
    with pytest.raises(NoSenderKeyError):
        await g[CAROL].decrypt(G, ALICE, after)


async def test_encrypt_without_own_key_and_bad_arguments() -> None:
    gc = GroupCipher(MemoryKeyStore())
    with pytest.raises(NoSenderKeyError):
        await gc.encrypt(G, ALICE, b"x")
    with pytest.raises(InvalidArgumentError):
        await gc.encrypt("", ALICE, b"x")
    with pytest.raises(InvalidArgumentError):
        await gc.create_distribution(G, "alice.1")  # type: ignore[arg-type]
    await gc.create_distribution(G, ALICE)
    with pytest.raises(InvalidArgumentError):
        await gc.encrypt(G, ALICE, "text")  # type: ignore[arg-type]
    # a received key is not ours: it cannot encrypt
    other = GroupCipher(MemoryKeyStore())
    await other.process_distribution(G, ALICE, await gc.create_distribution(G, ALICE))
    with pytest.raises(NoSenderKeyError):
        await other.encrypt(G, ALICE, b"x")


async def test_export_import_record() -> None:
    g = await group_of(ALICE, BOB)
    body1 = await g[ALICE].encrypt(G, ALICE, b"1")
    body2 = await g[ALICE].encrypt(G, ALICE, b"2")
    assert await g[BOB].decrypt(G, ALICE, body2) == b"2"
    rec = await g[BOB].export_sender_key(G, ALICE)
    fresh = GroupCipher(MemoryKeyStore())
    await fresh.import_sender_key(G, ALICE, rec)
    # the skipped key of iteration 0 travelled with the record (Baileys loses it on reload)
    assert await fresh.decrypt(G, ALICE, body1) == b"1"
    with pytest.raises(DuplicateMessageError):
        await fresh.decrypt(G, ALICE, body2)
    with pytest.raises(InvalidMessageError):
        await fresh.import_sender_key(G, BOB, b"\xff\xff")
    await fresh.forget(G, ALICE)
    assert not await fresh.has_sender_key(G, ALICE)
    with pytest.raises(NoSenderKeyError):
        await fresh.export_sender_key(G, ALICE)


async def test_one_transaction_per_operation() -> None:
    store = CountingStore()
    gc = GroupCipher(store)  # type: ignore[arg-type]
    await gc.create_distribution(G, ALICE)
    await gc.encrypt(G, ALICE, b"x")
    assert store.transactions == 2
    assert store.calls["load_sender_key"] == 2 and store.calls["store_sender_key"] == 2


# --------------------------------------------------------------------------- fan-out
async def make_recipients(n: int, sender_store: Any) -> tuple[SessionCipher, list[tuple[Address, SessionCipher]]]:
    """A sender with sessions to n recipient devices (each recipient has its own store)."""
    await account.create_account(sender_store, prekeys=0)
    sender = SessionCipher(sender_store)
    out = []
    for i in range(n):
        st = MemoryKeyStore()
        await account.create_account(st, prekeys=1)
        addr = Address(f"user{i // 2}", 1 + i % 2)
        await sender.process_bundle(addr, await account.get_bundle(st, addr.device_id))
        out.append((addr, SessionCipher(st)))
    return sender, out


async def test_fan_out_one_batched_load_and_store() -> None:
    store = CountingStore()
    sender, recipients = await make_recipients(6, store)
    missing = [Address("nobody", 1), Address("nobody", 2)]
    addrs = [a for a, _ in recipients[:3]] + missing[:1] + [a for a, _ in recipients[3:]] + missing[1:]
    store.calls.clear()
    store.transactions = 0
    result = await fan_out(sender, addrs + addrs[:2], b"skdm payload")  # duplicates are sent once
    assert isinstance(result, FanOutResult)
    assert store.transactions == 1
    assert store.calls["load_sessions"] == 1 and store.calls["store_sessions"] == 1
    assert store.calls["load_session"] == 0 and store.calls["store_session"] == 0
    assert set(result.failures) == set(missing)
    assert all(isinstance(e, NoSessionError) for e in result.failures.values())
    assert list(result.messages) == [a for a, _ in recipients]
    for addr, rc in recipients:
        msg = result.messages[addr]
        assert msg.type == PREKEY_TYPE
        sender_addr = Address("sender", 1)
        assert await rc.decrypt(sender_addr, msg.type, msg.body) == b"skdm payload"
    # the ratchets advanced and were committed: a second fan-out gives new messages that decrypt
    again = await fan_out(store, [a for a, _ in recipients], b"second")  # type: ignore[arg-type]
    for addr, rc in recipients:
        assert again.messages[addr].body != result.messages[addr].body
        assert await rc.decrypt(Address("sender", 1), again.messages[addr].type, again.messages[addr].body) == b"second"


async def test_fan_out_whisper_after_reply_and_untrusted_identity_reported() -> None:
    store = MemoryKeyStore()
    sender, recipients = await make_recipients(3, store)
    (a0, c0), (a1, c1), (a2, _) = recipients
    me = Address("sender", 1)
    first = await fan_out(sender, [a0, a1, a2], b"hi")
    for a, c in ((a0, c0), (a1, c1)):
        await c.decrypt(me, first.messages[a].type, first.messages[a].body)
        reply = await c.encrypt(me, b"re")
        await sender.decrypt(a, reply.type, reply.body)
    # a2's identity changes in our trust store: its device is reported, the others still go out
    await sender.trust_identity(a2, KeyPair.generate().public.to_bytes())
    snap = store.snapshot()
    res = await fan_out(sender, [a0, a1, a2], b"again")
    assert set(res.messages) == {a0, a1}
    assert all(m.type == WHISPER_TYPE for m in res.messages.values())
    assert isinstance(res.failures[a2], UntrustedIdentityError)
    assert store.snapshot()[("session", a2)] == snap[("session", a2)]
    for a, c in ((a0, c0), (a1, c1)):
        assert await c.decrypt(me, res.messages[a].type, res.messages[a].body) == b"again"


async def test_fan_out_empty_and_bad_input() -> None:
    store = MemoryKeyStore()
    res = await fan_out(store, [], b"x")
    assert not res.messages and not res.failures
    with pytest.raises(InvalidArgumentError):
        await fan_out(store, ["bob.1"], b"x")  # type: ignore[list-item]
    with pytest.raises(InvalidArgumentError):
        await fan_out(store, [BOB], "text")  # type: ignore[arg-type]


async def test_distribute_creates_key_and_fans_out_in_one_transaction() -> None:
    store = CountingStore()
    sender, recipients = await make_recipients(4, store)
    gc = GroupCipher(store)  # type: ignore[arg-type]
    store.transactions = 0
    me = Address("sender", 1)
    skdm, res = await gc.distribute(G, me, [a for a, _ in recipients] + [Address("ghost", 1)], sender)
    assert store.transactions == 1
    assert list(res.failures) == [Address("ghost", 1)]
    for addr, rc in recipients:
        m = res.messages[addr]
        got = await rc.decrypt(me, m.type, m.body)
        assert got == skdm
        receiver = GroupCipher(rc.store)
        await receiver.process_distribution(G, me, got)
        assert await receiver.decrypt(G, me, await gc.encrypt(G, me, b"to all")) == b"to all"
