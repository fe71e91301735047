"""The reference chat server ("chatd") for tests, benchmarks and operators.

It listens on several ports (standing in for 5222 and 443), runs the responder side of the Noise
handshake with its own certificate chain, answers pings, pings idle clients, acknowledges the
messages it receives, enforces one connection per client key (a second one replaces the first,
which gets a "conflict" stream error), and has fault switches for tests:

* :meth:`ChatdServer.refuse_port` / :meth:`reopen_port` -- close a listener (connections refused);
* :meth:`ChatdServer.stall_port` -- accept TCP on a port but never answer the handshake;
* :meth:`ChatdServer.silence` -- existing connections stop reading and writing (a half-open
  socket as seen from the client); new connections are served normally;
* :meth:`ChatdServer.drop_connections` -- abort every connection at once;
* :meth:`ChatdServer.send_stream_error` -- end every stream with a code (conflict, logged out...).

With ``relay=True`` it also carries messages between its clients: a message whose payload is an
:class:`~wacrypto.chat.envelope.Envelope` naming a recipient's chat key is kept in that recipient's
mailbox (acknowledged to the sender once kept, de-duplicated by sender and id), pushed in order
whenever the recipient is connected (again after each reconnect) under a delivery id derived from
sender and id, and dropped when the recipient acknowledges that id. The server stamps the sender's
key, as authenticated by the handshake, on what it delivers.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, final

import trio

from wacrypto.errors import InvalidArgumentError, PeerError, TransportError
from wacrypto.limits import DEFAULT_SEND_QUEUE
from wacrypto.primitives.keys import KeyPair, PrivateKey, PublicKey, Rng, system_rng
from wacrypto.transport.certs import CertChain
from wacrypto.chat.envelope import Envelope
from wacrypto.transport.connection import (
    AckReceived,
    ChatConnection,
    ChatEvent,
    Connected,
    KeepaliveSettings,
    MessageReceived,
    NoiseConnection,
    ServerSettings,
)
from wacrypto.transport.messages import Ack, ClientPayload, Message, StreamErrorCode
from wacrypto.chat.driver import ConnectionDriver, Outgoing

__all__ = ["ChatdServer", "ServerKeys", "Session"]

_DAY: Final = 86400
MAILBOX_LIMIT: Final = 100_000  # messages waiting per recipient (relay mode); beyond it senders retry
ROOT_KEY_FILE: Final = "root.key"
ROOT_PUB_FILE: Final = "root.pub"  # what clients trust: hex of the 32-byte root public key
SERVER_KEY_FILE: Final = "server.key"
INTERMEDIATE_KEY_FILE: Final = "intermediate.key"
CHAIN_FILE: Final = "certchain.bin"


@final
@dataclass(frozen=True, slots=True)
class ServerKeys:
    """The server's static key, its certificate chain and the root public key clients trust."""

    static: KeyPair
    chain: CertChain
    root_public: PublicKey

    @classmethod
    def generate(
        cls,
        *,
        now: float | None = None,
        leaf_days: int = 365,
        intermediate_days: int = 3650,
        rng: Rng = system_rng,
    ) -> tuple[ServerKeys, KeyPair, KeyPair]:
        """New root, intermediate and static keys and a chain; returns (keys, root, intermediate)."""
        t = int(time.time() if now is None else now)
        root = KeyPair.generate(rng)
        inter = KeyPair.generate(rng)
        static = KeyPair.generate(rng)
        chain = CertChain.create(
            root.private,
            inter.private,
            static.public,
            not_before=t - _DAY,  # tolerate clients whose clock is a little behind
            intermediate_not_after=t + intermediate_days * _DAY,
            leaf_not_after=t + leaf_days * _DAY,
            rng=rng,
        )
        return cls(static, chain, root.public), root, inter

    def save(self, directory: Path, root: KeyPair, intermediate: KeyPair) -> None:
        """Write the key material (private files mode 0600) and ``root.pub`` for clients."""
        directory.mkdir(parents=True, exist_ok=True)

        def secret(name: str, data: bytes) -> None:
            path = directory / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)

        secret(ROOT_KEY_FILE, root.private.to_bytes())
        secret(INTERMEDIATE_KEY_FILE, intermediate.private.to_bytes())
        secret(SERVER_KEY_FILE, self.static.private.to_bytes())
        (directory / CHAIN_FILE).write_bytes(self.chain.to_bytes())
        (directory / ROOT_PUB_FILE).write_text(self.root_public.u.hex() + "\n")

    @classmethod
    def load(cls, directory: Path) -> ServerKeys:
        try:
            static = KeyPair(PrivateKey(read_bytes_exact(directory / SERVER_KEY_FILE, 32)))
            chain = CertChain.from_bytes((directory / CHAIN_FILE).read_bytes())
            root_public = load_trust_file(directory / ROOT_PUB_FILE)
        except TransportError as exc:
            raise InvalidArgumentError(f"bad key material in {directory}: {exc}") from exc
        # refuse to serve a chain that would not verify for our own key right now
        chain.verify(root_public, static.public, time.time())
        return cls(static, chain, root_public)

    def __repr__(self) -> str:
        return f"ServerKeys(static={self.static.public.u.hex()}, root={self.root_public.u.hex()})"


