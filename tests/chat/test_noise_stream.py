"""NoiseStream is a well-behaved trio Stream (trio's own generic checks) and fails typed."""

from __future__ import annotations

import time

import pytest
import trio
import trio.testing

from wacrypto.chatd.server import ServerKeys
from wacrypto.chat.stream import NoiseStream
from wacrypto.errors import CertificateError, FrameError
from wacrypto.primitives.keys import KeyPair
from wacrypto.transport.noise_connection import ClientSettings, NoiseConnection, ServerSettings

KEYS, _, _ = ServerKeys.generate()


def noise_pair(a: trio.abc.Stream, b: trio.abc.Stream, root: KeyPair | None = None) -> tuple[NoiseStream, NoiseStream]:
    trusted = root.public if root is not None else KEYS.root_public
    client = NoiseStream(a, NoiseConnection(ClientSettings(KeyPair.generate(), trusted), wall_time=time.time()))
    server = NoiseStream(b, NoiseConnection(ServerSettings(KEYS.static, KEYS.chain)))
    return client, server


async def handshaken(a: trio.abc.Stream, b: trio.abc.Stream) -> tuple[NoiseStream, NoiseStream]:
    client, server = noise_pair(a, b)
    async with trio.open_nursery() as n:
        n.start_soon(client.do_handshake)
        n.start_soon(server.do_handshake)
    return client, server


async def make_pair() -> tuple[trio.abc.Stream, trio.abc.Stream]:
    return await handshaken(*trio.testing.memory_stream_pair())


async def make_clogged() -> tuple[trio.abc.Stream, trio.abc.Stream]:
    return await handshaken(*trio.testing.lockstep_stream_pair())


async def test_check_two_way_stream() -> None:
    await trio.testing.check_two_way_stream(make_pair, make_clogged)


async def test_handshake_runs_on_first_use_and_reports_the_peer() -> None:
    client, server = noise_pair(*trio.testing.memory_stream_pair())
    async with trio.open_nursery() as n:
        n.start_soon(client.send_all, b"hi")
        assert await server.receive_some() == b"hi"
    assert client.handshake is not None and client.handshake.server_certificate is not None
    assert server.handshake is not None and server.handshake.client_payload is not None


async def test_large_writes_are_split_into_frames() -> None:
    client, server = await make_pair()
    blob = bytes(range(256)) * 40000  # ~10 MiB > DEFAULT_MAX_FRAME_LEN
    got = bytearray()

    async def reader() -> None:
        while len(got) < len(blob):
            got.extend(await server.receive_some())

    async with trio.open_nursery() as n:
        n.start_soon(reader)
        await client.send_all(blob)
    assert got == blob


async def test_untrusted_server_raises_certificate_error_then_broken() -> None:
    client, server = noise_pair(*trio.testing.memory_stream_pair(), root=KeyPair.generate())

    async def server_side() -> None:
        with pytest.raises((trio.BrokenResourceError, trio.ClosedResourceError, Exception)):
            await server.do_handshake()

    async with trio.open_nursery() as n:
        n.start_soon(server_side)
        with pytest.raises(CertificateError):
            await client.do_handshake()
        n.cancel_scope.cancel()
    with pytest.raises(trio.BrokenResourceError):
        await client.send_all(b"x")


async def test_bad_tag_is_a_frame_error_then_broken() -> None:
    a, b = trio.testing.memory_stream_pair()
    client, server = await handshaken(a, b)
    frame = client.connection
    frame.send_frame(b"payload")
    wire = bytearray(frame.data_to_send())
    wire[-3] ^= 0x40
    await a.send_all(bytes(wire))
    with pytest.raises(FrameError):
        await server.receive_some()
    with pytest.raises(trio.BrokenResourceError):
        await server.receive_some()


async def test_oversized_length_prefix_is_a_frame_error() -> None:
    a, b = trio.testing.memory_stream_pair()
    client, server = await handshaken(a, b)
    await a.send_all(b"\xff\xff\xff")
    with pytest.raises(FrameError, match="exceeds"):
        await server.receive_some()


async def test_cancelled_send_breaks_the_stream_instead_of_half_writing() -> None:
    client, server = await handshaken(*trio.testing.lockstep_stream_pair())
    with trio.move_on_after(0.05):
        await client.send_all(b"x" * 100)  # lockstep: blocks until the peer reads; cancelled
    with pytest.raises(trio.BrokenResourceError):
        await client.send_all(b"y")
