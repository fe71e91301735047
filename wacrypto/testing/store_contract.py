"""The key-store contract suite: run it against any :class:`~wacrypto.store.KeyStore` implementation.

Like ``trio.testing.check_two_way_stream``: give it an async factory that makes a fresh, empty store
each time it is called, and it runs every check, each on a new store (closed afterwards)::

    from wacrypto.testing import check_key_store

    async def test_my_store() -> None:
        await check_key_store(lambda: MyStore.open(...))

A violation raises :class:`AssertionError` naming the check and what went wrong. To report each check
separately, parametrize over :data:`STORE_CHECKS` and pass ``checks=[check]``.

The checks use the public API only (``transaction()`` and its methods, ``wipe``, ``dump``, ``load``,
``info``, and :class:`~wacrypto.session.cipher.SessionCipher` / :mod:`wacrypto.session.account`
over the store); correspondents run on the in-memory reference store. They take a few seconds in all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

import trio

from wacrypto.address import Address
from wacrypto.errors import DecryptionError, DuplicateMessageError, NoPreKeyError, PeerError
from wacrypto.session import account
from wacrypto.session.cipher import CiphertextMessage, ReceivedMessage, SessionCipher
from wacrypto.store.dump import StoreDump
from wacrypto.store.memory import MemoryKeyStore
from wacrypto.store.protocols import KeyStore, LocalIdentity, OutboxEntry, SentMessage

__all__ = ["check_key_store", "StoreCheck", "STORE_CHECKS", "StoreFactory"]

StoreFactory = Callable[[], Awaitable[KeyStore]]
"""Makes a fresh, empty store on each call."""

ALICE: Final = Address("alice", 1)
BOB: Final = Address("bob", 1)
CAROL: Final = Address("carol", 7)


@dataclass(frozen=True)
class StoreCheck:
    """One check of the contract: ``run(store, factory)`` raises AssertionError on a violation."""

    name: str
    doc: str
    run: Callable[[KeyStore, StoreFactory], Awaitable[None]]

    def __repr__(self) -> str:
        return f"StoreCheck({self.name})"


async def check_key_store(factory: StoreFactory, *, checks: Iterable[StoreCheck] | None = None) -> None:
    """Run ``checks`` (default: all of :data:`STORE_CHECKS`), each on a fresh store from ``factory``.

    Raises :class:`AssertionError` (``"store contract <check>: <what>"``) at the first violation.
    """
    for check in STORE_CHECKS if checks is None else checks:
        store = await factory()
        try:
            await check.run(store, factory)
        except AssertionError as exc:
            raise AssertionError(f"store contract {check.name}: {exc}") from exc
        finally:
            await store.aclose()


# ----------------------------------------------------------------------------------------- helpers
def _ok(cond: object, what: str) -> None:
    if not cond:
        raise AssertionError(what)


def _eq(got: object, want: object, what: str) -> None:
    if got != want:
        raise AssertionError(f"{what}: expected {want!r}, got {got!r}")


async def _raises(exc_type: type[BaseException], what: str, fn: Callable[[], Awaitable[Any]]) -> BaseException:
    try:
        await fn()
    except exc_type as exc:
        return exc
    raise AssertionError(f"{what}: {exc_type.__name__} was not raised")


class _Boom(Exception):
    """Raised inside a transaction body to make it fail."""


_CHECKS: list[StoreCheck] = []


def _check(fn: Callable[[KeyStore, StoreFactory], Awaitable[None]]) -> Callable[[KeyStore, StoreFactory], Awaitable[None]]:
    name = fn.__name__.lstrip("_")
    _CHECKS.append(StoreCheck(name, (fn.__doc__ or "").strip().splitlines()[0], fn))
    return fn


async def _write_other(store: KeyStore, a: Address) -> None:
    for i in range(5):
        async with store.transaction(a) as tx:
            await tx.store_session(a, str(i).encode())


async def _pair(store: KeyStore) -> tuple[SessionCipher, SessionCipher, KeyStore]:
    """Our account on ``store`` with a session to BOB, whose account is on a memory store."""
    other = MemoryKeyStore()
    await account.create_account(store, prekeys=2)
    await account.create_account(other, prekeys=2)
    a, b = SessionCipher(store), SessionCipher(other)
    await a.process_bundle(BOB, await account.get_bundle(other))
    return a, b, other


# ----------------------------------------------------------------------------------------- checks
@_check
async def _commit_makes_writes_visible(store: KeyStore, factory: StoreFactory) -> None:
    """A transaction sees its own writes; after commit, later transactions see them."""
    async with store.transaction(BOB) as tx:
        await tx.store_session(BOB, b"rec-1")
        _eq(await tx.load_session(BOB), b"rec-1", "a transaction's own write read back")
    async with store.transaction(BOB) as tx:
        _eq(await tx.load_session(BOB), b"rec-1", "a committed write read by the next transaction")


@_check
async def _failed_transaction_changes_nothing(store: KeyStore, factory: StoreFactory) -> None:
    """A transaction whose body raises leaves every stored row as it was."""
    async with store.transaction(BOB) as tx:
        await tx.store_session(BOB, b"before")
        await tx.set_meta("k", b"v0")
        await tx.store_prekey(9, b"pk9")

    async def failing() -> None:
        async with store.transaction(BOB) as tx:
            await tx.store_session(BOB, b"after")
            await tx.save_remote_identity(BOB, b"\x05" + b"1" * 32)
            await tx.set_meta("k", b"v1")
            await tx.outbox_put(OutboxEntry("m1", str(BOB), 2, b"body", 1.0))
            await tx.put_received(b"d" * 32, b"pt", 1.0)
            await tx.hand_out_prekey()
            await tx.delete_session(BOB)
            await tx.sent_put(SentMessage("m1", "chat", b"pt", 1.0))
            await tx.retry_count_bump("m1", "bob", 1.0)
            await tx.set_lid_mapping("15551234", "98765")
            raise _Boom

    await _raises(_Boom, "the body's exception propagates out of the transaction", failing)
    async with store.transaction(BOB) as tx:
        _eq(await tx.load_session(BOB), b"before", "session after a failed transaction")
        _eq(await tx.get_remote_identity(BOB), None, "identity saved by a failed transaction")
        _eq(await tx.get_meta("k"), b"v0", "meta after a failed transaction")
        _eq(await tx.outbox_list(), [], "outbox after a failed transaction")
        _eq(await tx.get_received(b"d" * 32), None, "received row of a failed transaction")
        _eq(await tx.count_available_prekeys(), 1, "prekeys available after a failed hand-out")
        _eq((await tx.count_sent(), await tx.get_lid_for_pn("15551234")), (0, None), "sent, LID after a failed transaction")
        _eq(await tx.retry_count_bump("m1", "bob", 2.0), 1, "retry count bumped after a failed bump")


@_check
async def _identity_prekeys_signed(store: KeyStore, factory: StoreFactory) -> None:
    """Local identity, one-time prekeys (24-bit ids) and signed prekeys round-trip; removals stick."""
    local = LocalIdentity(b"\x0a\x21" + b"x" * 33, 4242)
    async with store.transaction() as tx:
        _eq(await tx.get_local_identity(), None, "local identity of a new store")
        await tx.set_local_identity(local)
        for i in (1, 2, 0xFFFFFF):
            await tx.store_prekey(i, f"pk{i}".encode())
        await tx.store_signed_prekey(5, b"s5")
        await tx.store_signed_prekey(3, b"s3")
        _eq(await tx.count_prekeys(), 3, "count_prekeys after storing 3 in this transaction")
    async with store.transaction(BOB) as tx:
        _eq(await tx.get_local_identity(), local, "local identity read back")
        _eq(await tx.load_prekey(0xFFFFFF), b"pk16777215", "prekey 0xFFFFFF")
        await tx.remove_prekey(2)
        _eq(await tx.load_prekey(2), None, "prekey removed in this transaction")
        _eq(await tx.count_prekeys(), 2, "count_prekeys after a removal in this transaction")
        _eq(await tx.list_signed_prekeys(), [3, 5], "list_signed_prekeys (ascending)")
        await tx.remove_signed_prekey(3)
        _eq(await tx.list_signed_prekeys(), [5], "list_signed_prekeys after a removal")
        await tx.save_remote_identity(BOB, b"\x05" + b"b" * 32)
    async with store.transaction(BOB) as tx:
        _eq(await tx.load_prekey(2), None, "removed prekey after commit")
        _eq(await tx.load_prekey(1), b"pk1", "prekey 1")
        _eq(await tx.load_signed_prekey(5), b"s5", "signed prekey 5")
        _eq(await tx.load_signed_prekey(3), None, "removed signed prekey")
        _eq(await tx.get_remote_identity(BOB), b"\x05" + b"b" * 32, "remote identity")
        _eq(await tx.get_remote_identity(CAROL), None, "identity of an unknown address")


@_check
async def _sessions_and_sender_keys(store: KeyStore, factory: StoreFactory) -> None:
    """Sessions (odd and long names, batch reads) and sender keys (case-sensitive group ids)."""
    odd = Address("ünïcödé name with spaces and \u2603 snow", 0xFFFFFFFF)
    long = Address("n" * 1024, 3)
    async with store.transaction(BOB, CAROL, odd, long) as tx:
        await tx.store_sessions({BOB: b"b", CAROL: b"c", odd: b"o"})
        await tx.store_session(long, b"L")
        await tx.store_sender_key("group-1", BOB, b"skb")
        await tx.store_sender_key("group-1", CAROL, b"skc")
        await tx.store_sender_key("Group-1", BOB, b"case matters")
    async with store.transaction(BOB, CAROL, odd, long) as tx:
        _eq(await tx.load_sessions([BOB, CAROL, ALICE, odd]), {BOB: b"b", CAROL: b"c", odd: b"o"}, "load_sessions")
        _eq(set(await tx.list_sessions()), {BOB, CAROL, odd, long}, "list_sessions")
        _eq(await tx.load_sender_key("group-1", BOB), b"skb", "sender key")
        _eq(await tx.load_sender_key("Group-1", BOB), b"case matters", "sender key of a group id differing in case")
        await tx.delete_session(CAROL)
        await tx.delete_sender_key("group-1", CAROL)
        _ok(CAROL not in await tx.list_sessions(), "a session deleted in this transaction is still listed")
    async with store.transaction(CAROL) as tx:
        _eq(await tx.load_session(CAROL), None, "deleted session")
        _eq(await tx.load_sender_key("group-1", CAROL), None, "deleted sender key")
        _eq(await tx.load_session(Address("Bob", 1)), None, "session of a name differing in case")


@_check
async def _received_and_outbox(store: KeyStore, factory: StoreFactory) -> None:
    """Received rows (handled marks, pruning) and the outbox (ordered by creation time, then id)."""
    d1, d2 = b"\x01" * 32, b"\x02" * 32
    async with store.transaction(BOB) as tx:
        await tx.put_received(d1, b"hello", 100.0)
        await tx.put_received(d2, b"world", 100.0)
        for i, t in enumerate([3.0, 1.0, 2.0]):
            await tx.outbox_put(OutboxEntry(f"m{i}", str(BOB), 2, bytes([i]) * 10, t))
    async with store.transaction(BOB) as tx:
        _eq(await tx.get_received(d1), (b"hello", False), "received row")
        await tx.mark_handled(d1, 200.0)
        await tx.mark_handled(b"\x09" * 32, 200.0)
        _eq(await tx.get_received(b"\x09" * 32), None, "mark_handled of an unknown digest made a row")
        _eq([e.message_id for e in await tx.outbox_list()], ["m1", "m2", "m0"], "outbox order")
        _eq([e.message_id for e in await tx.outbox_list(limit=2)], ["m1", "m2"], "outbox_list(limit=2)")
        _eq(await tx.outbox_remove("m2"), True, "outbox_remove of a present entry")
        _eq(await tx.outbox_remove("m2"), False, "outbox_remove of an entry already removed")
    async with store.transaction() as tx:
        await tx.outbox_put(OutboxEntry("m9", str(BOB), 2, b"9", 0.5))
    async with store.transaction() as tx:
        await tx.outbox_discard(["m9", "never-there"])
        _eq([e.message_id for e in await tx.outbox_list()], ["m1", "m0"], "outbox_discard in its transaction")
    async with store.transaction() as tx:
        _eq([e.message_id for e in await tx.outbox_list()], ["m1", "m0"], "outbox_discard committed")
    async with store.transaction(BOB) as tx:
        _eq(await tx.get_received(d1), (b"", True), "a handled row keeps no plaintext")
        _eq(await tx.prune_received(150.0), 0, "prune_received before the handled time")
        _eq(await tx.prune_received(300.0), 1, "prune_received after the handled time")
        _eq(await tx.get_received(d1), None, "pruned row")
        _eq(await tx.get_received(d2), (b"world", False), "unhandled rows are never pruned")
        entries = await tx.outbox_list()
        _eq(
            [(e.message_id, e.body, e.created_at) for e in entries],
            [("m1", b"\x01" * 10, 1.0), ("m0", b"\x00" * 10, 3.0)],
            "outbox entries after a removal",
        )


@_check
async def _outbox_of_some_chats(store: KeyStore, factory: StoreFactory) -> None:
    """outbox_list(chats=...): a scale-out worker's share, oldest first, read past many others' rows
    (more than one page of them), this transaction's own writes and removals included."""
    mine, theirs = "1@s.whatsapp.net", "2@s.whatsapp.net"
    async with store.transaction() as tx:
        for i in range(1200):
            await tx.outbox_put(OutboxEntry(f"t{i:04d}", theirs, 2, b"x", 1.0 + i / 1000))
        await tx.outbox_put(OutboxEntry("late", mine, 2, b"l", 9.0))
        await tx.outbox_put(OutboxEntry("tie-b", mine, 2, b"b", 1.0))
        await tx.outbox_put(OutboxEntry("tie-a", theirs, 2, b"a", 1.0))
    want = (lambda chat: chat == mine)
    async with store.transaction() as tx:
        _eq([e.message_id for e in await tx.outbox_list(chats=want)], ["tie-b", "late"], "outbox_list(chats=) order")
        _eq([e.message_id for e in await tx.outbox_list(limit=1, chats=want)], ["tie-b"], "outbox_list(limit=1, chats=)")
        await tx.outbox_put(OutboxEntry("new", mine, 2, b"n", 5.0))
        await tx.outbox_put(OutboxEntry("new-theirs", theirs, 2, b"n", 5.0))
        await tx.outbox_remove("tie-b")
        _eq([e.message_id for e in await tx.outbox_list(chats=want)], ["new", "late"],
            "outbox_list(chats=) with this transaction's writes")
        _eq(len(await tx.outbox_list(limit=5000, chats=lambda c: c == theirs)), 1202, "the other chats' share")
        _eq((await tx.count_outbox(chats=want), await tx.count_outbox(chats=lambda c: c == theirs)), (2, 1202),
            "count_outbox(chats=) with this transaction's writes")
    async with store.transaction() as tx:
        _eq([e.message_id for e in await tx.outbox_list(chats=want)], ["new", "late"], "outbox_list(chats=) committed")
        _eq(await tx.count_outbox(chats=want), 2, "count_outbox(chats=) committed")
        _eq([e.message_id for e in await tx.outbox_list(limit=2)], ["t0000", "tie-a"], "outbox_list unfiltered (by time, then id)")


