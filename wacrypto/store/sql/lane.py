"""A lane: one database connection, the batching of its requests and its epochs (group commit).

See :mod:`wacrypto.store.sql.engine` for how a transaction runs through a lane. Methods named ``_t_*``
run on the worker thread inside a hop; the others on the trio side.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import trio
from trio.lowlevel import enable_ki_protection

from wacrypto.errors import StoreError
from wacrypto.store.sql.dialect import Conn, Dialect
from wacrypto.store.sql.rows import Rows
from wacrypto.store.sql.schema import ACCOUNT_TABLES
from wacrypto.store.sql.sync import Gate
from wacrypto.threads import uncancellable_thread_call

if TYPE_CHECKING:
    from wacrypto.store.sql.transaction import SqlTransaction

__all__ = ["Lane"]

T = TypeVar("T")


class _Req:
    """A request queued on a lane: run in the next thread hop, answered in place."""

    __slots__ = ("fn", "result", "error", "done", "admit")

    def __init__(self, fn: Callable[[], Any], admit: SqlTransaction | None = None) -> None:
        self.fn = fn
        self.admit = admit
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = False


class Lane:
    """One connection, its request batching and its epochs (how they run: :mod:`wacrypto.store.sql.engine`)."""

    def __init__(self, dialect: Dialect, rows: Rows, fence: Callable[[Conn], None], index: int) -> None:
        self.dialect = dialect
        self.rows = rows
        self.fence = fence  # inside a write transaction: raises unless this instance may still write
        self.index = index
        self.conn: Conn | None = None
        # trio side
        self.pending: list[_Req] = []
        self.busy = False
        self.hop_done = Gate()
        self.members = 0
        self.finished: list[SqlTransaction] = []
        self.closing = False
        self.epoch_end = Gate()
        # worker side (only touched inside a hop)
        self.in_tx = False
        self.held: set[str] = set()
        self.poisoned = False

    # ------------------------------------------------------------------ batching
    def _free(self) -> bool:
        """True when a request may run here, on the trio thread, instead of in a thread hop.

        Only on a dialect whose statements do not wait on the network (SQLite: a read from the page
        cache takes microseconds, a hop to a worker thread and back costs far more), with the
        connection open and no hop using it.
        """
        conn = self.conn
        return self.dialect.inline and not self.busy and conn is not None and not conn.broken

    @enable_ki_protection  # its statements may run on the trio thread: Ctrl-C waits for them
    async def call(self, fn: Callable[[], T], admit: SqlTransaction | None = None, *, inline: bool = False) -> T:
        # Every wait in here is uncancellable (a request, once queued, runs to completion).
        if inline and self._free():
            return fn()
        req = _Req(fn, admit)
        self.pending.append(req)
        while not req.done:
            if self.busy:
                await self.hop_done.wait()
                continue
            self.busy = True
            try:
                await trio.lowlevel.cancel_shielded_checkpoint()  # let transactions woken together queue theirs
                batch, self.pending = self.pending, []
                try:
                    await uncancellable_thread_call(lambda: self._run_batch(batch))
                except BaseException as exc:  # no thread could start: every request of it gets the error
                    for r in batch:
                        if not r.done:
                            r.error = exc if isinstance(exc, Exception) else StoreError(f"store hop failed: {exc!r}")
                            r.done = True
                    if not isinstance(exc, Exception):
                        raise
            finally:
                self.busy = False
                ev, self.hop_done = self.hop_done, Gate()
                ev.set()
        if req.error is not None:
            raise req.error
        return req.result  # type: ignore[no-any-return]

    def _run_batch(self, batch: list[_Req]) -> None:
        try:
            admits = [r for r in batch if r.admit is not None]
            if len(admits) > 1:
                self._t_admit_many(admits)
            for req in batch:
                if req.done:
                    continue
                try:
                    req.result = req.fn()
                except BaseException as exc:  # noqa: BLE001 - delivered to the waiting task
                    req.error = exc
                req.done = True
        except BaseException as exc:  # noqa: BLE001 - never leave a waiting request without an answer
            for req in batch:
                if not req.done:
                    req.error = exc
                    req.done = True

    # ------------------------------------------------------------------ worker-side steps
    def _ensure_conn(self) -> Conn:
        if self.conn is not None and self.conn.broken:
            self.conn.close()
            self.conn = None
        if self.conn is None:
            self.conn = self.dialect.connect()
        return self.conn

    def _fail(self, exc: BaseException) -> StoreError:
        d = self.dialect
        err = d.wrap(exc)
        if d.is_unavailable(exc) and self.conn is not None:
            self.conn.broken = True
        return err

    def _t_admit(self, tx: SqlTransaction) -> bool:
        try:
            return bool(self._admit([tx]))
        except BaseException as exc:
            self.poisoned = True
            raise self._fail(exc) from exc

    def _admit_here(self, tx: SqlTransaction) -> bool:
        """Admit ``tx`` on the trio thread if the epoch is open or its database transaction can begin at
        once (SQLite: the write lock is free); False when it must take a thread hop (that one waits)."""
        if not self.in_tx:
            assert self.conn is not None
            try:
                if not self.dialect.begin_nowait(self.conn):
                    return False
            except BaseException as exc:
                raise self._fail(exc) from exc
            self.in_tx = True
            self.held = set()
            self.poisoned = False
        return self._t_admit(tx)

    def _t_admit_many(self, reqs: list[_Req]) -> None:
        """Admit several transactions with one lock statement and one read per table (one hop)."""
        try:
            ok = self._admit([r.admit for r in reqs if r.admit is not None])
            for r in reqs:
                r.result = id(r.admit) in ok
                r.done = True
        except BaseException as exc:
            self.poisoned = True
            err = self._fail(exc)
            for r in reqs:
                r.error = err
                r.done = True

    def _admit(self, txs: list[SqlTransaction]) -> set[int]:
        """Open the database transaction if needed, lock and read ahead; the ids of the admitted ones.

        On PostgreSQL every statement goes in one pipeline: one round trip. The rows are read after the
        locks (in statement order), for every candidate; those of transactions not admitted are dropped.
        """
        d = self.dialect
        rows = self.rows
        conn = self._ensure_conn()
        first: list[str] = []
        got: Callable[[], set[str]] | None = None
        with conn.pipeline():
            if not self.in_tx:
                d.begin(conn)
                self.in_tx = True
                self.held = set()
                self.poisoned = False
            if d.locks_per_address:
                rest = txs
                if not self.held:
                    # holding nothing, this epoch may wait without risk of a deadlock between processes
                    first = [k for k in txs[0].keys]
                    d.wait_lock(conn, first)
                    rest = txs[1:]
                want = sorted({k for t in rest for k in t.keys} - self.held - set(first))
                if want:
                    got = d.send_try_lock_many(conn, want)
            keys = sorted({k for t in txs for k in t.keys if k})
            f_sessions = rows.send_read_many(conn, "session", keys)
            f_idents = rows.send_read_many(conn, "identity", keys)
        self.held.update(first)
        if got is not None:
            self.held.update(got())
        sessions = f_sessions()
        idents = f_idents()
        held = self.held
        ok: set[int] = set()
        for t in txs:
            if d.locks_per_address and not all(k in held for k in t.keys):
                continue
            ok.add(id(t))
            for k in t.keys:
                if k:
                    t.prefetched[("session", k)] = sessions.get(k)
                    t.prefetched[("identity", k)] = idents.get(k)
        return ok

    async def read(self, fn: Callable[[Conn], T]) -> T:
        """Run ``fn(conn)`` inside the open epoch (on SQLite without a thread hop)."""
        return await self.call(lambda: self.t_read(fn), inline=True)

    def t_read(self, fn: Callable[[Conn], T]) -> T:
        if self.conn is None or not self.in_tx:
            raise StoreError("internal: read outside an epoch")
        try:
            return fn(self.conn)
        except BaseException as exc:
            self.poisoned = True
            raise self._fail(exc) from exc

    def _t_end(self, txs: list[SqlTransaction], *, commit: bool = True) -> None:
        """Write the overlays of ``txs`` and commit (none: roll back). ``commit=False`` stops before the
        COMMIT, which the caller then runs with :meth:`_t_commit` (SQLite: on a thread, for its fsync)."""
        if self.conn is None or not self.in_tx:
            if txs:  # the store was closed under them: they must not return as if committed
                raise StoreError("the store was closed before this transaction committed")
            return
        conn = self.conn
        d = self.dialect
        ended = True
        try:
            if txs and self.poisoned:
                raise StoreError("an earlier statement of this transaction failed; rolled back")
            if txs:
                self.fence(conn)
                merged: dict[tuple[str, Any], Any] = {}
                wipe = False
                for t in txs:
                    if t.wiped:
                        merged.clear()
                        wipe = True
                    merged.update(t.overlay)
                with conn.pipeline():  # PostgreSQL: the writes and the COMMIT in one round trip
                    if wipe:
                        for table in ACCOUNT_TABLES:
                            conn.send(f"DELETE FROM {table}")
                    self.rows.apply(conn, merged, time.time())
                    if commit:
                        d.commit(conn)
                ended = commit
            else:
                d.rollback(conn)
        except BaseException as exc:
            ended = True
            self._t_rollback(conn)
            raise self._fail(exc) from exc
        finally:
            if ended:
                self._t_closed(conn)

    def _t_commit(self) -> None:
        """The COMMIT that ``_t_end(txs, commit=False)`` left."""
        conn = self.conn
        if conn is None or not self.in_tx:
            raise StoreError("internal: commit outside an epoch")
        try:
            self.dialect.commit(conn)
        except BaseException as exc:
            self._t_rollback(conn)
            raise self._fail(exc) from exc
        finally:
            self._t_closed(conn)

    def _t_rollback(self, conn: Conn) -> None:
        try:
            self.dialect.rollback(conn)
        except BaseException:
            conn.broken = True

    def _t_closed(self, conn: Conn) -> None:
        """The epoch's database transaction has ended: release what it held."""
        self.in_tx = False
        held, self.held = self.held, set()
        if held and not conn.broken:
            try:
                self.dialect.release_locks(conn, list(held))
            except BaseException:
                conn.broken = True

    # ------------------------------------------------------------------ epochs (trio side)
    @enable_ki_protection  # its statements may run on the trio thread: Ctrl-C waits for them
    async def join(self, tx: SqlTransaction) -> None:
        while True:
            waited = False
            while self.closing:
                waited = True
                await self.epoch_end.wait(cancellable=True)
            self.members += 1
            try:
                if waited:
                    # woken with the others that waited for this epoch: let them all join it before any
                    # of us can finish and close it (else each would commit alone)
                    await trio.lowlevel.cancel_shielded_checkpoint()
                if self._free() and self._admit_here(tx):
                    return  # one writer per SQLite file: nothing to try again
                admitted = await self.call(lambda: self._t_admit(tx), admit=tx)
            except BaseException:
                await self._leave()
                raise
            if admitted:
                return
            # another process holds one of the addresses: let this epoch finish, then wait in a fresh one
            self.closing = True
            ev = self.epoch_end
            await self._leave()
            await ev.wait()

    async def _leave(self) -> None:
        self.members -= 1
        if self.members == 0:
            await self._end_epoch()

    @enable_ki_protection  # its statements may run on the trio thread: Ctrl-C waits for them
    async def finish(self, tx: SqlTransaction, success: bool) -> None:
        if success and tx.has_writes():
            self.finished.append(tx)
            self.closing = True
            ev = self.epoch_end
            await self._leave()  # uncancellable: its only waits are inside call()
            await ev.wait()
            if tx.commit_error is not None:
                raise tx.commit_error
        else:
            await self._leave()
            if self.dialect.inline:
                # a read-only transaction may have run without a hop: still a checkpoint, as before
                await trio.lowlevel.cancel_shielded_checkpoint()

    async def _end_epoch(self) -> None:
        self.closing = True
        txs, self.finished = self.finished, []
        ev = self.epoch_end
        try:
            if txs and self._free():
                # SQLite: the statements here, only the COMMIT (its fsync) on a worker thread; while
                # it runs, the transactions that arrive gather for the next epoch (group commit)
                self._t_end(txs, commit=False)
                try:
                    await self.call(self._t_commit)
                except BaseException:
                    if self.in_tx and self.conn is not None:
                        # the COMMIT never ran (no thread could start): drop what the epoch wrote, so
                        # a later epoch cannot commit what these transactions were told failed
                        self._t_rollback(self.conn)
                        self._t_closed(self.conn)
                    raise
            else:
                await self.call(lambda: self._t_end(txs), inline=not txs)
        except BaseException as exc:
            err = exc if isinstance(exc, StoreError) else StoreError(f"commit failed: {exc!r}")
            for t in txs:
                t.commit_error = err
        finally:
            self.closing = False
            self.epoch_end = Gate()
            ev.set()

    def close(self) -> None:
        if self.conn is not None:
            if self.in_tx:
                try:
                    self.dialect.rollback(self.conn)
                except BaseException:
                    pass
            self.conn.close()
            self.conn = None
