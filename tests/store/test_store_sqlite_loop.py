"""SQLite runs a transaction's statements on the trio thread and only its COMMIT on a worker thread.

What a user must still get: an outside writer holding the file's lock never stalls the event loop
(the transaction waits for it on a thread), transactions that queued behind a commit share the next
one (group commit), a statement that fails or a COMMIT that never runs leaves nothing written, Ctrl-C
stays a KeyboardInterrupt, and every transaction is still a checkpoint (a loop of them lets other
tasks run).
"""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wacrypto.store.sql.lane as lane_mod
from wacrypto.address import Address
from wacrypto.errors import StoreError
from wacrypto.store import SqlKeyStore, open_store
from wacrypto.store.sql.rows import Rows


async def _store(tmp_path: Path) -> SqlKeyStore:
    s = await open_store(f"sqlite:///{tmp_path / 'k.db'}")
    assert isinstance(s, SqlKeyStore)
    async with s.transaction() as tx:  # the lane's connection is open from here on
        await tx.set_meta("warm", b"1")
    return s


async def test_an_outside_writer_holding_the_lock_does_not_stall_the_loop(tmp_path: Path) -> None:
    s = await _store(tmp_path)
    other = sqlite3.connect(tmp_path / "k.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # a CLI or a backup holding the write lock
    ticks = 0
    done = trio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await trio.sleep(0.01)

    async def write() -> None:
        async with s.transaction(Address("bob", 1)) as tx:
            await tx.set_meta("k", b"v")
        done.set()

    try:
        async with trio.open_nursery() as n:
            n.start_soon(ticker)
            n.start_soon(write)
            await trio.sleep(0.5)
            assert not done.is_set()  # it waits for the lock ...
            assert ticks >= 10  # ... on a thread: the loop kept running meanwhile
            other.execute("ROLLBACK")
            with trio.fail_after(10):
                await done.wait()
    finally:
        other.close()
    async with s.transaction() as tx:
        assert await tx.get_meta("k") == b"v"
    await s.aclose()


async def test_transactions_that_queued_behind_a_commit_share_the_next_one(tmp_path: Path) -> None:
    s = await _store(tmp_path)
    conn = s._lanes[0].conn
    assert conn is not None
    statements: list[str] = []
    conn.raw.set_trace_callback(statements.append)

    async def write(i: int) -> None:
        async with s.transaction(Address(f"u{i}", 1)) as tx:
            await tx.set_meta(f"k{i}", b"v")

    async with trio.open_nursery() as n:
        for i in range(12):
            n.start_soon(write, i)
    conn.raw.set_trace_callback(None)
    commits = [q for q in statements if q.strip().upper() == "COMMIT"]
    # twelve concurrent writers: the first may commit alone, those that started while its commit ran
    # waited for it and share the next one (not a commit each)
    assert len(commits) <= 2, statements
    async with s.transaction() as tx:
        assert [await tx.get_meta(f"k{i}") for i in range(12)] == [b"v"] * 12
    await s.aclose()


async def test_a_failing_statement_leaves_nothing_and_the_store_goes_on(tmp_path: Path) -> None:
    s = await _store(tmp_path)
    other = sqlite3.connect(tmp_path / "k.db", isolation_level=None)
    # a trigger makes the write of one key fail inside the epoch's statements
    other.execute("CREATE TRIGGER refuse BEFORE INSERT ON wa_meta WHEN NEW.k = X'626164' "
                  "BEGIN SELECT RAISE(ABORT, 'refused'); END")
    other.close()
    with pytest.raises(StoreError, match="refused"):
        async with s.transaction(Address("bob", 1)) as tx:
            await tx.set_meta("good", b"1")
            await tx.set_meta("bad", b"2")
    async with s.transaction() as tx:
        assert await tx.get_meta("good") is None  # rolled back with the failing one
        await tx.set_meta("after", b"3")
    async with s.transaction() as tx:
        assert await tx.get_meta("after") == b"3"
    await s.aclose()


async def test_a_loop_of_transactions_lets_other_tasks_run(tmp_path: Path) -> None:
    s = await _store(tmp_path)
    ran = 0

    async def other() -> None:
        nonlocal ran
        while True:
            ran += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as n:
        n.start_soon(other)
        await trio.lowlevel.checkpoint()
        before = ran
        for _ in range(20):
            async with s.transaction() as tx:  # read-only: no thread hop at all
                await tx.get_meta("warm")
        assert ran - before >= 10  # (trio may run the other task before or after each one)
        n.cancel_scope.cancel()
    await s.aclose()


async def test_a_commit_whose_thread_cannot_start_leaves_nothing_written(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # the statements ran on the loop, the COMMIT's thread never started: the caller is told it failed,
    # and the next epoch must not commit those rows with its own
    s = await _store(tmp_path)
    real = lane_mod.uncancellable_thread_call
    fail_next = False

    def start(fn: Any) -> Any:
        nonlocal fail_next
        if fail_next:
            fail_next = False
            raise RuntimeError("can't start new thread")
        return real(fn)

    monkeypatch.setattr(lane_mod, "uncancellable_thread_call", start)
    with pytest.raises(StoreError):
        async with s.transaction(Address("bob", 1)) as tx:
            await tx.set_meta("failed", b"x")
            fail_next = True
    async with s.transaction(Address("alice", 1)) as tx:
        await tx.set_meta("next", b"y")
    async with s.transaction() as tx:
        assert await tx.get_meta("failed") is None
        assert await tx.get_meta("next") == b"y"
    await s.aclose()


def test_ctrl_c_during_a_statement_on_the_loop_is_still_a_keyboard_interrupt(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    real = Rows.read
    armed = False

    def read(self: Rows, conn: Any, table: str, key: Any) -> Any:
        nonlocal armed
        if armed:
            armed = False
            signal.raise_signal(signal.SIGINT)  # Ctrl-C while the read runs on the trio thread
        return real(self, conn, table, key)

    monkeypatch.setattr(Rows, "read", read)

    async def main() -> None:
        nonlocal armed
        s = await _store(tmp_path)
        try:
            armed = True
            async with s.transaction(Address("bob", 1)) as tx:
                await tx.get_meta("warm")
                await trio.sleep(0.5)
        finally:
            with trio.CancelScope(shield=True):
                await s.aclose()

    with pytest.raises(KeyboardInterrupt):  # not a StoreError, and not swallowed
        trio.run(main)


async def test_a_transaction_the_store_was_closed_under_fails_instead_of_returning(tmp_path: Path) -> None:
    s = await _store(tmp_path)
    with pytest.raises(StoreError, match="closed"):
        async with s.transaction(Address("bob", 1)) as tx:
            await tx.get_meta("warm")
            await s.aclose()  # another task shuts the store down meanwhile
            await tx.set_meta("k", b"v")
    s2 = await open_store(f"sqlite:///{tmp_path / 'k.db'}")
    async with s2.transaction() as tx:
        assert await tx.get_meta("k") is None
    await s2.aclose()


class _Refused(Exception):
    pass


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plans=st.lists(st.tuples(st.integers(0, 3),  # address
                                st.sampled_from(["write", "read", "fail"]),
                                st.integers(0, 2),  # checkpoints inside the body
                                st.integers(0, 2)),  # checkpoints before it starts
                      min_size=1, max_size=12))
def test_concurrent_transactions_commit_exactly_what_they_said(tmp_path: Path, plans: list[tuple[int, str, int, int]]) -> None:
    # random concurrent transactions (writers, readers, bodies that raise; checkpoints anywhere) on
    # one SQLite store: every one that returned has its writes, every one that raised has none, and
    # nothing hangs (epochs and the commits on their threads always end)
    url = f"sqlite:///{tmp_path / f'p{abs(hash(tuple(plans)))}.db'}"

    async def main() -> None:
        s = await open_store(url)
        outcome: dict[int, str] = {}

        async def one(i: int, addr: int, kind: str, inside: int, before: int) -> None:
            for _ in range(before):
                await trio.lowlevel.checkpoint()
            try:
                async with s.transaction(Address(f"u{addr}", 1)) as tx:
                    await tx.get_meta(f"k{i}")
                    if kind != "read":
                        await tx.set_meta(f"k{i}", b"v%d" % i)
                    for _ in range(inside):
                        await trio.lowlevel.checkpoint()
                    if kind == "fail":
                        raise _Refused()
                outcome[i] = "returned"
            except _Refused:
                outcome[i] = "raised"

        with trio.fail_after(30):
            async with trio.open_nursery() as n:
                for i, p in enumerate(plans):
                    n.start_soon(one, i, *p)
        await s.aclose()
        s2 = await open_store(url)
        async with s2.transaction() as tx:
            for i, (_, kind, _, _) in enumerate(plans):
                got = await tx.get_meta(f"k{i}")
                want = b"v%d" % i if kind == "write" and outcome[i] == "returned" else None
                assert got == want, (i, kind, outcome[i], got)
        await s2.aclose()

    trio.run(main)
