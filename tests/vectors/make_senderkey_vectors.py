"""Regenerate senderkey_axolotl.json by running python-axolotl 0.2.3 (an independent implementation).

Run with the interpreter of .venv-axolotl (tests/interop/setup.sh creates it):

    PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python .venv-axolotl/bin/python tests/vectors/make_senderkey_vectors.py

Only axolotl's public API is called; the outputs are its results for fixed inputs (facts).
"""

from __future__ import annotations

import hashlib
import json
import sys
from importlib import metadata
from pathlib import Path

from axolotl.axolotladdress import AxolotlAddress
from axolotl.groups.groupcipher import GroupCipher
from axolotl.groups.groupsessionbuilder import GroupSessionBuilder
from axolotl.groups.ratchet.senderchainkey import SenderChainKey
from axolotl.groups.senderkeyname import SenderKeyName
from axolotl.protocol.senderkeydistributionmessage import SenderKeyDistributionMessage
from axolotl.tests.groups.inmemorysenderkeystore import InMemorySenderKeyStore

CHAIN_KEY = hashlib.sha256(b"wacrypto sender key vector chain key").digest()


def main() -> int:
    chain = []
    ck = SenderChainKey(0, CHAIN_KEY)
    for _ in range(4):
        mk = ck.getSenderMessageKey()
        chain.append({
            "iteration": ck.getIteration(),
            "chain_key": bytes(ck.getSeed()).hex(),
            "message_seed": bytes(mk.getSeed()).hex(),
            "iv": bytes(mk.getIv()).hex(),
            "cipher_key": bytes(mk.getCipherKey()).hex(),
        })
        ck = ck.getNext()

    # a real sender: its SKDM and three group messages (signatures are randomized; verification is not)
    store = InMemorySenderKeyStore()
    name = SenderKeyName("vector-group", AxolotlAddress("alice", 1))
    skdm = GroupSessionBuilder(store).create(name)
    cipher = GroupCipher(store, name)
    messages = []
    for text in (b"first", b"", b"a message that is longer than one AES block"):
        messages.append({"plaintext": text.hex(), "body": bytes(cipher.encrypt(text)).hex()})
    # a receiver that got the SKDM and only the second message: its record keeps a skipped key
    rstore = InMemorySenderKeyStore()
    GroupSessionBuilder(rstore).process(name, SenderKeyDistributionMessage(serialized=bytes(skdm.serialize())))
    GroupCipher(rstore, name).decrypt(bytes.fromhex(messages[1]["body"]))
    out = {
        "provenance": (
            f"Made by tests/vectors/make_senderkey_vectors.py with python-axolotl "
            f"{metadata.version('python-axolotl')} (PyPI), python {sys.version.split()[0]}: its SenderChainKey "
            "derivations for a fixed chain key, an SKDM plus SenderKeyMessages from its GroupCipher, and its serialized sender-key records (sender after 3 messages; a receiver that decrypted only message 1)."
        ),
        "chain": chain,
        "skdm": bytes(skdm.serialize()).hex(),
        "messages": messages,
        "sender_record": bytes(store.loadSenderKey(name).serialize()).hex(),
        "receiver_record": bytes(rstore.loadSenderKey(name).serialize()).hex(),
    }
    path = Path(__file__).with_name("senderkey_axolotl.json")
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
