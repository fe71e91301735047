"""chatd's own database (SQLite): what a chat server must not forget across a restart.

- **logins**: the Noise static key each (account, device) first logged in with ("register on first
  login"), and the keys of removed devices, which are refused from then on;
- **accounts and devices**: each device's registration id, identity key, signed prekey and, for a
  companion, its ADV identity; the account's signed key-index list;
- **prekey directory**: one-time prekeys as uploaded; :meth:`ChatdTx.take_bundle` hands each
  out at most once (marked in the same transaction that reads it);
- **mailboxes**: what waits for a device (messages, receipts, notifications: ``kind``), kept until the
  device acknowledges it or it expires (30 days by default), de-duplicated by (recipient, kind,
  sender, id, subtype, variant), with per-sender and strangers' shares (see
  :mod:`wacrypto.chatd.server`); an acknowledged entry leaves a tombstone (its id, no payload) until
  it expires, so a resend after a lost ack is not delivered twice; each change is committed before
  the caller acknowledges it;
- **received stanzas**: (sender device, kind, id, variant) of every stanza accepted, with the time it
  was acked under, so a resend is acked again and not stored twice;
- **correspondents**: who wrote to whom, which decides whether a sender is a stranger and who hears
  of a device's new identity key;
- **groups**: subject, creator, the creator's request key (a resent create makes nothing new) and
  members.

Every public method of :class:`ChatdDatabase` is one transaction; :meth:`ChatdDatabase.transaction`
gives a :class:`ChatdTx` for several operations in one (what :mod:`wacrypto.chatd.service` does per
stanza); :meth:`ChatdDatabase.batch` makes the transactions opened inside it savepoints of one
(group commit, what the server does per batch of stanzas). Blocking (the stdlib driver); the trio
server calls it from a worker thread. WAL journal,
``synchronous=FULL``: a committed row survives a crash of the process and of the machine.

Schema 2 added the login keys, received stanzas, groups, counters and the mailbox's kind, subtype
and variant; a schema-1 database is upgraded in place when opened (its mailbox rows become messages).
"""

from __future__ import annotations

import hmac
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, final

from wacrypto.errors import InvalidArgumentError, StoreError

__all__ = ["ChatdDatabase", "ChatdTx", "DeviceRecord", "GroupRecord", "Queued", "SCHEMA_VERSION", "Shares"]

SCHEMA_VERSION: Final = 3  # 3: lids (2 -> 3 only adds that table)
LID_BASE: Final = 100_000_000_000_000  # the first LID user number the server hands out
_BUSY_TIMEOUT_MS: Final = 30_000  # wait this long for the file's write lock (another process: a CLI)

_MAILBOX: Final = """
CREATE TABLE IF NOT EXISTS mailbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    recipient TEXT NOT NULL, kind TEXT NOT NULL DEFAULT 'message', sender TEXT NOT NULL, msg_id TEXT NOT NULL,
    subtype TEXT NOT NULL DEFAULT '', variant TEXT NOT NULL DEFAULT '',
    payload BLOB NOT NULL, stranger INTEGER NOT NULL, stored_at REAL NOT NULL, expires_at REAL NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0,
    UNIQUE (recipient, kind, sender, msg_id, subtype, variant))"""

