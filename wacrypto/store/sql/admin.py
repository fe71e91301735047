"""The admin connection of the SQL store and what runs on it: opening checks, info, dump and load.

The admin connection is separate from the lanes: it runs one call at a time (schema migrations, the
at-rest key check, whole-account snapshots and restores, lease updates), so these never wait for or
hold up an epoch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import trio

from wacrypto.errors import StoreError
from wacrypto.store.atrest import AtRestKey
from wacrypto.store.dump import StoreDump
from wacrypto.store.protocols import StoreInfo
from wacrypto.store.sql.dialect import Conn, Dialect
from wacrypto.store.sql.rows import Rows
from wacrypto.store.sql.schema import LATEST_VERSION, current_version

__all__ = ["AdminConnection", "check_at_rest", "read_info", "read_dump", "replace_account"]

T = TypeVar("T")
ACCOUNT_LOCK_KEY = ""  # the lock key of transactions that name no address


class AdminConnection:
    """One connection, opened on first use and reopened after a failure, one call at a time."""

    def __init__(self, dialect: Dialect, limiter: trio.CapacityLimiter) -> None:
        self.dialect = dialect
        self._limiter = limiter
        self._conn: Conn | None = None
        self._lock = trio.Lock()

    @property
    def conn(self) -> Conn | None:
        return self._conn

    async def call(self, fn: Callable[[Conn], T]) -> T:
        """Run ``fn(conn)`` on a worker thread (not cancellable once started); errors are StoreErrors."""

        def run() -> T:
            if self._conn is not None and self._conn.broken:
                self._conn.close()
                self._conn = None
            if self._conn is None:
                self._conn = self.dialect.connect()
            try:
                return fn(self._conn)
            except StoreError:
                raise
            except BaseException as exc:
                if self.dialect.is_unavailable(exc):
                    self._conn.broken = True
                raise self.dialect.wrap(exc) from exc

        async with self._lock:
            with trio.CancelScope(shield=True):
                result = await trio.to_thread.run_sync(run, limiter=self._limiter)
        return result

    def close(self) -> None:
        """Worker side."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def check_at_rest(conn: Conn, key: AtRestKey | None) -> None:
    """Record on first open whether the store is encrypted at rest; later, refuse a missing or wrong key."""
    rows = conn.query("SELECT value FROM wa_store_info WHERE name = 'at_rest'")
    if not rows:
        has_data = conn.query("SELECT COUNT(*) FROM wa_local")[0][0] or conn.query("SELECT COUNT(*) FROM wa_session")[0][0]
        if has_data and key is not None:
            raise StoreError("this store holds unencrypted data; it cannot be opened with an at-rest key")
        value = key.check_value() if key is not None else b"none"
        conn.execute("INSERT INTO wa_store_info (name, value) VALUES ('at_rest', ?)", [value])
        return
    v = bytes(rows[0][0])
    if v == b"none":
        if key is not None:
            raise StoreError("this store is not encrypted at rest; open it without an at-rest key")
    elif key is None:
        raise StoreError("this store is encrypted at rest: give the key (WACRYPTO_STORE_KEY or WACRYPTO_STORE_KEY_FILE)")
    elif not key.verify(v):
        raise StoreError("wrong at-rest key for this store")


def db_now(conn: Conn, dialect: Dialect) -> float:
    """The database server's clock (leases are timed by it, never by the hosts' clocks)."""
    return float(conn.query(dialect.now_sql)[0][0])


def read_info(conn: Conn, dialect: Dialect, rows: Rows, encrypted: bool) -> StoreInfo:
    from wacrypto.store.sql.lease import row_stripe

    now = db_now(conn, dialect)
    live = {int(r[0]): {"holder": str(r[1]), "token": int(r[2]), "expires_in": float(r[3]) - now}
            for r in conn.query("SELECT id, holder, token, expires_at FROM wa_lease") if float(r[3]) > now}
    lease: dict[str, Any] | None = live.get(1)
    if lease is None and live:  # the account served by stripes (scale-out): each one's lease
        lease = {"stripes": {str(row_stripe(i)): v for i, v in sorted(live.items())}}
    return StoreInfo(
        backend=dialect.name,
        rows=rows.count_all(conn),
        schema_version=current_version(conn, dialect),
        latest_schema_version=LATEST_VERSION,
        url=dialect.url.redacted(),
        server=dialect.server_version,
        encrypted_at_rest=encrypted,
        lease=lease,
    )


def read_dump(conn: Conn, dialect: Dialect, rows: Rows) -> StoreDump:
    """A consistent snapshot of the whole account (one read-only snapshot transaction)."""
    dialect.snapshot_begin(conn)
    try:
        return rows.dump(conn)
    finally:
        conn.execute("ROLLBACK")


def replace_account(
    conn: Conn, dialect: Dialect, rows: Rows, dump: StoreDump, fence: Callable[[Conn], None]
) -> None:
    """Replace every row of the account with ``dump`` in one transaction holding the account lock."""
    dialect.begin(conn)
    try:
        dialect.wait_lock(conn, [ACCOUNT_LOCK_KEY])
        rows.load(conn, dump, time.time())
        fence(conn)
        dialect.commit(conn)
    except BaseException:
        dialect.rollback(conn)
        raise
    finally:
        try:
            dialect.release_locks(conn, [ACCOUNT_LOCK_KEY])
        except BaseException:
            conn.broken = True
