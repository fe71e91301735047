"""Drive a peer process speaking the JSON-lines protocol of ``docs/peer-protocol.md``.

Usage::

    with PeerProcess(axolotl_argv()) as alice, PeerProcess(libsignal_argv()) as bob:
        alice.call("new_identity", name="alice")
        bundle = bob.call("bundle")
        alice.call("process_bundle", remote="bob", remote_device=1, bundle=bundle)

Plain synchronous subprocess plus a reader thread per pipe; no event loop needed.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

__all__ = [
    "PeerCallError",
    "PeerProcessError",
    "PeerProcess",
    "INTEROP_DIR",
    "REPO_ROOT",
    "AXOLOTL_VENV",
    "AXOLOTL_PYTHON",
    "NODE_DIR",
    "axolotl_argv",
    "axolotl_env",
    "libsignal_argv",
    "libsignal_node_argv",
    "wacrypto_argv",
]

INTEROP_DIR = Path(__file__).resolve().parent
REPO_ROOT = INTEROP_DIR.parent.parent
AXOLOTL_VENV = REPO_ROOT / ".venv-axolotl"
AXOLOTL_PYTHON = AXOLOTL_VENV / "bin" / "python"
NODE_DIR = INTEROP_DIR / "node"
DRIVERS_DIR = INTEROP_DIR / "drivers"

DEFAULT_TIMEOUT = 30.0


class PeerCallError(Exception):
    """The peer answered ``ok: false``. ``error`` is the full ``"ClassName: message"`` string."""

    def __init__(self, error: str, cmd: str | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.cmd = cmd

    @property
    def name(self) -> str:
        """The error class name (the part before the first colon)."""
        return self.error.split(":", 1)[0].strip()


class PeerProcessError(Exception):
    """The peer process died, timed out or broke the framing."""


def axolotl_argv(venv: str | os.PathLike[str] | None = None) -> list[str]:
    """argv of the python-axolotl peer, run by the interpreter of ``.venv-axolotl`` (or of
    ``venv``, e.g. ``REPO_ROOT / ".venv-axolotl-cpp"`` from ``setup.sh --axolotl-cpp``)."""
    python = AXOLOTL_PYTHON if venv is None else Path(venv) / "bin" / "python"
    return [str(python), str(DRIVERS_DIR / "axolotl_peer.py")]


def axolotl_env() -> dict[str, str]:
    """Extra environment for the axolotl peer: none needed, the driver picks the protobuf runtime
    itself (C++ when protobuf 3.20.x's extension is installed, else pure Python)."""
    return {}


def libsignal_argv() -> list[str]:
    """argv of the official libsignal peer (Node binding in ``tests/interop/node``)."""
    return ["node", str(DRIVERS_DIR / "libsignal_peer.js")]


def libsignal_node_argv() -> list[str]:
    """argv of the libsignal-node peer (npm ``libsignal``, Baileys' pure-JavaScript libsignal, in
    ``tests/interop/libsignal_node``). Not in ``DRIVERS``: its findings differ (see
    ``test_libsignal_node.py``)."""
    return ["node", str(DRIVERS_DIR / "libsignal_node_peer.js")]


def wacrypto_argv(store: str | None = None) -> list[str]:
    """argv of our own ``wacrypto peer``, optionally on a persistent key store URL."""
    argv = [sys.executable, "-m", "wacrypto", "peer"]
    if store is not None:
        argv += ["--store", store]
    return argv


class PeerProcess:
    """One peer subprocess. ``call`` sends a request and returns its ``result`` dict."""

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        cwd: str | os.PathLike[str] | None = None,
        name: str | None = None,
    ) -> None:
        self.argv = list(argv)
        self.timeout = timeout
        self.name = name or Path(self.argv[-1]).name
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        self._proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
            cwd=str(cwd) if cwd is not None else None,
            bufsize=0,
        )
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        self._stderr: list[str] = []
        self._stderr_lock = threading.Lock()
        self._next_id = 0
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._read_stdout, name=f"{self.name}-stdout", daemon=True),
            threading.Thread(target=self._read_stderr, name=f"{self.name}-stderr", daemon=True),
        ]
        for t in self._threads:
            t.start()

    # ------------------------------------------------------------------ readers
    def _read_stdout(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _read_stderr(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            with self._stderr_lock:
                self._stderr.append(line.decode("utf-8", "replace"))
                del self._stderr[:-200]  # keep the tail only

    @property
    def stderr(self) -> str:
        """What the peer wrote to stderr so far (the last 200 lines)."""
        with self._stderr_lock:
            return "".join(self._stderr)

    @property
    def pid(self) -> int:
        return self._proc.pid

    # ------------------------------------------------------------------ calls
    def request(self, req: Mapping[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Send one raw request dict (an ``id`` is added if missing); return the raw response."""
        with self._lock:
            msg = dict(req)
            if "id" not in msg:
                self._next_id += 1
                msg["id"] = self._next_id
            if self._proc.poll() is not None:
                raise PeerProcessError(f"{self.name} exited with {self._proc.returncode}; stderr:\n{self.stderr}")
            try:
                assert self._proc.stdin is not None
                self._proc.stdin.write((json.dumps(msg) + "\n").encode())
                self._proc.stdin.flush()
            except (BrokenPipeError, OSError) as e:
                raise PeerProcessError(f"{self.name}: cannot write request ({e}); stderr:\n{self.stderr}") from e
            try:
                line = self._lines.get(timeout=self.timeout if timeout is None else timeout)
            except queue.Empty:
                raise PeerProcessError(
                    f"{self.name}: no answer to {msg.get('cmd')!r} within "
                    f"{self.timeout if timeout is None else timeout} s; stderr:\n{self.stderr}"
                ) from None
            if line is None:
                self._lines.put(None)
                self._proc.wait(5)
                raise PeerProcessError(
                    f"{self.name} closed stdout (exit {self._proc.returncode}) during {msg.get('cmd')!r}; "
                    f"stderr:\n{self.stderr}"
                )
            try:
                resp = json.loads(line)
            except json.JSONDecodeError as e:
                raise PeerProcessError(f"{self.name}: non-JSON line on stdout: {line!r}") from e
            if not isinstance(resp, dict) or resp.get("id") != msg["id"]:
                raise PeerProcessError(f"{self.name}: response {resp!r} does not match request id {msg['id']!r}")
            return resp

    def raw(self, line: str, timeout: float | None = None) -> dict[str, Any]:
        """Send one raw line (e.g. malformed JSON) and return the parsed response as is."""
        with self._lock:
            assert self._proc.stdin is not None
            try:
                self._proc.stdin.write(line.rstrip("\n").encode() + b"\n")
                self._proc.stdin.flush()
            except (BrokenPipeError, OSError) as e:
                raise PeerProcessError(f"{self.name}: cannot write ({e}); stderr:\n{self.stderr}") from e
            try:
                got = self._lines.get(timeout=self.timeout if timeout is None else timeout)
            except queue.Empty:
                raise PeerProcessError(f"{self.name}: no answer to a raw line; stderr:\n{self.stderr}") from None
            if got is None:
                self._lines.put(None)
                raise PeerProcessError(f"{self.name} closed stdout; stderr:\n{self.stderr}")
            resp = json.loads(got)
            assert isinstance(resp, dict)
            return resp

    def call(self, cmd: str, _timeout: float | None = None, **fields: Any) -> dict[str, Any]:
        """Run ``cmd`` with ``fields``; return ``result`` or raise :class:`PeerCallError`."""
        resp = self.request({"cmd": cmd, **fields}, timeout=_timeout)
        if resp.get("ok") is True:
            result = resp.get("result")
            if not isinstance(result, dict):
                raise PeerProcessError(f"{self.name}: ok response without a result object: {resp!r}")
            return result
        error = resp.get("error")
        raise PeerCallError(str(error), cmd)

    # ------------------------------------------------------------------ lifecycle
    def close(self, timeout: float = 10.0) -> int:
        """Close stdin (the peer exits 0 on EOF), wait, kill if it hangs; return the exit code."""
        if self._proc.poll() is None:
            try:
                assert self._proc.stdin is not None
                self._proc.stdin.close()
            except OSError:
                pass
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        for t in self._threads:
            t.join(5)
        for f in (self._proc.stdout, self._proc.stderr, self._proc.stdin):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass
        return self._proc.returncode

    def kill(self) -> None:
        """Kill -9 the peer (crash simulation)."""
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(5)

    def __enter__(self) -> "PeerProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # best effort: never leave orphans behind
        try:
            if self._proc.poll() is None:
                self._proc.kill()
        except Exception:  # noqa: BLE001
            pass


# The peers the driver tests run against, and the type of the ``spawn`` fixture (tests import these
# from here, not from conftest: several test directories have a conftest module).
DRIVERS: dict[str, Callable[[], list[str]]] = {"axolotl": axolotl_argv, "libsignal": libsignal_argv}
PeerFactory = Callable[..., PeerProcess]
