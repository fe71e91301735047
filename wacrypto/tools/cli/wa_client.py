"""``wacrypto wa-client``: WhatsApp-style devices (:class:`~wacrypto.chat.wa_messenger.WaMessenger`)
in one process, driven by JSON lines on stdin, reporting on stdout (one object per line, flushed).

Each ``--jid`` runs with the ``--store`` and ``--key`` at the same position (repeat the three for
several devices in one process). The account is created in its store on the first run; the
device registers itself with the chatd (``wacrypto chatd run --database``) on its first login.
Each store's instance lease is taken (and renewed) while the process runs: a second process on
the same account exits with ``InstanceConflictError`` naming the first; after a crash the account
is free once the dead one's lease expires (30 s), or at once for a process that gives the same
``--lease-holder``.

Scale-out: ``--stripe I/N`` makes this process the worker of stripe I of N of its device's chats
(:mod:`wacrypto.whatsapp.stripes`), N processes sharing one store (PostgreSQL): each takes its
stripe's lease in the store (exits with an error while another live worker holds it, or an instance
serves the whole account), logs in as
that stripe, and sends only in its own chats (a send to another stripe's chat is ``failed`` with
``InvalidArgumentError``). The account is created by stripe 0 only: start it first.

Commands (stdin), each one JSON object per line:

* ``{"cmd": "send", "to": JID, "text": TEXT, "key": KEY [, "from": JID]}``: ``send_text``; prints
  ``{"sent": KEY, "id": ID, "me", "t0", "t"}`` once it returned (the message, its ratchet step and
  its outbox row committed: from here on it is delivered whatever happens), or ``{"failed": KEY,
  "error": TYPE, "me"}`` when it raised (nothing committed, never delivered). ``from`` picks the
  device (needed when there are several). Sends run concurrently, each in its own task.
* ``{"cmd": "burst", "to": JID, "key": PREFIX, "count": N [, "size": 64, "window": 1, "rate": 0, "offset": 0, "from": JID]}``:
  N sends to ``to`` (load for benchmarks), ``window`` of them under way at a time (``rate`` > 0:
  paced, send i not before ``offset`` + i / rate seconds from the command); message i has the
  key ``PREFIX.i`` and the text ``PREFIX.i|xxx...`` (``size`` characters); a ``sent`` (or ``failed``)
  line for each, then ``{"burst_done": PREFIX, "count": N, "me"}``.
* A ``send`` (or ``burst``) to a group JID (``...@g.us``) is ``send_group``. A ``send`` with
  ``"file": PATH`` sends that file as an image (``text`` its caption) through the media endpoint
  of ``--media-url`` (``chatd run --media-port``); each image or document received is downloaded,
  verified and decrypted before its ``received`` line, which then carries ``"media": {"sha256",
  "size"}`` of the plaintext (or ``"media_error": TYPE`` if it could not be fetched within
  MEDIA_PATIENCE seconds).
* ``{"cmd": "create_group", "subject": S, "participants": [JID, ...], "key": KEY [, "from": JID]}``:
  ``create_group``; prints ``{"group": GROUP_JID, "key": KEY, "members": [JID, ...], "me"}`` or
  ``{"failed": KEY, "error": TYPE, "me"}``.
* ``{"cmd": "pending"}``: ``{"pending": N, "devices": {JID: n}}``, the outbox depths.
* ``{"cmd": "quit"}`` (or the end of stdin): waits for the sends under way, then exits 0.

Reports (stdout): ``{"started": JID, "created": bool, "pid"}`` when a device's store is open;
``{"ready": JID, "logins": n}`` after each login (prekeys checked); ``{"state": STATE, "me"}`` on
every connection state change; ``{"received": ID, "from": JID, "chat": JID, "text", "redelivered",
"me", "t"}`` for each message, then ``{"handled": ID, "from": JID, "me", "t"}`` once
:meth:`~wacrypto.chat.wa_messenger.WaMessenger.mark_handled` returned (it is never handed out again
after that line; one killed before it is handed out again after a restart, with ``redelivered``);
``{"undecryptable": ID, ...}``, ``{"identity_changed": JID, ...}``, ``{"device_rejected": JID, ...}``,
``{"rejected": ID, "code"}`` (the server refused a sent message for good: it left the outbox),
``{"receipt": [IDS], ...}`` (with ``--receipts``), ``{"closed": JID, "error"}`` when a device's
connection closed for good, ``{"error": TEXT}`` for a command line that is not understood.
``t0`` / ``t`` are ``time.monotonic()`` seconds, one clock for every process of the machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from wacrypto.chat.client import ChatClientConfig
from wacrypto.chat.events import ClientState, StateChanged
from wacrypto.chat.wa_messenger import (
    IQ_TIMEOUT,
    DeviceRejected,
    IdentityChanged,
    ReceiptReceived,
    ReceivedMessage,
    SendRejected,
    Undecryptable,
    WaMessenger,
    open_wa_messenger,
)
from wacrypto.chatd.server import load_trust_file
from wacrypto.errors import InvalidArgumentError, NetworkError, PeerError, TransportError, WacryptoError
from wacrypto.media.client import MediaClient
from wacrypto.primitives.keys import KeyPair
from wacrypto.session import account
from wacrypto.store import SqlKeyStore, open_store
from wacrypto.store.protocols import KeyStore
from wacrypto.tools.cli.chatd import _load_or_create_key, _ports, _positive
from wacrypto.tools.cli.common import CliUsageError, store_url
from wacrypto.transport.chat_connection import KeepaliveSettings
from wacrypto.whatsapp import message as wamsg
from wacrypto.whatsapp.jid import Jid
from wacrypto.whatsapp.stripes import Stripe

__all__ = ["SendFn", "emit", "json_lines", "register", "serve_commands"]

MEDIA_PATIENCE = 60.0  # seconds a received image or document is fetched again while its endpoint is down

_MAX_LINE = 1 << 20  # one command line, at most


def emit(obj: dict[str, Any]) -> None:
    """One JSON object on stdout as one line, flushed (so a reader sees it now, whole)."""
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


async def json_lines(stream: trio.abc.ReceiveStream) -> AsyncIterator[dict[str, Any] | str]:
    """The JSON objects of the lines read from ``stream`` (stdin, a child's stdout); a line that is
    not a JSON object comes out as an error text instead."""
    buf = b""
    while True:
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        if len(buf) > _MAX_LINE:
            buf = b""
            yield "a line longer than 1 MiB"
        for line in lines:
            if line.strip():
                yield _parse(line)
    if buf.strip():
        yield _parse(buf)


def _parse(line: bytes) -> dict[str, Any] | str:
    try:
        obj = json.loads(line)
    except (UnicodeDecodeError, ValueError):
        return "not a JSON line"
    return obj if isinstance(obj, dict) else "not a JSON object"


@dataclass
class _Device:
    jid: Jid
    url: str
    key: KeyPair
    m: WaMessenger | None = None
    logins: int = 0
    down: trio.Event = field(default_factory=trio.Event)  # set when a connection ends
    running: trio.Event = field(default_factory=trio.Event)  # the messenger is open (commands are read then)
    media: MediaClient | None = None  # --media-url: chatd's media endpoint


async def _open_account(url: str, pool_size: int, stripe: Stripe | None = None,
                        holder: str | None = None) -> tuple[KeyStore, bool]:
    """The store at ``url`` holding the account's lease (of ``stripe``, if given), its account
    created if it has none yet (True then; a worker of a stripe other than 0 never creates it)."""
    if stripe is not None and url.startswith("memory:"):
        raise CliUsageError("--stripe needs a store the workers share (PostgreSQL, MySQL or SQLite)")
    store: KeyStore = await open_store(url, pool_size=pool_size, lease=True, lease_stripe=stripe, lease_holder=holder)
    try:
        async with store.transaction() as tx:
            created = await tx.get_local_identity() is None
        if created and stripe is not None and not stripe.account_wide:
            raise CliUsageError(f"the store has no account yet; start the worker of stripe 0/{stripe.count} first")
        if created:
            await account.create_account(store, prekeys=0)
    except BaseException:
        await store.aclose()
        raise
    return store, created


async def _run_device(dev: _Device, config: ChatClientConfig, args: argparse.Namespace) -> None:
    me = str(dev.jid)
    stripe: Stripe | None = args.stripe
    store, created = await _open_account(dev.url, args.pool_size, stripe, args.lease_holder)
    emit({"started": me, "created": created, "pid": os.getpid()} | ({} if stripe is None else {"stripe": str(stripe)}))
    try:
        async with open_wa_messenger(store, config, dev.jid, iq_timeout=args.iq_timeout, stripe=stripe) as m, \
                trio.open_nursery() as nursery:
            if isinstance(store, SqlKeyStore) and store.lease_token is not None:
                await nursery.start(store.heartbeat)  # (LeaseLostError ends the process: another took the stripe)
            dev.m = m
            dev.running.set()
            nursery.start_soon(_report_logins, dev)
            await _report_events(dev, m, args.receipts)
            nursery.cancel_scope.cancel()
    finally:
        dev.m = None
        await store.aclose()


async def _report_logins(dev: _Device) -> None:
    assert dev.m is not None
    m = dev.m
    while True:
        await m.wait_logged_in()
        dev.down = trio.Event()
        dev.logins += 1
        emit({"ready": str(dev.jid), "logins": dev.logins})
        await dev.down.wait()  # this login is over: wait for the next one


_HANDLE_BATCH = 256  # received messages marked handled together (one commit), at most


async def _report_events(dev: _Device, m: WaMessenger, receipts: bool) -> None:
    """Report each event; the messages that have queued up meanwhile are marked handled together
    (one :meth:`~WaMessenger.mark_handled_many`), each with its ``received`` line before and its
    ``handled`` line after."""
    me = str(dev.jid)
    events = m.events()
    async for first in events:
        batch = [first]
        while len(batch) < _HANDLE_BATCH:
            try:
                batch.append(events.receive_nowait())
            except trio.WouldBlock:
                break
        msgs: list[ReceivedMessage] = []
        for ev in batch:
            if isinstance(ev, ReceivedMessage):
                media = ev.content.image or ev.content.document
                extra = await _downloaded(dev, ev) if media is not None and dev.media is not None else {}
                text = ev.text if media is None or not isinstance(media, wamsg.ImageRef) else media.caption
                emit({"received": ev.id, "from": str(ev.sender), "chat": str(ev.chat), "text": text,
                      "redelivered": ev.redelivered, "me": me, "t": time.monotonic()} | extra)
                msgs.append(ev)
                continue
            if msgs:  # in order: the messages before this event are handled before it is reported
                await _handled(m, msgs, me)
                msgs = []
            if not _report(dev, ev, me, receipts):
                return
        if msgs:
            await _handled(m, msgs, me)


async def _handled(m: WaMessenger, msgs: list[ReceivedMessage], me: str) -> None:
    await m.mark_handled_many(msgs)
    t = time.monotonic()
    for ev in msgs:
        emit({"handled": ev.id, "from": str(ev.sender), "me": me, "t": t})


def _report(dev: _Device, ev: object, me: str, receipts: bool) -> bool:
    """One line for an event other than a message; False once the device's connection closed for good."""
    if isinstance(ev, StateChanged):
        out: dict[str, Any] = {"state": ev.state.value, "me": me}
        if ev.error is not None:
            out["error"] = type(ev.error).__name__
        emit(out)
        if ev.state is not ClientState.CONNECTED:
            dev.down.set()
        if ev.state is ClientState.CLOSED:
            emit({"closed": me, "error": None if ev.error is None else type(ev.error).__name__})
            return False
    elif isinstance(ev, Undecryptable):
        emit({"undecryptable": ev.id, "from": str(ev.sender), "error": ev.error, "retry_count": ev.retry_count,
              "gave_up": ev.gave_up, "me": me})
    elif isinstance(ev, IdentityChanged):
        emit({"identity_changed": str(ev.jid), "accepted": ev.accepted, "me": me})
    elif isinstance(ev, DeviceRejected):
        emit({"device_rejected": str(ev.jid), "reason": ev.reason, "me": me})
    elif isinstance(ev, SendRejected):
        emit({"rejected": ev.id, "code": ev.code, "me": me})
    elif isinstance(ev, ReceiptReceived) and receipts:
        emit({"receipt": list(ev.ids), "from": str(ev.sender), "type": ev.type, "me": me})
    return True


async def _downloaded(dev: _Device, ev: ReceivedMessage) -> dict[str, Any]:
    """The message's image or document, downloaded, verified and decrypted (tried again for up to
    MEDIA_PATIENCE seconds while the media endpoint is down or unreachable; an integrity failure is
    final); its sha256 and size. (The device's events wait meanwhile: the application's handling.)"""
    assert dev.m is not None and dev.media is not None
    deadline = trio.current_time() + MEDIA_PATIENCE
    with tempfile.TemporaryDirectory(prefix="wacrypto-wa-client-") as d:
        dst = Path(d) / "media"
        while True:
            try:
                await dev.m.download_media(ev, dst, dev.media)
                data = dst.read_bytes()
                return {"media": {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}}
            except (NetworkError, TransportError) as exc:  # the endpoint is down or unreachable: again
                if trio.current_time() >= deadline:
                    return {"media_error": type(exc).__name__}
                await trio.sleep(0.5)
            except WacryptoError as exc:  # not what was sent (an integrity check failed): no retry helps
                return {"media_error": type(exc).__name__}


def _jids(dev: _Device, key: str, texts: list[str]) -> list[Jid] | None:
    """``texts`` parsed, with the device running; else None, its ``failed`` line printed."""
    try:
        jids = [Jid.parse(t) for t in texts]
    except (PeerError, InvalidArgumentError):
        emit({"failed": key, "error": "InvalidArgumentError", "me": str(dev.jid)})
        return None
    if dev.m is None:
        emit({"failed": key, "error": "NotRunning", "me": str(dev.jid)})
        return None
    return jids


async def _send(dev: _Device, to: str, text: str, key: str, path: str | None = None) -> None:
    """``send_text`` (``send_group`` to a group JID; with ``path``: that file as an image, ``text``
    its caption); prints ``sent`` or ``failed``."""
    me = str(dev.jid)
    parsed = _jids(dev, key, [to])
    if parsed is None:
        return
    (to_jid,) = parsed
    assert dev.m is not None
    t0 = time.monotonic()
    try:
        if path is not None:
            if dev.media is None:
                emit({"failed": key, "error": "NoMediaEndpoint", "me": me})
                return
            mid = await dev.m.send_image(to_jid, path, dev.media, caption=text)
        elif to_jid.is_group:
            mid = await dev.m.send_group(to_jid, text)
        else:
            mid = await dev.m.send_text(to_jid, text)
    except WacryptoError as exc:
        emit({"failed": key, "error": type(exc).__name__, "me": me})
        return
    emit({"sent": key, "id": mid, "me": me, "t0": t0, "t": time.monotonic()})


async def _create_group(dev: _Device, subject: str, participants: list[str], key: str) -> None:
    me = str(dev.jid)
    members = _jids(dev, key, participants)
    if members is None:
        return
    assert dev.m is not None
    try:
        info = await dev.m.create_group(subject, members)
    except WacryptoError as exc:
        emit({"failed": key, "error": type(exc).__name__, "me": me})
        return
    emit({"group": str(info.group), "key": key, "members": sorted(str(m) for m in info.participants), "me": me})


# --------------------------------------------------------------------------- the command loop
SendFn = Callable[[str, str, str, str], Awaitable[None]]  # (from, to, text, key): prints sent or failed
GroupFn = Callable[[str, str, list[str], str], Awaitable[None]]  # (from, subject, participants, key)
MediaSendFn = Callable[[str, str, str, str, str], Awaitable[None]]  # (from, to, caption, file path, key)


async def serve_commands(names: list[str], send: SendFn, pending: Callable[[], Awaitable[None]],
                         group: GroupFn | None = None, media: MediaSendFn | None = None) -> None:
    """Read the commands of the module docstring from stdin until ``quit`` or its end, for the
    devices ``names``; each send (and burst) in its own task; returns once they have all finished.
    ``group`` creates groups, ``media`` sends files (None: those commands are refused)."""
    async with trio.open_nursery() as tasks, trio.lowlevel.FdStream(os.dup(0)) as stdin:
        async for cmd in json_lines(stdin):
            if not _command(cmd, names, send, pending, tasks, group, media):
                return


def _command(cmd: dict[str, Any] | str, names: list[str], send: SendFn, pending: Callable[[], Awaitable[None]],
             tasks: trio.Nursery, group: GroupFn | None = None, media: MediaSendFn | None = None) -> bool:
    """Start what one command line asks for; False: quit."""
    if isinstance(cmd, str):
        emit({"error": cmd})
        return True
    what = cmd.get("cmd")
    if what == "quit":
        return False
    if what == "pending":
        tasks.start_soon(pending)
        return True
    sender = names[0] if "from" not in cmd and len(names) == 1 else cmd.get("from")
    if what == "create_group" and group is not None:
        subject, members, key = cmd.get("subject"), cmd.get("participants"), cmd.get("key")
        if (sender not in names or not isinstance(subject, str) or not isinstance(key, str)
                or not isinstance(members, list) or not all(isinstance(m, str) for m in members)):
            emit({"error": "create_group needs subject, participants (a list of JIDs) and key, and from (a device "
                           "of this process)", "key": key if isinstance(key, str) else None})
            return True
        assert isinstance(sender, str)
        tasks.start_soon(group, sender, subject, members, key)
        return True
    if what not in ("send", "burst"):
        known = "send, burst, create_group, pending, quit" if group is not None else "send, burst, pending, quit"
        emit({"error": f"unknown command {what!r} ({known})"})
        return True
    to, key = cmd.get("to"), cmd.get("key")
    if sender not in names or not isinstance(to, str) or not isinstance(key, str):
        emit({"error": f"{what} needs to and key (strings), and from (a device of this process)",
              "key": key if isinstance(key, str) else None})
        return True
    assert isinstance(sender, str)
    if what == "send":
        text, path = cmd.get("text"), cmd.get("file")
        if not isinstance(text, str) or not (path is None or isinstance(path, str)):
            emit({"error": "send needs a text (a string; with a file: its caption), and file is a path", "key": key})
            return True
        if path is None:
            tasks.start_soon(send, sender, to, text, key)
        elif media is None:
            emit({"error": "this process sends no files", "key": key})
        else:
            tasks.start_soon(media, sender, to, text, path, key)
        return True
    count, size, window = cmd.get("count"), cmd.get("size", 64), cmd.get("window", 1)
    if not all(isinstance(v, int) and v >= 1 for v in (count, size, window)):
        emit({"error": "burst needs count, size and window >= 1 (whole numbers)", "key": key})
        return True
    assert isinstance(count, int) and isinstance(size, int) and isinstance(window, int)
    rate, offset = cmd.get("rate", 0), cmd.get("offset", 0)
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1e6 for v in (rate, offset)):
        emit({"error": "burst's rate (messages per second, 0: as fast as the window allows) and offset "
                       "(seconds) are numbers from 0 to 1e6", "key": key})
        return True
    tasks.start_soon(_burst, send, sender, to, key, count, size, window, float(rate), float(offset))
    return True


