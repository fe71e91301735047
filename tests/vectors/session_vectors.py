"""Deterministic Signal v3 session transcript (known-answer data we derive ourselves).

Provenance: produced by wacrypto's own code with fixed private keys and a SHA-256 counter-mode RNG
(seed b"wacrypto-vector-1"); written to ``session_v3.json`` by ``python tests/vectors/session_vectors.py
--write``. Its correctness is not taken on trust: ``tests/interop/test_vectors_interop.py`` feeds the
same messages to python-axolotl and the official libsignal, which must decrypt every one.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import trio

from wacrypto.session import account
from wacrypto.address import Address
from wacrypto.session.cipher import SessionCipher
from wacrypto.primitives.keys import KeyPair, PrivateKey
from wacrypto.signal.bundle import PreKeyBundle
from wacrypto.store.memory import MemoryKeyStore

HERE = Path(__file__).resolve().parent
VECTOR_FILE = HERE / "session_v3.json"


class Rng:
    def __init__(self, seed: bytes) -> None:
        self.seed, self.n = seed, 0

    def __call__(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            out += hashlib.sha256(self.seed + self.n.to_bytes(8, "big")).digest()
            self.n += 1
        return out[:n]


def _k(label: str) -> bytes:
    return hashlib.sha256(b"wacrypto-vector-key:" + label.encode()).digest()


async def build() -> dict[str, Any]:
    rng = Rng(b"wacrypto-vector-1")
    alice_id = KeyPair(PrivateKey(_k("alice-identity")))
    bob_id = KeyPair(PrivateKey(_k("bob-identity")))
    bob_spk = account.make_signed_prekey(bob_id, 7, 1_700_000_000_000, rng, private=_k("bob-spk"))
    bob_opk = KeyPair(PrivateKey(_k("bob-opk")))
    store = MemoryKeyStore()
    await account.create_account(store, identity=alice_id, registration_id=1111, prekeys=0, rng=rng, clock=lambda: 1.7e9)
    alice = SessionCipher(store, rng=rng, clock=lambda: 1.7e9)
    bundle = PreKeyBundle(
        registration_id=2222, device_id=1, identity_key=bob_id.public.to_bytes(), signed_prekey_id=7,
        signed_prekey=bob_spk.key_pair.public.to_bytes(), signed_prekey_signature=bob_spk.signature,
        prekey_id=31337, prekey=bob_opk.public.to_bytes(),
    )
    await alice.process_bundle(Address("bob"), bundle)
    messages = []
    for text in ("", "hello bob", "x" * 16, "a longer message that spans several AES blocks."):
        m = await alice.encrypt(Address("bob"), text.encode())
        messages.append({"plaintext": text.encode().hex(), "type": m.type, "body": m.body.hex()})
    return {
        "provenance": __doc__.strip().splitlines()[0] + " See tests/vectors/session_vectors.py.",
        "alice": {"name": "alice", "registration_id": 1111, "identity_private": alice_id.private.to_bytes().hex(),
                  "identity_public": alice_id.public.to_bytes().hex()},
        "bob": {"name": "bob", "registration_id": 2222, "identity_private": bob_id.private.to_bytes().hex(),
                "identity_public": bob_id.public.to_bytes().hex(),
                "signed_prekey_id": 7, "signed_prekey_private": bob_spk.key_pair.private.to_bytes().hex(),
                "signed_prekey_signature": bob_spk.signature.hex(),
                "prekey_id": 31337, "prekey_private": bob_opk.private.to_bytes().hex()},
        "messages": messages,
    }


def generate() -> dict[str, Any]:
    return trio.run(build)


if __name__ == "__main__":
    data = generate()
    text = json.dumps(data, indent=1) + "\n"
    if "--write" in sys.argv:
        VECTOR_FILE.write_text(text)
    else:
        sys.stdout.write(text)
