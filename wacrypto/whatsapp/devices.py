"""Device lists: which devices of a user a message must be encrypted to, and the list hash.

A sender encrypts a message once per device of the recipient and of its own account (its other
devices get it wrapped as a DeviceSentMessage). The server checks the sender's view with the
participant hash: :func:`participant_hash` over every device the message went to; when the server's
ack carries another hash, the sender's cached lists are stale and must be fetched again.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import final

from wacrypto.errors import InvalidMessageError
from wacrypto.whatsapp.jid import Jid
from wacrypto.whatsapp.stanzas import DevicesNotification

__all__ = ["DeviceList", "participant_hash"]


def participant_hash(devices: Iterable[Jid]) -> str:
    """``"2:" + base64`` (no padding) of the first 6 bytes of SHA-256 over the sorted device JIDs,
    concatenated (the "v2" hash WhatsApp clients send as ``phash``)."""
    text = "".join(sorted(str(d) for d in devices))
    return "2:" + base64.b64encode(hashlib.sha256(text.encode()).digest()[:6]).decode().rstrip("=")


@final
@dataclass(frozen=True, slots=True)
class DeviceList:
    """The devices of one account as we last learned them (device 0 is the primary)."""

    user: Jid
    devices: frozenset[int] = field(default_factory=lambda: frozenset({0}))

    def __post_init__(self) -> None:
        if self.user.device != 0 or not self.user.has_devices:
            raise InvalidMessageError("a device list belongs to a user JID (device 0)")

    def jids(self) -> list[Jid]:
        return [self.user.with_device(d) for d in sorted(self.devices)]

    def apply(self, note: DevicesNotification) -> DeviceList:
        """The list after a ``devices`` notification for this user (others' devices are ignored)."""
        if note.jid.user_jid() != self.user:
            raise InvalidMessageError("devices notification for another user")
        added = {d.device for d in note.added if d.user_jid() == self.user}
        removed = {d.device for d in note.removed if d.user_jid() == self.user}
        return DeviceList(self.user, frozenset((self.devices | added) - removed) | {0})
