"""Codec properties: canonical encoding round-trips and agrees with protobuf for any field values;
parsing arbitrary bytes raises only PeerError."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from wacrypto._proto import signal_wire_pb2 as pb
from wacrypto.errors import PeerError
from wacrypto.signal.records import SessionRecord
from wacrypto.wire.messages import (
    PreKeySignalMessage,
    SenderKeyDistributionMessage,
    SenderKeyMessage,
    SignalMessage,
    encode_prekey_message,
    encode_signal_body,
)

u32 = st.integers(0, 2**32 - 1)
u24 = st.integers(0, 2**24 - 1)
keys = st.binary(min_size=32, max_size=32).map(lambda b: b"\x05" + b)
blocks = st.integers(1, 20).flatmap(lambda n: st.binary(min_size=16 * n, max_size=16 * n))


@given(keys, u32, u32, blocks, st.binary(min_size=8, max_size=8))
def test_signal_message_round_trip(key: bytes, counter: int, prev: int, ct: bytes, mac: bytes) -> None:
    body = encode_signal_body(key, counter, prev, ct)
    ref = pb.SignalMessage(ratchet_key=key, counter=counter, previous_counter=prev, ciphertext=ct)
    assert body == ref.SerializeToString()
    m = SignalMessage.from_bytes(b"\x33" + body + mac)
    assert (m.ratchet_key, m.counter, m.previous_counter, m.ciphertext, m.mac) == (key, counter, prev, ct, mac)


@given(u32, st.none() | u24, u24, keys, keys, keys, blocks)
def test_prekey_message_round_trip(reg: int, pid: int | None, spk: int, base: bytes, ident: bytes, rk: bytes, ct: bytes) -> None:
    inner = b"\x33" + encode_signal_body(rk, 0, 0, ct) + b"m" * 8
    raw = encode_prekey_message(reg, pid, spk, base, ident, inner)
    m = PreKeySignalMessage.from_bytes(raw)
    assert (m.registration_id, m.pre_key_id, m.signed_pre_key_id, m.base_key, m.identity_key) == (reg, pid, spk, base, ident)
    assert m.message.to_bytes() == inner


@given(u32, u32, st.binary(min_size=32, max_size=32), keys)
def test_skdm_round_trip(kid: int, it: int, ck: bytes, sk: bytes) -> None:
    m = SenderKeyDistributionMessage.create(kid, it, ck, sk)
    back = SenderKeyDistributionMessage.from_bytes(m.to_bytes())
    assert (back.key_id, back.iteration, back.chain_key, back.signing_key) == (kid, it, ck, sk)
    ref = pb.SenderKeyDistributionMessage(id=kid, iteration=it, chain_key=ck, signing_key=sk)
    assert m.to_bytes()[1:] == ref.SerializeToString()


@given(st.binary(max_size=400))
def test_parsers_raise_only_peer_errors(data: bytes) -> None:
    for parse in (SignalMessage.from_bytes, PreKeySignalMessage.from_bytes, SenderKeyMessage.from_bytes,
                  SenderKeyDistributionMessage.from_bytes, SessionRecord.from_bytes):
        try:
            parse(data)
        except PeerError:
            pass