_SCHEMA: Final = _MAILBOX + """;
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
CREATE INDEX IF NOT EXISTS mailbox_expiry ON mailbox (expires_at);
CREATE INDEX IF NOT EXISTS mailbox_waiting ON mailbox (recipient, delivered, seq);
CREATE TABLE IF NOT EXISTS correspondents (
    sender TEXT NOT NULL, recipient TEXT NOT NULL, last_at REAL NOT NULL, PRIMARY KEY (sender, recipient));
CREATE INDEX IF NOT EXISTS correspondents_back ON correspondents (recipient, sender);
CREATE TABLE IF NOT EXISTS logins (
    user TEXT NOT NULL, device INTEGER NOT NULL, static_key BLOB NOT NULL, registered_at REAL NOT NULL,
    removed INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (user, device));
CREATE TABLE IF NOT EXISTS received (
    sender TEXT NOT NULL, kind TEXT NOT NULL, msg_id TEXT NOT NULL, variant TEXT NOT NULL,
    acked_t INTEGER NOT NULL, expires_at REAL NOT NULL, PRIMARY KEY (sender, kind, msg_id, variant));
CREATE INDEX IF NOT EXISTS received_expiry ON received (expires_at);
CREATE TABLE IF NOT EXISTS groups (
    id TEXT PRIMARY KEY, subject TEXT NOT NULL, creator TEXT NOT NULL, create_key TEXT NOT NULL,
    created_at REAL NOT NULL, UNIQUE (creator, create_key));
CREATE TABLE IF NOT EXISTS group_members (
    group_id TEXT NOT NULL REFERENCES groups (id) ON DELETE CASCADE, user TEXT NOT NULL,
    PRIMARY KEY (group_id, user));
CREATE INDEX IF NOT EXISTS group_members_user ON group_members (user, group_id);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS lids (pn TEXT PRIMARY KEY, lid TEXT NOT NULL UNIQUE)
"""

# schema 1 -> 2: the mailbox gains kind, subtype and variant (its unique key changes, so the table is
# rebuilt); every other new table is created by _SCHEMA
_UPGRADE_1: Final = (
    "ALTER TABLE mailbox RENAME TO mailbox_v1",
    _MAILBOX,
    "INSERT INTO mailbox (seq, recipient, sender, msg_id, payload, stranger, stored_at, expires_at, delivered) "
    "SELECT seq, recipient, sender, msg_id, payload, stranger, stored_at, expires_at, delivered FROM mailbox_v1",
    "DROP TABLE mailbox_v1",
)

_DEVICE_COLUMNS: Final = ("user, device, registration_id, identity, signed_prekey_id, signed_prekey, "
                          "signed_prekey_signature, device_identity")


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
    """Something waiting in a mailbox, in arrival order (``seq``)."""

    seq: int
    sender: str
    msg_id: str
    payload: bytes
    stored_at: float
    expires_at: float
    kind: str = "message"
    subtype: str = ""


@final
@dataclass(frozen=True, slots=True)
class GroupRecord:
    id: str
    subject: str
    creator: str
    members: tuple[str, ...]  # sorted


@final
@dataclass(frozen=True, slots=True)
class Shares:
    """A mailbox's shares: at most ``mailbox`` waiting entries, ``sender`` from one sender and
    ``stranger`` from senders the recipient never wrote to."""

    sender: int
    stranger: int
    mailbox: int


