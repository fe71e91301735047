"""What differs between SQLite, PostgreSQL and MySQL/MariaDB: connecting, types, locks, upserts.

Everything here is synchronous and runs on a worker thread (see :mod:`wacrypto.store.sql.lane`).
SQL is written with ``?`` placeholders and translated per driver.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Final

from wacrypto.errors import StoreError, StoreUnavailableError, UnsupportedServerError
from wacrypto.store.sql.url import StoreURL

__all__ = ["Conn", "Dialect", "dialect_for", "check_version"]

Row = tuple[Any, ...]

MIN_POSTGRES: Final = (10, 0)
MIN_MYSQL: Final = (5, 7)
MIN_MARIADB: Final = (10, 2)
MIN_SQLITE: Final = (3, 24)  # UPSERT


def check_version(product: str, found: tuple[int, ...], found_text: str) -> None:
    """Raise :class:`UnsupportedServerError` naming the version found and the one needed."""
    need = {"PostgreSQL": MIN_POSTGRES, "MySQL": MIN_MYSQL, "MariaDB": MIN_MARIADB, "SQLite": MIN_SQLITE}[product]
    if tuple(found[:2]) < need:
        raise UnsupportedServerError(
            f"{product} {found_text} found; wacrypto needs {product} >= {need[0]}.{need[1]}"
        )


def parse_mysql_version(text: str) -> tuple[str, tuple[int, ...]]:
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not m:
        raise UnsupportedServerError(f"cannot read the server version {text!r}")
    nums = tuple(int(g) for g in m.groups() if g is not None)
    product = "MariaDB" if "mariadb" in text.lower() else "MySQL"
    if product == "MySQL" and nums[0] == 5 and nums[1] == 5 and "-" in text and "MariaDB" in text:
        product = "MariaDB"  # "5.5.5-10.x-MariaDB" replication prefix
    return product, nums


class Conn:
    """A DB-API connection with the three calls the engine needs (plus ``send`` inside ``pipeline``)."""

    pipelined = False  # True when ``pipeline()`` batches statements into one round trip

    def __init__(self, raw: Any, placeholder: str) -> None:
        self.raw = raw
        self._ph = placeholder
        self._cache: dict[str, str] = {}
        self.broken = False

    def pipeline(self) -> AbstractContextManager[Any]:
        """Statements sent inside are batched where the driver can (one round trip at the block's end).

        Only ``send`` and ``executemany`` may be used inside; ``send``'s fetchers are called after the block.
        An error in any statement is raised when the block ends.
        """
        return nullcontext()

    def send(self, sql: str, params: Sequence[Any] = ()) -> Callable[[], list[Row]]:
        """Execute (or, in a pipeline, queue) a statement; the returned function gives its rows."""
        rows = self.query(sql, params)
        return lambda: rows

    def _q(self, sql: str) -> str:
        if self._ph == "?":
            return sql
        q = self._cache.get(sql)
        if q is None:
            q = sql.replace("%", "%%").replace("?", self._ph)
            self._cache[sql] = q
        return q

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        cur = self.raw.cursor()
        try:
            cur.execute(self._q(sql), tuple(params))
            rows = cur.fetchall() if cur.description else []
            return [tuple(r) for r in rows]
        finally:
            cur.close()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cur = self.raw.cursor()
        try:
            cur.execute(self._q(sql), tuple(params))
            return int(cur.rowcount)
        finally:
            cur.close()

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        cur = self.raw.cursor()
        try:
            cur.executemany(self._q(sql), [tuple(r) for r in rows])
        finally:
            cur.close()

    def close(self) -> None:
        try:
            self.raw.close()
        except Exception:
            pass


def _lock_name(database: str, key: str) -> str:
    return "wa:" + hashlib.sha256(f"{database}\x00{key}".encode()).hexdigest()[:48]


def _lock_id(key: str) -> int:
    return int.from_bytes(hashlib.sha256(b"wacrypto\x00" + key.encode()).digest()[:8], "big", signed=True)


class Dialect:
    name: str = ""
    blob = "BLOB"
    key = "BLOB"  # 32-byte hash keys
    bigint = "BIGINT"
    double = "DOUBLE PRECISION"
    text = "TEXT"
    table_suffix = ""
    for_update = " FOR UPDATE"
    for_share = " FOR SHARE"
    now_sql = ""
    begin_sql = "BEGIN"
    locks_per_address = True
    inline = False  # True: reads, admits and writes may run on the trio thread (see Lane._free)

    def __init__(self, url: StoreURL, *, busy_timeout_ms: int) -> None:
        self.url = url
        self.busy_timeout_ms = busy_timeout_ms
        self.server_version = ""

    def connect(self) -> Conn:
        raise NotImplementedError

    def ddl(self, sql: str) -> str:
        return sql.format(
            BLOB=self.blob, KEY=self.key, BIGINT=self.bigint, DOUBLE=self.double, TEXT=self.text, SUFFIX=self.table_suffix
        )

    def upsert(self, table: str, cols: Sequence[str], pk: Sequence[str]) -> str:
        ph = ", ".join("?" for _ in cols)
        upd = ", ".join(f"{c} = excluded.{c}" for c in cols if c not in pk)
        return f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({ph}) ON CONFLICT ({', '.join(pk)}) DO UPDATE SET {upd}"

    # locks: only called inside an open transaction
    def wait_lock(self, conn: Conn, keys: Sequence[str]) -> None:
        return None

    def try_lock_many(self, conn: Conn, keys: Sequence[str]) -> set[str]:
        """Try each key without waiting (one round trip); the keys obtained (held until the transaction ends)."""
        return set(keys)

    def send_try_lock_many(self, conn: Conn, keys: Sequence[str]) -> Callable[[], set[str]]:
        """``try_lock_many`` usable inside ``conn.pipeline()``: call the result after the block."""
        got = self.try_lock_many(conn, keys)
        return lambda: got

    def release_locks(self, conn: Conn, keys: Sequence[str]) -> None:
        return None

    def migration_lock(self, conn: Conn) -> None:
        return None

    def migration_unlock(self, conn: Conn) -> None:
        return None

    def begin(self, conn: Conn) -> None:
        conn.send(self.begin_sql)

    def begin_nowait(self, conn: Conn) -> bool:
        """Begin the transaction if that needs no wait; False (nothing begun) when it would wait."""
        raise NotImplementedError

    def commit(self, conn: Conn) -> None:
        conn.send("COMMIT")

    def rollback(self, conn: Conn) -> None:
        conn.execute("ROLLBACK")

    def snapshot_begin(self, conn: Conn) -> None:
        conn.execute("BEGIN")

    def is_unavailable(self, exc: BaseException) -> bool:
        return False

    def wrap(self, exc: BaseException) -> StoreError:
        if isinstance(exc, StoreError):
            return exc
        cls = StoreUnavailableError if self.is_unavailable(exc) else StoreError
        err = cls(f"{self.name} store failed: {type(exc).__name__}: {_oneline(exc)}")
        err.__cause__ = exc
        return err


def _oneline(exc: BaseException) -> str:
    s = str(exc).strip().splitlines()
    return s[0][:300] if s else ""


class SQLiteDialect(Dialect):
    name = "sqlite"
    bigint = "INTEGER"
    double = "REAL"
    for_update = ""
    for_share = ""
    now_sql = "SELECT (julianday('now') - 2440587.5) * 86400.0"
    begin_sql = "BEGIN IMMEDIATE"
    locks_per_address = False  # BEGIN IMMEDIATE takes the database write lock
    inline = True

    def begin_nowait(self, conn: Conn) -> bool:
        # another connection (the admin one, a CLI, a backup) may hold the write lock: do not wait on
        # the trio thread for the busy handler, say so and let the caller take a thread hop instead
        raw = conn.raw
        raw.execute("PRAGMA busy_timeout = 0")
        try:
            raw.execute("BEGIN IMMEDIATE")
            return True
        except sqlite3.OperationalError as exc:
            if (exc.sqlite_errorcode & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                return False
            raise
        finally:
            try:
                raw.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            except BaseException:
                conn.broken = True  # its state is unknown (a transaction may be open): never reused
                raise

    def connect(self) -> Conn:
        found = tuple(int(x) for x in sqlite3.sqlite_version.split("."))
        check_version("SQLite", found, sqlite3.sqlite_version)
        path = self.url.path
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise StoreUnavailableError(f"directory {parent} of the SQLite store does not exist")
        try:
            raw = sqlite3.connect(
                path, timeout=self.busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
            )
            raw.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            mode = raw.execute("PRAGMA journal_mode = WAL").fetchone()
            if not mode or str(mode[0]).lower() != "wal":
                raise StoreError(f"SQLite store {path}: cannot switch to WAL mode")
            sync = self.url.params.get("synchronous", "full").upper()
            if sync not in ("FULL", "NORMAL", "EXTRA"):
                raise StoreError("sqlite synchronous must be full, normal or extra")
            raw.execute(f"PRAGMA synchronous = {sync}")
            raw.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"cannot open SQLite store {path}: {exc}") from exc
        self.server_version = f"SQLite {sqlite3.sqlite_version}"
        return Conn(raw, "?")

    def migration_lock(self, conn: Conn) -> None:
        conn.execute("BEGIN IMMEDIATE")

    def migration_unlock(self, conn: Conn) -> None:
        conn.execute("COMMIT")

    def snapshot_begin(self, conn: Conn) -> None:
        conn.execute("BEGIN")  # deferred: the snapshot starts at the first read

    def is_unavailable(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.OperationalError) and "unable to open" in str(exc)


class PgConn(Conn):
    """psycopg 3 connection: ``pipeline()`` uses libpq pipeline mode."""

    pipelined = True

    def pipeline(self) -> AbstractContextManager[Any]:
        return self.raw.pipeline()  # type: ignore[no-any-return]

    def send(self, sql: str, params: Sequence[Any] = ()) -> Callable[[], list[Row]]:
        cur = self.raw.cursor()
        cur.execute(self._q(sql), tuple(params))

        def fetch() -> list[Row]:
            try:
                return [tuple(r) for r in cur.fetchall()] if cur.description else []
            finally:
                cur.close()

        return fetch


class PostgresDialect(Dialect):
    name = "postgresql"
    blob = "BYTEA"
    key = "BYTEA"
    now_sql = "SELECT extract(epoch FROM clock_timestamp())::float8"

    def connect(self) -> Conn:
        import psycopg

        u = self.url
        kw: dict[str, Any] = {"host": u.host, "port": u.port, "autocommit": True}
        if u.user:
            kw["user"] = u.user
        if u.password is not None:
            kw["password"] = u.password
        if u.database:
            kw["dbname"] = u.database
        kw["connect_timeout"] = int(u.params.get("connect_timeout", "10"))
        if "sslmode" in u.params:
            kw["sslmode"] = u.params["sslmode"]
        kw["application_name"] = u.params.get("application_name", "wacrypto")
        try:
            raw = psycopg.connect(**kw)
        except psycopg.Error as exc:
            raise StoreUnavailableError(
                f"cannot connect to PostgreSQL at {u.redacted()}: {_oneline(exc)}"
            ) from exc
        v = raw.info.server_version  # e.g. 150020, 90624
        major = v // 10000
        found = (major, (v // 100) % 100) if major < 10 else (major, v % 10000)
        text = f"{found[0]}.{found[1]}"
        try:
            check_version("PostgreSQL", found, text)
        except UnsupportedServerError:
            raw.close()
            raise
        raw.execute(f"SET lock_timeout = {int(self.busy_timeout_ms)}")
        self.server_version = f"PostgreSQL {text}"
        return PgConn(raw, "%s")

    def wait_lock(self, conn: Conn, keys: Sequence[str]) -> None:
        for k in sorted(keys):
            conn.send("SELECT pg_advisory_xact_lock(?)", [_lock_id(k)])  # errors surface at the pipeline's end

    def try_lock_many(self, conn: Conn, keys: Sequence[str]) -> set[str]:
        return self.send_try_lock_many(conn, keys)()

    def send_try_lock_many(self, conn: Conn, keys: Sequence[str]) -> Callable[[], set[str]]:
        ids = {_lock_id(k): k for k in keys}
        fetch = conn.send("SELECT k, pg_try_advisory_xact_lock(k) FROM unnest(?::bigint[]) AS k", [list(ids)])
        return lambda: {ids[int(k)] for k, ok in fetch() if ok}

    def migration_lock(self, conn: Conn) -> None:
        conn.query("SELECT pg_advisory_lock(?)", [_lock_id("\x00migrate")])

    def migration_unlock(self, conn: Conn) -> None:
        conn.query("SELECT pg_advisory_unlock(?)", [_lock_id("\x00migrate")])

    def snapshot_begin(self, conn: Conn) -> None:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")

    def is_unavailable(self, exc: BaseException) -> bool:
        import psycopg

        return isinstance(exc, psycopg.OperationalError)


class MySQLDialect(Dialect):
    name = "mysql"
    blob = "LONGBLOB"
    key = "BINARY(32)"
    double = "DOUBLE"
    text = "VARCHAR(255)"
    table_suffix = " ENGINE=InnoDB"
    for_share = " LOCK IN SHARE MODE"
    now_sql = "SELECT UNIX_TIMESTAMP(NOW(6))"
    begin_sql = "START TRANSACTION"

    def connect(self) -> Conn:
        import pymysql

        u = self.url
        kw: dict[str, Any] = {"host": u.host, "port": u.port, "autocommit": True, "charset": "utf8mb4"}
        if u.user:
            kw["user"] = u.user
        kw["password"] = u.password if u.password is not None else ""
        if u.database:
            kw["database"] = u.database
        kw["connect_timeout"] = int(u.params.get("connect_timeout", "10"))
        try:
            raw = pymysql.connect(**kw)
        except pymysql.Error as exc:
            raise StoreUnavailableError(f"cannot connect to MySQL at {u.redacted()}: {_oneline(exc)}") from exc
        conn = Conn(raw, "%s")
        text = str(conn.query("SELECT VERSION()")[0][0])
        product, nums = parse_mysql_version(text)
        try:
            check_version(product, nums, text)
        except UnsupportedServerError:
            conn.close()
            raise
        conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        conn.execute(f"SET SESSION innodb_lock_wait_timeout = {max(1, self.busy_timeout_ms // 1000)}")
        self.server_version = f"{product} {text}"
        return conn

    def upsert(self, table: str, cols: Sequence[str], pk: Sequence[str]) -> str:
        ph = ", ".join("?" for _ in cols)
        upd = ", ".join(f"{c} = VALUES({c})" for c in cols if c not in pk)
        return f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({ph}) ON DUPLICATE KEY UPDATE {upd}"

    def _names(self, keys: Sequence[str]) -> list[str]:
        return [_lock_name(self.url.database, k) for k in sorted(keys)]

    def wait_lock(self, conn: Conn, keys: Sequence[str]) -> None:
        for n in self._names(keys):
            r = conn.query("SELECT GET_LOCK(?, ?)", [n, max(1, self.busy_timeout_ms // 1000)])
            if r[0][0] != 1:
                raise StoreError("timed out waiting for another process holding this conversation")

    def try_lock_many(self, conn: Conn, keys: Sequence[str]) -> set[str]:
        ks = sorted(keys)
        names = self._names(ks)
        r = conn.query("SELECT " + ", ".join("GET_LOCK(?, 0)" for _ in names), names)
        return {k for k, ok in zip(ks, r[0]) if ok == 1}

    def release_locks(self, conn: Conn, keys: Sequence[str]) -> None:
        names = self._names(keys)
        if names:
            conn.query("SELECT " + ", ".join("RELEASE_LOCK(?)" for _ in names), names)

    def migration_lock(self, conn: Conn) -> None:
        conn.query("SELECT GET_LOCK(?, 60)", [_lock_name(self.url.database, "\x00migrate")])

    def migration_unlock(self, conn: Conn) -> None:
        conn.query("SELECT RELEASE_LOCK(?)", [_lock_name(self.url.database, "\x00migrate")])

    def snapshot_begin(self, conn: Conn) -> None:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        conn.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")

    def is_unavailable(self, exc: BaseException) -> bool:
        import pymysql

        if isinstance(exc, pymysql.err.InterfaceError):
            return True
        code = exc.args[0] if isinstance(exc, pymysql.err.OperationalError) and exc.args else None
        return code in (1040, 1044, 1045, 1049, 1053, 2002, 2003, 2005, 2006, 2013, 2055)


def dialect_for(url: StoreURL, *, busy_timeout_ms: int) -> Dialect:
    cls: type[Dialect] = {"sqlite": SQLiteDialect, "postgresql": PostgresDialect, "mysql": MySQLDialect}[url.backend]
    return cls(url, busy_timeout_ms=busy_timeout_ms)
