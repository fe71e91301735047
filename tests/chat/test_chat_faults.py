"""Fault tests on real loopback TCP, each bounded in time: fallback, dead and silent servers,
split frames, garbage, conflict, HTTP CONNECT proxy."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from wacrypto.testing.chatd_process import ChatdProcess, free_port

from wacrypto.chat.client import ChatClient, ChatClientConfig, open_chat_client
from wacrypto.chat.events import ClientState, PortFailed, StateChanged
from wacrypto.chatd.server import ChatdServer, ServerKeys, load_trust_file
from wacrypto.errors import ConflictError, FrameError, KeepaliveTimeoutError, TransportError
from wacrypto.primitives.keys import KeyPair
from wacrypto.transport.chat_connection import AckReceived, ChatConnection, KeepaliveSettings
from wacrypto.transport.noise_connection import NEED_DATA, ClientSettings, NoiseConnection, ServerSettings
from wacrypto.transport.messages import Message, encode_stanza

FAST_KA = KeepaliveSettings(interval=0.6, jitter=0.1, deadline=0.5, dead_socket=1.0, handshake_timeout=2.0)


@asynccontextmanager
async def chatd(keys: ServerKeys, nports: int = 1, **kw: object) -> AsyncIterator[ChatdServer]:
    server = ChatdServer(keys, **kw)  # type: ignore[arg-type]
    async with trio.open_nursery() as n:
        await n.start(server.serve, "127.0.0.1", [0] * nports)
        yield server
        n.cancel_scope.cancel()


def cfg(keys: ServerKeys, ports: tuple[int, ...], **kw: object) -> ChatClientConfig:
    args: dict[str, object] = dict(
        host="127.0.0.1", trusted_root=keys.root_public, static_key=KeyPair.generate(), ports=ports, connect_timeout=2.0
    )
    args.update(kw)
    return ChatClientConfig(**args)  # type: ignore[arg-type]


async def wait_connected_event(client: ChatClient) -> StateChanged:
    async for ev in client.events():
        if isinstance(ev, StateChanged) and ev.state in (ClientState.CONNECTED, ClientState.CLOSED):
            return ev
    raise AssertionError("event channel ended")


async def test_refused_5222_falls_back_to_443(server_keys: ServerKeys) -> None:
    async with chatd(server_keys) as server:
        live = server.ports[0]
        refused = free_port()
        with trio.fail_after(5):
            t0 = time.perf_counter()
            async with open_chat_client(cfg(server_keys, (refused, live))) as client:
                ev = await wait_connected_event(client)
                elapsed = time.perf_counter() - t0
        assert ev.state is ClientState.CONNECTED and ev.port == live
        print(f"fallback after refusal: {elapsed * 1000:.1f} ms")


async def test_port_that_accepts_but_never_answers_falls_back_within_connect_timeout(server_keys: ServerKeys) -> None:
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(8)  # the kernel completes TCP handshakes; nobody ever accepts or answers
    try:
        async with chatd(server_keys) as server:
            ports = (blackhole.getsockname()[1], server.ports[0])
            with trio.fail_after(0.5 + 3):
                t0 = time.perf_counter()
                async with open_chat_client(cfg(server_keys, ports, connect_timeout=0.5)) as client:
                    failed = []
                    async for ev in client.events():
                        if isinstance(ev, PortFailed):
                            failed.append(ev)
                        if isinstance(ev, StateChanged) and ev.state is ClientState.CONNECTED:
                            break
                    elapsed = time.perf_counter() - t0
            assert client.port == server.ports[0]
            assert [f.port for f in failed] == [ports[0]] and "no answer" in failed[0].reason
            assert 0.5 <= elapsed < 0.5 + 2
    finally:
        blackhole.close()


async def test_server_killed_mid_stream_then_restarted_reconnects(chatd_process: ChatdProcess, keydir: Path) -> None:
    await trio.to_thread.run_sync(chatd_process.start)
    root = load_trust_file(keydir / "root.pub")
    config = ChatClientConfig(host="127.0.0.1", trusted_root=root, static_key=KeyPair.generate(),
                              ports=tuple(chatd_process.ports), connect_timeout=2.0)
    with trio.fail_after(25):
        async with open_chat_client(config) as client:
            assert (await wait_connected_event(client)).state is ClientState.CONNECTED
            await client.send_message(b"before the crash")
            chatd_process.kill()  # SIGKILL: no goodbye
            await client.wait_state(ClientState.CONNECTING, ClientState.WAITING)
            assert client.error is not None
            await trio.to_thread.run_sync(chatd_process.start)
            ev = await wait_connected_event(client)
            assert ev.state is ClientState.CONNECTED and client.connections == 2


async def test_silent_server_is_detected_and_the_client_reconnects(server_keys: ServerKeys) -> None:
    async with chatd(server_keys) as server:
        async with open_chat_client(cfg(server_keys, (server.ports[0],), keepalive=FAST_KA)) as client:
            with trio.fail_after(10):
                await wait_connected_event(client)
                while not server.sessions:
                    await trio.sleep(0.01)
                server.silence()
                t0 = time.perf_counter()
                lost = None
                async for ev in client.events():
                    if isinstance(ev, StateChanged) and ev.state is not ClientState.CONNECTED and lost is None:
                        lost = ev
                        detected = time.perf_counter() - t0
                    if isinstance(ev, StateChanged) and ev.state is ClientState.CONNECTED:
                        break
            assert lost is not None and isinstance(lost.error, KeepaliveTimeoutError)
            assert detected <= FAST_KA.interval + FAST_KA.jitter + FAST_KA.deadline + 0.3
            assert client.connections == 2


async def raw_client(keys: ServerKeys, port: int) -> tuple[trio.SocketStream, ChatConnection]:
    """A sans-I/O client driven by hand over real TCP, so a test controls every write."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    conn = ChatConnection(NoiseConnection(ClientSettings(KeyPair.generate(), keys.root_public), wall_time=time.time()), now=0)
    await stream.send_all(conn.data_to_send())
    while True:
        conn.receive_data(await stream.receive_some(), 0)
        if conn.next_event() is not NEED_DATA:
            break
    await stream.send_all(conn.data_to_send())
    return stream, conn


