"""A WhatsApp-style device over the chat connection: the stanzas of ``docs/chat-protocol.md``.

:class:`WaMessenger` is one device (``me``, a device JID) of an account. It keeps its keys in a
:class:`~wacrypto.store.protocols.KeyStore` and talks to a chatd through a
:class:`~wacrypto.chat.ChatClient` whose handshake payload names the device. What it does:

* **login and keys**: after ``<success>`` it checks how many one-time prekeys the server holds and
  uploads 812 the first time, 50 whenever fewer than 5 are left (one upload at a time, also on an
  ``encrypt`` count notification), rotating the signed prekey when it is older than
  ``signed_prekey_max_age``.
* **send** (:meth:`send_text`, :meth:`send_image`): the recipient's devices come from the server
  (usync, cached in the store, refreshed from ``devices`` notifications and when the server's
  participant hash differs); a session is built from a fetched bundle where there is none; a
  companion device of another account is used only when its ADV identity verifies against the
  account's key and key-index list (fail closed). The plaintext is encrypted for every device of the
  recipient and for our own other devices (as a ``DeviceSentMessage``), and the whole stanza, the
  ratchet steps and the plaintext (kept for retry receipts, purged after ``sent_retention``) commit
  in one transaction before the id is returned. The stanza stays in the outbox until the server acks
  it, and is sent again after every reconnection.
* **receive**: each ``<enc>`` is decrypted exactly once (the plaintext stored with the ratchet step,
  see :meth:`SessionCipher.decrypt_once`), handed out as a :class:`ReceivedMessage` from
  :meth:`events`, and acknowledged (ack + delivery receipt) only after :meth:`mark_handled`. A
  message that cannot be decrypted gets a retry receipt (with a fresh key bundle from the second on;
  given up after 5, the count kept in the store across restarts).
* **retry receipts received**: the stored plaintext is encrypted again for the device that asked,
  on a session rebuilt from the receipt's keys or a fetched bundle when the rules say so.
* **identity changes**: with ``identity_policy="accept"`` a changed identity key is trusted and a
  :class:`IdentityChanged` event carries the new safety number; with ``"refuse"`` the messages of
  that sender wait (unacknowledged, so the server keeps them) until :meth:`accept_identity`.
* **scale-out** (``stripe``, :mod:`wacrypto.whatsapp.stripes`): one device served by several worker
  processes on one shared store, each a WaMessenger of one stripe of the chats. It logs in as that
  stripe (chatd delivers it that stripe's chats only), sends only in its own chats (another one's is
  an :class:`InvalidArgumentError` naming the right stripe), reads and resends its own chats' outbox
  rows, and leaves what concerns the whole account (prekeys, key digest, signed prekey rotation,
  pruning) to stripe 0. Give each worker's store the lease of its stripe
  (``open_store(..., lease_stripe=stripe)``).
"""

from __future__ import annotations

import dataclasses
import hmac
import json
from collections import deque
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, final

import trio

from wacrypto.address import Address
from wacrypto.chat.client import ChatClient, ChatClientConfig, open_chat_client
from wacrypto.chat.events import ClientState, StateChanged
from wacrypto.chat.metrics import MessengerMetrics
from wacrypto.errors import (
    DuplicateMessageError,
    InvalidArgumentError,
    InvalidMessageError,
    LoggedOutError,
    MissingStateError,
    NetworkError,
    NoPreKeyError,
    NoSessionError,
    NoSignedPreKeyError,
    PeerError,
    RevokedDeviceError,
    InvalidSignatureError,
    TransportError,
    UntrustedIdentityError,
)
from wacrypto.media.blob import DecryptedMedia
from wacrypto.media.client import MediaClient
from wacrypto.media.keys import MediaType
from wacrypto.primitives.keys import PublicKey, Rng, system_rng
from wacrypto.session.account import generate_prekeys, local_identity, rotate_signed_prekey
from wacrypto.session.cipher import PREKEY_TYPE, WHISPER_TYPE, SessionCipher, message_digest
from wacrypto.session.cipher import ReceivedMessage as ExactlyOnce
from wacrypto.session.groups import GroupCipher, sender_key_lock
from wacrypto.wire.messages import PreKeySignalMessage, SenderKeyMessage
from wacrypto.signal.fingerprint import create_fingerprint
from wacrypto.limits import PREKEY_UPLOAD_BATCH
from wacrypto.signal.records import PreKeyRecord, SignedPreKeyRecord
from wacrypto.store.protocols import KeyStore, OutboxEntry, SentMessage, Transaction
from wacrypto.transport.chat_connection import NodeReceived
from wacrypto.transport.messages import ClientPayload
from wacrypto.whatsapp import message as wamsg
from wacrypto.whatsapp.adv import (
    DeviceIdentity,
    KeyIndexList,
    countersign_device_identity,
    sign_device_identity,
    sign_key_index_list,
    verify_device_identity,
    verify_key_index_list,
)
from wacrypto.whatsapp.devices import participant_hash
from wacrypto.whatsapp.jid import LID_SERVER, USER_SERVER, Jid
from wacrypto.whatsapp.prekeys import PrekeyUploader, prekeys_to_upload
from wacrypto.whatsapp.retry import RetryKeys, RetryReceipt, ResendAction, decide_resend, next_retry
from wacrypto.whatsapp.stripes import Stripe, stripe_of
from wacrypto.whatsapp.stanzas import (
    SERVER,
    DeviceBundle,
    Enc,
    EncType,
    IncomingMessage,
    OutgoingMessage,
    PrekeyUpload,
    Receipt,
    SignedPreKey,
    ack_for,
    bundle_query,
    digest_query,
    key_digest_hash,
    parse_digest_result,
    parse_bundle_result,
    parse_notification,
    parse_prekey_count,
    prekey_count_query,
    EncryptCountNotification,
    IdentityChangeNotification,
    DevicesNotification,
    DeviceIdentityUpload,
    GroupCreate,
    GroupInfo,
    GroupMessage,
    GroupQuery,
    KeyIndexListUpload,
    UsyncQuery,
    parse_group_result,
    parse_usync_result,
)
from wacrypto.wire.binary import Node, decode_node

__all__ = [
    "DeviceRejected",
    "IdentityChanged",
    "IqError",
    "LinkedDevice",
    "ReceiptReceived",
    "ReceivedMessage",
    "SendRejected",
    "Undecryptable",
    "WaEvent",
    "WaHealth",
    "WaMessenger",
    "link_companion",
    "open_wa_messenger",
]

SENDER_KEY_TYPE: Final = 7  # the dedup digest's kind byte of a SenderKeyMessage
STANZA_TYPE: Final = 0  # outbox rows of this messenger hold a whole encoded <message> stanza
IQ_TIMEOUT: Final = 20.0
RESEND_AFTER: Final = 30.0  # seconds: what is unacknowledged and not in flight is sent again
_NACK_RETRY_FIRST: Final = 0.25  # seconds after a nack that may pass before the outbox goes again (doubling)
OUTBOX_BATCH: Final = 500  # outbox rows read at a time
ACK_COALESCE: Final = 0.05  # seconds server acks wait to leave the outbox together (one commit for them)
_ACK_BATCH: Final = 256  # ... unless this many are waiting
_FINAL_NACKS: Final = frozenset({"487", "488", "491"})  # malformed, unacceptable, bad protobuf: never taken
SENT_RETENTION: Final = 7 * 86400.0  # seconds a sent plaintext is kept for retry receipts
SIGNED_PREKEY_MAX_AGE: Final = 7 * 86400.0
RETRY_KEEP: Final = 14 * 86400.0  # seconds a receiver's retry count is remembered
_EVENTS_BUFFER: Final = 1024
_RECEIPT_IDS: Final = 256  # message ids in one delivery receipt, at most
_READ_BATCH: Final = 256  # queued stanzas the worker takes at once (a run of them decrypts in one commit)
_SEND_BATCH: Final = 64  # sends to one chat committed in one transaction, at most
_META_REGISTERED: Final = "wa.registered"
_META_DEVICES: Final = "wa.devices:"  # + user JID: JSON {"devices": [...], "kil": hex or null}
_META_REBUILT: Final = "wa.rebuilt:"  # + address: when we last rebuilt that session for a retry
_META_SKDM: Final = "wa.skdm:"  # + group: JSON list of the devices that have our sender key
_META_RETRY_SEEN: Final = "wa.retry-seen:"  # + device/id: retry receipts received for it


# --------------------------------------------------------------------------- events
@final
@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """A decrypted message. Call :meth:`WaMessenger.mark_handled` once it is safe with you: only
    then is it acknowledged (until then it is handed out again after a restart, never decrypted twice)."""

    id: str
    chat: Jid  # the sender's account, or the group
    sender: Jid  # the device that sent it
    content: wamsg.Content
    timestamp: int
    redelivered: bool = False
    _digests: tuple[bytes, ...] = field(default=(), repr=False, compare=False)
    _node: Node | None = field(default=None, repr=False, compare=False)

    @property
    def text(self) -> str | None:
        return self.content.text


@final
@dataclass(frozen=True, slots=True)
class ReceiptReceived:
    ids: tuple[str, ...]
    sender: Jid
    type: str | None  # None: delivered


@final
@dataclass(frozen=True, slots=True)
class IdentityChanged:
    """``jid``'s identity key changed ("security code changed"); ``safety_number`` is the new one.
    ``accepted`` False: its messages wait until :meth:`WaMessenger.accept_identity`."""

    jid: Jid
    safety_number: str
    accepted: bool


@final
@dataclass(frozen=True, slots=True)
class Undecryptable:
    """A message we could not decrypt; ``retry_count`` receipts asked for it again (``gave_up``: no more)."""

    id: str
    sender: Jid
    error: str
    retry_count: int
    gave_up: bool


