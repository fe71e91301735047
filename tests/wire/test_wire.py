"""Wire messages: canonical encoding, version handling, strict parsing."""

from __future__ import annotations

import pytest

from wacrypto._proto import signal_wire_pb2 as pb
from wacrypto.errors import InvalidMessageError, LegacyMessageError, PeerError
from wacrypto.wire.messages import (
    PreKeySignalMessage,
    SenderKeyDistributionMessage,
    SignalMessage,
    encode_prekey_message,
    encode_signal_body,
)

KEY = b"\x05" + bytes(range(32))
CT = bytes(32)


def _signal(version: int = 0x33, counter: int = 0, prev: int = 0) -> bytes:
    return bytes((version,)) + encode_signal_body(KEY, counter, prev, CT) + b"M" * 8


def test_zero_counters_are_emitted_in_field_order() -> None:
    body = encode_signal_body(KEY, 0, 0, CT)
    # field 1 (ratchet key), then 2 and 3 present although zero, then 4
    assert body.startswith(b"\x0a\x21" + KEY + b"\x10\x00\x18\x00\x22\x20")
    m = pb.SignalMessage.FromString(body)
    assert m.HasField("counter") and m.HasField("previous_counter")
    # what protobuf itself emits for the same explicitly-set fields is identical
    ref = pb.SignalMessage(ratchet_key=KEY, counter=0, previous_counter=0, ciphertext=CT)
    assert ref.SerializeToString() == body


def test_large_counters_round_trip() -> None:
    raw = bytes((0x33,)) + encode_signal_body(KEY, 2**32 - 1, 300, CT) + b"M" * 8
    m = SignalMessage.from_bytes(raw)
    assert (m.counter, m.previous_counter) == (2**32 - 1, 300)
    assert m.to_bytes() == raw and m.mac == b"M" * 8


@pytest.mark.parametrize("version", [0x33, 0x34, 0x3F])
def test_high_nibble_3_and_4_accepted(version: int) -> None:
    if version >> 4 == 3 or version >> 4 == 4:
        SignalMessage.from_bytes(_signal(version))


@pytest.mark.parametrize("version", [0x23, 0x53, 0x03, 0xF3])
def test_other_versions_rejected(version: int) -> None:
    with pytest.raises(LegacyMessageError):
        SignalMessage.from_bytes(_signal(version))


def test_unknown_fields_tolerated() -> None:
    body = encode_signal_body(KEY, 1, 0, CT) + b"\x78\x05"  # field 15 varint
    m = SignalMessage.from_bytes(b"\x33" + body + b"M" * 8)
    assert m.counter == 1
    assert m.mac_input == b"\x33" + body  # MAC covers the bytes as received


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x33",
        b"\x33" + b"M" * 8,
        b"\x33\xff\xff\xff" + b"M" * 8,
        b"\x33" + encode_signal_body(KEY[:32], 0, 0, CT) + b"M" * 8,  # short key
        b"\x33" + encode_signal_body(b"\x06" + KEY[1:], 0, 0, CT) + b"M" * 8,  # bad key type
        b"\x33" + encode_signal_body(KEY, 0, 0, b"x" * 15) + b"M" * 8,  # partial block
        b"\x33" + encode_signal_body(KEY, 0, 0, b"") + b"M" * 8,
        b"\x33" + b"\x0a\x21" + KEY + b"\x22\x10" + bytes(16) + b"M" * 8,  # no counter
        b"\x33" + bytes(300 * 1024),
    ],
)
def test_malformed_signal_messages_raise_peer_errors(raw: bytes) -> None:
    with pytest.raises(PeerError):
        SignalMessage.from_bytes(raw)


def test_prekey_message_round_trip_with_and_without_prekey_id() -> None:
    inner = _signal()
    for pid in (None, 0, 1, 0xFFFFFF):
        raw = encode_prekey_message(1234, pid, 7, KEY, KEY, inner)
        m = PreKeySignalMessage.from_bytes(raw)
        assert (m.registration_id, m.pre_key_id, m.signed_pre_key_id) == (1234, pid, 7)
        assert m.message.to_bytes() == inner and m.to_bytes() == raw
        # fields in number order: 1 (if present), 2, 3, 4, 5, 6
        ref = pb.PreKeySignalMessage(
            base_key=KEY, identity_key=KEY, message=inner, registration_id=1234, signed_pre_key_id=7
        )
        if pid is not None:
            ref.pre_key_id = pid
        assert raw[1:] == ref.SerializeToString()


def test_prekey_message_rejects_out_of_range_ids_and_missing_fields() -> None:
    inner = _signal()
    with pytest.raises(InvalidMessageError):
        PreKeySignalMessage.from_bytes(encode_prekey_message(1, 0x1000000, 7, KEY, KEY, inner))
    ref = pb.PreKeySignalMessage(base_key=KEY, message=inner, signed_pre_key_id=1)
    with pytest.raises(InvalidMessageError):
        PreKeySignalMessage.from_bytes(b"\x33" + ref.SerializeToString())


def test_skdm_canonical_zero_fields() -> None:
    m = SenderKeyDistributionMessage.create(0, 0, bytes(32), KEY)
    assert m.serialized.startswith(b"\x33\x08\x00\x10\x00")
    back = SenderKeyDistributionMessage.from_bytes(m.serialized)
    assert (back.key_id, back.iteration, back.chain_key, back.signing_key) == (0, 0, bytes(32), KEY)
