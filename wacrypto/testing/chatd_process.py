"""The reference chatd in a subprocess (to SIGKILL and restart it), and free loopback ports."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["ChatdProcess", "cli_env", "free_port", "interruptible", "wacrypto_cmd"]

# the folder that holds the wacrypto package, put on the child's PYTHONPATH
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A port nobody listens on right now (connecting to it is refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wacrypto_cmd(*args: str) -> list[str]:
    """The ``wacrypto`` CLI of this interpreter, as an argv list."""
    return [sys.executable, "-m", "wacrypto", *args]


def cli_env() -> dict[str, str]:
    """This environment, with the wacrypto package importable by a child process."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PACKAGE_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def interruptible() -> None:
    """``preexec_fn`` for a child that must see Ctrl-C (SIGINT): a child started from a shell job
    that ignores SIGINT would inherit that, and Python would then never raise KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class ChatdProcess:
    """``wacrypto chatd run`` in a subprocess (so it can be SIGKILLed and restarted)."""

    def __init__(self, keydir: Path, ports: list[int], *extra: str) -> None:
        self.keydir = keydir
        self.ports = ports
        self.extra = extra
        self.proc: subprocess.Popen[str] | None = None
        self.listening: dict[str, object] = {}  # the "listening" line it printed

    def start(self, timeout: float = 15.0) -> float:
        """Start and wait for its "listening" line; returns the monotonic time it was ready."""
        ports = ",".join(map(str, self.ports))
        self.proc = subprocess.Popen(
            wacrypto_cmd("chatd", "run", "--dir", str(self.keydir), "--host", "127.0.0.1", "--ports", ports, *self.extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(),
            preexec_fn=interruptible,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"chatd did not start: {self.proc.stderr.read() if self.proc.stderr else ''}")
        self.listening = json.loads(line)
        assert self.listening["event"] == "listening" and time.monotonic() < deadline
        return time.monotonic()

    def interrupt(self, timeout: float = 15.0) -> tuple[int, str]:
        """Ctrl-C (SIGINT); returns its exit code and what it wrote on stderr."""
        assert self.proc is not None and self.proc.stderr is not None
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout)
        return code, self.proc.stderr.read()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def stop(self) -> None:
        if self.proc is not None:
            self.kill()
            for f in (self.proc.stdout, self.proc.stderr):
                if f is not None:
                    f.close()
