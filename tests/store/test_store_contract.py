"""The store contract: one suite, every backend (memory, SQLite, PostgreSQL, MariaDB)."""

from __future__ import annotations

from collections.abc import Callable

import trio
import pytest

from wacrypto.session import account
from wacrypto.address import Address
from wacrypto.session.cipher import CiphertextMessage, ReceivedMessage, SessionCipher
from wacrypto.errors import DecryptionError, DuplicateMessageError, NoPreKeyError, PeerError
from wacrypto.store import open_store
from wacrypto.store.protocols import KeyStore, LocalIdentity, OutboxEntry

ALICE = Address("alice", 1)
BOB = Address("bob", 1)
CAROL = Address("carol", 7)


class Boom(Exception):
    pass


async def test_commit_makes_writes_visible(store: KeyStore) -> None:
    async with store.transaction(BOB) as tx:
        await tx.store_session(BOB, b"rec-1")
        assert await tx.load_session(BOB) == b"rec-1"  # own writes are visible
    async with store.transaction(BOB) as tx:
        assert await tx.load_session(BOB) == b"rec-1"


async def test_failed_transaction_changes_nothing(store: KeyStore) -> None:
    async with store.transaction(BOB) as tx:
        await tx.store_session(BOB, b"before")
        await tx.set_meta("k", b"v0")
    with pytest.raises(Boom):
        async with store.transaction(BOB) as tx:
            await tx.store_session(BOB, b"after")
            await tx.save_remote_identity(BOB, b"\x05" + b"1" * 32)
            await tx.set_meta("k", b"v1")
            await tx.outbox_put(OutboxEntry("m1", str(BOB), 2, b"body", 1.0))
            await tx.put_received(b"d" * 32, b"pt", 1.0)
            await tx.delete_session(BOB)
            raise Boom
    async with store.transaction(BOB) as tx:
        assert await tx.load_session(BOB) == b"before"
        assert await tx.get_remote_identity(BOB) is None
        assert await tx.get_meta("k") == b"v0"
        assert await tx.outbox_list() == []
        assert await tx.get_received(b"d" * 32) is None


async def test_identity_prekeys_signed(store: KeyStore) -> None:
    local = LocalIdentity(b"\x0a\x21" + b"x" * 33, 4242)
    async with store.transaction() as tx:
        assert await tx.get_local_identity() is None
        await tx.set_local_identity(local)
        for i in (1, 2, 0xFFFFFF):
            await tx.store_prekey(i, f"pk{i}".encode())
        await tx.store_signed_prekey(5, b"s5")
        await tx.store_signed_prekey(3, b"s3")
        assert await tx.count_prekeys() == 3
    async with store.transaction(BOB) as tx:
        got = await tx.get_local_identity()
        assert got == local
        assert await tx.load_prekey(0xFFFFFF) == b"pk16777215"
        await tx.remove_prekey(2)
        assert await tx.load_prekey(2) is None
        assert await tx.count_prekeys() == 2
        assert await tx.list_signed_prekeys() == [3, 5]
        await tx.remove_signed_prekey(3)
        assert await tx.list_signed_prekeys() == [5]
        await tx.save_remote_identity(BOB, b"\x05" + b"b" * 32)
    async with store.transaction(BOB) as tx:
        assert await tx.load_prekey(2) is None
        assert await tx.load_prekey(1) == b"pk1"
        assert await tx.load_signed_prekey(5) == b"s5"
        assert await tx.load_signed_prekey(3) is None
        assert await tx.get_remote_identity(BOB) == b"\x05" + b"b" * 32
        assert await tx.get_remote_identity(CAROL) is None


