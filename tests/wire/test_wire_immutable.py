"""Wire types are immutable values whose bytes always are the message.

A user cannot build a message whose ``serialized`` disagrees with its fields: the classes have no
public constructor taking fields and bytes, ``create`` encodes the bytes from checked fields,
attributes cannot be reassigned, and copies or pickles re-parse the bytes.
"""

from __future__ import annotations

import copy
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wacrypto.errors import InvalidArgumentError, UsageError
from wacrypto.primitives.keys import KeyPair, PrivateKey
from wacrypto.signal.fingerprint import create_fingerprint
from wacrypto.signal.records import PreKeyRecord, SignedPreKeyRecord
from wacrypto.wire.messages import (
    VERSION_BYTE,
    PreKeySignalMessage,
    SenderKeyDistributionMessage,
    SenderKeyMessage,
    SignalMessage,
    encode_signal_body,
)

KEY = b"\x05" + bytes(range(32))
OTHER = b"\x05" + bytes(range(1, 33))
CT = bytes(32)


def _signal(counter: int = 3) -> SignalMessage:
    return SignalMessage.from_bytes(VERSION_BYTE + encode_signal_body(KEY, counter, 1, CT) + b"M" * 8)


def _all() -> list[object]:
    inner = _signal()
    skm = SenderKeyMessage.encode_body(7, 2, CT) + bytes(64)
    return [
        inner,
        PreKeySignalMessage.create(5, 9, 1, KEY, OTHER, inner),
        SenderKeyMessage.from_bytes(skm),
        SenderKeyDistributionMessage.create(7, 2, bytes(32), KEY),
    ]


@pytest.mark.parametrize("cls", [SignalMessage, PreKeySignalMessage, SenderKeyMessage, SenderKeyDistributionMessage])
def test_classes_cannot_be_called_with_fields_and_bytes(cls: type) -> None:
    m = _signal()
    with pytest.raises(UsageError, match="from_bytes"):
        cls(3, KEY, 99, 0, CT, m.serialized)  # the old constructor: counter 99, bytes say 3
    with pytest.raises(InvalidArgumentError):
        cls()


@pytest.mark.parametrize("index", range(4))
def test_attributes_cannot_be_reassigned_or_deleted(index: int) -> None:
    m = _all()[index]
    for name in type(m).__slots__:
        before = getattr(m, name)
        with pytest.raises(AttributeError, match="immutable"):
            setattr(m, name, before)
        with pytest.raises(AttributeError, match="immutable"):
            delattr(m, name)
        assert getattr(m, name) == before
    with pytest.raises(AttributeError):
        m.extra = 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("index", range(4))
def test_copies_and_pickles_are_parsed_again_and_equal(index: int) -> None:
    m = _all()[index]
    for twin in (copy.copy(m), copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert type(twin) is type(m)
        assert twin == m and hash(twin) == hash(m)
        assert twin.to_bytes() == m.to_bytes()  # type: ignore[attr-defined]
        for name in type(m).__slots__:
            assert getattr(twin, name) == getattr(m, name)


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_fields_always_agree_with_bytes(counter: int, key_id: int) -> None:
    m = _signal(counter)
    assert SignalMessage.from_bytes(m.serialized).counter == m.counter == counter
    skdm = SenderKeyDistributionMessage.create(key_id, counter, bytes(32), KEY)
    back = SenderKeyDistributionMessage.from_bytes(skdm.to_bytes())
    assert (back.key_id, back.iteration, back.chain_key, back.signing_key) == (key_id, counter, bytes(32), KEY)


def test_create_refuses_fields_a_receiver_would_refuse() -> None:
    inner = _signal()
    with pytest.raises(InvalidArgumentError):
        SenderKeyDistributionMessage.create(1, 0, bytes(31), KEY)
    with pytest.raises(InvalidArgumentError):
        SenderKeyDistributionMessage.create(1, 0, bytes(32), KEY[1:])
    with pytest.raises(InvalidArgumentError):
        SenderKeyDistributionMessage.create(-1, 0, bytes(32), KEY)
    with pytest.raises(InvalidArgumentError):
        PreKeySignalMessage.create(5, 1 << 24, 1, KEY, OTHER, inner)
    with pytest.raises(InvalidArgumentError):
        PreKeySignalMessage.create(5, None, 1, b"\x06" + KEY[1:], OTHER, inner)


def test_different_messages_are_not_equal() -> None:
    assert _signal(1) != _signal(2)
    assert _signal(1) != _signal(1).serialized  # a message is not its bytes


def test_key_pair_and_prekey_records_are_immutable() -> None:
    pair = KeyPair.generate()
    with pytest.raises(AttributeError):
        pair.public = KeyPair.generate().public  # type: ignore[misc]
    with pytest.raises(InvalidArgumentError, match="does not belong"):
        KeyPair(pair.private, KeyPair.generate().public)
    assert KeyPair(pair.private, pair.public).public == pair.public
    assert pickle.loads(pickle.dumps(pair)).public == pair.public
    rec = PreKeyRecord(1, pair)
    spk = SignedPreKeyRecord(2, pair, bytes(64), 5)
    for obj, name in ((rec, "id"), (spk, "signature"), (spk, "timestamp")):
        with pytest.raises(AttributeError, match="immutable"):
            setattr(obj, name, getattr(obj, name))
    assert PreKeyRecord.from_bytes(copy.copy(rec).to_bytes()).id == 1
    assert SignedPreKeyRecord.from_bytes(pickle.loads(pickle.dumps(spk)).to_bytes()).timestamp == 5


def test_fingerprint_is_immutable_and_round_trips() -> None:
    a, b = KeyPair(PrivateKey(bytes(32))), KeyPair(PrivateKey(b"\x01" * 32))
    fp = create_fingerprint("+1", a.public.to_bytes(), "+2", b.public.to_bytes(), iterations=2)
    with pytest.raises(AttributeError, match="immutable"):
        fp.display = "0" * 60  # type: ignore[misc]
    twin = pickle.loads(pickle.dumps(fp))
    assert twin == fp and twin.display == fp.display and twin.scannable == fp.scannable