async def test_a_frame_split_at_every_byte_boundary_over_tcp(server_keys: ServerKeys) -> None:
    async with chatd(server_keys) as server:
        with trio.fail_after(20):
            stream, conn = await raw_client(server_keys, server.ports[0])
            n = 3 + len(encode_stanza(Message("m10", b"p" * 40))) + 16  # every id below is 3 characters
            acks = []
            for k in range(1, n):
                conn.send(Message(f"m{k:02d}", b"p" * 40), 0)
                wire = conn.data_to_send()
                assert len(wire) == n
                await stream.send_all(wire[:k])
                await trio.sleep(0.001)  # separate TCP segments
                await stream.send_all(wire[k:])
                got = None
                while got is None:
                    data = await stream.receive_some()
                    assert data, "server closed the connection"
                    conn.receive_data(data, 0)
                    while (ev := conn.next_event()) is not NEED_DATA:
                        if isinstance(ev, AckReceived):
                            got = ev.id
                acks.append(got)
            await stream.aclose()
        assert acks == [f"m{k:02d}" for k in range(1, n)]
        session = server.all_sessions[-1]
        assert [m.id for m in session.received] == acks


@pytest.mark.parametrize("garbage", ["oversized", "bad_tag"])
async def test_garbage_from_a_client_closes_that_connection_with_a_typed_error(server_keys: ServerKeys, garbage: str) -> None:
    async with chatd(server_keys) as server:
        with trio.fail_after(10):
            stream, conn = await raw_client(server_keys, server.ports[0])
            if garbage == "oversized":
                await stream.send_all(b"\xff\xff\xff")
            else:
                conn.send(Message("m", b"x" * 30), 0)
                wire = bytearray(conn.data_to_send())
                wire[10] ^= 0x08
                await stream.send_all(bytes(wire))
            assert await stream.receive_some() == b""  # the server closed the connection
            assert isinstance(server.connection_errors[-1], FrameError)
            # and the server is unharmed
            async with open_chat_client(cfg(server_keys, (server.ports[0],))) as client:
                assert (await wait_connected_event(client)).state is ClientState.CONNECTED


