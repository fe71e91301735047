"""chatd's own database (SQLite): what a chat server must not forget across a restart.

- **accounts and devices**: each device's registration id, identity key, signed prekey and, for a
  companion, its ADV identity; the account's signed key-index list;
- **prekey directory**: one-time prekeys as uploaded; :meth:`ChatdDatabase.take_bundle` hands each
  out at most once (marked in the same transaction that reads it);
- **mailboxes**: messages waiting for a device, kept until the device acknowledges them or they
  expire (30 days by default), de-duplicated by (sender, id), with per-sender and strangers' shares
  (see :mod:`wacrypto.chatd.server`); an acknowledged message leaves a tombstone (its id, no
  payload) until it expires, so a resend after a lost ack is not delivered twice; each change is
  committed before the caller acknowledges it;
- **correspondents**: who wrote to whom, which decides whether a sender is a stranger.

Every method is one transaction and blocking (the stdlib driver); the trio server calls them from a
worker thread. WAL journal, ``synchronous=FULL``: a committed row survives a crash of the process
and of the machine.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final, final

from wacrypto.errors import InvalidArgumentError, StoreError

__all__ = ["ChatdDatabase", "DeviceRecord", "Queued", "SCHEMA_VERSION"]

SCHEMA_VERSION: Final = 1

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS devices (
    user TEXT NOT NULL, device INTEGER NOT NULL,
    registration_id INTEGER NOT NULL, identity BLOB NOT NULL,
    signed_prekey_id INTEGER NOT NULL, signed_prekey BLOB NOT NULL, signed_prekey_signature BLOB NOT NULL,
    device_identity BLOB, registered_at REAL NOT NULL,
    PRIMARY KEY (user, device));
CREATE TABLE IF NOT EXISTS key_index_lists (user TEXT PRIMARY KEY, signed BLOB NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS prekeys (
    user TEXT NOT NULL, device INTEGER NOT NULL, key_id INTEGER NOT NULL, public BLOB NOT NULL,
    handed_out_at REAL,
    PRIMARY KEY (user, device, key_id),
    FOREIGN KEY (user, device) REFERENCES devices (user, device) ON DELETE CASCADE);
CREATE INDEX IF NOT EXISTS prekeys_unused ON prekeys (user, device, handed_out_at, key_id);
CREATE TABLE IF NOT EXISTS mailbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    recipient TEXT NOT NULL, sender TEXT NOT NULL, msg_id TEXT NOT NULL,
    payload BLOB NOT NULL, stranger INTEGER NOT NULL, stored_at REAL NOT NULL, expires_at REAL NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0,
    UNIQUE (recipient, sender, msg_id));
CREATE INDEX IF NOT EXISTS mailbox_expiry ON mailbox (expires_at);
CREATE TABLE IF NOT EXISTS correspondents (
    sender TEXT NOT NULL, recipient TEXT NOT NULL, last_at REAL NOT NULL, PRIMARY KEY (sender, recipient));
"""


@final
@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """A registered device's published keys (raw 32-byte keys, as on the wire)."""

    user: str
    device: int
    registration_id: int
    identity: bytes
    signed_prekey_id: int
    signed_prekey: bytes
    signed_prekey_signature: bytes
    device_identity: bytes | None = None


@final
@dataclass(frozen=True, slots=True)
class Queued:
    """A message waiting in a mailbox, in arrival order (``seq``)."""

    seq: int
    sender: str
    msg_id: str
    payload: bytes
    stored_at: float
    expires_at: float


