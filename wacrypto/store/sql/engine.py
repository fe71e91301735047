"""The SQL key store: one engine for SQLite, PostgreSQL and MySQL/MariaDB.

How a transaction runs
----------------------
``transaction(*addresses)`` first takes an in-process lock per address (sorted order), then joins an
*epoch* on one of the store's *lanes*. A lane owns one database connection and a worker thread hop at a
time (``trio.to_thread.run_sync`` with a :class:`trio.CapacityLimiter` sized to the pool). An epoch is one
database transaction shared by several logical transactions on disjoint addresses:

1. **admit** -- the database transaction is opened if needed (SQLite ``BEGIN IMMEDIATE``), the addresses
   are locked across processes (PostgreSQL ``pg_advisory_xact_lock``, MySQL ``GET_LOCK``), and the
   session and identity rows of those addresses are read ahead;
2. the caller's body runs; its writes go to a private overlay (compute on a copy);
3. **commit** -- when the body succeeds the overlay is queued; when the last member of the epoch is done,
   every queued overlay is written with ``executemany`` and the database transaction commits: one round
   trip and one fsync for the whole group (group commit). Each member returns only after that commit.

A body that raises simply drops its overlay: nothing it wrote reaches the database. The requests of
concurrent transactions that reach a lane together are run in one thread hop, so a busy store pays a
handful of hops per group instead of several per message.

Address locks are taken with *try* semantics when the epoch already holds locks, and with a blocking wait
only when it holds none, so two processes can never deadlock on each other's address locks.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import socket
import time
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final, TypeVar, final

import outcome
import trio
from trio.lowlevel import Abort, Task, current_task, current_trio_token, reschedule, wait_task_rescheduled

from wacrypto.address import Address
from wacrypto.errors import (
    InstanceConflictError,
    InvalidArgumentError,
    LeaseLostError,
    NoPreKeyError,
    StoreError,
)
from wacrypto.limits import DEFAULT_LEASE_SECONDS
from wacrypto.store.atrest import AtRestKey
from wacrypto.store.dump import StoreDump
from wacrypto.store.protocols import LocalIdentity, OutboxEntry, Transaction
from wacrypto.store.sql.dialect import Conn, Dialect
from wacrypto.store.sql.schema import ACCOUNT_TABLES, LATEST_VERSION, current_version, migrate

__all__ = ["SqlKeyStore", "SqlTransaction"]

T = TypeVar("T")
_DELETED: Final = object()
_ACCOUNT_KEY: Final = ""  # lock key of transactions that name no address


def _kh(*parts: bytes) -> bytes:
    h = hashlib.sha256()
    for p in parts:
        h.update(len(p).to_bytes(4, "big"))
        h.update(p)
    return h.digest()


@functools.lru_cache(maxsize=1 << 16)
def _skh(key: str) -> bytes:
    """The row key of a one-part name (address, meta key, message id); cached, as every message needs it."""
    return _kh(key.encode())


def _addr_key(a: Address | str) -> str:
    return str(a)


def _label(table: str, key: bytes) -> bytes:
    return table.encode() + b"\x00" + key


def _idb(i: int) -> bytes:
    return int(i).to_bytes(8, "big", signed=True)


class _Gate:
    """A one-shot event whose waiters are parked directly on the scheduler.

    ``wait()`` cannot be cancelled (like an ``Event.wait`` inside a shielded cancel scope, without the cost
    of a cancel scope per wait); ``wait(cancellable=True)`` can.
    """

    __slots__ = ("is_set", "_tasks")

    def __init__(self) -> None:
        self.is_set = False
        self._tasks: list[Task] = []

    def set(self) -> None:
        self.is_set = True
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            reschedule(t)

    async def wait(self, *, cancellable: bool = False) -> None:
        if self.is_set:
            return
        task = current_task()
        self._tasks.append(task)
        if not cancellable:
            await wait_task_rescheduled(lambda _: Abort.FAILED)
            return

        def abort(_: Any) -> Abort:
            self._tasks.remove(task)
            return Abort.SUCCEEDED

        await wait_task_rescheduled(abort)


def _uncancellable_thread_call(fn: Callable[[], T]) -> Any:
    """Run ``fn`` on a cached worker thread; the awaiting task cannot be cancelled meanwhile."""
    task = current_task()
    token = current_trio_token()

    def deliver(result: outcome.Outcome[T]) -> None:
        try:
            token.run_sync_soon(reschedule, task, result)
        except trio.RunFinishedError:  # pragma: no cover - the run ended under us
            pass

    trio.lowlevel.start_thread_soon(fn, deliver, name="wacrypto store lane")
    return wait_task_rescheduled(lambda _: Abort.FAILED)


class _AddrLock:
    """The in-process lock of one address: created held, dropped when its last user leaves.

    Cheaper than a ``trio.Lock`` per address (a fan-out takes hundreds at once); waiters park on a
    lot made only under contention, and a release hands the lock to the first waiter (FIFO, no barging).
    """

    __slots__ = ("busy", "refs", "lot")

    def __init__(self) -> None:
        self.busy = True
        self.refs = 1  # holder + waiters
        self.lot: trio.lowlevel.ParkingLot | None = None

    async def acquire(self) -> None:
        if not self.busy:  # (not reached in practice: an idle lock is dropped by its last user)
            self.busy = True
            return
        if self.lot is None:
            self.lot = trio.lowlevel.ParkingLot()
        await self.lot.park()  # woken by release() with the lock already ours

    def release(self) -> None:
        if self.lot:
            self.lot.unpark()  # hand over: busy stays True
        else:
            self.busy = False


class _Req:
    __slots__ = ("fn", "result", "error", "done", "admit")

    def __init__(self, fn: Callable[[], Any], admit: SqlTransaction | None = None) -> None:
        self.fn = fn
        self.admit = admit
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = False


# =====================================================================================  row codec
class _Rows:
    """Synchronous reads and writes of account rows on a connection (worker-thread side)."""

    def __init__(self, dialect: Dialect, key: AtRestKey | None) -> None:
        self.d = dialect
        self.key = key
        self._upserts: dict[str, str] = {}

    def seal(self, table: str, rk: bytes, v: bytes) -> bytes:
        return self.key.seal(_label(table, rk), v) if self.key is not None else v

    def open(self, table: str, rk: bytes, v: Any) -> bytes:
        b = bytes(v)
        return self.key.open(_label(table, rk), b) if self.key is not None else b

    def upsert_sql(self, table: str, cols: Sequence[str], pk: Sequence[str]) -> str:
        s = self._upserts.get(table)
        if s is None:
            s = self._upserts[table] = self.d.upsert(table, cols, pk)
        return s

    # ------------------------------------------------------------------ reads
    def read(self, conn: Conn, table: str, key: Any) -> Any:
        if table == "session":
            kh = _skh(key)
            r = conn.query("SELECT record FROM wa_session WHERE kh = ?", [kh])
            return self.open("wa_session", kh, r[0][0]) if r else None
        if table == "identity":
            kh = _skh(key)
            r = conn.query("SELECT identity_key FROM wa_identity WHERE kh = ?", [kh])
            return bytes(r[0][0]) if r else None
        if table == "local":
            r = conn.query("SELECT identity_pair, registration_id FROM wa_local WHERE id = 1")
            return LocalIdentity(self.open("wa_local", _idb(1), r[0][0]), int(r[0][1])) if r else None
        if table == "prekey":
            r = conn.query("SELECT record FROM wa_prekey WHERE id = ?" + self.d.for_update, [key])
            return self.open("wa_prekey", _idb(key), r[0][0]) if r else None
        if table == "signed":
            r = conn.query("SELECT record FROM wa_signed_prekey WHERE id = ?", [key])
            return self.open("wa_signed_prekey", _idb(key), r[0][0]) if r else None
        if table == "senderkey":
            g, s = key
            kh = _kh(g.encode(), s.encode())
            r = conn.query("SELECT record FROM wa_sender_key WHERE kh = ?", [kh])
            return self.open("wa_sender_key", kh, r[0][0]) if r else None
        if table == "meta":
            kh = _skh(key)
            r = conn.query("SELECT v FROM wa_meta WHERE kh = ?", [kh])
            return self.open("wa_meta", kh, r[0][0]) if r else None
        if table == "received":
            r = conn.query("SELECT plaintext, handled, at FROM wa_received WHERE digest = ?", [key])
            return (self.open("wa_received", key, r[0][0]), bool(r[0][1]), float(r[0][2])) if r else None
        if table == "outbox":
            kh = _skh(key)
            r = conn.query("SELECT message_id, address, msg_type, body, created_at FROM wa_outbox WHERE kh = ?", [kh])
            return self._outbox_row(kh, r[0]) if r else None
        raise AssertionError(table)

    def _outbox_row(self, kh: bytes, r: tuple[Any, ...]) -> OutboxEntry:
        return OutboxEntry(
            bytes(r[0]).decode(), bytes(r[1]).decode(), int(r[2]), self.open("wa_outbox", kh, r[3]), float(r[4])
        )

    def read_many(self, conn: Conn, table: str, keys: Sequence[str]) -> dict[str, bytes]:
        """Session records or identity keys of several addresses in one statement."""
        return self.send_read_many(conn, table, keys)()

    def send_read_many(self, conn: Conn, table: str, keys: Sequence[str]) -> Callable[[], dict[str, bytes]]:
        """``read_many`` usable inside ``conn.pipeline()``: call the result after the block."""
        if not keys:
            return dict
        by_kh = {_skh(k): k for k in keys}
        params: list[Any]
        if self.d.name == "postgresql":
            # one statement text for any number of keys, so the driver prepares it once
            cond, params = "kh = ANY(?)", [list(by_kh)]
        else:
            cond, params = "kh IN (" + ", ".join("?" for _ in by_kh) + ")", [*by_kh]
        if table == "session":
            fetch = conn.send(f"SELECT kh, record FROM wa_session WHERE {cond}", params)
            return lambda: {by_kh[bytes(kh)]: self.open("wa_session", bytes(kh), v) for kh, v in fetch()}
        fetch = conn.send(f"SELECT kh, identity_key FROM wa_identity WHERE {cond}", params)
        return lambda: {by_kh[bytes(kh)]: bytes(v) for kh, v in fetch()}

    def keys(self, conn: Conn, table: str) -> list[Any]:
        if table == "prekey":
            return [int(r[0]) for r in conn.query("SELECT id FROM wa_prekey")]
        if table == "signed":
            return [int(r[0]) for r in conn.query("SELECT id FROM wa_signed_prekey")]
        if table == "session":
            return [bytes(r[0]).decode() for r in conn.query("SELECT address FROM wa_session")]
        raise AssertionError(table)

    def outbox_first(self, conn: Conn, limit: int) -> list[OutboxEntry]:
        rows = conn.query(
            "SELECT kh, message_id, address, msg_type, body, created_at FROM wa_outbox"
            " ORDER BY created_at, message_id LIMIT ?",
            [limit],
        )
        return [self._outbox_row(bytes(r[0]), r[1:]) for r in rows]

    def prunable(self, conn: Conn, before: float) -> list[bytes]:
        rows = conn.query("SELECT digest FROM wa_received WHERE handled = 1 AND at < ?", [before])
        return [bytes(r[0]) for r in rows]

    # ------------------------------------------------------------------ writes
    def apply(self, conn: Conn, merged: dict[tuple[str, Any], Any], now: float) -> None:
        ups: dict[str, list[list[Any]]] = {}
        dels: dict[str, list[list[Any]]] = {}
        for (table, key), v in merged.items():
            if v is _DELETED:
                t, pk = self._pk(table, key)
                dels.setdefault(t, []).append(pk)
                continue
            ups.setdefault(table, []).append(self._row(table, key, v, now))
        for t, rows in dels.items():
            col = "id" if t in ("wa_prekey", "wa_signed_prekey", "wa_local") else ("digest" if t == "wa_received" else "kh")
            conn.executemany(f"DELETE FROM {t} WHERE {col} = ?", rows)
        for table, rows in ups.items():
            t, cols, pk = _SPEC[table]
            conn.executemany(self.upsert_sql(t, cols, pk), rows)

    def _pk(self, table: str, key: Any) -> tuple[str, list[Any]]:
        t = _SPEC[table][0]
        if table in ("prekey", "signed"):
            return t, [key]
        if table == "local":
            return t, [1]
        if table == "received":
            return t, [key]
        if table == "senderkey":
            return t, [_kh(key[0].encode(), key[1].encode())]
        return t, [_skh(key)]

    def _row(self, table: str, key: Any, v: Any, now: float) -> list[Any]:
        if table == "session":
            kh = _skh(key)
            return [kh, key.encode(), self.seal("wa_session", kh, v), now]
        if table == "identity":
            kh = _skh(key)
            return [kh, key.encode(), v, now]
        if table == "local":
            return [1, self.seal("wa_local", _idb(1), v.identity_pair), v.registration_id, now]
        if table == "prekey":
            return [key, self.seal("wa_prekey", _idb(key), v), now]
        if table == "signed":
            return [key, self.seal("wa_signed_prekey", _idb(key), v), now]
        if table == "senderkey":
            kh = _kh(key[0].encode(), key[1].encode())
            return [kh, key[0].encode(), key[1].encode(), self.seal("wa_sender_key", kh, v), now]
        if table == "meta":
            kh = _skh(key)
            return [kh, key.encode(), self.seal("wa_meta", kh, v), now]
        if table == "received":
            pt, handled, at = v
            return [key, self.seal("wa_received", key, pt), 1 if handled else 0, at]
        if table == "outbox":
            kh = _skh(key)
            e: OutboxEntry = v
            return [kh, e.message_id.encode(), e.address.encode(), e.msg_type, self.seal("wa_outbox", kh, e.body), e.created_at]
        raise AssertionError(table)

    # ------------------------------------------------------------------ whole-account dump / load
    def dump(self, conn: Conn) -> StoreDump:
        d = StoreDump()
        r = conn.query("SELECT identity_pair, registration_id FROM wa_local WHERE id = 1")
        if r:
            d.local = LocalIdentity(self.open("wa_local", _idb(1), r[0][0]), int(r[0][1]))
        for a, k in conn.query("SELECT address, identity_key FROM wa_identity"):
            d.identities[bytes(a).decode()] = bytes(k)
        for i, rec in conn.query("SELECT id, record FROM wa_prekey"):
            d.prekeys[int(i)] = self.open("wa_prekey", _idb(int(i)), rec)
        for i, rec in conn.query("SELECT id, record FROM wa_signed_prekey"):
            d.signed_prekeys[int(i)] = self.open("wa_signed_prekey", _idb(int(i)), rec)
        for kh, a, rec in conn.query("SELECT kh, address, record FROM wa_session"):
            d.sessions[bytes(a).decode()] = self.open("wa_session", bytes(kh), rec)
        for kh, g, s, rec in conn.query("SELECT kh, group_id, sender, record FROM wa_sender_key"):
            d.sender_keys[(bytes(g).decode(), bytes(s).decode())] = self.open("wa_sender_key", bytes(kh), rec)
        for kh, k, v in conn.query("SELECT kh, k, v FROM wa_meta"):
            d.meta[bytes(k).decode()] = self.open("wa_meta", bytes(kh), v)
        for dg, pt, h, at in conn.query("SELECT digest, plaintext, handled, at FROM wa_received"):
            d.received[bytes(dg)] = (self.open("wa_received", bytes(dg), pt), bool(h), float(at))
        for row in conn.query("SELECT kh, message_id, address, msg_type, body, created_at FROM wa_outbox"):
            e = self._outbox_row(bytes(row[0]), row[1:])
            d.outbox[e.message_id] = e
        return d

    def load(self, conn: Conn, d: StoreDump, now: float) -> None:
        for t in ACCOUNT_TABLES:
            conn.execute(f"DELETE FROM {t}")
        merged: dict[tuple[str, Any], Any] = {}
        if d.local is not None:
            merged[("local", 1)] = d.local
        merged.update({("identity", a): v for a, v in d.identities.items()})
        merged.update({("prekey", i): v for i, v in d.prekeys.items()})
        merged.update({("signed", i): v for i, v in d.signed_prekeys.items()})
        merged.update({("session", a): v for a, v in d.sessions.items()})
        merged.update({("senderkey", k): v for k, v in d.sender_keys.items()})
        merged.update({("meta", k): v for k, v in d.meta.items()})
        merged.update({("received", k): v for k, v in d.received.items()})
        merged.update({("outbox", k): v for k, v in d.outbox.items()})
        self.apply(conn, merged, now)


_SPEC: Final[dict[str, tuple[str, list[str], list[str]]]] = {
    "session": ("wa_session", ["kh", "address", "record", "updated_at"], ["kh"]),
    "identity": ("wa_identity", ["kh", "address", "identity_key", "updated_at"], ["kh"]),
    "local": ("wa_local", ["id", "identity_pair", "registration_id", "updated_at"], ["id"]),
    "prekey": ("wa_prekey", ["id", "record", "updated_at"], ["id"]),
    "signed": ("wa_signed_prekey", ["id", "record", "updated_at"], ["id"]),
    "senderkey": ("wa_sender_key", ["kh", "group_id", "sender", "record", "updated_at"], ["kh"]),
    "meta": ("wa_meta", ["kh", "k", "v", "updated_at"], ["kh"]),
    "received": ("wa_received", ["digest", "plaintext", "handled", "at"], ["digest"]),
    "outbox": ("wa_outbox", ["kh", "message_id", "address", "msg_type", "body", "created_at"], ["kh"]),
}


# =====================================================================================  lanes
class _Lane:
    """One connection, its request batching and its epochs (see the module docstring)."""

    def __init__(self, store: SqlKeyStore, index: int) -> None:
        self.store = store
        self.index = index
        self.conn: Conn | None = None
        # trio side
        self.pending: list[_Req] = []
        self.busy = False
        self.hop_done = _Gate()
        self.members = 0
        self.finished: list[SqlTransaction] = []
        self.closing = False
        self.epoch_end = _Gate()
        # worker side (only touched inside a hop)
        self.in_tx = False
        self.held: set[str] = set()
        self.poisoned = False

    # ------------------------------------------------------------------ batching
    async def call(self, fn: Callable[[], T], admit: SqlTransaction | None = None) -> T:
        # Every wait in here is uncancellable (a request, once queued, runs to completion).
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
                await _uncancellable_thread_call(lambda: self._run_batch(batch))
            finally:
                self.busy = False
                ev, self.hop_done = self.hop_done, _Gate()
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
            self.conn = self.store.dialect.connect()
        return self.conn

    def _fail(self, exc: BaseException) -> StoreError:
        d = self.store.dialect
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
        d = self.store.dialect
        rows = self.store._rows
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

    def _t_read(self, fn: Callable[[Conn], T]) -> T:
        if self.conn is None or not self.in_tx:
            raise StoreError("internal: read outside an epoch")
        try:
            return fn(self.conn)
        except BaseException as exc:
            self.poisoned = True
            raise self._fail(exc) from exc

    def _t_end(self, txs: list[SqlTransaction]) -> None:
        if self.conn is None or not self.in_tx:
            return
        conn = self.conn
        d = self.store.dialect
        store = self.store
        try:
            if txs and self.poisoned:
                raise StoreError("an earlier statement of this transaction failed; rolled back")
            if txs:
                store._check_fence(conn)
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
                    store._rows.apply(conn, merged, time.time())
                    d.commit(conn)
            else:
                d.rollback(conn)
        except BaseException as exc:
            try:
                d.rollback(conn)
            except BaseException:
                conn.broken = True
            raise self._fail(exc) from exc
        finally:
            self.in_tx = False
            held, self.held = self.held, set()
            if held and not conn.broken:
                try:
                    d.release_locks(conn, list(held))
                except BaseException:
                    conn.broken = True

    # ------------------------------------------------------------------ epochs (trio side)
    async def join(self, tx: SqlTransaction) -> None:
        while True:
            while self.closing:
                await self.epoch_end.wait(cancellable=True)
            self.members += 1
            try:
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

    async def _end_epoch(self) -> None:
        self.closing = True
        txs, self.finished = self.finished, []
        ev = self.epoch_end
        try:
            await self.call(lambda: self._t_end(txs))
        except BaseException as exc:
            err = exc if isinstance(exc, StoreError) else StoreError(f"commit failed: {exc!r}")
            for t in txs:
                t.commit_error = err
        finally:
            self.closing = False
            self.epoch_end = _Gate()
            ev.set()

    def close(self) -> None:
        if self.conn is not None:
            if self.in_tx:
                try:
                    self.store.dialect.rollback(self.conn)
                except BaseException:
                    pass
            self.conn.close()
            self.conn = None


# =====================================================================================  transaction
@final
class SqlTransaction:
    """Reads see committed data plus this transaction's own writes; nothing is written before commit."""

    __slots__ = ("_store", "_lane", "keys", "overlay", "prefetched", "wiped", "commit_error", "_claims")

    def __init__(self, store: SqlKeyStore, lane: _Lane, keys: list[str]) -> None:
        self._store = store
        self._lane = lane
        self.keys = keys
        self.overlay: dict[tuple[str, Any], Any] = {}
        self.prefetched: dict[tuple[str, Any], Any] = {}
        self.wiped = False
        self.commit_error: StoreError | None = None
        self._claims: list[int] = []

    def __repr__(self) -> str:
        return f"SqlTransaction(keys={self.keys!r}, writes={len(self.overlay)})"

    def has_writes(self) -> bool:
        return bool(self.overlay) or self.wiped

    async def _get(self, table: str, key: Any) -> Any:
        k = (table, key)
        if k in self.overlay:
            v = self.overlay[k]
            return None if v is _DELETED else v
        if self.wiped:
            return None
        if k in self.prefetched:
            return self.prefetched[k]
        rows = self._store._rows
        lane = self._lane
        return await lane.call(lambda: lane._t_read(lambda c: rows.read(c, table, key)))

    def _put(self, table: str, key: Any, value: Any) -> None:
        self.overlay[(table, key)] = value

    async def _keys(self, table: str) -> list[Any]:
        if self.wiped:
            keys: set[Any] = set()
        else:
            rows = self._store._rows
            lane = self._lane
            keys = set(await lane.call(lambda: lane._t_read(lambda c: rows.keys(c, table))))
        for (t, k), v in self.overlay.items():
            if t == table:
                if v is _DELETED:
                    keys.discard(k)
                else:
                    keys.add(k)
        return sorted(keys)

    # identity
    async def get_local_identity(self) -> LocalIdentity | None:
        v = await self._get("local", 1)
        return v if isinstance(v, LocalIdentity) else None

    async def set_local_identity(self, identity: LocalIdentity) -> None:
        self._put("local", 1, identity)

    async def get_remote_identity(self, address: Address) -> bytes | None:
        v = await self._get("identity", _addr_key(address))
        return v if isinstance(v, bytes) else None

    async def save_remote_identity(self, address: Address, identity_key: bytes) -> None:
        self._put("identity", _addr_key(address), bytes(identity_key))

    # prekeys
    async def load_prekey(self, prekey_id: int) -> bytes | None:
        self._store._claim_prekey(self, int(prekey_id))
        v = await self._get("prekey", int(prekey_id))
        return v if isinstance(v, bytes) else None

    async def store_prekey(self, prekey_id: int, record: bytes) -> None:
        self._put("prekey", int(prekey_id), bytes(record))

    async def remove_prekey(self, prekey_id: int) -> None:
        self._put("prekey", int(prekey_id), _DELETED)

    async def count_prekeys(self) -> int:
        return len(await self._keys("prekey"))

    async def load_signed_prekey(self, signed_prekey_id: int) -> bytes | None:
        v = await self._get("signed", int(signed_prekey_id))
        return v if isinstance(v, bytes) else None

    async def store_signed_prekey(self, signed_prekey_id: int, record: bytes) -> None:
        self._put("signed", int(signed_prekey_id), bytes(record))

    async def remove_signed_prekey(self, signed_prekey_id: int) -> None:
        self._put("signed", int(signed_prekey_id), _DELETED)

    async def list_signed_prekeys(self) -> list[int]:
        return [int(k) for k in await self._keys("signed")]

    # sessions
    async def load_session(self, address: Address) -> bytes | None:
        v = await self._get("session", _addr_key(address))
        return v if isinstance(v, bytes) else None

    async def load_sessions(self, addresses: Sequence[Address]) -> dict[Address, bytes]:
        out: dict[Address, bytes] = {}
        missing: dict[str, Address] = {}
        for a in addresses:
            k = ("session", _addr_key(a))
            if k in self.overlay:
                v = self.overlay[k]
            elif self.wiped:
                v = None
            elif k in self.prefetched:
                v = self.prefetched[k]
            else:
                missing[k[1]] = a
                continue
            if isinstance(v, bytes):
                out[a] = v
        if missing:
            rows = self._store._rows
            lane = self._lane
            keys = list(missing)
            found = await lane.call(lambda: lane._t_read(lambda c: rows.read_many(c, "session", keys)))
            for ak, rec in found.items():
                out[missing[ak]] = rec
        return out

    async def store_session(self, address: Address, record: bytes) -> None:
        self._put("session", _addr_key(address), bytes(record))

    async def store_sessions(self, records: dict[Address, bytes]) -> None:
        for a, r in records.items():
            self._put("session", _addr_key(a), bytes(r))

    async def delete_session(self, address: Address) -> None:
        self._put("session", _addr_key(address), _DELETED)

    async def list_sessions(self) -> list[Address]:
        return sorted(Address.parse(k) for k in await self._keys("session"))

    # sender keys
    async def load_sender_key(self, group_id: str, sender: Address) -> bytes | None:
        v = await self._get("senderkey", (group_id, _addr_key(sender)))
        return v if isinstance(v, bytes) else None

    async def store_sender_key(self, group_id: str, sender: Address, record: bytes) -> None:
        self._put("senderkey", (group_id, _addr_key(sender)), bytes(record))

    async def delete_sender_key(self, group_id: str, sender: Address) -> None:
        self._put("senderkey", (group_id, _addr_key(sender)), _DELETED)

    # meta
    async def get_meta(self, key: str) -> bytes | None:
        v = await self._get("meta", key)
        return v if isinstance(v, bytes) else None

    async def set_meta(self, key: str, value: bytes) -> None:
        self._put("meta", key, bytes(value))

    # caller rows
    async def get_received(self, digest: bytes) -> tuple[bytes, bool] | None:
        v = await self._get("received", bytes(digest))
        if v is None:
            return None
        pt, handled, _t = v
        return pt, handled

    async def put_received(self, digest: bytes, plaintext: bytes, now: float) -> None:
        self._put("received", bytes(digest), (bytes(plaintext), False, float(now)))

    async def mark_handled(self, digest: bytes, now: float) -> None:
        if await self._get("received", bytes(digest)) is not None:
            self._put("received", bytes(digest), (b"", True, float(now)))

    async def prune_received(self, handled_before: float) -> int:
        n = 0
        if not self.wiped:
            rows = self._store._rows
            lane = self._lane
            found = await lane.call(lambda: lane._t_read(lambda c: rows.prunable(c, handled_before)))
            for dg in found:
                if ("received", dg) not in self.overlay:
                    self._put("received", dg, _DELETED)
                    n += 1
        for (t, k), v in list(self.overlay.items()):
            if t == "received" and v is not _DELETED and v[1] and v[2] < handled_before:
                self._put("received", k, _DELETED)
                n += 1
        return n

    async def outbox_put(self, entry: OutboxEntry) -> None:
        self._put("outbox", entry.message_id, entry)

    async def outbox_remove(self, message_id: str) -> bool:
        if await self._get("outbox", message_id) is None:
            return False
        self._put("outbox", message_id, _DELETED)
        return True

    async def outbox_list(self, limit: int = 1000) -> list[OutboxEntry]:
        pending = {k: v for (t, k), v in self.overlay.items() if t == "outbox"}
        base: list[OutboxEntry] = []
        if not self.wiped:
            rows = self._store._rows
            lane = self._lane
            n = limit + sum(1 for v in pending.values() if v is _DELETED)
            base = await lane.call(lambda: lane._t_read(lambda c: rows.outbox_first(c, n)))
        entries = {e.message_id: e for e in base if e.message_id not in pending}
        entries.update({k: v for k, v in pending.items() if v is not _DELETED})
        out = sorted(entries.values(), key=lambda e: (e.created_at, e.message_id))
        return out[:limit]

    def _wipe(self) -> None:
        self.overlay.clear()
        self.prefetched.clear()
        self.wiped = True


