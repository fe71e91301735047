"""The chat layer on trio: :class:`NoiseStream`, :class:`ChatClient` (with its reconnect supervisor),
the relay :class:`~wacrypto.chat.envelope.Envelope` and the durable :class:`~wacrypto.chat.messenger.Messenger`.
The reference server lives in :mod:`wacrypto.chatd`."""

from wacrypto.chat.client import ChatClient, ChatClientConfig, open_chat_client, stream_error_to_exception
from wacrypto.chat.events import ClientEvent, ClientState, PortFailed, StateChanged
from wacrypto.chat.stream import NoiseStream
from wacrypto.transport.chat_connection import AckReceived, MessageReceived, PongReceived

__all__ = [
    "AckReceived",
    "ChatClient",
    "ChatClientConfig",
    "ClientEvent",
    "ClientState",
    "MessageReceived",
    "NoiseStream",
    "PongReceived",
    "PortFailed",
    "StateChanged",
    "open_chat_client",
    "stream_error_to_exception",
]
