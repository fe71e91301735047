"""ChatClient supervisor on memory streams with MockClock(autojump_threshold=0): keepalive,
backoff, fallback, fatal stream errors -- minutes of virtual time in milliseconds. The server side
is the real reference chatd (``ChatdServer.handle_stream``)."""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
import trio
import trio.testing

from wacrypto.chat.client import ChatClient, ChatClientConfig, open_chat_client
from wacrypto.chat.events import ClientEvent, ClientState, PortFailed, StateChanged
from wacrypto.chatd.server import ChatdServer, ServerKeys, Session
from wacrypto.errors import (
    CertificateError,
    ClientOutdatedError,
    ConflictError,
    ConnectError,
    KeepaliveTimeoutError,
    LoggedOutError,
)
from wacrypto.limits import MAX_DETERMINISTIC_RETRIES
from wacrypto.primitives.keys import KeyPair
from wacrypto.transport.chat_connection import (
    AckReceived,
    ChatEvent,
    KeepaliveSettings,
    MessageReceived,
    PingReceived,
)
from wacrypto.transport.messages import ClientPayload, StreamErrorCode

KEYS, _, _ = ServerKeys.generate()
KA = KeepaliveSettings(interval=20.0, jitter=5.0, deadline=15.0, dead_socket=20.0)


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


@dataclass
class Net:
    """An in-memory 'network': each dial opens a memory stream served by the real chatd code."""

    server: ChatdServer
    nursery: trio.Nursery
    refused: set[int] = field(default_factory=set)
    silent_ports: set[int] = field(default_factory=set)
    garbage_ports: set[int] = field(default_factory=set)  # answer the ClientHello with a bad frame
    dials: list[int] = field(default_factory=list)
    server_events: list[tuple[Session, ChatEvent]] = field(default_factory=list)

    async def open_stream(self, host: str, port: int) -> trio.abc.Stream:
        self.dials.append(port)
        if port in self.refused:
            raise OSError(errno.ECONNREFUSED, "Connection refused")
        a, b = trio.testing.memory_stream_pair()
        if port in self.silent_ports:
            self.nursery.start_soon(_swallow, b)
        elif port in self.garbage_ports:
            self.nursery.start_soon(_oversized_frame, b)
        else:
            self.nursery.start_soon(self.server.handle_stream, b, port)
        return a


async def _swallow(stream: trio.abc.Stream) -> None:
    try:
        while await stream.receive_some():
            pass
    except trio.BrokenResourceError:
        pass


async def _oversized_frame(stream: trio.abc.Stream) -> None:
    """A server that answers the ClientHello with a frame length above any limit."""
    try:
        await stream.receive_some()
        await stream.send_all(b"\xff\xff\xff")
        await _swallow(stream)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


@asynccontextmanager
async def network(**server_kw: object) -> AsyncIterator[Net]:
    events: list[tuple[Session, ChatEvent]] = []

    async def on_event(s: Session, ev: ChatEvent) -> None:
        events.append((s, ev))

    server = ChatdServer(KEYS, keepalive=KeepaliveSettings(interval=0), on_event=on_event, **server_kw)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        net = Net(server, nursery, server_events=events)
        yield net
        nursery.cancel_scope.cancel()


def config(net: Net, **kw: object) -> ChatClientConfig:
    args: dict[str, object] = dict(
        host="chatd.test",
        trusted_root=KEYS.root_public,
        static_key=KeyPair.generate(),
        ports=(5222, 443),
        open_stream=net.open_stream,
        keepalive=KA,
        jitter_rng=lambda: 0.5,
        connect_timeout=5.0,
    )
    args.update(kw)
    return ChatClientConfig(**args)  # type: ignore[arg-type]


async def collect(client: ChatClient, until: Callable[[ClientEvent], bool], out: list[ClientEvent]) -> None:
    async for ev in client.events():
        out.append(ev)
        if until(ev):
            return


async def connected(client: ChatClient, net: Net) -> None:
    """Client CONNECTED and the server has registered the session (it sees ClientFinish later)."""
    await client.wait_connected()
    while len(net.server.sessions) < 1 or any(s.client_key is None for s in net.server.sessions.values()):
        await trio.sleep(0.001)
    drain(client)


