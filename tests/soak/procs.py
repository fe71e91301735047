"""The OS processes of the soak and the end-to-end bench, driven from trio: a JSON-lines child
(``wacrypto wa-client``, ``wacrypto chatd run``, or any script speaking one JSON object per line), a
loopback TCP proxy we can cut and stall, and throwaway PostgreSQL databases.

Nothing here knows the message ledger: see ``soak_harness.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import trio

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "store"))  # store_dbs: the PostgreSQL helpers of the store tests

from wacrypto.testing.chatd_process import cli_env, wacrypto_cmd  # noqa: E402
from wacrypto.tools.cli.wa_client import json_lines  # noqa: E402

__all__ = ["Child", "Proxy", "chatd_argv", "env_float", "env_int", "init_chatd_keys", "pg_databases", "wa_client_argv"]

Line = dict[str, Any]


class Child:
    """One child process at a time under ``name``, restartable; every stdout line goes to
    ``on_line(child, lifetime, obj)`` (``lifetime`` counts the starts, from 1); stderr is appended
    to ``log``. The reader of a lifetime reads to the end of its output, also after a SIGKILL."""

    def __init__(self, name: str, argv: list[str], log: Path, on_line: Callable[[Child, int, Line], None],
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.log = log
        self.on_line = on_line
        self.env = env or cli_env()
        self.lifetime = 0
        self.kills = 0
        self.crashes: list[int] = []  # exit codes of lifetimes that ended without kill() or a wait() for them
        self._expected_end = False
        self.proc: trio.Process | None = None
        self._lock = trio.Lock()
        self._read_done = trio.Event()
        self._read_done.set()
        self._log_file: TextIO | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self, nursery: trio.Nursery) -> None:
        """Start a new lifetime (after the previous one's output has all been read)."""
        await self._read_done.wait()
        self.lifetime += 1
        if self._log_file is not None:
            self._log_file.close()
        self._log_file = self.log.open("a")
        self._log_file.write(f"==== {self.name} lifetime {self.lifetime}\n")
        self._log_file.flush()
        self.proc = await trio.lowlevel.open_process(
            self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log_file, env=self.env,
            start_new_session=True,  # the harness's Ctrl-C is the harness's; it kills its children itself
        )
        self._read_done = trio.Event()
        self._expected_end = False
        nursery.start_soon(self._read, self.proc, self.lifetime, self._read_done)

    async def _read(self, proc: trio.Process, lifetime: int, done: trio.Event) -> None:
        assert proc.stdout is not None
        try:
            async for obj in json_lines(proc.stdout):
                self.on_line(self, lifetime, obj if isinstance(obj, dict) else {"unparsed": obj})
            code = await proc.wait()
            if not self._expected_end and lifetime == self.lifetime:
                self.crashes.append(code)
        finally:
            done.set()

    async def send(self, obj: Line) -> bool:
        """Write one command line; False if the process is gone (its stdin closed)."""
        proc = self.proc
        if proc is None or proc.stdin is None or proc.returncode is not None:
            return False
        data = (json.dumps(obj, separators=(",", ":")) + "\n").encode()
        async with self._lock:
            try:
                await proc.stdin.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return False
        return True

    async def quit(self) -> bool:
        """Ask it to exit (``{"cmd": "quit"}``): its end is expected from now on, not a crash."""
        self._expected_end = True
        return await self.send({"cmd": "quit"})

    async def kill(self) -> None:
        """SIGKILL, then wait until it is gone and its output read."""
        proc = self.proc
        self._expected_end = True
        if proc is not None and proc.returncode is None:
            self.kills += 1
            proc.send_signal(signal.SIGKILL)
        await self.wait()

    async def wait(self) -> int | None:
        """Wait for the end of this lifetime (expected: not counted as a crash)."""
        proc = self.proc
        if proc is None:
            return None
        self._expected_end = True
        code = await proc.wait()
        if proc.stdin is not None:
            await proc.stdin.aclose()
        await self._read_done.wait()
        return code

    def kill_now(self) -> None:
        """SIGKILL without waiting (clean-up paths)."""
        self._expected_end = True
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text().splitlines()[-lines:])
        except OSError:
            return ""