async def _burst(send: SendFn, sender: str, to: str, prefix: str, count: int, size: int, window: int,
                 rate: float = 0.0, offset: float = 0.0) -> None:
    """``count`` sends to ``to``, at most ``window`` under way at a time (and with ``rate``, send i
    not before offset + i / rate seconds from now); message i has the key ``prefix.i`` and the text
    ``prefix.i|`` padded with ``x`` to ``size`` characters."""
    limit = trio.Semaphore(window)
    start = trio.current_time() + offset

    async def one(key: str) -> None:
        try:
            await send(sender, to, (key + "|").ljust(size, "x"), key)
        finally:
            limit.release()

    async with trio.open_nursery() as nursery:
        for i in range(count):
            if rate:
                await trio.sleep_until(start + i / rate)
            await limit.acquire()
            nursery.start_soon(one, f"{prefix}.{i}")
    emit({"burst_done": prefix, "count": count, "me": sender})


def _cmd_wa_client(args: argparse.Namespace) -> int:
    if not (len(args.jid) == len(args.store) == len(args.key)):
        raise CliUsageError("give one --store and one --key for each --jid, in the same order")
    try:
        root = load_trust_file(Path(args.trust))
    except InvalidArgumentError as exc:
        raise CliUsageError(f"--trust {exc}") from None
    devices = []
    for jid, url, key in zip(args.jid, args.store, args.key):
        try:
            parsed = Jid.parse(jid)
        except (PeerError, InvalidArgumentError):
            raise CliUsageError(f"--jid {jid!r} is not a device JID (user[:device]@s.whatsapp.net)") from None
        if not parsed.has_devices or not parsed.user:
            raise CliUsageError(f"--jid {jid!r} is not a device JID (user[:device]@s.whatsapp.net)")
        devices.append(_Device(parsed, url, _load_or_create_key(Path(key))))
    if len({d.jid for d in devices}) != len(devices):
        raise CliUsageError("each --jid once")
    if args.stripe is not None and len(devices) != 1:
        raise CliUsageError("--stripe serves one device: give one --jid")
    keepalive = KeepaliveSettings(interval=args.ping_interval, jitter=min(args.ping_interval / 4, 1.0),
                                  deadline=args.ping_deadline, dead_socket=args.ping_interval + args.ping_deadline)

    def config(dev: _Device) -> ChatClientConfig:
        return ChatClientConfig(host=args.host, trusted_root=root, static_key=dev.key, ports=tuple(args.ports),
                                keepalive=keepalive, connect_timeout=args.connect_timeout,
                                backoff_base=args.backoff_base, backoff_cap=max(args.backoff_cap, args.backoff_base))

    async def main() -> None:
        async with AsyncExitStack() as stack, trio.open_nursery() as nursery:
            if args.media_url:
                media = await stack.enter_async_context(MediaClient(upload_hosts=[args.media_url]))
                for dev in devices:
                    dev.media = media
            for dev in devices:
                nursery.start_soon(_run_device, dev, config(dev), args)
            for dev in devices:
                await dev.running.wait()
            by_jid = {str(d.jid): d for d in devices}

            async def send(sender: str, to: str, text: str, key: str) -> None:
                await _send(by_jid[sender], to, text, key)

            async def pending() -> None:
                counts = {str(d.jid): await d.m.pending() for d in devices if d.m is not None}
                emit({"pending": sum(counts.values()), "devices": counts})

            async def group(sender: str, subject: str, participants: list[str], key: str) -> None:
                await _create_group(by_jid[sender], subject, participants, key)

            async def send_file(sender: str, to: str, text: str, path: str, key: str) -> None:
                await _send(by_jid[sender], to, text, key, path)

            await serve_commands(list(by_jid), send, pending, group, send_file)
            nursery.cancel_scope.cancel()

    trio.run(main)  # Ctrl-C: exit 130, see main()
    return 0


