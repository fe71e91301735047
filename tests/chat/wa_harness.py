"""The loopback harness of the WaMessenger tests: a chatd serving the WhatsApp stanzas from its
SQLite database on a free port (stopped and started again on the same database and port), devices
with SQLite key stores, and a running messenger whose events are collected for the test to wait on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from wacrypto.chat.client import ChatClientConfig
from wacrypto.chat.wa_messenger import ReceivedMessage, WaEvent, WaMessenger, open_wa_messenger
from wacrypto.chatd.server import ServerKeys
from wacrypto.primitives.keys import KeyPair
from wacrypto.session import account
from wacrypto.store import open_store
from wacrypto.store.protocols import KeyStore
from wacrypto.testing.chatd_inprocess import RestartableChatd
from wacrypto.transport.chat_connection import KeepaliveSettings
from wacrypto.whatsapp.jid import Jid

__all__ = ["KEYS", "STEP", "Chatd", "Device", "Running", "_config", "_handled", "_new_device", "drained", "running"]

KEYS, _, _ = ServerKeys.generate()
STEP = 20.0  # seconds any one step may take


@dataclass
class Device:
    jid: Jid
    url: str
    static: KeyPair = field(default_factory=KeyPair.generate)


@dataclass
class Running:
    m: WaMessenger
    store: KeyStore
    events: list[WaEvent] = field(default_factory=list)
    changed: trio.Event = field(default_factory=trio.Event)

    async def wait_for(self, kind: type, pred: Any = lambda e: True) -> Any:
        with trio.fail_after(STEP):
            while True:
                for e in self.events:
                    if isinstance(e, kind) and pred(e):
                        return e
                self.changed = trio.Event()
                await self.changed.wait()

    async def next_message(self, text: str | None = None) -> ReceivedMessage:
        got: ReceivedMessage = await self.wait_for(ReceivedMessage, lambda e: text is None or e.text == text)
        return got


class Chatd(RestartableChatd):
    """The tests' chatd: the shared server keys (``KEYS``), keepalive off; ``server_options`` are
    more ChatdServer arguments (on_event, mailbox limits, say)."""

    def __init__(self, path: Path, **server_options: Any) -> None:
        super().__init__(path, KEYS, **server_options)


def _config(d: Device, port: int) -> ChatClientConfig:
    return ChatClientConfig(host="127.0.0.1", trusted_root=KEYS.root_public, static_key=d.static, ports=(port,),
                            keepalive=KeepaliveSettings(interval=0), backoff_base=0.05, backoff_cap=0.3,
                            connect_timeout=5.0)


async def _new_device(tmp: Path, user: str, device: int = 0, server: str = "s.whatsapp.net") -> Device:
    d = Device(Jid(user, server, device), f"sqlite:///{tmp / f'{user}-{device}.db'}")
    s = await open_store(d.url)
    await account.create_account(s, prekeys=0)
    await s.aclose()
    return d


@asynccontextmanager
async def running(d: Device, chatd: Chatd, **kwargs: Any) -> AsyncIterator[Running]:
    """A messenger of ``d`` (``kwargs``: WaMessenger's; with a ``stripe``, its store holds that stripe's lease)."""
    store = await open_store(d.url, lease_stripe=kwargs.get("stripe"))
    try:
        async with open_wa_messenger(store, _config(d, chatd.port), d.jid, **kwargs) as m, trio.open_nursery() as n:
            r = Running(m, store)

            async def collect() -> None:
                async for ev in m.events():
                    r.events.append(ev)
                    r.changed.set()

            n.start_soon(collect)
            with trio.fail_after(STEP):
                await m.wait_logged_in()
            yield r
            n.cancel_scope.cancel()
    finally:
        await store.aclose()




async def _handled(dev: Running, text: str) -> ReceivedMessage:
    msg = await dev.next_message(text)
    await dev.m.mark_handled(msg)
    return msg


async def drained(dev: Running) -> None:
    """Wait until the device's outbox is empty (every message it sent acknowledged by the server)."""
    with trio.fail_after(STEP):
        while await dev.m.pending():
            await trio.sleep(0.05)