# =====================================================================================  store
@final
class SqlKeyStore:
    """A durable key store on SQLite, PostgreSQL or MySQL/MariaDB. Create it with :func:`open_store`."""

    def __init__(self, dialect: Dialect, *, key: AtRestKey | None, lanes: int) -> None:
        self.dialect = dialect
        self._rows = _Rows(dialect, key)
        self._key = key
        self._lanes = [_Lane(self, i) for i in range(max(1, lanes))]
        self._limiter = trio.CapacityLimiter(len(self._lanes) + 1)
        self._admin: Conn | None = None
        self._admin_lock = trio.Lock()
        self._addr_locks: dict[str, _AddrLock] = {}
        self._prekey_claims: dict[int, SqlTransaction] = {}  # one-time prekey id -> the transaction using it
        self._lease_holder: str | None = None
        self._lease_token: int | None = None
        self._lease_seconds = DEFAULT_LEASE_SECONDS
        self._fenced = False
        self._closed = False

    def __repr__(self) -> str:
        return f"SqlKeyStore({self.dialect.url.redacted()}, lanes={len(self._lanes)}, at_rest={self._key is not None})"

    @property
    def backend(self) -> str:
        return self.dialect.name

    # ------------------------------------------------------------------ opening
    async def _admin_call(self, fn: Callable[[Conn], T]) -> T:
        def run() -> T:
            if self._admin is not None and self._admin.broken:
                self._admin.close()
                self._admin = None
            if self._admin is None:
                self._admin = self.dialect.connect()
            try:
                return fn(self._admin)
            except StoreError:
                raise
            except BaseException as exc:
                if self.dialect.is_unavailable(exc):
                    self._admin.broken = True
                raise self.dialect.wrap(exc) from exc

        async with self._admin_lock:
            with trio.CancelScope(shield=True):
                result = await trio.to_thread.run_sync(run, limiter=self._limiter)
        return result

    async def _initialize(self, *, migrate_schema: bool) -> None:
        d = self.dialect

        def init(conn: Conn) -> None:
            migrate(conn, d, apply=migrate_schema)
            rows = conn.query("SELECT value FROM wa_store_info WHERE name = 'at_rest'")
            if not rows:
                has_data = conn.query("SELECT COUNT(*) FROM wa_local")[0][0] or conn.query(
                    "SELECT COUNT(*) FROM wa_session"
                )[0][0]
                if has_data and self._key is not None:
                    raise StoreError("this store holds unencrypted data; it cannot be opened with an at-rest key")
                value = self._key.check_value() if self._key is not None else b"none"
                conn.execute("INSERT INTO wa_store_info (name, value) VALUES ('at_rest', ?)", [value])
                return
            v = bytes(rows[0][0])
            if v == b"none":
                if self._key is not None:
                    raise StoreError("this store is not encrypted at rest; open it without an at-rest key")
            elif self._key is None:
                raise StoreError(
                    "this store is encrypted at rest: give the key (WACRYPTO_STORE_KEY or WACRYPTO_STORE_KEY_FILE)"
                )
            elif not self._key.verify(v):
                raise StoreError("wrong at-rest key for this store")

        await self._admin_call(init)

    async def schema_version(self) -> int:
        return await self._admin_call(lambda c: current_version(c, self.dialect))

    async def migrate(self) -> tuple[int, int]:
        return await self._admin_call(lambda c: migrate(c, self.dialect))

    # ------------------------------------------------------------------ transactions
    def _lane_for(self, keys: list[str]) -> _Lane:
        if len(self._lanes) == 1:
            return self._lanes[0]
        return self._lanes[zlib.crc32(keys[0].encode()) % len(self._lanes)]

    async def _lock_addresses(self, keys: list[str]) -> None:
        locks = self._addr_locks
        for i, k in enumerate(keys):
            ent = locks.get(k)
            if ent is None:
                # uncontended (the common case): no wait, no checkpoint
                locks[k] = _AddrLock()
                continue
            ent.refs += 1
            try:
                await ent.acquire()
            except BaseException:
                self._unref(k, ent)
                self._unlock_addresses(keys[:i])  # the ones already held
                raise

    def _unref(self, k: str, ent: _AddrLock) -> None:
        ent.refs -= 1
        if ent.refs == 0:
            del self._addr_locks[k]

    def _unlock_addresses(self, keys: list[str]) -> None:
        locks = self._addr_locks
        for k in reversed(keys):
            ent = locks[k]
            ent.release()
            self._unref(k, ent)

    def _claim_prekey(self, tx: SqlTransaction, prekey_id: int) -> None:
        """One-time prekeys are shared by all addresses: two transactions of this process never use one
        at once. The second fails at once (:class:`NoPreKeyError`, retry later) instead of waiting:
        the first holds its claim until its commit, which may be waiting for the second's epoch, so a
        wait could never end (a peer chooses the prekey ids it names)."""
        holder = self._prekey_claims.get(prekey_id)
        if holder is None:
            self._prekey_claims[prekey_id] = tx
            tx._claims.append(prekey_id)
        elif holder is not tx:
            raise NoPreKeyError(f"one-time prekey {prekey_id} is in use by another message being decrypted; retry")

    def _release_claims(self, tx: SqlTransaction) -> None:
        for pid in tx._claims:
            self._prekey_claims.pop(pid, None)
        tx._claims.clear()

    @asynccontextmanager
    async def transaction(self, *addresses: Address | str) -> AsyncIterator[Transaction]:
        if self._closed:
            raise StoreError("store is closed")
        if self._fenced:
            raise LeaseLostError(f"lease of {self._lease_holder} was lost; this instance may no longer write")
        keys = sorted({_addr_key(a) for a in addresses}) or [_ACCOUNT_KEY]
        await self._lock_addresses(keys)
        try:
            lane = self._lane_for(keys)
            tx = SqlTransaction(self, lane, keys)
            await lane.join(tx)
            try:
                try:
                    yield tx
                except BaseException:
                    await lane.finish(tx, False)
                    raise
                await lane.finish(tx, True)
            finally:
                self._release_claims(tx)
        finally:
            self._unlock_addresses(keys)

    async def wipe(self) -> None:
        """Delete every row of the account (identity, keys, sessions, outbox, ...); the schema stays."""
        async with self.transaction() as tx:
            assert isinstance(tx, SqlTransaction)
            tx._wipe()

    # ------------------------------------------------------------------ backup / restore
    async def dump(self) -> StoreDump:
        """A consistent snapshot of the whole account, decrypted."""

        def run(conn: Conn) -> StoreDump:
            self.dialect.snapshot_begin(conn)
            try:
                return self._rows.dump(conn)
            finally:
                conn.execute("ROLLBACK")

        return await self._admin_call(run)

    async def load(self, dump: StoreDump) -> None:
        """Replace the whole account with ``dump`` in one transaction."""
        if self._fenced:
            raise LeaseLostError("lease lost; this instance may no longer write")

        def run(conn: Conn) -> None:
            self.dialect.begin(conn)
            try:
                self.dialect.wait_lock(conn, [_ACCOUNT_KEY])
                self._rows.load(conn, dump, time.time())
                self._check_fence(conn)
                self.dialect.commit(conn)
            except BaseException:
                try:
                    self.dialect.rollback(conn)
                finally:
                    pass
                raise
            finally:
                try:
                    self.dialect.release_locks(conn, [_ACCOUNT_KEY])
                except BaseException:
                    conn.broken = True

        await self._admin_call(run)

    def _check_fence(self, conn: Conn) -> None:
        """Inside a write transaction: refuse to commit unless our lease is current and unexpired.

        The lease row is read with a shared lock, so a takeover waits for this commit to finish.
        """
        if self._lease_token is None:
            return
        now_expr = self.dialect.now_sql.removeprefix("SELECT ")
        r = conn.query(f"SELECT holder, token, expires_at, {now_expr} FROM wa_lease WHERE id = 1" + self.dialect.for_share)
        if not r or int(r[0][1]) != self._lease_token:
            self._fenced = True
            raise LeaseLostError(
                f"lease of {self._lease_holder} was taken over"
                + (f" by {r[0][0]}" if r else "")
                + "; this instance may no longer write"
            )
        if float(r[0][2]) < float(r[0][3]):
            raise LeaseLostError(
                f"lease of {self._lease_holder} expired (heartbeat missed); renew it before writing"
            )

    # ------------------------------------------------------------------ lease
    def _now(self, conn: Conn) -> float:
        return float(conn.query(self.dialect.now_sql)[0][0])

    async def acquire_lease(self, holder: str | None = None, *, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> int:
        """Become the one instance allowed to write this account.

        Raises :class:`InstanceConflictError` (``holder`` names the live holder) when another instance
        holds an unexpired lease. Returns the fencing token: every later commit checks it, so once another
        instance takes over, this one gets :class:`LeaseLostError` instead of writing.
        """
        if not (isinstance(lease_seconds, (int, float)) and math.isfinite(lease_seconds) and lease_seconds > 0):
            raise InvalidArgumentError("lease_seconds must be a positive number")
        me = holder or f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"
        if len(me) > 200:
            raise InvalidArgumentError("lease holder name is too long")
        d = self.dialect

        def run(conn: Conn) -> int:
            d.begin(conn)
            try:
                now = self._now(conn)
                r = conn.query("SELECT holder, token, expires_at FROM wa_lease WHERE id = 1" + d.for_update)
                if r and str(r[0][0]) != me and float(r[0][2]) > now:
                    raise InstanceConflictError(
                        f"account is in use by instance {r[0][0]!s} (lease valid for {float(r[0][2]) - now:.1f} s more)",
                        holder=str(r[0][0]),
                    )
                token = int(r[0][1]) + 1 if r else 1
                if r:
                    conn.execute(
                        "UPDATE wa_lease SET holder = ?, token = ?, expires_at = ?, updated_at = ? WHERE id = 1",
                        [me, token, now + lease_seconds, now],
                    )
                else:
                    conn.execute(
                        "INSERT INTO wa_lease (id, holder, token, expires_at, updated_at) VALUES (1, ?, ?, ?, ?)",
                        [me, token, now + lease_seconds, now],
                    )
                d.commit(conn)
                return token
            except BaseException:
                d.rollback(conn)
                raise

        token = await self._admin_call(run)
        self._lease_holder, self._lease_token, self._lease_seconds = me, token, float(lease_seconds)
        self._fenced = False
        return token

    @property
    def lease_holder(self) -> str | None:
        return self._lease_holder

    @property
    def lease_token(self) -> int | None:
        return self._lease_token

    async def renew_lease(self) -> None:
        """Extend the lease; :class:`LeaseLostError` if another instance took it over."""
        if self._lease_token is None:
            raise InvalidArgumentError("this store holds no lease")
        token, secs = self._lease_token, self._lease_seconds

        def run(conn: Conn) -> int:
            now = self._now(conn)
            return conn.execute(
                "UPDATE wa_lease SET expires_at = ?, updated_at = ? WHERE id = 1 AND token = ?",
                [now + secs, now, token],
            )

        if await self._admin_call(run) != 1:
            self._fenced = True
            raise LeaseLostError(f"lease of {self._lease_holder} was taken over; this instance may no longer write")

    async def release_lease(self) -> None:
        if self._lease_token is None:
            return
        token = self._lease_token

        def run(conn: Conn) -> None:
            conn.execute("UPDATE wa_lease SET expires_at = 0 WHERE id = 1 AND token = ?", [token])

        try:
            await self._admin_call(run)
        finally:
            self._lease_token = None

    async def heartbeat(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Renew the lease every third of its lifetime until cancelled or lost (then raises LeaseLostError)."""
        task_status.started()
        while True:
            await trio.sleep(self._lease_seconds / 3)
            await self.renew_lease()

    # ------------------------------------------------------------------ info / close
    async def info(self) -> dict[str, Any]:
        def run(conn: Conn) -> dict[str, Any]:
            counts = {t: int(conn.query(f"SELECT COUNT(*) FROM {t}")[0][0]) for t in ACCOUNT_TABLES}
            lease = conn.query("SELECT holder, token, expires_at FROM wa_lease WHERE id = 1")
            now = self._now(conn)
            return {
                "backend": self.dialect.name,
                "server": self.dialect.server_version,
                "url": self.dialect.url.redacted(),
                "schema_version": current_version(conn, self.dialect),
                "latest_schema_version": LATEST_VERSION,
                "encrypted_at_rest": self._key is not None,
                "rows": counts,
                "lease": None
                if not lease or float(lease[0][2]) <= now
                else {"holder": str(lease[0][0]), "token": int(lease[0][1]), "expires_in": float(lease[0][2]) - now},
            }

        return await self._admin_call(run)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        with trio.CancelScope(shield=True):
            if self._lease_token is not None and not self._fenced:
                try:
                    await self.release_lease()
                except StoreError:
                    pass

            def close_all() -> None:
                for lane in self._lanes:
                    lane.close()
                if self._admin is not None:
                    self._admin.close()
                    self._admin = None

            await trio.to_thread.run_sync(close_all)