def _stripe(text: str) -> Stripe:
    try:
        return Stripe.parse(text)
    except InvalidArgumentError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("wa-client", help="WhatsApp-style devices on a chatd, driven by JSON lines (stdin/stdout)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jid", action="append", required=True, help="device JID, e.g. 15550000001@s.whatsapp.net")
    p.add_argument("--store", action="append", required=True, type=store_url,
                   help="its key store URL (sqlite:///path, postgresql://...); the account is created on first run")
    p.add_argument("--key", action="append", required=True,
                   help="its chat (Noise) static key file (hex; created if missing): chatd binds the device to it")
    p.add_argument("--trust", required=True, help="file with the chatd root public key (hex; chatd init's root.pub)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--ports", type=_ports, default=[5222, 443], help="tried in order, e.g. 5222,443")
    p.add_argument("--ping-interval", type=float, default=30.0, help="seconds between our pings (0: none)")
    p.add_argument("--ping-deadline", type=_positive, default=20.0, help="pong deadline (s)")
    p.add_argument("--connect-timeout", type=_positive, default=5.0, help="per port (s)")
    p.add_argument("--backoff-base", type=_positive, default=1.0, help="reconnect wait unit (s)")
    p.add_argument("--backoff-cap", type=_positive, default=30.0, help="longest reconnect wait (s)")
    p.add_argument("--iq-timeout", type=_positive, default=IQ_TIMEOUT, help="seconds to wait for the server's answer")
    p.add_argument("--pool-size", type=int, default=4, help="connections of a PostgreSQL/MySQL store")
    p.add_argument("--media-url", help="chatd's media endpoint (chatd run --media-port; its listening line's "
                                       "media_url): files are sent, and received media downloaded, through it")
    p.add_argument("--receipts", action="store_true", help="also report receipts")
    p.add_argument("--stripe", type=_stripe, help="scale-out: serve stripe I/N of the device's chats (one --jid; its "
                                                 "store shared with the other stripes' workers, stripe 0 started first)")
    p.add_argument("--lease-holder", help="this process's name in each store's lease (of the stripe, with "
                                          "--stripe; default: host, pid and a random part); a process of the same "
                                          "name takes its lease over at once (the restart of a crashed one)")
    p.set_defaults(func=_cmd_wa_client)