def read_bytes_exact(path: Path, n: int) -> bytes:
    data = path.read_bytes()
    if len(data) != n:
        raise InvalidArgumentError(f"{path} must hold exactly {n} bytes")
    return data


def load_trust_file(path: Path) -> PublicKey:
    """A trust file holds the root public key as 64 hex digits (``chatd init`` writes ``root.pub``)."""
    text = path.read_text().strip()
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise InvalidArgumentError(f"{path} does not hold a hex key") from None
    if len(raw) == 33 and raw[0] == 5:
        raw = raw[1:]
    if len(raw) != 32:
        raise InvalidArgumentError(f"{path} must hold a 32-byte root public key in hex")
    return PublicKey(raw)


@final
class Session:
    """One client connection as the server sees it."""

    def __init__(self, server: ChatdServer, driver: ConnectionDriver, port: int | None) -> None:
        self.server = server
        self.driver = driver
        self.port = port
        self.client_key: PublicKey | None = None
        self.client_payload: ClientPayload | None = None
        self.silent = False
        self.cancel_scope = trio.CancelScope()
        self.out_send, self.out_recv = trio.open_memory_channel[Outgoing](DEFAULT_SEND_QUEUE)
        self.received: list[MessageReceived] = []
        self.acks: list[str] = []

    async def gate(self) -> None:
        if self.silent:
            await trio.sleep_forever()

    def send(self, item: Outgoing) -> None:
        """Queue a stanza for this client (drops it if the queue is full)."""
        try:
            self.out_send.send_nowait(item)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    def __repr__(self) -> str:
        key = self.client_key.u.hex()[:16] if self.client_key else "?"
        return f"Session(client={key}, port={self.port})"