@final
@dataclass(frozen=True, slots=True)
class DeviceRejected:
    """A device of another account was left out of a send: its ADV identity did not verify."""

    jid: Jid
    reason: str


@final
@dataclass(frozen=True, slots=True)
class SendRejected:
    """The server refused a sent message for good (nack ``code``: 487 malformed, 488 not acceptable,
    491 bad protobuf), or (``code`` 0) its stanza in the outbox is unreadable (a damaged row, never
    sent); it left the outbox."""

    id: str
    code: int


WaEvent = (ReceivedMessage | ReceiptReceived | IdentityChanged | Undecryptable | DeviceRejected | SendRejected
           | StateChanged)


@final
@dataclass(frozen=True, slots=True)
class WaHealth:
    """What :meth:`WaMessenger.health` reports."""

    state: str  # the chat connection: connected, connecting, waiting, closed...
    logged_in: bool
    outbox_depth: int  # sent messages the server has not acknowledged yet
    oldest_outbox_age: float  # seconds since the oldest of them was committed (0 when empty)
    in_flight: int
    server_prekeys: int | None  # one-time prekeys the server holds for us (last check; None: not checked)
    local_prekeys: int  # one-time prekeys in our store never handed out
    retries_sent: int  # retry receipts we sent for messages we could not decrypt
    retries_answered: int  # messages we encrypted again for a retry receipt
    sent: int
    acked: int
    received: int
    reconnects: int


class IqError(NetworkError):
    """The server answered an iq with an error (or not at all within the timeout)."""


@dataclass(eq=False)
class _PendingSend:
    """Internal: one send waiting for its group commit (see :meth:`WaMessenger._combined_send`)."""

    mid: str
    content: wamsg.Content
    targets: list[Jid]
    plain_theirs: bytes
    plain_own: bytes
    done: bool = False
    error: Exception | None = None
    left: bool = False  # its caller stopped waiting (cancelled) before it was done: not taken again


class _OneFailed(Exception):
    """Internal: one send of a group commit cannot be committed at all (the batch rolls back and
    goes on without it)."""

    def __init__(self, entry: _PendingSend, error: Exception) -> None:
        super().__init__(str(error))
        self.entry = entry
        self.error = error


class _NeedSessions(Exception):
    """Internal: these devices have no session to send on (the send's transaction rolls back)."""

    def __init__(self, devices: list[Jid]) -> None:
        super().__init__(f"{len(devices)} devices without a session")
        self.devices = devices