@_check
async def _counts(store: KeyStore, factory: StoreFactory) -> None:
    """count_outbox, count_sessions, count_prekeys, count_available_prekeys, in and after a transaction."""
    async with store.transaction() as tx:
        _eq(
            [await tx.count_outbox(), await tx.count_sessions(), await tx.count_prekeys(), await tx.count_available_prekeys()],
            [0, 0, 0, 0],
            "counts of a new store (outbox, sessions, prekeys, available prekeys)",
        )
    async with store.transaction(BOB, CAROL) as tx:
        for i in range(3):
            await tx.outbox_put(OutboxEntry(f"o{i}", str(BOB), 2, b"x", float(i)))
        await tx.store_session(BOB, b"b")
        await tx.store_session(CAROL, b"c")
        for i in range(1, 5):
            await tx.store_prekey(i, b"p%d" % i)
        _eq(await tx.count_outbox(), 3, "count_outbox of this transaction's writes")
        _eq(await tx.count_sessions(), 2, "count_sessions of this transaction's writes")
    async with store.transaction(BOB, CAROL) as tx:
        _eq(await tx.count_outbox(), 3, "count_outbox after commit")
        _eq(await tx.count_sessions(), 2, "count_sessions after commit")
        _eq((await tx.count_prekeys(), await tx.count_available_prekeys()), (4, 4), "prekeys, available after commit")
        await tx.outbox_remove("o1")
        await tx.delete_session(CAROL)
        await tx.remove_prekey(4)
        _ok(await tx.hand_out_prekey() is not None, "hand_out_prekey with 3 prekeys available gave none")
        _eq(await tx.count_outbox(), 2, "count_outbox after a removal in this transaction")
        _eq(await tx.count_sessions(), 1, "count_sessions after a deletion in this transaction")
        _eq((await tx.count_prekeys(), await tx.count_available_prekeys()), (3, 2),
            "prekeys, available after a removal and a hand-out in this transaction")
    async with store.transaction() as tx:
        _eq((await tx.count_outbox(), await tx.count_sessions()), (2, 1), "outbox, sessions after commit")
        _eq((await tx.count_prekeys(), await tx.count_available_prekeys()), (3, 2), "prekeys, available after commit")
    async with store.transaction() as tx:
        await tx.sent_put(SentMessage("s", "chat", b"x", 1.0))
        await tx.retry_count_bump("s", "bob", 1.0)
        await tx.set_lid_mapping("15551234", "98765")
    info = await store.info()
    _ok(isinstance(info.backend, str) and info.backend, "info().backend is empty")
    for kind, n in (("outbox", 2), ("sessions", 1), ("prekeys", 3), ("sent", 1), ("retry_counters", 1), ("lid_mappings", 1)):
        _eq(info.rows.get(kind), n, f"info().rows[{kind!r}]")


