"""Conversations striped over the worker processes of one device (scale-out).

One device (one identity, one store) can be served by ``count`` worker processes at once, each
logged in with its own connection that names its stripe (``index`` of ``count``). Every
conversation belongs to exactly one stripe, by a hash of its chat: the peer's user JID for a
one-to-one chat (``15551234567@s.whatsapp.net``, no device), the group JID for a group. The worker of
that stripe is the only one that sends in the conversation, and chatd delivers what comes in for it
(messages, receipts, retry receipts, that peer's device and identity notifications) to that worker's
connection only. What concerns the whole account (prekey counts and uploads, the key digest, the
signed prekey rotation, server notifications) belongs to stripe 0.

The function is part of the protocol between chatd, the workers and the application that routes
its sends to them: :func:`stripe_of` is SHA-256 of the chat as text, first 8 bytes big-endian,
modulo ``count``. A chat must be written the same way by everyone (a phone-number account and its
LID are two different keys).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import final

from wacrypto.errors import InvalidArgumentError, InvalidMessageError
from wacrypto.limits import MAX_STRIPES
from wacrypto.whatsapp.jid import Jid
from wacrypto.wire.binary import Node

__all__ = ["MAX_STRIPES", "Stripe", "chat_key", "stanza_chat", "stripe_of"]


def chat_key(chat: Jid | str) -> str:
    """The text a conversation is striped by: the user JID (no device) of a peer, or the group JID."""
    jid = Jid.parse(chat) if isinstance(chat, str) else chat
    return str(jid if jid.is_group else jid.user_jid())


def stripe_of(chat: Jid | str, count: int) -> int:
    """The stripe (0..count-1) the conversation ``chat`` belongs to."""
    if not isinstance(count, int) or not 1 <= count <= MAX_STRIPES:
        raise InvalidArgumentError(f"a stripe count is 1..{MAX_STRIPES}")
    if count == 1:
        return 0
    digest = hashlib.sha256(chat_key(chat).encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


def stanza_chat(node: Node) -> str | None:
    """The conversation a stanza delivered to a device belongs to, or None when it concerns the
    whole account (it goes to stripe 0). Messages and receipts: their ``from`` (a group's JID, or the
    peer's user JID); devices and identity notifications: the account they are about; anything the
    server itself sends (``from`` the server, or no ``from``): None."""
    sender = node.attrs.get("from")
    if not sender or node.tag not in ("message", "receipt", "notification"):
        return None
    try:
        jid = Jid.parse(sender)
    except InvalidMessageError:
        return None
    if not jid.user:
        return None  # the server
    return chat_key(jid)


@final
@dataclass(frozen=True, slots=True)
class Stripe:
    """Stripe ``index`` of ``count``: the share of a device's conversations one worker serves."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not (isinstance(self.count, int) and isinstance(self.index, int)
                and 1 <= self.count <= MAX_STRIPES and 0 <= self.index < self.count):
            raise InvalidArgumentError(f"a stripe is index 0..count-1 of a count 1..{MAX_STRIPES}")

    @classmethod
    def parse(cls, text: str) -> Stripe:
        """``"i/n"`` (e.g. ``"0/4"``)."""
        head, sep, tail = text.partition("/")
        if not sep or not head.strip().isdigit() or not tail.strip().isdigit():
            raise InvalidArgumentError(f"a stripe is written index/count, e.g. 0/4 (not {text[:20]!r})")
        return cls(int(head), int(tail))

    @property
    def whole(self) -> bool:
        """One worker serves every conversation (no striping)."""
        return self.count == 1

    @property
    def account_wide(self) -> bool:
        """This worker also does what concerns the whole account (stripe 0)."""
        return self.index == 0

    def owns(self, chat: Jid | str) -> bool:
        return self.count == 1 or stripe_of(chat, self.count) == self.index

    def owns_stanza(self, node: Node) -> bool:
        chat = stanza_chat(node)
        return self.index == 0 if chat is None else self.owns(chat)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
