"""``ChatClient``: coreapp's one long-lived connection to chatd, on trio.

``async with open_chat_client(config) as client`` starts a supervisor that

* dials ``host`` on each port in turn (5222, then 443 by default), first the port that worked
  last time; a port that refuses, resets, or does not complete the handshake within
  ``connect_timeout`` is skipped (a :class:`PortFailed` event says why). Ports after the first
  can go through an HTTP CONNECT proxy;
* verifies the server's certificate chain (fail closed) during the Noise handshake;
* keeps the connection alive (pings with jitter, pong deadline, dead-socket rule) and answers
  the server's pings;
* reconnects with jittered, capped backoff (immediately, then 1 s steps, then Fibonacci growth;
  reset only after a stable period), at once
  after "restart required", with a penalty after "rate limited"; and never after "conflict"
  (replaced by another instance), "logged out" or "client outdated": the client goes to
  ``CLOSED`` with a :class:`ConflictError` / :class:`LoggedOutError` / :class:`ClientOutdatedError`.

State is :attr:`ChatClient.state` and :class:`StateChanged` events on :meth:`ChatClient.events`.
Consume the events: the channel is bounded (backpressure reaches the socket reader).

Application hook: :meth:`ChatClient.send_message` queues a payload and returns its id; the
server's :class:`AckReceived` with that id confirms it. Incoming :class:`MessageReceived` events
are acknowledged with :meth:`ChatClient.ack` after the caller persisted them. Retrying unacked
messages across reconnects is the outbox's job (it lives in the store), not this class's.
"""

from __future__ import annotations

import wacrypto.limits as _limits

import random
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Final, final

import trio

from wacrypto.errors import (
    CertificateError,
    ClientOutdatedError,
    ConflictError,
    ConnectError,
    ConnectionClosedError,
    InvalidArgumentError,
    LoggedOutError,
    PeerError,
    StreamFailure,
    TransportError,
)
from wacrypto.limits import (
    DEFAULT_BACKOFF_CAP,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_FRAME_LEN,
    DEFAULT_RECV_QUEUE,
    DEFAULT_SEND_QUEUE,
    DEFAULT_STABLE_PERIOD,
    MAX_DETERMINISTIC_RETRIES,
    NOISE_TAG_LEN,
)
from wacrypto.primitives.keys import KeyPair, PublicKey, Rng, system_rng
from wacrypto.transport.backoff import Backoff
from wacrypto.transport.chat_connection import (
    AckReceived,
    ChatConnection,
    ChatEvent,
    KeepaliveSettings,
    MessageReceived,
    NodeReceived,
    PongReceived,
    ANSWERED_TAGS,
    StreamErrorReceived,
    expects_answer,
)
from wacrypto.transport.noise_connection import ClientSettings, ConnectionClosed, NoiseConnection
from wacrypto.transport.framing import DEFAULT_HEADER
from wacrypto.transport.messages import Ack, ClientPayload, EncodedNode, Message, Node, StreamErrorCode
from wacrypto.wire.binary import encode_node
from wacrypto.chat.driver import PING_REQUEST, ConnectionDriver, Outgoing
from wacrypto.chat.events import ClientEvent, ClientState, PortFailed, StateChanged

__all__ = ["ChatClient", "ChatClientConfig", "open_chat_client", "stream_error_to_exception"]

MAX_PROXY_RESPONSE: Final = _limits.MAX_PROXY_RESPONSE

OpenStream = Callable[[str, int], Awaitable[trio.abc.Stream]]


def stream_error_to_exception(code: StreamErrorCode, text: str = "") -> StreamFailure:
    """The typed error for a stream error code the server sent."""
    detail = f": {text}" if text else ""
    if code is StreamErrorCode.CONFLICT:
        return ConflictError(f"replaced by another instance of this account{detail}")
    if code is StreamErrorCode.LOGGED_OUT:
        return LoggedOutError(f"this device was logged out{detail}")
    if code is StreamErrorCode.CLIENT_OUTDATED:
        return ClientOutdatedError(f"the server rejects this client version{detail}")
    return StreamFailure(f"server ended the stream: {code.name.lower()}{detail}")