@_check
async def _prekeys_are_handed_out_once_while_any_remain(store: KeyStore, factory: StoreFactory) -> None:
    """Each bundle carries a different one-time prekey, never handed out nor used, while any remain,
    also after the newest one was used (issue 14); the marks survive dump and load."""
    await account.create_account(store, prekeys=3)
    first = await account.get_bundle(store)
    _ok(first.prekey_id is not None, "the first bundle of an account with 3 prekeys has no one-time prekey")
    # a correspondent uses the first bundle: its prekey is used up
    peer = MemoryKeyStore()
    await account.create_account(peer, prekeys=1)
    c = SessionCipher(peer)
    await c.process_bundle(BOB, first)
    m = await c.encrypt(BOB, b"hi")
    _eq(await SessionCipher(store).decrypt(ALICE, m.type, m.body), b"hi", "PreKey message to the first bundle")
    got = [first.prekey_id]
    for _ in range(2):
        b = await account.get_bundle(store)
        _ok(b.prekey_id is not None, f"a bundle has no one-time prekey though unused ones remain (handed out: {got})")
        got.append(b.prekey_id)
    _eq(len(set(got)), 3, f"prekey ids handed out in 3 bundles ({got}) are not distinct")
    async with store.transaction() as tx:
        _eq((await tx.count_prekeys(), await tx.count_available_prekeys()), (2, 0), "prekeys stored, available")
    _eq((await account.get_bundle(store)).prekey_id, None, "bundle once every prekey was handed out")
    _eq((await account.get_bundle(store, with_prekey=False)).prekey_id, None, "bundle with_prekey=False")
    named = await account.get_bundle(store, prekey_id=got[1])
    _eq(named.prekey_id, got[1], "bundle naming a stored prekey")
    # the marks travel with a dump; a prekey stored again is fresh
    d = await store.dump()
    _eq(d.handed_out_prekeys, {got[1], got[2]}, "dump().handed_out_prekeys")
    other = await factory()
    try:
        await other.load(d)
        _eq((await account.get_bundle(other)).prekey_id, None, "bundle of a store loaded from a dump with every prekey handed out")
    finally:
        await other.aclose()
    new = await account.generate_prekeys(store, 2)
    after = [(await account.get_bundle(store)).prekey_id for _ in range(3)]
    _eq(sorted(x for x in after if x is not None), sorted(r.id for r in new), "prekeys handed out after generating 2 more")
    _eq(after[2], None, "third bundle after generating 2 more")


