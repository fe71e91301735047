"""Account rows on a connection: the row keys, the codec (keys at rest) and batched reads and writes.

Everything here is synchronous and runs on a lane's or the admin connection's worker thread. A
transaction's writes arrive as an *overlay*: ``{(kind, key): value}`` with :data:`DELETED` for a
deleted row; :meth:`Rows.apply` turns a merged overlay into one ``executemany`` per table.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence
from typing import Any, Final

from wacrypto.store.atrest import AtRestKey
from wacrypto.store.dump import StoreDump
from wacrypto.store.protocols import LocalIdentity, OutboxEntry, SentMessage
from wacrypto.store.sql.dialect import Conn, Dialect
from wacrypto.store.sql.schema import ACCOUNT_TABLES

_OUTBOX_PAGE: Final = 500  # outbox rows read at a time when only some chats' are wanted

__all__ = ["Rows", "DELETED", "HANDED", "row_key", "COUNT_NAMES"]

DELETED: Final = object()
"""Overlay value of a deleted row."""

HANDED: Final = "prekey_handed"
"""Overlay kind marking a one-time prekey handed out (``True``); the prekey row itself is not rewritten,
so a mark never brings back a prekey that a concurrent transaction used and deleted."""

COUNT_NAMES: Final = {
    "wa_local": "local_identity",
    "wa_identity": "identities",
    "wa_prekey": "prekeys",
    "wa_signed_prekey": "signed_prekeys",
    "wa_session": "sessions",
    "wa_sender_key": "sender_keys",
    "wa_meta": "meta",
    "wa_received": "received",
    "wa_outbox": "outbox",
    "wa_sent": "sent",
    "wa_retry": "retry_counters",
    "wa_lid_map": "lid_mappings",
}
"""Account tables under the names of :meth:`StoreDump.counts`."""


def _kh(*parts: bytes) -> bytes:
    h = hashlib.sha256()
    for p in parts:
        h.update(len(p).to_bytes(4, "big"))
        h.update(p)
    return h.digest()


@functools.lru_cache(maxsize=1 << 16)
def row_key(key: str) -> bytes:
    """The row key of a one-part name (address, meta key, message id); cached, as every message needs it."""
    return _kh(key.encode())


_skh = row_key


def _name_range(name: str) -> list[bytes]:
    """Bounds of the ``name.device`` texts of one address name: ``name.`` <= text < ``name/``."""
    return [f"{name}.".encode(), f"{name}/".encode()]


def _named(addr: str, name: str) -> bool:
    return addr.rpartition(".")[0] == name


def _label(table: str, key: bytes) -> bytes:
    return table.encode() + b"\x00" + key


def _idb(i: int) -> bytes:
    return int(i).to_bytes(8, "big", signed=True)


class Rows:
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
        if table == "sent":
            kh = _kh(key[0].encode(), key[1].encode())
            r = conn.query("SELECT message_id, chat, plaintext, created_at FROM wa_sent WHERE kh = ?", [kh])
            return self._sent_row(kh, r[0]) if r else None
        if table == "retry":
            r = conn.query("SELECT n, at FROM wa_retry WHERE kh = ?", [_kh(key[0].encode(), key[1].encode())])
            return (int(r[0][0]), float(r[0][1])) if r else None
        if table == "lid":
            r = conn.query("SELECT lid_user FROM wa_lid_map WHERE kh = ?", [_skh(key)])
            return bytes(r[0][0]).decode() if r else None
        raise AssertionError(table)

    def _sent_row(self, kh: bytes, r: tuple[Any, ...]) -> SentMessage:
        return SentMessage(bytes(r[0]).decode(), bytes(r[1]).decode(), self.open("wa_sent", kh, r[2]), float(r[3]))

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
        if table == HANDED:  # the prekeys marked handed out
            return [int(r[0]) for r in conn.query("SELECT id FROM wa_prekey WHERE handed_out = 1")]
        if table == "outbox":
            return [bytes(r[0]).decode() for r in conn.query("SELECT message_id FROM wa_outbox")]
        if table == "signed":
            return [int(r[0]) for r in conn.query("SELECT id FROM wa_signed_prekey")]
        if table == "session":
            return [bytes(r[0]).decode() for r in conn.query("SELECT address FROM wa_session")]
        if table == "sent":
            return [(bytes(m).decode(), bytes(c).decode()) for m, c in conn.query("SELECT message_id, chat FROM wa_sent")]
        raise AssertionError(table)

    def count(self, conn: Conn, table: str) -> int:
        """Rows of ``table`` (``"available"``: prekeys not handed out)."""
        sql = {
            "prekey": "SELECT COUNT(*) FROM wa_prekey",
            "available": "SELECT COUNT(*) FROM wa_prekey WHERE handed_out = 0",
            "session": "SELECT COUNT(*) FROM wa_session",
            "outbox": "SELECT COUNT(*) FROM wa_outbox",
            "sent": "SELECT COUNT(*) FROM wa_sent",
        }[table]
        return int(conn.query(sql)[0][0])

    def count_all(self, conn: Conn) -> dict[str, int]:
        return {COUNT_NAMES[t]: int(conn.query(f"SELECT COUNT(*) FROM {t}")[0][0]) for t in ACCOUNT_TABLES}

    def prekeys_not_handed_out(self, conn: Conn, after: int | None, limit: int) -> list[int]:
        """Ids of stored prekeys never handed out, ascending, past ``after``."""
        if after is None:
            rows = conn.query("SELECT id FROM wa_prekey WHERE handed_out = 0 ORDER BY id LIMIT ?", [limit])
        else:
            rows = conn.query(
                "SELECT id FROM wa_prekey WHERE handed_out = 0 AND id > ? ORDER BY id LIMIT ?", [after, limit]
            )
        return [int(r[0]) for r in rows]

    def prekey_to_hand_out(self, conn: Conn, prekey_id: int, *, any_state: bool) -> bytes | None:
        """The record of prekey ``prekey_id`` if it is stored (and, unless ``any_state``, not handed out).

        The row is read with a lock (PostgreSQL, MySQL): a transaction of another process handing out
        or using the same prekey commits first, and this read then sees its mark or its deletion."""
        r = conn.query("SELECT record, handed_out FROM wa_prekey WHERE id = ?" + self.d.for_update, [prekey_id])
        if not r or (int(r[0][1]) and not any_state):
            return None
        return self.open("wa_prekey", _idb(prekey_id), r[0][0])

    def outbox_first(self, conn: Conn, limit: int, chats: Callable[[str], bool] | None = None) -> list[OutboxEntry]:
        """The oldest ``limit`` entries; ``chats``: of the chats it accepts (read on, a page at a time,
        past the others: a striped worker's outbox shares the table with the other stripes')."""
        sql = "SELECT kh, message_id, address, msg_type, body, created_at FROM wa_outbox"
        order = " ORDER BY created_at, message_id LIMIT ?"
        if chats is None:
            return [self._outbox_row(bytes(r[0]), r[1:]) for r in conn.query(sql + order, [limit])]
        out: list[OutboxEntry] = []
        page = max(limit, _OUTBOX_PAGE)
        rows = conn.query(sql + order, [page])
        while True:
            out += [self._outbox_row(bytes(r[0]), r[1:]) for r in rows if chats(bytes(r[2]).decode())]
            if len(out) >= limit or len(rows) < page:
                return out[:limit]
            at, mid = float(rows[-1][5]), bytes(rows[-1][1])
            rows = conn.query(sql + " WHERE created_at > ? OR (created_at = ? AND message_id > ?)" + order,
                              [at, at, mid, page])

    def outbox_chats(self, conn: Conn) -> dict[str, str]:
        """message id -> chat of every outbox entry (no body read, none opened)."""
        return {bytes(m).decode(): bytes(a).decode() for m, a in conn.query("SELECT message_id, address FROM wa_outbox")}

    def prunable(self, conn: Conn, table: str, before: float) -> list[Any]:
        """Keys of the rows ``prune_received`` / ``sent_prune`` / ``retry_prune`` delete."""
        if table == "received":
            rows = conn.query("SELECT digest FROM wa_received WHERE handled = 1 AND at < ?", [before])
            return [bytes(r[0]) for r in rows]
        sql = {
            "sent": "SELECT message_id, chat FROM wa_sent WHERE created_at < ?",
            "retry": "SELECT message_id, sender FROM wa_retry WHERE at < ?",
        }[table]
        return [(bytes(a).decode(), bytes(b).decode()) for a, b in conn.query(sql, [before])]

    def of_name(self, conn: Conn, table: str, name: str) -> dict[Any, bytes]:
        """Sessions, identities (by ``name.device``) or sender keys (by ``(group, name.device)``) of one name."""
        if table == "session":
            rows = conn.query("SELECT address, kh, record FROM wa_session WHERE address >= ? AND address < ?", _name_range(name))
            found = {bytes(a).decode(): (bytes(kh), r) for a, kh, r in rows}
            return {a: self.open("wa_session", kh, r) for a, (kh, r) in found.items() if _named(a, name)}
        if table == "identity":
            rows = conn.query("SELECT address, identity_key FROM wa_identity WHERE address >= ? AND address < ?",
                              _name_range(name))
            return {a: bytes(k) for a, k in ((bytes(a).decode(), k) for a, k in rows) if _named(a, name)}
        rows = conn.query("SELECT kh, group_id, sender, record FROM wa_sender_key WHERE sender >= ? AND sender < ?",
                          _name_range(name))
        out: dict[Any, bytes] = {}
        for kh, g, sender, rec in rows:
            if _named(bytes(sender).decode(), name):
                out[(bytes(g).decode(), bytes(sender).decode())] = self.open("wa_sender_key", bytes(kh), rec)
        return out

    def pns_for_lid(self, conn: Conn, lid_user: str) -> list[str]:
        """Phone-number users mapped to ``lid_user``, newest mapping first (one, unless writes raced)."""
        rows = conn.query("SELECT pn_user FROM wa_lid_map WHERE lid_kh = ? ORDER BY updated_at DESC, pn_user",
                          [_skh(lid_user)])
        return [bytes(r[0]).decode() for r in rows]

    # ------------------------------------------------------------------ writes
    def apply(self, conn: Conn, merged: dict[tuple[str, Any], Any], now: float) -> None:
        ups: dict[str, list[list[Any]]] = {}
        dels: dict[str, list[list[Any]]] = {}
        handed: list[list[Any]] = []
        for (table, key), v in merged.items():
            if table == HANDED:
                if v is not DELETED:  # (DELETED: not handed out; a stored or removed prekey row says so)
                    handed.append([key])
                continue
            if v is DELETED:
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
        if handed:  # after the upserts: a prekey stored and handed out in one transaction stays marked
            conn.executemany("UPDATE wa_prekey SET handed_out = 1 WHERE id = ?", handed)

    def _pk(self, table: str, key: Any) -> tuple[str, list[Any]]:
        t = _SPEC[table][0]
        if table in ("prekey", "signed"):
            return t, [key]
        if table == "local":
            return t, [1]
        if table == "received":
            return t, [key]
        if table in ("senderkey", "sent", "retry"):
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
            return [key, self.seal("wa_prekey", _idb(key), v), 0, now]
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
        if table == "sent":
            kh = _kh(key[0].encode(), key[1].encode())
            m: SentMessage = v
            return [kh, m.message_id.encode(), m.chat.encode(), self.seal("wa_sent", kh, m.plaintext), m.created_at]
        if table == "retry":
            n, at = v
            return [_kh(key[0].encode(), key[1].encode()), key[0].encode(), key[1].encode(), n, at]
        if table == "lid":
            return [_skh(key), key.encode(), v.encode(), _skh(v), now]
        raise AssertionError(table)

    # ------------------------------------------------------------------ whole-account dump / load
    def dump(self, conn: Conn) -> StoreDump:
        d = StoreDump()
        r = conn.query("SELECT identity_pair, registration_id FROM wa_local WHERE id = 1")
        if r:
            d.local = LocalIdentity(self.open("wa_local", _idb(1), r[0][0]), int(r[0][1]))
        for a, k in conn.query("SELECT address, identity_key FROM wa_identity"):
            d.identities[bytes(a).decode()] = bytes(k)
        for i, rec, handed in conn.query("SELECT id, record, handed_out FROM wa_prekey"):
            d.prekeys[int(i)] = self.open("wa_prekey", _idb(int(i)), rec)
            if int(handed):
                d.handed_out_prekeys.add(int(i))
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
        for row in conn.query("SELECT kh, message_id, chat, plaintext, created_at FROM wa_sent"):
            m = self._sent_row(bytes(row[0]), row[1:])
            d.sent[(m.message_id, m.chat)] = m
        for mid, sender, n, at in conn.query("SELECT message_id, sender, n, at FROM wa_retry"):
            d.retry_counts[(bytes(mid).decode(), bytes(sender).decode())] = (int(n), float(at))
        for pn, lid in conn.query("SELECT pn_user, lid_user FROM wa_lid_map"):
            d.lid_mappings[bytes(pn).decode()] = bytes(lid).decode()
        return d

    def load(self, conn: Conn, d: StoreDump, now: float) -> None:
        for t in ACCOUNT_TABLES:
            conn.execute(f"DELETE FROM {t}")
        merged: dict[tuple[str, Any], Any] = {}
        if d.local is not None:
            merged[("local", 1)] = d.local
        merged.update({("identity", a): v for a, v in d.identities.items()})
        merged.update({("prekey", i): v for i, v in d.prekeys.items()})
        merged.update({(HANDED, i): True for i in d.handed_out_prekeys if i in d.prekeys})
        merged.update({("signed", i): v for i, v in d.signed_prekeys.items()})
        merged.update({("session", a): v for a, v in d.sessions.items()})
        merged.update({("senderkey", k): v for k, v in d.sender_keys.items()})
        merged.update({("meta", k): v for k, v in d.meta.items()})
        merged.update({("received", k): v for k, v in d.received.items()})
        merged.update({("outbox", k): v for k, v in d.outbox.items()})
        merged.update({("sent", k): v for k, v in d.sent.items()})
        merged.update({("retry", k): v for k, v in d.retry_counts.items()})
        merged.update({("lid", k): v for k, v in d.lid_mappings.items()})
        self.apply(conn, merged, now)


_SPEC: Final[dict[str, tuple[str, list[str], list[str]]]] = {
    "session": ("wa_session", ["kh", "address", "record", "updated_at"], ["kh"]),
    "identity": ("wa_identity", ["kh", "address", "identity_key", "updated_at"], ["kh"]),
    "local": ("wa_local", ["id", "identity_pair", "registration_id", "updated_at"], ["id"]),
    "prekey": ("wa_prekey", ["id", "record", "handed_out", "updated_at"], ["id"]),
    "signed": ("wa_signed_prekey", ["id", "record", "updated_at"], ["id"]),
    "senderkey": ("wa_sender_key", ["kh", "group_id", "sender", "record", "updated_at"], ["kh"]),
    "meta": ("wa_meta", ["kh", "k", "v", "updated_at"], ["kh"]),
    "received": ("wa_received", ["digest", "plaintext", "handled", "at"], ["digest"]),
    "outbox": ("wa_outbox", ["kh", "message_id", "address", "msg_type", "body", "created_at"], ["kh"]),
    "sent": ("wa_sent", ["kh", "message_id", "chat", "plaintext", "created_at"], ["kh"]),
    "retry": ("wa_retry", ["kh", "message_id", "sender", "n", "at"], ["kh"]),
    "lid": ("wa_lid_map", ["kh", "pn_user", "lid_user", "lid_kh", "updated_at"], ["kh"]),
}


