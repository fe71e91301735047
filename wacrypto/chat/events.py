"""What a :class:`~wacrypto.chat.ChatClient` reports: its state, and events on its event channel."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import final

from wacrypto.errors import TransportError
from wacrypto.transport.chat_connection import AckReceived, MessageReceived, NodeReceived, PongReceived

__all__ = [
    "AckReceived",
    "ClientEvent",
    "ClientState",
    "MessageReceived",
    "NodeReceived",
    "PongReceived",
    "PortFailed",
    "StateChanged",
]


class ClientState(enum.Enum):
    DISCONNECTED = "disconnected"  # not started yet
    CONNECTING = "connecting"  # dialing ports / running the handshake
    CONNECTED = "connected"
    WAITING = "waiting"  # backing off before the next attempt
    CLOSED = "closed"  # terminal: closed by the caller, or a failure that must not be retried


@final
@dataclass(frozen=True, slots=True)
class StateChanged:
    state: ClientState
    port: int | None = None  # CONNECTED: the port in use
    error: TransportError | None = None  # why the previous connection ended / why CLOSED
    delay: float | None = None  # WAITING: seconds until the next attempt
    via_proxy: bool = False


@final
@dataclass(frozen=True, slots=True)
class PortFailed:
    """One port of one connection attempt failed (then the next port is tried)."""

    port: int
    reason: str


ClientEvent = StateChanged | PortFailed | PongReceived | MessageReceived | AckReceived | NodeReceived
