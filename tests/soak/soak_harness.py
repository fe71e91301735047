"""The chaos soak (issue 12): chatd and several ``wacrypto wa-client`` processes, many 1:1
conversations, a group and images, SIGKILLs and restarts of chatd and of clients at seeded random
moments, connections cut and stalled by a loopback proxy; then a ledger of every message (a group
message: one entry per other member's device; an image: checked against the file sent).

Run ``make soak`` (or ``.venv/bin/python tests/soak/soak_harness.py``); the parameters are
environment variables (``SOAK_*``, see :class:`SoakConfig`); ``tests/soak/test_soak.py`` runs a short
one inside ``make test``. docs/soak.md describes the contract checked and how to read the report.

The ledger's contract (the application's view of WaMessenger):

* a message whose id was printed (``{"sent"}``: ``send_text`` returned, so it was committed) is
  received by its recipient device: none **lost**;
* a message is handed out once per recipient lifetime, and never again once its ``{"handled"}`` line
  (``mark_handled`` returned) was printed: a second one is a **duplicate**. A recipient killed between
  ``{"received"}`` and ``{"handled"}`` gets it again after its restart: a **redelivery**, allowed;
* nothing is received that was not sent by that sender to that device (**invented**, misrouted), nor
  under another id than the one ``send_text`` returned; a send that raised (``{"failed"}``) is never
  delivered;
* afterwards every outbox is empty and a final message in every conversation, both ways, arrives
  (the sessions still work); a restart of every client then hands out nothing.

A send under way when its sender was killed (no ``sent`` nor ``failed`` line) may or may not be
delivered: counted apart (``unconfirmed``), never a failure.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from procs import Child, Line, Proxy, chatd_argv, init_chatd_keys, pg_databases, wa_client_argv  # noqa: E402

from wacrypto.testing.chatd_process import free_port  # noqa: E402
from wacrypto.whatsapp.stripes import stripe_of  # noqa: E402


# --------------------------------------------------------------------------- configuration
@dataclass
class SoakConfig:
    """Every field is also an environment variable: ``SOAK_`` + its name in capitals."""

    seed: int = 1
    clients: int = 4  # client processes
    devices: int = 2  # accounts (one device each) per client process
    seconds: float = 30.0  # traffic phase
    rate: float = 20.0  # messages issued per second (all senders together)
    window: int = 4  # sends under way per device at most
    chatd_kills: int = 4
    client_kills: int = 6
    drops: int = 4  # the proxy cuts connections (all of them, or one)
    stalls: int = 3  # the proxy forwards nothing for a while
    group: int = 4  # members of the soak's group (one device of each client process first; 0: no group)
    group_share: float = 0.15  # of the messages issued, the share sent to the group
    media_share: float = 0.05  # of the 1:1 messages issued, the share that are images (1-64 KiB, chatd's media endpoint)
    store: str = "sqlite"  # the clients' key stores: sqlite or postgresql
    stripes: int = 0  # >= 2: one more account, its device served by this many --stripe worker processes (scale-out)
    drain_timeout: float = 180.0  # hang guard of the drain and final phases (not a performance target)
    keep: bool = False  # keep the work folder (logs, stores, chatd database)

    @classmethod
    def from_env(cls, **defaults: Any) -> SoakConfig:
        """``defaults`` over the class's, the ``SOAK_*`` environment variables over both."""
        values: dict[str, Any] = dict(defaults)
        for f in dataclasses.fields(cls):
            raw = os.environ.get(f"SOAK_{f.name.upper()}")
            if raw is not None:
                kind = type(getattr(cls(), f.name))
                values[f.name] = raw.lower() in ("1", "true", "yes") if kind is bool else kind(raw)
        return cls(**values)


# --------------------------------------------------------------------------- the ledger
@dataclass
class Received:
    child: str
    lifetime: int
    id: str
    redelivered: bool


@dataclass
class Msg:
    key: str
    sender: str  # device JID
    to: str  # the recipient device JID
    text: str
    sender_lifetime: int
    media_sha256: str | None = None  # an image: the sha256 of the file sent (hex)
    state: str = "issued"  # issued -> sent | failed
    id: str | None = None
    received: list[Received] = field(default_factory=list)
    handled: bool = False


