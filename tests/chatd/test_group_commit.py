"""chatd's group commit: transactions inside ``ChatdDatabase.batch`` are savepoints of one database
transaction (a failing one rolls back alone, the rest commits once); the Committer runs queued calls
in such batches off the event loop and acts on their results only after the commit, in order."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable
from pathlib import Path

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


async def test_calls_left_when_the_committer_stops_fail_instead_of_waiting_forever(tmp_path: Path) -> None:
    # cancelled while a batch runs and more are queued: the queued calls (and a batch that never
    # started) get StoreError, none of them committed; afterwards call and submit raise at once
    db = ChatdDatabase(tmp_path / "chatd.db")
    committer = Committer(db, max_batch=1)
    started = trio.Event()
    token = trio.lowlevel.current_trio_token()
    results: dict[str, object] = {}

    def slow() -> None:
        token.run_sync_soon(started.set)
        _put(db, "slow")
        import time
        time.sleep(0.3)

    async def caller(name: str, fn: Callable[[], None]) -> None:
        try:
            results[name] = await committer.call(fn)
        except StoreError as exc:
            results[name] = exc

    with trio.fail_after(10):
        async with trio.open_nursery() as outer:
            async with trio.open_nursery() as inner:
                await inner.start(committer.run)
                outer.start_soon(caller, "slow", slow)
                await started.wait()
                for name in ("q1", "q2"):
                    outer.start_soon(caller, name, functools.partial(_put, db, name))
                await trio.sleep(0.05)
                inner.cancel_scope.cancel()
    assert results["slow"] is None  # its batch had started: it ran to its commit
    assert isinstance(results["q1"], StoreError) and isinstance(results["q2"], StoreError)
    assert _ids(db) == ["slow"]
    with pytest.raises(StoreError):
        await committer.call(functools.partial(_put, db, "late"))
    with pytest.raises(StoreError):
        await committer.submit(functools.partial(_put, db, "late"), lambda _: None)


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
