"""The reference chat server (chatd): Noise handshake, certificate chain, keepalive and, in relay
mode, per-recipient mailboxes for :class:`~wacrypto.chat.envelope.Envelope` traffic."""

from wacrypto.chatd.server import ChatdServer, ServerKeys, Session, load_trust_file

__all__ = ["ChatdServer", "ServerKeys", "Session", "load_trust_file"]