# --------------------------------------------------------------------------- the messenger
@final
class WaMessenger:
    """One device of an account over ``client`` (see the module docstring). Start :meth:`run` in a
    nursery (``await nursery.start(m.run)``); read :meth:`events`."""

    def __init__(
        self,
        store: KeyStore,
        client: ChatClient,
        me: Jid,
        *,
        identity_policy: Literal["accept", "refuse"] = "accept",
        sent_retention: float = SENT_RETENTION,
        signed_prekey_max_age: float = SIGNED_PREKEY_MAX_AGE,
        device_identity: bytes | None = None,
        iq_timeout: float = IQ_TIMEOUT,
        rng: Rng = system_rng,
        clock: Callable[[], float] = time.time,
        metrics: MessengerMetrics | None = None,
        stripe: Stripe | None = None,
    ) -> None:
        if identity_policy not in ("accept", "refuse"):
            raise InvalidArgumentError("identity_policy is 'accept' or 'refuse'")
        if not me.has_devices or not me.user:
            raise InvalidArgumentError("me must be a device JID of a user")
        self.store = store
        self.client = client
        self.me = me
        self.stripe = stripe if stripe is not None else Stripe()
        if not isinstance(self.stripe, Stripe):
            raise InvalidArgumentError("stripe is a wacrypto.whatsapp.stripes.Stripe")
        self._mine: Callable[[str], bool] | None = None if self.stripe.whole else self.stripe.owns
        self.identity_policy = identity_policy
        self.sent_retention = sent_retention
        self.signed_prekey_max_age = signed_prekey_max_age
        self.device_identity = device_identity
        self.iq_timeout = iq_timeout
        self.cipher = SessionCipher(store, rng=rng, clock=clock)
        self._groups = GroupCipher(store, rng=rng)
        self._rng = rng
        self._clock = clock
        self._iqs: dict[str, trio.MemorySendChannel[Node]] = {}
        self._iq_n = 0
        self._ev_send, self._ev_recv = trio.open_memory_channel[WaEvent](_EVENTS_BUFFER)
        self._work_send, self._work_recv = trio.open_memory_channel[Node](_EVENTS_BUFFER)
        self._logged_in = trio.Event()
        self._flush_wake = trio.Event()
        self._uploader = PrekeyUploader(registered=False)
        self._inflight: set[str] = set()
        self._queue: deque[tuple[str, bytes]] = deque()  # committed stanzas to send: (id, encoded node)
        self._reload = True  # read the outbox before sending anything else (after each login)
        self._held: dict[Jid, list[Node]] = {}  # refused identity: messages waiting per sender device
        self._pending_identity: dict[Jid, bytes] = {}  # refused identity: the new key, until accepted
        self._emitted: set[tuple[Jid, str]] = set()  # handed to the application, not handled yet
        self.login_error: Node | None = None
        self.login_problem: Exception | None = None  # why the last login's key check failed
        self.sent = 0
        self.acked = 0
        self.received = 0
        self.retries_sent = 0
        self.retries_answered = 0
        self.prekey_uploads = 0
        self.lid_migrations = 0  # accounts whose Signal state moved from phone-number to LID addresses
        self._lid_of: dict[str, str] = {}  # phone-number user -> LID user, as learned
        self._no_lid: set[str] = set()  # phone-number users the store has no LID for (until learn_lid)
        self._devices: dict[str, tuple[list[int], bytes | None]] = {}  # the stored device lists, as read/written
        self._phash_ok: dict[str, str] = {}  # chat -> the server's participant hash our lists matched last
        self._acks: list[tuple[str, float]] = []  # (acked message id, when), not yet out of the outbox
        self._ack_wake = trio.Event()
        self._nack_backoff = 0.0  # seconds: the wait after the last passing nack (0: none lately)
        self._nacked: set[str] = set()  # ids refused by a passing nack since one of them got through
        self._more_in_outbox = False  # the flusher read a full page, all in flight: read on after acks
        self._resend_at: float | None = None  # trio clock: read the outbox again then (after a nack)
        self._retried: set[tuple[str, str]] = set()  # (message id, sender device) we asked to resend
        self._lid_locks: dict[str, trio.Lock] = {}
        self._send_queue: dict[str, list[_PendingSend]] = {}  # chat -> sends waiting for a group commit
        self._opening: dict[str, trio.Lock] = {}  # chat -> held while its missing sessions are started
        self.digest_mismatches = 0  # logins where the server's digest of our keys did not match
        self.reconnects = 0
        self.server_prekeys: int | None = None  # one-time prekeys the server said it holds, last check
        self.metrics = metrics
        self._connections = 0
        self._sent_at: dict[str, float] = {}  # handed to the connection: when (send -> ack latency)
        self._received_at: dict[tuple[Jid, str], float] = {}  # handed to the application: when

    def __repr__(self) -> str:
        return f"WaMessenger(me={self.me}, sent={self.sent}, acked={self.acked}, received={self.received})"

    # ------------------------------------------------------------------ public API
    def events(self) -> trio.MemoryReceiveChannel[WaEvent]:
        return self._ev_recv

    def __aiter__(self) -> AsyncIterator[WaEvent]:
        return self._ev_recv.__aiter__()

    async def wait_logged_in(self) -> None:
        await self._logged_in.wait()

    async def send_text(self, to: Jid | str, text: str, *, message_id: str | None = None) -> str:
        """Encrypt ``text`` for every device of ``to`` (and our own others), commit, return the id."""
        return await self.send(to, wamsg.Content(text=text), message_id=message_id)

    async def send(self, to: Jid | str, content: wamsg.Content, *, message_id: str | None = None) -> str:
        chat = Jid.parse(to) if isinstance(to, str) else to
        chat = chat.user_jid()
        if chat.is_group:
            raise InvalidArgumentError("group messages: use send_group")
        self._check_stripe(chat)
        mid = message_id or uuid.uuid4().hex[:20].upper()
        # the devices from the cached lists; whether each has a session is seen in the commit's
        # transaction (one transaction for a steady conversation), bundles fetched only for those without
        targets = await self._targets(chat, check_sessions=False)
        own_copy = content.sent_to(str(chat))
        plain_theirs = wamsg.encode(content, rng=self._rng)
        plain_own = wamsg.encode(own_copy, rng=self._rng)
        for _ in range(3):
            if not targets:
                break
            try:
                return await self._combined_send(chat, _PendingSend(mid, content, targets, plain_theirs, plain_own))
            except _NeedSessions as need:
                missing = need.devices
            _, kil = await self._device_list(chat)
            async with self._opening_lock(str(chat)):  # the sends that found them missing together: one fetch
                still = [t for t in missing if not await self.cipher.has_session(await self._address(t))]
                dropped = await self._open_sessions(still, kil) if still else set()
            targets = [t for t in targets if t not in dropped]
        if not targets:
            raise InvalidArgumentError(f"{chat} has no device we can encrypt to")
        raise NoSessionError(f"the sessions with {chat}'s devices went missing again each time they were started")

    def _check_stripe(self, chat: Jid) -> None:
        if not self.stripe.owns(chat):
            raise InvalidArgumentError(f"{chat} belongs to stripe {stripe_of(chat, self.stripe.count)} of "
                                       f"{self.stripe.count}; this worker serves stripe {self.stripe.index}")

    def _opening_lock(self, chat: str) -> trio.Lock:
        return self._opening.setdefault(chat, trio.Lock())

    async def _combined_send(self, chat: Jid, entry: _PendingSend) -> str:
        """Group commit of the sends to one chat: the sends that queued up while one was committing
        (for the same devices) commit together in the next transaction, in the order they came.
        Raises :class:`_NeedSessions` (nothing written) when some device has no session yet. A send
        cancelled while another was committing it may still be sent (as one cancelled inside its own
        commit may); one cancelled before is never committed."""
        key = str(chat)
        self._send_queue.setdefault(key, []).append(entry)
        try:
            async with self._accounts_locked(t.user for t in entry.targets):
                if not entry.done:  # no earlier send took it along: this one commits what waits
                    await self._lead(chat, key, entry)
        finally:
            queue = self._send_queue.get(key)
            if not entry.done:
                entry.left = True  # never taken again (a batch that has it may still commit it)
                if queue is not None and entry in queue:
                    queue.remove(entry)
            if queue is not None and not queue:
                del self._send_queue[key]
        if isinstance(entry.error, _NeedSessions):
            raise _NeedSessions(entry.error.devices)
        if entry.error is not None:
            raise entry.error
        return entry.mid

    async def _lead(self, chat: Jid, key: str, entry: _PendingSend) -> None:
        """Commit ``entry`` and what waits with it (the caller holds the accounts' locks)."""
        queue = self._send_queue.setdefault(key, [])
        queue[:] = [e for e in queue if not e.left]
        same = [e for e in queue if e.targets == entry.targets]
        batch = same[:_SEND_BATCH] if entry in same[:_SEND_BATCH] else [*same[:_SEND_BATCH - 1], entry]
        for e in batch:
            if e in queue:
                queue.remove(e)
        while batch:
            try:
                await self._commit_send(chat, batch)
            except _OneFailed as one:  # that send alone cannot be (too large): the others go on without it
                one.entry.error, one.entry.done = one.error, True
                batch.remove(one.entry)
                continue
            except Exception as exc:  # nothing committed: every send of the batch fails alike
                for e in batch:
                    e.error, e.done = exc, True
            except BaseException:  # this send was cancelled: the others wait for the next turn
                again = [e for e in batch if e is not entry and not e.left]
                self._send_queue.setdefault(key, [])[:0] = again
                raise
            else:
                for e in batch:
                    e.done = True
            return

    async def _commit_send(self, chat: Jid, batch: list[_PendingSend]) -> None:
        """Encrypt each send of ``batch`` (one set of targets) for its targets and commit them all in
        one transaction; raises :class:`_NeedSessions` (nothing written) when some target has no
        session to send on."""
        targets = batch[0].targets
        addresses = [await self._address(t) for t in targets]
        now = self._clock()
        bodies: list[tuple[str, bytes]] = []
        async with self.store.transaction(*addresses) as tx:
            for e in batch:
                encs: list[tuple[Jid | None, Enc]] = []
                missing: list[Jid] = []
                pkmsg = False
                for t, addr in zip(targets, addresses):
                    plain = e.plain_own if t.user == self.me.user and t.server == self.me.server else e.plain_theirs
                    try:
                        ct = await self.cipher.encrypt_in(tx, addr, plain)
                    except NoSessionError:
                        missing.append(t)
                        continue
                    kind: EncType = "pkmsg" if ct.type == PREKEY_TYPE else "msg"
                    pkmsg = pkmsg or kind == "pkmsg"
                    encs.append((t, Enc(kind, ct.body)))
                if missing:
                    raise _NeedSessions(missing)  # the transaction rolls back: no ratchet step is kept
                node = OutgoingMessage(e.mid, str(chat), tuple(encs),
                                       device_identity=self.device_identity if pkmsg and self.me.device else None
                                       ).to_node()
                try:
                    body = self.client.encode(node)  # (a stanza too large for a frame fails this send alone)
                except InvalidArgumentError as exc:
                    raise _OneFailed(e, exc) from None
                await tx.outbox_put(OutboxEntry(e.mid, str(chat), STANZA_TYPE, body, now))
                await tx.sent_put(SentMessage(e.mid, str(chat), wamsg.encode(e.content, v=3), now))
                bodies.append((e.mid, body))
        self._queue.extend(bodies)
        self._flush_wake.set()

    # ------------------------------------------------------------------ media
    async def send_media(self, to: Jid | str, path: str | Path, media: MediaClient, *,
                         kind: Literal["image", "document"] = "image", mimetype: str | None = None,
                         caption: str = "", file_name: str | None = None, message_id: str | None = None) -> str:
        """Encrypt the file at ``path`` (WhatsApp's media scheme, a fresh media key), upload it to the
        media endpoint of ``media``, then send its reference and keys like a text (to a group too):
        an image (with ``caption``) or a document (with ``file_name``, by default the file's)."""
        media_type = MediaType.IMAGE if kind == "image" else MediaType.DOCUMENT
        enc, up = await media.upload(path, media_type)
        url = up.url or (up.host.rstrip("/") + (up.direct_path or ""))
        if kind == "image":
            content = wamsg.Content(image=wamsg.ImageRef(
                url, up.direct_path or "", enc.media_key, enc.file_sha256, enc.file_enc_sha256, enc.file_length,
                mimetype or "image/jpeg", caption))
        else:
            content = wamsg.Content(document=wamsg.DocumentRef(
                url, up.direct_path or "", enc.media_key, enc.file_sha256, enc.file_enc_sha256, enc.file_length,
                mimetype or "application/octet-stream", file_name if file_name is not None else Path(path).name))
        target = Jid.parse(to) if isinstance(to, str) else to
        if target.is_group:
            return await self.send_group(target, content, message_id=message_id)
        return await self.send(target, content, message_id=message_id)

    async def send_image(self, to: Jid | str, path: str | Path, media: MediaClient, *, caption: str = "",
                         mimetype: str = "image/jpeg", message_id: str | None = None) -> str:
        """:meth:`send_media` of an image."""
        return await self.send_media(to, path, media, kind="image", mimetype=mimetype, caption=caption,
                                     message_id=message_id)

    @staticmethod
    async def download_media(msg: ReceivedMessage, dst: str | Path, media: MediaClient) -> DecryptedMedia:
        """Download, verify and decrypt the image or document of ``msg`` into ``dst`` (which appears
        only once every check passed)."""
        ref: wamsg.ImageRef | wamsg.DocumentRef | None = msg.content.image or msg.content.document
        if ref is None:
            raise InvalidArgumentError("this message carries no media")
        media_type = MediaType.IMAGE if isinstance(ref, wamsg.ImageRef) else MediaType.DOCUMENT
        return await media.download([ref.url], dst, media_type, ref.media_key,
                                    file_enc_sha256=ref.file_enc_sha256, file_sha256=ref.file_sha256)

    download_image = download_media

    # ------------------------------------------------------------------ groups
    async def create_group(self, subject: str, participants: Sequence[Jid]) -> GroupInfo:
        """Create a group of us and ``participants`` (user JIDs) on the server."""
        req = GroupCreate(subject, uuid.uuid4().hex[:16], tuple(p.user_jid() for p in participants))
        return parse_group_result(await self._iq(req.to_node))

    async def group_info(self, group: Jid) -> GroupInfo:
        return parse_group_result(await self._iq(GroupQuery(group).to_node))

    async def send_group(self, group: Jid, content: wamsg.Content | str, *, message_id: str | None = None) -> str:
        """Encrypt once with our sender key for every participant device; devices that have not got
        our sender key yet get it (a sender-key distribution message) in their pairwise session, in
        the same stanza. Committed (ratchets, stanza, plaintext) before the id is returned."""
        if isinstance(content, str):
            content = wamsg.Content(text=content)
        if not group.is_group:
            raise InvalidArgumentError("send_group needs a group JID")
        self._check_stripe(group)
        mid = message_id or uuid.uuid4().hex[:20].upper()
        info = await self.group_info(group)
        me_user = self.me.user_jid()
        devices: list[Jid] = []
        for user in info.participants:
            if user == me_user:
                continue
            devices += await self._targets(user, include_own=False)
        devices += await self._targets(me_user, include_own=False)
        gid = str(group)
        known = await self._skdm_sent(gid)
        needs = [d for d in devices if str(d) not in known]
        async with self._accounts_locked([self.me.user] + [d.user for d in needs]):
            return await self._commit_group_send(group, mid, content, needs, known)

    async def _commit_group_send(self, group: Jid, mid: str, content: wamsg.Content, needs: list[Jid],
                                 known: set[str]) -> str:
        gid = str(group)
        own = await self._address(self.me)
        addresses = [await self._address(d) for d in needs]
        now = self._clock()
        async with self.store.transaction(sender_key_lock(gid, own), *addresses) as tx:
            skdm = await self._groups.create_distribution_in(tx, gid, own)
            dist = wamsg.encode(wamsg.Content(distribution=wamsg.SenderKeyDistribution(gid, skdm)), rng=self._rng)
            encs: list[tuple[Jid, Enc]] = []
            for d, addr in zip(needs, addresses):
                ct = await self.cipher.encrypt_in(tx, addr, dist)
                encs.append((d, Enc("pkmsg" if ct.type == PREKEY_TYPE else "msg", ct.body)))
            body = await self._groups.encrypt_in(tx, gid, own, wamsg.encode(content, rng=self._rng))
            node = GroupMessage(mid, group, tuple(encs), Enc("skmsg", body)).to_node()
            stanza = self.client.encode(node)  # (too large for a frame: raises, the transaction rolls back)
            await tx.outbox_put(OutboxEntry(mid, gid, STANZA_TYPE, stanza, now))
            await tx.sent_put(SentMessage(mid, gid, wamsg.encode(content, v=3), now))
            await tx.set_meta(_META_SKDM + gid, json.dumps(sorted(known | {str(d) for d in needs})).encode())
        self._queue.append((mid, stanza))
        self._flush_wake.set()
        return mid

    async def _skdm_sent(self, gid: str) -> set[str]:
        async with self.store.transaction() as tx:
            raw = await tx.get_meta(_META_SKDM + gid)
        return set(json.loads(raw)) if raw else set()

    # ------------------------------------------------------------------ companion devices (ADV)
    async def publish_device_identity(self, signed: bytes) -> None:
        """Register our ADV identity (signed by our primary, countersigned by us) with the server;
        it is handed out with our bundles, and sent with our pkmsg."""
        await self._iq(DeviceIdentityUpload(signed).to_node)
        self.device_identity = signed

    async def publish_key_index_list(self, signed: bytes) -> None:
        """Primary only: the account's signed list of the companion key indexes it accepts."""
        await self._iq(KeyIndexListUpload(signed).to_node)

    async def mark_handled(self, msg: ReceivedMessage) -> None:
        """``msg`` is safe with the application: forget its plaintext, acknowledge it, send the receipt."""
        await self.mark_handled_many([msg])

    async def mark_handled_many(self, msgs: Sequence[ReceivedMessage]) -> None:
        """:meth:`mark_handled` for several messages: one store commit, then their acks, and one
        delivery receipt per run of messages from the same sender device. Once it returns, none of
        them is handed out again. If the commit raises, none of them was acknowledged; if sending
        the acks raises (the connection went), they are all handled, and the server, whose acks
        did not arrive, delivers those again: they are acknowledged then without being handed out."""
        items: list[tuple[Address, bytes]] = []
        for m in msgs:
            if m._digests:
                address = await self._address(m.sender)
                items += [(address, d) for d in m._digests]
        await self.cipher.mark_handled_many(items)
        receipt: list[str] = []
        for i, m in enumerate(msgs):
            if m._node is not None:
                await self._send(ack_for(m._node).to_node())
                receipt.append(m.id)
            last = i + 1 == len(msgs) or msgs[i + 1].sender != m.sender or len(receipt) >= _RECEIPT_IDS
            if last and receipt:
                await self._send(Receipt(tuple(receipt), str(m.sender)).to_node())
                receipt = []
        now = self._clock()
        for m in msgs:
            self._emitted.discard((m.sender, m.id))
            self.received += 1
            t0 = self._received_at.pop((m.sender, m.id), None)
            if self.metrics is not None:
                self.metrics.received.inc()
                if t0 is not None:
                    self.metrics.handle_latency.observe(max(0.0, now - t0))

    async def send_read(self, msg: ReceivedMessage) -> None:
        await self._send(Receipt((msg.id,), str(msg.sender), type="read").to_node())

    async def accept_identity(self, jid: Jid) -> None:
        """Trust ``jid``'s new identity key (after the user compared the safety number); its held
        messages are read now."""
        pending = [n for dev, nodes in self._held.items() if dev.user_jid() == jid.user_jid() for n in nodes]
        for dev in [d for d in self._held if d.user_jid() == jid.user_jid()]:
            key = self._pending_identity.pop(dev, None)
            if key is not None:
                await self.cipher.trust_identity(await self._address(dev), key)
            del self._held[dev]
        for n in pending:
            await self._work_send.send(n)

    async def safety_number(self, jid: Jid) -> str:
        """The safety number with ``jid``'s account (its primary's identity key as we know it)."""
        key = await self.cipher.remote_identity(await self._address(jid.user_jid()))
        if key is None:
            raise InvalidArgumentError(f"no identity key known for {jid.user_jid()}")
        return await self._safety_number(jid, key)

    async def _safety_number(self, jid: Jid, remote_key: bytes) -> str:
        async with self.store.transaction() as tx:
            pair, _ = await local_identity(tx)
        fp = create_fingerprint(self.me.user, pair.public.to_bytes(), jid.user, remote_key)
        return " ".join(fp.display_groups())

    async def pending(self) -> int:
        """Sent messages the server has not acknowledged yet (a striped worker: of its own chats)."""
        async with self._outbox_tx() as tx:
            return (await self._outbox_share(tx))[0]

    @asynccontextmanager
    async def _outbox_tx(self) -> AsyncIterator[Transaction]:
        """A transaction that first takes the acknowledged messages still waiting for the ack writer
        (``ACK_COALESCE``) out of the outbox, so that what it reads of the outbox is exact."""
        acks, self._acks = self._acks, []
        try:
            async with self.store.transaction() as tx:
                if acks:
                    await tx.outbox_discard([mid for mid, _ in acks])
                yield tx
        except BaseException:
            self._acks[:0] = acks  # not taken out: the ack writer will
            raise
        self._acked(acks)

    async def _outbox_share(self, tx: Transaction) -> tuple[int, OutboxEntry | None]:
        """The depth of this worker's share of the outbox (all of it, unless striped) and its oldest entry."""
        if self._mine is None:
            oldest = await tx.outbox_list(limit=1)
            return await tx.count_outbox(), oldest[0] if oldest else None
        oldest = await tx.outbox_list(limit=1, chats=self._mine)  # (the stripe function is ours, not SQL's)
        return await tx.count_outbox(chats=self._mine), oldest[0] if oldest else None

    async def health(self) -> WaHealth:
        """Connection state, outbox depth and oldest age, prekeys left, retry counts (also the
        ``wacrypto_outbox_depth`` gauge)."""
        async with self._outbox_tx() as tx:
            depth, oldest = await self._outbox_share(tx)
            local = await tx.count_available_prekeys()
        age = max(0.0, self._clock() - oldest.created_at) if oldest is not None else 0.0
        if self.metrics is not None:
            self.metrics.outbox_depth.set(depth)
        return WaHealth(self.client.state.name.lower(), self._logged_in.is_set(), depth, age, len(self._inflight),
                        self.server_prekeys, local, self.retries_sent, self.retries_answered, self.sent, self.acked,
                        self.received, self.reconnects)

    # ------------------------------------------------------------------ stanzas out, iqs
    async def _send(self, node: Node) -> None:
        await self.client.send_node(node)

    def _next_id(self) -> str:
        self._iq_n += 1
        return f"wa.{self._iq_n}"

    async def _iq(self, build: Callable[[str], Node]) -> Node:
        iq_id = self._next_id()
        send, recv = trio.open_memory_channel[Node](1)
        self._iqs[iq_id] = send
        try:
            await self._send(build(iq_id))
            with trio.move_on_after(self.iq_timeout):
                result = await recv.receive()
                if result.attrs.get("type") == "error":
                    err = result.child("error")
                    raise IqError(f"iq {result.attrs.get('xmlns', '')} failed: "
                                  f"{'' if err is None else err.attrs.get('code', '')}")
                return result
            raise IqError(f"no answer to an iq within {self.iq_timeout:g} s")
        finally:
            self._iqs.pop(iq_id, None)

    # ------------------------------------------------------------------ LID and phone-number addressing
    async def _lid_for(self, pn_user: str) -> str | None:
        lid = self._lid_of.get(pn_user)
        if lid is None and pn_user not in self._no_lid:
            async with self.store.transaction() as tx:
                lid = await tx.get_lid_for_pn(pn_user)
            if lid is not None:
                self._lid_of[pn_user] = lid
            else:
                if self._mine is None:  # (a striped worker: another stripe may learn it meanwhile)
                    self._no_lid.add(pn_user)
        return lid

    def _account_lock(self, user: str) -> trio.Lock:
        """The lock of one account's Signal state in this process (held while an address is resolved
        and used, and by :meth:`learn_lid` while it moves the state): one per canonical account."""
        return self._lid_locks.setdefault(user, trio.Lock())

    @asynccontextmanager
    async def _accounts_locked(self, users: Iterable[str]) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for u in sorted(set(users)):  # always in the same order: no deadlock between two sends
                await stack.enter_async_context(self._account_lock(u))
            yield

    async def _address(self, jid: Jid) -> Address:
        """The canonical Signal address of a device: its LID's once the account's LID is known (the
        sessions, identities and sender keys have moved there), else its own."""
        if jid.server == USER_SERVER:
            lid = await self._lid_for(jid.user)
            if lid is not None:
                return Jid(lid, LID_SERVER, jid.device).signal_address()
        return jid.signal_address()

    async def learn_lid(self, pn: Jid, lid: Jid) -> int:
        """Record that the phone-number account ``pn`` is ``lid`` and move its sessions, identities and
        sender keys to the LID's addresses in one transaction (holding both names' locks for every
        device we know of), so a message read or sent meanwhile sees the state before or after the
        move, never half of it. Returns how many records moved (0: known already)."""
        pn, lid = pn.user_jid(), lid.user_jid()
        if not (pn.server == USER_SERVER and lid.server == LID_SERVER):
            raise InvalidArgumentError("learn_lid maps a phone-number account to a LID")
        async with self._account_lock(pn.user):  # one migration per account at a time: the second caller finds it done
            return await self._learn_lid_locked(pn, lid)

    async def _learn_lid_locked(self, pn: Jid, lid: Jid) -> int:
        if await self._lid_for(pn.user) == lid.user:
            return 0
        devices = {0}
        async with self.store.transaction() as tx:
            raw = await tx.get_meta(_META_DEVICES + str(pn))
        if raw is not None:
            devices |= set(json.loads(raw)["devices"])
        if pn.user == self.me.user:
            devices.add(self.me.device)
        locks = [j.with_device(d).signal_address() for d in sorted(devices) for j in (pn, lid)]
        async with self.store.transaction(*locks) as tx:
            moved = await tx.migrate_address(pn.signal_address().name, lid.signal_address().name)
            await tx.set_lid_mapping(pn.user, lid.user)
        self._lid_of[pn.user] = lid.user
        self._no_lid.discard(pn.user)
        self.lid_migrations += 1
        return moved

    # ------------------------------------------------------------------ devices and sessions
    async def _device_list(self, user: Jid, *, refresh: bool = False) -> tuple[list[int], bytes | None]:
        key = _META_DEVICES + str(user)
        if not refresh:
            hit = self._devices.get(key)
            if hit is None:
                async with self.store.transaction() as tx:
                    raw = await tx.get_meta(key)
                if raw is not None:
                    d = json.loads(raw)
                    hit = self._devices[key] = (list(d["devices"]), None if d["kil"] is None else bytes.fromhex(d["kil"]))
            if hit is not None:
                return list(hit[0]), hit[1]
        result = await self._iq(UsyncQuery((user,)).to_node)
        found = [u for u in parse_usync_result(result) if u.user == user]
        if found and found[0].lid is not None and user.server == USER_SERVER:
            await self.learn_lid(user, found[0].lid)
        devices = sorted({d for d, _ in found[0].devices}) if found else []
        kil = found[0].key_index_list if found else None
        await self._save_devices(key, devices, kil)
        self._phash_ok.clear()
        return devices, kil

    async def _save_devices(self, key: str, devices: list[int], kil: bytes | None) -> None:
        """Store a device list (and keep it in the cache, write-through)."""
        async with self.store.transaction() as tx:
            await tx.set_meta(key, json.dumps({"devices": devices, "kil": None if kil is None else kil.hex()}).encode())
        self._devices[key] = (list(devices), kil)

    async def _forget_devices(self, user: Jid) -> None:
        await self._save_devices(_META_DEVICES + str(user), [], None)
        await self._device_list(user, refresh=True)

    async def _targets(self, chat: Jid, *, include_own: bool = True, check_sessions: bool = True) -> list[Jid]:
        """Every device to encrypt for: the recipient's (verified) and our own others, sessions ready
        (``check_sessions`` False: as listed; the caller starts the sessions it finds missing)."""
        theirs, kil = await self._device_list(chat)
        targets = [chat.with_device(d) for d in theirs]
        if include_own and chat != self.me.user_jid():
            mine, _ = await self._device_list(self.me.user_jid())
            targets += [self.me.with_device(d) for d in mine if d != self.me.device]
        if chat == self.me.user_jid():
            targets = [t for t in targets if t.device != self.me.device]
        if not check_sessions:
            return targets
        missing = [t for t in targets if not await self.cipher.has_session(await self._address(t))]
        if missing:
            dropped = await self._open_sessions(missing, kil)
            targets = [t for t in targets if t not in dropped]
        return targets

    async def _open_sessions(self, missing: list[Jid], kil: bytes | None) -> set[Jid]:
        """Fetch the bundles of ``missing`` and start their sessions; returns the devices left out
        (no bundle, or refused)."""
        result = await self._iq(lambda i: bundle_query(i, missing))
        bundles = {b.jid: b for b in parse_bundle_result(result)}
        dropped: set[Jid] = set()
        for t in missing:
            b = bundles.get(t)
            if b is None or not await self._accept_bundle(t, b, kil):
                dropped.add(t)
        return dropped

    async def _accept_bundle(self, jid: Jid, b: DeviceBundle, kil: bytes | None) -> bool:
        """Start a session from ``b`` if the device passes the checks; False: leave it out."""
        if jid.device != 0 and jid.user != self.me.user:
            reason = await self._adv_reason(jid, b.bundle.identity_key, b.device_identity, kil)
            if reason is not None:  # our copy of the account's key-index list may be older: check once more
                _, fresh = await self._device_list(jid.user_jid(), refresh=True)
                if fresh != kil:
                    reason = await self._adv_reason(jid, b.bundle.identity_key, b.device_identity, fresh)
            if reason is not None:
                await self._emit(DeviceRejected(jid, reason))
                return False
        async with self._account_lock(jid.user):
            addr = await self._address(jid)
            try:
                await self.cipher.process_bundle(addr, b.bundle)
            except UntrustedIdentityError:
                if not await self._identity_changed(jid, b.bundle.identity_key):
                    return False
                await self.cipher.process_bundle(addr, b.bundle)
            except (InvalidSignatureError, PeerError) as exc:
                await self._emit(DeviceRejected(jid, f"bundle refused: {type(exc).__name__}"))
                return False
        return True

    async def _adv_reason(self, jid: Jid, identity_key: bytes, device_identity: bytes | None,
                          kil: bytes | None) -> str | None:
        """Why the companion ``jid`` (identity key ``identity_key``, 33 bytes) must not be used
        (None: its ADV identity verifies against its account's key and key-index list)."""
        if device_identity is None:
            return "no ADV device identity"
        if kil is None:
            return "the account has no signed key-index list"
        account = await self.cipher.remote_identity(await self._address(jid.user_jid()))
        if account is None:
            primary = jid.user_jid()
            await self._targets_primary(primary)
            account = await self.cipher.remote_identity(await self._address(primary))
        if account is None:
            return "the account's primary identity is unknown"
        try:
            acct = PublicKey.from_bytes(account)
            lst: KeyIndexList = verify_key_index_list(kil, acct)
            verify_device_identity(device_identity, device_identity=PublicKey.from_bytes(identity_key),
                                   account_identity=acct, key_index_list=lst)
        except RevokedDeviceError as exc:
            return f"revoked: {exc}"
        except (InvalidSignatureError, PeerError, InvalidArgumentError) as exc:
            return f"ADV check failed: {exc}"
        return None

    async def _adv_reason_incoming(self, device: Jid, msg: IncomingMessage) -> str | None:
        """Why a pkmsg from another account's companion ``device`` must not start a session (None: it
        proves, with its ADV identity, that the account's primary linked it)."""
        if await self.cipher.has_session(await self._address(device)):
            return None  # proven when the session was made
        pk = next(e for e in msg.encs if e.type == "pkmsg")
        try:
            identity = SessionCipher.parse(PREKEY_TYPE, pk.ciphertext)
            assert isinstance(identity, PreKeySignalMessage)
            _, kil = await self._device_list(device.user_jid(), refresh=True)
        except (PeerError, IqError) as exc:
            return f"cannot check: {type(exc).__name__}"
        return await self._adv_reason(device, identity.identity_key, msg.device_identity, kil)

    async def _targets_primary(self, primary: Jid) -> None:
        if await self.cipher.has_session(await self._address(primary)):
            return
        result = await self._iq(lambda i: bundle_query(i, [primary]))
        for b in parse_bundle_result(result):
            if b.jid == primary:
                await self._accept_bundle(primary, b, None)

    async def _identity_changed(self, jid: Jid, new_key: bytes) -> bool:
        """Apply the identity policy to ``jid``'s new key; True when it is trusted now."""
        number = await self._safety_number(jid, new_key)
        if self.identity_policy == "accept":
            await self.cipher.trust_identity(await self._address(jid), new_key)
            await self._emit(IdentityChanged(jid, number, True))
            return True
        self._pending_identity[jid] = new_key
        await self._emit(IdentityChanged(jid, number, False))
        return False

    # ------------------------------------------------------------------ prekeys
    async def _keys_upload(self, count: int) -> None:
        recs = await generate_prekeys(self.store, count, rng=self._rng) if count else []
        async with self.store.transaction() as tx:
            pair, reg = await local_identity(tx)
            spk = await _current_signed(tx)
        node = PrekeyUpload(reg, pair.public.u, tuple((r.id, r.key_pair.public.u) for r in recs),
                            SignedPreKey(spk.id, spk.key_pair.public.u, spk.signature))
        await self._iq(node.to_node)
        self.prekey_uploads += 1

    async def _check_prekeys(self) -> None:
        """The prekey rules on login and on an encrypt-count notification: 812 at first, 50 when the
        server holds fewer than 5, one upload at a time; a signed prekey older than
        ``signed_prekey_max_age`` is rotated and uploaded."""
        async with self.store.transaction() as tx:
            registered = await tx.get_meta(_META_REGISTERED) is not None
            spk = await _current_signed(tx)
        self._uploader.registered = self._uploader.registered or registered
        rotate = registered and self._clock() - spk.timestamp / 1000 > self.signed_prekey_max_age
        if rotate:
            await rotate_signed_prekey(self.store, rng=self._rng, clock=self._clock)
        while True:
            server_count = parse_prekey_count(await self._iq(prekey_count_query)) if registered else 0
            self.server_prekeys = server_count
            n = self._uploader.begin(server_count)
            if not n and not rotate:
                return
            ok = False
            try:
                await self._keys_upload(n)
                ok = True
                rotate = False
                self.server_prekeys = (self.server_prekeys or 0) + n
                if not registered:
                    async with self.store.transaction() as tx:
                        await tx.set_meta(_META_REGISTERED, b"1")
                    registered = True
            finally:
                again = self._uploader.done(ok) if n else False
            if not again:
                return

    # ------------------------------------------------------------------ the loop
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Read the connection's events until it closes."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._worker)
            nursery.start_soon(self._flusher)
            nursery.start_soon(self._ack_writer)
            task_status.started()
            async for ev in self.client.events():
                if isinstance(ev, StateChanged):
                    if ev.state is ClientState.CONNECTED:
                        self._connections += 1
                        if self._connections > 1:
                            self.reconnects += 1
                            if self.metrics is not None:
                                self.metrics.reconnects.inc()
                    if ev.state is not ClientState.CONNECTED:
                        if self._logged_in.is_set():  # (an unset one may have waiters: keep it)
                            self._logged_in = trio.Event()
                        self._inflight.clear()
                    await self._emit(ev)
                    continue
                if not isinstance(ev, NodeReceived):
                    continue
                node = ev.node
                if node.tag == "iq" and node.attrs.get("type") in ("result", "error"):
                    waiter = self._iqs.get(node.attrs.get("id", ""))
                    if waiter is not None:
                        waiter.send_nowait(node)
                    continue
                if node.tag == "success":
                    nursery.start_soon(self._on_login, node)
                    continue
                if node.tag == "failure":  # the server refused this device's login: not again
                    self.login_error = node
                    error = LoggedOutError(f"the server refused the login (reason {node.attrs.get('reason', '?')})")
                    await self.client.close(error)
                    await self._emit(StateChanged(ClientState.CLOSED, error=error))
                    break
                if node.tag == "ack" and node.attrs.get("class") == "message":
                    if node.attrs.get("error") is None:
                        mid = node.attrs.get("id", "")
                        self._acks.append((mid, self._clock()))  # removed in bulk by _ack_writer
                        self._ack_wake.set()
                        if mid in self._nacked:  # one that was refused got through: no more backing off
                            self._nacked.clear()
                            self._nack_backoff = 0.0
                        phash, to = node.attrs.get("phash"), node.attrs.get("from")
                        if phash and to and self._phash_ok.get(to) != phash:
                            nursery.start_soon(self._check_phash, to, phash)
                    else:
                        nursery.start_soon(self._on_nack, node)
                    continue
                await self._work_send.send(node)
            nursery.cancel_scope.cancel()

    async def _check_digest(self) -> bool:
        """Compare the server's digest of our keys with our store; on a mismatch (keys lost or
        garbled on the server, or not ours) upload our identity, signed prekey and a fresh batch.
        True when the server's keys were found intact."""
        try:
            digest = parse_digest_result(await self._iq(digest_query))
        except IqError:
            return False  # nothing registered yet: the count check uploads
        async with self.store.transaction() as tx:
            pair, reg = await local_identity(tx)
            spk = await _current_signed(tx)
            pubs: list[bytes] = []
            for key_id in digest.prekey_ids:
                raw = await tx.load_prekey(key_id)
                if raw is None:
                    break
                pubs.append(PreKeyRecord.from_bytes(raw, trusted=True).key_pair.public.u)
        ours = SignedPreKey(spk.id, spk.key_pair.public.u, spk.signature)
        intact = (len(pubs) == len(digest.prekey_ids) and digest.registration_id == reg
                  and digest.identity == pair.public.u and digest.signed_prekey == ours
                  and hmac.compare_digest(digest.hash, key_digest_hash(pair.public.u, ours, pubs)))
        if not intact:
            self.digest_mismatches += 1
            await self._keys_upload(PREKEY_UPLOAD_BATCH)
        return intact

    async def _on_login(self, success: Node) -> None:
        if self._mine is not None:  # what other stripes changed in the store while this one was away
            self._devices.clear()
            self._phash_ok.clear()
        lid = success.attrs.get("lid")
        if lid and self.me.server == USER_SERVER:
            try:
                await self.learn_lid(self.me, Jid.parse(lid))  # (every stripe: the first to come moves the state)
            except PeerError:
                pass  # a malformed LID from the server: keep the phone-number addresses
        if not self.stripe.account_wide:  # the account's keys and housekeeping are stripe 0's
            self._logged_in.set()
            self._reload = True
            self._flush_wake.set()
            return
        try:
            uploads = self.prekey_uploads
            await self._check_prekeys()
            async with self.store.transaction() as tx:
                registered = await tx.get_meta(_META_REGISTERED) is not None
            if registered and self.prekey_uploads == uploads:  # (what we just uploaded needs no check)
                await self._check_digest()
        except (IqError, TransportError) as exc:
            self.login_problem = exc  # the next login tries again
            return
        self._logged_in.set()
        self._reload = True
        self._flush_wake.set()
        await self._prune_sent()

    async def _prune_sent(self) -> None:
        async with self.store.transaction() as tx:
            await tx.sent_prune(self._clock() - self.sent_retention)
            await tx.retry_prune(self._clock() - RETRY_KEEP)

    async def _flusher(self) -> None:
        """Send what was committed, in order: after each login the whole outbox first (oldest first),
        then each new send as it commits; every RESEND_AFTER seconds what is still unacknowledged
        and not in flight is read from the outbox and sent again, and sooner after a nack that may
        pass (a full mailbox share): 0.25 s after the first, doubling while they go on."""
        while True:
            woke = False
            if self._resend_at is None or not self._logged_in.is_set():
                wait = RESEND_AFTER  # (logged out: the next login wakes it, and reads the outbox)
            else:
                wait = max(0.0, self._resend_at - trio.current_time())
            with trio.move_on_after(wait):
                await self._flush_wake.wait()
                woke = True
            self._flush_wake = trio.Event()
            if not self._logged_in.is_set():
                continue
            due = self._resend_at is not None and trio.current_time() >= self._resend_at
            more = False
            if self._reload or not woke or due:
                self._resend_at = None
                self._reload = self._more_in_outbox = False
                async with self.store.transaction() as tx:
                    rows = await tx.outbox_list(limit=OUTBOX_BATCH, chats=self._mine)
                more = len(rows) == OUTBOX_BATCH  # more behind these: read on once some of these went
                stored: list[tuple[str, bytes]] = []
                damaged: list[tuple[str, bytes]] = []
                limit = self.client.max_stanza_len
                for r in rows:
                    if r.msg_type == STANZA_TYPE:
                        ok = len(r.body) <= limit and _is_message_stanza(r.body)
                        (stored if ok else damaged).append((r.message_id, r.body))
                if damaged:  # never sent as it is: it would only make the server drop the connection
                    async with self.store.transaction() as tx:
                        await tx.outbox_discard([i for i, _ in damaged])
                    for i, _ in damaged:
                        await self._emit(SendRejected(i, 0))
                ids = {i for i, _ in stored}
                self._queue = deque(stored + [q for q in self._queue if q[0] not in ids])
            sent = 0
            try:
                while self._queue and self._logged_in.is_set():
                    mid, body = self._queue.popleft()
                    if mid in self._inflight:
                        continue
                    self._inflight.add(mid)
                    await self.client.send_encoded(body, "message")  # as committed: not decoded again
                    sent += 1
                    self.sent += 1
                    self._sent_at.setdefault(mid, self._clock())
                    if self.metrics is not None:
                        self.metrics.sent.inc()
            except (TransportError, trio.ClosedResourceError, trio.BrokenResourceError):
                continue  # the connection went: the next login reads the outbox again
            if more:
                if sent:
                    self._reload = True  # read on at once
                    self._flush_wake.set()
                else:  # all of those are in flight: read on when acks have taken some out
                    self._more_in_outbox = True

    async def _ack_writer(self) -> None:
        """Take acknowledged messages out of the outbox, the acks of up to ``ACK_COALESCE`` seconds in
        one transaction: at a low rate every ack would otherwise cost a commit (an fsync) of its own.
        (An ack lost to a crash before this commit only means a resend, which the server acks again
        without delivering it twice; until the commit the message counts as in flight, not resent.)"""
        while True:
            await self._ack_wake.wait()
            if len(self._acks) < _ACK_BATCH:
                await trio.sleep(ACK_COALESCE)
            self._ack_wake = trio.Event()
            if self._acks:  # (a pending() or health() meanwhile may have taken them all out)
                async with self._outbox_tx():
                    pass  # the transaction takes the waiting acks out of the outbox
            if self._more_in_outbox:  # the flusher stopped at a page of messages all in flight
                self._more_in_outbox = False
                self._reload = True
                self._flush_wake.set()

    def _acked(self, acks: Iterable[tuple[str, float]]) -> None:
        """``acks``: (message id, when its ack arrived), now out of the outbox."""
        for mid, at in acks:
            if mid not in self._inflight:
                continue  # (not sent on this connection: counted when it was)
            self._inflight.discard(mid)
            sent_at = self._sent_at.pop(mid, None)
            self.acked += 1
            if self.metrics is not None:
                self.metrics.acked.inc()
                if sent_at is not None:
                    self.metrics.send_latency.observe(max(0.0, at - sent_at))

    async def _on_nack(self, node: Node) -> None:
        mid = node.attrs.get("id", "")
        self._inflight.discard(mid)
        if node.attrs.get("error") in _FINAL_NACKS:  # the server will never take it: drop it and say so
            async with self.store.transaction() as tx:
                if await tx.outbox_remove(mid):
                    await self._emit(SendRejected(mid, int(node.attrs["error"])))
            return
        # else (a full mailbox share, say): it stays in the outbox and goes again soon, each round
        # twice as late until one of the refused ones gets through (the recipient is behind)
        self._nacked.add(mid)
        if self._resend_at is None:  # one resend round for all the nacks until then
            self._nack_backoff = min(RESEND_AFTER, max(_NACK_RETRY_FIRST, self._nack_backoff * 2))
            self._resend_at = trio.current_time() + self._nack_backoff
            self._flush_wake.set()

    async def _check_phash(self, to: str, phash: str) -> None:
        """The server's hash of the devices it delivered to (the recipient's and our own others):
        on a mismatch our device lists are stale, read them again."""
        try:
            chat = Jid.parse(to).user_jid()
            if chat.is_group:
                return  # (the group's devices are read afresh on every group send)
            theirs, _ = await self._device_list(chat)
            mine, _ = await self._device_list(self.me.user_jid())
            devices = {chat.with_device(d) for d in theirs} | {self.me.with_device(d) for d in mine}
            if participant_hash(sorted(devices - {self.me})) == phash:
                self._phash_ok[to] = phash
                return
            await self._device_list(chat, refresh=True)
            await self._device_list(self.me.user_jid(), refresh=True)
        except (PeerError, IqError, TransportError):
            pass

    async def _emit(self, ev: WaEvent) -> None:
        await self._ev_send.send(ev)

    async def _worker(self) -> None:
        """Handle delivered stanzas in order (may wait for iqs: the reader keeps reading).

        What has queued up meanwhile is taken together: consecutive plain pairwise messages of one
        sender device are decrypted in one store transaction (one commit for the run, see
        :meth:`_read_run`); everything else one stanza at a time, as it came.
        """
        async for node in self._work_recv:
            batch = [node]
            while len(batch) < _READ_BATCH:
                try:
                    batch.append(self._work_recv.receive_nowait())
                except trio.WouldBlock:
                    break
            i = 0
            while i < len(batch):
                run = self._plain_run(batch, i)
                try:
                    if len(run) > 1:
                        await self._read_run(run)
                    else:
                        await self._handle(batch[i])
                except (IqError, TransportError, trio.ClosedResourceError, trio.BrokenResourceError):
                    pass  # not acked: the server delivers them again after the next login
                i += max(1, len(run))

    def _plain_run(self, batch: list[Node], start: int) -> list[tuple[Node, IncomingMessage]]:
        """The longest run from ``batch[start]`` of messages from one device, each a single pairwise
        ``msg`` or ``pkmsg`` (no group, no companion pkmsg to ADV-check, sender not held): what
        :meth:`_read_run` may take."""
        run: list[tuple[Node, IncomingMessage]] = []
        device: Jid | None = None
        for node in batch[start:]:
            if node.tag != "message":
                break
            try:
                msg = IncomingMessage.from_node(node)
                dev = msg.sending_device
                dev.signal_address()
            except PeerError:
                break
            if msg.participant is not None or len(msg.encs) != 1 or dev in self._held:
                break
            kind = msg.encs[0].type
            if not (kind == "msg" or (kind == "pkmsg" and (dev.device == 0 or dev.user == self.me.user))):
                break  # (a companion's pkmsg from another account is checked first: ADV, one at a time)
            if device is not None and dev != device:
                break
            device = dev
            run.append((node, msg))
        return run

    async def _read_run(self, run: list[tuple[Node, IncomingMessage]]) -> None:
        """Decrypt a run of :meth:`_plain_run` in one transaction and hand the messages out in order;
        a message that fails is dealt with at its place, exactly as :meth:`_read` would."""
        device = run[0][1].sending_device
        again: list[Node] = []
        async with self._account_lock(device.user):
            addr = await self._address(device)
            results = await self.cipher.decrypt_once_many(
                addr, [(_signal_type(m.encs[0]), m.encs[0].ciphertext) for _, m in run])
            for (node, msg), got in zip(run, results):
                if again or device in self._held:  # an identity question came up: the rest waits behind it
                    again.append(node)
                    continue
                if isinstance(got, BaseException):
                    if await self._read_failed(msg, node, device, got):
                        again.append(node)
                    continue
                try:
                    content = wamsg.decode(got.plaintext, v=msg.encs[0].v)
                except PeerError as exc:
                    await self.cipher.mark_handled(addr, got.digest)
                    await self._undecryptable(msg, node, exc, retry=False)
                    continue
                await self._hand_out(msg, node, device, content, [got.digest], got.redelivered, None)
        for node in again:  # the sender's new identity is trusted now, or they are held: as one at a time
            await self._on_message(node)

    async def _handle(self, node: Node) -> None:
        tag = node.tag
        if tag == "message":
            await self._on_message(node)
        elif tag == "receipt":
            await self._on_receipt(node)
        elif tag == "notification":
            await self._on_notification(node)
        elif tag == "iq" and node.attrs.get("type") == "get":
            await self._send(Node("iq", {"id": node.attrs.get("id", ""), "type": "result", "to": SERVER}))
        elif "id" in node.attrs and "from" in node.attrs and tag not in ("ack", "stream:error"):
            await self._send(ack_for(node).to_node())

    # ------------------------------------------------------------------ receiving messages
    async def _on_message(self, node: Node) -> None:
        try:
            msg = IncomingMessage.from_node(node)
            device = msg.sending_device
            device.signal_address()  # a device with sessions at all
        except PeerError:
            await self._send(_nack(node, 487))
            return
        if device in self._held:
            self._held[device].append(node)
            return
        if device.device != 0 and device.user != self.me.user and any(e.type == "pkmsg" for e in msg.encs):
            reason = await self._adv_reason_incoming(device, msg)
            if reason is not None:  # fail closed: an unproven companion of another account is not read
                await self._emit(DeviceRejected(device, reason))
                await self._send(ack_for(node).to_node())
                return
        async with self._account_lock(device.user):  # no LID migration of this account meanwhile
            again = await self._read(msg, node, device)
        if again:
            await self._on_message(node)  # the sender's new identity is trusted now: read it

    async def _read(self, msg: IncomingMessage, node: Node, device: Jid) -> bool:
        """Decrypt and hand out ``msg`` (the caller holds the account's lock); True: read it again."""
        addr = await self._address(device)
        digests: list[bytes] = []
        content: wamsg.Content | None = None
        redelivered = False
        group = Jid.parse(msg.sender) if msg.participant is not None else None
        for enc in sorted(msg.encs, key=lambda e: e.type == "skmsg"):  # the distribution first
            if enc.type == "skmsg" and group is None:
                await self._send(_nack(node, 487))
                return False
            try:
                if enc.type == "skmsg":
                    assert group is not None
                    got = await self._group_decrypt_once(str(group), addr, enc.ciphertext)
                else:
                    got = await self.cipher.decrypt_once(addr, _signal_type(enc), enc.ciphertext)
            except (PeerError, MissingStateError) as exc:
                return await self._read_failed(msg, node, device, exc)
            try:
                content = wamsg.decode(got.plaintext, v=enc.v)
            except PeerError as exc:
                await self.cipher.mark_handled(addr, got.digest)
                await self._undecryptable(msg, node, exc, retry=False)
                return False
            digests.append(got.digest)
            redelivered = redelivered or got.redelivered
            if enc.type == "skmsg":
                continue
            if content.distribution is not None and group is not None and content.distribution.group_id == str(group):
                try:
                    await self._groups.process_distribution(str(group), addr, content.distribution.distribution)
                except PeerError:
                    pass  # a bad distribution: the skmsg below fails and asks again
        if content is None:
            await self._send(ack_for(node).to_node())
            return False
        await self._hand_out(msg, node, device, content, digests, redelivered, group)
        return False

    async def _read_failed(self, msg: IncomingMessage, node: Node, device: Jid,
                           exc: PeerError | MissingStateError) -> bool:
        """A message that did not decrypt (nothing changed): True when it should be read again."""
        if isinstance(exc, DuplicateMessageError):
            await self._send(ack_for(node).to_node())
            return False
        if isinstance(exc, UntrustedIdentityError):
            key = getattr(exc, "identity_key", None)
            if isinstance(key, bytes) and await self._identity_changed(device, key):
                return True
            self._held.setdefault(device, []).append(node)
            return False
        await self._undecryptable(msg, node, exc)
        return False

    async def _hand_out(self, msg: IncomingMessage, node: Node, device: Jid, content: wamsg.Content,
                        digests: list[bytes], redelivered: bool, group: Jid | None) -> None:
        """Give a decrypted message to the application (once, until it is handled)."""
        if (msg.id, str(device)) in self._retried:  # (after a restart a stale count waits for retry_prune)
            async with self.store.transaction() as tx:
                await tx.retry_count_clear(msg.id, str(device))
            self._retried.discard((msg.id, str(device)))
        if (device, msg.id) in self._emitted:
            return  # pushed again before the application handled it: it already has it
        self._emitted.add((device, msg.id))
        self._received_at[(device, msg.id)] = self._clock()
        if group is not None:
            chat = group
        else:
            chat = Jid.parse(content.destination) if content.destination else device.user_jid()
        await self._emit(ReceivedMessage(msg.id, chat, device, content, msg.timestamp, redelivered,
                                         tuple(digests), node))

    async def _group_decrypt_once(self, gid: str, sender: Address, body: bytes) -> ExactlyOnce:
        """The skmsg decrypted exactly once, as :meth:`SessionCipher.decrypt_once` does for pairwise ones."""
        digest = message_digest(sender, SENDER_KEY_TYPE, body)
        message = SenderKeyMessage.from_bytes(body)
        async with self.store.transaction(sender_key_lock(gid, sender)) as tx:
            seen = await tx.get_received(digest)
            if seen is not None:
                if seen[1]:
                    raise DuplicateMessageError("group message already received and handled")
                return ExactlyOnce(digest, seen[0], True)
            pt = await self._groups.decrypt_in(tx, gid, sender, message)
            await tx.put_received(digest, pt, self._clock())
            return ExactlyOnce(digest, pt, False)

    async def _undecryptable(self, msg: IncomingMessage, node: Node, exc: BaseException, *, retry: bool = True) -> None:
        device = msg.sending_device
        count = 0
        receipt = None
        if retry:
            async with self.store.transaction() as tx:
                count = await tx.retry_count_bump(msg.id, str(device), self._clock())
                _, reg = await local_identity(tx)
            self._retried.add((msg.id, str(device)))
            # we lack the session or the prekey it names: a resend on the sender's session cannot help,
            # so the keys for a new one come with the first receipt already (else from the second)
            lost = isinstance(exc, (NoSessionError, NoPreKeyError, NoSignedPreKeyError))
            keys = await self._retry_keys() if count >= 2 or lost else None
            # the sender finds the plaintext by chat: the group, or (our own device's copy) the recipient
            chat = msg.sender if msg.participant is not None else msg.recipient
            receipt = next_retry(count - 1, message_id=msg.id, chat=str(device), timestamp=str(msg.timestamp),
                                 registration_id=reg, keys=keys, recipient=chat)
            if receipt is not None and lost and receipt.keys is None:
                receipt = dataclasses.replace(receipt, keys=keys)
        if receipt is not None:
            await self._send(receipt.to_node())
            self.retries_sent += 1
            if self.metrics is not None:
                self.metrics.retry_receipts.labels(direction="sent").inc()
        await self._send(ack_for(node).to_node())
        if self.metrics is not None:
            self.metrics.decrypt_failures.labels(kind=type(exc).__name__, final=str(receipt is None).lower()).inc()
        await self._emit(Undecryptable(msg.id, device, type(exc).__name__, count, receipt is None))

    async def _retry_keys(self) -> RetryKeys:
        (rec,) = await generate_prekeys(self.store, 1, rng=self._rng)
        async with self.store.transaction() as tx:
            pair, _ = await local_identity(tx)
            spk = await _current_signed(tx)
        return RetryKeys(pair.public.u, spk.id, spk.key_pair.public.u, spk.signature,
                         rec.id, rec.key_pair.public.u, self.device_identity)

    # ------------------------------------------------------------------ receipts
    async def _on_receipt(self, node: Node) -> None:
        await self._send(ack_for(node).to_node())
        try:
            if node.attrs.get("type") == "retry":
                await self._on_retry(RetryReceipt.from_node(node), Jid.parse(node.attrs.get("from", "")))
                return
            r = Receipt.from_node(node)
            await self._emit(ReceiptReceived(r.ids, Jid.parse(r.chat), r.type))
        except PeerError:
            return

    async def _on_retry(self, receipt: RetryReceipt, device: Jid) -> None:
        if self.metrics is not None:
            self.metrics.retry_receipts.labels(direction="received").inc()
        named = Jid.parse(receipt.recipient) if receipt.recipient else None
        group = named if named is not None and named.is_group else None
        if group is not None:
            chat = str(group)
        elif named is not None and device.user == self.me.user:
            chat = str(named.user_jid())  # our own other device asks about a 1:1 we sent to ``named``
        else:
            chat = str(device.user_jid())
        async with self.store.transaction() as tx:
            sent = await tx.sent_get(receipt.message_id, chat)
            seen_key = f"{_META_RETRY_SEEN}{device}/{receipt.message_id}"
            seen_raw = await tx.get_meta(seen_key)
            seen = int(seen_raw) if seen_raw else 0
            await tx.set_meta(seen_key, str(seen + 1).encode())
            rebuilt_raw = await tx.get_meta(_META_REBUILT + str(device))
        if sent is None:
            return  # not ours, or purged: nothing to re-encrypt
        addr = await self._address(device)
        has = await self.cipher.has_session(addr)
        decision = decide_resend(receipt, has_session=has, session_registration_id=None,
                                 last_rebuild_at=None if rebuilt_raw is None else float(rebuilt_raw),
                                 now=self._clock(), requests_seen=seen, is_group=group is not None)
        if decision.action is ResendAction.IGNORE:
            return
        kil = None if device.device == 0 else (await self._device_list(device.user_jid()))[1]
        if decision.action is ResendAction.REBUILD_FROM_KEYS and receipt.keys is not None:
            async with self.store.transaction(addr) as tx:
                await tx.delete_session(addr)
            bundle = DeviceBundle(device, receipt.keys.bundle(receipt.registration_id, device.device),
                                  receipt.keys.device_identity)
            if not await self._accept_bundle(device, bundle, kil):
                return
        elif decision.action is ResendAction.REBUILD_FETCH:
            async with self.store.transaction(addr) as tx:
                await tx.delete_session(addr)
            result = await self._iq(lambda i: bundle_query(i, [device]))
            bundles = [b for b in parse_bundle_result(result) if b.jid == device]
            if not bundles or not await self._accept_bundle(device, bundles[0], kil):
                return
        if decision.action is not ResendAction.RESEND:
            async with self.store.transaction() as tx:
                await tx.set_meta(_META_REBUILT + str(device), str(self._clock()).encode())
        content = wamsg.decode(sent.plaintext, v=3)
        if group is not None and decision.resend_sender_key:  # a fresh copy of our sender key with it
            own = await self._address(self.me)
            skdm = await self._groups.create_distribution(str(group), own)
            content = content.with_distribution(wamsg.SenderKeyDistribution(str(group), skdm))
        elif device.user == self.me.user and group is None:
            content = content.sent_to(sent.chat)
        async with self._account_lock(device.user):
            ct = await self.cipher.encrypt(await self._address(device), wamsg.encode(content, rng=self._rng))
        kind: EncType = "pkmsg" if ct.type == PREKEY_TYPE else "msg"
        enc = Enc(kind, ct.body, count=receipt.count)
        identity = self.device_identity if kind == "pkmsg" and self.me.device else None
        if group is not None:
            node = GroupMessage(receipt.message_id, group, ((device, enc),), device_identity=identity).to_node()
        else:
            node = OutgoingMessage(receipt.message_id, sent.chat, ((device, enc),), device_identity=identity).to_node()
        await self._send(node)
        self.retries_answered += 1

    # ------------------------------------------------------------------ notifications
    async def _on_notification(self, node: Node) -> None:
        try:
            note = parse_notification(node)
        except PeerError:
            note = None
        if isinstance(note, EncryptCountNotification):
            try:
                await self._check_prekeys()
            except IqError:
                pass
        elif isinstance(note, IdentityChangeNotification):
            user = note.jid.user_jid()
            devices, _ = await self._device_list(user)
            for d in devices:  # the sessions are useless now; the next send fetches new bundles
                a = await self._address(user.with_device(d))
                async with self.store.transaction(a) as tx:
                    await tx.delete_session(a)
        elif isinstance(note, DevicesNotification):
            await self._device_list(note.jid.user_jid(), refresh=True)
        await self._send(ack_for(node).to_node())


