"""Builds and uses a real yowsup key database (yowsup 3.3.0's LiteAxolotlStore over python-axolotl 0.2.3).

Run with the python of .venv-axolotl (tests/interop/setup.sh). One command per call, JSON on stdout,
bytes as hex:

  init DB                      create the database (yowsup makes the identity and registration id),
                               add one-time prekeys 1..3 and signed prekey 7; print the bundle
  send DB NAME DEVICE          stdin: a bundle {registration_id, device_id, prekey_id, prekey,
                               signed_prekey_id, signed_prekey, signature, identity_key};
                               start a session with it and encrypt a text: print {type, body, text}
  receive DB NAME DEVICE       stdin: {type, body}; decrypt it: print {plaintext}

Everything is stored by yowsup's own SQLite store, exactly as a yowsup installation would keep it.
"""

from __future__ import annotations

import importlib.util
import os

if "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION" not in os.environ:
    # axolotl's generated *_pb2 code loads with protobuf's C++ runtime (<= 3.20) or pure Python only
    if importlib.util.find_spec("google.protobuf.pyext._message") is None:
        os.environ["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = "python"

import json  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

from axolotl.ecc.curve import Curve  # noqa: E402
from axolotl.identitykey import IdentityKey  # noqa: E402
from axolotl.protocol.prekeywhispermessage import PreKeyWhisperMessage  # noqa: E402
from axolotl.protocol.whispermessage import WhisperMessage  # noqa: E402
from axolotl.sessionbuilder import SessionBuilder  # noqa: E402
from axolotl.sessioncipher import SessionCipher  # noqa: E402
from axolotl.state.prekeybundle import PreKeyBundle  # noqa: E402
from axolotl.util.keyhelper import KeyHelper  # noqa: E402
from yowsup.axolotl.store.sqlite.liteaxolotlstore import LiteAxolotlStore  # noqa: E402

SIGNED_PREKEY_ID = 7


def _out(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")


def init(db: str) -> None:
    store = LiteAxolotlStore(db)
    ident = store.getIdentityKeyPair()
    for pk in KeyHelper.generatePreKeys(1, 3):
        store.storePreKey(pk.getId(), pk)
    spk = KeyHelper.generateSignedPreKey(ident, SIGNED_PREKEY_ID)
    store.storeSignedPreKey(spk.getId(), spk)
    first = store.loadPreKey(1)
    _out({
        "registration_id": store.getLocalRegistrationId(),
        "identity_key": ident.getPublicKey().serialize().hex(),
        "prekey_ids": [1, 2, 3],
        "prekey_id": 1,
        "prekey": first.getKeyPair().getPublicKey().serialize().hex(),
        "signed_prekey_id": spk.getId(),
        "signed_prekey": spk.getKeyPair().getPublicKey().serialize().hex(),
        "signature": bytes(spk.getSignature()).hex(),
    })


def send(db: str, name: str, device: int, bundle: dict[str, Any]) -> None:
    store = LiteAxolotlStore(db)
    b = PreKeyBundle(
        bundle["registration_id"], bundle["device_id"],
        bundle["prekey_id"], Curve.decodePoint(bytes.fromhex(bundle["prekey"]), 0),
        bundle["signed_prekey_id"], Curve.decodePoint(bytes.fromhex(bundle["signed_prekey"]), 0),
        bytes.fromhex(bundle["signature"]), IdentityKey(bytes.fromhex(bundle["identity_key"]), 0),
    )
    SessionBuilder(store, store, store, store, name, device).processPreKeyBundle(b)
    text = f"hello {name} from yowsup"
    msg = SessionCipher(store, store, store, store, name, device).encrypt(text.encode())
    _out({"type": msg.getType(), "body": msg.serialize().hex(), "text": text})


def receive(db: str, name: str, device: int, msg: dict[str, Any]) -> None:
    store = LiteAxolotlStore(db)
    cipher = SessionCipher(store, store, store, store, name, device)
    body = bytes.fromhex(msg["body"])
    if msg["type"] == 3:
        pt = cipher.decryptPkmsg(PreKeyWhisperMessage(serialized=body))
    else:
        pt = cipher.decryptMsg(WhisperMessage(serialized=body))
    _out({"plaintext": bytes(pt).hex()})


def main(argv: list[str]) -> int:
    cmd, db = argv[0], argv[1]
    if cmd == "init":
        init(db)
    elif cmd == "send":
        send(db, argv[2], int(argv[3]), json.loads(sys.stdin.read()))
    elif cmd == "receive":
        receive(db, argv[2], int(argv[3]), json.loads(sys.stdin.read()))
    else:
        sys.stderr.write(f"unknown command {cmd}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
