"""End-to-end messaging over the chat connection that loses nothing: durable outbox, exactly-once inbox.

:class:`Messenger` joins a :class:`~wacrypto.session.cipher.SessionCipher` (its key store) and a
:class:`~wacrypto.chat.ChatClient` talking to a relaying chatd:

* **send**: :meth:`Messenger.send` encrypts with :meth:`SessionCipher.encrypt_durable`, so the
  ciphertext is in the store's outbox in the same transaction as the ratchet step; :meth:`run` hands
  the outbox to the connection in order. The outbox row is deleted only when the server acknowledges
  the message; after every (re)connection, after a restart and after RESEND_AFTER seconds without an
  acknowledgement, what is still in the outbox is sent again. A message is therefore sent at least
  once, and never encrypted twice.
* **receive**: delivered envelopes are decrypted with :meth:`SessionCipher.decrypt_once_many` (a
  sender's queued messages in one transaction; each plaintext stored with its ratchet step), given to
  the application's ``on_message``, then marked handled and acknowledged to the server (in batches). A redelivery before the acknowledgement returns the stored
  plaintext (``on_message`` sees it again only if it had not returned); after it, the duplicate is
  acknowledged and dropped. The application sees each message exactly once as long as its handler
  is idempotent across a crash between its own commit and ours.
* **unreadable**: what cannot be read goes to ``on_dropped``; what can never become readable
  (garbage, forgeries) is acknowledged so the server forgets it, what fixing local state may make
  readable (an unknown sender, a missing session) stays with the server: see :class:`Dropped`.

Who is who: chatd routes by chat key (the 32-byte static key of each client's Noise connection);
a :class:`Directory` maps Signal addresses to chat keys (in a deployment it comes from the server's
registry; the demo and tests fill it in directly).
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final, final

import trio

from wacrypto.address import Address
from wacrypto.chat.client import ChatClient, ChatClientConfig, open_chat_client
from wacrypto.chat.events import ClientEvent, ClientState, StateChanged
from wacrypto.chat.metrics import MessengerMetrics
from wacrypto.session.cipher import SessionCipher
from wacrypto.errors import (
    DuplicateMessageError,
    InvalidArgumentError,
    InvalidMessageError,
    MissingStateError,
    PeerError,
    TransportError,
    UntrustedIdentityError,
)
from wacrypto.store.protocols import OutboxEntry
from wacrypto.transport.chat_connection import AckReceived, MessageReceived
from wacrypto.chat.envelope import CHAT_KEY_LEN, Envelope

__all__ = ["Directory", "Dropped", "Messenger", "open_messenger"]

OUTBOX_BATCH: Final = 500  # outbox rows re-sent per store read after a (re)connection
RESEND_AFTER: Final = 30.0  # seconds without the server's ack before a message is sent again
RECEIVE_BATCH: Final = 256  # delivered messages read per store transaction, at most
MARK_ON_EXIT_TIMEOUT: Final = 5.0  # seconds run() may take on exit to mark what was handled


@final
class Directory:
    """Signal address <-> chat key (the 32-byte u of a client's Noise static key)."""

    def __init__(self) -> None:
        self._keys: dict[Address, bytes] = {}
        self._addresses: dict[bytes, Address] = {}

    def add(self, address: Address, chat_key: bytes) -> None:
        if len(chat_key) != CHAT_KEY_LEN:
            raise InvalidArgumentError("a chat key is 32 bytes")
        self._keys[address] = bytes(chat_key)
        self._addresses[bytes(chat_key)] = address

    def chat_key(self, address: Address) -> bytes | None:
        return self._keys.get(address)

    def address(self, chat_key: bytes) -> Address | None:
        return self._addresses.get(bytes(chat_key))

    def __repr__(self) -> str:
        return f"Directory(entries={len(self._keys)})"


@final
@dataclass(frozen=True, slots=True)
class Dropped:
    """A delivered message that cannot be read now.

    ``final`` (acknowledged, so the server forgets it) when it can never become readable here:

    * the payload is not an envelope, or carries no sender stamp from the server;
    * the body is not a Signal message of the envelope's type at all (from any sender, known or not:
      no state fetched later can decrypt bytes that do not even parse);
    * from a sender in the directory: decryption fails for good (forged, garbled, replayed, or a
      version we do not speak).

    Not final (left with the server, delivered again after a reconnect, until chatd's
    ``mailbox_ttl``) when fixing local state may make it readable:

    * a well-formed Signal message from a chat key the directory does not know (yet): add the
      sender to the :class:`Directory`;
    * no session, no prekey or signed prekey (:class:`~wacrypto.errors.MissingStateError`), or an
      identity key that changed (:class:`~wacrypto.errors.UntrustedIdentityError`): fetch or trust
      it, then reconnect.

    So a stranger's garbage is cleared from the mailbox as soon as it is seen, and what a stranger
    can leave there is bounded by chatd's per-sender and strangers' shares (see
    :mod:`wacrypto.chatd.server`).
    """

    message_id: str
    sender: Address | None  # None: the chat key is not in the directory (or there is none)
    error: PeerError | MissingStateError  # InvalidMessageError for an unknown sender
    final: bool  # True: acknowledged and gone; False: left with the server (see above)


OnMessage = Callable[[Address, bytes], Awaitable[None]]


@final
@dataclass(frozen=True, slots=True)
class MessengerHealth:
    """What :meth:`Messenger.health` reports (also the ``wacrypto_outbox_depth`` gauge)."""

    state: str  # the chat connection: connected, connecting, backoff, closed...
    outbox_depth: int  # messages the server has not acknowledged yet
    oldest_outbox_age: float  # seconds since the oldest of them was sent (0 when empty)
    in_flight: int  # sent on this connection, acknowledgement awaited
    sent: int
    acked: int
    delivered: int
    dropped: int
    reconnects: int


@final
class Messenger:
    """Durable send and exactly-once receive over ``client`` (see the module docstring).

    :meth:`run` must be running (it consumes ``client.events()``): start it in a nursery with
    ``await nursery.start(messenger.run)``. ``on_dropped`` hears about messages that cannot be read,
    ``on_event`` about the connection's other events (state changes, failed ports, pongs).
    An exception from ``on_message`` ends :meth:`run`; the message stays stored and unacknowledged,
    so it is delivered again (from the store, not decrypted twice) after the next start.
    """

    def __init__(
        self,
        cipher: SessionCipher,
        client: ChatClient,
        directory: Directory,
        on_message: OnMessage,
        *,
        on_dropped: Callable[[Dropped], Awaitable[None]] | None = None,
        on_event: Callable[[ClientEvent], Awaitable[None]] | None = None,
        metrics: MessengerMetrics | None = None,
    ) -> None:
        self.cipher = cipher
        self.metrics = metrics
        self.client = client
        self.directory = directory
        self._on_message = on_message
        self._on_dropped = on_dropped
        self._on_event = on_event
        self.sent = 0  # messages handed to the connection (resends included)
        self.acked = 0  # outbox rows deleted on the server's acknowledgement
        self.delivered = 0  # messages given to on_message and acknowledged
        self.dropped = 0
        self._queue: deque[tuple[str, bytes, int, bytes]] = deque()  # (id, chat key, type, body) to send
        self._inflight: dict[str, float] = {}  # sent on the current connection, not acknowledged: when
        self._acked_ids: set[str] = set()  # acknowledged, outbox row not deleted yet: never resend
        self._unsendable: set[str] = set()  # outbox rows whose recipient has no chat key (this connection)
        self._resend = True  # re-read the outbox before sending anything else
        self._wake = trio.Event()
        self._acks: deque[str] = deque()  # acks to send (by their own task: never block the event loop)
        self._ack_wake = trio.Event()
        # handled messages waiting for their batched mark + ack, and acknowledged outbox rows
        # waiting for their batched delete (a crash before either only causes a redelivery / resend)
        self._handled: list[tuple[Address, bytes, str]] = []
        self._handled_digests: set[bytes] = set()
        self._handled_wake = trio.Event()
        self._to_remove: list[str] = []
        self._removed_wake = trio.Event()
        self._received_at: dict[bytes, float] = {}  # handled, not yet marked: when it arrived (metrics)
        self._connections = 0

    def __repr__(self) -> str:
        return f"Messenger(sent={self.sent}, acked={self.acked}, delivered={self.delivered}, dropped={self.dropped})"

    # ------------------------------------------------------------------ sending
    async def send(self, to: Address, plaintext: bytes, message_id: str | None = None) -> str:
        """Encrypt for ``to`` into the outbox (one transaction) and queue it; returns the message id.

        Once this returns the message is durable: it is sent (in outbox order, by :meth:`run`) and
        sent again after any disconnection or restart until the server acknowledges it.
        """
        key = self.directory.chat_key(to)
        if key is None:
            raise InvalidArgumentError(f"no chat key known for {to}")
        mid = message_id or uuid.uuid4().hex
        msg = await self.cipher.encrypt_durable(to, plaintext, mid)
        if not self._resend:  # else the outbox is being read in order: it is in there, behind the rest
            self._queue.append((mid, key, msg.type, msg.body))
        self._wake.set()
        return mid

    async def pending(self) -> int:
        """Messages in the outbox (not yet acknowledged by the server)."""
        async with self.cipher.store.transaction() as tx:
            return await tx.count_outbox()

    async def health(self) -> MessengerHealth:
        """Connection state, outbox depth and the age of its oldest message, and the counters."""
        async with self.cipher.store.transaction() as tx:
            depth = await tx.count_outbox()
            oldest = await tx.outbox_list(limit=1)
        age = max(0.0, time.time() - oldest[0].created_at) if oldest else 0.0
        if self.metrics is not None:
            self.metrics.outbox_depth.set(depth)
        return MessengerHealth(self.client.state.name.lower(), depth, age, len(self._inflight), self.sent,
                               self.acked, self.delivered, self.dropped, max(0, self._connections - 1))

    async def _flusher(self) -> None:
        """Hand queued messages to the connection in order; after each (re)connection, the whole
        outbox first (it holds everything sent but not acknowledged, oldest first). Messages the
        server leaves unacknowledged for RESEND_AFTER seconds (say, a full mailbox) are sent again."""
        try:
            while True:
                with trio.move_on_after(RESEND_AFTER):
                    await self._wake.wait()
                self._wake = trio.Event()
                if self.client.state is not ClientState.CONNECTED:
                    continue
                now = trio.current_time()
                if self._inflight and min(self._inflight.values()) < now - RESEND_AFTER:
                    self._reconnected()
                    self._wake = trio.Event()
                if self._resend:
                    await self._reload_from_outbox()
                    if self._resend and not self._queue and not self._inflight:
                        self._wake.set()  # a whole batch nobody can be sent to: read past it at once
                while self._queue and self.client.state is ClientState.CONNECTED:
                    mid, key, msg_type, body = self._queue.popleft()
                    if mid in self._inflight or mid in self._acked_ids:
                        continue
                    self._inflight[mid] = trio.current_time()
                    await self.client.send_message(Envelope(key, msg_type, body).to_bytes(), id=mid)
                    self.sent += 1
                    if self.metrics is not None:
                        self.metrics.sent.inc()
        except (TransportError, trio.ClosedResourceError, trio.BrokenResourceError):
            return  # the client closed: nothing more can be sent; the outbox keeps the rest

    async def _reload_from_outbox(self) -> None:
        self._resend = False
        limit = OUTBOX_BATCH + len(self._unsendable)
        async with self.cipher.store.transaction() as tx:
            entries: list[OutboxEntry] = await tx.outbox_list(limit=limit)
        if len(entries) == limit:
            self._resend = True  # more after these are acknowledged (see _remover)
        rows = []
        for e in entries:
            key = self.directory.chat_key(Address.parse(e.address))
            if key is None:  # nobody to send it to (yet): read past it next time, retry after a reconnect
                self._unsendable.add(e.message_id)
            elif e.message_id not in self._acked_ids:
                rows.append((e.message_id, key, e.msg_type, e.body))
        in_rows = {r[0] for r in rows}
        # sends that committed during the read are either in the rows or newer than all of them
        newer = [] if self._resend else [q for q in self._queue if q[0] not in in_rows]
        self._queue = deque(rows)
        self._queue.extend(newer)

    # ------------------------------------------------------------------ receiving
    async def _receive(self, evs: list[MessageReceived]) -> None:
        """Read delivered messages: those of one sender in one store transaction, in order."""
        arrived = trio.current_time()
        by_sender: dict[Address, list[tuple[MessageReceived, Envelope]]] = {}
        for ev in evs:
            try:
                env = Envelope.from_bytes(ev.payload)
                if env.sender is None:
                    raise InvalidMessageError("envelope without the server's sender stamp")
            except PeerError as exc:
                await self._drop(ev, None, exc, final=True)  # nothing in it can ever be read
                continue
            sender = self.directory.address(env.sender)
            if sender is None:
                try:
                    env.signal_message()
                except PeerError as exc:
                    await self._drop(ev, None, exc, final=True)  # not a Signal message at all
                else:  # readable once the directory knows the sender: leave it with the server
                    unknown = InvalidMessageError("message from an unknown chat key")
                    await self._drop(ev, None, unknown, final=False)
                continue
            by_sender.setdefault(sender, []).append((ev, env))
        for sender, items in by_sender.items():
            results = await self.cipher.decrypt_once_many(sender, [(env.type, env.body) for _, env in items])
            for (ev, _), got in zip(items, results):
                if isinstance(got, DuplicateMessageError):
                    self._ack(ev.id)  # handled before: the server may forget it
                elif isinstance(got, (PeerError, MissingStateError)):
                    # forged or garbled: gone for good; no session / prekey or an untrusted identity:
                    # readable once that is fixed, so it stays with the server
                    fixable = isinstance(got, (MissingStateError, UntrustedIdentityError))
                    await self._drop(ev, sender, got, final=not fixable)
                elif got.digest not in self._handled_digests:  # else: handled a moment ago, ack on its way
                    await self._on_message(sender, got.plaintext)
                    self._handled_digests.add(got.digest)
                    if self.metrics is not None:
                        self._received_at[got.digest] = arrived
                    self._handled.append((sender, got.digest, ev.id))
                    self._handled_wake.set()

    async def _drop(
        self, ev: MessageReceived, sender: Address | None, exc: PeerError | MissingStateError, *, final: bool
    ) -> None:
        self.dropped += 1
        if self.metrics is not None:
            self.metrics.decrypt_failures.labels(kind=type(exc).__name__, final=str(final).lower()).inc()
        if self._on_dropped is not None:
            await self._on_dropped(Dropped(ev.id, sender, exc, final))
        if final:
            self._ack(ev.id)

    def _ack(self, mid: str) -> None:
        self._acks.append(mid)
        self._ack_wake.set()

    async def _acker(self) -> None:
        """Send queued acks; a separate task, so the event loop never waits for the send queue
        (which only drains while connected) while the client waits to report a new state."""
        try:
            while True:
                await self._ack_wake.wait()
                self._ack_wake = trio.Event()
                while self._acks:
                    await self.client.ack(self._acks.popleft())
        except (TransportError, trio.ClosedResourceError, trio.BrokenResourceError):
            return  # the client closed: the server delivers again, the store answers

    async def _marker(self) -> None:
        """Mark handled messages in batches (one commit for all that are waiting), then ack them."""
        while True:
            await self._handled_wake.wait()
            self._handled_wake = trio.Event()
            await self._mark_waiting()

    async def _mark_waiting(self) -> None:
        batch = list(self._handled)  # they leave the list only once the mark is committed
        if not batch:
            return
        await self.cipher.mark_handled_many([(a, d) for a, d, _ in batch])
        del self._handled[: len(batch)]  # (only appended to meanwhile)
        now = trio.current_time()
        for _, digest, mid in batch:
            self._handled_digests.discard(digest)
            self._ack(mid)
            self.delivered += 1
            if self.metrics is not None:
                self.metrics.received.inc()
                t0 = self._received_at.pop(digest, None)
                if t0 is not None:
                    self.metrics.handle_latency.observe(now - t0)

    async def _remover(self) -> None:
        """Delete acknowledged outbox rows in batches (one commit for all that are waiting)."""
        while True:
            await self._removed_wake.wait()
            self._removed_wake = trio.Event()
            ids, self._to_remove = self._to_remove, []
            if not ids:
                continue
            try:
                async with self.cipher.store.transaction() as tx:
                    for mid in ids:
                        if await tx.outbox_remove(mid):
                            self.acked += 1
                            if self.metrics is not None:
                                self.metrics.acked.inc()
            except BaseException:
                self._to_remove[:0] = ids  # not deleted: try again (they stay in _acked_ids)
                raise
            self._acked_ids.difference_update(ids)
            if self._resend and not self._inflight and not self._to_remove:
                self._wake.set()  # the next batch of a long outbox

    def _acked(self, ev: AckReceived) -> None:
        sent_at = self._inflight.pop(ev.id, None)
        if self.metrics is not None and sent_at is not None:
            self.metrics.send_latency.observe(trio.current_time() - sent_at)
        self._acked_ids.add(ev.id)
        self._to_remove.append(ev.id)
        self._removed_wake.set()

    # ------------------------------------------------------------------ the loop
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Consume the client's events until it closes: acknowledgements empty the outbox, each
        (re)connection re-sends it, delivered messages are read exactly once."""
        try:
            await self._loop(task_status)
        finally:
            # what the application has handled is marked so even when run() ends (its handler
            # raised, or the connection closed), so a restart does not hand it over again
            with trio.move_on_after(MARK_ON_EXIT_TIMEOUT) as scope:
                scope.shield = True
                await self._mark_waiting()

    async def _loop(self, task_status: trio.TaskStatus[None]) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._flusher)
            nursery.start_soon(self._marker)
            nursery.start_soon(self._remover)
            nursery.start_soon(self._acker)
            task_status.started()
            self._reconnected()
            events = self.client.events()
            async for ev in events:
                # take everything already queued: the messages among it are read in one go
                received: list[MessageReceived] = []
                while True:
                    if isinstance(ev, MessageReceived):
                        received.append(ev)
                    elif isinstance(ev, AckReceived):
                        self._acked(ev)
                    else:
                        if isinstance(ev, StateChanged) and ev.state is ClientState.CONNECTED:
                            self._connections += 1
                            if self.metrics is not None and self._connections > 1:
                                self.metrics.reconnects.inc()
                            self._reconnected()
                        if self._on_event is not None:
                            await self._on_event(ev)
                    if len(received) >= RECEIVE_BATCH:
                        break
                    try:
                        ev = events.receive_nowait()
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                if received:
                    await self._receive(received)
            nursery.cancel_scope.cancel()

    def _reconnected(self) -> None:
        self._inflight.clear()  # what was in flight on the old connection may be lost: resend
        self._unsendable.clear()  # the directory may know them now
        self._resend = True
        self._wake.set()


@asynccontextmanager
async def open_messenger(
    cipher: SessionCipher,
    config: ChatClientConfig,
    directory: Directory,
    on_message: OnMessage,
    *,
    on_dropped: Callable[[Dropped], Awaitable[None]] | None = None,
    on_event: Callable[[ClientEvent], Awaitable[None]] | None = None,
    metrics: MessengerMetrics | None = None,
) -> AsyncIterator[Messenger]:
    """Open the chat connection described by ``config`` and run a :class:`Messenger` on it until the
    block ends (the store behind ``cipher`` stays the caller's to close)."""
    async with open_chat_client(config) as client, trio.open_nursery() as nursery:
        m = Messenger(cipher, client, directory, on_message, on_dropped=on_dropped, on_event=on_event, metrics=metrics)
        await nursery.start(m.run)
        yield m
        nursery.cancel_scope.cancel()