@final
@dataclass(frozen=True, slots=True)
class ChatClientConfig:
    """How a :class:`ChatClient` reaches and talks to chatd (docs/chat.md has a table of every field).

    Required: ``host``; ``trusted_root``, the root public key the server's certificate chain must be
    signed by (fail closed); ``static_key``, the client's long-term Noise key pair: the server knows
    the client by its public key (the chat key a relaying chatd routes by), so store and reuse it.

    * ``ports`` are tried in order on each attempt, the port that worked last first; a refused,
      reset or timed-out port is skipped with a :class:`PortFailed` event. ``proxy``
      (``"http://host:port"``, HTTP CONNECT) is used for every port after the first.
    * ``header`` is the intro header and Noise prologue (web clients' ``WA\\x06\\x03`` by default);
      ``routing_info``, when set, goes in the ``ED`` pre-intro; ``client_payload`` (version, user
      agent) travels encrypted in the handshake.
    * ``connect_timeout``: seconds per port for TCP connect (and proxy) plus the whole handshake.
    * ``keepalive``: our pings (``interval`` 0 sends none), the pong deadline and the dead-socket
      rule, see :class:`~wacrypto.transport.KeepaliveSettings`.
    * Reconnect waits: the first retry is immediate, the next few wait ``backoff_base`` seconds,
      then Fibonacci multiples of it up to ``backoff_cap``, each jittered by +/-20%; they reset only
      after a connection stayed up ``stable_period`` seconds; "rate limited" adds
      ``rate_limit_penalty``. After ``max_attempts`` failed attempts in a row (None: never) the
      client closes with the last :class:`~wacrypto.errors.ConnectError`.
    * ``max_frame_len``: the largest frame accepted (and the bound of one ``send_message``
      payload); ``send_queue`` / ``event_queue``: the bounded channels (sends wait while full; a full
      event channel stalls the socket reader).
    * ``open_stream``: ``async (host, port) -> trio.abc.Stream`` instead of TCP (tests);
      ``rng``: the handshake's randomness; ``jitter_rng``: the backoff and keepalive jitter;
      ``wall_clock``: the clock for certificate validity only.

    The ``repr`` shows host, ports and proxy, never keys.
    """

    host: str
    trusted_root: PublicKey
    static_key: KeyPair  # the client's long-term Noise key (store it)
    ports: tuple[int, ...] = (5222, 443)
    proxy: str | None = None  # "http://host:port": used for every port after the first
    header: bytes = DEFAULT_HEADER
    routing_info: bytes | None = None
    client_payload: ClientPayload = field(default_factory=ClientPayload)
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT  # per port: TCP connect + whole handshake
    keepalive: KeepaliveSettings = field(default_factory=KeepaliveSettings)
    backoff_base: float = 1.0
    backoff_cap: float = DEFAULT_BACKOFF_CAP
    stable_period: float = DEFAULT_STABLE_PERIOD
    rate_limit_penalty: float = 30.0
    max_attempts: int | None = None  # consecutive failed attempts before giving up (None: never)
    max_frame_len: int = DEFAULT_MAX_FRAME_LEN
    send_queue: int = DEFAULT_SEND_QUEUE
    event_queue: int = DEFAULT_RECV_QUEUE
    open_stream: OpenStream | None = None  # how to reach (host, port); default: TCP
    rng: Rng = system_rng
    jitter_rng: Callable[[], float] = random.random
    wall_clock: Callable[[], float] = time.time  # for certificate validity only

    def __post_init__(self) -> None:
        if not self.ports:
            raise InvalidArgumentError("at least one port is needed")
        if any(not 0 < p < 65536 for p in self.ports):
            raise InvalidArgumentError("ports must be 1..65535")
        if self.connect_timeout <= 0:
            raise InvalidArgumentError("connect_timeout must be positive")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise InvalidArgumentError("max_attempts must be >= 1")
        if self.proxy is not None:
            _parse_proxy(self.proxy)

    def __repr__(self) -> str:
        return f"ChatClientConfig(host={self.host!r}, ports={self.ports}, proxy={self.proxy!r})"


