"""Addresses of peer devices."""

from __future__ import annotations

from dataclasses import dataclass, field

from wacrypto.errors import InvalidArgumentError

__all__ = ["Address"]


@dataclass(frozen=True, slots=True, order=True)
class Address:
    """A peer device: account name (e.g. a phone number or JID user) and device id."""

    name: str
    device_id: int = 1
    _hash: int = field(default=0, init=False, repr=False, compare=False)
    _text: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidArgumentError("address name must be a non-empty string")
        if "\x00" in self.name or len(self.name) > 1024:
            raise InvalidArgumentError("address name is too long or contains NUL")
        if not isinstance(self.device_id, int) or not 0 <= self.device_id <= 0xFFFFFFFF:
            raise InvalidArgumentError("device id must be a uint32")
        object.__setattr__(self, "_hash", hash((self.name, self.device_id)))
        object.__setattr__(self, "_text", f"{self.name}.{self.device_id}")

    def __hash__(self) -> int:  # cached: addresses key every store lookup
        return self._hash

    def __str__(self) -> str:  # cached: it names every store row and lock
        return self._text

    @classmethod
    def parse(cls, text: str) -> Address:
        """Parse ``name.device``."""
        name, sep, dev = text.rpartition(".")
        if not sep or not dev.isdigit():
            raise InvalidArgumentError(f"not an address of the form name.device: {text!r}")
        return cls(name, int(dev))
