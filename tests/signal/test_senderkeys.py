"""Sender keys, pure layer: records, SKDM, encrypt/decrypt, limits, failures that change nothing."""

from __future__ import annotations

import os

import pytest

from wacrypto._proto import storage_pb2
from wacrypto.errors import (
    DecryptionError,
    DuplicateMessageError,
    InvalidMessageError,
    InvalidSignatureError,
    NoSenderKeyError,
    TooFarAheadError,
)
from wacrypto.limits import (
    DEFAULT_MAX_GROUP_FORWARD_JUMP,
    MAX_SENDER_KEY_RECORD_LEN,
    MAX_SENDER_KEY_STATES,
    MAX_SENDER_MESSAGE_KEYS,
)
from wacrypto.primitives.xeddsa import XEdDSASigner, xeddsa_sign, xeddsa_verify
from wacrypto.signal import senderkeys as sk
from wacrypto.signal.senderkeys import SenderKeyRecord
from wacrypto.wire.messages import SenderKeyDistributionMessage, SenderKeyMessage


def make_pair(rng: object = None) -> tuple[SenderKeyRecord, SenderKeyRecord]:
    """(sender's own record, receiver's record after processing the sender's SKDM)."""
    own = sk.new_own_record(rng) if rng is not None else sk.new_own_record()  # type: ignore[arg-type]
    recv = SenderKeyRecord()
    skdm = SenderKeyDistributionMessage.from_bytes(sk.create_distribution(own).to_bytes())
    assert sk.process_distribution(recv, skdm)
    return own, recv


def dec(recv: SenderKeyRecord, body: bytes, **kw: int) -> bytes:
    return sk.decrypt(recv, SenderKeyMessage.from_bytes(body), **kw)


def expect_unchanged(recv: SenderKeyRecord, body: bytes, exc: type[Exception], **kw: int) -> None:
    before = recv.to_bytes()
    with pytest.raises(exc):
        dec(recv, body, **kw)
    assert recv.to_bytes() == before


# --------------------------------------------------------------------------- basics
def test_round_trip_in_order() -> None:
    own, recv = make_pair()
    for i in range(5):
        body = sk.encrypt(own, b"msg %d" % i)
        m = SenderKeyMessage.from_bytes(body)
        assert m.iteration == i and body[0] == 0x33 and len(m.signature) == 64
        assert dec(recv, body) == b"msg %d" % i


def test_empty_and_block_aligned_plaintexts() -> None:
    own, recv = make_pair()
    for pt in (b"", b"x" * 15, b"x" * 16, b"x" * 17, os.urandom(1000)):
        assert dec(recv, sk.encrypt(own, pt)) == pt


def test_skdm_carries_current_iteration_and_key() -> None:
    own = sk.new_own_record()
    for _ in range(3):
        sk.encrypt(own, b"before")
    skdm = sk.create_distribution(own)
    assert skdm.iteration == 3 and len(skdm.chain_key) == 32 and len(skdm.signing_key) == 33
    recv = SenderKeyRecord()
    sk.process_distribution(recv, SenderKeyDistributionMessage.from_bytes(skdm.to_bytes()))
    assert dec(recv, sk.encrypt(own, b"after")) == b"after"


def test_signature_is_over_canonical_bytes_and_verifies_with_generic_xeddsa() -> None:
    own, recv = make_pair()
    body = sk.encrypt(own, b"hi")
    m = SenderKeyMessage.from_bytes(body)
    assert m.signed_part == SenderKeyMessage.encode_body(m.key_id, m.iteration, m.ciphertext)
    signing_public = sk.create_distribution(recv).signing_key
    assert xeddsa_verify(signing_public, m.signed_part, m.signature)


def test_zero_id_and_iteration_are_encoded() -> None:
    body = SenderKeyMessage.encode_body(0, 0, b"\x00" * 16)
    assert body[:5] == b"\x33\x08\x00\x10\x00"


def test_group_signatures_are_the_primitive_xeddsa() -> None:
    # Group messages are signed with the one XEdDSA implementation (primitives.xeddsa) and verify with it.
    own, recv = make_pair()
    body = sk.encrypt(own, b"hello", signers=sk.SigningKeyCache())
    msg = SenderKeyMessage.from_bytes(body)
    st = own._pb.sender_key_states[0]
    assert xeddsa_verify(st.sender_signing_key.public, msg.signed_part, msg.signature)
    assert dec(recv, body) == b"hello"