@final
class ChatdDatabase:
    """chatd's SQLite database. ``ChatdDatabase(path)`` creates or opens it (``":memory:"`` for tests)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:" and not Path(self.path).parent.is_dir():
            raise InvalidArgumentError(f"chatd database folder does not exist: {Path(self.path).parent}")
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            with self._tx() as c:  # (executescript would commit on its own: one statement at a time)
                for stmt in filter(str.strip, _SCHEMA.split(";")):
                    c.execute(stmt)
                row = c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                if row is None:
                    c.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                elif int(row[0]) > SCHEMA_VERSION:
                    raise StoreError(f"chatd database schema {row[0]} is newer than this chatd ({SCHEMA_VERSION})")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open the chatd database {self.path}: {exc}") from None
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def __repr__(self) -> str:
        return f"ChatdDatabase({self.path!r})"

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Cursor]:
        c = self._db.cursor()
        c.execute("BEGIN IMMEDIATE")
        try:
            yield c
        except BaseException:
            c.execute("ROLLBACK")
            raise
        else:
            c.execute("COMMIT")

    @contextmanager
    def _locked(self) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            try:
                with self._tx() as c:
                    yield c
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"chatd database: {exc}") from None

    # ----------------------------------------------------------------- devices and prekeys
    def register_device(self, rec: DeviceRecord, *, now: float) -> None:
        """Add or replace a device (a re-registration drops its old one-time prekeys)."""
        with self._locked() as c:
            c.execute("DELETE FROM prekeys WHERE user = ? AND device = ?", (rec.user, rec.device))
            c.execute("INSERT OR REPLACE INTO devices VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (rec.user, rec.device, rec.registration_id, rec.identity, rec.signed_prekey_id,
                       rec.signed_prekey, rec.signed_prekey_signature, rec.device_identity, now))

    def remove_device(self, user: str, device: int) -> bool:
        with self._locked() as c:
            return c.execute("DELETE FROM devices WHERE user = ? AND device = ?", (user, device)).rowcount > 0

    def device(self, user: str, device: int) -> DeviceRecord | None:
        with self._locked() as c:
            row = c.execute("SELECT user, device, registration_id, identity, signed_prekey_id, signed_prekey, "
                            "signed_prekey_signature, device_identity FROM devices WHERE user = ? AND device = ?",
                            (user, device)).fetchone()
        return None if row is None else DeviceRecord(*row)

    def devices(self, user: str) -> list[int]:
        with self._locked() as c:
            return [r[0] for r in c.execute("SELECT device FROM devices WHERE user = ? ORDER BY device", (user,))]

    def set_signed_prekey(self, user: str, device: int, key_id: int, public: bytes, signature: bytes) -> None:
        with self._locked() as c:
            if c.execute("UPDATE devices SET signed_prekey_id = ?, signed_prekey = ?, signed_prekey_signature = ? "
                         "WHERE user = ? AND device = ?", (key_id, public, signature, user, device)).rowcount == 0:
                raise InvalidArgumentError(f"no device {user}:{device}")

    def add_prekeys(self, user: str, device: int, prekeys: Sequence[tuple[int, bytes]]) -> int:
        """Store uploaded one-time prekeys; an id already stored keeps its first key. Returns how many are new."""
        with self._locked() as c:
            if c.execute("SELECT 1 FROM devices WHERE user = ? AND device = ?", (user, device)).fetchone() is None:
                raise InvalidArgumentError(f"no device {user}:{device}")
            before = c.execute("SELECT COUNT(*) FROM prekeys WHERE user = ? AND device = ?", (user, device)).fetchone()[0]
            c.executemany("INSERT OR IGNORE INTO prekeys (user, device, key_id, public) VALUES (?, ?, ?, ?)",
                          [(user, device, i, k) for i, k in prekeys])
            after = c.execute("SELECT COUNT(*) FROM prekeys WHERE user = ? AND device = ?", (user, device)).fetchone()[0]
            return int(after - before)

    def unused_prekeys(self, user: str, device: int) -> int:
        """One-time prekeys of that device not yet handed out (what a prekey-count query answers)."""
        with self._locked() as c:
            return int(c.execute("SELECT COUNT(*) FROM prekeys WHERE user = ? AND device = ? AND handed_out_at IS NULL",
                                 (user, device)).fetchone()[0])

    def take_bundle(self, user: str, device: int, *, now: float) -> tuple[DeviceRecord, tuple[int, bytes] | None] | None:
        """The device's keys and one unused one-time prekey (marked handed out in the same transaction,
        so no two fetches ever get the same one); None if the device is unknown. Oldest id first."""
        with self._locked() as c:
            row = c.execute("SELECT user, device, registration_id, identity, signed_prekey_id, signed_prekey, "
                            "signed_prekey_signature, device_identity FROM devices WHERE user = ? AND device = ?",
                            (user, device)).fetchone()
            if row is None:
                return None
            pk = c.execute("SELECT key_id, public FROM prekeys WHERE user = ? AND device = ? AND handed_out_at IS NULL "
                           "ORDER BY key_id LIMIT 1", (user, device)).fetchone()
            if pk is not None:
                c.execute("UPDATE prekeys SET handed_out_at = ? WHERE user = ? AND device = ? AND key_id = ?",
                          (now, user, device, pk[0]))
            return DeviceRecord(*row), None if pk is None else (int(pk[0]), bytes(pk[1]))

    def set_key_index_list(self, user: str, signed: bytes, *, now: float) -> None:
        with self._locked() as c:
            c.execute("INSERT OR REPLACE INTO key_index_lists VALUES (?, ?, ?)", (user, signed, now))

    def key_index_list(self, user: str) -> bytes | None:
        with self._locked() as c:
            row = c.execute("SELECT signed FROM key_index_lists WHERE user = ?", (user,)).fetchone()
        return None if row is None else bytes(row[0])

    # ----------------------------------------------------------------- mailboxes
    def enqueue(self, recipient: str, sender: str, msg_id: str, payload: bytes, *, now: float, ttl: float,
                sender_limit: int, stranger_limit: int, mailbox_limit: int) -> bool | None:
        """Keep a message for ``recipient`` (committed when this returns).

        True: stored; False: already stored or already delivered (a resend of the same sender and id:
        acknowledge it, it is not stored twice);
        None: refused by a share (the sender's, the strangers' or the mailbox's): the caller must not
        acknowledge it, so its sender keeps it and sends it again later.
        """
        with self._locked() as c:
            if c.execute("SELECT 1 FROM mailbox WHERE recipient = ? AND sender = ? AND msg_id = ?",
                         (recipient, sender, msg_id)).fetchone():
                return False
            stranger = c.execute("SELECT 1 FROM correspondents WHERE sender = ? AND recipient = ?",
                                 (recipient, sender)).fetchone() is None
            total, mine, strangers = c.execute(
                "SELECT COUNT(*), COALESCE(SUM(sender = ?), 0), COALESCE(SUM(stranger), 0) FROM mailbox "
                "WHERE recipient = ? AND expires_at > ? AND delivered = 0", (sender, recipient, now)).fetchone()
            if total >= mailbox_limit or mine >= sender_limit or (stranger and strangers >= stranger_limit):
                return None
            c.execute("INSERT INTO mailbox (recipient, sender, msg_id, payload, stranger, stored_at, expires_at) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?)", (recipient, sender, msg_id, payload, int(stranger), now, now + ttl))
            c.execute("INSERT OR REPLACE INTO correspondents VALUES (?, ?, ?)", (sender, recipient, now))
            return True

    def pending(self, recipient: str, *, now: float, after_seq: int = 0, limit: int = 1000) -> list[Queued]:
        """Unexpired messages for ``recipient`` after ``after_seq``, oldest first."""
        with self._locked() as c:
            rows = c.execute("SELECT seq, sender, msg_id, payload, stored_at, expires_at FROM mailbox "
                             "WHERE recipient = ? AND seq > ? AND expires_at > ? AND delivered = 0 ORDER BY seq LIMIT ?",
                             (recipient, after_seq, now, limit)).fetchall()
        return [Queued(int(r[0]), r[1], r[2], bytes(r[3]), r[4], r[5]) for r in rows]

    def count(self, recipient: str, *, now: float) -> int:
        with self._locked() as c:
            return int(c.execute("SELECT COUNT(*) FROM mailbox WHERE recipient = ? AND expires_at > ? AND delivered = 0",
                                 (recipient, now)).fetchone()[0])

    def acknowledge(self, recipient: str, sender: str, msg_id: str, *, now: float, ttl: float) -> bool:
        """The recipient has the message: drop its payload, keep its id for ``ttl`` seconds (a resend
        is then recognised). False if it was not (or no longer) waiting."""
        with self._locked() as c:
            return c.execute("UPDATE mailbox SET delivered = 1, payload = x'', expires_at = ? "
                             "WHERE recipient = ? AND sender = ? AND msg_id = ? AND delivered = 0",
                             (now + ttl, recipient, sender, msg_id)).rowcount > 0

    def expire(self, *, now: float) -> int:
        """Drop every message past its expiry (and forget delivered ids past theirs); returns how many
        undelivered messages were dropped."""
        with self._locked() as c:
            dropped = int(c.execute("DELETE FROM mailbox WHERE expires_at <= ? AND delivered = 0", (now,)).rowcount)
            c.execute("DELETE FROM mailbox WHERE expires_at <= ?", (now,))
            return dropped