@_check
async def _concurrent_bundles_get_distinct_prekeys(store: KeyStore, factory: StoreFactory) -> None:
    """Bundles made concurrently, with decrypts running alongside, never share a one-time prekey."""
    await account.create_account(store, prekeys=8)
    ids: list[int | None] = []

    async def bundle() -> None:
        ids.append((await account.get_bundle(store)).prekey_id)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for i in range(10):
                nursery.start_soon(bundle)
                nursery.start_soon(_write_other, store, Address(f"busy{i}", 1))
    handed = [i for i in ids if i is not None]
    _eq(len(handed), 8, f"bundles with a prekey out of 10 made concurrently with 8 available ({ids})")
    _eq(len(set(handed)), 8, f"prekey ids of concurrent bundles ({sorted(handed)}) are not distinct")


@_check
async def _same_address_is_serialized(store: KeyStore, factory: StoreFactory) -> None:
    """Read-modify-write transactions on one address never interleave (no lost update)."""
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
        for i in range(10):  # other addresses keep committing meanwhile
            nursery.start_soon(_write_other, store, Address(f"other{i}", 1))
    async with store.transaction(BOB) as tx:
        _eq(await tx.load_session(BOB), b"60", "counter after 4 tasks x 15 increments")


@_check
async def _cancelled_waiter_leaves_the_addresses_usable(store: KeyStore, factory: StoreFactory) -> None:
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
        _ok(scope.cancelled_caught, "a transaction on a busy address did not wait for it")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(holder)
        await holding.wait()
        await waiter()
        release.set()
    try:
        with trio.fail_after(5):
            async with store.transaction(carol, BOB) as tx:
                _eq(await tx.load_session(carol), None, "write of the cancelled transaction")
                _eq(await tx.load_session(BOB), b"held", "write of the holder")
                await tx.store_session(carol, b"ok")
    except trio.TooSlowError:
        raise AssertionError("the addresses of a cancelled waiter stay locked") from None
    async with store.transaction(carol) as tx:
        _eq(await tx.load_session(carol), b"ok", "write after the cancellation")


