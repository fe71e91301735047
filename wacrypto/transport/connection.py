"""Both connection state machines of the chat transport, under one name.

The code lives in :mod:`wacrypto.transport.noise_connection` (framing + Noise handshake +
transport ciphers) and :mod:`wacrypto.transport.chat_connection` (typed stanzas + keepalive);
this module re-exports their public names for the many callers that import them from here.
New code can import from :mod:`wacrypto.transport` itself.
"""

from __future__ import annotations

from wacrypto.transport.chat_connection import (
    AckReceived,
    ChatConnection,
    ChatEvent,
    Connected,
    KeepaliveSettings,
    MessageReceived,
    PingReceived,
    PongReceived,
    StreamErrorReceived,
)
from wacrypto.transport.noise_connection import (
    NEED_DATA,
    ClientSettings,
    ConnectionClosed,
    ConnectionState,
    FrameReceived,
    HandshakeComplete,
    NeedData,
    NoiseConnection,
    NoiseEvent,
    ServerSettings,
)

__all__ = [
    "NEED_DATA",
    "AckReceived",
    "ChatConnection",
    "ChatEvent",
    "ClientSettings",
    "ConnectionClosed",
    "ConnectionState",
    "Connected",
    "FrameReceived",
    "HandshakeComplete",
    "KeepaliveSettings",
    "MessageReceived",
    "NeedData",
    "NoiseConnection",
    "NoiseEvent",
    "PingReceived",
    "PongReceived",
    "ServerSettings",
    "StreamErrorReceived",
]
