"""Trio adapters of the chat transport: :class:`NoiseStream`, :class:`ChatClient` (with its
reconnect supervisor) and the reference server :class:`ChatdServer`."""

from wacrypto.chat.client import ChatClient, ChatClientConfig, open_chat_client, stream_error_to_exception
from wacrypto.chat.events import ClientEvent, ClientState, PortFailed, StateChanged
from wacrypto.chat.server import ChatdServer, ServerKeys, Session, load_trust_file
from wacrypto.chat.stream import NoiseStream
from wacrypto.transport.connection import AckReceived, MessageReceived, PongReceived

__all__ = [
    "AckReceived",
    "ChatClient",
    "ChatClientConfig",
    "ChatdServer",
    "ClientEvent",
    "ClientState",
    "MessageReceived",
    "NoiseStream",
    "PongReceived",
    "PortFailed",
    "ServerKeys",
    "Session",
    "StateChanged",
    "load_trust_file",
    "open_chat_client",
    "stream_error_to_exception",
]