@_check
async def _wipe_resets_the_account(store: KeyStore, factory: StoreFactory) -> None:
    """wipe() deletes every row; a new account can be created afterwards."""
    await account.create_account(store, prekeys=3)
    async with store.transaction(BOB) as tx:
        await tx.store_session(BOB, b"s")
        await tx.outbox_put(OutboxEntry("w", str(BOB), 2, b"x", 1.0))
        await tx.sent_put(SentMessage("w", "chat", b"x", 1.0))
        await tx.retry_count_bump("w", "bob", 1.0)
        await tx.set_lid_mapping("15551234", "98765")
    await store.wipe()
    async with store.transaction(BOB) as tx:
        _eq(await tx.get_local_identity(), None, "local identity after wipe")
        _eq(await tx.load_session(BOB), None, "session after wipe")
        _eq((await tx.count_prekeys(), await tx.count_outbox()), (0, 0), "prekeys, outbox after wipe")
        _eq((await tx.count_sent(), await tx.get_pn_for_lid("98765")), (0, None), "sent, LID mapping after wipe")
    _eq((await store.dump()).counts(), StoreDump().counts(), "dump counts after wipe")
    async with store.transaction() as tx:
        _eq(await tx.retry_count_bump("w", "bob", 2.0), 1, "retry count after wipe")
    await account.create_account(store, prekeys=2)
    async with store.transaction() as tx:
        _eq(await tx.count_prekeys(), 2, "prekeys of the account created after wipe")


@_check
async def _decrypt_once_many_commits_the_good_and_isolates_the_bad(store: KeyStore, factory: StoreFactory) -> None:
    """A batch from one sender in one transaction: a forged, garbled or unknown message fails alone."""
    a, b, _ = await _pair(store)
    m = await a.encrypt(BOB, b"hello")
    await b.decrypt(ALICE, m.type, m.body)
    r1, r2, r3 = [await b.encrypt(ALICE, t) for t in (b"one", b"two", b"three")]
    forged = bytearray(r2.body)
    forged[-1] ^= 1
    got = await a.decrypt_once_many(
        BOB, [(r1.type, r1.body), (r2.type, bytes(forged)), (2, b"\x33garbage"), (r1.type, r1.body), (r3.type, r3.body)]
    )
    g0, g1, g2, g3, g4 = got
    _ok(isinstance(g0, ReceivedMessage) and g0.plaintext == b"one" and not g0.redelivered, f"first result {g0!r}")
    _ok(isinstance(g1, DecryptionError), f"forged message gave {g1!r}")
    _ok(isinstance(g2, PeerError), f"garbage gave {g2!r}")
    _ok(isinstance(g3, ReceivedMessage) and g3.redelivered and g3.plaintext == b"one", f"duplicate in batch gave {g3!r}")
    _ok(isinstance(g4, ReceivedMessage) and g4.plaintext == b"three", f"last result {g4!r}")
    assert isinstance(g0, ReceivedMessage) and isinstance(g4, ReceivedMessage)
    again = await a.decrypt_once(BOB, r1.type, r1.body)
    _ok(again.redelivered and again.plaintext == b"one", "a committed message is not answered as redelivered")
    _eq((await a.decrypt_once(BOB, r2.type, r2.body)).plaintext, b"two", "the genuine message after a forgery")
    await a.mark_handled_many([(BOB, g0.digest), (BOB, g4.digest)])
    await _raises(DuplicateMessageError, "decrypt_once of a handled message", lambda: a.decrypt_once(BOB, r3.type, r3.body))