def drain(client: ChatClient) -> list[ClientEvent]:
    """Take the events already queued (so a later ``collect`` sees only what follows)."""
    out: list[ClientEvent] = []
    while True:
        try:
            out.append(client.events().receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            return out


def states(events: list[ClientEvent]) -> list[StateChanged]:
    return [e for e in events if isinstance(e, StateChanged)]


async def test_keepalive_pings_keep_an_idle_connection_up(clock: trio.testing.MockClock) -> None:
    async with network() as net, open_chat_client(config(net)) as client:
        await client.wait_connected()
        await trio.sleep(300)  # five virtual minutes idle
        assert client.state is ClientState.CONNECTED and client.connections == 1
        pings = [ev for _, ev in net.server_events if isinstance(ev, PingReceived)]
        assert 12 <= len(pings) <= 16  # every 20 s (jitter rng fixed at the midpoint)


async def test_silent_server_is_detected_within_interval_plus_deadline(clock: trio.testing.MockClock) -> None:
    async with network() as net, open_chat_client(config(net)) as client:
        await connected(client, net)
        t0 = trio.current_time()
        net.server.silence()
        events: list[ClientEvent] = []
        await collect(client, lambda e: isinstance(e, StateChanged) and e.state is not ClientState.CONNECTED, events)
        elapsed = trio.current_time() - t0
        lost = states(events)[-1]
        assert isinstance(lost.error, KeepaliveTimeoutError)
        assert elapsed <= KA.interval + KA.jitter + KA.deadline
        await client.wait_connected()  # new connections are served normally again
        assert client.connections == 2


async def test_backoff_sequence_while_the_server_is_down(clock: trio.testing.MockClock) -> None:
    async with network() as net:
        net.refused = {5222, 443}
        async with open_chat_client(config(net, backoff_cap=10.0)) as client:
            events: list[ClientEvent] = []
            await collect(client, lambda e: isinstance(e, StateChanged) and e.state is ClientState.WAITING and e.delay == 10.0, events)
            delays = [s.delay for s in states(events) if s.state is ClientState.WAITING]
            # first retry immediate, five one-second steps, then Fibonacci growth to the cap
            assert delays == [1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 3.0, 5.0, 8.0, 10.0]
            assert all(isinstance(s.error, ConnectError) for s in states(events) if s.state is ClientState.WAITING)
            net.refused = set()
            await client.wait_connected()


async def test_fallback_to_443_and_the_port_is_remembered(clock: trio.testing.MockClock) -> None:
    async with network() as net:
        net.refused = {5222}
        async with open_chat_client(config(net)) as client:
            events: list[ClientEvent] = []
            await collect(client, lambda e: isinstance(e, StateChanged) and e.state is ClientState.CONNECTED, events)
            await connected(client, net)
            assert client.port == 443
            assert [e.port for e in events if isinstance(e, PortFailed)] == [5222]
            net.server.drop_connections()
            await client.wait_state(ClientState.CONNECTING)
            await client.wait_connected()
            assert net.dials == [5222, 443, 443]  # second time straight to the port that worked


async def test_port_that_never_answers_falls_back_after_connect_timeout(clock: trio.testing.MockClock) -> None:
    async with network() as net:
        net.silent_ports = {5222}
        async with open_chat_client(config(net, connect_timeout=3.0)) as client:
            t0 = trio.current_time()
            await client.wait_connected()
            assert client.port == 443
            assert trio.current_time() - t0 == pytest.approx(3.0, abs=0.01)


async def test_bad_frame_during_the_handshake_moves_on_to_the_next_port(clock: trio.testing.MockClock) -> None:
    async with network() as net:
        net.garbage_ports = {5222}
        async with open_chat_client(config(net)) as client:
            events: list[ClientEvent] = []
            await collect(client, lambda e: isinstance(e, StateChanged) and e.state is ClientState.CONNECTED, events)
            assert client.port == 443
            (failed,) = [e for e in events if isinstance(e, PortFailed)]
            assert failed.port == 5222 and failed.reason.startswith("FrameError")


async def test_conflict_closes_without_reconnecting(clock: trio.testing.MockClock) -> None:
    key = KeyPair.generate()
    async with network() as net:
        async with open_chat_client(config(net, static_key=key)) as first:
            await first.wait_connected()
            async with open_chat_client(config(net, static_key=key)) as second:
                await second.wait_connected()
                assert await first.wait_state(ClientState.CLOSED) is ClientState.CLOSED
                assert isinstance(first.error, ConflictError)
                await trio.sleep(600)
                assert net.server.handshakes == 2 and first.connections == 1
                assert second.state is ClientState.CONNECTED
                with pytest.raises(ConflictError):
                    await first.send_message(b"x")


@pytest.mark.parametrize(
    ("code", "error"),
    [(StreamErrorCode.LOGGED_OUT, LoggedOutError), (StreamErrorCode.CLIENT_OUTDATED, ClientOutdatedError)],
)
async def test_fatal_stream_errors_stop_the_client(
    clock: trio.testing.MockClock, code: StreamErrorCode, error: type[Exception]
) -> None:
    async with network() as net, open_chat_client(config(net)) as client:
        await connected(client, net)
        net.server.send_stream_error(code)
        await client.wait_state(ClientState.CLOSED)
        assert isinstance(client.error, error)
        await trio.sleep(600)
        assert net.server.handshakes == 1


async def test_outdated_client_is_refused_by_version(clock: trio.testing.MockClock) -> None:
    async with network(min_client_version=(2, 0, 0)) as net:
        async with open_chat_client(config(net, client_payload=ClientPayload((1, 9, 9)))) as client:
            await client.wait_state(ClientState.CLOSED)
            assert isinstance(client.error, ClientOutdatedError)


async def test_restart_required_reconnects_at_once_and_rate_limited_waits(clock: trio.testing.MockClock) -> None:
    async with network() as net, open_chat_client(config(net, rate_limit_penalty=30.0)) as client:
        await connected(client, net)
        t0 = trio.current_time()
        net.server.send_stream_error(StreamErrorCode.RESTART_REQUIRED)
        events: list[ClientEvent] = []
        await collect(client, lambda e: isinstance(e, StateChanged) and e.state is ClientState.CONNECTED, events)
        assert trio.current_time() - t0 < 0.01
        assert ClientState.WAITING not in [s.state for s in states(events)]
        await connected(client, net)
        net.server.send_stream_error(StreamErrorCode.RATE_LIMITED)
        events.clear()
        await collect(client, lambda e: isinstance(e, StateChanged) and e.state is ClientState.CONNECTED, events)
        (wait,) = [s for s in states(events) if s.state is ClientState.WAITING]
        assert wait.delay is not None and wait.delay >= 30.0


async def test_certificate_failures_are_retried_a_bounded_number_of_times(clock: trio.testing.MockClock) -> None:
    async with network() as net, open_chat_client(config(net, trusted_root=KeyPair.generate().public)) as client:
        await client.wait_state(ClientState.CLOSED)
        assert isinstance(client.error, CertificateError)
        assert net.server.handshakes == 0
        assert len(net.dials) == MAX_DETERMINISTIC_RETRIES  # one port per attempt: certs are not port-specific


async def test_messages_acks_and_pongs_reach_the_application(clock: trio.testing.MockClock) -> None:
    async with network() as net, open_chat_client(config(net)) as client:
        await connected(client, net)
        mid = await client.send_message(b"hello chatd")
        await client.ping()
        got: list[ClientEvent] = []
        await collect(client, lambda e: isinstance(e, AckReceived), got)
        assert AckReceived(mid) in got
        session = next(iter(net.server.sessions.values()))
        assert [m.payload for m in session.received] == [b"hello chatd"]
        assert net.server.deliver(client._config.static_key.public, "srv-1", b"for you")
        await collect(client, lambda e: isinstance(e, MessageReceived), got)
        assert MessageReceived("srv-1", b"for you") in got
        await client.ack("srv-1")
        await trio.sleep(1)
        assert session.acks == ["srv-1"]


async def test_bytes_glued_to_the_last_handshake_message_are_not_left_waiting() -> None:
    """A client that sends ClientFinish and a message in one TCP segment gets its ack at once."""
    import time as _time

    from wacrypto.transport.chat_connection import ChatConnection
    from wacrypto.transport.noise_connection import NEED_DATA, ClientSettings, NoiseConnection
    from wacrypto.transport.messages import Message

    server = ChatdServer(KEYS, keepalive=KeepaliveSettings(interval=0))
    a, b = trio.testing.memory_stream_pair()
    conn = ChatConnection(NoiseConnection(ClientSettings(KeyPair.generate(), KEYS.root_public), wall_time=_time.time()), now=0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.handle_stream, b)
        await a.send_all(conn.data_to_send())
        while conn.next_event() is NEED_DATA:
            conn.receive_data(await a.receive_some(), 0)
        conn.send(Message("glued", b"x"), 0)
        await a.send_all(conn.data_to_send())  # ClientFinish + message in one write
        with trio.fail_after(2):
            while True:
                conn.receive_data(await a.receive_some(), 0)
                if (ev := conn.next_event()) is not NEED_DATA:
                    break
        assert ev == AckReceived("glued")
        nursery.cancel_scope.cancel()
