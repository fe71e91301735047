"""A small client for the JSON-lines peer protocol (``docs/peer-protocol.md``): one subprocess,
requests answered strictly in order, each with a time limit."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from collections.abc import Sequence
from typing import Any, Final

from wacrypto.errors import WacryptoError

__all__ = ["PeerClient", "PeerFailure", "PeerBroken"]

DEFAULT_TIMEOUT: Final = 60.0


class PeerFailure(WacryptoError):
    """The peer answered ``ok: false``; ``name`` is the error class it named."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error

    @property
    def name(self) -> str:
        return self.error.split(":", 1)[0].strip()

    @property
    def unsupported(self) -> bool:
        """The peer does not implement the command (drivers: UnsupportedError; wacrypto: unknown command)."""
        return self.name == "UnsupportedError" or (self.name == "InvalidArgumentError" and "unknown command" in self.error)


class PeerBroken(WacryptoError):
    """The peer process died, hung or broke the framing."""


class PeerClient:
    """``PeerClient(argv)``: start the peer; :meth:`call` sends one command and returns its result."""

    def __init__(self, argv: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.argv = list(argv)
        self.timeout = timeout
        try:
            self._proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, bufsize=0)
        except OSError as exc:
            raise PeerBroken(f"cannot start peer {self.argv[0]!r}: {exc.strerror or exc}") from None
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        self._stderr: list[bytes] = []
        self._next = 0
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=self._pump_err, daemon=True).start()

    def _pump(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _pump_err(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr.append(line)
            del self._stderr[:-50]

    @property
    def stderr_tail(self) -> str:
        return b"".join(self._stderr[-5:]).decode("utf-8", "replace").strip()

    def call(self, cmd: str, **fields: Any) -> dict[str, Any]:
        self._next += 1
        req = {"cmd": cmd, "id": self._next, **fields}
        try:
            assert self._proc.stdin is not None
            self._proc.stdin.write((json.dumps(req) + "\n").encode())
            self._proc.stdin.flush()
        except OSError:
            raise PeerBroken(f"peer exited (code {self._proc.poll()}): {self.stderr_tail}") from None
        try:
            line = self._lines.get(timeout=self.timeout)
        except queue.Empty:
            raise PeerBroken(f"no answer to {cmd!r} within {self.timeout:g} s") from None
        if line is None:
            self._lines.put(None)
            raise PeerBroken(f"peer closed its output during {cmd!r}: {self.stderr_tail}")
        try:
            resp = json.loads(line)
        except json.JSONDecodeError:
            raise PeerBroken(f"peer wrote a line that is not JSON during {cmd!r}") from None
        if not isinstance(resp, dict) or resp.get("id") != self._next:
            raise PeerBroken(f"peer answered {cmd!r} out of order")
        if resp.get("ok") is True and isinstance(resp.get("result"), dict):
            result: dict[str, Any] = resp["result"]
            return result
        raise PeerFailure(str(resp.get("error")))

    def close(self) -> int:
        if self._proc.poll() is None:
            try:
                assert self._proc.stdin is not None
                self._proc.stdin.close()
            except OSError:
                pass
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        return self._proc.returncode

    def __enter__(self) -> PeerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
