"""Real database servers for the store tests: start them if they are down, create/drop throwaway databases."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import psycopg
import pymysql

PG_HOST = os.environ.get("WACRYPTO_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("WACRYPTO_TEST_PG_PORT", "5432"))
PG_ADMIN = os.environ.get("WACRYPTO_TEST_PG_USER", "postgres")
MY_HOST = os.environ.get("WACRYPTO_TEST_MYSQL_HOST", "127.0.0.1")
MY_PORT = int(os.environ.get("WACRYPTO_TEST_MYSQL_PORT", "3306"))
MY_ADMIN = os.environ.get("WACRYPTO_TEST_MYSQL_USER", "root")

BACKENDS = ("memory", "sqlite", "postgresql", "mariadb")
SQL_BACKENDS = ("sqlite", "postgresql", "mariadb")


def pg_admin(dbname: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_ADMIN, dbname=dbname, autocommit=True, connect_timeout=5)


def my_admin() -> pymysql.connections.Connection:  # type: ignore[type-arg]
    return pymysql.connect(host=MY_HOST, port=MY_PORT, user=MY_ADMIN, password="", autocommit=True, connect_timeout=5)


def _wait(check: object, start: list[str], what: str) -> None:
    assert callable(check)
    try:
        check()
        return
    except Exception:
        pass
    subprocess.run(start, shell=False, check=False, capture_output=True, timeout=60)
    deadline = time.monotonic() + 30
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            check()
            return
        except Exception as exc:  # noqa: BLE001
            last = exc
            time.sleep(0.5)
    raise RuntimeError(f"{what} is not reachable and could not be started ({' '.join(start)}): {last}")


def ensure_postgres() -> None:
    versions = os.listdir("/etc/postgresql") if os.path.isdir("/etc/postgresql") else ["15"]
    _wait(
        lambda: pg_admin().close(),
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[0], "main", "start"],
        "PostgreSQL",
    )


def ensure_mariadb() -> None:
    _wait(
        lambda: my_admin().close(),
        ["start-stop-daemon", "--start", "--oknodo", "--background", "--exec", "/usr/sbin/mariadbd"],
        "MariaDB",
    )


def unique(prefix: str = "wat") -> str:
    return f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:10]}"


@contextmanager
def pg_database() -> Iterator[str]:
    ensure_postgres()
    name = unique()
    with pg_admin() as c:
        c.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with pg_admin() as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def my_database() -> Iterator[str]:
    ensure_mariadb()
    name = unique()
    c = my_admin()
    try:
        c.cursor().execute(f"CREATE DATABASE `{name}`")
    finally:
        c.close()
    try:
        yield name
    finally:
        c = my_admin()
        try:
            c.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        finally:
            c.close()


def pg_url(db: str, user: str = PG_ADMIN, password: str | None = None) -> str:
    pw = f":{quote(password, safe='')}" if password is not None else ""
    return f"postgresql://{quote(user, safe='')}{pw}@{PG_HOST}:{PG_PORT}/{db}"


def my_url(db: str, user: str = MY_ADMIN, password: str | None = None) -> str:
    pw = f":{quote(password, safe='')}" if password is not None else ""
    return f"mysql://{quote(user, safe='')}{pw}@{MY_HOST}:{MY_PORT}/{db}"


@contextmanager
def database_url(backend: str, tmp_path: object) -> Iterator[str]:
    """A URL of a fresh, empty database of ``backend`` (dropped afterwards)."""
    if backend == "memory":
        yield "memory:"
    elif backend == "sqlite":
        yield f"sqlite:///{os.path.join(str(tmp_path), unique() + '.db')}"
    elif backend == "postgresql":
        with pg_database() as db:
            yield pg_url(db)
    elif backend == "mariadb":
        with my_database() as db:
            yield my_url(db)
    else:
        raise ValueError(backend)
