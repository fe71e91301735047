"""chatd's group commit: transactions inside ``ChatdDatabase.batch`` are savepoints of one database
transaction (a failing one rolls back alone, the rest commits once); the Committer runs queued calls
in such batches (their statements on the event loop, the COMMIT on a worker thread) and acts on their
results only after the commit, in order."""

from __future__ import annotations

import contextlib
import functools
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from wacrypto.chatd.commit import Committer, Outcome
from wacrypto.chatd.db import ChatdDatabase
from wacrypto.errors import InvalidArgumentError, StoreError

TTL = 100.0


def _put(db: ChatdDatabase, msg_id: str, *, fail: bool = False, abort: bool = False) -> None:
    with db.transaction() as tx:
        tx.enqueue("r", "s", msg_id, b"p", now=1.0, ttl=TTL, shares=None, stranger=False)
        if abort:
            tx.abort()
        if fail:
            raise ValueError("the handler failed")


def _ids(db: ChatdDatabase) -> list[str]:
    return [q.msg_id for q in db.pending("r", now=2.0)]


def test_a_failing_transaction_in_a_batch_rolls_back_alone(tmp_path: Path) -> None:
    db = ChatdDatabase(tmp_path / "chatd.db")
    with db.batch():
        _put(db, "a")
        with pytest.raises(ValueError):
            _put(db, "b", fail=True)
        _put(db, "c", abort=True)
        _put(db, "d")
        with db.batch():  # nested: part of the outer one
            _put(db, "e")
    assert _ids(db) == ["a", "d", "e"]
    db.close()
    assert _ids(ChatdDatabase(tmp_path / "chatd.db")) == ["a", "d", "e"]  # durable


def test_a_batch_that_raises_keeps_nothing(tmp_path: Path) -> None:
    db = ChatdDatabase(tmp_path / "chatd.db")
    _put(db, "before")
    with pytest.raises(RuntimeError):
        with db.batch():
            _put(db, "a")
            raise RuntimeError("stop")
    assert _ids(db) == ["before"]


def test_a_batch_that_cannot_commit_raises_store_error(tmp_path: Path) -> None:
    db = ChatdDatabase(tmp_path / "chatd.db")
    with pytest.raises(StoreError, match="did not commit"):
        with db.batch():
            _put(db, "a")
            # a deferred foreign-key violation: only COMMIT finds it
            db._db.execute("PRAGMA defer_foreign_keys=ON")
            db._db.execute("INSERT INTO prekeys (user, device, key_id, public) VALUES ('nobody', 9, 1, x'00')")
    assert _ids(db) == []


async def test_the_committer_acts_after_commit_in_order_and_batches(tmp_path: Path) -> None:
    db = ChatdDatabase(tmp_path / "chatd.db")
    committer = Committer(db)
    seen: list[tuple[str, list[str]]] = []  # (call, what the database held when its result came)

    def then(name: str) -> Callable[[Outcome[None]], None]:
        def done(res: Outcome[None]) -> None:
            other = ChatdDatabase(tmp_path / "chatd.db")  # another connection: only committed rows
            seen.append((name if res.error is None else f"{name}!", _ids(other)))
            other.close()
        return done

    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        for i in range(50):
            await committer.submit(functools.partial(_put, db, f"m{i:02d}", fail=i % 7 == 3), then(f"m{i:02d}"))
        await committer.call(lambda: None)
        with pytest.raises(ValueError):
            await committer.call(lambda: _put(db, "x", fail=True))
        nursery.cancel_scope.cancel()
    kept = [f"m{i:02d}" for i in range(50) if i % 7 != 3]
    assert [n.rstrip("!") for n, _ in seen] == [f"m{i:02d}" for i in range(50)]  # queue order
    assert [n for n, _ in seen if n.endswith("!")] == [f"m{i:02d}!" for i in range(50) if i % 7 == 3]
    for name, held in seen:  # every result was acted on after its row was durable
        if not name.endswith("!"):
            assert name in held
    assert _ids(db) == kept
    assert committer.batches < 50  # calls queued together shared a commit


async def test_a_call_needs_a_running_committer(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="not running"):
        await Committer(ChatdDatabase(tmp_path / "chatd.db")).call(lambda: None)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 3)), min_size=1, max_size=40), st.integers(1, 8))
