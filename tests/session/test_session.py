"""Sessions end to end on the memory store: X3DH, ratchet, limits, failures that change nothing."""

from __future__ import annotations

import random

import pytest

from wacrypto.session import account
from wacrypto.address import Address
from wacrypto.session.cipher import PREKEY_TYPE, WHISPER_TYPE, CiphertextMessage, SessionCipher
from wacrypto.errors import (
    DecryptionError,
    DuplicateMessageError,
    InvalidSignatureError,
    NoPreKeyError,
    NoSessionError,
    PeerError,
    TooFarAheadError,
    UntrustedIdentityError,
)
from wacrypto.limits import MAX_ARCHIVED_STATES, MAX_SKIPPED_KEYS_PER_CHAIN
from wacrypto.signal.bundle import PreKeyBundle
from wacrypto.signal.records import SessionRecord
from wacrypto.store.memory import MemoryKeyStore
from wacrypto.wire.messages import PreKeySignalMessage

A = Address("alice", 1)
B = Address("bob", 1)


class Party:
    def __init__(self, **kw: object) -> None:
        self.store = MemoryKeyStore()
        self.cipher = SessionCipher(self.store, **kw)  # type: ignore[arg-type]

    async def setup(self) -> None:
        await account.create_account(self.store, prekeys=5)

    async def bundle(self, with_prekey: bool = True) -> PreKeyBundle:
        return await account.get_bundle(self.store, with_prekey=with_prekey)


async def pair(with_prekey: bool = True, **kw: object) -> tuple[Party, Party]:
    alice, bob = Party(**kw), Party(**kw)
    await alice.setup()
    await bob.setup()
    await alice.cipher.process_bundle(B, await bob.bundle(with_prekey))
    return alice, bob


async def established(**kw: object) -> tuple[Party, Party]:
    alice, bob = await pair(**kw)
    m = await alice.cipher.encrypt(B, b"hello")
    assert await bob.cipher.decrypt(A, m.type, m.body) == b"hello"
    r = await bob.cipher.encrypt(A, b"hi")
    assert await alice.cipher.decrypt(B, r.type, r.body) == b"hi"
    return alice, bob


@pytest.mark.parametrize("with_prekey", [True, False])
async def test_x3dh_both_roles(with_prekey: bool) -> None:
    alice, bob = await pair(with_prekey)
    m1 = await alice.cipher.encrypt(B, b"one")
    m2 = await alice.cipher.encrypt(B, b"two")
    assert m1.type == m2.type == PREKEY_TYPE
    assert await bob.cipher.decrypt(A, m2.type, m2.body) == b"two"  # out of order
    assert await bob.cipher.decrypt(A, m1.type, m1.body) == b"one"
    r = await bob.cipher.encrypt(A, b"reply")
    assert r.type == WHISPER_TYPE
    assert await alice.cipher.decrypt(B, r.type, r.body) == b"reply"
    m3 = await alice.cipher.encrypt(B, b"three")
    assert m3.type == WHISPER_TYPE  # pending prekey cleared once Bob answered


async def test_one_time_prekey_removed_only_after_successful_decrypt() -> None:
    alice, bob = await pair(True)
    m = await alice.cipher.encrypt(B, b"x")
    prekey_id = PreKeySignalMessage.from_bytes(m.body).pre_key_id  # the one of the bundle Alice used
    assert prekey_id is not None
    inner = PreKeySignalMessage.from_bytes(m.body).message.to_bytes()
    at = m.body.index(inner) + len(inner) - 1  # last MAC byte of the inner message
    tampered = bytearray(m.body)
    tampered[at] ^= 1
    before = bob.store.snapshot()
    with pytest.raises(DecryptionError):
        await bob.cipher.decrypt(A, m.type, bytes(tampered))
    assert bob.store.snapshot() == before
    async with bob.store.transaction() as tx:
        assert await tx.load_prekey(prekey_id) is not None
    assert await bob.cipher.decrypt(A, m.type, m.body) == b"x"
    async with bob.store.transaction() as tx:
        assert await tx.load_prekey(prekey_id) is None


async def test_late_prekey_message_uses_existing_session_by_base_key() -> None:
    alice, bob = await pair(True)
    m1 = await alice.cipher.encrypt(B, b"1")
    m2 = await alice.cipher.encrypt(B, b"2")
    assert await bob.cipher.decrypt(A, m1.type, m1.body) == b"1"
    # the one-time prekey is gone now, but m2 carries the same base key: same session
    assert await bob.cipher.decrypt(A, m2.type, m2.body) == b"2"
    with pytest.raises(DuplicateMessageError):
        await bob.cipher.decrypt(A, m2.type, m2.body)


async def test_missing_one_time_prekey_is_missing_state() -> None:
    alice, bob = await pair(True)
    m = await alice.cipher.encrypt(B, b"1")
    prekey_id = PreKeySignalMessage.from_bytes(m.body).pre_key_id  # the one of the bundle Alice used
    async with bob.store.transaction() as tx:
        assert prekey_id is not None
        await tx.remove_prekey(prekey_id)
    with pytest.raises(NoPreKeyError):
        await bob.cipher.decrypt(A, m.type, m.body)


