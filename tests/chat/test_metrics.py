"""Observability: a Messenger's health call and its Prometheus metrics, served over loopback HTTP,
follow real traffic through the relaying chatd (sends, acks, deliveries, drops, reconnects)."""

from __future__ import annotations

import re

import trio

from wacrypto.address import Address
from wacrypto.chat.client import ChatClientConfig, open_chat_client
from wacrypto.chat.envelope import Envelope
from wacrypto.chat.messenger import Directory, open_messenger
from wacrypto.chat.metrics import MessengerMetrics, serve_metrics
from wacrypto.chatd.server import ChatdServer, ServerKeys
from wacrypto.primitives.keys import KeyPair
from wacrypto.session import account
from wacrypto.session.cipher import SessionCipher
from wacrypto.store.memory import MemoryKeyStore
from wacrypto.transport.chat_connection import KeepaliveSettings

KEYS, _, _ = ServerKeys.generate()
ALICE, BOB = Address("alice", 1), Address("bob", 1)


def _config(key: KeyPair, ports: list[int]) -> ChatClientConfig:
    return ChatClientConfig(host="127.0.0.1", trusted_root=KEYS.root_public, static_key=key, ports=tuple(ports),
                            keepalive=KeepaliveSettings(interval=0), backoff_base=0.05, backoff_cap=0.2)


async def _get(port: int, path: str) -> tuple[str, str]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    while chunk := await stream.receive_some(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.decode().split("\r\n")[0], body.decode()


def _value(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert m, f"{name} not in the metrics"
    return float(m.group(1))


async def test_health_and_metrics_follow_the_traffic() -> None:
    sa, sb = MemoryKeyStore(), MemoryKeyStore()
    for s in (sa, sb):
        await account.create_account(s, prekeys=5)
    await SessionCipher(sa).process_bundle(BOB, await account.get_bundle(sb))
    ka, kb = KeyPair.generate(), KeyPair.generate()
    d = Directory()
    d.add(ALICE, ka.public.u)
    d.add(BOB, kb.public.u)
    got: list[bytes] = []
    arrived = trio.Event()

    async def on_message(sender: Address, pt: bytes) -> None:
        got.append(pt)
        if len(got) == 20:
            arrived.set()

    ma_metrics, mb_metrics = MessengerMetrics(), MessengerMetrics()
    server = ChatdServer(KEYS, keepalive=KeepaliveSettings(interval=0), relay=True)
    async with trio.open_nursery() as n:
        ports = await n.start(server.serve, "127.0.0.1", [0])
        port = await n.start(serve_metrics, mb_metrics, "127.0.0.1", 0)

        async def ignore(sender: Address, pt: bytes) -> None:
            pass

        async with open_messenger(SessionCipher(sa), _config(ka, ports), d, ignore, metrics=ma_metrics) as ma, \
                open_messenger(SessionCipher(sb), _config(kb, ports), d, on_message, metrics=mb_metrics) as mb:
            await ma.client.wait_connected()
            await mb.client.wait_connected()
            with trio.fail_after(30):
                for i in range(20):
                    await ma.send(BOB, b"m%d" % i)
                await arrived.wait()
                while await ma.pending():
                    await trio.sleep(0.02)
                h = await ma.health()
                assert (h.state, h.outbox_depth, h.oldest_outbox_age, h.sent, h.acked) == ("connected", 0, 0.0, 20, 20)
                sent_text = ma_metrics.render().decode()
                assert _value(sent_text, "wacrypto_messages_sent_total") == 20
                assert _value(sent_text, "wacrypto_messages_acked_total") == 20
                assert _value(sent_text, "wacrypto_send_ack_seconds_count") == 20
                # garbage for Bob from a stranger: dropped for good and counted by kind
                async with open_chat_client(_config(KeyPair.generate(), ports)) as raw:
                    await raw.wait_connected()
                    await raw.send_message(Envelope(kb.public.u, 2, b"not a signal message").to_bytes())
                    while mb.dropped < 1:
                        await trio.sleep(0.02)
                server.drop_connections()
                while (await mb.health()).reconnects < 1 or mb.delivered < 20:
                    await trio.sleep(0.02)
                status, body = await _get(port, "/metrics")
                assert status == "HTTP/1.1 200 OK"
                assert _value(body, "wacrypto_messages_received_total") == 20
                assert _value(body, "wacrypto_receive_handle_seconds_count") == 20
                assert _value(body, "wacrypto_reconnects_total") >= 1
                assert _value(body, "wacrypto_outbox_depth") == 0
                assert re.search(r'^wacrypto_decrypt_failures_total\{final="true",kind="\w+"\} 1\.0$', body, re.M)
                assert "m1" not in body and "alice" not in body  # no plaintext, no peers
                assert (await _get(port, "/other"))[0] == "HTTP/1.1 404 Not Found"
        n.cancel_scope.cancel()
