"""Connected :class:`~wacrypto.chat.stream.NoiseStream` pairs over trio's in-memory streams.

``await noise_stream_pair()`` gives a client and a server stream that have completed the WhatsApp
Noise handshake, for tests of code that reads and writes a chat stream (with
``trio.testing.check_two_way_stream`` for instance).
"""

from __future__ import annotations

import time

import trio
import trio.testing

from wacrypto.chat.stream import NoiseStream
from wacrypto.chatd.server import ServerKeys
from wacrypto.primitives.keys import KeyPair, PublicKey
from wacrypto.transport.noise_connection import ClientSettings, NoiseConnection, ServerSettings

__all__ = ["noise_stream_pair", "noise_streams_over"]


def noise_streams_over(
    a: trio.abc.Stream, b: trio.abc.Stream, keys: ServerKeys, *, trusted_root: PublicKey | None = None
) -> tuple[NoiseStream, NoiseStream]:
    """A client NoiseStream on ``a`` and a server NoiseStream on ``b`` (handshake not yet run).

    The client trusts ``trusted_root`` (default: ``keys``' own root), so a test can make it trust
    another root and watch the handshake fail closed.
    """
    root = trusted_root if trusted_root is not None else keys.root_public
    client = NoiseStream(a, NoiseConnection(ClientSettings(KeyPair.generate(), root), wall_time=time.time()))
    server = NoiseStream(b, NoiseConnection(ServerSettings(keys.static, keys.chain)))
    return client, server


async def noise_stream_pair(
    keys: ServerKeys | None = None, *, lockstep: bool = False
) -> tuple[NoiseStream, NoiseStream]:
    """A handshaken (client, server) pair over ``memory_stream_pair`` (or ``lockstep_stream_pair``)."""
    if keys is None:
        keys, _, _ = ServerKeys.generate()
    a, b = trio.testing.lockstep_stream_pair() if lockstep else trio.testing.memory_stream_pair()
    client, server = noise_streams_over(a, b, keys)
    async with trio.open_nursery() as n:
        n.start_soon(client.do_handshake)
        n.start_soon(server.do_handshake)
    return client, server
