"""The stripe of a device's chats one worker process serves (scale-out): the value and the hash.

A chat belongs to stripe ``int.from_bytes(SHA-256(chat)[:8], "big") % count`` of ``count``, where
``chat`` is the text of the peer's user JID (``15551234567@s.whatsapp.net``, no device) or of the
group JID. This module is the base of it (no JID parsing, so the store's lease can use it);
:mod:`wacrypto.whatsapp.stripes` has the rules of which stanza goes to which stripe.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import final

from wacrypto.errors import InvalidArgumentError
from wacrypto.limits import MAX_STRIPES

__all__ = ["MAX_STRIPES", "Stripe", "chat_key", "stripe_of"]


def chat_key(chat: object) -> str:
    """The text a chat is striped by: its JID (a ``Jid`` or its text) without a device number."""
    text = str(chat)
    user, at, server = text.partition("@")
    if not at or not user or not server:
        raise InvalidArgumentError("a chat is a user or group JID (user@server)")
    return f"{user.partition(':')[0]}@{server}"


def stripe_of(chat: object, count: int) -> int:
    """The stripe (0..count-1) the chat ``chat`` belongs to."""
    if not isinstance(count, int) or not 1 <= count <= MAX_STRIPES:
        raise InvalidArgumentError(f"a stripe count is 1..{MAX_STRIPES}")
    if count == 1:
        return 0
    digest = hashlib.sha256(chat_key(chat).encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


@final
@dataclass(frozen=True, slots=True)
class Stripe:
    """Stripe ``index`` of ``count``: the share of a device's chats one worker serves."""

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
        """One worker serves every chat (no striping)."""
        return self.count == 1

    @property
    def account_wide(self) -> bool:
        """This worker also does what concerns the whole account (stripe 0)."""
        return self.index == 0

    def owns(self, chat: object) -> bool:
        """The chat (a ``Jid`` or its text) belongs to this stripe."""
        return self.count == 1 or stripe_of(chat, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
