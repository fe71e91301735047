"""Session records as a user of signal/ sees them: record-level steps, archived states, export.

The session layer drives sessions only through these steps (it never touches a protobuf); the
steps must leave stored bytes untouched on failure and expose nothing but records and bytes.
"""

from __future__ import annotations

import os

import pytest

from wacrypto.errors import DecryptionError, DuplicateMessageError, InvalidArgumentError
from wacrypto.primitives.keys import KeyPair, clamp
from wacrypto.signal import records
from wacrypto.signal.bundle import PreKeyBundle
from wacrypto.signal.records import PreKeyRecord, SessionRecord, SignedPreKeyRecord
from wacrypto.wire.messages import PREKEY_TYPE, WHISPER_TYPE, PreKeySignalMessage, SignalMessage


def _sessions() -> tuple[SessionRecord, SessionRecord]:
    """(alice's record, bob's record) after Alice's first message and Bob's answer."""
    a_id, b_id, spk, opk = (KeyPair.generate() for _ in range(4))
    spk_rec = SignedPreKeyRecord(1, spk, b_id.private.sign(spk.public.to_bytes()), 0)
    bundle = PreKeyBundle(7, 1, b_id.public.to_bytes(), 1, spk.public.to_bytes(), spk_rec.signature, 3,
                          opk.public.to_bytes())
    alice = SessionRecord()
    records.initiate(alice, local_identity=a_id, local_registration_id=9, bundle=bundle,
                     base_priv=clamp(os.urandom(32)), timestamp_ms=1)
    t, body = alice.encrypt(b"hello")
    assert t == PREKEY_TYPE
    pm = PreKeySignalMessage.from_bytes(body)
    assert (pm.registration_id, pm.pre_key_id, pm.signed_pre_key_id) == (9, 3, 1)
    bob = SessionRecord()
    assert records.respond(bob, pm, local_identity=b_id, local_registration_id=7, signed_prekey=spk_rec,
                           one_time_prekey=PreKeyRecord(3, opk)) == b"hello"
    t, body = bob.encrypt(b"hi")
    assert t == WHISPER_TYPE
    pt, alice = records.decrypt_stored(alice.to_bytes(), SignalMessage.from_bytes(body))
    assert pt == b"hi"
    return alice, bob


def test_record_steps_run_a_session() -> None:
    alice, bob = _sessions()
    t, body = alice.encrypt(b"after the answer")
    assert t == WHISPER_TYPE  # the pending prekey is gone once Bob answered
    raw = bob.to_bytes()
    pt, bob2 = records.decrypt_stored(raw, SignalMessage.from_bytes(body))
    assert pt == b"after the answer"
    with pytest.raises(DuplicateMessageError):
        records.decrypt_stored(bob2.to_bytes(), SignalMessage.from_bytes(body))
    assert bob.to_bytes() == raw  # the stored bytes were never changed


def test_archived_states_decrypt_and_are_promoted() -> None:
    alice, bob = _sessions()
    _, old = alice.encrypt(b"old")
    raw_before = bob.to_bytes()
    bob.archive_current()
    assert not bob.has_current_state() and not bob.can_send()
    assert [i for i, _ in bob.archived_states()] == [0]
    pt, promoted = records.decrypt_stored(bob.to_bytes(), SignalMessage.from_bytes(old))
    assert pt == b"old" and promoted.has_current_state() and promoted.archived == []
    assert SessionRecord.from_bytes(raw_before).has_current_state()


def test_unparseable_archived_state_is_skipped() -> None:
    alice, bob = _sessions()
    _, msg = alice.encrypt(b"x")
    bob.archive_current()
    bob._pb.previous_sessions.insert(0, b"\x0a\xff")  # a blob that is no SessionStructure
    assert [i for i, _ in bob.archived_states()] == [1]
    pt, _ = records.decrypt_stored(bob.to_bytes(), SignalMessage.from_bytes(msg))
    assert pt == b"x"


def test_nothing_decrypts_an_unknown_message() -> None:
    alice, bob = _sessions()
    _, other_bob = _sessions()
    _, msg = alice.encrypt(b"x")
    with pytest.raises(DecryptionError):
        records.decrypt_stored(other_bob.to_bytes(), SignalMessage.from_bytes(msg))
    with pytest.raises(DecryptionError):
        records.decrypt_stored(SessionRecord().to_bytes(), SignalMessage.from_bytes(msg))


def test_encrypt_needs_a_sending_chain() -> None:
    with pytest.raises(InvalidArgumentError):
        SessionRecord().encrypt(b"x")


def test_export_adds_expanded_keys_and_keeps_the_session() -> None:
    alice, bob = _sessions()
    bodies = [alice.encrypt(b"%d" % i)[1] for i in range(3)]
    _, bob = records.decrypt_stored(bob.to_bytes(), SignalMessage.from_bytes(bodies[2]))  # 0, 1 skipped
    bob.archive_current()
    exported = SessionRecord.from_bytes(records.export_record(bob.to_bytes()))
    [(_, st)] = list(exported.archived_states())
    keys = [mk for ch in st.receiver_chains for mk in ch.message_keys]
    assert len(keys) == 2 and all(len(mk.cipher_key) == 32 and len(mk.mac_key) == 32 and len(mk.iv) == 16 for mk in keys)
    pt, _ = records.decrypt_stored(exported.to_bytes(), SignalMessage.from_bytes(bodies[0]))
    assert pt == b"0"