@final
class ChatdServer:
    def __init__(
        self,
        keys: ServerKeys,
        *,
        keepalive: KeepaliveSettings | None = None,
        min_client_version: tuple[int, int, int] = (0, 0, 0),
        handshake_timeout: float = 10.0,
        rng: Rng = system_rng,
        jitter_rng: Callable[[], float] = random.random,
        on_event: Callable[[Session, ChatEvent], Awaitable[None]] | None = None,
        relay: bool = False,
    ) -> None:
        self.keys = keys
        self.relay = relay
        # recipient chat key u -> message id -> the message as delivered (in arrival order)
        self.mailboxes: dict[bytes, dict[str, Message]] = {}
        self.relay_rejected = 0  # relay payloads that were not envelopes for a known-size key
        self._mail: dict[bytes, trio.Event] = {}  # recipient u -> set when its mailbox gains a message
        self._settings = ServerSettings(keys.static, keys.chain)
        self._keepalive = keepalive or KeepaliveSettings(interval=30.0, jitter=5.0, deadline=20.0, dead_socket=30.0)
        self._min_version = min_client_version
        self._handshake_timeout = handshake_timeout
        self._rng = rng
        self._jitter_rng = jitter_rng
        self._on_event = on_event
        self.sessions: dict[bytes, Session] = {}  # client static u -> its live session
        self.all_sessions: list[Session] = []
        self.handshakes = 0
        self.connection_errors: list[TransportError] = []
        self._listeners: dict[int, tuple[trio.SocketListener, trio.CancelScope]] = {}
        self._stalled: set[int] = set()
        self._nursery: trio.Nursery | None = None
        self._host = "127.0.0.1"
        self.session_started = trio.Event()

    # ------------------------------------------------------------------ serving
    @property
    def ports(self) -> list[int]:
        return sorted(self._listeners)

    async def serve(
        self,
        host: str,
        ports: list[int],
        *,
        task_status: trio.TaskStatus[list[int]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``ports`` (0 picks a free one) until cancelled; reports the bound ports."""
        self._host = host
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            bound = []
            for port in ports:
                bound.append(await self._open_port(port))
            task_status.started(bound)
            await trio.sleep_forever()

    async def _open_port(self, port: int) -> int:
        assert self._nursery is not None
        listeners = await trio.open_tcp_listeners(port, host=self._host)
        listener = listeners[0]
        for extra in listeners[1:]:  # pragma: no cover - one address for an explicit host
            await extra.aclose()
        actual: int = listener.socket.getsockname()[1]
        scope = trio.CancelScope()
        self._listeners[actual] = (listener, scope)
        self._nursery.start_soon(self._accept_loop, listener, scope, actual)
        return actual

    async def _accept_loop(self, listener: trio.SocketListener, scope: trio.CancelScope, port: int) -> None:
        assert self._nursery is not None
        with scope:
            while True:
                try:
                    stream = await listener.accept()
                except (trio.ClosedResourceError, OSError):
                    return
                if port in self._stalled:
                    self._nursery.start_soon(self._hold_silently, stream)
                else:
                    self._nursery.start_soon(self.handle_stream, stream, port)

    @staticmethod
    async def _hold_silently(stream: trio.abc.Stream) -> None:
        try:
            while await stream.receive_some(65536):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async def handle_stream(self, stream: trio.abc.Stream, port: int | None = None) -> None:
        """Serve one client connection on ``stream`` (any trio stream) until it ends."""
        noise = NoiseConnection(self._settings, rng=self._rng)
        conn = ChatConnection(noise, now=trio.current_time(), keepalive=self._keepalive, jitter_rng=self._jitter_rng)
        session: Session | None = None
        try:
            with trio.fail_after(self._handshake_timeout):
                driver = ConnectionDriver(stream, conn)
                session = Session(self, driver, port)
                driver.gate = session.gate
                connected = await driver.handshake()
            self.handshakes += 1
            await self._on_connected(session, connected)
            with session.cancel_scope:
                if self.relay and session.client_key is not None:
                    ended: TransportError | None = None
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._pump, session)
                        try:
                            await driver.run(session.out_recv, lambda ev: self._handle_event(session, ev))
                        except TransportError as exc:  # re-raised below, not as a group
                            ended = exc
                        nursery.cancel_scope.cancel()
                    if ended is not None:
                        raise ended
                else:
                    await driver.run(session.out_recv, lambda ev: self._handle_event(session, ev))
        except TransportError as exc:
            self.connection_errors.append(exc)
        except trio.TooSlowError:
            pass
        finally:
            if session is not None and session.client_key is not None:
                key = session.client_key.u
                if self.sessions.get(key) is session:
                    del self.sessions[key]
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)

    async def _on_connected(self, session: Session, ev: Connected) -> None:
        session.client_key = ev.remote_static
        session.client_payload = ev.client_payload
        conn = session.driver.conn
        if ev.client_payload is not None and ev.client_payload.version < self._min_version:
            conn.send_stream_error(StreamErrorCode.CLIENT_OUTDATED, "upgrade the client")
            await session.driver.flush()
            session.cancel_scope.cancel()
            return
        key = ev.remote_static.u
        old = self.sessions.get(key)
        if old is not None:
            old.driver.conn.send_stream_error(StreamErrorCode.CONFLICT, "replaced by a new connection")
            try:
                await old.driver.flush()
            except TransportError:
                pass
            old.cancel_scope.cancel()
        self.sessions[key] = session
        self.all_sessions.append(session)
        self.session_started.set()
        self.session_started = trio.Event()
        if self._on_event is not None:
            await self._on_event(session, ev)

    async def _handle_event(self, session: Session, ev: ChatEvent) -> None:
        if isinstance(ev, MessageReceived):
            if not self.relay:
                session.received.append(ev)
            if not self.relay or self._relay(session, ev):
                # the reference server "persists" by keeping it in memory; the ack is never dropped
                # (waiting for room applies backpressure to this client's reads)
                try:
                    await session.out_send.send(Ack(ev.id))
                except (trio.ClosedResourceError, trio.BrokenResourceError):
                    pass
        elif isinstance(ev, AckReceived):
            if self.relay and session.client_key is not None:
                box = self.mailboxes.get(session.client_key.u)
                if box is not None:
                    box.pop(ev.id, None)
            else:
                session.acks.append(ev.id)
        if self._on_event is not None:
            await self._on_event(session, ev)

    # ------------------------------------------------------------------ delivery
    @staticmethod
    def delivery_id(sender: bytes, message_id: str) -> str:
        """The id a relayed message is delivered (and acknowledged) under: one per (sender, id), so
        two senders' ids never collide and a resend keeps its id."""
        return hashlib.sha256(bytes(sender) + b"\x00" + message_id.encode()).hexdigest()[:40]

    def _relay(self, session: Session, ev: MessageReceived) -> bool:
        """Keep ``ev`` for its recipient; False (no ack: the sender keeps it and retries) if the
        recipient's mailbox is full. Payloads that are not envelopes are acknowledged and dropped."""
        assert session.client_key is not None
        try:
            env = Envelope.from_bytes(ev.payload)
        except PeerError:
            self.relay_rejected += 1
            return True
        sender = session.client_key.u
        did = self.delivery_id(sender, ev.id)
        box = self.mailboxes.setdefault(env.recipient, {})
        if did in box:
            return True  # a resend of a message still waiting: keep the first
        if len(box) >= MAILBOX_LIMIT:
            return False
        box[did] = Message(did, env.stamped(sender).to_bytes())
        self._mail_event(env.recipient).set()
        return True

    def _mail_event(self, recipient: bytes) -> trio.Event:
        ev = self._mail.get(recipient)
        if ev is None or ev.is_set():
            ev = self._mail[recipient] = trio.Event()
        return ev

    async def _pump(self, session: Session) -> None:
        """Push the recipient's mailbox to this connection, in order, as fast as it takes them
        (everything still waiting is pushed again on each new connection)."""
        assert session.client_key is not None
        key = session.client_key.u
        pushed: set[str] = set()
        while True:
            changed = self._mail_event(key)
            box = self.mailboxes.get(key, {})
            pushed &= box.keys()
            for did, msg in list(box.items()):
                if did not in pushed and did in box:
                    pushed.add(did)
                    try:
                        await session.out_send.send(msg)
                    except (trio.ClosedResourceError, trio.BrokenResourceError):
                        return
            if not any(did not in pushed for did in self.mailboxes.get(key, {})):
                await changed.wait()

    def pending(self, client_key: PublicKey) -> int:
        """Messages waiting in ``client_key``'s mailbox (relay mode)."""
        return len(self.mailboxes.get(client_key.u, {}))

    def deliver(self, client_key: PublicKey, msg_id: str, payload: bytes) -> bool:
        """Push an application message to a connected client; False if it is not connected."""
        session = self.sessions.get(client_key.u)
        if session is None:
            return False
        session.send(Message(msg_id, payload))
        return True

    # ------------------------------------------------------------------ fault switches
    async def refuse_port(self, port: int) -> None:
        """Close the listener on ``port``: new connections there are refused."""
        entry = self._listeners.pop(port, None)
        if entry is not None:
            listener, scope = entry
            scope.cancel()
            await listener.aclose()

    async def reopen_port(self, port: int) -> None:
        if port not in self._listeners:
            await self._open_port(port)

    def stall_port(self, port: int, stalled: bool = True) -> None:
        """Accept TCP connections on ``port`` but never answer them."""
        (self._stalled.add if stalled else self._stalled.discard)(port)

    def silence(self) -> None:
        """Existing connections stop reading and writing (the sockets stay open)."""
        for s in list(self.sessions.values()):
            s.silent = True

    def drop_connections(self) -> None:
        """Abort every live connection."""
        for s in list(self.sessions.values()):
            s.cancel_scope.cancel()

    def send_stream_error(self, code: StreamErrorCode, text: str = "") -> None:
        """End every live stream with ``code`` (each connection closes once it is flushed)."""
        for s in list(self.sessions.values()):
            try:
                s.driver.conn.send_stream_error(code, text)
            except TransportError:
                continue
            s.send(None)  # wake the writer: it flushes, sees the connection closed, and ends

    def status(self) -> str:
        return json.dumps({"ports": self.ports, "sessions": len(self.sessions), "handshakes": self.handshakes})