# --------------------------------------------------------------------------- out of order, duplicates, jumps
def test_out_of_order_uses_and_removes_skipped_keys() -> None:
    own, recv = make_pair()
    bodies = [sk.encrypt(own, b"%d" % i) for i in range(6)]
    assert dec(recv, bodies[5]) == b"5"
    for i in (3, 0, 4, 1, 2):
        assert dec(recv, bodies[i]) == b"%d" % i
    for b in bodies:
        expect_unchanged(recv, b, DuplicateMessageError)


def test_baileys_even_iterations() -> None:
    """A sender that uses iterations 0, 2, 4, ...: the receiver keeps keys of the odd ones."""
    own, recv = make_pair()
    sent = []
    for i in range(10):
        body = sk.encrypt(own, b"%d" % i)
        if i % 2 == 0:
            sent.append((i, body))
        else:
            late = (i, body)
    for i, body in sent:
        assert dec(recv, body) == b"%d" % i
    state = recv._pb.sender_key_states[0]
    assert sorted(mk.iteration for mk in state.sender_message_keys) == [1, 3, 5, 7]
    # the skipped ones are still decryptable (an odd one we kept back)
    assert late[0] == 9
    assert dec(recv, late[1]) == b"9"


def test_duplicate_in_order() -> None:
    own, recv = make_pair()
    body = sk.encrypt(own, b"once")
    assert dec(recv, body) == b"once"
    expect_unchanged(recv, body, DuplicateMessageError)


def test_forward_jump_boundary() -> None:
    own, recv = make_pair()
    limit = 7
    bodies = [sk.encrypt(own, b"%d" % i) for i in range(limit + 2)]
    # iteration limit+1 is limit+1 ahead of iteration 0: refused
    expect_unchanged(recv, bodies[limit + 1], TooFarAheadError, max_forward_jump=limit)
    # exactly limit ahead is accepted
    assert dec(recv, bodies[limit], max_forward_jump=limit) == b"%d" % limit
    for i in range(limit):
        assert dec(recv, bodies[i], max_forward_jump=limit) == b"%d" % i


def test_default_forward_jump_refuses_far_future_quickly() -> None:
    """python-axolotl's check is reversed; ours refuses before deriving anything."""
    own, recv = make_pair()
    st = own._pb.sender_key_states[0]
    # advance the sender's chain far without deriving skipped keys on our side
    ck = st.sender_chain_key.seed
    for _ in range(DEFAULT_MAX_GROUP_FORWARD_JUMP + 1):
        ck = sk.chain_step(ck)[1]
    st.sender_chain_key.seed = ck
    st.sender_chain_key.iteration = DEFAULT_MAX_GROUP_FORWARD_JUMP + 1
    far = sk.encrypt(own, b"far")
    expect_unchanged(recv, far, TooFarAheadError)
    # the far message does decrypt under a larger configured limit (it is genuine)
    assert dec(recv, far, max_forward_jump=DEFAULT_MAX_GROUP_FORWARD_JUMP + 1) == b"far"


def test_far_iteration_near_uint32_max_is_refused() -> None:
    own, recv = make_pair()
    st = own._pb.sender_key_states[0]
    st.sender_chain_key.iteration = 0xFFFFFFFE
    body = sk.encrypt(own, b"x")
    expect_unchanged(recv, body, TooFarAheadError, max_forward_jump=25_000)


def test_skipped_keys_are_capped_oldest_evicted() -> None:
    own, recv = make_pair()
    cap = 5
    bodies = [sk.encrypt(own, b"%d" % i) for i in range(12)]
    assert dec(recv, bodies[8], max_message_keys=cap) == b"8"  # skips 0..7, keeps 3..7
    state = recv._pb.sender_key_states[0]
    assert [mk.iteration for mk in state.sender_message_keys] == [3, 4, 5, 6, 7]
    expect_unchanged(recv, bodies[2], DuplicateMessageError, max_message_keys=cap)
    assert dec(recv, bodies[11], max_message_keys=cap) == b"11"  # adds 9, 10 -> evicts 3, 4
    assert [mk.iteration for mk in state.sender_message_keys] == [5, 6, 7, 9, 10]
    for i in (5, 6, 7, 9, 10):
        assert dec(recv, bodies[i], max_message_keys=cap) == b"%d" % i
    assert len(state.sender_message_keys) == 0


