"""Private protobuf helpers (the generated modules are untyped; keep that contained here)."""

from __future__ import annotations

import importlib
from typing import Final

# google.protobuf ships no type stubs in this environment; fetch the class without importing it
# statically so mypy --strict stays clean with or without types-protobuf installed.
DecodeError: Final[type[Exception]] = importlib.import_module("google.protobuf.message").DecodeError

DECODE_ERRORS: Final[tuple[type[Exception], ...]] = (DecodeError, ValueError, RuntimeError, UnicodeDecodeError)