class Proxy:
    """A loopback TCP proxy in front of ``target_port``: :meth:`drop` cuts every connection (or
    ``n`` random ones), :meth:`stall` stops forwarding in both directions for a while (reads stop,
    TCP backpressure does the rest)."""

    def __init__(self, target_port: int, rng: Callable[[int], int] | None = None) -> None:
        self.target_port = target_port
        self.port = 0
        self.connections: list[trio.CancelScope] = []
        self.accepted = 0
        self.drops = 0
        self.stalls = 0
        self._flowing = trio.Event()
        self._flowing.set()
        self._stall_depth = 0
        self._rng = rng

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = int(listeners[0].socket.getsockname()[1])
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._handle, listeners)
            task_status.started(self.port)

    async def _handle(self, down: trio.SocketStream) -> None:
        self.accepted += 1
        try:
            up = await trio.open_tcp_stream("127.0.0.1", self.target_port)
        except OSError:
            await down.aclose()
            return
        scope = trio.CancelScope()
        self.connections.append(scope)
        try:
            with scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, down, up, nursery.cancel_scope)
                    nursery.start_soon(self._pump, up, down, nursery.cancel_scope)
        finally:
            self.connections.remove(scope)
            for s in (down, up):
                await trio.aclose_forcefully(s)

    async def _pump(self, src: trio.SocketStream, dst: trio.SocketStream, scope: trio.CancelScope) -> None:
        try:
            while True:
                await self._flowing.wait()
                data = await src.receive_some(65536)
                if not data:
                    break
                await self._flowing.wait()
                await dst.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        scope.cancel()

    def drop(self, n: int | None = None) -> int:
        """Cut ``n`` connections (None: all of them) now; returns how many."""
        live = list(self.connections)
        if n is not None and self._rng is not None:
            live = [live[self._rng(len(live))] for _ in range(min(n, len(live)))] if live else []
        for scope in live:
            scope.cancel()
        self.drops += 1
        return len(live)

    async def stall(self, seconds: float) -> None:
        """Forward nothing for ``seconds`` (stalls may overlap: flowing again after the last)."""
        self.stalls += 1
        self._stall_depth += 1
        if self._flowing.is_set():
            self._flowing = trio.Event()
        try:
            await trio.sleep(seconds)
        finally:
            self._stall_depth -= 1
            if not self._stall_depth:
                self._flowing.set()


# --------------------------------------------------------------------------- argv builders
def init_chatd_keys(directory: Path) -> Path:
    """``wacrypto chatd init --dir directory``; returns the trust file (root.pub)."""
    out = subprocess.run(wacrypto_cmd("chatd", "init", "--dir", str(directory)), capture_output=True, text=True,
                         env=cli_env(), timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"chatd init failed: {out.stderr}")
    return directory / "root.pub"


def chatd_argv(keydir: Path, database: Path, port: int, *extra: str) -> list[str]:
    return wacrypto_cmd("chatd", "run", "--dir", str(keydir), "--database", str(database), "--host", "127.0.0.1",
                        "--ports", str(port), *extra)


def wa_client_argv(devices: list[tuple[str, str, Path]], trust: Path, port: int, *extra: str) -> list[str]:
    """``wacrypto wa-client`` for ``devices`` (jid, store URL, chat key file)."""
    argv = wacrypto_cmd("wa-client", "--trust", str(trust), "--host", "127.0.0.1", "--ports", str(port), *extra)
    for jid, url, key in devices:
        argv += ["--jid", jid, "--store", url, "--key", str(key)]
    return argv


@contextmanager
def pg_databases(n: int) -> Iterator[list[str]]:
    """``n`` fresh PostgreSQL databases (127.0.0.1:5432, trust auth), as store URLs; dropped after."""
    from store_dbs import ensure_postgres, pg_admin, pg_url, unique

    ensure_postgres()
    names = [unique("soak") for _ in range(n)]
    with pg_admin() as c:
        for name in names:
            c.execute(f'CREATE DATABASE "{name}"')
    try:
        yield [pg_url(name) for name in names]
    finally:
        with pg_admin() as c:
            for name in names:
                c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))
