"""Known-answer tests: our derivations reproduce the recorded transcript byte for byte."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from session_vectors import VECTOR_FILE, build  # noqa: E402

from wacrypto.session import account  # noqa: E402
from wacrypto.address import Address  # noqa: E402
from wacrypto.session.cipher import SessionCipher  # noqa: E402
from wacrypto.primitives.keys import KeyPair, PrivateKey  # noqa: E402
from wacrypto.signal.records import PreKeyRecord, SignedPreKeyRecord  # noqa: E402
from wacrypto.store.memory import MemoryKeyStore  # noqa: E402


def test_transcript_is_reproduced_byte_for_byte() -> None:
    recorded = json.loads(VECTOR_FILE.read_text())
    assert trio.run(build) == recorded


async def test_recorded_transcript_decrypts_as_bob() -> None:
    v = json.loads(VECTOR_FILE.read_text())
    b = v["bob"]
    store = MemoryKeyStore()
    ident = KeyPair(PrivateKey(bytes.fromhex(b["identity_private"])))
    await account.create_account(store, identity=ident, registration_id=b["registration_id"], prekeys=0)
    spk = SignedPreKeyRecord(b["signed_prekey_id"], KeyPair(PrivateKey(bytes.fromhex(b["signed_prekey_private"]))),
                             bytes.fromhex(b["signed_prekey_signature"]), 0)
    opk = PreKeyRecord(b["prekey_id"], KeyPair(PrivateKey(bytes.fromhex(b["prekey_private"]))))
    async with store.transaction() as tx:
        await tx.store_signed_prekey(spk.id, spk.to_bytes())
        await tx.store_prekey(opk.id, opk.to_bytes())
    bob = SessionCipher(store)
    for m in reversed(v["messages"]):
        pt = await bob.decrypt(Address("alice"), m["type"], bytes.fromhex(m["body"]))
        assert pt.hex() == m["plaintext"]
