"""`wacrypto store import-axolotl` on a database written by yowsup itself (3.3.0's LiteAxolotlStore
over python-axolotl 0.2.3), not on one we laid out: the imported account keeps its identity, prekeys
and both kinds of session (one it started, one it answered), and they continue here in both directions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from peerproc import AXOLOTL_PYTHON, DRIVERS_DIR

from wacrypto.session import account
from wacrypto.address import Address
from wacrypto.session.cipher import SessionCipher
from wacrypto.signal.bundle import PreKeyBundle
from wacrypto.store import open_store

YOWSUP = Address("4915100000", 1)  # yowsup keys sessions by phone number (an INTEGER column)
BOB = Address("4915100001", 1)  # yowsup starts this session
CAROL = Address("4915100002", 1)  # and answers this one


def _yowsup(*args: str, stdin: dict[str, Any] | None = None) -> dict[str, Any]:
    proc = subprocess.run(
        [str(AXOLOTL_PYTHON), str(DRIVERS_DIR / "yowsup_db.py"), *args],
        input=json.dumps(stdin) if stdin is not None else "", capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def _bundle_json(b: PreKeyBundle) -> dict[str, Any]:
    assert b.prekey is not None and b.prekey_id is not None
    return {
        "registration_id": b.registration_id, "device_id": b.device_id,
        "prekey_id": b.prekey_id, "prekey": b.prekey.hex(),
        "signed_prekey_id": b.signed_prekey_id, "signed_prekey": b.signed_prekey.hex(),
        "signature": b.signed_prekey_signature.hex(), "identity_key": b.identity_key.hex(),
    }


async def test_import_a_real_yowsup_database_then_continue(tmp_path: Path) -> None:
    db = tmp_path / "yowsup.db"
    ybundle = _yowsup("init", str(db))

    # yowsup starts a session with Bob (PreKey message), Bob reads it
    bob_store = await open_store("memory:")
    await account.create_account(bob_store, prekeys=2)
    bob = SessionCipher(bob_store)
    sent = _yowsup("send", str(db), BOB.name, str(BOB.device_id), stdin=_bundle_json(await account.get_bundle(bob_store)))
    assert sent["type"] == 3
    assert await bob.decrypt(YOWSUP, 3, bytes.fromhex(sent["body"])) == sent["text"].encode()

    # Carol starts a session with yowsup's bundle, yowsup reads it (one-time prekey 1 is used up)
    carol_store = await open_store("memory:")
    await account.create_account(carol_store, prekeys=1)
    carol = SessionCipher(carol_store)
    yb = PreKeyBundle(
        registration_id=ybundle["registration_id"], device_id=1,
        prekey_id=ybundle["prekey_id"], prekey=bytes.fromhex(ybundle["prekey"]),
        signed_prekey_id=ybundle["signed_prekey_id"], signed_prekey=bytes.fromhex(ybundle["signed_prekey"]),
        signed_prekey_signature=bytes.fromhex(ybundle["signature"]), identity_key=bytes.fromhex(ybundle["identity_key"]),
    )
    await carol.process_bundle(YOWSUP, yb)
    m = await carol.encrypt(YOWSUP, b"hi yowsup, carol here")
    got = _yowsup("receive", str(db), CAROL.name, str(CAROL.device_id), stdin={"type": m.type, "body": m.body.hex()})
    assert bytes.fromhex(got["plaintext"]) == b"hi yowsup, carol here"

    # import yowsup's database into a wacrypto SQLite store
    url = f"sqlite:///{tmp_path / 'imported.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WACRYPTO_")}
    proc = subprocess.run(
        [sys.executable, "-m", "wacrypto", "store", "import-axolotl", "--store", url, str(db)],
        capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    store = await open_store(url)
    try:
        me = SessionCipher(store)
        bundle = await account.get_bundle(store)  # the imported account publishes yowsup's keys
        assert bundle.identity_key.hex() == ybundle["identity_key"]
        assert bundle.registration_id == ybundle["registration_id"]
        assert bundle.signed_prekey_id == ybundle["signed_prekey_id"]
        assert bundle.signed_prekey.hex() == ybundle["signed_prekey"] and bundle.signature_valid()
        async with store.transaction() as tx:
            assert await tx.count_prekeys() == 2  # 2 and 3; 1 was used by Carol's session
            assert await tx.load_prekey(1) is None

        # the session yowsup started continues: we write, Bob reads, Bob answers, we read
        x = await me.encrypt(BOB, b"continued from yowsup")
        assert x.type == 3  # Bob has not answered yet: still the PreKey form, as yowsup would send
        assert await bob.decrypt(YOWSUP, x.type, x.body) == b"continued from yowsup"
        r = await bob.encrypt(YOWSUP, b"bob answers")
        assert await me.decrypt(BOB, r.type, r.body) == b"bob answers"
        x = await me.encrypt(BOB, b"after the answer")
        assert x.type == 2 and await bob.decrypt(YOWSUP, x.type, x.body) == b"after the answer"

        # the session yowsup answered continues too: ratchet step both ways
        y = await me.encrypt(CAROL, b"yowsup's answer, sent from wacrypto")
        assert y.type == 2 and await carol.decrypt(YOWSUP, y.type, y.body) == b"yowsup's answer, sent from wacrypto"
        z = await carol.encrypt(YOWSUP, b"carol again")
        assert await me.decrypt(CAROL, z.type, z.body) == b"carol again"

        # and a new peer can start a session with the imported account's bundle (prekey 2 or 3)
        dave_store = await open_store("memory:")
        await account.create_account(dave_store, prekeys=1)
        dave = SessionCipher(dave_store)
        await dave.process_bundle(YOWSUP, bundle)
        d = await dave.encrypt(YOWSUP, b"dave")
        assert await me.decrypt(Address("4915100003", 1), d.type, d.body) == b"dave"
    finally:
        await store.aclose()
