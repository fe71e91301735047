"""The reference chatd in this process, on its SQLite database and one loopback port, that can be
stopped and started again on the same file and port (a restart, as the demo and the WaMessenger
tests do). For a chatd to SIGKILL, see :mod:`wacrypto.testing.chatd_process`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from wacrypto.chatd.server import ChatdServer, ServerKeys
from wacrypto.transport.chat_connection import KeepaliveSettings

__all__ = ["RestartableChatd"]


class RestartableChatd:
    """``ChatdServer(keys, database=path, **server_options)`` on 127.0.0.1: :meth:`start` in a
    nursery (the first start picks a free port, later ones reuse it), :meth:`stop` to drop every
    connection and close the database. ``keys`` default to fresh ones; keepalive off unless given."""

    def __init__(self, path: Path, keys: ServerKeys | None = None, **server_options: Any) -> None:
        self.path = path
        self.keys = keys if keys is not None else ServerKeys.generate()[0]
        self.options = {"keepalive": KeepaliveSettings(interval=0), **server_options}
        self.port = 0
        self.server: ChatdServer | None = None
        self._scope: trio.CancelScope | None = None
        self._done = trio.Event()

    def __repr__(self) -> str:
        return f"RestartableChatd({self.path.name}, port={self.port}, running={self.server is not None})"

    async def start(self, nursery: trio.Nursery) -> None:
        server = ChatdServer(self.keys, database=self.path, **self.options)
        done = self._done = trio.Event()

        async def serve(task_status: trio.TaskStatus[list[int]] = trio.TASK_STATUS_IGNORED) -> None:
            with trio.CancelScope() as scope:
                self._scope = scope
                try:
                    await server.serve("127.0.0.1", [self.port], task_status=task_status)
                finally:
                    server.close()
                    done.set()

        (self.port,) = await nursery.start(serve)
        self.server = server

    async def stop(self) -> None:
        """Stop serving (every connection dropped, the database closed) and wait until it has."""
        assert self._scope is not None
        self._scope.cancel()
        await self._done.wait()
        self.server = None
