"""The bare transport floor of ``bench_e2e.py``: the JSON-lines protocol of ``wacrypto wa-client``
(``send``, ``burst``, ``pending``, ``quit``; ``started``, ``ready``, ``sent``, ``received``,
``handled`` lines) over plain :class:`~wacrypto.chat.ChatClient` connections through chatd's relay,
with no Signal and no store: a send queues an envelope carrying the text, a received one is acked
("handled") at once. Devices are named by their chat key (hex).

Run: .venv/bin/python bench/e2e_bare_client.py --trust ROOT.pub --ports P --key FILE [--key FILE ...]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

import trio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from wacrypto.chat.client import ChatClient, ChatClientConfig, open_chat_client  # noqa: E402
from wacrypto.chat.envelope import Envelope  # noqa: E402
from wacrypto.chat.events import ClientState, StateChanged  # noqa: E402
from wacrypto.chatd.server import load_trust_file  # noqa: E402
from wacrypto.errors import WacryptoError  # noqa: E402
from wacrypto.primitives.keys import KeyPair  # noqa: E402
from wacrypto.tools.cli.chatd import _load_or_create_key  # noqa: E402
from wacrypto.tools.cli.wa_client import emit, serve_commands  # noqa: E402
from wacrypto.transport.chat_connection import KeepaliveSettings, MessageReceived  # noqa: E402


async def _device(key: KeyPair, config: ChatClientConfig, clients: dict[str, ChatClient],
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    name = key.public.u.hex()
    async with open_chat_client(config) as client:
        clients[name] = client
        emit({"started": name, "created": False, "pid": os.getpid()})
        task_status.started()
        async for ev in client.events():
            if isinstance(ev, MessageReceived):
                env = Envelope.from_bytes(ev.payload)
                sender = env.sender.hex() if env.sender else ""
                emit({"received": ev.id, "from": sender, "chat": sender, "text": env.body.decode(), "me": name,
                      "t": time.monotonic()})
                await client.ack(ev.id)
                emit({"handled": ev.id, "from": sender, "me": name, "t": time.monotonic()})
            elif isinstance(ev, StateChanged) and ev.state is ClientState.CONNECTED:
                emit({"ready": name, "logins": 1})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--key", action="append", required=True)
    ap.add_argument("--trust", required=True)
    ap.add_argument("--ports", required=True)
    args = ap.parse_args()
    root = load_trust_file(Path(args.trust))
    keys = [_load_or_create_key(Path(k)) for k in args.key]

    async def run() -> None:
        clients: dict[str, ChatClient] = {}
        async with trio.open_nursery() as nursery:
            for key in keys:
                config = ChatClientConfig(host="127.0.0.1", trusted_root=root, static_key=key,
                                          ports=tuple(int(p) for p in args.ports.split(",")),
                                          keepalive=KeepaliveSettings(interval=0))
                await nursery.start(_device, key, config, clients)

            async def send(sender: str, to: str, text: str, key: str) -> None:
                t0 = time.monotonic()
                try:
                    mid = await clients[sender].send_message(Envelope(bytes.fromhex(to), 2, text.encode()).to_bytes(),
                                                             id=uuid.uuid4().hex[:20])
                except (WacryptoError, ValueError) as exc:
                    emit({"failed": key, "error": type(exc).__name__, "me": sender})
                    return
                emit({"sent": key, "id": mid, "me": sender, "t0": t0, "t": time.monotonic()})

            async def pending() -> None:
                emit({"pending": 0, "devices": {name: 0 for name in clients}, "outbox": False})  # none kept

            await serve_commands(list(clients), send, pending)
            nursery.cancel_scope.cancel()

    trio.run(run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
