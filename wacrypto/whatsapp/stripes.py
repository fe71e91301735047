"""Conversations striped over the worker processes of one device (scale-out).

One device (one identity, one store) can be served by ``count`` worker processes at once, each
logged in with its own connection that names its stripe (``index`` of ``count``). Every
conversation belongs to exactly one stripe, by a hash of its chat: the peer's user JID for a
one-to-one chat (``15551234567@s.whatsapp.net``, no device), the group JID for a group. The worker of
that stripe is the only one that sends in the conversation, and chatd delivers what comes in for it
(messages, receipts, retry receipts, that peer's identity notifications, the copies of what our own
other devices sent in it) to that worker's connection only. ``devices`` notifications go to every
stripe (each keeps device lists in memory). What concerns the whole account (prekey counts and
uploads, the key digest, the signed prekey rotation, server notifications) belongs to stripe 0.

The function is part of the protocol between chatd, the workers and the application that routes
its sends to them: :func:`stripe_of` (:mod:`wacrypto.stripe`, re-exported here with
:class:`Stripe`) is SHA-256 of the chat as text, first 8 bytes big-endian, modulo ``count``. A chat
must be written the same way by everyone (a phone-number account and its LID are two different keys).
"""

from __future__ import annotations

from wacrypto.errors import InvalidMessageError
from wacrypto.stripe import MAX_STRIPES, Stripe, chat_key, stripe_of
from wacrypto.whatsapp.jid import Jid
from wacrypto.wire.binary import Node

__all__ = ["MAX_STRIPES", "Stripe", "chat_key", "owns_stanza", "stanza_chat", "stanza_stripe", "stripe_of"]


def stanza_chat(node: Node, own: Jid | None = None) -> str | None:
    """The conversation a stanza delivered to a device of the account ``own`` belongs to, or None
    when it concerns the whole account (it goes to stripe 0). Messages and receipts: their ``from``
    (a group's JID, or the peer's user JID), and for what our own other device sent (``from`` our own
    account) its ``recipient`` when it names one; identity notifications: the account they are
    about; anything the server itself sends (``from`` the server, or no ``from``): None."""
    sender = node.attrs.get("from")
    if not sender or node.tag not in ("message", "receipt", "notification"):
        return None
    try:
        jid = Jid.parse(sender)
        recipient = node.attrs.get("recipient")
        if own is not None and recipient and jid.user_jid() == own.user_jid():
            jid = Jid.parse(recipient)
    except InvalidMessageError:
        return None
    if not jid.user:
        return None  # the server
    return chat_key(jid)


def _for_every_stripe(node: Node) -> bool:
    return node.tag == "notification" and node.attrs.get("type") == "devices"


def stanza_stripe(node: Node, count: int, own: Jid | None = None) -> int | None:
    """The stripe of ``count`` a stanza for a device of ``own`` goes to; None: to every stripe."""
    if count > 1 and _for_every_stripe(node):
        return None
    chat = stanza_chat(node, own) if count > 1 else None
    return 0 if chat is None else stripe_of(chat, count)


def owns_stanza(stripe: Stripe, node: Node, own: Jid | None = None) -> bool:
    """A stanza for a device of ``own`` goes (also) to ``stripe``."""
    i = stanza_stripe(node, stripe.count, own)
    return i is None or i == stripe.index
