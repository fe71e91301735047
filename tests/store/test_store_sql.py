"""SQL-only behaviour: persistence, migrations, server versions, passwords, leases, keys at rest."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from store_dbs import my_admin, my_url, pg_admin, pg_url, unique
from wacrypto.session import account
from wacrypto.address import Address
from wacrypto.session.cipher import SessionCipher
from wacrypto.errors import (
    InstanceConflictError,
    LeaseLostError,
    SchemaError,
    StoreError,
    StoreUnavailableError,
    UnsupportedServerError,
)
from wacrypto.signal.records import identity_from_bytes
from wacrypto.store import SentMessage, SqlKeyStore, open_store
from wacrypto.store.sql.dialect import check_version, dialect_for, parse_mysql_version
from wacrypto.store.sql.rows import Rows
from wacrypto.store.sql.schema import LATEST_VERSION, migrate
from wacrypto.store.sql.url import parse_store_url
from wacrypto.stripe import Stripe

BOB = Address("bob", 1)
ALICE = Address("alice", 1)
NASTY = "p?{}&~!()^@:/%#w'\"\\ x"


async def test_state_survives_reopen(sql_url: str) -> None:
    s = await open_store(sql_url)
    local = await account.create_account(s, prekeys=3)
    async with s.transaction(BOB) as tx:
        await tx.store_session(BOB, b"record")
    await s.aclose()
    s2 = await open_store(sql_url)
    async with s2.transaction(BOB) as tx:
        assert await tx.get_local_identity() == local
        assert await tx.load_session(BOB) == b"record"
        assert await tx.count_prekeys() == 3
    await s2.aclose()


def _old_store(url: str, version: int, rows: dict[tuple[str, Any], Any], *statements: tuple[str, list[Any]]) -> None:
    """A store of schema ``version`` (not encrypted at rest) holding ``rows`` and what ``statements`` insert."""
    d = dialect_for(parse_store_url(url), busy_timeout_ms=5000)
    conn = d.connect()
    try:
        assert migrate(conn, d, target=version) == (0, version)
        conn.execute("INSERT INTO wa_store_info (name, value) VALUES ('at_rest', ?)", [b"none"])
        if d.name == "sqlite":
            conn.execute("BEGIN")
        else:
            d.begin(conn)
        Rows(d, None).apply(conn, rows, 1.0)
        for sql, params in statements:
            conn.execute(sql, params)
        d.commit(conn)
    finally:
        conn.close()


async def test_fresh_install_and_upgrade_from_version_1(sql_url: str) -> None:
    _old_store(sql_url, 1, {("session", "bob.1"): b"old-record", ("meta", "k"): b"v"},
               ("INSERT INTO wa_prekey (id, record, updated_at) VALUES (7, ?, 1.0)", [b"old-prekey"]))
    with pytest.raises(SchemaError, match="older than"):
        await open_store(sql_url, migrate=False)
    s = await open_store(sql_url)  # upgrades 1 -> latest, keeps the data
    assert isinstance(s, SqlKeyStore)
    assert await s.schema_version() == LATEST_VERSION
    async with s.transaction(BOB) as tx:
        assert await tx.load_session(BOB) == b"old-record"
        assert await tx.get_meta("k") == b"v"
        assert await tx.count_available_prekeys() == 1  # a prekey of the old schema counts as not handed out
        assert await tx.hand_out_prekey() == (7, b"old-prekey")
    await s.acquire_lease("after-upgrade")  # the table migration 2 added works
    await s.aclose()


async def test_prekey_hand_out_survives_reopen(sql_url: str) -> None:
    """Issue 14: after the newest one-time prekey was used, bundles still carry the unused ones, and a
    prekey handed out before a restart is not handed out again after it."""
    s = await open_store(sql_url)
    await account.create_account(s, prekeys=3)
    b1 = await account.get_bundle(s)
    peer = await open_store("memory:")
    await account.create_account(peer, prekeys=1)
    c = SessionCipher(peer)
    await c.process_bundle(BOB, b1)
    m = await c.encrypt(BOB, b"hi")
    assert await SessionCipher(s).decrypt(Address("alice", 1), m.type, m.body) == b"hi"
    b2 = await account.get_bundle(s)
    await s.aclose()
    s = await open_store(sql_url)
    try:
        b3 = await account.get_bundle(s)
        assert None not in (b1.prekey_id, b2.prekey_id, b3.prekey_id)
        assert len({b1.prekey_id, b2.prekey_id, b3.prekey_id}) == 3
        assert (await account.get_bundle(s)).prekey_id is None  # all three handed out
        async with s.transaction() as tx:
            assert await tx.count_prekeys() == 2 and await tx.count_available_prekeys() == 0
    finally:
        await s.aclose()


async def test_session_health_state_survives_reopen(sql_url: str) -> None:
    """A retry count continues after a restart; sent plaintexts and the LID mapping are still there."""
    s = await open_store(sql_url)
    async with s.transaction() as tx:
        assert await tx.retry_count_bump("m1", "bob.1", 1.0) == 1
        assert await tx.retry_count_bump("m1", "bob.1", 2.0) == 2
        await tx.sent_put(SentMessage("m1", "bob@s.whatsapp.net", b"hello", 3.0))
        await tx.set_lid_mapping("15551234", "98765_1")
    await s.aclose()
    s = await open_store(sql_url)
    try:
        async with s.transaction() as tx:
            assert await tx.retry_count_bump("m1", "bob.1", 4.0) == 3
            assert await tx.sent_get("m1", "bob@s.whatsapp.net") == SentMessage("m1", "bob@s.whatsapp.net", b"hello", 3.0)
            assert (await tx.get_lid_for_pn("15551234"), await tx.get_pn_for_lid("98765_1")) == ("98765_1", "15551234")
    finally:
        await s.aclose()


async def test_upgrade_from_version_3_migrates_old_rows_to_a_lid(sql_url: str) -> None:
    """Migration 4 adds the session-health tables to a store of schema 3; its sessions, identities and
    sender keys move to a LID name."""
    _old_store(sql_url, 3, {("session", "155512.1"): b"old-record", ("identity", "155512.1"): b"id",
                            ("senderkey", ("g", "155512.1")): b"sk"})
    s = await open_store(sql_url)
    assert isinstance(s, SqlKeyStore)
    try:
        assert await s.schema_version() == LATEST_VERSION == 4
        info = await s.info()
        assert {k: info.rows[k] for k in ("sessions", "sent", "retry_counters", "lid_mappings")} == {
            "sessions": 1, "sent": 0, "retry_counters": 0, "lid_mappings": 0}
        async with s.transaction(Address("155512", 1), Address("777_1", 1)) as tx:
            assert await tx.migrate_address("155512", "777_1") == 3
            await tx.set_lid_mapping("155512", "777_1")
            await tx.sent_put(SentMessage("m", "c", b"p", 1.0))
        async with s.transaction(Address("777_1", 1)) as tx:
            assert await tx.load_session(Address("777_1", 1)) == b"old-record"
            assert await tx.get_remote_identity(Address("777_1", 1)) == b"id"
            assert await tx.load_sender_key("g", Address("777_1", 1)) == b"sk"
            assert await tx.load_session(Address("155512", 1)) is None
            assert await tx.count_sent() == 1
    finally:
        await s.aclose()


async def test_newer_schema_is_refused(sql_url: str) -> None:
    s = await open_store(sql_url)
    await s.aclose()
    d = dialect_for(parse_store_url(sql_url), busy_timeout_ms=5000)
    conn = d.connect()
    conn.execute("INSERT INTO wa_schema_version (version, applied_at) VALUES (99, 0)")
    conn.close()
    with pytest.raises(SchemaError, match="99 is newer"):
        await open_store(sql_url)


def test_old_servers_are_refused_with_versions_named() -> None:
    with pytest.raises(UnsupportedServerError, match=r"PostgreSQL 9.6 found; wacrypto needs PostgreSQL >= 10.0"):
        check_version("PostgreSQL", (9, 6), "9.6")
    product, nums = parse_mysql_version("5.6.51-log")
    with pytest.raises(UnsupportedServerError, match=r"MySQL 5.6.51-log found; wacrypto needs MySQL >= 5.7"):
        check_version(product, nums, "5.6.51-log")
    product, nums = parse_mysql_version("10.1.48-MariaDB")
    with pytest.raises(UnsupportedServerError, match=r"MariaDB >= 10.2"):
        check_version(product, nums, "10.1.48-MariaDB")
    check_version(*parse_mysql_version("8.0.36"), "8.0.36")
    check_version(*parse_mysql_version("10.11.19-MariaDB-0+deb12u1"), "10.11")


def test_url_parsing_decodes_every_reserved_character() -> None:
    from urllib.parse import quote

    u = parse_store_url(f"postgresql://{quote('us@r', safe='')}:{quote(NASTY, safe='')}@db.example:6543/my%20db?sslmode=require")
    assert (u.user, u.password, u.host, u.port, u.database, u.params) == ("us@r", NASTY, "db.example", 6543, "my db", {"sslmode": "require"})
    assert NASTY not in repr(u) and NASTY not in u.redacted()
    assert parse_store_url("mysql://root@h/db").password is None
    assert parse_store_url("sqlite:////abs/x.db").path == "/abs/x.db"
    assert parse_store_url("sqlite:///rel/x.db").path == "rel/x.db"


@pytest.mark.parametrize("server", ["postgresql", "mariadb"])
async def test_any_password_works_with_real_users(server: str, make_url: Callable[[str], str]) -> None:
    base = make_url(server)
    db = parse_store_url(base).database
    user = unique("wau")
    if server == "postgresql":
        with pg_admin() as c:
            c.execute(f"CREATE ROLE \"{user}\" LOGIN PASSWORD '{NASTY.replace(chr(39), chr(39) * 2)}'")
        with pg_admin(db) as c:
            c.execute(f'GRANT ALL ON SCHEMA public TO "{user}"')
        url, bad = pg_url(db, user, NASTY), pg_url(db, user, NASTY + "x")
    else:
        c = my_admin()
        pw = NASTY.replace("\\", "\\\\").replace("'", "\\'")
        c.cursor().execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{pw}'")
        c.cursor().execute(f"CREATE USER '{user}'@'localhost' IDENTIFIED BY '{pw}'")
        c.cursor().execute(f"GRANT ALL ON `{db}`.* TO '{user}'@'%'")
        c.cursor().execute(f"GRANT ALL ON `{db}`.* TO '{user}'@'localhost'")
        c.close()
        url, bad = my_url(db, user, NASTY), my_url(db, user, NASTY + "x")
    try:
        s = await open_store(url)
        await account.create_account(s, prekeys=1)
        async with s.transaction() as tx:
            assert await tx.count_prekeys() == 1
        if server == "postgresql":
            # the local server trusts loopback, so it would accept any password: prove instead that
            # libpq received exactly the decoded password, and that it is the one the server stores
            # for the role (its SCRAM-SHA-256 verifier matches), so a server that checks would accept it
            assert isinstance(s, SqlKeyStore) and s._admin.conn is not None
            sent = s._admin.conn.raw.info.password
            assert sent == NASTY
            with pg_admin() as c:
                stored = c.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", [user]).fetchone()[0]
            assert _scram_matches(stored, sent) and not _scram_matches(stored, sent + "x")
        await s.aclose()
        if server == "mariadb":  # checks passwords: a wrong one is refused, and never echoed
            with pytest.raises(StoreUnavailableError) as info:
                await open_store(bad)
            assert NASTY not in str(info.value)
    finally:
        if server == "postgresql":
            with pg_admin(db) as c:
                c.execute(f'DROP OWNED BY "{user}" CASCADE')
            with pg_admin() as c:
                c.execute(f'DROP ROLE IF EXISTS "{user}"')
        else:
            c = my_admin()
            c.cursor().execute(f"DROP USER IF EXISTS '{user}'@'%'")
            c.cursor().execute(f"DROP USER IF EXISTS '{user}'@'localhost'")
            c.close()


def _scram_matches(verifier: str, password: str) -> bool:
    """True iff ``password`` yields the stored SCRAM-SHA-256 verifier (RFC 5802/7677, as PostgreSQL
    stores it: ``SCRAM-SHA-256$iterations:salt$StoredKey:ServerKey``; ASCII passwords need no SASLprep)."""
    import base64
    import hashlib
    import hmac

    mech, rest = verifier.split("$", 1)
    assert mech == "SCRAM-SHA-256", mech
    params, keys = rest.split("$")
    iterations, salt = params.split(":")
    stored_key, server_key = (base64.b64decode(k) for k in keys.split(":"))
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    return hmac.compare_digest(hashlib.sha256(client_key).digest(), stored_key) and hmac.compare_digest(
        hmac.digest(salted, b"Server Key", "sha256"), server_key
    )


async def test_unreachable_server_is_a_clear_error() -> None:
    with pytest.raises(StoreUnavailableError, match="cannot connect"):
        await open_store("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")
    with pytest.raises(StoreUnavailableError, match="does not exist"):
        await open_store("sqlite:////nonexistent-dir-wacrypto/x.db")


# ----------------------------------------------------------------------------- lease
async def test_lease_conflict_takeover_and_fencing(sql_url: str) -> None:
    a = await open_store(sql_url, lease_holder="instance-A", lease_seconds=1.0)
    assert isinstance(a, SqlKeyStore)
    with pytest.raises(InstanceConflictError) as info:
        await open_store(sql_url, lease_holder="instance-B")
    assert info.value.holder == "instance-A" and "instance-A" in str(info.value)
    async with a.transaction(BOB) as tx:
        await tx.store_session(BOB, b"by A")
    await trio.sleep(1.3)  # A stops heart-beating (as if paused or dead): the lease expires
    b = await open_store(sql_url, lease_holder="instance-B", lease_seconds=30)
    assert isinstance(b, SqlKeyStore) and b.lease_token == (a.lease_token or 0) + 1
    with pytest.raises(LeaseLostError):
        async with a.transaction(BOB) as tx:
            await tx.store_session(BOB, b"A again")  # the old holder comes back: refused
    with pytest.raises(LeaseLostError):
        async with a.transaction(BOB) as tx:
            pass
    with pytest.raises(LeaseLostError):
        await a.renew_lease()
    async with b.transaction(BOB) as tx:
        assert await tx.load_session(BOB) == b"by A"
        await tx.store_session(BOB, b"by B")
    await a.aclose()  # must not release B's lease
    with pytest.raises(InstanceConflictError, match="instance-B"):
        await open_store(sql_url, lease_holder="instance-C")
    await b.aclose()  # releases: C gets in at once
    c = await open_store(sql_url, lease_holder="instance-C")
    await c.aclose()


async def test_heartbeat_keeps_the_lease(sql_url: str) -> None:
    a = await open_store(sql_url, lease_holder="hb-A", lease_seconds=0.6)
    assert isinstance(a, SqlKeyStore)
    async with trio.open_nursery() as nursery:
        await nursery.start(a.heartbeat)
        await trio.sleep(1.5)
        with pytest.raises(InstanceConflictError):
            await open_store(sql_url, lease_holder="hb-B")
        async with a.transaction(BOB) as tx:
            await tx.store_session(BOB, b"still mine")
        nursery.cancel_scope.cancel()
    await a.aclose()


async def test_stale_write_committed_in_flight_is_fenced(sql_url: str) -> None:
    """A transaction that started before the takeover cannot commit after it."""
    a = await open_store(sql_url, lease_holder="A", lease_seconds=0.5)
    b = None
    with pytest.raises(LeaseLostError):
        async with a.transaction(BOB) as tx:
            await tx.store_session(BOB, b"stale")
            await trio.sleep(0.8)
            if not sql_url.startswith("sqlite"):  # (SQLite: A holds the file's write lock until it ends)
                b = await open_store(sql_url, lease_holder="B")
    if b is None:
        b = await open_store(sql_url, lease_holder="B")
    async with b.transaction(BOB) as tx:
        assert await tx.load_session(BOB) is None
    await a.aclose()
    await b.aclose()


async def test_stripe_leases_one_writer_per_stripe_and_one_way_of_serving(sql_url: str) -> None:
    """Scale-out: the workers of stripes 0 and 1 of 2 hold their own leases side by side; a second
    worker for a stripe, a whole-account instance or stripes of another count are refused while they
    live; each stripe's token fences only its own old holder; info shows each stripe's lease."""
    w0 = await open_store(sql_url, lease_holder="w0", lease_stripe=Stripe(0, 2), lease_seconds=1.0)
    w1 = await open_store(sql_url, lease_holder="w1", lease_stripe=Stripe(1, 2), lease_seconds=30)
    assert isinstance(w0, SqlKeyStore) and isinstance(w1, SqlKeyStore) and w1.lease_stripe == Stripe(1, 2)
    for holder, stripe, busy in [("x", Stripe(0, 2), "stripe 0/2"), ("x", None, "stripe 0/2"),
                                 ("x", Stripe(2, 4), "stripe 0/2")]:
        with pytest.raises(InstanceConflictError, match=busy):
            await open_store(sql_url, lease_holder=holder, lease_stripe=stripe)
    info = await w1.info()
    assert info.lease is not None and set(info.lease["stripes"]) == {"0/2", "1/2"}
    assert info.lease["stripes"]["1/2"]["holder"] == "w1"
    async with w0.transaction(BOB) as tx:
        await tx.store_session(BOB, b"by w0")
    await trio.sleep(1.3)  # w0 stops heart-beating: its stripe is free, stripe 1 is not
    with pytest.raises(InstanceConflictError, match="stripe 1/2"):
        await open_store(sql_url, lease_holder="whole")
    v0 = await open_store(sql_url, lease_holder="v0", lease_stripe=Stripe(0, 2))
    with pytest.raises(LeaseLostError):
        async with w0.transaction(BOB) as tx:
            await tx.store_session(BOB, b"w0 again")  # the old holder of stripe 0 comes back: refused
    async with w1.transaction(ALICE) as tx:  # stripe 1 is untouched by stripe 0's takeover
        await tx.store_session(ALICE, b"by w1")
    await w1.renew_lease()
    for s in (w0, w1, v0):
        await s.aclose()  # (w0's close must not release v0's lease; the others release theirs)
    whole = await open_store(sql_url, lease_holder="whole")  # no stripe is live now: one instance may serve it
    with pytest.raises(InstanceConflictError, match="the account"):
        await open_store(sql_url, lease_holder="w9", lease_stripe=Stripe(1, 2))
    async with whole.transaction(BOB, ALICE) as tx:
        assert await tx.load_session(BOB) == b"by w0" and await tx.load_session(ALICE) == b"by w1"
    await whole.aclose()


async def test_a_lease_of_another_scope_fences_the_expired_holders_it_excludes(sql_url: str) -> None:
    """A whole-account instance that missed its heartbeat, replaced by stripe workers, cannot renew or
    write (its own row was never taken over: the stripes' acquisition moved its token on); the same
    holder name takes over only its own row, never another scope's."""
    whole = await open_store(sql_url, lease_holder="host", lease_seconds=0.5)
    assert isinstance(whole, SqlKeyStore)
    with pytest.raises(InstanceConflictError, match="the account"):
        await open_store(sql_url, lease_holder="host", lease_stripe=Stripe(0, 2))  # same name, other scope
    await trio.sleep(0.8)
    w0 = await open_store(sql_url, lease_holder="w0", lease_stripe=Stripe(0, 2))
    w1 = await open_store(sql_url, lease_holder="w1", lease_stripe=Stripe(1, 2), lease_seconds=0.5)
    with pytest.raises(LeaseLostError):
        await whole.renew_lease()
    with pytest.raises(LeaseLostError):
        async with whole.transaction(BOB) as tx:
            await tx.store_session(BOB, b"stale whole")
    await trio.sleep(0.8)  # w1 expires; stripes of 4 replace the set: w0 (live) is in the way
    with pytest.raises(InstanceConflictError, match="stripe 0/2"):
        await open_store(sql_url, lease_holder="v", lease_stripe=Stripe(1, 4))
    await w0.aclose()
    v1 = await open_store(sql_url, lease_holder="v1", lease_stripe=Stripe(1, 4))
    with pytest.raises(LeaseLostError):
        await w1.renew_lease()  # the 0/2 and 1/2 rows were fenced by the 1/4 acquisition
    async with v1.transaction(BOB) as tx:
        assert await tx.load_session(BOB) is None
    for st in (whole, w1, v1):
        await st.aclose()


# ----------------------------------------------------------------------------- keys at rest
def _db_dump(url: str, tmp_path: Path) -> bytes:
    u = parse_store_url(url)
    if u.backend == "sqlite":
        c = sqlite3.connect(u.path)
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        c.close()
        return b"".join(Path(p).read_bytes() for p in (u.path, u.path + "-wal") if os.path.exists(p))
    if u.backend == "postgresql":
        return subprocess.run(
            ["pg_dump", "-h", u.host, "-p", str(u.port), "-U", u.user, "--inserts", "-d", u.database],
            check=True, capture_output=True,
        ).stdout
    return subprocess.run(
        ["mysqldump", "-h", u.host, "-P", str(u.port), "-u", u.user, "--hex-blob", u.database],
        check=True, capture_output=True,
    ).stdout


def _forms(secret: bytes) -> list[bytes]:
    import base64

    return [secret, secret.hex().encode(), secret.hex().upper().encode(), base64.b64encode(secret)]


async def test_keys_at_rest_a_dump_reveals_no_key(sql_url: str, tmp_path: Path) -> None:
    key = os.urandom(32)
    s = await open_store(sql_url, key=key)
    local = await account.create_account(s, prekeys=3)
    other = await open_store("memory:")
    await account.create_account(other, prekeys=1)
    a = SessionCipher(s)
    await a.process_bundle(BOB, await account.get_bundle(other))
    await a.encrypt_durable(BOB, b"secret plaintext 12345", "m1")
    sent = os.urandom(24)  # a sent plaintext kept for retry receipts is sealed like the records
    async with s.transaction() as tx:
        await tx.sent_put(SentMessage("m1", "bob@s.whatsapp.net", sent, 1.0))
    d = await s.dump()
    await s.aclose()
    secrets = [identity_from_bytes(local.identity_pair).private.to_bytes(), key, sent]
    from wacrypto.signal.records import PreKeyRecord, SessionRecord

    secrets += [PreKeyRecord.from_bytes(v).key_pair.private.to_bytes() for v in d.prekeys.values()]
    rec = SessionRecord.from_bytes(d.sessions["bob.1"])
    secrets += [rec.current.root_key, rec.current.sender_chain.chain_key.key]
    dump = _db_dump(sql_url, tmp_path)
    assert len(dump) > 1000
    for sec in secrets:
        for form in _forms(sec):
            assert form not in dump
    # without the key, or with a wrong one: a clear refusal, never garbage
    with pytest.raises(StoreError, match="encrypted at rest"):
        await open_store(sql_url)
    with pytest.raises(StoreError, match="wrong at-rest key"):
        await open_store(sql_url, key=os.urandom(32))
    s2 = await open_store(sql_url, key=key)
    assert (await s2.dump()).to_json() == d.to_json()
    await s2.aclose()
