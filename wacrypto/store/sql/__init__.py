"""SQL backends of the key store (SQLite, PostgreSQL, MySQL/MariaDB). Use :func:`wacrypto.store.open_store`."""

from __future__ import annotations

from wacrypto.store.sql.engine import SqlKeyStore, SqlTransaction
from wacrypto.store.sql.url import StoreURL, parse_store_url

__all__ = ["SqlKeyStore", "SqlTransaction", "StoreURL", "parse_store_url"]
