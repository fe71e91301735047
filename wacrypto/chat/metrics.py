"""Prometheus metrics of a Messenger, and a small HTTP endpoint that serves them on loopback.

Counters and histograms live in a :class:`MessengerMetrics` (its own ``prometheus_client``
registry, so two Messengers in one process do not collide); pass one to
:class:`~wacrypto.chat.messenger.Messenger` and serve it with :func:`serve_metrics`::

    metrics = MessengerMetrics()
    async with trio.open_nursery() as n:
        port = await n.start(serve_metrics, metrics, "127.0.0.1", 9464)
        ...  # curl http://127.0.0.1:9464/metrics

We use ``prometheus_client`` for the metric types and the text exposition format (a well-kept
library instead of our own); its own HTTP server runs in a thread, so the endpoint here is a few
lines on trio instead. Metric values carry no key material, plaintext or peer identity: failure
kinds are exception class names, nothing more.
"""

from __future__ import annotations

from typing import Final, final

import trio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from wacrypto.errors import InvalidArgumentError

__all__ = ["MessengerMetrics", "serve_metrics"]

_LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_MAX_REQUEST: Final = 8192  # bytes of request head we read before answering


@final
class MessengerMetrics:
    """The metrics one Messenger updates; :meth:`render` gives the Prometheus text format."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.sent = Counter("wacrypto_messages_sent", "Messages handed to the chat connection (resends included)", registry=r)
        self.acked = Counter("wacrypto_messages_acked", "Sent messages the server acknowledged", registry=r)
        self.received = Counter("wacrypto_messages_received", "Messages decrypted and handled", registry=r)
        self.decrypt_failures = Counter("wacrypto_decrypt_failures", "Messages that could not be read, by kind",
                                        ["kind", "final"], registry=r)
        self.retry_receipts = Counter("wacrypto_retry_receipts", "Retry receipts sent and received",
                                      ["direction"], registry=r)
        self.reconnects = Counter("wacrypto_reconnects", "Chat connections re-established", registry=r)
        self.outbox_depth = Gauge("wacrypto_outbox_depth", "Messages waiting for the server's acknowledgement", registry=r)
        self.send_latency = Histogram("wacrypto_send_ack_seconds", "Seconds from send to the server's acknowledgement",
                                      buckets=_LATENCY_BUCKETS, registry=r)
        self.handle_latency = Histogram("wacrypto_receive_handle_seconds",
                                        "Seconds from receipt to the handled mark being committed",
                                        buckets=_LATENCY_BUCKETS, registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def __repr__(self) -> str:
        return "MessengerMetrics()"


async def _answer(stream: trio.SocketStream, metrics: MessengerMetrics) -> None:
    head = b""
    with trio.move_on_after(5):
        while b"\r\n\r\n" not in head and len(head) < _MAX_REQUEST:
            chunk = await stream.receive_some(4096)
            if not chunk:
                break
            head += chunk
    line = head.split(b"\r\n", 1)[0].split()
    if len(line) >= 2 and line[0] in (b"GET", b"HEAD") and line[1].split(b"?")[0] == b"/metrics":
        body, status, ctype = metrics.render(), b"200 OK", CONTENT_TYPE_LATEST.encode()
    else:
        body, status, ctype = b"not found: try /metrics\n", b"404 Not Found", b"text/plain"
    resp = (b"HTTP/1.1 " + status + b"\r\nContent-Type: " + ctype + b"\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n")
    try:
        await stream.send_all(resp + (body if line[:1] != [b"HEAD"] else b""))
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await stream.aclose()


async def serve_metrics(
    metrics: MessengerMetrics, host: str = "127.0.0.1", port: int = 0,
    *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``GET /metrics`` on ``host:port`` until cancelled; ``task_status`` gets the port.

    Meant for loopback or a private interface: it has no authentication.
    """
    if not 0 <= port <= 65535:
        raise InvalidArgumentError(f"metrics port must be 0..65535, not {port}")
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = int(listeners[0].socket.getsockname()[1])

    async def handler(stream: trio.SocketStream) -> None:
        await _answer(stream, metrics)

    async with trio.open_nursery() as n:
        await n.start(trio.serve_listeners, handler, listeners)
        task_status.started(bound)