def test_skipped_keys_default_cap() -> None:
    own, recv = make_pair()
    st = own._pb.sender_key_states[0]
    bodies = [sk.encrypt(own, b"%d" % i) for i in range(MAX_SENDER_MESSAGE_KEYS + 3)]
    assert dec(recv, bodies[-1], max_forward_jump=MAX_SENDER_MESSAGE_KEYS + 2) == b"%d" % (MAX_SENDER_MESSAGE_KEYS + 2)
    rst = recv._pb.sender_key_states[0]
    assert len(rst.sender_message_keys) == MAX_SENDER_MESSAGE_KEYS
    assert rst.sender_message_keys[0].iteration == 2
    assert st.sender_chain_key.iteration == MAX_SENDER_MESSAGE_KEYS + 3


# --------------------------------------------------------------------------- signatures and tampering
def test_signature_checked_first() -> None:
    own, recv = make_pair()
    body = sk.encrypt(own, b"x")
    assert dec(recv, body) == b"x"
    # a tampered duplicate must be reported as a bad signature, not as a duplicate
    bad = bytearray(body)
    bad[-1] ^= 0x01
    expect_unchanged(recv, bytes(bad), InvalidSignatureError)


def test_forged_signature_with_other_key() -> None:
    own, recv = make_pair()
    body = sk.encrypt(own, b"legit")
    m = SenderKeyMessage.from_bytes(body)
    forged = m.signed_part + xeddsa_sign(os.urandom(32), m.signed_part, os.urandom(64))
    expect_unchanged(recv, forged, InvalidSignatureError)
    assert dec(recv, body) == b"legit"


def test_every_byte_tampered_is_rejected_and_changes_nothing() -> None:
    own, recv = make_pair()
    body = sk.encrypt(own, b"payload that spans two blocks!!")
    before = recv.to_bytes()
    for i in range(len(body)):
        bad = bytearray(body)
        bad[i] ^= 0x04
        try:
            m = SenderKeyMessage.from_bytes(bytes(bad))
        except InvalidMessageError:
            continue
        with pytest.raises((InvalidSignatureError, NoSenderKeyError)):
            sk.decrypt(recv, m)
        assert recv.to_bytes() == before
    assert dec(recv, body) == b"payload that spans two blocks!!"


def test_signed_garbage_ciphertext_is_opaque_decryption_error() -> None:
    """A sender (who holds the signing key) can sign a bad ciphertext: DecryptionError, no change."""
    own, recv = make_pair()
    st = own._pb.sender_key_states[0]
    signing_priv = st.sender_signing_key.private
    body = SenderKeyMessage.encode_body(st.sender_key_id, 0, os.urandom(32))
    expect_unchanged(recv, body + xeddsa_sign(signing_priv, body, os.urandom(64)), DecryptionError)
    assert dec(recv, sk.encrypt(own, b"ok")) == b"ok"


def test_unknown_key_id() -> None:
    own, recv = make_pair()
    other, _ = make_pair()
    expect_unchanged(recv, sk.encrypt(other, b"x"), NoSenderKeyError)


# --------------------------------------------------------------------------- states and distribution
def test_at_most_five_states_newest_first() -> None:
    recv = SenderKeyRecord()
    owns = []
    for _ in range(MAX_SENDER_KEY_STATES + 2):
        own = sk.new_own_record()
        owns.append(own)
        sk.process_distribution(recv, sk.create_distribution(own))
    ids = recv.key_ids()
    assert len(ids) == MAX_SENDER_KEY_STATES
    assert ids == [o.key_ids()[0] for o in reversed(owns)][:MAX_SENDER_KEY_STATES]
    # the newest five still decrypt; the two oldest are gone
    assert dec(recv, sk.encrypt(owns[-1], b"new")) == b"new"
    assert dec(recv, sk.encrypt(owns[2], b"old")) == b"old"
    expect_unchanged(recv, sk.encrypt(owns[0], b"gone"), NoSenderKeyError)


def test_replayed_skdm_does_not_rewind_chain() -> None:
    own, recv = make_pair()
    skdm = sk.create_distribution(own)
    body = sk.encrypt(own, b"once")
    assert dec(recv, body) == b"once"
    assert not sk.process_distribution(recv, skdm)
    expect_unchanged(recv, body, DuplicateMessageError)


