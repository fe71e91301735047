"""Key stores: the Protocols, the in-memory reference store and durable SQL stores.

``store = await open_store(url)`` picks a backend from the URL:

* ``memory:`` -- the in-memory reference store (nothing survives the process);
* ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` -- embedded (WAL, ``synchronous=FULL``);
* ``postgresql://user:password@host:5432/dbname`` -- PostgreSQL >= 10 (psycopg 3);
* ``mysql://user:password@host:3306/dbname`` -- MySQL >= 5.7 / MariaDB >= 10.2 (PyMySQL).

Percent-encode reserved characters of user names and passwords (``urllib.parse.quote(pw, safe="")``);
any password works. The database must exist; its tables are created and migrated on open.
"""

from __future__ import annotations

from wacrypto.errors import InvalidArgumentError
from wacrypto.limits import DEFAULT_LEASE_SECONDS, DEFAULT_SQL_POOL_SIZE, DEFAULT_SQLITE_BUSY_TIMEOUT_MS
from wacrypto.store.atrest import AtRestKey, key_from_env, key_from_file
from wacrypto.store.dump import StoreDump
from wacrypto.store.memory import MemoryKeyStore
from wacrypto.store.protocols import KeyStore, LocalIdentity, OutboxEntry, SentMessage, StoreInfo, Transaction
from wacrypto.store.sql.engine import SqlKeyStore
from wacrypto.stripe import Stripe

__all__ = [
    "open_store",
    "KeyStore",
    "Transaction",
    "LocalIdentity",
    "OutboxEntry",
    "SentMessage",
    "MemoryKeyStore",
    "SqlKeyStore",
    "StoreDump",
    "StoreInfo",
]


async def open_store(
    url: str,
    *,
    key: bytes | None = None,
    key_file: str | None = None,
    pool_size: int = DEFAULT_SQL_POOL_SIZE,
    lanes: int | None = None,
    busy_timeout_ms: int = DEFAULT_SQLITE_BUSY_TIMEOUT_MS,
    migrate: bool = True,
    lease_holder: str | None = None,
    lease: bool = False,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    lease_stripe: Stripe | None = None,
) -> MemoryKeyStore | SqlKeyStore:
    """Open (and create or migrate) the key store at ``url``.

    ``key`` / ``key_file`` (or the ``WACRYPTO_STORE_KEY`` / ``WACRYPTO_STORE_KEY_FILE`` environment
    variables) enable encryption of private keys and record blobs at rest. ``pool_size`` bounds the
    connections (and worker threads) of a PostgreSQL/MySQL store; ``lanes`` (default 1, URL parameter
    ``?lanes=N``) is how many of them carry group-committed transactions, addresses striped over them. With ``lease=True`` (or a
    ``lease_holder`` name) the store takes the account's instance lease on open and raises
    :class:`~wacrypto.errors.InstanceConflictError` if another live instance holds it; run
    ``store.heartbeat`` in a nursery to keep it; ``lease_stripe`` takes the lease of one stripe of the
    account's conversations instead (a scale-out worker, :mod:`wacrypto.whatsapp.stripes`). ``migrate=False`` refuses to touch an old schema.
    """
    from wacrypto.store.sql.dialect import dialect_for
    from wacrypto.store.sql.url import parse_store_url

    if url in ("memory:", "memory://", "memory:///"):
        return MemoryKeyStore()
    if not isinstance(pool_size, int) or not 1 <= pool_size <= 256:
        raise InvalidArgumentError("pool_size must be in 1..256")
    u = parse_store_url(url)
    raw = key if key is not None else (key_from_file(key_file) if key_file is not None else key_from_env())
    at_rest = AtRestKey(raw) if raw is not None else None
    if "busy_timeout_ms" in u.params:
        busy_timeout_ms = int(u.params["busy_timeout_ms"])
    d = dialect_for(u, busy_timeout_ms=busy_timeout_ms)
    if lanes is None and "lanes" in u.params:
        lanes = int(u.params["lanes"])
    # One lane (connection carrying group-committed transactions) measured fastest against a local
    # server; more lanes overlap round trips to a distant one (``?lanes=4``).
    n = lanes if lanes is not None else 1
    if u.backend == "sqlite":
        n = 1  # one writer per SQLite file; more lanes would only fight over its lock
    store = SqlKeyStore(d, key=at_rest, lanes=min(n, pool_size))
    try:
        await store._initialize(migrate_schema=migrate)
        if lease or lease_holder is not None or lease_stripe is not None:
            await store.acquire_lease(lease_holder, lease_seconds=lease_seconds, stripe=lease_stripe)
    except BaseException:
        await store.aclose()
        raise
    return store
