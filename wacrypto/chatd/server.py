"""The reference chat server ("chatd") for tests, benchmarks and operators.

It listens on several ports (standing in for 5222 and 443), runs the responder side of the Noise
handshake with its own certificate chain, answers pings, pings idle clients, acknowledges the
messages it receives, enforces one connection per client key (a second one replaces the first,
which gets a "conflict" stream error; a device served by stripe workers has one per stripe, see
:mod:`wacrypto.whatsapp.stripes`), and has fault switches for tests:

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
sender and id, and dropped when the recipient acknowledges that id. The acknowledged id is
remembered (for ``mailbox_ttl``, at most ``MAX_DELIVERED_REMEMBERED`` per recipient): a sender
whose own acknowledgement was lost sends the message again, and that copy is acknowledged without
being kept or delivered twice. The server stamps the sender's key, as authenticated by the
handshake, on what it delivers.

Any client with any Noise key may write to any mailbox, so a mailbox is shared out (each limit in
:mod:`wacrypto.limits`); a message over a limit is not acknowledged, so its sender keeps it (a
:class:`~wacrypto.chat.messenger.Messenger` keeps it in its outbox and sends it again later), and
nothing that was acknowledged is ever pushed out by a newer message:

* one sender may have at most ``mailbox_sender_limit`` messages waiting in one mailbox;
* senders the recipient has never written to (through this server) -- *strangers* -- share at
  most ``mailbox_stranger_limit`` of a mailbox; the rest of the ``mailbox_limit`` is kept for its
  *correspondents*, so a flood from strangers with many keys cannot keep them out;
* a message waits at most ``mailbox_ttl`` seconds for the recipient's acknowledgement, then it is
  dropped (what the recipient neither reads nor acknowledges does not hold its room for ever).

The recipient's side of this is the Messenger's: it acknowledges (drops for good) what can never be
read, garbage included, so a flood of garbage is cleared as soon as the recipient connects.

With ``relay=False`` (the default of the class; ``wacrypto chatd run`` relays unless given
``--no-relay``) the server records and acknowledges raw messages for tests, but leaves envelopes
unacknowledged: it cannot deliver them, and a sender that is told they were taken would drop them.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, final

import trio

from wacrypto.chatd.commit import Committer, Outcome
from wacrypto.chatd.db import ChatdDatabase
from wacrypto.chatd.service import ChatService, Out
from wacrypto.errors import InvalidArgumentError, PeerError, TransportError
from wacrypto.limits import (
    DEFAULT_MAILBOX_SENDER_LIMIT,
    DEFAULT_MAILBOX_STRANGER_LIMIT,
    DEFAULT_MAILBOX_TTL,
    DEFAULT_SEND_QUEUE,
    MAILBOX_LIMIT,
    MAX_CORRESPONDENTS,
    MAX_DELIVERED_REMEMBERED,
)
from wacrypto.primitives.keys import KeyPair, PrivateKey, PublicKey, Rng, system_rng
from wacrypto.transport.certs import CertChain
from wacrypto.chat.envelope import Envelope
from wacrypto.transport.chat_connection import (
    AckReceived,
    ChatConnection,
    ChatEvent,
    Connected,
    KeepaliveSettings,
    MessageReceived,
    NodeReceived,
)
from wacrypto.transport.noise_connection import NoiseConnection, ServerSettings
from wacrypto.transport.messages import Ack, ClientPayload, Message, StreamErrorCode
from wacrypto.chat.driver import ConnectionDriver, Outgoing
from wacrypto.whatsapp.jid import USER_SERVER, Jid
from wacrypto.wire.binary import Node

__all__ = ["MAILBOX_LIMIT", "ChatdServer", "Mailbox", "ServerKeys", "Session"]

_DAY: Final = 86400
_PUSH_BATCH: Final = 500  # stanzas read from a device's mailbox at a time
_DEVICE_QUEUE: Final = 4096  # stanzas queued for one logged-in device; a device that lets it fill is disconnected
_SWEEP_INTERVAL: Final = 60.0  # seconds between sweeps of every mailbox for expired messages
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
        except (TransportError, PeerError) as exc:  # a chain that does not parse
            raise InvalidArgumentError(f"bad key material in {directory}: {exc}") from exc
        # refuse to serve a chain that would not verify for our own key right now: our own files,
        # so a local configuration error (InvalidArgumentError), not a peer's (CertificateError)
        try:
            chain.verify(root_public, static.public, time.time())
        except PeerError as exc:
            raise InvalidArgumentError(f"the certificate chain in {directory} does not verify for its own key: {exc}") from exc
        return cls(static, chain, root_public)

    def __repr__(self) -> str:
        return f"ServerKeys(static={self.static.public.u.hex()}, root={self.root_public.u.hex()})"


def read_bytes_exact(path: Path, n: int) -> bytes:
    data = path.read_bytes()
    if len(data) != n:
        raise InvalidArgumentError(f"{path} must hold exactly {n} bytes")
    return data


_TRUST_FILE_MAX: Final = 1024  # a trust file is 64 hex digits and a newline; refuse to read more


def load_trust_file(path: Path) -> PublicKey:
    """A trust file holds the root public key as 64 hex digits (``chatd init`` writes ``root.pub``).

    Raises :class:`~wacrypto.errors.InvalidArgumentError` naming the file and what it should hold
    when it holds something else (a private key file, say), and ``OSError`` if it cannot be read."""
    expected = "the server's root public key as 64 hex digits (root.pub, written by `wacrypto chatd init`)"
    with path.open("rb") as f:
        data = f.read(_TRUST_FILE_MAX + 1)
    if len(data) > _TRUST_FILE_MAX:
        raise InvalidArgumentError(f"{path}: expected {expected}; this file is far too long for that")
    try:
        raw = bytes.fromhex(data.decode("ascii").strip())
    except UnicodeDecodeError:
        raise InvalidArgumentError(
            f"{path}: expected {expected}; this file holds binary data (a private key file such as root.key?)"
        ) from None
    except ValueError:
        raise InvalidArgumentError(f"{path}: expected {expected}; this file does not hold a hex key") from None
    if len(raw) == 33 and raw[0] == 5:
        raw = raw[1:]
    if len(raw) != 32:
        raise InvalidArgumentError(f"{path}: expected {expected}; it holds {len(raw)} bytes of hex, not 32")
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
@dataclass(slots=True)
class _Waiting:
    message: Message
    seq: int  # arrival number within its mailbox: a message re-added later is a new arrival
    sender: bytes
    stranger: bool  # counted in the strangers' share
    expires: float  # trio.current_time() after which it is dropped


@final
class Mailbox:
    """One recipient's messages waiting for its acknowledgement, in arrival order, with the counts
    the relay's limits are checked against."""

    __slots__ = ("_entries", "_per_sender", "from_strangers", "_seq", "_delivered")

    def __init__(self) -> None:
        self._entries: dict[str, _Waiting] = {}  # delivery id -> message, oldest first
        self._per_sender: dict[bytes, int] = {}
        self.from_strangers = 0
        self._seq = 0
        # acknowledged delivery ids -> until when they are remembered, oldest first (bounded): a
        # sender whose own ack was lost sends again, and that copy must not be delivered twice
        self._delivered: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, delivery_id: object) -> bool:
        return delivery_id in self._entries

    def ids(self) -> set[str]:
        return set(self._entries)

    def messages(self) -> list[tuple[str, Message]]:
        """(delivery id, message) of everything waiting, oldest first."""
        return [(did, w.message) for did, w in self._entries.items()]

    def arrivals(self) -> list[tuple[tuple[str, int], Message]]:
        """((delivery id, arrival number), message) of everything waiting, oldest first."""
        return [((did, w.seq), w.message) for did, w in self._entries.items()]

    def was_delivered(self, delivery_id: str, now: float) -> bool:
        """True if the recipient acknowledged this id (within the memory's time and size)."""
        until = self._delivered.get(delivery_id)
        return until is not None and until > now

    def delivered(self, delivery_id: str, until: float) -> bool:
        """The recipient acknowledged ``delivery_id``: drop it and remember the id until ``until``.
        False if it was not waiting."""
        if not self.remove(delivery_id):
            return False
        self._delivered[delivery_id] = until
        while len(self._delivered) > MAX_DELIVERED_REMEMBERED:
            del self._delivered[next(iter(self._delivered))]
        return True

    @property
    def remembered(self) -> int:
        """Acknowledged ids still remembered."""
        return len(self._delivered)

    def count_from(self, sender: bytes) -> int:
        return self._per_sender.get(sender, 0)

    def add(self, delivery_id: str, message: Message, sender: bytes, *, stranger: bool, expires: float) -> None:
        self._seq += 1
        self._entries[delivery_id] = _Waiting(message, self._seq, sender, stranger, expires)
        self._per_sender[sender] = self._per_sender.get(sender, 0) + 1
        self.from_strangers += stranger

    def remove(self, delivery_id: str) -> bool:
        w = self._entries.pop(delivery_id, None)
        if w is None:
            return False
        n = self._per_sender[w.sender] - 1
        if n:
            self._per_sender[w.sender] = n
        else:
            del self._per_sender[w.sender]
        self.from_strangers -= w.stranger
        return True

    def expire(self, now: float) -> int:
        """Drop the messages whose time is up (one TTL for all: they are the oldest), and forget
        acknowledged ids past theirs; returns how many messages were dropped."""
        while self._delivered:
            did, until = next(iter(self._delivered.items()))
            if until > now:
                break
            del self._delivered[did]
        gone = 0
        while self._entries:
            did, w = next(iter(self._entries.items()))
            if w.expires > now:
                break
            self.remove(did)
            gone += 1
        return gone

    def __repr__(self) -> str:
        return f"Mailbox(waiting={len(self._entries)}, senders={len(self._per_sender)}, from_strangers={self.from_strangers})"