def _signal_type(enc: Enc) -> int:
    """The Signal message type of a pairwise ``<enc>`` (pkmsg or msg)."""
    return PREKEY_TYPE if enc.type == "pkmsg" else WHISPER_TYPE


def _is_message_stanza(body: bytes) -> bool:
    """An outbox row's stanza decodes, as a message."""
    try:
        return decode_node(body).tag == "message"
    except PeerError:
        return False


def _nack(node: Node, code: int) -> Node:
    attrs = {"id": node.attrs.get("id", "-"), "class": node.tag, "error": str(code)}
    if "from" in node.attrs:
        attrs["to"] = node.attrs["from"]
    return Node("ack", attrs)


async def _current_signed(tx: Transaction) -> SignedPreKeyRecord:
    """The newest signed prekey (the one bundles and uploads carry)."""
    recs = []
    for i in await tx.list_signed_prekeys():
        raw = await tx.load_signed_prekey(i)
        if raw is not None:
            recs.append(SignedPreKeyRecord.from_bytes(raw, trusted=True))
    if not recs:
        raise NoSignedPreKeyError("the account has no signed prekey (create_account first)")
    return max(recs, key=lambda r: r.timestamp)


@final
@dataclass(frozen=True, slots=True)
class LinkedDevice:
    """What linking a companion produces: its ADV identity (for the companion to publish with
    :meth:`WaMessenger.publish_device_identity`) and the account's new signed key-index list (for
    the primary, :meth:`WaMessenger.publish_key_index_list`)."""

    device_identity: bytes
    key_index_list: bytes
    key_indexes: KeyIndexList


