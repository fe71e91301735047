"""Connected sans-I/O chat connections: a client and a server :class:`ChatConnection` to pump bytes between."""

from __future__ import annotations

import time

from wacrypto.chatd.server import ServerKeys
from wacrypto.primitives.keys import KeyPair
from wacrypto.transport.chat_connection import (
    ChatConnection,
    ChatEvent,
    KeepaliveSettings,
    StreamErrorReceived,
)
from wacrypto.transport.noise_connection import (
    NEED_DATA,
    ClientSettings,
    ConnectionClosed,
    NoiseConnection,
    ServerSettings,
)


__all__ = ["chat_pair", "handshake", "pump"]


def chat_pair(
    keys: ServerKeys,
    keepalive: KeepaliveSettings | None = None,
    server_keepalive: KeepaliveSettings | None = None,
    now: float = 0.0,
) -> tuple[ChatConnection, ChatConnection]:
    """A client connection trusting ``keys``' root and a server connection holding ``keys``."""
    c = ChatConnection(
        NoiseConnection(ClientSettings(KeyPair.generate(), keys.root_public), wall_time=time.time()),
        now=now,
        keepalive=keepalive,
        jitter_rng=lambda: 0.5,
    )
    s = ChatConnection(
        NoiseConnection(ServerSettings(keys.static, keys.chain)),
        now=now,
        keepalive=server_keepalive or KeepaliveSettings(interval=0),
        jitter_rng=lambda: 0.5,
    )
    return c, s


def pump(src: ChatConnection, dst: ChatConnection, now: float) -> list[ChatEvent]:
    """Move ``src``'s pending bytes into ``dst``; return the events ``dst`` then yields (up to a terminal one)."""
    data = src.data_to_send()
    if data:
        dst.receive_data(data, now)
    events: list[ChatEvent] = []
    while (ev := dst.next_event()) is not NEED_DATA:
        assert not isinstance(ev, type(NEED_DATA))
        events.append(ev)
        if isinstance(ev, (ConnectionClosed, StreamErrorReceived)):
            break  # terminal: next_event() keeps reporting ConnectionClosed from here on
    return events


def handshake(c: ChatConnection, s: ChatConnection, now: float = 0.0) -> None:
    """Run the Noise handshake between a fresh pair from :func:`chat_pair`."""
    assert pump(c, s, now) == []
    assert len(pump(s, c, now)) == 1
    assert len(pump(c, s, now)) == 1