@final
class ChatdServer:
    """The reference chat server; see the module docstring for the relay and its mailbox limits.

    ``mailbox_limit``, ``mailbox_sender_limit``, ``mailbox_stranger_limit`` and ``mailbox_ttl``
    (seconds on ``clock``, by default trio's) bound each relay mailbox; the defaults are in
    :mod:`wacrypto.limits`.

    The other parameters (docs/chat.md has a table of them all): ``keys``, the server's
    :class:`ServerKeys` (static key, certificate chain, root public key); ``keepalive``, its own
    pings to idle clients (default every 30 s +/- 5 s, pong deadline 20 s, dead socket 30 s);
    ``min_client_version``, below which a client gets the "client outdated" stream error;
    ``handshake_timeout``, seconds a connection may take to finish the handshake; ``rng`` and
    ``jitter_rng``, the handshake's and the keepalive jitter's randomness; ``on_event``, an
    ``async (session, event)`` observer of each ``Connected`` and each connection event;
    ``relay``, plain mode (False, the default here) or relay mode (``wacrypto chatd run``'s default).

    ``await nursery.start(server.serve, host, ports)`` listens (port 0: a free one) and reports the
    bound ports; :meth:`handle_stream` serves one connection over any trio stream. Everything is
    kept in memory, nothing on disk: :attr:`mailboxes` (recipient chat key -> :class:`Mailbox`),
    :attr:`sessions` (the live connection per client key), :attr:`all_sessions`,
    :attr:`handshakes`, :attr:`connection_errors` and the counters ``relay_rejected``,
    ``relay_refused``, ``relay_expired`` and ``undeliverable``; a restart empties the mailboxes.
    """

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
        mailbox_limit: int = MAILBOX_LIMIT,
        mailbox_sender_limit: int = DEFAULT_MAILBOX_SENDER_LIMIT,
        mailbox_stranger_limit: int = DEFAULT_MAILBOX_STRANGER_LIMIT,
        mailbox_ttl: float = DEFAULT_MAILBOX_TTL,
        clock: Callable[[], float] = trio.current_time,
        database: str | Path | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not (mailbox_limit >= 1 and mailbox_sender_limit >= 1 and mailbox_stranger_limit >= 1):
            raise InvalidArgumentError("mailbox limits must be at least 1")
        if not mailbox_ttl > 0:
            raise InvalidArgumentError("mailbox_ttl must be > 0 seconds")
        self.keys = keys
        self.relay = relay
        self.mailbox_limit = mailbox_limit
        self.mailbox_sender_limit = mailbox_sender_limit
        self.mailbox_stranger_limit = mailbox_stranger_limit
        self.mailbox_ttl = mailbox_ttl
        self._clock = clock  # what mailbox expiry is measured on
        # recipient chat key u -> its waiting messages, as delivered (in arrival order)
        self.mailboxes: dict[bytes, Mailbox] = {}
        # client chat key u -> the recipients it has written to, least recent first (bounded)
        self._wrote_to: dict[bytes, dict[bytes, None]] = {}
        self._next_sweep = 0.0
        self.relay_rejected = 0  # relay payloads that were not envelopes for a known-size key
        self.relay_refused = 0  # envelopes left unacknowledged because a mailbox limit was reached
        self.relay_expired = 0  # messages dropped from mailboxes unacknowledged after mailbox_ttl
        self.undeliverable = 0  # envelopes a non-relay server left unacknowledged
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
        # the WhatsApp stanza service (docs/chat-protocol.md), its state in a SQLite database
        self._wall = wall_clock
        self.db: ChatdDatabase | None = None
        self.service: ChatService | None = None
        self.committer: Committer | None = None
        self.slow_disconnects = 0  # devices disconnected because their send queue was full
        if database is not None:
            self.db = ChatdDatabase(database)
            self.committer = Committer(self.db)
            self.service = ChatService(self.db, mailbox_ttl=mailbox_ttl, mailbox_limit=mailbox_limit,
                                       mailbox_sender_limit=mailbox_sender_limit,
                                       mailbox_stranger_limit=mailbox_stranger_limit)
        self.devices: dict[Jid, dict[int, Session]] = {}  # logged-in device -> stripe -> its live session
        self.expired = 0  # stanzas dropped from device mailboxes after the TTL

    def close(self) -> None:
        """Close the database (after serving has ended)."""
        if self.db is not None:
            self.db.close()

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
            if self.committer is not None:
                await nursery.start(self.committer.run)
                nursery.start_soon(self._expire_waiting)
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
        try:
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
        finally:  # serving ended (cancelled): free the port now, not when the socket is collected
            listener.socket.close()

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
                payload = session.client_payload
                if self.service is not None and payload is not None and payload.username:
                    await self._serve_device(session, payload)
                elif self.relay and session.client_key is not None:
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
        if ev.client_payload is None or ev.client_payload.stripes == 1:
            # (a device's stripe connections share its key: _serve_device replaces those per stripe)
            old = self.sessions.get(key)
            if old is not None:
                await self._replace(old, "replaced by a new connection")
            self.sessions[key] = session
        self.all_sessions.append(session)
        self.session_started.set()
        self.session_started = trio.Event()
        if self._on_event is not None:
            await self._on_event(session, ev)

    async def _handle_event(self, session: Session, ev: ChatEvent) -> None:
        if isinstance(ev, MessageReceived):
            if self.relay:
                take = self._relay(session, ev)
            elif self._is_envelope(ev.payload):
                take = False  # nobody to deliver it to: unacknowledged, its sender keeps it
                self.undeliverable += 1
            else:
                take = True
                session.received.append(ev)
            if take:
                # the reference server "persists" by keeping it in memory; the ack is never dropped
                # (waiting for room applies backpressure to this client's reads)
                try:
                    await session.out_send.send(Ack(ev.id))
                except (trio.ClosedResourceError, trio.BrokenResourceError):
                    pass
        elif isinstance(ev, AckReceived):
            if self.relay and session.client_key is not None:
                key = session.client_key.u
                box = self.mailboxes.get(key)
                if box is not None:  # kept while it remembers acknowledged ids (the sweep drops it)
                    box.delivered(ev.id, self._clock() + self.mailbox_ttl)
            else:
                session.acks.append(ev.id)
        if self._on_event is not None:
            await self._on_event(session, ev)

    # ------------------------------------------------------------------ WhatsApp stanzas
    async def _serve_device(self, session: Session, payload: ClientPayload) -> None:
        """One logged-in device: login, its mailbox pushed, then its stanzas through the service
        (every call into it through the :class:`~wacrypto.chatd.commit.Committer`)."""
        service, committer = self.service, self.committer
        assert service is not None and committer is not None and session.client_key is not None
        driver = session.driver
        key, now = session.client_key.u, self._wall()
        stripe, stripes = payload.stripe, payload.stripes
        result = await committer.call(lambda: service.login(payload.username, payload.server or USER_SERVER,
                                                            payload.device, key, now, stripe=stripe, stripes=stripes))
        if not result.ok:
            assert result.failure is not None
            driver.conn.send(result.failure, trio.current_time())
            await driver.flush()
            return
        device = Jid(payload.username, payload.server or USER_SERVER, payload.device)
        conns = self.devices.setdefault(device, {})
        if any(s.client_payload is None or s.client_payload.stripes != stripes for s in conns.values()):
            replaced = list(conns.values())  # served another way now (another stripe count): all of them
        else:
            replaced = [conns[stripe]] if stripe in conns else []
        for old in replaced:
            if old is not session:
                await self._replace(old)
        conns = self.devices.setdefault(device, {})  # (a replaced one's own exit may have dropped it)
        for i in [i for i, s in conns.items() if s in replaced]:
            del conns[i]
        # a logged-in device's queue is deep (deliveries are queued without waiting, after commit)
        session.out_send, session.out_recv = trio.open_memory_channel[Outgoing](_DEVICE_QUEUE)
        conns[stripe] = session
        assert result.success is not None
        session.send(result.success)
        ended: TransportError | None = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._push_waiting, session, device, stripe)
                try:
                    await driver.run(session.out_recv, lambda ev: self._device_event(session, device, stripe, ev))
                except TransportError as exc:
                    ended = exc
                nursery.cancel_scope.cancel()
        finally:
            conns = self.devices.get(device, {})
            if conns.get(stripe) is session:
                del conns[stripe]
                if not conns:
                    del self.devices[device]
            service.disconnected(device, result.session)
        if ended is not None:
            raise ended

    async def _device_event(self, session: Session, device: Jid, stripe: int, ev: ChatEvent) -> None:
        service, committer = self.service, self.committer
        assert service is not None and committer is not None
        if isinstance(ev, NodeReceived):
            node, now = ev.node, self._wall()

            def handle() -> list[Out] | None:
                if not service.is_online(device, stripe):  # removed (or replaced) meanwhile
                    return None
                return service.handle(device, node, now, stripe=stripe)

            def then(res: Outcome[list[Out] | None]) -> None:
                if res.error is not None or res.value is None:  # this connection is over
                    session.cancel_scope.cancel()
                    return
                self._deliver(res.value)

            await committer.submit(handle, then)  # the reader goes on; the outcome comes after commit
        if self._on_event is not None:
            await self._on_event(session, ev)

    async def _replace(self, old: Session, text: str = "") -> None:
        """End ``old`` with a conflict stream error: a newer connection took its place."""
        old.driver.conn.send_stream_error(StreamErrorCode.CONFLICT, text)
        try:
            await old.driver.flush()
        except TransportError:
            pass
        old.cancel_scope.cancel()

    def _deliver(self, outs: Iterable[Out]) -> None:
        """Queue committed stanzas to their online devices' connections (of the stripe each names), in
        order, without waiting: a connection whose queue is full is ended (what it missed waits in the
        mailbox for its next login)."""
        for out in outs:
            conns = self.devices.get(out.target)
            if not conns:
                continue
            if out.stripe < 0:
                dests = list(conns.values())
            else:
                one = conns.get(out.stripe)
                dests = [] if one is None else [one]
            for dest in dests:
                try:
                    dest.out_send.send_nowait(out.node)
                except trio.WouldBlock:
                    self.slow_disconnects += 1
                    dest.cancel_scope.cancel()
                except (trio.ClosedResourceError, trio.BrokenResourceError):
                    pass

    async def _push_waiting(self, session: Session, device: Jid, stripe: int) -> None:
        """Push what waited for ``device``, a page at a time (queued after commit, in order with the
        live deliveries); once it has caught up, the service hands new deliveries out at once."""
        service, committer = self.service, self.committer
        assert service is not None and committer is not None
        while True:
            while session.out_send.statistics().current_buffer_used > _DEVICE_QUEUE - 2 * _PUSH_BATCH:
                await trio.sleep(0.01)  # let the connection take what is queued first
            now = self._wall()
            _, done = await committer.call(
                lambda: service.pending_page(device, now, limit=_PUSH_BATCH, stripe=stripe),
                lambda res: self._deliver(Out(device, n, stripe) for n in (res.value[0] if res.value else ())))
            if done:
                return

    async def _expire_waiting(self) -> None:
        """Drop what waited longer than the service's mailbox TTL, every minute."""
        service, committer = self.service, self.committer
        assert service is not None and committer is not None
        while True:
            now = self._wall()
            self.expired += await committer.call(lambda: service.expire(now))
            await trio.sleep(_SWEEP_INTERVAL)

    # ------------------------------------------------------------------ delivery
    @staticmethod
    def delivery_id(sender: bytes, message_id: str) -> str:
        """The id a relayed message is delivered (and acknowledged) under: one per (sender, id), so
        two senders' ids never collide and a resend keeps its id."""
        return hashlib.sha256(bytes(sender) + b"\x00" + message_id.encode()).hexdigest()[:40]

    @staticmethod
    def _is_envelope(payload: bytes) -> bool:
        try:
            Envelope.from_bytes(payload)
        except PeerError:
            return False
        return True

    def _relay(self, session: Session, ev: MessageReceived) -> bool:
        """Keep ``ev`` for its recipient; False (no ack: the sender keeps it and retries) if a limit
        of the recipient's mailbox is reached. Payloads that are not envelopes are acknowledged and
        dropped."""
        assert session.client_key is not None
        try:
            env = Envelope.from_bytes(ev.payload)
        except PeerError:
            self.relay_rejected += 1
            return True
        sender = session.client_key.u
        now = self._clock()
        self._sweep(now)
        self._note_correspondent(sender, env.recipient)
        did = self.delivery_id(sender, ev.id)
        box = self.mailboxes.get(env.recipient)
        if box is None:
            box = self.mailboxes[env.recipient] = Mailbox()
        else:
            self.relay_expired += box.expire(now)
        if did in box or box.was_delivered(did, now):
            return True  # a resend of a message still waiting or already delivered: keep the first
        stranger = sender not in self._wrote_to.get(env.recipient, {})
        if (
            len(box) >= self.mailbox_limit
            or box.count_from(sender) >= self.mailbox_sender_limit
            or (stranger and box.from_strangers >= self.mailbox_stranger_limit)
        ):
            self.relay_refused += 1
            return False
        box.add(did, Message(did, env.stamped(sender).to_bytes()), sender, stranger=stranger,
                expires=now + self.mailbox_ttl)
        self._mail_event(env.recipient).set()
        return True

    def _note_correspondent(self, sender: bytes, recipient: bytes) -> None:
        """``sender`` wrote to ``recipient``: from now on ``recipient`` is no stranger in ``sender``'s
        mailbox. The most recent MAX_CORRESPONDENTS recipients per client are remembered."""
        seen = self._wrote_to.get(sender)
        if seen is None:
            seen = self._wrote_to[sender] = {}
        seen.pop(recipient, None)
        seen[recipient] = None
        if len(seen) > MAX_CORRESPONDENTS:
            del seen[next(iter(seen))]

    def _sweep(self, now: float) -> None:
        """Drop expired messages from every mailbox, at most once per _SWEEP_INTERVAL (mailboxes
        that nobody writes to or reads from would otherwise keep them)."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + min(_SWEEP_INTERVAL, self.mailbox_ttl)
        for key, box in list(self.mailboxes.items()):
            self.relay_expired += box.expire(now)
            if not box and not box.remembered:
                del self.mailboxes[key]

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
        # what this connection was given, by (delivery id, arrival number): a message that left the
        # mailbox and arrived again (its id forgotten meanwhile) is pushed again
        pushed: set[tuple[str, int]] = set()
        while True:
            changed = self._mail_event(key)
            box = self.mailboxes.get(key)
            if box is not None:
                self.relay_expired += box.expire(self._clock())
                for arrival, msg in box.arrivals():
                    if arrival not in pushed and arrival[0] in box:
                        pushed.add(arrival)
                        try:
                            await session.out_send.send(msg)
                        except (trio.ClosedResourceError, trio.BrokenResourceError):
                            return
                pushed &= {a for a, _ in box.arrivals()}
            box = self.mailboxes.get(key)
            if box is None or not ({a for a, _ in box.arrivals()} - pushed):
                await changed.wait()

    def pending(self, client_key: PublicKey) -> int:
        """Messages waiting in ``client_key``'s mailbox (relay mode), expired ones not counted."""
        box = self.mailboxes.get(client_key.u)
        if box is None:
            return 0
        try:
            self.relay_expired += box.expire(self._clock())
        except RuntimeError:  # trio's clock, called outside trio: expiry waits for the next call inside
            pass
        return len(box)

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

    def live_sessions(self) -> list[Session]:
        """Every live connection: by client key, and the stripe connections of devices (which share one)."""
        out = {id(s): s for s in self.sessions.values()}
        out.update({id(s): s for conns in self.devices.values() for s in conns.values()})
        return list(out.values())

    def silence(self) -> None:
        """Existing connections stop reading and writing (the sockets stay open)."""
        for s in self.live_sessions():
            s.silent = True

    def drop_connections(self) -> None:
        """Abort every live connection."""
        for s in self.live_sessions():
            s.cancel_scope.cancel()

    def send_stream_error(self, code: StreamErrorCode, text: str = "") -> None:
        """End every live stream with ``code`` (each connection closes once it is flushed)."""
        for s in self.live_sessions():
            try:
                s.driver.conn.send_stream_error(code, text)
            except TransportError:
                continue
            s.send(None)  # wake the writer: it flushes, sees the connection closed, and ends

    def status(self) -> str:
        return json.dumps({"ports": self.ports, "sessions": len(self.live_sessions()), "handshakes": self.handshakes})
