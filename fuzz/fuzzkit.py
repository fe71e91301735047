"""What the harnesses' tooling shares: writing inputs that ``atheris.FuzzedDataProvider`` reads back
as chosen values, checking that a harness reads them so, and loading a harness without atheris'
instrumentation (for the seed-corpus generator and the crash regression tests).

Not a harness itself (``make fuzz`` runs ``fuzz/fuzz_*.py`` only).

atheris' FuzzedDataProvider (3.x) takes ``ConsumeIntInRange`` from the *end* of the input (the
last byte is the most significant, libFuzzer's rule: as many bytes as the range needs, then modulo
``range + 1``), and ``ConsumeBytes``, ``ConsumeBool`` (the low bit of one byte), ``ConsumeInt``
(little-endian, signed) and ``ConsumeUnicodeNoSurrogates`` (one format byte, odd = ASCII) from the
*front*. ``ConsumeBytes(fdp.remaining_bytes())`` takes everything between the two ends, so a value
read after it is the empty one (the range minimum, ``False``, ``b""``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

FUZZ_DIR = Path(__file__).resolve().parent
REPO = FUZZ_DIR.parent

Op = tuple[str, tuple[Any, ...], Any]
"""One provider call: (method name, arguments, the value it must return)."""


class FdpWriter:
    """Builds an input from the values a harness should read, in the order it reads them."""

    def __init__(self) -> None:
        self._front = bytearray()
        self._end = bytearray()  # in consumption order (first byte read = last byte of the input)
        self._rest: bytes | None = None  # what ConsumeBytes(remaining) took
        self.ops: list[Op] = []

    # ------------------------------------------------------------------ the provider's methods
    def int_in_range(self, lo: int, hi: int, value: int) -> int:
        if not lo <= value <= hi:
            raise ValueError(f"{value} not in {lo}..{hi}")
        self.ops.append(("ConsumeIntInRange", (lo, hi), value))
        if self._rest is not None:
            if value != lo:
                raise ValueError("nothing is left to read after the rest of the input was taken")
            return value
        span, n = hi - lo, 0
        while n < 8 and span >> (8 * n):
            n += 1
        self._end += (value - lo).to_bytes(n, "big") if n else b""
        return value

    def boolean(self, value: bool) -> bool:
        self.ops.append(("ConsumeBool", (), value))
        self._front_bytes(b"\x01" if value else b"\x00", empty_ok=not value)
        return value

    def bytes_(self, n: int, value: bytes) -> bytes:
        if len(value) > n:
            raise ValueError("more bytes than asked for")
        if len(value) < n and self._rest is None:
            raise ValueError("a short read happens only at the end of the input")
        self.ops.append(("ConsumeBytes", (n,), value))
        self._front_bytes(value, empty_ok=not value)
        return value

    def ascii(self, count: int, value: str, *, last: bool = False) -> str:
        """``ConsumeUnicodeNoSurrogates(count)`` of a printable ASCII string (the ASCII format byte).

        The provider reads ``count`` characters if it can: a shorter ``value`` only as the ``last``
        front read (the characters end where the integers read from the end begin).
        """
        if len(value) > count or (len(value) < count and not last) or any(not 0x20 <= ord(c) < 0x7F for c in value):
            raise ValueError("count printable ASCII characters (fewer only for the last read)")
        self.ops.append(("ConsumeUnicodeNoSurrogates", (count,), value))
        self._front_bytes(b"\x01" + value.encode(), empty_ok=not value)
        return value

    def rest(self, value: bytes) -> bytes:
        """``ConsumeBytes(fdp.remaining_bytes())``: everything left; later reads get empty values."""
        self.ops.append(("ConsumeBytes", ("remaining",), value))
        self._front += value
        self._rest = value
        return value

    def _front_bytes(self, value: bytes, *, empty_ok: bool) -> None:
        if self._rest is not None:
            if not empty_ok:
                raise ValueError("nothing is left to read after the rest of the input was taken")
            return
        self._front += value

    # ------------------------------------------------------------------ result
    def data(self) -> bytes:
        return bytes(self._front) + bytes(reversed(self._end))


def replay(data: bytes, ops: list[Op]) -> list[Op]:
    """Read ``data`` with atheris' own provider call by call as ``ops`` say; returns what it read."""
    import atheris

    fdp = atheris.FuzzedDataProvider(data)
    got: list[Op] = []
    for name, args, _ in ops:
        real_args = (fdp.remaining_bytes(),) if args == ("remaining",) else args
        got.append((name, args, getattr(fdp, name)(*real_args)))
    return got


class RecordingProvider:
    """atheris' provider with a log of every call (method, arguments, value): to see what a harness read."""

    real: Any = None  # atheris' own class, while recording() has replaced it
    instances: list[RecordingProvider] = []

    def __init__(self, data: bytes) -> None:
        self._fdp = RecordingProvider.real(data)
        self.calls: list[Op] = []
        RecordingProvider.instances.append(self)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._fdp, name)
        if name == "remaining_bytes":
            return method

        def call(*args: Any) -> Any:
            value = method(*args)
            self.calls.append((name, args, value))
            return value

        return call


@contextlib.contextmanager
def recording() -> Iterator[list[RecordingProvider]]:
    """While active, ``atheris.FuzzedDataProvider(data)`` in any harness records its calls."""
    import atheris

    real = atheris.FuzzedDataProvider
    RecordingProvider.real, RecordingProvider.instances = real, []
    atheris.FuzzedDataProvider = RecordingProvider
    try:
        yield RecordingProvider.instances
    finally:
        atheris.FuzzedDataProvider = real
        RecordingProvider.real = None


def normalize(calls: list[Op], ops: list[Op]) -> list[Op]:
    """``calls`` as a harness made them, with ``ConsumeBytes(remaining)`` written as ``ops`` write it."""
    out: list[Op] = []
    for (name, args, value), (_, want_args, _) in zip(calls, ops):
        if want_args == ("remaining",) and name == "ConsumeBytes":
            args = ("remaining",)
        out.append((name, args, value))
    return out


def harness_paths() -> list[Path]:
    return sorted(FUZZ_DIR.glob("fuzz_*.py"))


def load_harness(name: str) -> ModuleType:
    """Import ``fuzz/<name>.py`` as a module, without atheris' coverage instrumentation.

    The harness's module-level set-up runs (keys, sessions, peers it starts lazily); its
    ``atheris.Setup``/``Fuzz`` do not (they sit behind ``__main__``).
    """
    import atheris

    key = f"_fuzz_harness_{name}"
    if key in sys.modules:
        return sys.modules[key]
    path = FUZZ_DIR / f"{name}.py"
    spec = importlib.util.spec_from_file_location(key, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    mod = importlib.util.module_from_spec(spec)
    for p in (str(FUZZ_DIR), str(REPO)):
        if p not in sys.path:
            sys.path.insert(0, p)
    real = atheris.instrument_imports
    atheris.instrument_imports = lambda *a, **k: contextlib.nullcontext()
    try:
        sys.modules[key] = mod
        spec.loader.exec_module(mod)
    except BaseException:
        sys.modules.pop(key, None)
        raise
    finally:
        atheris.instrument_imports = real
    return mod
