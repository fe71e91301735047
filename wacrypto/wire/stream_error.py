"""``<stream:error>``: the server's last stanza on a stream, and the one table of its codes.

``<stream:error code=N [text=...]>[<conflict type=.../>]</stream:error>`` (docs/chat-protocol.md).
The code tells the client what to do next; the transport (:mod:`wacrypto.transport.messages`) and
the WhatsApp stanzas (:mod:`wacrypto.whatsapp.stanzas`) both read and write it through this module.

WhatsApp's server also ends a stream with a ``<conflict>`` and no code at all; :func:`parse_stream_error`
understands that (``replaced``: 440, ``device_removed``: 401) and reads an unknown code as
:attr:`StreamCode.UNKNOWN`. With ``strict=True`` (the typed stanza parsers) the code must be there,
a number up to 999, and a ``<conflict>`` must name its type. Either way it raises only
:class:`~wacrypto.errors.InvalidMessageError`. Pure: no I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, final

from wacrypto.errors import InvalidArgumentError, InvalidMessageError
from wacrypto.limits import MAX_ERROR_TEXT_LEN
from wacrypto.wire.binary import Node

__all__ = ["StreamCode", "StreamErrorNode", "conflict_type", "parse_stream_error", "stream_error_node"]

TAG: Final = "stream:error"
_MAX_CODE: Final = 999


class StreamCode(enum.IntEnum):
    """The ``code`` of a ``<stream:error>``, WhatsApp's numbers; what the client does next."""

    UNKNOWN = 500  # any other code: reconnect
    CONFLICT = 440  # another connection of this device took over: never reconnect
    LOGGED_OUT = 401  # logged out / device removed: never reconnect
    CLIENT_OUTDATED = 405  # never reconnect
    RESTART_REQUIRED = 515  # reconnect now
    RATE_LIMITED = 429  # reconnect with a penalty
    # the same codes under the names the WhatsApp stanza layer uses
    REPLACED = 440
    INTERNAL = 500


# the <conflict type> that goes with a code, and the code a bare <conflict> stands for
_CONFLICT_TYPES: Final = {StreamCode.CONFLICT: "replaced", StreamCode.LOGGED_OUT: "device_removed"}
_CONFLICT_CODES: Final = {v: k for k, v in _CONFLICT_TYPES.items()}


def conflict_type(code: StreamCode) -> str | None:
    """The ``<conflict type>`` WhatsApp sends with ``code`` (``replaced``, ``device_removed``), or None."""
    return _CONFLICT_TYPES.get(code)


@final
@dataclass(frozen=True, slots=True)
class StreamErrorNode:
    """What a ``<stream:error>`` says: its code, its ``<conflict type>`` if any and its ``text``."""

    code: StreamCode
    conflict: str | None = None
    text: str = ""

    def __post_init__(self) -> None:
        if len(self.text) > MAX_ERROR_TEXT_LEN:
            raise InvalidArgumentError("stream error text too long")
        if self.conflict == "":
            raise InvalidArgumentError("a conflict names its type")


def stream_error_node(code: StreamCode, *, conflict: str | None = None, text: str = "") -> Node:
    """The ``<stream:error>`` node; ``text`` goes out only when there is some."""
    value = StreamErrorNode(code, conflict, text)  # the checks
    attrs = {"code": str(int(value.code))}
    if value.text:
        attrs["text"] = value.text
    kids = None if value.conflict is None else (Node("conflict", {"type": value.conflict}),)
    return Node(TAG, attrs, kids)


def _code(text: str | None) -> int | None:
    if text is None or not text.isascii() or not text.isdigit() or len(text) > 4:
        return None
    n = int(text)
    return n if n <= _MAX_CODE else None


def parse_stream_error(node: Node, *, strict: bool = False) -> StreamErrorNode:
    """Read a ``<stream:error>`` (see the module's notes for what ``strict`` refuses)."""
    if node.tag != TAG:
        raise InvalidMessageError("not a stream error")
    code_text = node.attrs.get("code")
    raw = _code(code_text)
    if strict and raw is None:
        raise InvalidMessageError(f"<{TAG}> code is not a number up to {_MAX_CODE}")
    conflict_node = node.child("conflict")
    conflict = None if conflict_node is None else conflict_node.attrs.get("type") or None
    if strict and conflict_node is not None and conflict is None:
        raise InvalidMessageError("<conflict> has no type")
    code = StreamCode.UNKNOWN
    if raw is not None:
        try:
            code = StreamCode(raw)
        except ValueError:
            pass  # a code we do not know: "other"
    elif code_text is None and conflict is not None:  # WhatsApp's bare conflict
        code = _CONFLICT_CODES.get(conflict, StreamCode.UNKNOWN)
    return StreamErrorNode(code, conflict, node.attrs.get("text", "")[:MAX_ERROR_TEXT_LEN])
