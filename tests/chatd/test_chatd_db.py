"""chatd's database: devices and prekeys (each handed out once), mailboxes that survive a restart,
de-duplicate, respect their shares and expire."""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from wacrypto.chatd.db import SCHEMA_VERSION, ChatdDatabase, DeviceRecord
from wacrypto.errors import InvalidArgumentError, StoreError

DEV = DeviceRecord("111", 0, 42, b"i" * 32, 1, b"s" * 32, b"g" * 64)
LIMITS: dict[str, Any] = dict(ttl=100.0, sender_limit=3, stranger_limit=4, mailbox_limit=6)


def test_devices_and_prekeys_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "chatd.db"
    db = ChatdDatabase(path)
    db.register_device(DEV, now=1.0)
    assert db.add_prekeys("111", 0, [(1, b"a" * 32), (2, b"b" * 32), (2, b"x" * 32)]) == 2
    db.close()
    db = ChatdDatabase(path)
    assert db.device("111", 0) == DEV and db.devices("111") == [0] and db.unused_prekeys("111", 0) == 2
    got = [db.take_bundle("111", 0, now=2.0) for _ in range(3)]
    assert [g[1] for g in got if g] == [(1, b"a" * 32), (2, b"b" * 32), None]  # each once, then none
    assert db.unused_prekeys("111", 0) == 0 and db.take_bundle("222", 0, now=2.0) is None
    with pytest.raises(InvalidArgumentError):
        db.add_prekeys("222", 0, [(1, b"a" * 32)])
    db.register_device(DEV, now=3.0)  # re-registration: old prekeys gone
    assert db.unused_prekeys("111", 0) == 0


def _hand_out(path: str, n: int, q: "multiprocessing.Queue[list[int]]") -> None:
    db = ChatdDatabase(path)
    got = []
    for _ in range(n):
        b = db.take_bundle("111", 0, now=1.0)
        if b and b[1]:
            got.append(b[1][0])
    q.put(got)


def test_no_prekey_is_handed_out_twice_across_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "chatd.db")
    db = ChatdDatabase(path)
    db.register_device(DEV, now=1.0)
    db.add_prekeys("111", 0, [(i, bytes([i % 256]) * 32) for i in range(1, 201)])
    q: multiprocessing.Queue[list[int]] = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_hand_out, args=(path, 120, q)) for _ in range(3)]
    for p in procs:
        p.start()
    ids = [i for _ in procs for i in q.get(timeout=60)]
    for p in procs:
        p.join(30)
    assert sorted(ids) == list(range(1, 201))  # all 200 handed out, none twice


def test_mailbox_dedup_order_ack_and_restart(tmp_path: Path) -> None:
    path = tmp_path / "chatd.db"
    db = ChatdDatabase(path)
    assert db.enqueue("bob", "alice", "m1", b"one", now=1.0, **LIMITS) is True
    assert db.enqueue("bob", "alice", "m1", b"one again", now=1.5, **LIMITS) is False  # a resend
    assert db.enqueue("bob", "carol", "m1", b"other", now=2.0, **LIMITS) is True  # same id, other sender
    db.close()
    db = ChatdDatabase(path)
    q = db.pending("bob", now=3.0)
    assert [(m.sender, m.msg_id, m.payload) for m in q] == [("alice", "m1", b"one"), ("carol", "m1", b"other")]
    assert db.pending("bob", now=3.0, after_seq=q[0].seq)[0].sender == "carol"
    assert db.acknowledge("bob", "alice", "m1", now=3.0, ttl=50.0)
    assert not db.acknowledge("bob", "alice", "m1", now=3.0, ttl=50.0)
    assert db.count("bob", now=3.0) == 1
    # the sender's ack was lost and it sends again: recognised, not stored or delivered twice
    assert db.enqueue("bob", "alice", "m1", b"one", now=4.0, **LIMITS) is False
    assert [m.sender for m in db.pending("bob", now=4.0)] == ["carol"]
    db.expire(now=60.0)  # the tombstone goes with its time
    assert db.enqueue("bob", "alice", "m1", b"one", now=60.0, **LIMITS) is True


def test_shares_and_expiry() -> None:
    db = ChatdDatabase(":memory:")
    # bob wrote to alice first: alice is a correspondent of bob's, the others are strangers
    assert db.enqueue("alice", "bob", "hi", b"x", now=0.0, **LIMITS)
    results = [db.enqueue("bob", f"stranger{i}", "m", b"x", now=1.0, **LIMITS) for i in range(6)]
    assert results == [True] * 4 + [None] * 2  # strangers share at most 4 of bob's 6
    assert [db.enqueue("bob", "alice", f"a{i}", b"x", now=1.0, **LIMITS) for i in range(3)] == [True, True, None]
    assert db.count("bob", now=1.0) == 6  # the mailbox is full...
    assert db.enqueue("bob", "alice", "late", b"x", now=1.0, **LIMITS) is None
    assert db.expire(now=101.0) == 7  # ...until everything expires
    assert db.count("bob", now=101.0) == 0 and db.pending("bob", now=101.0) == []