@_check
async def _two_senders_naming_one_prekey_at_once_cannot_hang_the_store(store: KeyStore, factory: StoreFactory) -> None:
    """Two PreKey messages naming one prekey, decrypted concurrently: one wins, the other gets NoPreKeyError."""
    await account.create_account(store, prekeys=1)
    bundle = await account.get_bundle(store)
    _ok(bundle.prekey_id is not None, "bundle of an account with one prekey has none")
    bob = SessionCipher(store)
    firsts = []
    for name in ("alice", "carol"):
        other = MemoryKeyStore()
        await account.create_account(other, prekeys=1)
        c = SessionCipher(other)
        await c.process_bundle(BOB, bundle)  # both use the same bundle (a replay, or a bad server)
        firsts.append((Address(name, 1), await c.encrypt(BOB, f"hi from {name}".encode())))
    results: list[object] = []

    async def read(sender: Address, m: CiphertextMessage) -> None:
        try:
            results.append(await bob.decrypt(sender, m.type, m.body))
        except NoPreKeyError as exc:
            results.append(exc)

    try:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                for sender, m in firsts:
                    nursery.start_soon(read, sender, m)
    except trio.TooSlowError:
        raise AssertionError("two decrypts naming one prekey hang") from None
    _eq(sorted(type(r).__name__ for r in results), ["NoPreKeyError", "bytes"], "results of the two decrypts")
    async with store.transaction() as tx:
        _eq(await tx.count_prekeys(), 0, "prekeys left after one was used")
        _eq(await tx.load_prekey(bundle.prekey_id or 0), None, "the used prekey")


@_check
async def _cipher_roundtrip_and_failed_decrypt_changes_nothing(store: KeyStore, factory: StoreFactory) -> None:
    """Messages round-trip through the store; a tampered one changes no stored byte; duplicates are refused."""
    a, b, _ = await _pair(store)
    m = await a.encrypt(BOB, b"hi bob")
    _eq(await b.decrypt(ALICE, m.type, m.body), b"hi bob", "first message")
    r = await b.encrypt(ALICE, b"hi alice")
    before = await a.export_session(BOB)
    bad = bytearray(r.body)
    bad[-3] ^= 1
    await _raises(DecryptionError, "decrypt of a tampered message", lambda: a.decrypt(BOB, r.type, bytes(bad)))
    _ok(await a.export_session(BOB) == before, "a failed decrypt changed the stored session")
    _eq(await a.decrypt(BOB, r.type, r.body), b"hi alice", "the genuine message after a tampered one")
    await _raises(DuplicateMessageError, "decrypt of a duplicate", lambda: a.decrypt(BOB, r.type, r.body))


@_check
async def _exactly_once_and_durable_send(store: KeyStore, factory: StoreFactory) -> None:
    """encrypt_durable writes the outbox row in the same transaction; decrypt_once answers redeliveries."""
    a, b, _ = await _pair(store)
    m = await a.encrypt_durable(BOB, b"one", "id-1")
    async with store.transaction(BOB) as tx:
        entries = await tx.outbox_list()
    _eq([(e.message_id, e.msg_type, e.body) for e in entries], [("id-1", m.type, m.body)], "outbox after encrypt_durable")
    await b.decrypt(ALICE, m.type, m.body)
    r = await b.encrypt(ALICE, b"reply")
    first = await a.decrypt_once(BOB, r.type, r.body)
    _eq((first.plaintext, first.redelivered), (b"reply", False), "first decrypt_once")
    again = await a.decrypt_once(BOB, r.type, r.body)
    _eq((again.plaintext, again.redelivered), (b"reply", True), "decrypt_once of a redelivery")
    await a.mark_handled(BOB, first.digest)
    await _raises(DuplicateMessageError, "decrypt_once after mark_handled", lambda: a.decrypt_once(BOB, r.type, r.body))


@_check
async def _dump_load_roundtrip(store: KeyStore, factory: StoreFactory) -> None:
    """dump() then load() into another store (and back after wipe) gives the same dump; sessions continue."""
    a, b, _ = await _pair(store)
    await a.encrypt_durable(BOB, b"x", "m-1")
    async with store.transaction() as tx:
        await tx.store_sender_key("g", CAROL, b"sk")
        await tx.put_received(b"\x07" * 32, b"pt", 5.0)
        await tx.sent_put(SentMessage("m-1", "bob@s.whatsapp.net", b"x", 6.0))
        await tx.retry_count_bump("r-1", "carol.7", 7.0)
        await tx.set_lid_mapping("15551234", "98765")
    d = await store.dump()
    _eq((len(d.sent), len(d.retry_counts), len(d.lid_mappings)), (1, 1, 1), "sent, retry counters, LID mappings dumped")
    mem = MemoryKeyStore()
    await mem.load(d)
    _ok((await mem.dump()).to_json() == d.to_json(), "the memory store's dump of a loaded dump differs")
    other = await factory()
    try:
        await other.load(d)
        _ok((await other.dump()).to_json() == d.to_json(), "a second store's dump of a loaded dump differs")
    finally:
        await other.aclose()
    await store.wipe()
    await store.load(d)
    _ok((await store.dump()).to_json() == d.to_json(), "dump after wipe and load differs")
    m = await SessionCipher(store).encrypt(BOB, b"after restore")
    _eq(await b.decrypt(ALICE, m.type, m.body), b"after restore", "the restored account continues its session")


async def _reloaded(store: KeyStore, factory: StoreFactory) -> KeyStore:
    """A second store holding what ``store`` committed (what a restart sees): dump, then load."""
    other = await factory()
    await other.load(await store.dump())
    return other


