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


@given(st.sampled_from([2, 3]), st.binary(min_size=1, max_size=300))
def test_any_body_is_a_signal_message_of_its_type_or_a_peer_error(msg_type: int, body: bytes) -> None:
    """What the Messenger uses to tell garbage (dropped for good) from a message it may read later."""
    try:
        msg = Envelope(bytes(32), msg_type, body).signal_message()
    except PeerError:
        return
    assert msg.to_bytes() == body


async def test_real_signal_messages_parse_as_their_type_and_garbage_does_not() -> None:
    from wacrypto.address import Address
    from wacrypto.session import account
    from wacrypto.session.cipher import SessionCipher
    from wacrypto.store import open_store
    from wacrypto.wire.messages import PreKeySignalMessage, SignalMessage

    alice, bob = await open_store("memory:"), await open_store("memory:")
    for s in (alice, bob):
        await account.create_account(s, prekeys=1)
    a, b = SessionCipher(alice), SessionCipher(bob)
    await a.process_bundle(Address("bob", 1), await account.get_bundle(bob))
    first = await a.encrypt(Address("bob", 1), b"hi")
    assert isinstance(Envelope(bytes(32), first.type, first.body).signal_message(), PreKeySignalMessage)
    await b.decrypt(Address("alice", 1), first.type, first.body)
    reply = await b.encrypt(Address("alice", 1), b"hello")
    assert isinstance(Envelope(bytes(32), reply.type, reply.body).signal_message(), SignalMessage)
    for garbage in (Envelope(bytes(32), 2, b"\x33" + bytes(60)), Envelope(bytes(32), 3, reply.body),
                    Envelope(bytes(32), 2, first.body)):
        with pytest.raises(PeerError):
            garbage.signal_message()