def test_committed_before_return_survives_sigkill(tmp_path: Path) -> None:
    path = str(tmp_path / "chatd.db")
    pid = os.fork()
    if pid == 0:  # child: store, then die without closing anything
        db = ChatdDatabase(path)
        db.enqueue("bob", "alice", "m1", b"kept", now=1.0, **LIMITS)
        os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(pid, 0)
    assert [m.payload for m in ChatdDatabase(path).pending("bob", now=2.0)] == [b"kept"]


def test_bad_paths_and_newer_schemas(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="does not exist"):
        ChatdDatabase(tmp_path / "missing" / "chatd.db")
    (tmp_path / "junk.db").write_bytes(b"not a database" * 100)
    with pytest.raises(StoreError):
        ChatdDatabase(tmp_path / "junk.db")
    db = ChatdDatabase(tmp_path / "new.db")
    db._db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.close()
    with pytest.raises(StoreError, match="newer"):
        ChatdDatabase(tmp_path / "new.db")


_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE mailbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, recipient TEXT NOT NULL, sender TEXT NOT NULL,
    msg_id TEXT NOT NULL, payload BLOB NOT NULL, stranger INTEGER NOT NULL, stored_at REAL NOT NULL,
    expires_at REAL NOT NULL, delivered INTEGER NOT NULL DEFAULT 0, UNIQUE (recipient, sender, msg_id));
CREATE TABLE correspondents (sender TEXT NOT NULL, recipient TEXT NOT NULL, last_at REAL NOT NULL,
    PRIMARY KEY (sender, recipient));
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO mailbox (recipient, sender, msg_id, payload, stranger, stored_at, expires_at)
    VALUES ('bob', 'alice', 'm1', x'6f6e65', 0, 1.0, 100.0);
INSERT INTO correspondents VALUES ('alice', 'bob', 1.0);
"""


def test_a_schema_1_database_is_upgraded_in_place(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "v1.db"
    con = sqlite3.connect(path)
    con.executescript(_V1)
    con.close()
    db = ChatdDatabase(path)
    assert [(m.sender, m.msg_id, m.payload, m.kind) for m in db.pending("bob", now=2.0)] == [("alice", "m1", b"one", "message")]
    assert db.enqueue("bob", "alice", "m1", b"again", now=2.0, **LIMITS) is False  # its dedup key survived
    with db.transaction() as tx:
        assert tx.wrote_to("alice", "bob") and tx.next_number("group") == 1  # new tables exist
    db.close()
    assert sqlite3.connect(path).execute("SELECT value FROM meta").fetchone() == (str(SCHEMA_VERSION),)
    assert ChatdDatabase(path).pending("bob", now=2.0)[0].msg_id == "m1"  # and reopening changes nothing


def test_transactions_commit_whole_or_not_at_all(tmp_path: Path) -> None:
    db = ChatdDatabase(tmp_path / "chatd.db")
    with db.transaction() as tx:
        tx.register_device(DEV, now=1.0)
        tx.add_prekeys("111", 0, [(1, b"a" * 32)])
        tx.abort()
    assert db.device("111", 0) is None
    with pytest.raises(InvalidArgumentError), db.transaction() as tx:
        tx.register_device(DEV, now=1.0)
        tx.add_prekeys("222", 0, [(1, b"a" * 32)])  # no such device: the whole transaction goes
    assert db.device("111", 0) is None
    with db.transaction() as tx:
        tx.register_device(DEV, now=1.0)
    assert db.device("111", 0) == DEV


def test_logins_register_on_first_use_and_refuse_removed_keys() -> None:
    db = ChatdDatabase(":memory:")
    with db.transaction() as tx:
        assert tx.bind_login("111@lid", 0, b"k" * 32, now=1.0)
        assert tx.bind_login("111@lid", 0, b"k" * 32, now=2.0)
        assert not tx.bind_login("111@lid", 0, b"x" * 32, now=2.0)
        tx.revoke_login("111@lid", 0)
        assert not tx.bind_login("111@lid", 0, b"k" * 32, now=3.0)  # the removed device's key
        assert tx.bind_login("111@lid", 0, b"n" * 32, now=3.0)  # a new device takes the slot
        assert not tx.bind_login("111@lid", 0, b"k" * 32, now=3.0)


def test_groups_counters_and_received_ids() -> None:
    db = ChatdDatabase(":memory:")
    with db.transaction() as tx:
        tx.create_group("1-1", "trip", "1@lid", "key", ["2@lid", "1@lid", "2@lid"], now=1.0)
        assert tx.group("1-1") == tx.group_by_key("1@lid", "key") and tx.group("1-1").members == ("1@lid", "2@lid")  # type: ignore[union-attr]
        assert tx.co_members("2@lid") == {"1@lid"} and tx.group("9-9") is None
        assert [tx.next_number("n") for _ in range(3)] == [1, 2, 3] and tx.next_number("m") == 1
        tx.mark_received("1@lid", "message", "m1", "", acked_t=5, expires_at=10.0)
        assert tx.received("1@lid", "message", "m1", "", now=9.0) == 5
        assert tx.received("1@lid", "message", "m1", "1", now=9.0) is None
        tx.expire(now=10.0)
        assert tx.received("1@lid", "message", "m1", "", now=9.0) is None  # forgotten with its time