@pytest.mark.parametrize("garbage", ["oversized", "bad_tag"])
async def test_garbage_from_the_server_is_a_typed_error_and_the_client_reconnects(server_keys: ServerKeys, garbage: str) -> None:
    served = 0

    async def evil(stream: trio.SocketStream) -> None:
        nonlocal served
        served += 1
        conn = NoiseConnection(ServerSettings(server_keys.static, server_keys.chain))
        try:
            while conn.state.value == "handshaking":
                ev = conn.next_event()
                if out := conn.data_to_send():
                    await stream.send_all(out)
                if ev is NEED_DATA:
                    conn.receive_data(await stream.receive_some())
            if garbage == "oversized":
                await stream.send_all(b"\xff\xff\xff")
            else:
                conn.send_frame(b"\x0a\x00")
                wire = bytearray(conn.data_to_send())
                wire[-1] ^= 1
                await stream.send_all(bytes(wire))
            await trio.sleep(5)
        except (trio.BrokenResourceError, trio.ClosedResourceError, TransportError):
            pass

    async with trio.open_nursery() as n:
        listeners = await n.start(trio.serve_tcp, evil, 0)
        port = listeners[0].socket.getsockname()[1]
        with trio.fail_after(10):
            async with open_chat_client(cfg(server_keys, (port,))) as client:
                errors = []
                async for ev in client.events():
                    if isinstance(ev, StateChanged) and ev.error is not None:
                        errors.append(ev.error)
                    if isinstance(ev, StateChanged) and ev.state is ClientState.CONNECTED and served == 2:
                        break
        n.cancel_scope.cancel()
    assert isinstance(errors[0], FrameError)


async def test_conflict_over_tcp_does_not_loop(server_keys: ServerKeys) -> None:
    key = KeyPair.generate()
    async with chatd(server_keys) as server:
        with trio.fail_after(10):
            async with open_chat_client(cfg(server_keys, (server.ports[0],), static_key=key)) as first:
                await wait_connected_event(first)
                async with open_chat_client(cfg(server_keys, (server.ports[0],), static_key=key)) as second:
                    await wait_connected_event(second)
                    assert await first.wait_state(ClientState.CLOSED) is ClientState.CLOSED
                    assert isinstance(first.error, ConflictError)
                    await trio.sleep(1.5)
                    assert server.handshakes == 2 and second.state is ClientState.CONNECTED


async def test_fallback_port_through_an_http_connect_proxy(server_keys: ServerKeys) -> None:
    tunnels: list[bytes] = []

    async def proxy(client: trio.SocketStream) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            head += await client.receive_some(1024)
        tunnels.append(head.split(b"\r\n")[0])
        host, port = head.split()[1].decode().rsplit(":", 1)
        upstream = await trio.open_tcp_stream(host, int(port))
        await client.send_all(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pipe(a: trio.abc.Stream, b: trio.abc.Stream) -> None:
            try:
                while data := await a.receive_some():
                    await b.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            await trio.aclose_forcefully(b)

        async with trio.open_nursery() as n:
            n.start_soon(pipe, client, upstream)
            n.start_soon(pipe, upstream, client)

    async with chatd(server_keys) as server, trio.open_nursery() as n:
        listeners = await n.start(trio.serve_tcp, proxy, 0)
        pport = listeners[0].socket.getsockname()[1]
        with trio.fail_after(10):
            config = cfg(server_keys, (free_port(), server.ports[0]), proxy=f"http://127.0.0.1:{pport}")
            async with open_chat_client(config) as client:
                ev = await wait_connected_event(client)
                await client.ping()
                async for e in client.events():
                    if type(e).__name__ == "PongReceived":
                        break
        n.cancel_scope.cancel()
    assert ev.via_proxy and ev.port == server.ports[0]
    assert tunnels == [f"CONNECT 127.0.0.1:{server.ports[0]} HTTP/1.1".encode()]
