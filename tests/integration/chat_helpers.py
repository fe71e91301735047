"""Helpers for loopback integration tests: free ports and a chatd subprocess."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from wacrypto.chat.server import ServerKeys

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A port nobody listens on right now (connecting to it is refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def server_keys() -> ServerKeys:
    keys, _, _ = ServerKeys.generate()
    return keys


def wacrypto_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "wacrypto", *args]


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


class ChatdProcess:
    """``wacrypto chatd run`` in a subprocess (so it can be SIGKILLed and restarted)."""

    def __init__(self, keydir: Path, ports: list[int], *extra: str) -> None:
        self.keydir = keydir
        self.ports = ports
        self.extra = extra
        self.proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 15.0) -> float:
        """Start and wait for its "listening" line; returns the monotonic time it was ready."""
        ports = ",".join(map(str, self.ports))
        self.proc = subprocess.Popen(
            wacrypto_cmd("chatd", "run", "--dir", str(self.keydir), "--host", "127.0.0.1", "--ports", ports, *self.extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(),
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"chatd did not start: {self.proc.stderr.read() if self.proc.stderr else ''}")
        assert json.loads(line)["event"] == "listening" and time.monotonic() < deadline
        return time.monotonic()

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


@pytest.fixture(scope="session")
def keydir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("chatd")
    out = subprocess.run(wacrypto_cmd("chatd", "init", "--dir", str(d)), capture_output=True, text=True, env=cli_env(), timeout=30)
    assert out.returncode == 0, out.stderr
    return d


@pytest.fixture
def chatd_process(keydir: Path) -> Iterator[ChatdProcess]:
    proc = ChatdProcess(keydir, [free_port(), free_port()])
    yield proc
    proc.stop()
