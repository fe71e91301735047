"""Envelope codec properties: every valid envelope round-trips (with and without the server's
sender stamp) and agrees with protobuf; arbitrary bytes parse or raise only PeerError."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wacrypto._proto import chat_pb2
from wacrypto.errors import InvalidArgumentError, InvalidMessageError, PeerError
from wacrypto.chat.envelope import Envelope

keys = st.binary(min_size=32, max_size=32)


@given(keys, st.sampled_from([2, 3]), st.binary(min_size=1, max_size=2048), st.none() | keys)
def test_round_trip(recipient: bytes, msg_type: int, body: bytes, sender: bytes | None) -> None:
    env = Envelope(recipient, msg_type, body, sender)
    raw = env.to_bytes()
    assert Envelope.from_bytes(raw) == env
    ref = chat_pb2.Envelope.FromString(raw)
    assert (ref.recipient, ref.type, ref.body) == (recipient, msg_type, body)
    stamped = Envelope.from_bytes(Envelope(recipient, msg_type, body).stamped(b"\x07" * 32).to_bytes())
    assert stamped.sender == b"\x07" * 32 and stamped.body == body


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_peer_errors(data: bytes) -> None:
    try:
        Envelope.from_bytes(data)
    except PeerError:
        pass


def test_invalid_fields_are_refused_typed() -> None:
    for bad in (
        chat_pb2.Envelope(recipient=bytes(31), type=2, body=b"x"),
        chat_pb2.Envelope(recipient=bytes(32), type=1, body=b"x"),
        chat_pb2.Envelope(recipient=bytes(32), type=2, body=b""),
        chat_pb2.Envelope(recipient=bytes(32), type=2, body=b"x", sender=bytes(33)),
        chat_pb2.Envelope(recipient=bytes(32), body=b"x"),
    ):
        with pytest.raises(InvalidMessageError):
            Envelope.from_bytes(bad.SerializeToString())
    with pytest.raises(InvalidArgumentError):
        Envelope(bytes(32), 7, b"x")
    secret = Envelope(b"\x11" * 32, 2, b"secret-body")
    assert "secret" not in repr(secret) and "11" * 4 not in repr(secret)