class Ledger:
    """Every message the harness asked for, and every line the clients printed about it."""

    def __init__(self) -> None:
        self.msgs: dict[str, Msg] = {}  # one per (message, recipient device): a group message has one per member
        self.fanout: dict[str, list[str]] = {}  # a group message's key -> its entries' keys (key>recipient)
        self.under_way: dict[str, set[str]] = {}  # device -> keys issued, no sent/failed line yet
        self._by_id: dict[tuple[str, str], str] = {}  # (recipient, id) -> key
        self.problems: list[str] = []
        self.duplicates = 0
        self.redeliveries = 0
        self.invented = 0
        self.misrouted = 0
        self.id_mismatches = 0
        self.failed_but_delivered = 0
        self.received_lines = 0
        self.handled_lines = 0
        self.media_ok = 0
        self.media_bad = 0

    def _problem(self, text: str) -> None:
        if len(self.problems) < 200:
            self.problems.append(text)

    def issue(self, key: str, sender: str, to: str, text: str, lifetime: int, media_sha256: str | None = None) -> None:
        assert key not in self.msgs
        self.msgs[key] = Msg(key, sender, to, text, lifetime, media_sha256)
        self.under_way.setdefault(sender, set()).add(key)

    def issue_group(self, key: str, sender: str, recipients: list[str], text: str, lifetime: int) -> list[str]:
        """A group message: one entry per other member's device (``key>device``); their keys."""
        entries = [f"{key}>{r}" for r in recipients]
        for e, r in zip(entries, recipients):
            assert e not in self.msgs
            self.msgs[e] = Msg(e, sender, r, text, lifetime)
        self.fanout[key] = entries
        self.under_way.setdefault(sender, set()).add(key)
        return entries

    def _entries(self, key: str) -> list[str]:
        return self.fanout.get(key, [key])

    def retract(self, key: str) -> None:
        """The command never reached the sender (its stdin was closed)."""
        for e in self.fanout.pop(key, [key]):
            m = self.msgs.pop(e)
        self.under_way[m.sender].discard(key)

    def sender_died(self, devices: list[str]) -> None:
        """Its sends under way stay unconfirmed: no sent/failed line will come for them."""
        for d in devices:
            self.under_way[d] = set()

    def on_sent(self, key: str, mid: str, me: str) -> None:
        for e in self._entries(key):
            m = self.msgs.get(e)
            if m is None or m.sender != me:
                self._problem(f"sent line for a key never issued by {me}: {key}")
                return
            self.under_way[me].discard(key)
            m.state, m.id = "sent", mid
            for r in m.received:
                if r.id != mid:
                    self.id_mismatches += 1
                    self._problem(f"{e}: received as {r.id}, send_text returned {mid}")

    def on_failed(self, key: str, me: str) -> None:
        for e in self._entries(key):
            m = self.msgs.get(e)
            if m is None:
                self._problem(f"failed line for a key never issued: {key}")
                return
            self.under_way[me].discard(key)
            m.state = "failed"
            if m.received:
                self.failed_but_delivered += 1
                self._problem(f"{e}: send_text raised, yet it was delivered")

    def on_received(self, child: str, lifetime: int, me: str, mid: str, sender: str, text: str,
                    redelivered: bool, media: dict[str, Any] | None = None, media_error: str | None = None) -> None:
        self.received_lines += 1
        key = text.split("|", 1)[0]
        if key in self.fanout:  # a group message: this recipient's entry
            if f"{key}>{me}" not in self.msgs:
                self.misrouted += 1
                self._problem(f"group message {key} from {sender} arrived at {me}, not a member")
                return
            key = f"{key}>{me}"
        m = self.msgs.get(key)
        if m is None or m.text != text:
            self.invented += 1
            self._problem(f"{me} received {mid} from {sender}, a text nobody sent")
            return
        if m.to != me or m.sender != sender:
            self.misrouted += 1
            self._problem(f"{key} ({m.sender} -> {m.to}) arrived at {me} from {sender}")
            return
        if m.id is not None and m.id != mid:
            self.id_mismatches += 1
            self._problem(f"{key}: received as {mid}, send_text returned {m.id}")
        if m.handled:
            self.duplicates += 1
            self._problem(f"{key} ({mid}) received again by {me} (lifetime {lifetime}) after its handled line")
        elif any(r.child == child and r.lifetime == lifetime for r in m.received):
            self.duplicates += 1
            self._problem(f"{key} ({mid}) received twice by {me} in one lifetime ({lifetime})")
        elif m.received:
            self.redeliveries += 1
        if m.state == "failed":
            self.failed_but_delivered += 1
            self._problem(f"{key}: send_text raised, yet it was delivered")
        if m.media_sha256 is not None or media is not None or media_error is not None:
            if m.media_sha256 is not None and media is not None and media.get("sha256") == m.media_sha256:
                self.media_ok += 1
            else:
                self.media_bad += 1
                self._problem(f"{key}: the image arrived as {media or media_error}, not the file sent")
        m.received.append(Received(child, lifetime, mid, redelivered))
        self._by_id[(me, mid)] = key

    def on_handled(self, me: str, mid: str) -> None:
        self.handled_lines += 1
        key = self._by_id.get((me, mid))
        if key is None:
            self._problem(f"{me} printed handled for {mid}, which it never printed as received")
            return
        self.msgs[key].handled = True

    def open_receipts(self, current: dict[str, set[tuple[str, int]]]) -> list[str]:
        """Keys received in a current lifetime of a process of their recipient and not handled yet."""
        out = []
        for m in self.msgs.values():
            if m.received and not m.handled:
                cur = current.get(m.to, set())
                if any((r.child, r.lifetime) in cur for r in m.received):
                    out.append(m.key)
        return out

    def summary(self) -> dict[str, Any]:
        confirmed = [m for m in self.msgs.values() if m.state == "sent"]
        unconfirmed = [m for m in self.msgs.values() if m.state == "issued"]
        lost = [m for m in confirmed if not m.received]
        for m in lost[:20]:
            self._problem(f"lost: {m.key} {m.id} {m.sender} -> {m.to}")
        return {
            "issued": len(self.msgs),
            "sent": len(confirmed),
            "failed": sum(m.state == "failed" for m in self.msgs.values()),
            "unconfirmed": len(unconfirmed),
            "unconfirmed_delivered": sum(bool(m.received) for m in unconfirmed),
            "received_lines": self.received_lines,
            "handled_lines": self.handled_lines,
            "delivered": sum(bool(m.received) for m in confirmed),
            "handled_unconfirmed": sum(bool(m.received) and not m.handled for m in confirmed),
            "redeliveries": self.redeliveries,
            "lost": len(lost),
            "duplicates": self.duplicates,
            "invented": self.invented,
            "misrouted": self.misrouted,
            "id_mismatches": self.id_mismatches,
            "failed_but_delivered": self.failed_but_delivered,
            "media_ok": self.media_ok,
            "media_bad": self.media_bad,
        }