async def link_companion(primary: KeyStore, companion: KeyStore, key_index: int, *,
                         previous: KeyIndexList | None = None, raw_id: int = 1,
                         rng: Rng = system_rng, clock: Callable[[], float] = time.time) -> LinkedDevice:
    """Pair a companion device with its account's primary (both stores on hand, as after a QR scan):
    the primary signs the companion's identity key with ``key_index``, the companion countersigns,
    and the primary signs the list of indexes it accepts (``previous``'s plus this one)."""
    async with primary.transaction() as tx:
        account_pair, _ = await local_identity(tx)
    async with companion.transaction() as tx:
        device_pair, _ = await local_identity(tx)
    now = int(clock())
    rid = previous.raw_id if previous is not None else raw_id
    signed = sign_device_identity(account_pair, device_pair.public, DeviceIdentity(rid, now, key_index), rng)
    identity = countersign_device_identity(device_pair, signed, rng)
    valid = (previous.valid_indexes if previous is not None else frozenset()) | {key_index}
    lst = KeyIndexList(rid, now, max(valid), frozenset(valid))
    return LinkedDevice(identity, sign_key_index_list(account_pair, lst, rng), lst)


@asynccontextmanager
async def open_wa_messenger(store: KeyStore, config: ChatClientConfig, me: Jid, **options: Any) -> AsyncIterator[WaMessenger]:
    """Open the chat connection of ``config`` (its handshake payload then names ``me``) and run a
    :class:`WaMessenger` on it until the block ends; ``options`` are :class:`WaMessenger`'s keyword
    arguments. The store stays the caller's to close."""
    p = config.client_payload
    stripe = options.get("stripe") or Stripe()
    cfg = dataclasses.replace(config, client_payload=ClientPayload(p.version, p.user_agent, me.user, me.server, me.device,
                                                                   stripe.index, stripe.count))
    async with open_chat_client(cfg) as client, trio.open_nursery() as nursery:
        m = WaMessenger(store, client, me, **options)
        await nursery.start(m.run)
        yield m
        nursery.cancel_scope.cancel()