async def test_sessions_and_sender_keys(store: KeyStore) -> None:
    odd = Address("ünïcödé name with spaces and \u2603 snow", 0xFFFFFFFF)
    long = Address("n" * 1024, 3)
    async with store.transaction(BOB, CAROL, odd, long) as tx:
        await tx.store_sessions({BOB: b"b", CAROL: b"c", odd: b"o"})
        await tx.store_session(long, b"L")
        await tx.store_sender_key("group-1", BOB, b"skb")
        await tx.store_sender_key("group-1", CAROL, b"skc")
        await tx.store_sender_key("Group-1", BOB, b"case matters")
    async with store.transaction(BOB, CAROL, odd, long) as tx:
        assert await tx.load_sessions([BOB, CAROL, ALICE, odd]) == {BOB: b"b", CAROL: b"c", odd: b"o"}
        assert set(await tx.list_sessions()) == {BOB, CAROL, odd, long}
        assert await tx.load_sender_key("group-1", BOB) == b"skb"
        assert await tx.load_sender_key("Group-1", BOB) == b"case matters"
        await tx.delete_session(CAROL)
        await tx.delete_sender_key("group-1", CAROL)
        assert CAROL not in await tx.list_sessions()
    async with store.transaction(CAROL) as tx:
        assert await tx.load_session(CAROL) is None
        assert await tx.load_sender_key("group-1", CAROL) is None
        assert await tx.load_session(Address("Bob", 1)) is None  # names are case-sensitive


async def test_received_and_outbox(store: KeyStore) -> None:
    d1, d2 = b"\x01" * 32, b"\x02" * 32
    async with store.transaction(BOB) as tx:
        await tx.put_received(d1, b"hello", 100.0)
        await tx.put_received(d2, b"world", 100.0)
        for i, t in enumerate([3.0, 1.0, 2.0]):
            await tx.outbox_put(OutboxEntry(f"m{i}", str(BOB), 2, bytes([i]) * 10, t))
    async with store.transaction(BOB) as tx:
        assert await tx.get_received(d1) == (b"hello", False)
        await tx.mark_handled(d1, 200.0)
        await tx.mark_handled(b"\x09" * 32, 200.0)  # unknown digest: no row appears
        assert await tx.get_received(b"\x09" * 32) is None
        assert [e.message_id for e in await tx.outbox_list()] == ["m1", "m2", "m0"]
        assert [e.message_id for e in await tx.outbox_list(limit=2)] == ["m1", "m2"]
        assert await tx.outbox_remove("m2") is True
        assert await tx.outbox_remove("m2") is False
    async with store.transaction(BOB) as tx:
        assert await tx.get_received(d1) == (b"", True)
        assert await tx.prune_received(150.0) == 0
        assert await tx.prune_received(300.0) == 1
        assert await tx.get_received(d1) is None
        assert await tx.get_received(d2) == (b"world", False)  # unhandled entries are kept
        entries = await tx.outbox_list()
        assert [(e.message_id, e.body, e.created_at) for e in entries] == [("m1", b"\x01" * 10, 1.0), ("m0", b"\x00" * 10, 3.0)]


async def test_same_address_is_serialized(store: KeyStore) -> None:
    async with store.transaction(BOB) as tx:
        await tx.store_session(BOB, b"0")

    async def bump(n: int) -> None:
        for _ in range(n):
            async with store.transaction(BOB) as tx:
                v = int(await tx.load_session(BOB) or b"0")
                await trio.sleep(0)
                await tx.store_session(BOB, str(v + 1).encode())

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(bump, 15)
        # other addresses keep committing meanwhile
        for i in range(10):
            nursery.start_soon(_write_other, store, Address(f"other{i}", 1))
    async with store.transaction(BOB) as tx:
        assert await tx.load_session(BOB) == b"60"


async def test_cancelled_waiter_leaves_the_addresses_usable(store: KeyStore) -> None:
    """A transaction cancelled while it waits for a busy address holds nothing afterwards."""
    carol = Address("carol", 3)
    holding = trio.Event()
    release = trio.Event()

    async def holder() -> None:
        async with store.transaction(BOB) as tx:
            await tx.store_session(BOB, b"held")
            holding.set()
            await release.wait()

    async def waiter() -> None:
        with trio.move_on_after(0.05) as scope:
            async with store.transaction(BOB, carol) as tx:  # BOB is busy: waits, then is cancelled
                await tx.store_session(carol, b"never")
        assert scope.cancelled_caught

    async with trio.open_nursery() as nursery:
        nursery.start_soon(holder)
        await holding.wait()
        await waiter()
        release.set()
    with trio.fail_after(5):
        async with store.transaction(carol, BOB) as tx:
            assert await tx.load_session(carol) is None
            assert await tx.load_session(BOB) == b"held"
            await tx.store_session(carol, b"ok")
    async with store.transaction(carol) as tx:
        assert await tx.load_session(carol) == b"ok"