def test_skdm_same_id_other_signing_key_replaces_state() -> None:
    own, recv = make_pair()
    key_id = own.key_ids()[0]
    other = sk.new_own_record()
    other._pb.sender_key_states[0].sender_key_id = key_id
    assert sk.process_distribution(recv, sk.create_distribution(other))
    assert recv.key_ids() == [key_id]
    assert dec(recv, sk.encrypt(other, b"new owner")) == b"new owner"
    expect_unchanged(recv, sk.encrypt(own, b"old owner"), InvalidSignatureError)


def test_receiver_record_cannot_encrypt() -> None:
    _, recv = make_pair()
    with pytest.raises(NoSenderKeyError):
        sk.encrypt(recv, b"x")
    with pytest.raises(NoSenderKeyError):
        sk.encrypt(SenderKeyRecord(), b"x")
    with pytest.raises(NoSenderKeyError):
        sk.create_distribution(SenderKeyRecord())


def test_deterministic_with_seeded_rng(seeded_rng) -> None:  # type: ignore[no-untyped-def]
    a = sk.new_own_record(seeded_rng(b"x"))
    b = sk.new_own_record(seeded_rng(b"x"))
    assert a.to_bytes() == b.to_bytes()
    ra, rb = seeded_rng(b"sig"), seeded_rng(b"sig")
    assert sk.encrypt(a, b"m", rng=ra) == sk.encrypt(b, b"m", rng=rb)


# --------------------------------------------------------------------------- records
def test_record_round_trip_and_layout() -> None:
    own, recv = make_pair()
    sk.encrypt(own, b"x")
    for rec in (own, recv):
        raw = rec.to_bytes()
        again = SenderKeyRecord.from_bytes(raw)
        assert again.to_bytes() == raw
        generic = storage_pb2.SenderKeyRecordStructure.FromString(raw)
        st = generic.sender_key_states[0]
        assert len(st.sender_chain_key.seed) == 32 and len(st.sender_signing_key.public) == 33
    assert len(storage_pb2.SenderKeyRecordStructure.FromString(own.to_bytes()).sender_key_states[0].sender_signing_key.private) == 32


def test_record_from_bytes_rejects_garbage() -> None:
    for bad in (b"\xff\xff\xff", b"\x0a\x05\x12\x03\x10\x01"):
        with pytest.raises(InvalidMessageError):
            SenderKeyRecord.from_bytes(bad)
    with pytest.raises(InvalidMessageError):
        SenderKeyRecord.from_bytes(b"\x00" * (MAX_SENDER_KEY_RECORD_LEN + 1))
    own, _ = make_pair()
    pb = storage_pb2.SenderKeyRecordStructure.FromString(own.to_bytes())
    pb.sender_key_states[0].sender_signing_key.public = b"\x05" * 5
    with pytest.raises(InvalidMessageError):
        SenderKeyRecord.from_bytes(pb.SerializeToString())
    pb = storage_pb2.SenderKeyRecordStructure.FromString(own.to_bytes())
    pb.sender_key_states[0].sender_chain_key.seed = b"short"
    with pytest.raises(InvalidMessageError):
        SenderKeyRecord.from_bytes(pb.SerializeToString())


def test_record_from_bytes_trims_foreign_oversized_records() -> None:
    """python-axolotl keeps unbounded states and keys; we trim to our limits on import."""
    pb = storage_pb2.SenderKeyRecordStructure()
    for i in range(8):
        st = pb.sender_key_states.add()
        st.sender_key_id = i
        st.sender_chain_key.iteration = 3000
        st.sender_chain_key.seed = bytes(32)
        st.sender_signing_key.public = bytes(32)  # raw u (no type byte): normalized
        for j in range(MAX_SENDER_MESSAGE_KEYS + 10):
            mk = st.sender_message_keys.add()
            mk.iteration = j
            mk.seed = bytes(32)
    rec = SenderKeyRecord.from_bytes(pb.SerializeToString())
    assert rec.key_ids() == list(range(MAX_SENDER_KEY_STATES))
    st = rec._pb.sender_key_states[0]
    assert len(st.sender_message_keys) == MAX_SENDER_MESSAGE_KEYS
    assert st.sender_message_keys[0].iteration == 10
    assert st.sender_signing_key.public == b"\x05" + bytes(32)


def test_repr_shows_no_secrets() -> None:
    own, _ = make_pair()
    text = repr(own) + repr(sk.SigningKeyCache()) + repr(XEdDSASigner(os.urandom(32)))
    st = own._pb.sender_key_states[0]
    assert st.sender_chain_key.seed.hex() not in text
    assert st.sender_signing_key.private.hex() not in text
