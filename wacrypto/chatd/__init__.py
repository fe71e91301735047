"""The reference chat server (chatd): Noise handshake, certificate chain, keepalive and, in relay
mode, per-recipient mailboxes for :class:`~wacrypto.chat.envelope.Envelope` traffic, shared out by
sender, strangers and age (see :mod:`wacrypto.chatd.server`)."""

from wacrypto.chatd.server import ChatdServer, Mailbox, ServerKeys, Session, load_trust_file

__all__ = ["ChatdServer", "Mailbox", "ServerKeys", "Session", "load_trust_file"]