async def test_bad_bundle_signature_rejected() -> None:
    alice, bob = Party(), Party()
    await alice.setup()
    await bob.setup()
    b = await bob.bundle()
    sig = bytearray(b.signed_prekey_signature)
    sig[5] ^= 1
    forged = PreKeyBundle(**{**b.__dict__, "signed_prekey_signature": bytes(sig)} if hasattr(b, "__dict__") else {
        "registration_id": b.registration_id, "device_id": b.device_id, "identity_key": b.identity_key,
        "signed_prekey_id": b.signed_prekey_id, "signed_prekey": b.signed_prekey,
        "signed_prekey_signature": bytes(sig), "prekey_id": b.prekey_id, "prekey": b.prekey})
    before = alice.store.snapshot()
    with pytest.raises(InvalidSignatureError):
        await alice.cipher.process_bundle(B, forged)
    assert alice.store.snapshot() == before
    assert not await alice.cipher.has_session(B)


async def test_no_session_errors() -> None:
    alice, _ = Party(), Party()
    await alice.setup()
    with pytest.raises(NoSessionError):
        await alice.cipher.encrypt(B, b"x")
    _, bob = await established()
    r = await bob.cipher.encrypt(A, b"x")
    with pytest.raises(NoSessionError):
        await alice.cipher.decrypt(B, r.type, r.body)


async def test_out_of_order_across_ratchet_steps() -> None:
    alice, bob = await established()
    held: list[tuple[Party, Address, CiphertextMessage, bytes]] = []
    rnd = random.Random(7)
    for rnd_i in range(4):  # at most 5 receiver chains are kept
        for i in range(3):
            pt = f"a{rnd_i}-{i}".encode()
            held.append((bob, A, await alice.cipher.encrypt(B, pt), pt))
        m = await alice.cipher.encrypt(B, b"now")
        assert await bob.cipher.decrypt(A, m.type, m.body) == b"now"
        r = await bob.cipher.encrypt(A, b"back")
        assert await alice.cipher.decrypt(B, r.type, r.body) == b"back"
    rnd.shuffle(held)
    for receiver, sender, msg, pt in held:
        assert await receiver.cipher.decrypt(sender, msg.type, msg.body) == pt


async def test_tampering_any_byte_changes_nothing() -> None:
    alice, bob = await established()
    m = await alice.cipher.encrypt(B, b"secret payload")
    before = bob.store.snapshot()
    for i in range(len(m.body)):
        bad = bytearray(m.body)
        bad[i] ^= 0x80
        with pytest.raises(PeerError):
            await bob.cipher.decrypt(A, m.type, bytes(bad))
        assert bob.store.snapshot() == before
    assert await bob.cipher.decrypt(A, m.type, m.body) == b"secret payload"


async def test_duplicate_is_its_own_error_and_changes_nothing() -> None:
    alice, bob = await established()
    m = await alice.cipher.encrypt(B, b"x")
    await bob.cipher.decrypt(A, m.type, m.body)
    before = bob.store.snapshot()
    with pytest.raises(DuplicateMessageError):
        await bob.cipher.decrypt(A, m.type, m.body)
    assert bob.store.snapshot() == before


@pytest.mark.parametrize("limit", [1, 10, 2000])
async def test_forward_jump_limit_is_a_setting(limit: int) -> None:
    alice, bob = await established(max_forward_jump=limit)
    msgs = [await alice.cipher.encrypt(B, b"%d" % i) for i in range(limit + 2)]
    before = bob.store.snapshot()
    with pytest.raises(TooFarAheadError):
        await bob.cipher.decrypt(A, msgs[-1].type, msgs[-1].body)  # jump of limit + 1
    assert bob.store.snapshot() == before
    assert await bob.cipher.decrypt(A, msgs[-2].type, msgs[-2].body) == b"%d" % (limit)  # jump == limit: ok
    assert await bob.cipher.decrypt(A, msgs[0].type, msgs[0].body) == b"0"


async def test_skipped_keys_are_capped_per_chain() -> None:
    alice, bob = await established(max_forward_jump=2500)
    msgs = [await alice.cipher.encrypt(B, b"m") for _ in range(MAX_SKIPPED_KEYS_PER_CHAIN + 101)]
    last = msgs[-1]
    await bob.cipher.decrypt(A, last.type, last.body)
    async with bob.store.transaction() as tx:
        raw = await tx.load_session(A)
    assert raw is not None
    rec = SessionRecord.from_bytes(raw)
    assert max(len(c.message_keys) for c in rec.current.receiver_chains) == MAX_SKIPPED_KEYS_PER_CHAIN
    # the oldest skipped keys were dropped: those messages fail, the newer ones decrypt
    with pytest.raises(DuplicateMessageError):
        await bob.cipher.decrypt(A, msgs[0].type, msgs[0].body)
    assert await bob.cipher.decrypt(A, msgs[-2].type, msgs[-2].body) == b"m"


