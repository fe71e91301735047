"""WhatsApp addresses (JIDs) and the Signal addresses their devices map to.

A JID is ``user[:device]@server``: ``123456789@s.whatsapp.net`` (a phone number, "PN"), the same
account's ``98765@lid`` (its LID, a number that hides the phone number), ``12345-67890@g.us`` (a
group), ``status@broadcast``. A device of a user is ``user:device@server`` (device 0 is the primary
and is written without ``:0``).

Signal sessions are kept per device under ``user[_domain].device``: no suffix for a phone number,
``_1`` for a LID, ``_128`` for a hosted account and ``_129`` for a hosted LID; see
:meth:`Jid.signal_address`. The same account reached by PN and by LID has two addresses; callers
migrate PN state to the LID once they learn the mapping (one lock per canonical address).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, final

from wacrypto.address import Address
from wacrypto.errors import InvalidMessageError

__all__ = ["GROUP_SERVER", "LID_SERVER", "USER_SERVER", "Jid"]

USER_SERVER: Final = "s.whatsapp.net"
LID_SERVER: Final = "lid"
HOSTED_SERVER: Final = "hosted"
HOSTED_LID_SERVER: Final = "hosted.lid"
GROUP_SERVER: Final = "g.us"
BROADCAST_SERVER: Final = "broadcast"
# servers whose users have devices, and the Signal address suffix of each
_DOMAINS: Final = {USER_SERVER: "", LID_SERVER: "_1", HOSTED_SERVER: "_128", HOSTED_LID_SERVER: "_129"}
_SUFFIX_SERVER: Final = {v: k for k, v in _DOMAINS.items() if v}
_USER_RE: Final = re.compile(r"[0-9]{0,32}")  # empty: the server itself (``@s.whatsapp.net``)
_SERVER_RE: Final = re.compile(r"[a-z0-9.\-]{1,64}")
_GENERIC_USER_RE: Final = re.compile(r"[A-Za-z0-9.\-]{0,64}")


@final
@dataclass(frozen=True, slots=True, order=True)
class Jid:
    """A parsed JID. Construct with :meth:`parse` (untrusted text) or directly (our own values)."""

    user: str
    server: str
    device: int = 0

    def __post_init__(self) -> None:
        if not _SERVER_RE.fullmatch(self.server):
            raise InvalidMessageError("JID: invalid server")
        if self.server in _DOMAINS:
            if not _USER_RE.fullmatch(self.user):
                raise InvalidMessageError("JID: a user of a phone-number or LID server is up to 32 digits")
        elif not _GENERIC_USER_RE.fullmatch(self.user):
            raise InvalidMessageError("JID: invalid user")
        if not 0 <= self.device <= 255 or (self.device and (self.server not in _DOMAINS or not self.user)):
            raise InvalidMessageError("JID: a device number is 0-255, on a user server only")

    @classmethod
    def parse(cls, text: str) -> Jid:
        """Parse ``user[:device]@server``; :class:`InvalidMessageError` if it is not one."""
        user_part, at, server = text.partition("@")
        if not at:
            raise InvalidMessageError("JID: no @")
        user, colon, dev = user_part.partition(":")
        device = 0
        if colon:
            if not dev.isdigit() or (len(dev) > 1 and dev[0] == "0") or len(dev) > 3:
                raise InvalidMessageError("JID: invalid device number")
            device = int(dev)
        return cls(user, server, device)

    def __str__(self) -> str:
        return f"{self.user}:{self.device}@{self.server}" if self.device else f"{self.user}@{self.server}"

    @property
    def is_lid(self) -> bool:
        return self.server in (LID_SERVER, HOSTED_LID_SERVER)

    @property
    def is_phone_number(self) -> bool:
        return self.server in (USER_SERVER, HOSTED_SERVER)

    @property
    def is_group(self) -> bool:
        return self.server == GROUP_SERVER

    @property
    def has_devices(self) -> bool:
        return self.server in _DOMAINS

    def user_jid(self) -> Jid:
        """The account (device 0 form): ``123:4@s.whatsapp.net`` -> ``123@s.whatsapp.net``."""
        return Jid(self.user, self.server)

    def with_device(self, device: int) -> Jid:
        return Jid(self.user, self.server, device)

    def signal_address(self) -> Address:
        """The Signal address of this device: ``user[_domain].device``."""
        if self.server not in _DOMAINS or not self.user:
            raise InvalidMessageError(f"JID: {self} has no Signal sessions")
        return Address(self.user + _DOMAINS[self.server], self.device)

    @classmethod
    def from_signal_address(cls, address: Address) -> Jid:
        user, sep, suffix = address.name.partition("_")
        server = _SUFFIX_SERVER.get("_" + suffix) if sep else USER_SERVER
        if server is None:
            raise InvalidMessageError(f"not a WhatsApp Signal address: {address}")
        return cls(user, server, address.device_id)
