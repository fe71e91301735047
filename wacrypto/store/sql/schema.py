"""Numbered schema migrations and the version table.

A migration is a list of statements; ``{BLOB}``, ``{KEY}`` (32-byte hash key), ``{BIGINT}``, ``{DOUBLE}``,
``{TEXT}`` and ``{SUFFIX}`` are filled in per dialect. Migrations only ever get appended.
"""

from __future__ import annotations

from typing import Final

from wacrypto.errors import SchemaError
from wacrypto.store.sql.dialect import Conn, Dialect

__all__ = ["MIGRATIONS", "LATEST_VERSION", "current_version", "migrate", "ACCOUNT_TABLES"]

MIGRATIONS: Final[dict[int, list[str]]] = {
    1: [
        "CREATE TABLE wa_local (id INTEGER PRIMARY KEY, identity_pair {BLOB} NOT NULL,"
        " registration_id {BIGINT} NOT NULL, updated_at {DOUBLE} NOT NULL){SUFFIX}",
        "CREATE TABLE wa_identity (kh {KEY} PRIMARY KEY, address {BLOB} NOT NULL, identity_key {BLOB} NOT NULL,"
        " updated_at {DOUBLE} NOT NULL){SUFFIX}",
        "CREATE TABLE wa_prekey (id {BIGINT} PRIMARY KEY, record {BLOB} NOT NULL, updated_at {DOUBLE} NOT NULL){SUFFIX}",
        "CREATE TABLE wa_signed_prekey (id {BIGINT} PRIMARY KEY, record {BLOB} NOT NULL,"
        " updated_at {DOUBLE} NOT NULL){SUFFIX}",
        "CREATE TABLE wa_session (kh {KEY} PRIMARY KEY, address {BLOB} NOT NULL, record {BLOB} NOT NULL,"
        " updated_at {DOUBLE} NOT NULL){SUFFIX}",
        "CREATE TABLE wa_sender_key (kh {KEY} PRIMARY KEY, group_id {BLOB} NOT NULL, sender {BLOB} NOT NULL,"
        " record {BLOB} NOT NULL, updated_at {DOUBLE} NOT NULL){SUFFIX}",
        "CREATE TABLE wa_meta (kh {KEY} PRIMARY KEY, k {BLOB} NOT NULL, v {BLOB} NOT NULL,"
        " updated_at {DOUBLE} NOT NULL){SUFFIX}",
        "CREATE TABLE wa_received (digest {KEY} PRIMARY KEY, plaintext {BLOB} NOT NULL, handled INTEGER NOT NULL,"
        " at {DOUBLE} NOT NULL){SUFFIX}",
        "CREATE TABLE wa_outbox (kh {KEY} PRIMARY KEY, message_id {BLOB} NOT NULL, address {BLOB} NOT NULL,"
        " msg_type INTEGER NOT NULL, body {BLOB} NOT NULL, created_at {DOUBLE} NOT NULL){SUFFIX}",
        "CREATE INDEX wa_outbox_created ON wa_outbox (created_at)",
        "CREATE TABLE wa_store_info (name VARCHAR(64) PRIMARY KEY, value {BLOB} NOT NULL){SUFFIX}",
    ],
    2: [
        # one instance per account: lease with heartbeat, expiry and fencing token
        "CREATE TABLE wa_lease (id INTEGER PRIMARY KEY, holder {TEXT} NOT NULL, token {BIGINT} NOT NULL,"
        " expires_at {DOUBLE} NOT NULL, updated_at {DOUBLE} NOT NULL){SUFFIX}",
        # garbage collection of handled dedup entries
        "CREATE INDEX wa_received_handled ON wa_received (handled, at)",
    ],
    3: [
        # a one-time prekey is handed out in at most one bundle (prekeys stored before are not marked)
        "ALTER TABLE wa_prekey ADD COLUMN handed_out INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX wa_prekey_handed_out ON wa_prekey (handed_out, id)",
    ],
    4: [
        # session health on WhatsApp: sent plaintexts for retry receipts, the receiver's retry counters,
        # and the phone-number -> LID user mapping (kh: row key of the PN user; lid_kh: of the LID user)
        "CREATE TABLE wa_sent (kh {KEY} PRIMARY KEY, message_id {BLOB} NOT NULL, chat {BLOB} NOT NULL,"
        " plaintext {BLOB} NOT NULL, created_at {DOUBLE} NOT NULL){SUFFIX}",
        "CREATE INDEX wa_sent_created ON wa_sent (created_at)",
        "CREATE TABLE wa_retry (kh {KEY} PRIMARY KEY, message_id {BLOB} NOT NULL, sender {BLOB} NOT NULL,"
        " n INTEGER NOT NULL, at {DOUBLE} NOT NULL){SUFFIX}",
        "CREATE INDEX wa_retry_at ON wa_retry (at)",
        "CREATE TABLE wa_lid_map (kh {KEY} PRIMARY KEY, pn_user {BLOB} NOT NULL, lid_user {BLOB} NOT NULL,"
        " lid_kh {KEY} NOT NULL, updated_at {DOUBLE} NOT NULL){SUFFIX}",
        "CREATE INDEX wa_lid_map_lid ON wa_lid_map (lid_kh)",
    ],
}
LATEST_VERSION: Final = max(MIGRATIONS)

ACCOUNT_TABLES: Final = (
    "wa_local",
    "wa_identity",
    "wa_prekey",
    "wa_signed_prekey",
    "wa_session",
    "wa_sender_key",
    "wa_meta",
    "wa_received",
    "wa_outbox",
    "wa_sent",
    "wa_retry",
    "wa_lid_map",
)

_VERSION_DDL: Final = "CREATE TABLE IF NOT EXISTS wa_schema_version (version INTEGER PRIMARY KEY, applied_at {DOUBLE} NOT NULL){SUFFIX}"


def current_version(conn: Conn, dialect: Dialect) -> int:
    conn.execute(dialect.ddl(_VERSION_DDL))
    rows = conn.query("SELECT MAX(version) FROM wa_schema_version")
    return int(rows[0][0] or 0) if rows else 0


def migrate(conn: Conn, dialect: Dialect, *, target: int = LATEST_VERSION, apply: bool = True) -> tuple[int, int]:
    """Bring the schema to ``target``; returns (version before, version after).

    Refuses a database newer than this code. With ``apply=False`` only checks and raises
    :class:`SchemaError` when migrations are pending.
    """
    import time

    dialect.migration_lock(conn)
    try:
        before = current_version(conn, dialect)
        if before > LATEST_VERSION:
            raise SchemaError(
                f"database schema version {before} is newer than this wacrypto understands"
                f" (up to {LATEST_VERSION}); upgrade wacrypto"
            )
        if before >= target:
            return before, before
        if not apply:
            raise SchemaError(
                f"database schema version {before} is older than {target}: run `wacrypto store migrate --store URL`"
            )
        for v in range(before + 1, target + 1):
            if dialect.name == "postgresql":
                conn.execute("BEGIN")
            for stmt in MIGRATIONS[v]:
                conn.execute(dialect.ddl(stmt))
            conn.execute("INSERT INTO wa_schema_version (version, applied_at) VALUES (?, ?)", [v, time.time()])
            if dialect.name == "postgresql":
                conn.execute("COMMIT")
        return before, target
    except BaseException:
        if dialect.name in ("postgresql", "sqlite"):
            try:
                conn.execute("ROLLBACK")
            except Exception:
                pass
        raise
    finally:
        try:
            dialect.migration_unlock(conn)
        except Exception:
            if dialect.name == "sqlite":
                try:
                    conn.execute("ROLLBACK")
                except Exception:
                    pass