def test_committed_state_is_the_calls_that_succeeded(tmp_path_factory: pytest.TempPathFactory,
                                                     plan: list[tuple[bool, int]], max_batch: int) -> None:
    """Whatever the batch size and the mix of failing calls and pauses between submissions: the
    database holds exactly the calls that succeeded, and each caller saw its own outcome."""
    path = tmp_path_factory.mktemp("gc") / "chatd.db"
    db = ChatdDatabase(path)
    committer = Committer(db, max_batch=max_batch)
    outcomes: dict[int, bool] = {}

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(committer.run)

            async def one(i: int, fail: bool) -> None:
                try:
                    await committer.call(lambda: _put(db, f"m{i:03d}", fail=fail))
                    outcomes[i] = True
                except ValueError:
                    outcomes[i] = False

            async with trio.open_nursery() as calls:
                for i, (fail, pause) in enumerate(plan):
                    calls.start_soon(one, i, fail)
                    for _ in range(pause):
                        await trio.lowlevel.checkpoint()
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert outcomes == {i: not fail for i, (fail, _) in enumerate(plan)}
    assert sorted(_ids(db)) == [f"m{i:03d}" for i, (fail, _) in enumerate(plan) if not fail]  # (tasks start in any order)
    assert committer.calls == len(plan) and committer.batches <= len(plan)
    db.close()


async def _cancelled_with_calls_queued(db: ChatdDatabase, committer: Committer, while_first: Callable[[], Any],
                                       then: Callable[[], object]) -> dict[str, object]:
    """Call "first"; once ``while_first()`` says its batch is under way, queue q1 and q2, cancel the
    committer, run ``then``; what each call gave."""
    results: dict[str, object] = {}

    async def caller(name: str) -> None:
        try:
            results[name] = await committer.call(functools.partial(_put, db, name))
        except StoreError as exc:
            results[name] = exc

    with trio.fail_after(10):
        async with trio.open_nursery() as outer:
            async with trio.open_nursery() as inner:
                await inner.start(committer.run)
                outer.start_soon(caller, "first")
                while not while_first():
                    await trio.sleep(0.01)
                for name in ("q1", "q2"):
                    outer.start_soon(caller, name)
                await trio.sleep(0.05)
                inner.cancel_scope.cancel()
                then()
    return results


def _after_the_cancel(db: ChatdDatabase, results: dict[str, object]) -> None:
    assert results["first"] is None  # its batch had started: it ran to its commit
    assert isinstance(results["q1"], StoreError) and isinstance(results["q2"], StoreError)
    assert _ids(db) == ["first"]


async def test_calls_left_when_the_committer_stops_during_a_commit_fail_instead_of_waiting(tmp_path: Path) -> None:
    # cancelled while a batch's COMMIT runs on its thread and more are queued: the batch commits,
    # the queued calls get StoreError (none committed); afterwards call and submit raise at once
    db = ChatdDatabase(tmp_path / "chatd.db")
    committer = Committer(db, max_batch=1)
    committing = threading.Event()
    real_commit = db.commit_batch

    def slow_commit() -> None:  # the real COMMIT, after a pause (a slow disk)
        committing.set()
        time.sleep(0.3)
        real_commit()

    db.commit_batch = slow_commit  # type: ignore[method-assign]
    results = await _cancelled_with_calls_queued(db, committer, committing.is_set, lambda: None)
    _after_the_cancel(db, results)
    with pytest.raises(StoreError):
        await committer.call(functools.partial(_put, db, "late"))
    with pytest.raises(StoreError):
        await committer.submit(functools.partial(_put, db, "late"), lambda _: None)


