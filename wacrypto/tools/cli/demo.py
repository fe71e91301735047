"""`wacrypto demo`: end-to-end encryption in one process, printed as a transcript a newcomer can follow.

Part 1, the Signal core by hand: Alice fetches Bob's prekey bundle, runs X3DH, and they hold a short
conversation in which messages arrive out of order, one is replayed and one is tampered with.

Part 2, WhatsApp-style messaging (:mod:`wacrypto.chat.wa_messenger`) through the reference chatd and
its media endpoint on loopback TCP, every step of docs/chat-protocol.md that a user meets:
registration, a bundle fetch, a conversation both ways, a decrypt failure healed by a retry receipt,
an identity change, a second device, an image, a group of three, a chatd restart mid-conversation
(nothing lost, nothing duplicated) and receipts.

Every key store, and chatd's own state, is a SQLite file under ``--dir`` (the embedded default);
the media blobs live in a temporary folder removed at the end. Every step is checked and bounded by
a timeout: a step that does not happen ends the demo with exit status 1 and a one-line message
naming it. Nothing secret is printed: ids, counts, sizes, safety numbers and times only.

The demo never deletes what it did not make: it uses ``--dir`` only if the folder is new, empty, or
marked as a previous demo's (it writes :data:`MARKER` there), and then removes only its own files.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NoReturn, TypeVar

import trio

from wacrypto.address import Address
from wacrypto.chat.client import ChatClientConfig
from wacrypto.chat.wa_messenger import (
    DeviceRejected,
    IdentityChanged,
    ReceiptReceived,
    ReceivedMessage,
    Undecryptable,
    WaEvent,
    WaMessenger,
    link_companion,
    open_wa_messenger,
)
from wacrypto.chatd.db import ChatdDatabase, DeviceRecord
from wacrypto.chatd.media import MediaServer
from wacrypto.errors import DecryptionError, DuplicateMessageError, WacryptoError
from wacrypto.media.client import MediaClient
from wacrypto.primitives.keys import KeyPair
from wacrypto.session import account
from wacrypto.session.cipher import CiphertextMessage, SessionCipher
from wacrypto.store import open_store
from wacrypto.store.protocols import KeyStore
from wacrypto.testing.chatd_inprocess import RestartableChatd
from wacrypto.tools.cli.common import CliFailure, CliUsageError
from wacrypto.transport.chat_connection import KeepaliveSettings
from wacrypto.whatsapp.jid import LID_SERVER, USER_SERVER, Jid

MARKER: Final = ".wacrypto-demo"  # written into the --dir the demo uses: a folder it may clear later
# every store the demo writes (and those of earlier versions of it: alice.db, bob.db)
_STORES: Final = ("alice", "bob", "signal-alice", "signal-bob", "alice-laptop", "carol", "chatd")
_SQLITE_SUFFIXES: Final = ("", "-wal", "-shm", "-journal")
_OWN_FILES: Final = frozenset({MARKER} | {f"{p}.db{s}" for p in _STORES for s in _SQLITE_SUFFIXES})

STEP_TIMEOUT: Final = 20.0  # seconds any one step may take before the demo gives up
TOTAL_TIMEOUT: Final = 150.0  # seconds the whole demo may take
_T = TypeVar("_T")


def _say(text: str = "") -> None:
    print(text, flush=True)


def prepare_directory(directory: Path) -> None:
    """Make ``directory`` ready for a fresh run: create it, or clear a previous demo's files from it.

    A folder that exists is used only if it is empty, carries :data:`MARKER`, or holds nothing but
    the demo's own store files (a demo from before the marker); anything else is refused with a
    usage error and left untouched. Only the demo's own files are ever removed."""
    if directory.exists() and not directory.is_dir():
        raise CliUsageError(f"--dir {directory} exists and is not a folder; choose another --dir")
    if directory.is_dir():
        names = {p.name for p in directory.iterdir()}
        if names and MARKER not in names and not names <= _OWN_FILES:
            raise CliUsageError(
                f"--dir {directory} is not empty and was not made by `wacrypto demo`: the demo clears the folder "
                "it uses, so it refuses this one; choose a new or empty folder"
            )
        for name in sorted(names & _OWN_FILES - {MARKER}):
            (directory / name).unlink()
    else:
        try:
            directory.mkdir(parents=True)
        except OSError as exc:
            raise CliFailure(f"cannot create --dir {directory}: {exc.strerror or exc}") from None
    (directory / MARKER).write_text(
        "This folder was made by `wacrypto demo` (its SQLite key stores and chatd's database); "
        "the next demo run clears them.\n"
    )


