"""The shipped test helpers do what they say: deterministic RNG, connected pairs that really talk."""

from __future__ import annotations

import trio
import trio.testing

from wacrypto.chat.stream import NoiseStream
from wacrypto.chatd.server import ServerKeys
from wacrypto.testing import SeededRng
from wacrypto.testing.connections import chat_pair, handshake, pump
from wacrypto.testing.streams import noise_stream_pair
from wacrypto.transport.chat_connection import MessageReceived
from wacrypto.transport.messages import Message


def test_seeded_rng_is_deterministic_and_seed_dependent() -> None:
    a, b, c = SeededRng(b"s"), SeededRng(b"s"), SeededRng(b"t")
    assert [a(7), a(40), a(0), a(33)] == [b(7), b(40), b(0), b(33)]  # same calls, same bytes
    assert SeededRng(b"s")(47) != c(47)
    assert len(set(SeededRng(b"s")(16) for _ in range(3))) == 1 and a(16) != a(16)
    assert "secret" not in repr(SeededRng(b"secret-seed"))


def test_chat_pair_handshakes_and_carries_a_message() -> None:
    keys, _, _ = ServerKeys.generate()
    c, s = chat_pair(keys)
    handshake(c, s)
    c.send(Message(id="m1", payload=b"hello"), 0.0)
    events = pump(c, s, 0.0)
    assert [e.payload for e in events if isinstance(e, MessageReceived)] == [b"hello"]


async def test_noise_stream_pair_is_a_two_way_stream() -> None:
    async def make() -> tuple[NoiseStream, NoiseStream]:
        return await noise_stream_pair()

    async def make_clogged() -> tuple[NoiseStream, NoiseStream]:
        return await noise_stream_pair(lockstep=True)

    await trio.testing.check_two_way_stream(make, make_clogged)
