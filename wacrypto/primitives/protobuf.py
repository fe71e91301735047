"""Parse untrusted protobuf bytes or raise a :class:`~wacrypto.errors.PeerError`: the one helper.

Every layer that reads a protobuf from a peer or from storage goes through :func:`parse_message`,
so a malformed message always ends in the caller's typed error (never a ``DecodeError`` or a
``RuntimeError`` from the protobuf runtime) and the message names what was being parsed.
"""

from __future__ import annotations

from typing import Final, TypeVar

from google.protobuf.message import DecodeError, Message

from wacrypto.errors import InvalidMessageError, PeerError

__all__ = ["DECODE_ERRORS", "parse_message"]

DECODE_ERRORS: Final[tuple[type[Exception], ...]] = (DecodeError, ValueError, RuntimeError, UnicodeDecodeError)
"""What the protobuf runtimes (upb, C++, pure Python) raise for bytes that are not the message."""

M = TypeVar("M", bound=Message)


def parse_message(
    cls: type[M],
    data: bytes,
    what: str,
    *,
    max_len: int | None = None,
    error: type[PeerError] = InvalidMessageError,
) -> M:
    """``cls`` parsed from ``data``; ``error(f"{what}: ...")`` if it is longer than ``max_len`` or malformed."""
    if max_len is not None and len(data) > max_len:
        raise error(f"{what}: longer than {max_len} bytes")
    try:
        return cls.FromString(data)
    except DECODE_ERRORS:
        raise error(f"{what}: malformed protobuf") from None
