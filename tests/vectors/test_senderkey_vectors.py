"""Known-answer data for sender keys: python-axolotl's derivations and messages, and an
independent HKDF (``cryptography``) check of the "WhisperGroup" message keys."""

from __future__ import annotations

import hmac
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from wacrypto.errors import DuplicateMessageError, InvalidSignatureError
from wacrypto.signal import senderkeys as sk
from wacrypto.signal.senderkeys import SenderKeyRecord
from wacrypto.wire.messages import SenderKeyDistributionMessage, SenderKeyMessage

V = json.loads((Path(__file__).parent / "senderkey_axolotl.json").read_text())


def test_chain_and_message_keys_match_axolotl() -> None:
    ck = bytes.fromhex(V["chain"][0]["chain_key"])
    for step in V["chain"]:
        assert ck.hex() == step["chain_key"]
        seed = hmac.digest(ck, b"\x01", "sha256")
        assert seed.hex() == step["message_seed"]
        iv, key = sk.group_message_keys(seed)
        assert (iv.hex(), key.hex()) == (step["iv"], step["cipher_key"])
        ck = hmac.digest(ck, b"\x02", "sha256")


def test_message_keys_match_independent_hkdf() -> None:
    for step in V["chain"]:
        seed = bytes.fromhex(step["message_seed"])
        okm = HKDF(hashes.SHA256(), 48, bytes(32), b"WhisperGroup").derive(seed)
        assert sk.group_message_keys(seed) == (okm[:16], okm[16:])


def test_decrypt_axolotl_messages_in_any_order() -> None:
    skdm = SenderKeyDistributionMessage.from_bytes(bytes.fromhex(V["skdm"]))
    assert skdm.iteration == 0 and skdm.to_bytes().hex() == V["skdm"]
    for order in ([0, 1, 2], [2, 0, 1], [1, 2, 0]):
        rec = SenderKeyRecord()
        sk.process_distribution(rec, skdm)
        for i in order:
            m = V["messages"][i]
            msg = SenderKeyMessage.from_bytes(bytes.fromhex(m["body"]))
            assert msg.key_id == skdm.key_id and msg.iteration == i
            assert sk.decrypt(rec, msg) == bytes.fromhex(m["plaintext"])
        with pytest.raises(DuplicateMessageError):
            sk.decrypt(rec, SenderKeyMessage.from_bytes(bytes.fromhex(V["messages"][order[0]]["body"])))


def test_axolotl_message_with_flipped_byte_is_rejected() -> None:
    rec = SenderKeyRecord()
    sk.process_distribution(rec, SenderKeyDistributionMessage.from_bytes(bytes.fromhex(V["skdm"])))
    body = bytearray.fromhex(V["messages"][0]["body"])
    body[-30] ^= 0x10
    with pytest.raises(InvalidSignatureError):
        sk.decrypt(rec, SenderKeyMessage.from_bytes(bytes(body)))


def test_axolotl_records_load_and_work() -> None:
    """python-axolotl's serialized records (libsignal storage layout) load and keep working here."""
    recv = SenderKeyRecord.from_bytes(bytes.fromhex(V["receiver_record"]))
    msgs = [SenderKeyMessage.from_bytes(bytes.fromhex(m["body"])) for m in V["messages"]]
    # axolotl decrypted message 1 only: message 0 is a stored skipped key, message 2 is new
    assert sk.decrypt(recv, msgs[0]) == bytes.fromhex(V["messages"][0]["plaintext"])
    assert sk.decrypt(recv, msgs[2]) == bytes.fromhex(V["messages"][2]["plaintext"])
    with pytest.raises(DuplicateMessageError):
        sk.decrypt(recv, msgs[1])
    # the sender's own record (with its signing private key) continues the chain with us
    own = SenderKeyRecord.from_bytes(bytes.fromhex(V["sender_record"]))
    body = sk.encrypt(own, b"continued by wacrypto")
    assert SenderKeyMessage.from_bytes(body).iteration == 3
    assert sk.decrypt(recv, SenderKeyMessage.from_bytes(body)) == b"continued by wacrypto"
    # and our re-serialization stays loadable (same layout)
    assert SenderKeyRecord.from_bytes(own.to_bytes()).key_ids() == own.key_ids()