def _parse_proxy(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise InvalidArgumentError("proxy must be an http://host:port URL")
    return parts.hostname, parts.port or 8080


def _os_reason(exc: BaseException) -> str:
    """A short reason for a socket error ("Connection refused"), digging through trio's wrapping."""
    seen: list[BaseException] = [exc]
    while seen:
        e = seen.pop(0)
        if isinstance(e, OSError) and e.strerror:
            return e.strerror
        if isinstance(e, BaseExceptionGroup):
            seen.extend(e.exceptions)
        if e.__cause__ is not None:
            seen.append(e.__cause__)
    return str(exc) or type(exc).__name__


async def _open_tcp(host: str, port: int) -> trio.abc.Stream:
    return await trio.open_tcp_stream(host, port)


async def open_via_http_proxy(
    proxy: str, host: str, port: int, open_stream: OpenStream = _open_tcp
) -> trio.abc.Stream:
    """A stream to ``host:port`` tunnelled through an HTTP CONNECT proxy."""
    phost, pport = _parse_proxy(proxy)
    stream = await open_stream(phost, pport)
    try:
        target = f"{host}:{port}"
        await stream.send_all(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode("ascii"))
        buf = bytearray()
        while b"\r\n\r\n" not in buf:
            chunk = await stream.receive_some(MAX_PROXY_RESPONSE)
            if not chunk:
                raise ConnectError("proxy closed the connection before answering CONNECT")
            buf += chunk
            if len(buf) > MAX_PROXY_RESPONSE:
                raise ConnectError("proxy response headers too long")
        head, _, rest = bytes(buf).partition(b"\r\n\r\n")
        status_line = head.split(b"\r\n", 1)[0]
        status = status_line.split()
        if len(status) < 2 or not status[0].startswith(b"HTTP/1.") or status[1] != b"200":
            raise ConnectError(f"proxy refused CONNECT: {status_line.decode('latin-1')!r}")
        if rest:
            raise ConnectError("proxy sent bytes before the server could have spoken")
        return stream
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise


@final
class ChatClient:
    """Use :func:`open_chat_client`. All methods are safe to call from any task."""

    def __init__(self, config: ChatClientConfig) -> None:
        self._config = config
        self._state = ClientState.DISCONNECTED
        self._state_event = trio.Event()
        self._port: int | None = None
        self._preferred: int | None = None
        self._error: TransportError | None = None
        self._out_send, self._out_recv = trio.open_memory_channel[Outgoing](config.send_queue)
        self._ev_send, self._ev_recv = trio.open_memory_channel[ClientEvent](config.event_queue)
        self._connections = 0
        self._supervisor: trio.CancelScope | None = None

    # ------------------------------------------------------------------ observation
    @property
    def state(self) -> ClientState:
        return self._state

    @property
    def port(self) -> int | None:
        """The port of the current connection, or the one that worked last."""
        return self._port

    @property
    def error(self) -> TransportError | None:
        """Why the client is CLOSED (None if closed by the caller), or why the last connection ended."""
        return self._error

    @property
    def max_stanza_len(self) -> int:
        """The largest stanza one frame carries (bytes, encoded): :meth:`encode` and the sends refuse more."""
        return self._config.max_frame_len - NOISE_TAG_LEN

    @property
    def connections(self) -> int:
        """How many connections were established so far."""
        return self._connections

    def events(self) -> trio.MemoryReceiveChannel[ClientEvent]:
        """The event channel (``async for ev in client.events()``); ends when the client closes."""
        return self._ev_recv

    async def wait_state(self, *states: ClientState) -> ClientState:
        """Wait until the client is in one of ``states`` (or CLOSED); returns the state."""
        while self._state not in states and self._state is not ClientState.CLOSED:
            await self._state_event.wait()
        return self._state

    async def wait_connected(self) -> None:
        """Wait for CONNECTED; raises the terminal error if the client closes instead."""
        if await self.wait_state(ClientState.CONNECTED) is ClientState.CLOSED:
            raise self._error or ConnectionClosedError("chat client is closed")

    # ------------------------------------------------------------------ application hook
    def _check_open(self) -> None:
        if self._state is ClientState.CLOSED:
            raise self._error or ConnectionClosedError("chat client is closed")

    async def send_message(self, payload: bytes, id: str | None = None) -> str:
        """Queue an application payload; returns its id. Waits while the send queue is full.
        The server's :class:`AckReceived` with this id confirms delivery to the server."""
        self._check_open()
        if len(payload) > self._config.max_frame_len - NOISE_TAG_LEN - 256:
            raise InvalidArgumentError("payload larger than one frame")
        msg = Message(id or uuid.uuid4().hex, bytes(payload))
        await self._out_send.send(msg)
        return msg.id

    async def send_node(self, node: Node) -> None:
        """Queue a WhatsApp stanza (docs/chat-protocol.md); waits while the send queue is full.
        What the server sends back arrives as :class:`NodeReceived` events. A stanza larger than
        one frame raises :class:`InvalidArgumentError` here (nothing is sent)."""
        self._check_open()
        data = self.encode(node)  # here, not in the writer: a stanza too large fails its sender alone
        await self._out_send.send(EncodedNode(data, node.tag, expects_answer(node)))

    async def send_encoded(self, data: bytes, tag: str) -> None:
        """:meth:`send_node` of a stanza already encoded (the WABinary bytes of a ``tag`` node, as an
        outbox keeps them): sent as they are. Waits while the send queue is full."""
        self._check_open()
        self._check_frame(len(data), tag)
        await self._out_send.send(EncodedNode(bytes(data), tag, tag in ANSWERED_TAGS))

    def encode(self, node: Node) -> bytes:
        """``node`` as the bytes :meth:`send_encoded` takes; :class:`InvalidArgumentError` if it is
        larger than one frame carries (``max_stanza_len``)."""
        data = encode_node(node)
        self._check_frame(len(data), node.tag)
        return data

    def _check_frame(self, n: int, tag: str) -> None:
        if n > self.max_stanza_len:
            raise InvalidArgumentError(f"<{tag}> stanza of {n} bytes is larger than one frame ({self.max_stanza_len})")

    async def ack(self, id: str) -> None:
        """Acknowledge a received message (after persisting it)."""
        self._check_open()
        await self._out_send.send(Ack(id))

    async def ping(self) -> None:
        """Send a ping now; its round-trip time arrives as a :class:`PongReceived` event."""
        self._check_open()
        await self._out_send.send(PING_REQUEST)

    # ------------------------------------------------------------------ internals
    async def _emit(self, ev: ClientEvent) -> None:
        try:
            await self._ev_send.send(ev)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    async def _set_state(self, ev: StateChanged) -> None:
        self._state = ev.state
        self._state_event.set()
        self._state_event = trio.Event()
        await self._emit(ev)

    def _port_order(self) -> list[int]:
        ports = list(self._config.ports)
        if self._preferred in ports:
            ports.remove(self._preferred)
            ports.insert(0, self._preferred)
        return ports

    def _new_connection(self) -> ChatConnection:
        c = self._config
        settings = ClientSettings(
            static=c.static_key,
            trusted_root=c.trusted_root,
            header=c.header,
            routing_info=c.routing_info,
            payload=c.client_payload,
            max_frame_len=c.max_frame_len,
        )
        noise = NoiseConnection(settings, wall_time=c.wall_clock(), rng=c.rng)
        return ChatConnection(noise, now=trio.current_time(), keepalive=c.keepalive, jitter_rng=c.jitter_rng)

    async def _try_port(self, port: int) -> tuple[ConnectionDriver, bool]:
        c = self._config
        opener = c.open_stream or _open_tcp
        via_proxy = c.proxy is not None and port != c.ports[0]
        if via_proxy:
            assert c.proxy is not None
            stream = await open_via_http_proxy(c.proxy, c.host, port, opener)
        else:
            stream = await opener(c.host, port)
        driver = ConnectionDriver(stream, self._new_connection())
        try:
            await driver.handshake()
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        return driver, via_proxy

    async def _dial(self) -> tuple[ConnectionDriver, int, bool]:
        c = self._config
        reasons: list[str] = []
        for port in self._port_order():
            reason = f"no answer within {c.connect_timeout:g}s"
            with trio.move_on_after(c.connect_timeout):
                try:
                    driver, via_proxy = await self._try_port(port)
                except CertificateError:
                    raise  # deterministic: the same server on another port says the same
                except ConnectionClosedError as exc:
                    reason = str(exc)
                    if port != c.ports[0]:
                        reason += " (on a fallback port a middlebox expecting TLS may have cut it)"
                except (PeerError, ConnectError) as exc:  # bad handshake or frame; proxy refused
                    reason = f"{type(exc).__name__}: {exc}"
                except OSError as exc:
                    reason = _os_reason(exc)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    reason = f"connection broken: {exc}"
                else:
                    return driver, port, via_proxy
            reasons.append(f"port {port}: {reason}")
            await self._emit(PortFailed(port, reason))
        raise ConnectError(f"could not connect to {c.host} ({'; '.join(reasons)})")

    async def _on_event(self, ev: ChatEvent) -> None:
        if isinstance(ev, (MessageReceived, AckReceived, NodeReceived, PongReceived)):
            await self._emit(ev)

    async def close(self, error: TransportError | None = None) -> None:
        """Stop for good, from the outside (say a login the server refused): the connection is
        dropped, no reconnect follows, the state becomes CLOSED with ``error``."""
        if self._state is ClientState.CLOSED:
            return
        if self._supervisor is not None:
            self._supervisor.cancel()
        self._error = error
        self._state = ClientState.CLOSED
        self._state_event.set()
        self._state_event = trio.Event()
        try:  # never waits: the caller may be the one reading the events
            self._ev_send.send_nowait(StateChanged(ClientState.CLOSED, error=error))
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            pass
        self._ev_send.close()
        self._out_send.close()
        await trio.lowlevel.checkpoint()

    async def _supervise(self) -> None:
        if self._state is ClientState.CLOSED:  # closed before it started
            return
        with trio.CancelScope() as scope:
            self._supervisor = scope
            await self._supervise_loop()

    async def _supervise_loop(self) -> None:
        c = self._config
        backoff = Backoff(
            base=c.backoff_base,
            cap=c.backoff_cap,
            stable_period=c.stable_period,
            rate_limit_penalty=c.rate_limit_penalty,
            rng=c.jitter_rng,
        )
        failures = 0
        deterministic = 0
        try:
            while True:
                await self._set_state(StateChanged(ClientState.CONNECTING, error=self._error))
                rate_limited = immediate = False
                try:
                    driver, port, via_proxy = await self._dial()
                except CertificateError as exc:
                    deterministic += 1
                    failures += 1
                    self._error = exc
                    if deterministic >= MAX_DETERMINISTIC_RETRIES:
                        await self._finish(exc)
                        return
                except ConnectError as exc:
                    failures += 1
                    self._error = exc
                else:
                    failures = deterministic = 0
                    self._port = self._preferred = port
                    self._connections += 1
                    backoff.connected(trio.current_time())
                    await self._set_state(StateChanged(ClientState.CONNECTED, port=port, via_proxy=via_proxy))
                    error: TransportError
                    try:
                        end = await driver.run(self._out_recv, self._on_event)
                    except TransportError as exc:
                        error = exc
                    else:
                        if isinstance(end, StreamErrorReceived):
                            error = stream_error_to_exception(end.code, end.text)
                            rate_limited = end.code is StreamErrorCode.RATE_LIMITED
                            immediate = end.code is StreamErrorCode.RESTART_REQUIRED
                        else:
                            assert isinstance(end, ConnectionClosed)
                            error = ConnectionClosedError("the server closed the connection")
                    finally:
                        with trio.CancelScope(shield=True):
                            await trio.aclose_forcefully(driver.stream)
                    backoff.disconnected(trio.current_time())
                    self._error = error
                    if isinstance(error, (ConflictError, LoggedOutError, ClientOutdatedError)):
                        await self._finish(error)
                        return
                if c.max_attempts is not None and failures >= c.max_attempts:
                    await self._finish(self._error or ConnectError("giving up"))
                    return
                delay = 0.0 if immediate else backoff.next_delay(rate_limited=rate_limited)
                if delay > 0:
                    await self._set_state(StateChanged(ClientState.WAITING, error=self._error, delay=delay))
                    await trio.sleep(delay)
        finally:
            if self._state is not ClientState.CLOSED:
                self._state = ClientState.CLOSED
                self._state_event.set()
                self._ev_send.close()

    async def _finish(self, error: TransportError | None) -> None:
        self._error = error
        await self._set_state(StateChanged(ClientState.CLOSED, error=error))
        self._ev_send.close()
        self._out_send.close()

    def __repr__(self) -> str:
        return f"ChatClient(state={self._state.value}, port={self._port})"


@asynccontextmanager
async def open_chat_client(config: ChatClientConfig) -> AsyncIterator[ChatClient]:
    """Start a :class:`ChatClient` and its reconnect supervisor; stop both on exit."""
    client = ChatClient(config)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client._supervise)
        try:
            yield client
        finally:
            nursery.cancel_scope.cancel()