async def _write_other(store: KeyStore, a: Address) -> None:
    for i in range(5):
        async with store.transaction(a) as tx:
            await tx.store_session(a, str(i).encode())


async def test_wipe_resets_the_account(store: KeyStore) -> None:
    await account.create_account(store, prekeys=3)
    async with store.transaction(BOB) as tx:
        await tx.store_session(BOB, b"s")
    await store.wipe()  # type: ignore[attr-defined]
    async with store.transaction(BOB) as tx:
        assert await tx.get_local_identity() is None
        assert await tx.load_session(BOB) is None
        assert await tx.count_prekeys() == 0
    await account.create_account(store, prekeys=2)
    async with store.transaction() as tx:
        assert await tx.count_prekeys() == 2


async def _pair(store: KeyStore) -> tuple[SessionCipher, SessionCipher, KeyStore]:
    other = await open_store("memory:")
    await account.create_account(store, prekeys=2)
    await account.create_account(other, prekeys=2)
    a, b = SessionCipher(store), SessionCipher(other)
    await a.process_bundle(BOB, await account.get_bundle(other))
    return a, b, other


async def test_decrypt_once_many_commits_the_good_and_isolates_the_bad(store: KeyStore) -> None:
    """One transaction for a batch from one sender: a forged, garbled or unknown message fails
    alone and changes nothing; a duplicate inside the batch is answered from the batch."""
    a, b, _ = await _pair(store)
    m = await a.encrypt(BOB, b"hello")
    await b.decrypt(ALICE, m.type, m.body)
    r1, r2, r3 = [await b.encrypt(ALICE, t) for t in (b"one", b"two", b"three")]  # one DH step ahead
    forged = bytearray(r2.body)
    forged[-1] ^= 1
    got = await a.decrypt_once_many(BOB, [(r1.type, r1.body), (r2.type, bytes(forged)), (2, b"\x33garbage"),
                                          (r1.type, r1.body), (r3.type, r3.body)])
    assert isinstance(got[0], ReceivedMessage) and got[0].plaintext == b"one" and not got[0].redelivered
    assert isinstance(got[1], DecryptionError) and isinstance(got[2], PeerError)
    assert isinstance(got[3], ReceivedMessage) and got[3].redelivered and got[3].plaintext == b"one"
    assert isinstance(got[4], ReceivedMessage) and got[4].plaintext == b"three"
    # committed: "one" and "three" are stored, "two" still decrypts (its key was kept), nothing else changed
    again = await a.decrypt_once(BOB, r1.type, r1.body)
    assert again.redelivered and again.plaintext == b"one"
    assert (await a.decrypt_once(BOB, r2.type, r2.body)).plaintext == b"two"
    await a.mark_handled_many([(BOB, got[0].digest), (BOB, got[4].digest)])
    with pytest.raises(DuplicateMessageError):
        await a.decrypt_once(BOB, r3.type, r3.body)


async def test_two_senders_naming_one_prekey_at_once_cannot_hang_the_store(store: KeyStore) -> None:
    """Two PreKey messages from different senders name the same one-time prekey (a peer chooses
    it) and are decrypted concurrently: one wins, the other gets NoPreKeyError, nothing waits forever."""
    await account.create_account(store, prekeys=1)
    bundle = await account.get_bundle(store)
    assert bundle.prekey_id is not None
    bob = SessionCipher(store)
    firsts = []
    for name in ("alice", "carol"):
        other = await open_store("memory:")
        await account.create_account(other, prekeys=1)
        c = SessionCipher(other)
        await c.process_bundle(BOB, bundle)
        firsts.append((Address(name, 1), await c.encrypt(BOB, f"hi from {name}".encode())))
    results: list[object] = []

    async def read(sender: Address, m: CiphertextMessage) -> None:
        try:
            results.append(await bob.decrypt(sender, m.type, m.body))
        except NoPreKeyError as exc:
            results.append(exc)

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            for sender, m in firsts:
                nursery.start_soon(read, sender, m)
    assert sorted(type(r).__name__ for r in results) == ["NoPreKeyError", "bytes"]
    async with store.transaction() as tx:
        assert await tx.count_prekeys() == 0  # used once, by the winner
        assert await tx.load_prekey(bundle.prekey_id) is None