# --------------------------------------------------------------------------- the processes
@dataclass(frozen=True)
class Conversation:
    """A chat the traffic uses: ``kind`` "pair" (1:1, both ways) or "group" (each message from one
    member to every other member's device, through ``send_group``; ``jid`` is the group's)."""

    kind: str
    members: tuple[str, ...]
    jid: str = ""


def conversations(devices: list[str]) -> list[Conversation]:
    return [Conversation("pair", (a, b)) for i, a in enumerate(devices) for b in devices[i + 1:]]


_EVENTS = ("undecryptable", "identity_changed", "device_rejected", "rejected", "closed")  # wa-client lines counted


class Soak:
    def __init__(self, cfg: SoakConfig, work: Path, store_urls: list[str]) -> None:
        self.cfg = cfg
        self.work = work
        self.rng = random.Random(cfg.seed)
        self.traffic_rng = random.Random(cfg.seed + 1)
        self.ledger = Ledger()
        self.keydir = work / "keys"
        self.trust = init_chatd_keys(self.keydir)
        self.chatd_port = free_port()
        self.media_port = free_port()  # chatd's media endpoint: not through the proxy, down while chatd is
        self.files = work / "files"
        self.files.mkdir(exist_ok=True)
        self.chatd = Child("chatd", chatd_argv(self.keydir, work / "chatd.db", self.chatd_port,
                                               "--ping-interval", "2", "--ping-deadline", "2", "--no-relay",
                                               "--media-port", str(self.media_port)),
                           work / "chatd.log", self._chatd_line)
        self._listening = trio.Event()
        self.proxy = Proxy(self.chatd_port, rng=self.rng.randrange)
        self.device_of: dict[str, Child] = {}  # device JID -> its process (a striped device: stripe 0's)
        self.devices: list[str] = []
        self.children: list[Child] = []
        self.served: dict[str, list[str]] = {}  # process name -> the devices it serves
        self.ready: dict[tuple[str, str], int] = {}  # (process, device) -> lifetime in which it last logged in
        self.pending: dict[tuple[str, str], int] = {}
        self._pending_event = trio.Event()
        self._changed = trio.Event()
        self.events: dict[str, int] = {k: 0 for k in (*_EVENTS, "errors", "logins")}
        self.chatd_kills = 0
        self.client_kills = 0
        self.send_times: list[float] = []  # send_text durations (s)
        self.notes: list[str] = []  # undecryptable lines
        self.failures: dict[str, int] = {}  # error type of failed sends -> count
        self.phase = "setup"
        urls = iter(store_urls)
        for c in range(cfg.clients):
            devs = []
            for d in range(cfg.devices):
                jid = f"1555{c + 1:03d}{d + 1:04d}@s.whatsapp.net"
                devs.append((jid, next(urls), work / f"c{c}d{d}.key"))
                self.devices.append(jid)
            child = Child(f"client{c}", wa_client_argv(devs, self.trust, 0, *self._client_flags(),
                                                       "--media-url", f"http://127.0.0.1:{self.media_port}",
                                                       "--lease-holder", f"soak-client{c}"),  # restarts take over
                          work / f"client{c}.log", self._client_line)
            for jid, _, _ in devs:
                self.device_of[jid] = child
            self.children.append(child)
            self.served[child.name] = [jid for jid, _, _ in devs]
        self.striped: str | None = None  # the device served by stripe workers
        self.workers: list[Child] = []
        self.by_worker: dict[str, dict[str, int]] = {}  # worker -> sent / received lines, SIGKILLs
        if cfg.stripes >= 2:
            self.striped = "15559990001@s.whatsapp.net"
            url, key = next(urls), work / "striped.key"
            for i in range(cfg.stripes):  # a restarted worker has the same --lease-holder: it takes over at once
                w = Child(f"stripe{i}", wa_client_argv([(self.striped, url, key)], self.trust, 0, *self._client_flags(),
                                                       "--media-url", f"http://127.0.0.1:{self.media_port}",
                                                       "--stripe", f"{i}/{cfg.stripes}", "--lease-holder", f"soak-{i}"),
                          work / f"stripe{i}.log", self._client_line)
                self.workers.append(w)
                self.children.append(w)
                self.by_worker[w.name] = {"sent": 0, "received": 0, "kills": 0}
                self.served[w.name] = [self.striped]
            self.devices.append(self.striped)
            self.device_of[self.striped] = self.workers[0]
        self.convs = conversations(self.devices)
        self.partners: dict[str, list[str]] = {d: [] for d in self.devices}
        # the group: one device of each client process first (so that every kind of kill hits it)
        plain = [d for d in self.devices if d != self.striped]
        spread = [d for i in range(cfg.devices) for d in plain[i::cfg.devices]]
        self.group_members = spread[:cfg.group] if cfg.group >= 2 else []
        if self.striped is not None and len(self.group_members) >= 2:
            self.group_members[-1] = self.striped  # the group is then one stripe's chat of the striped device
        self.group_jid: str | None = None
        self.group_messages = 0
        for conv in self.convs:
            a, b = conv.members
            self.partners[a].append(b)
            self.partners[b].append(a)

    @staticmethod
    def _client_flags() -> list[str]:
        return ["--ping-interval", "2", "--ping-deadline", "2", "--connect-timeout", "3", "--backoff-base", "0.1",
                "--backoff-cap", "1", "--iq-timeout", "5", "--pool-size", "2"]

    def _set_port(self) -> None:
        for child in self.children:
            i = child.argv.index("--ports")
            child.argv[i + 1] = str(self.proxy.port)

    # ------------------------------------------------------------------ lines
    def _chatd_line(self, child: Child, lifetime: int, obj: Line) -> None:
        if obj.get("event") == "listening":
            self._listening.set()

    def _client_line(self, child: Child, lifetime: int, obj: Line) -> None:
        lg = self.ledger
        mine = self.by_worker.get(child.name)
        if mine is not None and ("sent" in obj or "received" in obj):
            mine["sent" if "sent" in obj else "received"] += 1
        if "sent" in obj:
            lg.on_sent(obj["sent"], obj["id"], obj["me"])
            self.send_times.append(obj["t"] - obj["t0"])
        elif "failed" in obj:
            lg.on_failed(obj["failed"], obj["me"])
            self.failures[obj.get("error", "?")] = self.failures.get(obj.get("error", "?"), 0) + 1
        elif "received" in obj:
            if child in self.workers and stripe_of(obj.get("chat") or obj["from"], len(self.workers)) != \
                    self.workers.index(child):
                lg.misrouted += 1
                lg.problems.append(f"{child.name} got {obj['received']} of chat {obj.get('chat')}, another stripe's")
            lg.on_received(child.name, lifetime, obj["me"], obj["received"], obj["from"], obj.get("text") or "",
                           bool(obj.get("redelivered")), obj.get("media"), obj.get("media_error"))
        elif "handled" in obj:
            lg.on_handled(obj["me"], obj["handled"])
        elif "ready" in obj:
            self.ready[(child.name, obj["ready"])] = lifetime
            self.events["logins"] += 1
        elif "state" in obj or "started" in obj:
            pass
        elif "pending" in obj:
            self.pending.update({(child.name, d): n for d, n in obj["devices"].items()})
            self._pending_event.set()
        elif "group" in obj:
            self.group_jid = obj["group"]
        elif any(k in obj for k in _EVENTS):
            kind = next(k for k in _EVENTS if k in obj)
            self.events[kind] += 1
            if kind != "undecryptable":
                lg.problems.append(f"{self.phase}: {child.name}: {json.dumps(obj)}")
            else:  # a retry receipt heals it (the ledger then sees it delivered): reported, not a failure
                self.notes.append(f"{self.phase}: {child.name} lifetime {lifetime}: {json.dumps(obj)}")
        elif "error" in obj or "unparsed" in obj:
            self.events["errors"] += 1
            lg.problems.append(f"{child.name}: {json.dumps(obj)}")
        self._changed.set()

    async def _until(self, cond: Any, timeout: float, what: str) -> bool:
        """Wait until ``cond()`` holds (re-checked on every line and every 0.2 s); False on timeout."""
        with trio.move_on_after(timeout):
            while not cond():
                self._changed = trio.Event()
                with trio.move_on_after(0.2):
                    await self._changed.wait()
            return True
        self.ledger.problems.append(f"{self.phase}: timed out after {timeout:g} s waiting for {what}")
        return False

    # ------------------------------------------------------------------ processes
    async def start_chatd(self, nursery: trio.Nursery) -> None:
        self._listening = trio.Event()
        await self.chatd.start(nursery)
        with trio.fail_after(60):
            await self._listening.wait()

    def current(self) -> dict[str, set[tuple[str, int]]]:
        """Each device's live processes (one; a striped device's workers), with their lifetimes."""
        out: dict[str, set[tuple[str, int]]] = {}
        for c in self.children:
            if c.alive:
                for d in self.served[c.name]:
                    out.setdefault(d, set()).add((c.name, c.lifetime))
        return out

    def _devices_of(self, child: Child) -> list[str]:
        return self.served[child.name]

    def child_for(self, device: str, chat: str | None = None) -> Child:
        """The process that sends from ``device`` in ``chat`` (a striped device: the chat's stripe's worker)."""
        if device == self.striped and chat is not None:
            return self.workers[stripe_of(chat, len(self.workers))]
        return self.device_of[device]

    def all_ready(self) -> bool:
        """Every process logged each of its devices in, in its current lifetime."""
        return all(self.ready.get((c.name, d)) == c.lifetime for c in self.children for d in self.served[c.name])

    async def kill_client(self, child: Child, *, chaos: bool = True) -> None:
        await child.kill()
        self.client_kills += chaos
        if chaos and child.name in self.by_worker:
            self.by_worker[child.name]["kills"] += 1
        self.ledger.sender_died(self._devices_of(child))

    async def query_pending(self) -> int:
        self.pending = {}
        self._pending_event = trio.Event()
        live = [c for c in self.children if c.alive]
        for c in live:
            await c.send({"cmd": "pending"})
        with trio.move_on_after(10):
            while len(self.pending) < sum(len(self._devices_of(c)) for c in live):
                await self._pending_event.wait()
                self._pending_event = trio.Event()
        return sum(self.pending.values()) if len(self.pending) == sum(len(v) for v in self.served.values()) else -1

    # ------------------------------------------------------------------ traffic
    async def issue(self, sender: str, to: str, key: str, *, image: bool = False) -> bool:
        child = self.child_for(sender, to)
        text = f"{key}|{sender}>{to}|" + "x" * self.traffic_rng.randrange(0, 120)
        cmd = {"cmd": "send", "from": sender, "to": to, "text": text, "key": key}
        sha = None
        if image:  # the caption carries the key; the file is random bytes
            path = self.files / f"{key}.bin"
            data = self.traffic_rng.randbytes(self.traffic_rng.randrange(1, 64 * 1024))
            path.write_bytes(data)
            sha = hashlib.sha256(data).hexdigest()
            cmd["file"] = str(path)
        self.ledger.issue(key, sender, to, text, child.lifetime, sha)
        if not await child.send(cmd):
            self.ledger.retract(key)
            return False
        return True

    async def issue_group(self, sender: str, key: str) -> list[str]:
        """A message from ``sender`` to the group; the ledger's entries (one per other member), [] if
        the command did not reach the sender."""
        assert self.group_jid is not None
        child = self.child_for(sender, self.group_jid)
        text = f"{key}|{sender}>group|" + "x" * self.traffic_rng.randrange(0, 120)
        others = [m for m in self.group_members if m != sender]
        entries = self.ledger.issue_group(key, sender, others, text, child.lifetime)
        if not await child.send({"cmd": "send", "from": sender, "to": self.group_jid, "text": text, "key": key}):
            self.ledger.retract(key)
            return []
        self.group_messages += 1
        return entries

    async def create_group(self) -> None:
        creator, others = self.group_members[0], self.group_members[1:]
        await self.device_of[creator].send({"cmd": "create_group", "from": creator, "subject": "soak",
                                            "participants": others, "key": "group"})
        if not await self._until(lambda: self.group_jid is not None, self.cfg.drain_timeout, "the group's creation"):
            raise RuntimeError("the group was not created: " + self._logs())
        self.convs.append(Conversation("group", tuple(self.group_members), self.group_jid or ""))

    async def traffic(self) -> int:
        """Issue messages at ``rate`` for ``seconds``; returns how many ticks found no sender free."""
        cfg = self.cfg
        t0 = trio.current_time()
        skipped = 0
        n = 0
        for tick in range(int(cfg.seconds * cfg.rate)):
            await trio.sleep_until(t0 + tick / cfg.rate)
            free = [d for d in self.devices if (any(w.alive for w in self.workers) if d == self.striped
                                                else self.device_of[d].alive)
                    and len(self.ledger.under_way.get(d, ())) < cfg.window]
            if not free:
                skipped += 1
                continue
            if self.group_jid is not None and self.traffic_rng.random() < cfg.group_share:
                members = [d for d in free if d in self.group_members
                           and self.child_for(d, self.group_jid).alive]
                if members:
                    if await self.issue_group(self.traffic_rng.choice(members), f"g{n}"):
                        n += 1
                    continue
            sender = self.traffic_rng.choice(free)
            to = self.traffic_rng.choice(self.partners[sender])
            if not self.child_for(sender, to).alive:  # (a striped sender: that chat's worker is down)
                skipped += 1
                continue
            if await self.issue(sender, to, f"m{n}", image=self.traffic_rng.random() < cfg.media_share):
                n += 1
        return skipped

    # ------------------------------------------------------------------ chaos
    def chaos_plan(self) -> list[tuple[float, str, Any]]:
        cfg, rng = self.cfg, self.rng
        plan: list[tuple[float, str, Any]] = []
        span = cfg.seconds
        for _ in range(cfg.chatd_kills):
            plan.append((rng.uniform(0, span), "chatd_kill", rng.uniform(0.1, 2.0)))
        for _ in range(cfg.client_kills):
            plan.append((rng.uniform(0, span), "client_kill", (rng.randrange(len(self.children)), rng.uniform(0.1, 1.5))))
        for _ in range(cfg.drops):
            plan.append((rng.uniform(0, span), "drop", None if rng.random() < 0.5 else 1))
        for _ in range(cfg.stalls):
            plan.append((rng.uniform(0, span), "stall", rng.uniform(0.5, 6.0)))
        return sorted(plan, key=lambda p: p[0])

    async def chaos(self, nursery: trio.Nursery) -> None:
        t0 = trio.current_time()
        chatd_lock = trio.Lock()
        client_locks = [trio.Lock() for _ in self.children]

        async def chatd_kill(down: float) -> None:
            async with chatd_lock:
                await self.chatd.kill()
                self.chatd_kills += 1
                await trio.sleep(down)
                await self.start_chatd(nursery)

        async def client_kill(i: int, down: float) -> None:
            async with client_locks[i]:
                await self.kill_client(self.children[i])
                await trio.sleep(down)
                await self.children[i].start(nursery)

        async with trio.open_nursery() as actions:
            for at, kind, arg in self.chaos_plan():
                await trio.sleep_until(t0 + at)
                if kind == "chatd_kill":
                    actions.start_soon(chatd_kill, arg)
                elif kind == "client_kill":
                    actions.start_soon(client_kill, *arg)
                elif kind == "drop":
                    self.proxy.drop(arg)
                else:
                    actions.start_soon(self.proxy.stall, arg)

    # ------------------------------------------------------------------ the run
    async def run(self) -> dict[str, Any]:
        cfg = self.cfg
        report: dict[str, Any] = {"config": dataclasses.asdict(cfg)}
        t_start = time.monotonic()
        try:
            async with trio.open_nursery() as nursery:
                await self.start_chatd(nursery)
                await nursery.start(self.proxy.serve)
                self._set_port()
                later = self.workers[1:]  # a striped device's account is created by its stripe 0 first
                for c in self.children:
                    if c not in later:
                        await c.start(nursery)
                if later and await self._until(lambda: (self.workers[0].name, self.striped) in self.ready,
                                               cfg.drain_timeout, "stripe 0's first login"):
                    for c in later:
                        await c.start(nursery)
                if not await self._until(self.all_ready, cfg.drain_timeout, "every device's first login"):
                    raise RuntimeError("the devices did not all log in: " + self._logs())
                if self.group_members:
                    await self.create_group()
                self.phase = "chaos"
                t_traffic = time.monotonic()
                report["setup_s"] = round(t_traffic - t_start, 1)
                async with trio.open_nursery() as phase:
                    phase.start_soon(self.chaos, nursery)
                    report["skipped_ticks"] = await self.traffic()
                t_drain = time.monotonic()
                report["traffic_s"] = round(t_drain - t_traffic, 1)
                self.phase = "drain"
                await self.heal(nursery)
                report["drained"] = await self.drain()
                report["drain_s"] = round(time.monotonic() - t_drain, 1)
                self.phase = "final"
                report["final_round"] = await self.final_round()
                self.phase = "restart check"
                report["after_restart"] = await self.restart_check(nursery)
                report["pending_at_end"] = await self.query_pending()
                for c in self.children:
                    await c.quit()
                with trio.move_on_after(30):
                    for c in self.children:
                        await c.wait()
                await self.chatd.kill()
                nursery.cancel_scope.cancel()
        finally:
            for c in [*self.children, self.chatd]:
                c.kill_now()
        report["seconds"] = round(time.monotonic() - t_start, 1)
        report.update(self.ledger.summary())
        report.update(chatd_kills=self.chatd_kills, client_kills=self.client_kills, drops=self.proxy.drops,
                      stalls=self.proxy.stalls, proxy_connections=self.proxy.accepted, conversations=len(self.convs),
                      group={"members": len(self.group_members), "messages": self.group_messages,
                             "deliveries": sum(len(v) for v in self.ledger.fanout.values())},
                      devices=len(self.devices), processes=len(self.children) + 1, **self.events)
        report["crashes"] = {c.name: c.crashes for c in [self.chatd, *self.children] if c.crashes}
        for name, codes in report["crashes"].items():
            self.ledger.problems.append(f"{name} exited on its own (exit codes {codes}): see its log")
        report["failed_errors"] = self.failures
        if self.workers:
            report["stripe_workers"] = self.by_worker
        st = sorted(self.send_times)
        report["send_ms"] = {"p50": round(st[len(st) // 2] * 1e3, 1), "p99": round(st[int(len(st) * 0.99)] * 1e3, 1),
                             "max": round(st[-1] * 1e3, 1)} if st else {}
        report["problems"] = self.ledger.problems
        report["notes"] = self.notes
        return report

    async def heal(self, nursery: trio.Nursery) -> None:
        """After the chaos: chatd and every client up, every device logged in."""
        if not self.chatd.alive:
            await self.start_chatd(nursery)
        for c in self.children:
            if not c.alive:
                await c.start(nursery)
        await self._until(self.all_ready, self.cfg.drain_timeout, "every device logged in again")

    async def drain(self) -> bool:
        """Until every confirmed message was received, everything received handled, outboxes empty."""
        lg = self.ledger
        deadline = trio.current_time() + self.cfg.drain_timeout

        def delivered() -> bool:
            return all(m.received for m in lg.msgs.values() if m.state == "sent") and not lg.open_receipts(self.current())

        while trio.current_time() < deadline:
            if await self._until(delivered, max(0.1, deadline - trio.current_time()), "every message delivered"):
                if await self.query_pending() == 0:
                    await trio.sleep(1.0)  # unconfirmed sends still travelling
                    if delivered():
                        return True
            await trio.sleep(0.5)
        missing = [f"{m.key} {m.id} {m.sender}->{m.to}" for m in lg.msgs.values() if m.state == "sent" and not m.received]
        lg.problems.append(f"drain: pending {self.pending}, not received {missing[:10]}, "
                           f"received not handled {lg.open_receipts(self.current())[:10]}")
        return False

    async def final_round(self) -> dict[str, int]:
        """One message each way in every conversation, after the chaos: the sessions still work."""
        keys: list[str] = []
        expected = 0
        for i, conv in enumerate(self.convs):
            if conv.kind == "group":  # each member once to all the others: every sender key still works
                for j, member in enumerate(conv.members):
                    expected += len(conv.members) - 1
                    keys += await self.issue_group(member, f"f{i}.{j}")
                continue
            a, b = conv.members
            for j, (s, t) in enumerate(((a, b), (b, a))):
                key = f"f{i}.{j}"
                expected += 1
                if await self.issue(s, t, key):
                    keys.append(key)
        lg = self.ledger
        await self._until(lambda: all(lg.msgs[k].handled for k in keys), self.cfg.drain_timeout, "the final round")
        return {"messages": expected, "delivered": sum(bool(lg.msgs[k].handled) for k in keys),
                "failed": sum(lg.msgs[k].state == "failed" for k in keys)}

    async def restart_check(self, nursery: trio.Nursery) -> int:
        """Restart every client: nothing is handed out again (received lines in that lifetime)."""
        before = self.ledger.received_lines
        for c in self.children:
            await self.kill_client(c, chaos=False)
            await c.start(nursery)
        await self._until(self.all_ready, self.cfg.drain_timeout, "every device logged in after the restart")
        await trio.sleep(2.0)
        return self.ledger.received_lines - before

    def _logs(self) -> str:
        return "\n".join(f"--- {c.name}\n{c.log_tail()}" for c in [self.chatd, *self.children])


# --------------------------------------------------------------------------- entry points
@contextmanager
def store_urls(cfg: SoakConfig, work: Path) -> Iterator[list[str]]:
    n = cfg.clients * cfg.devices + (cfg.stripes >= 2)
    if cfg.store == "sqlite":
        yield [f"sqlite:///{work / f'store{i}.db'}" for i in range(n)]
    elif cfg.store == "postgresql":
        with pg_databases(n) as urls:
            yield urls
    else:
        raise ValueError(f"SOAK_STORE is sqlite or postgresql, not {cfg.store!r}")


def run_soak(cfg: SoakConfig, work: Path | None = None) -> dict[str, Any]:
    with ExitStack() as stack:
        if work is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="wacrypto-soak-"))) \
                if not cfg.keep else Path(tempfile.mkdtemp(prefix="wacrypto-soak-"))
        urls = stack.enter_context(store_urls(cfg, work))
        soak = Soak(cfg, work, urls)
        report = trio.run(soak.run)
        report["work"] = str(work) if cfg.keep else None
        if not ok(report):
            report["logs"] = soak._logs()
        return report


