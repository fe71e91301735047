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

On SQLite the statements themselves run on the trio thread: the admit (``BEGIN IMMEDIATE`` when the
write lock is free at once, else a hop that waits for it), the reads and the writes each take
microseconds from the page cache, far less than a hop to a worker thread and back (measured on a
2-core VM: a read-only transaction 390 -> 48 us of CPU). Only the COMMIT, whose fsync may take
milliseconds, runs on a worker thread; the transactions that arrive meanwhile wait for it and then
share the next epoch, so group commit is kept.

Address locks are taken with *try* semantics when the epoch already holds locks, and with a blocking wait
only when it holds none, so two processes can never deadlock on each other's address locks.

Where the parts live
--------------------
:mod:`.sync` (gates, address locks), :mod:`.lane` (a connection, its batching and epochs),
:mod:`.transaction` (the overlay, prekey claims), :mod:`.rows` (row keys, codec, batched SQL),
:mod:`.lease` (instance lease and fencing), :mod:`.admin` (opening checks, info, dump and load);
this module ties them into :class:`SqlKeyStore`.
"""


from __future__ import annotations

import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final, final

import trio

from wacrypto.address import Address
from wacrypto.errors import LeaseLostError, StoreError
from wacrypto.limits import DEFAULT_LEASE_SECONDS
from wacrypto.store.atrest import AtRestKey
from wacrypto.store.dump import StoreDump
from wacrypto.store.protocols import StoreInfo, Transaction
from wacrypto.store.sql.admin import ACCOUNT_LOCK_KEY, AdminConnection, check_at_rest, read_dump, read_info, replace_account
from wacrypto.store.sql.dialect import Conn, Dialect
from wacrypto.store.sql.lane import Lane
from wacrypto.store.sql.lease import Lease
from wacrypto.store.sql.rows import Rows
from wacrypto.store.sql.schema import current_version, migrate
from wacrypto.store.sql.sync import AddressLocks
from wacrypto.store.sql.transaction import PrekeyClaims, SqlTransaction, addr_key
from wacrypto.stripe import Stripe

__all__ = ["SqlKeyStore", "SqlTransaction"]

_ACCOUNT_KEY: Final = ACCOUNT_LOCK_KEY  # lock key of transactions that name no address


@final
class SqlKeyStore:
    """A durable key store on SQLite, PostgreSQL or MySQL/MariaDB. Create it with :func:`open_store`."""

    def __init__(self, dialect: Dialect, *, key: AtRestKey | None, lanes: int) -> None:
        self.dialect = dialect
        self._rows = Rows(dialect, key)
        self._key = key
        n = max(1, lanes)
        self._admin = AdminConnection(dialect, trio.CapacityLimiter(n + 1))
        self._lease = Lease(self._admin)
        self._lanes = [Lane(dialect, self._rows, self._lease.check_fence, i) for i in range(n)]
        self._addr_locks = AddressLocks()
        self._prekeys = PrekeyClaims()
        self._closed = False

    def __repr__(self) -> str:
        return f"SqlKeyStore({self.dialect.url.redacted()}, lanes={len(self._lanes)}, at_rest={self._key is not None})"

    @property
    def backend(self) -> str:
        return self.dialect.name

    # ------------------------------------------------------------------ opening
    async def _initialize(self, *, migrate_schema: bool) -> None:
        d, key = self.dialect, self._key

        def init(conn: Conn) -> None:
            migrate(conn, d, apply=migrate_schema)
            check_at_rest(conn, key)

        await self._admin.call(init)

    async def schema_version(self) -> int:
        return await self._admin.call(lambda c: current_version(c, self.dialect))

    async def migrate(self) -> tuple[int, int]:
        return await self._admin.call(lambda c: migrate(c, self.dialect))

    # ------------------------------------------------------------------ transactions
    def _lane_for(self, keys: list[str]) -> Lane:
        if len(self._lanes) == 1:
            return self._lanes[0]
        return self._lanes[zlib.crc32(keys[0].encode()) % len(self._lanes)]

    @asynccontextmanager
    async def transaction(self, *addresses: Address | str) -> AsyncIterator[Transaction]:
        if self._closed:
            raise StoreError("store is closed")
        if self._lease.fenced:
            raise LeaseLostError(f"lease of {self._lease.holder} was lost; this instance may no longer write")
        keys = sorted({addr_key(a) for a in addresses}) or [_ACCOUNT_KEY]
        await self._addr_locks.lock(keys)
        try:
            lane = self._lane_for(keys)
            tx = SqlTransaction(lane, self._rows, self._prekeys, keys)
            await lane.join(tx)
            try:
                try:
                    yield tx
                except BaseException:
                    await lane.finish(tx, False)
                    raise
                await lane.finish(tx, True)
            finally:
                self._prekeys.release_all(tx)
        finally:
            self._addr_locks.unlock(keys)

    async def wipe(self) -> None:
        """Delete every row of the account (identity, keys, sessions, outbox, ...); the schema stays."""
        async with self.transaction() as tx:
            assert isinstance(tx, SqlTransaction)
            tx._wipe()

    # ------------------------------------------------------------------ backup / restore / info
    async def dump(self) -> StoreDump:
        """A consistent snapshot of the whole account, decrypted."""
        d, rows = self.dialect, self._rows
        return await self._admin.call(lambda conn: read_dump(conn, d, rows))

    async def load(self, dump: StoreDump) -> None:
        """Replace the whole account with ``dump`` in one transaction."""
        if self._lease.fenced:
            raise LeaseLostError("lease lost; this instance may no longer write")
        d, rows, fence = self.dialect, self._rows, self._lease.check_fence
        await self._admin.call(lambda conn: replace_account(conn, d, rows, dump, fence))

    async def info(self) -> StoreInfo:
        """Backend, server, schema version, row counts and the live lease, if any."""
        d, rows, enc = self.dialect, self._rows, self._key is not None
        return await self._admin.call(lambda conn: read_info(conn, d, rows, enc))

    # ------------------------------------------------------------------ lease
    async def acquire_lease(self, holder: str | None = None, *, lease_seconds: float = DEFAULT_LEASE_SECONDS,
                            stripe: Stripe | None = None) -> int:
        """Become the one instance allowed to write this account (``stripe``: the one worker of that
        stripe of the account's conversations, :mod:`wacrypto.whatsapp.stripes`).

        Raises :class:`InstanceConflictError` (``holder`` names the live holder) when another instance
        holds an unexpired lease of the same scope, or of another one that excludes it (the whole account
        against any stripe, stripes of another count). Returns the fencing token: every later commit
        checks it, so once another instance takes over, this one gets :class:`LeaseLostError` instead of
        writing.
        """
        return await self._lease.acquire(holder, lease_seconds=lease_seconds, stripe=stripe)

    @property
    def lease_stripe(self) -> Stripe:
        """What the lease covers (the whole account: ``Stripe(0, 1)``)."""
        return self._lease.stripe

    @property
    def lease_holder(self) -> str | None:
        return self._lease.holder

    @property
    def lease_token(self) -> int | None:
        return self._lease.token

    async def renew_lease(self) -> None:
        """Extend the lease; :class:`LeaseLostError` if another instance took it over."""
        await self._lease.renew()

    async def release_lease(self) -> None:
        await self._lease.release()

    async def heartbeat(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Renew the lease every third of its lifetime until cancelled or lost (then raises LeaseLostError)."""
        await self._lease.heartbeat(task_status=task_status)

    # ------------------------------------------------------------------ close
    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        with trio.CancelScope(shield=True):
            if self._lease.token is not None and not self._lease.fenced:
                try:
                    await self._lease.release()
                except StoreError:
                    pass

            def close_all() -> None:
                for lane in self._lanes:
                    lane.close()
                self._admin.close()

            await trio.to_thread.run_sync(close_all)