@_check
async def _sent_messages(store: KeyStore, factory: StoreFactory) -> None:
    """Sent plaintexts: kept per (message id, chat), replaced by a second put, pruned by age, not in reprs."""
    chat = "bob@s.whatsapp.net"
    secret = b"the plaintext 5123"
    m1 = SentMessage("m1", chat, secret, 100.0)
    _ok("5123" not in repr(m1) and repr(secret) not in repr(m1) and "m1" in repr(m1), f"repr shows the plaintext: {m1!r}")
    async with store.transaction() as tx:
        _eq((await tx.sent_get("m1", chat), await tx.count_sent()), (None, 0), "sent message of a new store, count")
        await tx.sent_put(m1)
        await tx.sent_put(SentMessage("m1", "group-1@g.us", b"to the group", 150.0))
        await tx.sent_put(SentMessage("m2", chat, b"two", 200.0))
        _eq(await tx.sent_get("m1", chat), m1, "a sent message read back in its transaction")
        _eq(await tx.count_sent(), 3, "count_sent of this transaction's writes")
    async with store.transaction() as tx:
        _eq(await tx.sent_get("m1", chat), m1, "a sent message after commit")
        _eq(await tx.sent_get("m1", "carol@s.whatsapp.net"), None, "a message id in another chat")
        await tx.sent_put(SentMessage("m2", chat, b"two, edited", 300.0))  # upsert
        _eq(await tx.count_sent(), 3, "count_sent after a put replacing a message")
    async with store.transaction() as tx:
        _eq(await tx.sent_get("m2", chat), SentMessage("m2", chat, b"two, edited", 300.0), "a replaced sent message")
        _eq(await tx.sent_prune(100.0), 0, "sent_prune before the oldest")
        await tx.sent_put(SentMessage("m3", chat, b"three", 50.0))
        _eq(await tx.sent_prune(160.0), 3, "sent_prune of two stored and one written here, older than 160")
        _eq(await tx.count_sent(), 1, "count_sent after a prune")
    async with store.transaction() as tx:
        _eq((await tx.sent_get("m1", chat), await tx.sent_get("m1", "group-1@g.us")), (None, None), "pruned messages")
        _eq((await tx.sent_get("m2", chat) or m1).plaintext, b"two, edited", "the newer message is kept")
        _eq(await tx.count_sent(), 1, "count_sent after the prune committed")


@_check
async def _retry_counters_survive_a_restart(store: KeyStore, factory: StoreFactory) -> None:
    """Retry counters count per (message id, sender) from 1, continue after a restart, clear and prune."""
    async with store.transaction() as tx:
        _eq(await tx.retry_count_bump("m1", "bob.1", 10.0), 1, "first bump")
        _eq(await tx.retry_count_bump("m1", "bob.1", 11.0), 2, "second bump in one transaction")
        _eq(await tx.retry_count_bump("m1", "bob.2", 11.0), 1, "the same id from another sender")
    async with store.transaction() as tx:
        _eq(await tx.retry_count_bump("m1", "bob.1", 12.0), 3, "a bump after commit")
        await tx.retry_count_bump("m2", "bob.1", 55.0)
    with_restart = await _reloaded(store, factory)
    try:
        async with with_restart.transaction() as tx:
            _eq(await tx.retry_count_bump("m1", "bob.1", 13.0), 4, "a bump after a restart continues the count")
            await tx.retry_count_clear("m1", "bob.1")
            await tx.retry_count_clear("never", "bob.1")  # clearing an unknown counter is harmless
            _eq(await tx.retry_count_bump("m1", "bob.1", 60.0), 1, "a bump after a clear in this transaction")
        async with with_restart.transaction() as tx:
            _eq(await tx.retry_prune(11.0), 0, "retry_prune before the oldest bump")
            await tx.retry_count_bump("m3", "carol.7", 5.0)
            _eq(await tx.retry_prune(55.0), 2, "retry_prune of one stored and one written here, bumped before 55")
        async with with_restart.transaction() as tx:
            _eq(await tx.retry_count_bump("m1", "bob.1", 70.0), 2, "a counter bumped after the cut is kept")
            _eq(await tx.retry_count_bump("m1", "bob.2", 70.0), 1, "a pruned counter starts again")
            _eq(await tx.retry_count_bump("m2", "bob.1", 70.0), 2, "a counter bumped at the cut is kept")
    finally:
        await with_restart.aclose()
    async with store.transaction() as tx:
        _eq(await tx.retry_count_bump("m1", "bob.1", 14.0), 4, "the first store is independent of the second")


PN: Final = "15551234567"
LID: Final = "98765432_1"  # a LID user's Signal address name carries its domain ("_1")


async def _migration_rows(store: KeyStore) -> dict[str, object]:
    """Every session, identity and sender key (what migrate_address moves), with the LID mapping."""
    d = await store.dump()
    return {"sessions": d.sessions, "identities": d.identities, "sender_keys": d.sender_keys, "lid": d.lid_mappings}