def ok(report: dict[str, Any]) -> bool:
    final = report.get("final_round", {})
    return (report.get("drained") is True and report["lost"] == 0 and report["duplicates"] == 0
            and report["invented"] == 0 and report["misrouted"] == 0 and report["id_mismatches"] == 0
            and report["failed_but_delivered"] == 0 and report.get("pending_at_end") == 0
            and final.get("delivered") == final.get("messages") and report.get("after_restart") == 0
            and report["closed"] == 0 and report["rejected"] == 0 and not report.get("crashes")
            and report.get("media_bad", 0) == 0)


_TABLE = ("issued", "sent", "failed", "unconfirmed", "unconfirmed_delivered", "delivered", "handled_unconfirmed",
          "redeliveries", "lost", "duplicates", "invented", "misrouted", "id_mismatches", "failed_but_delivered",
          "media_ok", "media_bad",
          "chatd_kills", "client_kills", "drops", "stalls", "proxy_connections", "logins", "undecryptable",
          "rejected", "closed", "errors", "crashes", "pending_at_end", "after_restart")


def render(report: dict[str, Any]) -> str:
    cfg = report["config"]
    lines = [f"soak ({cfg['store']} stores, seed {cfg['seed']}): {report['processes']} processes, "
             f"{report['devices']} devices, {report['conversations']} conversations, {report['seconds']} s "
             f"(setup {report.get('setup_s')} s, traffic {report.get('traffic_s')} s, drain {report.get('drain_s')} s)"]
    lines += [f"  {k:<24}{report.get(k)}" for k in _TABLE]
    lines.append(f"  {'failed_errors':<24}{report.get('failed_errors')}")
    lines.append(f"  {'send_text ms':<24}{report.get('send_ms')}")
    lines.append(f"  {'group':<24}{report.get('group')}")
    if report.get("stripe_workers"):
        lines.append(f"  {'stripe_workers':<24}{report['stripe_workers']}")
    lines.append(f"  {'final_round':<24}{report.get('final_round')}")
    lines.append(f"  {'result':<24}{'OK' if ok(report) else 'FAILED'}")
    lines += [f"  problem: {p}" for p in report["problems"][:40]]
    lines += [f"  note: {p}" for p in report.get("notes", [])[:20]]
    return "\n".join(lines)


# ``make soak``: about 10,800 messages and 65 kills per store, some 16 minutes each
LONG: dict[str, Any] = dict(seconds=900.0, rate=12.0, chatd_kills=25, client_kills=40, drops=20, stalls=10)


def main() -> int:
    stores = os.environ.get("SOAK_STORE", "both")
    failed = False
    for store in ["sqlite", "postgresql"] if stores == "both" else [stores]:
        report = run_soak(dataclasses.replace(SoakConfig.from_env(**LONG, store=store), store=store))
        print(render(report), flush=True)
        if not ok(report):
            failed = True
            print(report.get("logs", ""), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
