"""Private: the transport's protobuf decode errors are the package's one list (``primitives.protobuf``)."""

from __future__ import annotations

from wacrypto.primitives.protobuf import DECODE_ERRORS, parse_message

__all__ = ["DECODE_ERRORS", "parse_message"]