async def test_archived_state_decrypts_and_is_promoted() -> None:
    alice, bob = await established()
    old = await alice.cipher.encrypt(B, b"from old session")
    # Alice starts a fresh session (e.g. reinstall on her side): Bob archives the old state
    await alice.cipher.process_bundle(B, await bob.bundle(False))
    m = await alice.cipher.encrypt(B, b"new session")
    assert await bob.cipher.decrypt(A, m.type, m.body) == b"new session"
    assert await bob.cipher.decrypt(A, old.type, old.body) == b"from old session"
    async with bob.store.transaction() as tx:
        raw = await tx.load_session(A)
    assert raw is not None
    rec = SessionRecord.from_bytes(raw)
    assert len(rec.archived) == 1


async def test_archive_is_capped() -> None:
    alice, bob = await established()
    for _ in range(MAX_ARCHIVED_STATES + 3):
        await alice.cipher.process_bundle(B, await bob.bundle(False))
    async with alice.store.transaction() as tx:
        raw = await tx.load_session(B)
    assert raw is not None
    assert len(SessionRecord.from_bytes(raw).archived) == MAX_ARCHIVED_STATES


async def test_identity_change_detected_and_accepted_explicitly() -> None:
    alice, bob = await established()
    bob2 = Party()
    await bob2.setup()  # Bob reinstalled: new identity key
    new_bundle = await bob2.bundle()
    before = alice.store.snapshot()
    with pytest.raises(UntrustedIdentityError) as ei:
        await alice.cipher.process_bundle(B, new_bundle)
    assert ei.value.address == str(B)
    assert alice.store.snapshot() == before
    await alice.cipher.trust_identity(B, new_bundle.identity_key)
    await alice.cipher.process_bundle(B, new_bundle)
    m = await alice.cipher.encrypt(B, b"welcome back")
    assert await bob2.cipher.decrypt(A, m.type, m.body) == b"welcome back"


async def test_incoming_prekey_message_with_changed_identity() -> None:
    alice, bob = await established()
    alice2 = Party()
    await alice2.setup()
    await alice2.cipher.process_bundle(B, await bob.bundle())
    m = await alice2.cipher.encrypt(B, b"new alice")
    before = bob.store.snapshot()
    with pytest.raises(UntrustedIdentityError):
        await bob.cipher.decrypt(A, m.type, m.body)
    assert bob.store.snapshot() == before


async def test_exactly_once_decrypt_returns_stored_plaintext_until_handled() -> None:
    alice, bob = await established()
    m = await alice.cipher.encrypt(B, b"pay 10")
    first = await bob.cipher.decrypt_once(A, m.type, m.body)
    again = await bob.cipher.decrypt_once(A, m.type, m.body)
    assert (first.plaintext, first.redelivered) == (b"pay 10", False)
    assert (again.plaintext, again.redelivered) == (b"pay 10", True)
    await bob.cipher.mark_handled(A, first.digest)
    with pytest.raises(DuplicateMessageError):
        await bob.cipher.decrypt_once(A, m.type, m.body)


async def test_durable_send_writes_outbox_in_same_transaction() -> None:
    alice, bob = await established()
    m = await alice.cipher.encrypt_durable(B, b"queued", "msg-1")
    async with alice.store.transaction() as tx:
        out = await tx.outbox_list()
    assert [(e.message_id, e.body) for e in out] == [("msg-1", m.body)]
    assert await bob.cipher.decrypt(A, out[0].msg_type, out[0].body) == b"queued"


async def test_export_import_round_trip() -> None:
    alice, bob = await established()
    record = await alice.cipher.export_session(B)
    carol = Party()
    await carol.setup()
    await carol.cipher.import_session(B, record)
    m = await carol.cipher.encrypt(B, b"via imported session")
    assert await bob.cipher.decrypt(A, m.type, m.body) == b"via imported session"


async def test_prekey_ids_wrap_around_24_bits() -> None:
    store = MemoryKeyStore()
    await account.create_account(store, prekeys=0)
    async with store.transaction() as tx:
        await tx.set_meta("next_prekey_id", (0xFFFFFE).to_bytes(4, "big"))
    recs = await account.generate_prekeys(store, 4)
    assert [r.id for r in recs] == [0xFFFFFE, 0xFFFFFF, 1, 2]


async def test_signed_prekey_rotation_keeps_previous_and_drops_old() -> None:
    store = MemoryKeyStore()
    t = [1_000_000.0]
    await account.create_account(store, prekeys=1, clock=lambda: t[0])
    first = await account.get_bundle(store)
    t[0] += 86400
    new = await account.rotate_signed_prekey(store, clock=lambda: t[0])
    assert new.id == first.signed_prekey_id + 1 and new.timestamp == int(t[0] * 1000)
    assert (await account.get_bundle(store)).signed_prekey_id == new.id
    async with store.transaction() as tx:
        assert sorted(await tx.list_signed_prekeys()) == [1, 2]
    t[0] += 40 * 86400
    await account.rotate_signed_prekey(store, clock=lambda: t[0])
    t[0] += 1
    await account.rotate_signed_prekey(store, clock=lambda: t[0])
    async with store.transaction() as tx:
        ids = sorted(await tx.list_signed_prekeys())
    assert 1 not in ids and 2 not in ids and len(ids) == 2
