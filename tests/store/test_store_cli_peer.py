"""End to end through the command line: peer --store survives kill -9; backup/restore across backends; import."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from wacrypto.session import account
from wacrypto.address import Address
from wacrypto.session.cipher import SessionCipher
from wacrypto.errors import BackupError
from wacrypto.primitives.keys import KeyPair
from wacrypto.signal.records import PreKeyRecord, SignedPreKeyRecord, identity_from_bytes
from wacrypto.store import open_store
from wacrypto.store.backup import read_archive, write_archive

ALICE, BOB = Address("alice", 1), Address("bob", 1)


class PeerProc:
    def __init__(self, *args: str) -> None:
        self.p = subprocess.Popen(
            [sys.executable, "-m", "wacrypto", "peer", *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.n = 0

    def __call__(self, cmd: str, **fields: Any) -> dict[str, Any]:
        assert self.p.stdin and self.p.stdout
        self.n += 1
        self.p.stdin.write(json.dumps({"cmd": cmd, "id": self.n, **fields}) + "\n")
        self.p.stdin.flush()
        resp = json.loads(self.p.stdout.readline())
        assert resp["ok"], resp
        return resp["result"]  # type: ignore[no-any-return]

    def kill9(self) -> None:
        self.p.send_signal(signal.SIGKILL)
        self.p.wait()

    def close(self) -> None:
        if self.p.poll() is None:
            assert self.p.stdin
            self.p.stdin.close()
            self.p.wait(timeout=30)


def test_peer_with_sqlite_store_survives_kill_minus_nine(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'alice.db'}"
    alice, bob = PeerProc("--store", url), PeerProc()
    try:
        alice("new_identity", name="alice")
        bob("new_identity", name="bob")
        alice("process_bundle", remote="bob", bundle=bob("bundle"))
        for i in range(3):
            m = alice("encrypt", remote="bob", plaintext=f"a{i}".encode().hex())
            assert bytes.fromhex(bob("decrypt", remote="alice", **m)["plaintext"]) == f"a{i}".encode()
            r = bob("encrypt", remote="alice", plaintext=f"b{i}".encode().hex())
            assert bytes.fromhex(alice("decrypt", remote="bob", **r)["plaintext"]) == f"b{i}".encode()
        pending = bob("encrypt", remote="alice", plaintext=b"sent while alice was down".hex())
        alice.kill9()
        alice = PeerProc("--store", url)
        assert alice("has_session", remote="bob")["has_session"] is True
        assert bytes.fromhex(alice("decrypt", remote="bob", **pending)["plaintext"]) == b"sent while alice was down"
        m = alice("encrypt", remote="bob", plaintext=b"after restart".hex())
        assert m["type"] == 2
        assert bytes.fromhex(bob("decrypt", remote="alice", **m)["plaintext"]) == b"after restart"
        # new_identity resets the account in the store
        alice("new_identity", name="alice2")
        assert alice("has_session", remote="bob")["has_session"] is False
    finally:
        alice.close()
        bob.close()


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    e = {k: v for k, v in os.environ.items() if k != "WACRYPTO_BACKUP_PASSWORD"}
    e.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "wacrypto", "store", *args], capture_output=True, text=True, env=e,
        stdin=subprocess.DEVNULL, timeout=120,
    )


async def test_backup_sqlite_restore_postgres_continues_sessions(make_url: Callable[[str], str], tmp_path: Path) -> None:
    src, dst = make_url("sqlite"), make_url("postgresql")
    s = await open_store(src)
    await account.create_account(s, prekeys=4)
    other = await open_store("memory:")
    await account.create_account(other, prekeys=2)
    a, b = SessionCipher(s), SessionCipher(other)
    await a.process_bundle(BOB, await account.get_bundle(other))
    m = await a.encrypt_durable(BOB, b"before backup", "m-1")
    assert await b.decrypt(ALICE, m.type, m.body) == b"before backup"
    r = await b.encrypt(ALICE, b"in flight during the move")
    before = await s.dump()
    await s.aclose()

    out = tmp_path / "alice.wabak"
    env = {"WACRYPTO_BACKUP_PASSWORD": "corr3ct horse ?{}&~!()^@:/%#"}
    res = _cli("backup", "--store", src, "--out", str(out), env=env)
    assert res.returncode == 0, res.stderr
    assert b"before backup" not in out.read_bytes()
    bad = _cli("restore", "--store", dst, "--in", str(out), env={"WACRYPTO_BACKUP_PASSWORD": "wrong"})
    assert bad.returncode == 2 and "BackupError" in bad.stderr and "wrong backup password" in bad.stderr
    nopw = _cli("restore", "--store", dst, "--in", str(out))
    assert nopw.returncode == 2 and "WACRYPTO_BACKUP_PASSWORD" in nopw.stderr
    res = _cli("restore", "--store", dst, "--in", str(out), env=env)
    assert res.returncode == 0, res.stderr

    t = await open_store(dst)
    assert (await t.dump()).to_json() == before.to_json()
    a2 = SessionCipher(t)
    assert await a2.decrypt(BOB, r.type, r.body) == b"in flight during the move"
    m2 = await a2.encrypt(BOB, b"from the new machine")
    assert await b.decrypt(ALICE, m2.type, m2.body) == b"from the new machine"
    await t.aclose()
    again = _cli("restore", "--store", dst, "--in", str(out), env=env)
    assert again.returncode == 2 and "--force" in again.stderr


def test_archive_detects_tampering_and_truncation() -> None:
    from wacrypto.store.dump import StoreDump

    d = StoreDump(meta={"k": b"v"})
    blob = write_archive(d, "pw", log2_n=10)
    assert read_archive(blob, "pw").meta == {"k": b"v"}
    for broken in (blob[:-1], blob[:40], blob[:60] + bytes([blob[60] ^ 1]) + blob[61:], b"x" * 100):
        with pytest.raises(BackupError):
            read_archive(broken, "pw")


def _axolotl_db(path: Path, pair: KeyPair, reg: int, sessions: dict[tuple[str, int], bytes], idents: dict[str, bytes],
                prekeys: list[PreKeyRecord], spk: SignedPreKeyRecord) -> None:
    c = sqlite3.connect(path)
    c.executescript(
        "CREATE TABLE identities (_id INTEGER PRIMARY KEY AUTOINCREMENT, recipient_id TEXT UNIQUE, registration_id INTEGER,"
        " public_key BLOB, private_key BLOB, next_prekey_id INTEGER, timestamp INTEGER);"
        "CREATE TABLE sessions (_id INTEGER PRIMARY KEY AUTOINCREMENT, recipient_id TEXT, device_id INTEGER, record BLOB, timestamp INTEGER);"
        "CREATE TABLE prekeys (_id INTEGER PRIMARY KEY AUTOINCREMENT, prekey_id INTEGER UNIQUE, sent_to_server BOOLEAN, record BLOB);"
        "CREATE TABLE signed_prekeys (_id INTEGER PRIMARY KEY AUTOINCREMENT, prekey_id INTEGER UNIQUE, timestamp INTEGER, record BLOB);"
        "CREATE TABLE sender_keys (_id INTEGER PRIMARY KEY AUTOINCREMENT, group_id TEXT NOT NULL, sender_id INTEGER NOT NULL, record BLOB NOT NULL);"
    )
    c.execute("INSERT INTO identities (recipient_id, registration_id, public_key, private_key, next_prekey_id, timestamp) VALUES (-1, ?, ?, ?, ?, 0)",
              (reg, pair.public.to_bytes(), pair.private.to_bytes(), 50))
    for name, key in idents.items():
        c.execute("INSERT INTO identities (recipient_id, public_key) VALUES (?, ?)", (name, key))
    for (name, dev), rec in sessions.items():
        c.execute("INSERT INTO sessions (recipient_id, device_id, record, timestamp) VALUES (?, ?, ?, 0)", (name, dev, rec))
    for pk in prekeys:
        c.execute("INSERT INTO prekeys (prekey_id, sent_to_server, record) VALUES (?, 1, ?)", (pk.id, pk.to_bytes()))
    c.execute("INSERT INTO signed_prekeys (prekey_id, timestamp, record) VALUES (?, 0, ?)", (spk.id, spk.to_bytes()))
    c.commit()
    c.close()


async def test_import_axolotl_and_whatsmeow_then_continue(make_url: Callable[[str], str], tmp_path: Path) -> None:
    """Databases laid out as python-axolotl/yowsup and whatsmeow keep them; the sessions continue here."""
    src = await open_store("memory:")
    local = await account.create_account(src, prekeys=3)
    other = await open_store("memory:")
    await account.create_account(other, prekeys=2)
    a, b = SessionCipher(src), SessionCipher(other)
    await a.process_bundle(BOB, await account.get_bundle(other))
    m = await a.encrypt(BOB, b"hi")
    await b.decrypt(ALICE, m.type, m.body)
    d = await src.dump()
    pair = identity_from_bytes(local.identity_pair)
    bob_ident = d.identities["bob.1"]
    pks = [PreKeyRecord.from_bytes(v) for v in d.prekeys.values()]
    spk = SignedPreKeyRecord.from_bytes(next(iter(d.signed_prekeys.values())))

    ax = tmp_path / "axolotl.db"
    _axolotl_db(ax, pair, local.registration_id, {("bob", 1): d.sessions["bob.1"]}, {"bob": bob_ident}, pks, spk)
    wm = tmp_path / "whatsmeow.db"
    c = sqlite3.connect(wm)
    c.executescript(
        "CREATE TABLE whatsmeow_device (jid TEXT PRIMARY KEY, registration_id BIGINT, identity_key BLOB, signed_pre_key BLOB,"
        " signed_pre_key_id INTEGER, signed_pre_key_sig BLOB);"
        "CREATE TABLE whatsmeow_identity_keys (our_jid TEXT, their_id TEXT, identity BLOB, PRIMARY KEY (our_jid, their_id));"
        "CREATE TABLE whatsmeow_pre_keys (jid TEXT, key_id INTEGER, key BLOB, uploaded BOOLEAN, PRIMARY KEY (jid, key_id));"
        "CREATE TABLE whatsmeow_sessions (our_jid TEXT, their_id TEXT, session BLOB, PRIMARY KEY (our_jid, their_id));"
        "CREATE TABLE whatsmeow_sender_keys (our_jid TEXT, chat_id TEXT, sender_id TEXT, sender_key BLOB, PRIMARY KEY (our_jid, chat_id, sender_id));"
    )
    me = "15550001:0@s.whatsapp.net"
    c.execute("INSERT INTO whatsmeow_device VALUES (?, ?, ?, ?, ?, ?)",
              (me, local.registration_id, pair.private.to_bytes(), spk.key_pair.private.to_bytes(), spk.id, spk.signature))
    c.execute("INSERT INTO whatsmeow_identity_keys VALUES (?, 'bob:1', ?)", (me, bob_ident[1:]))
    for pk in pks:
        c.execute("INSERT INTO whatsmeow_pre_keys VALUES (?, ?, ?, 1)", (me, pk.id, pk.key_pair.private.to_bytes()))
    c.execute("INSERT INTO whatsmeow_sessions VALUES (?, 'bob:1', ?)", (me, d.sessions["bob.1"]))
    c.commit()
    c.close()

    bob_before = await other.dump()
    for kind, source in (("axolotl", ax), ("whatsmeow", wm)):
        await other.load(bob_before)  # each import continues the same ratchet from the same point
        dst = make_url("sqlite")
        res = _cli(f"import-{kind}", "--store", dst, str(source))
        assert res.returncode == 0, res.stderr
        t = await open_store(dst)
        got = await t.dump()
        assert got.local is not None and identity_from_bytes(got.local.identity_pair).private.to_bytes() == pair.private.to_bytes()
        assert got.identities["bob.1"] == bob_ident
        assert sorted(got.prekeys) == sorted(p.id for p in pks)
        assert got.sessions["bob.1"] == d.sessions["bob.1"]
        bundle = await account.get_bundle(t)
        assert bundle.signed_prekey_id == spk.id and bundle.identity_key == pair.public.to_bytes()
        # the imported session keeps working both ways
        ca = SessionCipher(t)
        x = await ca.encrypt(BOB, f"from {kind}".encode())
        assert await b.decrypt(ALICE, x.type, x.body) == f"from {kind}".encode()
        await t.aclose()