async def test_cipher_roundtrip_and_failed_decrypt_changes_nothing(store: KeyStore) -> None:
    a, b, _ = await _pair(store)
    m = await a.encrypt(BOB, b"hi bob")
    assert await b.decrypt(ALICE, m.type, m.body) == b"hi bob"
    r = await b.encrypt(ALICE, b"hi alice")
    before = await a.export_session(BOB)
    bad = bytearray(r.body)
    bad[-3] ^= 1
    with pytest.raises(DecryptionError):
        await a.decrypt(BOB, r.type, bytes(bad))
    assert await a.export_session(BOB) == before  # every stored byte unchanged
    assert await a.decrypt(BOB, r.type, r.body) == b"hi alice"
    with pytest.raises(DuplicateMessageError):
        await a.decrypt(BOB, r.type, r.body)


async def test_exactly_once_and_durable_send(store: KeyStore) -> None:
    a, b, other = await _pair(store)
    m = await a.encrypt_durable(BOB, b"one", "id-1")
    async with store.transaction(BOB) as tx:
        [entry] = await tx.outbox_list()
    assert (entry.message_id, entry.msg_type, entry.body) == ("id-1", m.type, m.body)
    await b.decrypt(ALICE, m.type, m.body)
    r = await b.encrypt(ALICE, b"reply")
    first = await a.decrypt_once(BOB, r.type, r.body)
    assert (first.plaintext, first.redelivered) == (b"reply", False)
    again = await a.decrypt_once(BOB, r.type, r.body)
    assert (again.plaintext, again.redelivered) == (b"reply", True)
    await a.mark_handled(BOB, first.digest)
    with pytest.raises(DuplicateMessageError):
        await a.decrypt_once(BOB, r.type, r.body)


async def test_dump_load_roundtrip(store: KeyStore) -> None:
    a, b, _ = await _pair(store)
    await a.encrypt_durable(BOB, b"x", "m-1")
    async with store.transaction() as tx:
        await tx.store_sender_key("g", CAROL, b"sk")
        await tx.put_received(b"\x07" * 32, b"pt", 5.0)
    d = await store.dump()  # type: ignore[attr-defined]
    mem = await open_store("memory:")
    await mem.load(d)  # type: ignore[attr-defined]
    assert (await mem.dump()).to_json() == d.to_json()  # type: ignore[attr-defined]
    await store.wipe()  # type: ignore[attr-defined]
    await store.load(d)  # type: ignore[attr-defined]
    assert (await store.dump()).to_json() == d.to_json()  # type: ignore[attr-defined]
    # the restored account continues its session
    m = await SessionCipher(store).encrypt(BOB, b"after restore")
    assert m.body


@pytest.mark.parametrize("server", ["postgresql", "mariadb"])
async def test_striped_lanes_keep_addresses_serialized(server: str, make_url: "Callable[[str], str]") -> None:
    """With several connections (lanes) addresses are striped over them; each address stays serialized."""
    s = await open_store(make_url(server) + "?lanes=4")
    try:
        await test_same_address_is_serialized(s)
        await test_failed_transaction_changes_nothing(s)
        await s.wipe()  # type: ignore[attr-defined]
        a, b, _ = await _pair(s)
        for i in range(5):
            m = await a.encrypt(BOB, b"m%d" % i)
            assert await b.decrypt(ALICE, m.type, m.body) == b"m%d" % i
    finally:
        await s.aclose()