# --------------------------------------------------------------------------- steps
class _Steps:
    """Numbered steps, each bounded by :data:`STEP_TIMEOUT`; :meth:`check` fails the one running."""

    def __init__(self, total: int, timeout: float = STEP_TIMEOUT) -> None:
        self.total = total
        self.timeout = timeout
        self.n = 0
        self.title = ""
        self.waiting = ""  # what the running step waits for (named if it times out)

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        self.n += 1
        self.title, self.waiting = title, ""
        _say()
        _say(f"[{self.n}/{self.total}] {title}")
        t0 = trio.current_time()
        try:
            with trio.fail_after(self.timeout):
                yield
        except trio.TooSlowError:
            what = f": still waiting for {self.waiting}" if self.waiting else ""
            raise CliFailure(f"step {self.n} ({title}) did not happen within {self.timeout:g} s{what}") from None
        _say(f"      ok, {_ms(trio.current_time() - t0)}")

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            self.fail(what)

    def fail(self, what: str) -> NoReturn:
        raise CliFailure(f"step {self.n} ({self.title}) went wrong: {what}")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


# --------------------------------------------------------------------------- part 1
async def signal_core(directory: Path, seed: int) -> None:
    """X3DH and a double-ratchet conversation between two stores, no network; every outcome checked."""
    rnd = random.Random(seed)
    A, B = Address("alice", 1), Address("bob", 1)
    sa = await open_store(f"sqlite:///{directory / 'signal-alice.db'}")
    sb = await open_store(f"sqlite:///{directory / 'signal-bob.db'}")
    decrypted = 0
    try:
        ca, cb = SessionCipher(sa), SessionCipher(sb)
        _say("== part 1: the Signal core by hand (X3DH and the double ratchet; no network)")
        await account.create_account(sa, prekeys=10)
        await account.create_account(sb, prekeys=10)
        bundle = await account.get_bundle(sb)
        _say(f"bob publishes a bundle: registration id {bundle.registration_id}, an identity key, "
             f"signed prekey #{bundle.signed_prekey_id} and one-time prekey #{bundle.prekey_id}")
        await ca.process_bundle(B, bundle)
        _say("alice checks the signed prekey's XEdDSA signature and runs X3DH: a session (her first "
             "messages are PreKey messages)")

        async def send(c: SessionCipher, who: str, to: Address, text: str) -> CiphertextMessage:
            m = await c.encrypt(to, text.encode())
            kind_s = "PreKeySignalMessage" if m.type == 3 else "SignalMessage"
            _say(f"  {who:>5} -> {to.name:<5} [{kind_s}, {len(m.body)} bytes]  {text!r}")
            return m

        async def recv(c: SessionCipher, who: str, frm: Address, m: CiphertextMessage,
                       expect: str | type[WacryptoError]) -> None:
            nonlocal decrypted
            try:
                got = (await c.decrypt(frm, m.type, m.body)).decode()
            except WacryptoError as exc:
                _say(f"  {who:>5} <- {frm.name:<5} rejected: {type(exc).__name__}: {exc}")
                if isinstance(expect, str) or not isinstance(exc, expect):
                    raise CliFailure(f"part 1: {who} could not decrypt a message ({type(exc).__name__})") from None
                return
            _say(f"  {who:>5} <- {frm.name:<5} decrypted: {got!r}")
            if got != expect:
                raise CliFailure(f"part 1: {who} decrypted something other than expected")
            decrypted += 1

        _say("-- alice sends three messages; the network delivers them in a shuffled order")
        texts = ("Hello Bob", "Order #1042 is ready", "Can you confirm?")
        batch = [await send(ca, "alice", B, t) for t in texts]
        order = list(range(3))
        rnd.shuffle(order)
        _say(f"   delivery order: {[i + 1 for i in order]}")
        for i in order:
            await recv(cb, "bob", A, batch[i], texts[i])
        _say("-- bob answers (a new ratchet step: fresh DH keys on both sides)")
        r1 = await send(cb, "bob", A, "Confirmed, thanks!")
        r2 = await send(cb, "bob", A, "Pickup at 5pm")
        await recv(ca, "alice", B, r2, "Pickup at 5pm")
        await recv(ca, "alice", B, r1, "Confirmed, thanks!")
        _say("-- the network replays a message: it is refused and nothing changes")
        await recv(ca, "alice", B, r1, DuplicateMessageError)
        _say("-- an attacker flips one bit of a message: refused, opaque error, state unchanged")
        m = await send(ca, "alice", B, "See you then")
        bad = bytearray(m.body)
        bad[len(bad) // 2] ^= 1
        await recv(cb, "bob", A, CiphertextMessage(m.type, bytes(bad)), DecryptionError)
        await recv(cb, "bob", A, m, "See you then")
        _say("-- a few more turns of the double ratchet")
        for i in range(2):
            await recv(cb, "bob", A, await send(ca, "alice", B, f"ping {i}"), f"ping {i}")
            await recv(ca, "alice", B, await send(cb, "bob", A, f"pong {i}"), f"pong {i}")
        if decrypted != 10:
            raise CliFailure(f"part 1: {decrypted} of 10 messages decrypted")
        _say(f"== part 1 done: every message decrypted exactly once ({decrypted} of 10); "
             "the replay and the forgery were rejected")
    finally:
        await sa.aclose()
        await sb.aclose()


# --------------------------------------------------------------------------- part 2: chatd and devices
class _Chatd(RestartableChatd):
    """The reference chatd on its SQLite database, on one loopback port; stopped and started again
    on the same file and port (a restart); and what the demo reads of its database."""

    @property
    def db(self) -> ChatdDatabase:
        if self.server is None or self.server.db is None:
            raise CliFailure("chatd is not running")
        return self.server.db

    def record(self, device: Jid) -> DeviceRecord:
        """The keys chatd has registered for ``device`` (a failure if it has none)."""
        rec = self.db.device(str(device.user_jid()), device.device)
        if rec is None:
            raise CliFailure(f"chatd has no keys registered for {device}")
        return rec

    def prekey_ids(self, device: Jid) -> set[int]:
        """The ids of ``device``'s one-time prekeys chatd has not handed out yet."""
        with self.db.transaction() as tx:
            return {i for i, _ in tx.unused_prekey_list(str(device.user_jid()), device.device)}

    def waiting(self, device: Jid, ids: set[str] | None = None) -> int:
        """Stanzas chatd's database holds for ``device`` not acknowledged yet (those of ``ids`` only)."""
        rows = self.db.pending(str(device), now=time.time(), limit=10_000)
        return sum(1 for r in rows if ids is None or r.msg_id in ids)


@dataclass
class _Device:
    """One device: its SQLite key store and, while it runs, its messenger (in a task of its own, so
    devices start and stop in any order). What the messenger reports is kept in :attr:`events`; each
    received message is marked handled (the application has shown it)."""

    label: str
    jid: Jid
    path: Path
    steps: _Steps
    static: KeyPair = field(default_factory=KeyPair.generate)
    events: list[tuple[float, WaEvent]] = field(default_factory=list)
    m: WaMessenger | None = None
    _changed: trio.Event = field(default_factory=trio.Event)
    _stop: trio.Event = field(default_factory=trio.Event)
    _stopped: trio.Event = field(default_factory=trio.Event)

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"

    async def create(self) -> None:
        """A new account's keys (identity, registration id, signed prekey); one-time prekeys come at login."""
        store = await open_store(self.url)
        try:
            await account.create_account(store, prekeys=0)
        finally:
            await store.aclose()

    @property
    def messenger(self) -> WaMessenger:
        if self.m is None:
            raise CliFailure(f"{self.label} is not running")
        return self.m

    async def start(self, nursery: trio.Nursery, chatd: _Chatd) -> None:
        self.steps.waiting = f"{self.label} to log in to chatd"
        self._stop, self._stopped = trio.Event(), trio.Event()
        await nursery.start(self._run, chatd)

    async def stop(self, chatd: _Chatd | None = None) -> None:
        """Stop the messenger; with ``chatd``, first wait until chatd has had every acknowledgement of
        this device (a clean shutdown: nothing it handled is delivered to it again)."""
        if chatd is not None:
            await _until(self.steps, f"chatd to have every acknowledgement of {self.label}",
                         lambda: chatd.waiting(self.jid) == 0)
        self._stop.set()
        await self._stopped.wait()

    async def _run(self, chatd: _Chatd, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        config = ChatClientConfig(host="127.0.0.1", trusted_root=chatd.keys.root_public, static_key=self.static,
                                  ports=(chatd.port,), keepalive=KeepaliveSettings(interval=0), backoff_base=0.05,
                                  backoff_cap=0.3, connect_timeout=5.0)
        store = await open_store(self.url)
        try:
            async with open_wa_messenger(store, config, self.jid) as m, trio.open_nursery() as n:
                n.start_soon(self._collect, m)
                await m.wait_logged_in()
                self.m = m
                task_status.started()
                await self._stop.wait()
                n.cancel_scope.cancel()
        finally:
            self.m = None
            await store.aclose()
            self._stopped.set()

    async def _collect(self, m: WaMessenger) -> None:
        async for ev in m.events():
            self.events.append((trio.current_time(), ev))
            self._changed.set()
            if isinstance(ev, ReceivedMessage):
                await m.mark_handled(ev)  # acknowledged now: chatd deletes its copy, the sender gets a receipt

    async def wait_for(self, what: str, kind: type[_T],
                       pred: Callable[[_T], bool] = lambda e: True) -> tuple[float, _T]:
        """The first event of ``kind`` matching ``pred`` (and when it came), waiting as long as the step allows."""
        self.steps.waiting = what
        while True:
            for at, e in self.events:
                if isinstance(e, kind) and pred(e):
                    return at, e
            self._changed = trio.Event()
            await self._changed.wait()

    async def message(self, mid: str, what: str) -> tuple[float, ReceivedMessage]:
        return await self.wait_for(what, ReceivedMessage, lambda e: e.id == mid)

    async def receipt(self, mid: str, kind: str | None) -> ReceiptReceived:
        """Wait for the receipt of ``kind`` (None: delivered, "read") for our message ``mid``."""
        what = f"{self.label} to get the {kind or 'delivery'} receipt of {mid}"
        _, got = await self.wait_for(what, ReceiptReceived, lambda e: mid in e.ids and e.type == kind)
        return got

    def received(self, mid: str) -> int:
        return sum(1 for _, e in self.events if isinstance(e, ReceivedMessage) and e.id == mid)

    def receipts(self, kind: str | None) -> set[str]:
        return {i for _, e in self.events if isinstance(e, ReceiptReceived) and e.type == kind for i in e.ids}

    def of(self, kind: type[_T]) -> list[_T]:
        return [e for _, e in self.events if isinstance(e, kind)]


async def _until(steps: _Steps, what: str, cond: Callable[[], bool]) -> None:
    steps.waiting = what
    while not cond():
        await trio.sleep(0.02)


async def _outbox_empty(steps: _Steps, *devices: _Device) -> None:
    for d in devices:
        steps.waiting = f"chatd to acknowledge everything in {d.label}'s outbox"
        while await d.messenger.pending():
            await trio.sleep(0.02)


async def _canonical(store: KeyStore, jid: Jid) -> Address:
    """The Signal address a device's state is kept under: its account's LID's once it is known."""
    async with store.transaction() as tx:
        lid = await tx.get_lid_for_pn(jid.user) if jid.server == USER_SERVER else None
    return (Jid(lid, LID_SERVER, jid.device) if lid else jid).signal_address()


def _photo(seed: int) -> bytes:
    """A stand-in photo: JPEG markers around 100 KiB of seeded noise."""
    return b"\xff\xd8\xff\xe0" + random.Random(seed).randbytes(100 * 1024) + b"\xff\xd9"


# --------------------------------------------------------------------------- part 2
class _Messaging:
    """Part 2: four devices, chatd and the media endpoint; one method per step."""

    def __init__(self, directory: Path, seed: int, nursery: trio.Nursery, media: MediaClient, media_dir: Path) -> None:
        self.seed = seed
        self.nursery = nursery
        self.media = media
        self.media_dir = media_dir
        self.steps = _Steps(10)
        self.chatd = _Chatd(directory / "chatd.db")
        self.alice = _Device("alice", Jid("15550000001", USER_SERVER), directory / "alice.db", self.steps)
        self.bob = _Device("bob", Jid("15550000002", USER_SERVER), directory / "bob.db", self.steps)
        self.laptop = _Device("alice's laptop", Jid("15550000001", USER_SERVER, 1), directory / "alice-laptop.db",
                              self.steps)
        self.carol = _Device("carol", Jid("15550000003", USER_SERVER), directory / "carol.db", self.steps)
        self.everyone = (self.alice, self.bob, self.laptop, self.carol)
        self.width = max(len(d.label) for d in self.everyone)
        self.late: list[str] = []  # the ids bob gets after chatd's restart
        self.retry_failures = 0  # the undecryptable deliveries step 4 causes

    def _who(self, d: _Device) -> str:
        return d.label.ljust(self.width)

    async def send(self, frm: _Device, to: _Device, text: str, note: str = "") -> tuple[str, float]:
        mid = await frm.messenger.send_text(to.jid, text)
        _say(f"  {self._who(frm)} -> {self._who(to)}  {text!r}  id {mid}{note}")
        return mid, trio.current_time()

    async def deliver(self, to: _Device, frm: _Device, mid: str, sent_at: float, text: str, *,
                      quiet: bool = False) -> tuple[float, ReceivedMessage]:
        """Wait until ``to`` has decrypted message ``mid`` from ``frm``, check it, and say so."""
        at, got = await to.message(mid, f"{to.label} to receive {text!r}")
        self.steps.check(got.text == text and got.sender == frm.jid,
                         f"{to.label} received the wrong message for id {mid}")
        if not quiet:
            self.show(to, frm, got, at - sent_at)
        return at, got

    def show(self, to: _Device, frm: _Device, got: ReceivedMessage, after: float) -> None:
        _say(f"  {self._who(to)} <- {self._who(frm)}  {got.text!r}  decrypted, {_ms(after)} after sending")

    async def run(self) -> None:
        await self.chatd.start(self.nursery)
        _say(f"chatd listens on 127.0.0.1:{self.chatd.port}, its state in {self.chatd.path}")
        _say("alice, bob and later carol are phones (alice later adds her laptop): each device is a WaMessenger "
             "with its own SQLite key store, and they reach each other only through chatd, which sees "
             "ciphertext only")
        for title, act in (
            ("registration: alice and bob log in to chatd and upload their keys", self.registration),
            ("bundle fetch: alice writes to bob first, so she fetches his prekey bundle", self.bundle_fetch),
            ("a conversation both ways, with delivery and read receipts", self.conversation),
            ("a decrypt failure healed by a retry receipt", self.retry),
            ("an identity change: bob reinstalls and gets a new identity key", self.identity_change),
            ("a second device: alice links her laptop", self.second_device),
            ("an image: encrypted, uploaded to the media endpoint, sent, downloaded, verified", self.image),
            ("a group of three: alice, bob and carol", self.group),
            ("a chatd restart mid-conversation: nothing lost, nothing duplicated", self.restart),
            ("receipts: alice learns what bob got and read", self.receipts),
        ):
            with self.steps.step(title):
                await act()
        for d in self.everyone:
            if d.m is not None:
                await d.stop()
        await self.chatd.stop()

    # ------------------------------------------------------------------ 1
    async def registration(self) -> None:
        chatd = self.chatd
        for d in (self.alice, self.bob):
            await d.create()
            await d.start(self.nursery, chatd)
            user = str(d.jid)
            rec = chatd.record(d.jid)
            self.steps.check(d.messenger.prekey_uploads == 1, f"{d.label} uploaded no keys at login")
            held = chatd.db.unused_prekeys(user, 0)
            self.steps.check(held == 812, f"chatd holds {held} one-time prekeys of {d.label}, not 812")
            with chatd.db.transaction() as tx:
                lid = tx.lid_of(user)
            self.steps.check(lid is not None, f"chatd gave {d.label}'s account no LID")
            _say(f"  {d.label} ({d.jid}, device 0): registration id {rec.registration_id}, uploaded {held} "
                 f"one-time prekeys and signed prekey #{rec.signed_prekey_id}; chatd gives the account the LID {lid}")

    # ------------------------------------------------------------------ 2
    async def bundle_fetch(self) -> None:
        before = self.chatd.prekey_ids(self.bob.jid)
        mid, t = await self.send(self.alice, self.bob, "Hi Bob, it's Alice")
        await self.deliver(self.bob, self.alice, mid, t, "Hi Bob, it's Alice")
        after = self.chatd.prekey_ids(self.bob.jid)
        taken = sorted(before - after)
        self.steps.check(len(taken) == 1 and after < before,
                         f"bob's one-time prekeys went {len(before)} -> {len(after)}")
        rec = self.chatd.record(self.bob.jid)
        _say(f"  chatd handed alice bob's bundle: registration id {rec.registration_id}, signed prekey "
             f"#{rec.signed_prekey_id} and one-time prekey #{taken[0]}, which it gives nobody else "
             f"({len(before)} -> {len(after)} left); X3DH on it started the session")

    # ------------------------------------------------------------------ 3
    async def conversation(self) -> None:
        alice, bob = self.alice, self.bob
        sent = []
        for frm, to, text in ((bob, alice, "Hi Alice! Got your message"), (alice, bob, "Lunch on Friday?"),
                              (bob, alice, "Yes, 12:30 at the usual place")):
            mid, t = await self.send(frm, to, text)
            sent.append((frm, to, mid, (await self.deliver(to, frm, mid, t, text))[1]))
        for frm, _, mid, _ in sent:
            await frm.receipt(mid, None)
        _say(f"  delivery receipts so far: alice got {len(alice.receipts(None))}, bob {len(bob.receipts(None))} "
             "(each sent once the recipient had handled the message)")
        frm, to, mid, msg = sent[-1]
        await to.messenger.send_read(msg)
        await frm.receipt(mid, "read")
        _say(f"  alice reads bob's last message: bob gets a read receipt for id {mid}")
        await _outbox_empty(self.steps, alice, bob)

    # ------------------------------------------------------------------ 4
    async def retry(self) -> None:
        alice, bob = self.alice, self.bob
        store = bob.messenger.store
        addr = await _canonical(store, alice.jid)
        async with store.transaction(addr) as tx:
            await tx.delete_session(addr)
        _say("  bob's store loses his session with alice (as after restoring an old backup)")
        answered = alice.messenger.retries_answered
        mid, t = await self.send(alice, bob, "Did you get the menu?")
        _, fail = await bob.wait_for("bob to fail to decrypt it", Undecryptable, lambda e: e.id == mid)
        self.steps.check(fail.retry_count == 1, f"bob's first retry receipt counts {fail.retry_count}")
        at, got = await self.deliver(bob, alice, mid, t, "Did you get the menu?", quiet=True)
        fails = [e for e in bob.of(Undecryptable) if e.id == mid]
        for e in fails:
            keys = " carrying a fresh bundle of his keys" if e.retry_count >= 2 else ""
            _say(f"  bob cannot decrypt id {mid} ({e.error}): he sends retry receipt #{e.retry_count}{keys}; "
                 "alice encrypts the message again")
        self.steps.check(not any(e.gave_up for e in fails), "bob gave up on the message")
        self.show(bob, alice, got, at - t)
        await _until(self.steps, "alice to count the retry receipts she answered",
                     lambda: alice.messenger.retries_answered >= answered + len(fails))
        self.steps.check(bob.received(mid) == 1, "bob got the healed message more than once")
        how = (" (the first on her session as it was, the rule for a first retry; the last on a new session "
               "built from the keys it carried)") if len(fails) >= 2 else ""
        _say(f"  healed: alice answered {alice.messenger.retries_answered - answered} retry receipt(s){how}; "
             "bob has the message once")
        self.retry_failures = len(fails)

    # ------------------------------------------------------------------ 5
    async def identity_change(self) -> None:
        alice, bob = self.alice, self.bob
        old_number = await alice.messenger.safety_number(bob.jid)
        old_reg = self.chatd.record(bob.jid).registration_id
        _say(f"  the safety number alice sees for bob: {old_number}")
        await bob.stop(self.chatd)
        store = await open_store(bob.url)
        try:
            await store.wipe()
            await account.create_account(store, prekeys=0)
        finally:
            await store.aclose()
        await bob.start(self.nursery, self.chatd)
        self.steps.check(bob.messenger.prekey_uploads == 1, "bob's new install did not register its keys")
        new_reg = self.chatd.record(bob.jid).registration_id
        _say(f"  bob's new install registers again: registration id {old_reg} -> {new_reg}, "
             f"{self.chatd.db.unused_prekeys(str(bob.jid), 0)} fresh one-time prekeys and a new identity key; "
             "chatd notifies alice")
        mid, t = await self.send(bob, alice, "New phone, same number")
        _, changed = await alice.wait_for("alice to see bob's identity change", IdentityChanged,
                                          lambda e: e.jid.user == bob.jid.user)
        self.steps.check(changed.accepted and changed.safety_number != old_number
                         and len(changed.safety_number.replace(" ", "")) == 60,
                         "the identity change was not reported with a new safety number")
        _say(f"  alice's app: \"bob's security code changed\"; new safety number {changed.safety_number}")
        await self.deliver(alice, bob, mid, t, "New phone, same number")
        mid, t = await self.send(alice, bob, "Welcome back")
        await self.deliver(bob, alice, mid, t, "Welcome back")

    # ------------------------------------------------------------------ 6
    async def second_device(self) -> None:
        alice, bob, laptop, chatd = self.alice, self.bob, self.laptop, self.chatd
        a_user = str(alice.jid)
        await laptop.create()
        store = await open_store(laptop.url)
        try:
            linked = await link_companion(alice.messenger.store, store, key_index=1)
        finally:
            await store.aclose()
        await alice.messenger.publish_key_index_list(linked.key_index_list)
        _say(f"  alice's phone signs the laptop's identity key (key index 1, as after scanning a QR code) and "
             f"publishes the account's signed key-index list {sorted(linked.key_indexes.valid_indexes)}")
        await laptop.start(self.nursery, chatd)
        await laptop.messenger.publish_device_identity(linked.device_identity)
        _say(f"  the laptop logs in as {laptop.jid}, uploads {chatd.db.unused_prekeys(a_user, 1)} one-time "
             "prekeys and its signed device identity")
        await _until(self.steps, "bob and alice's phone to take in chatd's devices notification",
                     lambda: chatd.waiting(bob.jid) == 0 and chatd.waiting(alice.jid) == 0)
        _say(f"  chatd lists alice's devices as {chatd.db.devices(a_user)} and notified bob, whose app checks "
             "the laptop's signatures before encrypting to it")
        text = "Hello to both of your devices"
        mid, t = await self.send(bob, alice, text)
        await self.deliver(alice, bob, mid, t, text)
        await self.deliver(laptop, bob, mid, t, text)
        mid, t = await self.send(alice, bob, "Sent from my phone")
        await self.deliver(bob, alice, mid, t, "Sent from my phone")
        _, copy = await laptop.message(mid, "the laptop to get a copy of what the phone sent")
        self.steps.check(copy.chat == bob.jid.user_jid() and copy.text == "Sent from my phone",
                         "the laptop's copy is wrong")
        _say(f"  {laptop.label} shows it too, in its chat with {copy.chat} (a DeviceSentMessage)")
        self.steps.check(not any(d.of(DeviceRejected) for d in self.everyone), "a device was rejected")

    # ------------------------------------------------------------------ 7
    async def image(self) -> None:
        alice, bob = self.alice, self.bob
        photo = self.media_dir.parent / "photo.jpg"
        photo.write_bytes(_photo(self.seed))
        size = photo.stat().st_size
        mid = await alice.messenger.send_image(bob.jid, photo, self.media, caption="The menu")
        t = trio.current_time()
        _say(f"  {self._who(alice)} -> {self._who(bob)}  photo.jpg, {size:,} bytes, caption 'The menu'  id {mid}")
        at, got = await bob.message(mid, "bob to receive the image")
        image = got.content.image
        if image is None or image.caption != "The menu":
            self.steps.fail("bob's message carries no image")
        blob = self.media_dir / image.file_enc_sha256.hex()
        self.steps.check(blob.is_file(), "the media endpoint holds no blob for the image")
        _say(f"  the media endpoint holds only the encrypted blob ({blob.stat().st_size:,} bytes); the message "
             "carries its address and its key")
        dst = self.media_dir.parent / "received.jpg"
        done = await WaMessenger.download_media(got, dst, self.media)
        self.steps.check(dst.read_bytes() == photo.read_bytes() and done.file_length == size,
                         "the downloaded image differs from the one sent")
        _say(f"  {self._who(bob)} <- {self._who(alice)}  the message after {_ms(at - t)}; bob downloads and "
             f"decrypts {done.file_length:,} bytes: MAC and SHA-256 checked, identical to alice's file")

    # ------------------------------------------------------------------ 8
    async def group(self) -> None:
        alice, bob, carol, laptop = self.alice, self.bob, self.carol, self.laptop
        await carol.create()
        await carol.start(self.nursery, self.chatd)
        _say(f"  carol registers ({carol.jid}, {self.chatd.db.unused_prekeys(str(carol.jid), 0)} one-time prekeys)")
        group = await alice.messenger.create_group("Friday lunch", [bob.jid, carol.jid])
        self.steps.check(len(group.participants) == 3, f"the group has {len(group.participants)} participants")
        _say(f"  alice creates 'Friday lunch' ({group.group}) with {len(group.participants)} participants; "
             "each sender's key goes to the others' devices in pairwise sessions with its first message")
        for frm, text, readers in ((alice, "Table for three?", (bob, carol, laptop)),
                                   (bob, "I'm in", (alice, laptop, carol)),
                                   (carol, "Me too!", (alice, laptop, bob))):
            gid = await frm.messenger.send_group(group.group, text)
            t = trio.current_time()
            _say(f"  {self._who(frm)} -> the group  {text!r}  id {gid} (encrypted once, with the sender key)")
            for d in readers:
                at, got = await d.message(gid, f"{d.label} to receive {text!r} in the group")
                self.steps.check(got.chat == group.group and got.sender == frm.jid,
                                 f"{d.label} got {gid} outside the group")
                _say(f"    {self._who(d)} <- {frm.label} in the group, {_ms(at - t)}")

    # ------------------------------------------------------------------ 9
    async def restart(self) -> None:
        alice, bob, chatd, steps = self.alice, self.bob, self.chatd, self.steps
        await _outbox_empty(steps, *self.everyone)
        await bob.stop(self.chatd)
        _say("  bob's phone goes offline")
        ids = self.late
        for text in ("Are you around?", "The table is booked", "12:30, remember"):
            ids.append((await self.send(alice, bob, text))[0])
        await _outbox_empty(steps, alice)
        held = chatd.waiting(bob.jid, set(ids))
        steps.check(held == 3, f"chatd holds {held} of alice's 3 messages for bob")
        _say(f"  chatd acknowledged them to alice (one tick) and keeps {held} for bob in its database")
        await chatd.stop()
        _say("  chatd stops (every connection drops); alice keeps writing")
        for text in ("Hello?", "Call me when you see this", "I'll wait at the door", "See you soon"):
            ids.append((await self.send(alice, bob, text, "  (kept in alice's outbox)"))[0])
        queued = await alice.messenger.pending()
        steps.check(queued == 4, f"alice's outbox holds {queued} messages, not 4")
        _say(f"  alice's outbox: {queued} messages, on disk")
        reconnects = alice.messenger.reconnects
        await chatd.start(self.nursery)
        _say(f"  chatd starts again on the same {chatd.path.name} and port {chatd.port}")
        await _outbox_empty(steps, alice)
        steps.check(alice.messenger.reconnects > reconnects, "alice did not reconnect")
        held = chatd.waiting(bob.jid, set(ids))
        steps.check(held == 7, f"chatd holds {held} of 7 messages for bob after its restart")
        _say(f"  alice reconnected by herself and sent her outbox; chatd now keeps {held} for bob")
        await bob.start(self.nursery, chatd)
        _say("  bob's phone comes back online")
        for mid in ids:
            await bob.message(mid, f"bob to receive message {mid}")
        await _until(steps, "chatd to hand all of them over", lambda: chatd.waiting(bob.jid, set(ids)) == 0)
        await trio.sleep(0.3)  # time for a duplicate to show, if there were one
        got = [e.id for e in bob.of(ReceivedMessage) if e.id in ids]
        lost, dup = len(set(ids) - set(got)), len(got) - len(set(got))
        _say(f"  bob got {len(got)} of {len(ids)} messages ({lost} lost, {dup} duplicated), "
             f"{'in the order sent' if got == ids else 'not in the order sent'}")
        steps.check(lost == 0 and dup == 0, f"{lost} lost, {dup} duplicated")

    # ------------------------------------------------------------------ 10
    async def receipts(self) -> None:
        alice, bob, steps = self.alice, self.bob, self.steps
        want = set(self.late)
        await _until(steps, "alice to get the delivery receipts of all 7", lambda: want <= alice.receipts(None))
        _say(f"  delivery receipts for all {len(want)} came back to alice (two grey ticks: bob's phone has them)")
        for msg in [e for e in bob.of(ReceivedMessage) if e.id in want]:
            await bob.messenger.send_read(msg)
        await _until(steps, "alice to get the read receipts of all 7", lambda: want <= alice.receipts("read"))
        _say(f"  bob opens the chat: read receipts for all {len(want)} (two blue ticks)")
        await _outbox_empty(steps, *self.everyone)
        await _until(steps, "chatd's database to empty",
                     lambda: all(self.chatd.waiting(d.jid) == 0 for d in self.everyone))
        failures = [e for d in self.everyone for e in d.of(Undecryptable)]
        steps.check(len(failures) == self.retry_failures,
                    f"{len(failures)} failed decryptions, only the {self.retry_failures} of step 4 expected")
        steps.check(not any(d.of(DeviceRejected) for d in self.everyone), "a device was rejected")
        totals = ", ".join(f"{d.label} {len(d.of(ReceivedMessage))}" for d in self.everyone)
        _say(f"  messages received and handled: {totals}; every outbox empty, nothing waiting in chatd's database")


async def messaging(directory: Path, seed: int) -> None:
    _say()
    _say("== part 2: WhatsApp-style messaging through the reference chatd (loopback TCP, every store SQLite)")
    with tempfile.TemporaryDirectory(prefix="wacrypto-demo-media-") as tmp:
        media_dir = Path(tmp) / "blobs"
        async with trio.open_nursery() as nursery:
            media_server = MediaServer(media_dir)
            media_port = await nursery.start(media_server.serve, "127.0.0.1", 0)
            _say(f"the media endpoint listens on 127.0.0.1:{media_port} (its blobs in a temporary folder)")
            async with MediaClient(upload_hosts=[f"http://127.0.0.1:{media_port}"]) as media:
                await _Messaging(directory, seed, nursery, media, media_dir).run()
            nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------- the command
async def run_demo(directory: Path, seed: int) -> int:
    prepare_directory(directory)
    t0 = trio.current_time()
    _say(f"== wacrypto demo: end-to-end encryption, every key store a SQLite file under {directory}/")
    try:
        with trio.fail_after(TOTAL_TIMEOUT):
            await signal_core(directory, seed)
            await messaging(directory, seed)
    except trio.TooSlowError:
        raise CliFailure(f"the demo did not finish within {TOTAL_TIMEOUT:g} s") from None
    _say()
    _say(f"== demo done in {trio.current_time() - t0:.1f} s: every step happened")
    _say(f"   the stores stay in {directory}/ (look inside: wacrypto store info --store sqlite:///"
         f"{directory / 'alice.db'})")
    return 0


def _run(args: argparse.Namespace) -> int:
    return trio.run(run_demo, Path(args.dir), args.seed)  # errors: reported by cli.main


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="X3DH and a conversation, then WhatsApp-style messaging through chatd, "
                                    "printed as a transcript")
    p.add_argument("--dir", default="demo-data",
                   help="folder for the SQLite stores and chatd's database (default: demo-data); must be new, "
                        "empty or a previous demo's, and only the demo's own files in it are replaced")
    p.add_argument("--seed", type=int, default=1, help="seed of part 1's delivery shuffle and of the demo photo")
    p.set_defaults(func=_run)