@final
class ChatdTx:
    """The operations of one open transaction (from :meth:`ChatdDatabase.transaction`)."""

    __slots__ = ("_c", "aborted")

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._c = cursor
        self.aborted = False

    def abort(self) -> None:
        """Roll the whole transaction back when it ends instead of committing it."""
        self.aborted = True

    # ----------------------------------------------------------------- logins
    def bind_login(self, user: str, device: int, static_key: bytes, *, now: float) -> bool:
        """Register on first login: True if ``static_key`` is (now) the key of this device; False if
        another key holds it, or this key's device was removed."""
        row = self._c.execute("SELECT static_key, removed FROM logins WHERE user = ? AND device = ?",
                              (user, device)).fetchone()
        if row is not None:
            same = hmac.compare_digest(bytes(row[0]), static_key)
            if not row[1]:
                return same  # bound: only its own key
            if same:
                return False  # the removed device's key
            # a removed device's slot: a new key takes it
        self._c.execute("INSERT OR REPLACE INTO logins VALUES (?, ?, ?, ?, 0)", (user, device, static_key, now))
        return True

    def revoke_login(self, user: str, device: int) -> None:
        """The device was removed: its key may not log in again (another key may take the slot)."""
        self._c.execute("UPDATE logins SET removed = 1 WHERE user = ? AND device = ?", (user, device))

    # ----------------------------------------------------------------- devices and prekeys
    def register_device(self, rec: DeviceRecord, *, now: float) -> None:
        """Add or replace a device (a re-registration drops its old one-time prekeys)."""
        self._c.execute("DELETE FROM prekeys WHERE user = ? AND device = ?", (rec.user, rec.device))
        self._c.execute("INSERT OR REPLACE INTO devices VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (rec.user, rec.device, rec.registration_id, rec.identity, rec.signed_prekey_id,
                         rec.signed_prekey, rec.signed_prekey_signature, rec.device_identity, now))

    def remove_device(self, user: str, device: int) -> bool:
        return self._c.execute("DELETE FROM devices WHERE user = ? AND device = ?", (user, device)).rowcount > 0

    def device(self, user: str, device: int) -> DeviceRecord | None:
        row = self._c.execute(f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE user = ? AND device = ?",
                              (user, device)).fetchone()
        return None if row is None else _record(row)

    def devices(self, user: str) -> list[int]:
        return [r[0] for r in self._c.execute("SELECT device FROM devices WHERE user = ? ORDER BY device", (user,))]

    def _require_device(self, user: str, device: int) -> None:
        if self._c.execute("SELECT 1 FROM devices WHERE user = ? AND device = ?", (user, device)).fetchone() is None:
            raise InvalidArgumentError(f"no device {user}:{device}")

    def set_signed_prekey(self, user: str, device: int, key_id: int, public: bytes, signature: bytes) -> None:
        if self._c.execute("UPDATE devices SET signed_prekey_id = ?, signed_prekey = ?, signed_prekey_signature = ? "
                           "WHERE user = ? AND device = ?", (key_id, public, signature, user, device)).rowcount == 0:
            raise InvalidArgumentError(f"no device {user}:{device}")

    def set_device_identity(self, user: str, device: int, identity: bytes | None) -> None:
        if self._c.execute("UPDATE devices SET device_identity = ? WHERE user = ? AND device = ?",
                           (identity, user, device)).rowcount == 0:
            raise InvalidArgumentError(f"no device {user}:{device}")

    def add_prekeys(self, user: str, device: int, prekeys: Sequence[tuple[int, bytes]]) -> int:
        """Store uploaded one-time prekeys; an id already stored keeps its first key. Returns how many are new."""
        self._require_device(user, device)
        count = "SELECT COUNT(*) FROM prekeys WHERE user = ? AND device = ?"
        before = self._c.execute(count, (user, device)).fetchone()[0]
        self._c.executemany("INSERT OR IGNORE INTO prekeys (user, device, key_id, public) VALUES (?, ?, ?, ?)",
                            [(user, device, i, k) for i, k in prekeys])
        return int(self._c.execute(count, (user, device)).fetchone()[0] - before)

    def unused_prekey_list(self, user: str, device: int) -> list[tuple[int, bytes]]:
        """The one-time prekeys of that device not yet handed out, by id (what a key digest covers)."""
        rows = self._c.execute("SELECT key_id, public FROM prekeys WHERE user = ? AND device = ? AND handed_out_at IS NULL "
                               "ORDER BY key_id", (user, device)).fetchall()
        return [(int(i), bytes(k)) for i, k in rows]

    def unused_prekeys(self, user: str, device: int) -> int:
        """One-time prekeys of that device not yet handed out (what a prekey-count query answers)."""
        return int(self._c.execute("SELECT COUNT(*) FROM prekeys WHERE user = ? AND device = ? AND handed_out_at IS NULL",
                                   (user, device)).fetchone()[0])

    def take_bundle(self, user: str, device: int, *, now: float) -> tuple[DeviceRecord, tuple[int, bytes] | None] | None:
        """The device's keys and one unused one-time prekey (marked handed out in the same transaction,
        so no two fetches ever get the same one); None if the device is unknown. Oldest id first."""
        rec = self.device(user, device)
        if rec is None:
            return None
        pk = self._c.execute("SELECT key_id, public FROM prekeys WHERE user = ? AND device = ? AND handed_out_at IS NULL "
                             "ORDER BY key_id LIMIT 1", (user, device)).fetchone()
        if pk is not None:
            self._c.execute("UPDATE prekeys SET handed_out_at = ? WHERE user = ? AND device = ? AND key_id = ?",
                            (now, user, device, pk[0]))
        return rec, None if pk is None else (int(pk[0]), bytes(pk[1]))

    def set_key_index_list(self, user: str, signed: bytes, *, now: float) -> None:
        self._c.execute("INSERT OR REPLACE INTO key_index_lists VALUES (?, ?, ?)", (user, signed, now))

    def key_index_list(self, user: str) -> tuple[bytes, float] | None:
        """The account's signed key-index list and when it was stored."""
        row = self._c.execute("SELECT signed, updated_at FROM key_index_lists WHERE user = ?", (user,)).fetchone()
        return None if row is None else (bytes(row[0]), float(row[1]))

    # ----------------------------------------------------------------- mailboxes
    def enqueue(self, recipient: str, sender: str, msg_id: str, payload: bytes, *, now: float, ttl: float,
                shares: Shares | None, stranger: bool, kind: str = "message", subtype: str = "",
                variant: str = "") -> int | bool | None:
        """Keep an entry for ``recipient``: its ``seq``; False if that entry is already there (waiting or
        acknowledged); None if a share refuses it (``shares`` None: no share applies)."""
        if self._c.execute("SELECT 1 FROM mailbox WHERE recipient = ? AND kind = ? AND sender = ? AND msg_id = ? "
                           "AND subtype = ? AND variant = ?",
                           (recipient, kind, sender, msg_id, subtype, variant)).fetchone():
            return False
        if shares is not None:
            total, mine, strangers = self._c.execute(
                "SELECT COUNT(*), COALESCE(SUM(sender = ?), 0), COALESCE(SUM(stranger), 0) FROM mailbox "
                "WHERE recipient = ? AND expires_at > ? AND delivered = 0", (sender, recipient, now)).fetchone()
            if total >= shares.mailbox or mine >= shares.sender or (stranger and strangers >= shares.stranger):
                return None
        self._c.execute("INSERT INTO mailbox (recipient, kind, sender, msg_id, subtype, variant, payload, stranger, "
                        "stored_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (recipient, kind, sender, msg_id, subtype, variant, payload, int(stranger), now, now + ttl))
        seq = self._c.lastrowid
        assert seq is not None
        return seq

    def pending(self, recipient: str, *, now: float, after_seq: int = 0, limit: int = 1000) -> list[Queued]:
        """Unexpired entries waiting for ``recipient`` after ``after_seq``, oldest first."""
        rows = self._c.execute("SELECT seq, sender, msg_id, payload, stored_at, expires_at, kind, subtype FROM mailbox "
                               "WHERE recipient = ? AND delivered = 0 AND seq > ? AND expires_at > ? ORDER BY seq LIMIT ?",
                               (recipient, after_seq, now, limit)).fetchall()
        return [Queued(int(r[0]), r[1], r[2], bytes(r[3]), r[4], r[5], r[6], r[7]) for r in rows]

    def count(self, recipient: str, *, now: float) -> int:
        return int(self._c.execute("SELECT COUNT(*) FROM mailbox WHERE recipient = ? AND expires_at > ? AND delivered = 0",
                                   (recipient, now)).fetchone()[0])

    def acknowledge(self, recipient: str, sender: str, msg_id: str, *, now: float, ttl: float, kind: str = "message",
                    subtype: str | None = None) -> bool:
        """The recipient has the oldest waiting entry of that kind, sender and id (and ``subtype``, unless
        None): drop its payload, keep its id for ``ttl`` seconds (a resend is then recognised). False
        if there was none waiting."""
        sub, args = ("", ()) if subtype is None else (" AND subtype = ?", (subtype,))
        row = self._c.execute(f"SELECT MIN(seq) FROM mailbox WHERE recipient = ? AND kind = ? AND sender = ? "
                              f"AND msg_id = ? AND delivered = 0{sub}", (recipient, kind, sender, msg_id, *args)).fetchone()
        if row[0] is None:
            return False
        self._c.execute("UPDATE mailbox SET delivered = 1, payload = x'', expires_at = ? WHERE seq = ?", (now + ttl, row[0]))
        return True

    def clear_mailbox(self, recipient: str) -> int:
        """Drop everything kept for ``recipient`` (a removed device); returns how many were waiting."""
        waiting = self._c.execute("SELECT COUNT(*) FROM mailbox WHERE recipient = ? AND delivered = 0",
                                  (recipient,)).fetchone()[0]
        self._c.execute("DELETE FROM mailbox WHERE recipient = ?", (recipient,))
        return int(waiting)

    def expire(self, *, now: float) -> int:
        """Drop every entry past its expiry (and forget acknowledged and received ids past theirs);
        returns how many undelivered entries were dropped."""
        dropped = int(self._c.execute("DELETE FROM mailbox WHERE expires_at <= ? AND delivered = 0", (now,)).rowcount)
        self._c.execute("DELETE FROM mailbox WHERE expires_at <= ?", (now,))
        self._c.execute("DELETE FROM received WHERE expires_at <= ?", (now,))
        return dropped

    # ----------------------------------------------------------------- received stanzas (dedup)
    def received(self, sender: str, kind: str, msg_id: str, variant: str, *, now: float) -> int | None:
        """The ``t`` this stanza was acked under, if it was accepted before (and is still remembered)."""
        row = self._c.execute("SELECT acked_t FROM received WHERE sender = ? AND kind = ? AND msg_id = ? AND variant = ? "
                              "AND expires_at > ?", (sender, kind, msg_id, variant, now)).fetchone()
        return None if row is None else int(row[0])

    def mark_received(self, sender: str, kind: str, msg_id: str, variant: str, *, acked_t: int, expires_at: float) -> None:
        self._c.execute("INSERT OR REPLACE INTO received VALUES (?, ?, ?, ?, ?, ?)",
                        (sender, kind, msg_id, variant, acked_t, expires_at))

    # ----------------------------------------------------------------- correspondents
    def note_correspondent(self, sender: str, recipient: str, *, now: float) -> None:
        self._c.execute("INSERT OR REPLACE INTO correspondents VALUES (?, ?, ?)", (sender, recipient, now))

    def wrote_to(self, sender: str, recipient: str) -> bool:
        return self._c.execute("SELECT 1 FROM correspondents WHERE sender = ? AND recipient = ?",
                               (sender, recipient)).fetchone() is not None

    def correspondents(self, user: str) -> set[str]:
        """Everyone ``user`` wrote to or heard from."""
        rows = self._c.execute("SELECT recipient FROM correspondents WHERE sender = ? UNION "
                               "SELECT sender FROM correspondents WHERE recipient = ?", (user, user))
        return {r[0] for r in rows} - {user}

    # ----------------------------------------------------------------- groups
    def create_group(self, group_id: str, subject: str, creator: str, create_key: str, members: Sequence[str], *,
                     now: float) -> None:
        self._c.execute("INSERT INTO groups VALUES (?, ?, ?, ?, ?)", (group_id, subject, creator, create_key, now))
        self._c.executemany("INSERT OR IGNORE INTO group_members VALUES (?, ?)", [(group_id, m) for m in members])

    def group(self, group_id: str) -> GroupRecord | None:
        row = self._c.execute("SELECT id, subject, creator FROM groups WHERE id = ?", (group_id,)).fetchone()
        if row is None:
            return None
        members = tuple(r[0] for r in self._c.execute("SELECT user FROM group_members WHERE group_id = ? ORDER BY user",
                                                      (group_id,)))
        return GroupRecord(row[0], row[1], row[2], members)

    def group_by_key(self, creator: str, create_key: str) -> GroupRecord | None:
        row = self._c.execute("SELECT id FROM groups WHERE creator = ? AND create_key = ?", (creator, create_key)).fetchone()
        return None if row is None else self.group(row[0])

    def co_members(self, user: str) -> set[str]:
        """Everyone who shares a group with ``user``."""
        rows = self._c.execute("SELECT DISTINCT b.user FROM group_members a JOIN group_members b "
                               "ON a.group_id = b.group_id WHERE a.user = ?", (user,))
        return {r[0] for r in rows} - {user}

    # ----------------------------------------------------------------- counters
    def lid_of(self, pn: str) -> str | None:
        """The LID user JID of the phone-number account ``pn`` (a user JID), if it has one."""
        row = self._c.execute("SELECT lid FROM lids WHERE pn = ?", (pn,)).fetchone()
        return None if row is None else str(row[0])

    def pn_of(self, lid: str) -> str | None:
        """The phone-number account whose LID is ``lid`` (a user JID)."""
        row = self._c.execute("SELECT pn FROM lids WHERE lid = ?", (lid,)).fetchone()
        return None if row is None else str(row[0])

    def assign_lid(self, pn: str) -> str:
        """The account's LID, handed out on first use (never reused)."""
        got = self.lid_of(pn)
        if got is None:
            got = f"{LID_BASE + self.next_number('lid')}@lid"
            self._c.execute("INSERT INTO lids (pn, lid) VALUES (?, ?)", (pn, got))
        return got

    def next_number(self, name: str) -> int:
        """1, 2, 3... per ``name``, never repeated (the server's own stanza and group ids)."""
        self._c.execute("INSERT INTO counters VALUES (?, 1) ON CONFLICT (name) DO UPDATE SET value = value + 1", (name,))
        return int(self._c.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()[0])


def _record(row: Any) -> DeviceRecord:
    return DeviceRecord(row[0], int(row[1]), int(row[2]), bytes(row[3]), int(row[4]), bytes(row[5]), bytes(row[6]),
                        None if row[7] is None else bytes(row[7]))


@final
class ChatdDatabase:
    """chatd's SQLite database. ``ChatdDatabase(path)`` creates or opens it (``":memory:"`` for tests)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:" and not Path(self.path).parent.is_dir():
            raise InvalidArgumentError(f"chatd database folder does not exist: {Path(self.path).parent}")
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                       timeout=_BUSY_TIMEOUT_MS / 1000)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            with self._tx() as c:  # (executescript would commit on its own: one statement at a time)
                c.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                row = c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                version = None if row is None else int(row[0])
                if version is not None and version > SCHEMA_VERSION:
                    raise StoreError(f"chatd database schema {version} is newer than this chatd ({SCHEMA_VERSION})")
                if version == 1:
                    for stmt in _UPGRADE_1:
                        c.execute(stmt)
                for stmt in filter(str.strip, _SCHEMA.split(";")):
                    c.execute(stmt)
                c.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open the chatd database {self.path}: {exc}") from None
        self._lock = threading.RLock()  # re-entered by the transactions of a batch
        self._batch_depth = 0
        # a batch whose statements ran (open_batch .. pause_batch) and whose COMMIT has not yet:
        # nothing else may begin on the connection meanwhile (it waits on _idle)
        self._awaiting_commit = False
        self._idle = threading.Condition(self._lock)

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
    def transaction(self) -> Iterator[ChatdTx]:
        """One transaction: committed when the block ends (durably: ``synchronous=FULL``), rolled back
        if it raises or calls :meth:`ChatdTx.abort`. Database failures raise :class:`StoreError`.

        Inside :meth:`batch` (the same thread) it is a savepoint of the batch's transaction instead:
        rolled back alone when it raises or aborts, committed with the batch."""
        with self._lock:
            self._wait_idle()
            try:
                c = self._db.cursor()
                nested = self._batch_depth > 0
                c.execute("SAVEPOINT tx" if nested else "BEGIN IMMEDIATE")
                tx = ChatdTx(c)
                try:
                    yield tx
                except BaseException:
                    c.execute("ROLLBACK TO tx" if nested else "ROLLBACK")
                    if nested:
                        c.execute("RELEASE tx")
                    raise
                if nested:
                    if tx.aborted:
                        c.execute("ROLLBACK TO tx")
                    c.execute("RELEASE tx")
                else:
                    c.execute("ROLLBACK" if tx.aborted else "COMMIT")
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"chatd database: {exc}") from None

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group commit: every :meth:`transaction` opened inside this block (by this thread; other
        threads wait) is a savepoint of one database transaction, committed (one fsync) when the
        block ends. The caller acts on what the transactions decided (acks, deliveries) only after
        the block returned; if the commit fails it raises :class:`StoreError` and nothing of the
        batch is kept."""
        with self._lock:
            if self._batch_depth:
                self._batch_depth += 1
                try:
                    yield
                finally:
                    self._batch_depth -= 1
                return
            self._wait_idle()
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"chatd database: {exc}") from None
            self._batch_depth = 1
            try:
                yield
            except BaseException:
                self._batch_depth = 0
                self._rollback_quietly()
                raise
            self._batch_depth = 0
            self._commit_or_raise()

    def _commit_or_raise(self) -> None:
        """(Lock held) COMMIT the batch's transaction; if that fails, roll back and raise StoreError."""
        try:
            self._db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            self._rollback_quietly()
            raise StoreError(f"chatd database: the batch did not commit: {exc}") from None

    def _wait_idle(self) -> None:
        """(Lock held) wait until no batch awaits its COMMIT; a batch's own transactions never wait."""
        while self._awaiting_commit and not self._batch_depth:
            self._idle.wait()

    # A batch in two steps, for a caller on an event loop: the statements there (open_batch, the
    # transactions, pause_batch), the COMMIT and its fsync on a worker thread (commit_batch), started
    # before the loop runs anything else: a transaction the loop's thread opens meanwhile waits for
    # that COMMIT (briefly), and never for a thread the loop itself would have had to start.
    def open_batch(self) -> bool:
        """Begin a batch on this thread if the file's write lock is free at once (False: it is not,
        nothing begun: use :meth:`batch` on a thread, which waits for it). The transactions opened
        on this thread until :meth:`pause_batch` are its savepoints; :meth:`abort_batch` drops it."""
        self._lock.acquire()
        begun = False
        try:
            if self._batch_depth or self._awaiting_commit:
                return False
            self._db.execute("PRAGMA busy_timeout = 0")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                begun = True
            except sqlite3.OperationalError as exc:
                if (exc.sqlite_errorcode & 0xFF) not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                    raise
            finally:
                self._db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        except sqlite3.DatabaseError as exc:
            if begun:
                self._rollback_quietly()
            self._lock.release()
            raise StoreError(f"chatd database: {exc}") from None
        except BaseException:
            if begun:
                self._rollback_quietly()
            self._lock.release()
            raise
        if not begun:
            self._lock.release()
            return False
        self._batch_depth = 1
        return True  # the lock stays held by this thread until pause_batch or abort_batch

    def _rollback_quietly(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.DatabaseError:
            pass

    def pause_batch(self) -> None:
        """The batch's statements are done (this thread): :meth:`commit_batch` must follow."""
        self._batch_depth = 0
        self._awaiting_commit = True
        self._lock.release()

    def abort_batch(self) -> None:
        """Instead of :meth:`pause_batch`: roll the open batch back (this thread)."""
        self._batch_depth = 0
        try:
            self._rollback_quietly()
        finally:
            self._lock.release()

    def drop_paused_batch(self) -> None:
        """Instead of :meth:`commit_batch` (its thread could not start): roll the paused batch back."""
        with self._lock:
            try:
                self._rollback_quietly()
            finally:
                self._awaiting_commit = False
                self._idle.notify_all()

    def commit_batch(self) -> None:
        """COMMIT the paused batch (any thread; one fsync). If it fails it raises
        :class:`StoreError` and nothing of the batch is kept."""
        with self._lock:
            try:
                self._commit_or_raise()
            finally:
                self._awaiting_commit = False
                self._idle.notify_all()

    # ----------------------------------------------------------------- one transaction each
    def register_device(self, rec: DeviceRecord, *, now: float) -> None:
        """Add or replace a device (a re-registration drops its old one-time prekeys)."""
        with self.transaction() as tx:
            tx.register_device(rec, now=now)

    def remove_device(self, user: str, device: int) -> bool:
        with self.transaction() as tx:
            return tx.remove_device(user, device)

    def device(self, user: str, device: int) -> DeviceRecord | None:
        with self.transaction() as tx:
            return tx.device(user, device)

    def devices(self, user: str) -> list[int]:
        with self.transaction() as tx:
            return tx.devices(user)

    def set_signed_prekey(self, user: str, device: int, key_id: int, public: bytes, signature: bytes) -> None:
        with self.transaction() as tx:
            tx.set_signed_prekey(user, device, key_id, public, signature)

    def add_prekeys(self, user: str, device: int, prekeys: Sequence[tuple[int, bytes]]) -> int:
        """Store uploaded one-time prekeys; an id already stored keeps its first key. Returns how many are new."""
        with self.transaction() as tx:
            return tx.add_prekeys(user, device, prekeys)

    def unused_prekeys(self, user: str, device: int) -> int:
        with self.transaction() as tx:
            return tx.unused_prekeys(user, device)

    def take_bundle(self, user: str, device: int, *, now: float) -> tuple[DeviceRecord, tuple[int, bytes] | None] | None:
        """See :meth:`ChatdTx.take_bundle`."""
        with self.transaction() as tx:
            return tx.take_bundle(user, device, now=now)

    def set_key_index_list(self, user: str, signed: bytes, *, now: float) -> None:
        with self.transaction() as tx:
            tx.set_key_index_list(user, signed, now=now)

    def key_index_list(self, user: str) -> bytes | None:
        with self.transaction() as tx:
            entry = tx.key_index_list(user)
        return None if entry is None else entry[0]

    def enqueue(self, recipient: str, sender: str, msg_id: str, payload: bytes, *, now: float, ttl: float,
                sender_limit: int, stranger_limit: int, mailbox_limit: int) -> bool | None:
        """Keep a message for ``recipient`` (committed when this returns); ``sender`` is a stranger
        unless ``recipient`` wrote to it before.

        True: stored; False: already stored or already delivered (a resend of the same sender and id:
        acknowledge it, it is not stored twice);
        None: refused by a share (the sender's, the strangers' or the mailbox's): the caller must not
        acknowledge it, so its sender keeps it and sends it again later.
        """
        with self.transaction() as tx:
            stranger = not tx.wrote_to(recipient, sender)
            got = tx.enqueue(recipient, sender, msg_id, payload, now=now, ttl=ttl, stranger=stranger,
                             shares=Shares(sender_limit, stranger_limit, mailbox_limit))
            if got is None or got is False:
                return got
            tx.note_correspondent(sender, recipient, now=now)
            return True

    def pending(self, recipient: str, *, now: float, after_seq: int = 0, limit: int = 1000) -> list[Queued]:
        """Unexpired entries for ``recipient`` after ``after_seq``, oldest first."""
        with self.transaction() as tx:
            return tx.pending(recipient, now=now, after_seq=after_seq, limit=limit)

    def count(self, recipient: str, *, now: float) -> int:
        with self.transaction() as tx:
            return tx.count(recipient, now=now)

    def acknowledge(self, recipient: str, sender: str, msg_id: str, *, now: float, ttl: float) -> bool:
        """The recipient has the message: drop its payload, keep its id for ``ttl`` seconds (a resend
        is then recognised). False if it was not (or no longer) waiting."""
        with self.transaction() as tx:
            return tx.acknowledge(recipient, sender, msg_id, now=now, ttl=ttl)

    def expire(self, *, now: float) -> int:
        """See :meth:`ChatdTx.expire`."""
        with self.transaction() as tx:
            return tx.expire(now=now)