@_check
async def _migrate_address_moves_a_name_atomically(store: KeyStore, factory: StoreFactory) -> None:
    """PN -> LID: every session, identity and sender key of a name (all devices) moves in the caller's
    transaction; an existing row of the new name is kept; a failing transaction moves nothing."""
    pn0, pn1, pn5 = (Address(PN, i) for i in (0, 1, 5))
    lid1, lid5 = Address(LID, 1), Address(LID, 5)
    near = [Address(PN + "0", 1), Address(PN + ".9", 1), Address("x" + PN, 1)]  # names that only look alike
    ident = b"\x05" + b"i" * 32
    async with store.transaction(pn0, pn1, pn5, lid1, lid5, *near) as tx:
        await tx.store_sessions({pn0: b"s-pn0", pn1: b"s-pn1", lid1: b"s-lid1"})
        await tx.save_remote_identity(pn0, ident)
        await tx.save_remote_identity(pn1, ident)
        await tx.store_sender_key("g1", pn1, b"k-g1-pn1")
        await tx.store_sender_key("g2", pn1, b"k-g2-pn1")
        await tx.store_sender_key("g2", lid1, b"k-g2-lid1")
        for a in near:
            await tx.store_session(a, b"near")
            await tx.save_remote_identity(a, ident)
            await tx.store_sender_key("g1", a, b"near")
    before = await _migration_rows(store)

    async def failing() -> None:
        async with store.transaction(pn0, pn1, pn5, lid1, lid5) as tx:
            _eq(await tx.migrate_address(PN, LID), 4, "rows moved by a migration that then fails")
            await tx.set_lid_mapping(PN, LID)
            raise _Boom

    await _raises(_Boom, "the body's exception propagates out of the transaction", failing)
    _eq(await _migration_rows(store), before, "sessions, identities, sender keys after a failed migration")
    async with store.transaction(pn0, pn1, pn5, lid1, lid5) as tx:
        await tx.store_session(pn5, b"s-pn5")  # written in the migrating transaction itself
        # moved: the sessions of devices 0 and 5, both identities, the g1 sender key; dropped: the
        # session of device 1 and the g2 sender key, as the LID name has its own
        _eq(await tx.migrate_address(PN, LID), 5, "rows moved by the migration")
        _eq(await tx.load_sessions([pn0, pn1, pn5]), {}, "old sessions in the migrating transaction")
        _eq(await tx.load_session(lid5), b"s-pn5", "a session written and moved in one transaction")
        _eq(await tx.migrate_address(PN, LID), 0, "a second migration in the same transaction")
        await tx.set_lid_mapping(PN, LID)
    async with store.transaction(pn0, pn1, pn5, lid1, lid5) as tx:
        _eq(
            await tx.load_sessions([Address(LID, 0), lid1, lid5]),
            {Address(LID, 0): b"s-pn0", lid1: b"s-lid1", lid5: b"s-pn5"},
            "sessions of the new name after the migration (the existing LID session is kept)",
        )
        _eq([await tx.get_remote_identity(a) for a in (Address(LID, 0), lid1, pn0, pn1)], [ident, ident, None, None],
            "identities moved")
        _eq(
            [await tx.load_sender_key(g, a) for g, a in (("g1", lid1), ("g2", lid1), ("g1", pn1), ("g2", pn1))],
            [b"k-g1-pn1", b"k-g2-lid1", None, None],
            "sender keys moved (the existing LID one is kept)",
        )
        _eq(await tx.get_lid_for_pn(PN), LID, "the mapping written with the migration")
        for a in near:
            _eq((await tx.load_session(a), await tx.get_remote_identity(a), await tx.load_sender_key("g1", a)),
                (b"near", ident, b"near"), f"rows of {a} (a name that is not the one migrated)")
        _eq(await tx.migrate_address("nobody", LID), 0, "migration of a name without rows")
    d = await store.dump()
    left = [a for a in [*d.sessions, *d.identities, *(s for _, s in d.sender_keys)] if Address.parse(a).name == PN]
    _eq(left, [], "rows of the old name after the migration")


@_check
async def _lid_mapping_is_one_to_one(store: KeyStore, factory: StoreFactory) -> None:
    """set_lid_mapping maps a phone-number user to a LID user both ways; remapping either side replaces."""
    async with store.transaction() as tx:
        _eq((await tx.get_lid_for_pn(PN), await tx.get_pn_for_lid(LID)), (None, None), "mappings of a new store")
        await tx.set_lid_mapping(PN, LID)
        _eq((await tx.get_lid_for_pn(PN), await tx.get_pn_for_lid(LID)), (LID, PN), "a mapping in its transaction")
    async with store.transaction() as tx:
        _eq((await tx.get_lid_for_pn(PN), await tx.get_pn_for_lid(LID)), (LID, PN), "a mapping after commit")
        _eq((await tx.get_lid_for_pn(LID), await tx.get_pn_for_lid(PN)), (None, None), "the mapping the wrong way round")
        await tx.set_lid_mapping(PN, "11111_1")  # the number has a new LID
        _eq(await tx.get_pn_for_lid(LID), None, "the old LID after the number was remapped")
    async with store.transaction() as tx:
        _eq((await tx.get_lid_for_pn(PN), await tx.get_pn_for_lid("11111_1"), await tx.get_pn_for_lid(LID)),
            ("11111_1", PN, None), "mappings after the remap committed")
        await tx.set_lid_mapping("15550000000", "11111_1")  # the LID moved to another number
    async with store.transaction() as tx:
        _eq((await tx.get_pn_for_lid("11111_1"), await tx.get_lid_for_pn(PN), await tx.get_lid_for_pn("15550000000")),
            ("15550000000", None, "11111_1"), "mappings after a LID moved to another number")


STORE_CHECKS: Final[tuple[StoreCheck, ...]] = tuple(_CHECKS)
"""Every check of the contract, in the order :func:`check_key_store` runs them."""