async def test_calls_left_when_the_committer_stops_waiting_for_the_file_lock_fail_too(tmp_path: Path) -> None:
    # another process holds the file's write lock: the batch waits for it on a thread; cancelled
    # meanwhile, it still runs and commits once the lock is free, the queued calls get StoreError
    db = ChatdDatabase(tmp_path / "chatd.db")
    committer = Committer(db, max_batch=1)
    other = sqlite3.connect(tmp_path / "chatd.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    polls = 0

    def waiting() -> bool:  # the first batch has had time to start waiting on its thread
        nonlocal polls
        polls += 1
        return polls > 10

    try:
        results = await _cancelled_with_calls_queued(db, committer, waiting, lambda: other.execute("ROLLBACK"))
    finally:
        other.close()
    _after_the_cancel(db, results)


async def test_a_failing_commit_fails_its_calls_and_ends_the_committer(tmp_path: Path) -> None:
    db = ChatdDatabase(tmp_path / "chatd.db")
    committer = Committer(db)
    got: list[object] = []

    class FailingCommit:  # the database's connection, whose COMMIT fails (a full disk, say)
        def __init__(self, conn: sqlite3.Connection) -> None:
            self.conn = conn

        def execute(self, sql: str, *args: object) -> object:
            if sql == "COMMIT":
                raise sqlite3.OperationalError("database or disk is full")
            return self.conn.execute(sql, *args)

        def __getattr__(self, name: str) -> object:
            return getattr(self.conn, name)

    def doomed() -> None:
        _put(db, "a")
        db._db = FailingCommit(db._db)  # type: ignore[assignment]

    async def caller() -> None:
        try:
            got.append(await committer.call(doomed))
        except StoreError as exc:
            got.append(exc)

    with trio.fail_after(10):
        with pytest.raises(BaseException) as info:
            async with trio.open_nursery() as nursery:
                await nursery.start(committer.run)
                nursery.start_soon(caller)
        assert info.group_contains(StoreError)  # out of run(): the server stops, loudly
    assert len(got) == 1 and isinstance(got[0], StoreError)
    db._db = db._db.conn  # type: ignore[attr-defined]
    assert _ids(db) == []  # nothing of the batch was kept


def test_a_batch_awaiting_its_commit_keeps_other_threads_waiting(tmp_path: Path) -> None:
    # the statements ran on this thread, the COMMIT has not yet: a transaction of another thread
    # waits for it (it would otherwise begin inside the batch's open transaction), then sees it
    db = ChatdDatabase(tmp_path / "chatd.db")
    assert db.open_batch()
    _put(db, "a")
    db.pause_batch()
    seen: list[list[str]] = []
    reader = threading.Thread(target=lambda: seen.append(_ids(db)))
    reader.start()
    reader.join(0.3)
    assert reader.is_alive() and not seen  # waiting
    committer = threading.Thread(target=db.commit_batch)
    committer.start()
    committer.join(5)
    reader.join(5)
    assert seen == [["a"]]
    # a batch dropped instead: nothing of it kept, the database goes on
    assert db.open_batch()
    _put(db, "b")
    db.abort_batch()
    assert _ids(db) == ["a"]


async def test_a_read_on_the_event_loop_while_a_batch_commits_waits_only_for_that_commit(tmp_path: Path) -> None:
    # a transaction opened on the loop's thread (the demo reads chatd's database in process) while a
    # batch awaits its COMMIT waits for it, on its already started thread; it must never wait for a
    # thread that only the (now blocked) loop could start
    db = ChatdDatabase(tmp_path / "chatd.db")
    committer = Committer(db)
    seen: list[list[str]] = []
    finished = threading.Event()
    deadlocked = threading.Event()

    def watchdog() -> None:  # breaks a deadlock after 5 s so that the test can fail instead of hang
        if not finished.wait(5):
            deadlocked.set()
            with db._lock:
                db._rollback_quietly()
                db._awaiting_commit = False
                db._idle.notify_all()

    async def reader() -> None:
        while not db._awaiting_commit:
            await trio.lowlevel.checkpoint()
        threading.Thread(target=watchdog, daemon=True).start()
        seen.append(_ids(db))  # on the trio thread
        finished.set()

    with contextlib.suppress(StoreError):  # (after a broken deadlock the batch's COMMIT fails)
        async with trio.open_nursery() as n:
            await n.start(committer.run)
            n.start_soon(reader)
            await trio.lowlevel.checkpoint()
            await committer.call(functools.partial(_put, db, "a"))
            with trio.fail_after(10):
                while not seen:
                    await trio.sleep(0.01)
            n.cancel_scope.cancel()
    assert not deadlocked.is_set()
    assert seen == [["a"]]  # it waited for the commit, then saw it
