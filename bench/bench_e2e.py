"""End-to-end benchmark (issue 12): a chatd process and two client processes on loopback TCP.

Process A is one account (a business) sending; process B holds C accounts (its customers), one
conversation each: A -> B_i. Per conversation, A keeps ``window`` send_text calls under way (window 1:
the next starts when the previous returned, one after another; window 8: an application that does not
wait for each send before the next, whose sends to one chat then commit in groups), all conversations
at once. Rows, in this order in one run (so they share the machine's state):

  floor     the same processes pattern (e2e_bare_client.py: the wa-client JSON lines, chatd's relay),
            no Signal and no store: a send queues an envelope, a receive acks it at once
  sqlite    ``wacrypto wa-client`` (WaMessenger) on SQLite stores (WAL, synchronous=FULL), chatd serving
            the WhatsApp stanzas from its SQLite database (``chatd run --database``): send_text commits
            the ratchet step, stanza and plaintext before it returns; the receiver decrypts once,
            hands the message out, mark_handled (commit, ack, delivery receipt)
  postgresql  the same with every client store on PostgreSQL (127.0.0.1:5432)

for C = 1 and 16, window 1 and 8, each as fast as it goes ("offered max": the sender outruns delivery,
so the latency there is queueing); then the largest C and window again at ``--paced`` msgs/s offered
(all conversations together, default 300), for the latency below saturation. Sessions are
established first (one message each way per conversation, not measured). Reported: msgs/s from the first send to the last "handled" line; latency from send_text's
start in A to mark_handled's return in B (the processes share CLOCK_MONOTONIC), p50/p99.

Run: .venv/bin/python bench/bench_e2e.py [--count 2000] [--size 64] [--window 1,8] [--conversations 1,16]
     [--paced 300] [--stores sqlite,postgresql] [--keep]
Writes bench/results/e2e.json and bench/results/e2e.txt.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import trio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "soak"))

from procs import Child, Line, chatd_argv, init_chatd_keys, pg_databases, wa_client_argv  # noqa: E402

from wacrypto.primitives.keys import KeyPair  # noqa: E402
from wacrypto.testing.chatd_process import free_port  # noqa: E402

RESULTS = REPO / "bench" / "results"
BARE = REPO / "bench" / "e2e_bare_client.py"
STEP = 300.0  # hang guard of one phase (s), not a target


class Row:
    """One measured run: the processes, and what their lines said."""

    def __init__(self, kind: str, conversations: int, work: Path, trust: Path, urls: list[str]) -> None:
        self.kind = kind
        self.c = conversations
        self.work = work
        self.port = free_port()
        self.chatd = Child("chatd", chatd_argv(work / "keys", work / "chatd.db", self.port, "--ping-interval", "60"),
                           work / "chatd.log", self._line)
        keys = [work / f"k{i}.key" for i in range(conversations + 1)]
        for k in keys:  # written here, so the harness knows the bare clients' names (chat keys)
            k.write_text(KeyPair.generate().private.to_bytes().hex() + "\n")
        if kind == "floor":
            self.a_name = _chat_key(keys[0])
            self.b_names = [_chat_key(k) for k in keys[1:]]

            def bare(ks: list[Path]) -> list[str]:
                argv = [sys.executable, str(BARE), "--trust", str(trust), "--ports", str(self.port)]
                for k in ks:
                    argv += ["--key", str(k)]
                return argv

            a_argv, b_argv = bare(keys[:1]), bare(keys[1:])
        else:
            self.a_name = "15550000001@s.whatsapp.net"
            self.b_names = [f"1555100{i:04d}@s.whatsapp.net" for i in range(conversations)]
            flags = ["--ping-interval", "0"]
            a_argv = wa_client_argv([(self.a_name, urls[0], keys[0])], trust, self.port, *flags, "--pool-size", "8")
            b_argv = wa_client_argv(list(zip(self.b_names, urls[1:], keys[1:])), trust, self.port, *flags,
                                    "--pool-size", "2")
        self.a = Child("A", a_argv, work / "a.log", self._line)
        self.b = Child("B", b_argv, work / "b.log", self._line)
        self.listening = trio.Event()
        self.ready: set[str] = set()
        self.sent: dict[str, float] = {}  # key -> send_text start (t0)
        self.sent_done: dict[str, float] = {}  # key -> send_text returned
        self.handled: dict[str, float] = {}  # key -> mark_handled returned
        self.received: dict[str, float] = {}  # key -> handed out to the receiving application
        self.key_of: dict[tuple[str, str], str] = {}  # (recipient, id) -> key
        self.failed: list[Line] = []
        self.problems: list[str] = []
        self.pending: int | None = None
        self.changed = trio.Event()

    def _line(self, child: Child, lifetime: int, obj: Line) -> None:
        if obj.get("event") == "listening":
            self.listening.set()
        elif "ready" in obj:
            self.ready.add(obj["ready"])
        elif "sent" in obj:
            self.sent[obj["sent"]] = obj["t0"]
            self.sent_done[obj["sent"]] = obj["t"]
        elif "failed" in obj:
            self.failed.append(obj)
        elif "received" in obj:
            key = (obj.get("text") or "").split("|", 1)[0]
            self.key_of[(obj["me"], obj["received"])] = key
            self.received.setdefault(key, obj["t"])
        elif "handled" in obj:
            key = self.key_of.get((obj["me"], obj["handled"]))
            if key is None or key in self.handled:
                self.problems.append(f"handled line without one received line before it: {obj}")
            else:
                self.handled[key] = obj["t"]
        elif "pending" in obj:
            self.pending = obj["pending"]
        elif "error" in obj or "unparsed" in obj or "closed" in obj or "undecryptable" in obj:
            self.problems.append(f"{child.name}: {obj}")
        self.changed.set()

    async def until(self, cond: Any, what: str) -> None:
        with trio.fail_after(STEP):
            while not cond():
                self.changed = trio.Event()
                with trio.move_on_after(0.5):
                    await self.changed.wait()
        if self.problems:
            raise RuntimeError(f"{self.kind} C={self.c}: {what}: {self.problems[:5]}")

    async def run(self, count: int, size: int, window: int, rate: float = 0.0) -> dict[str, Any]:
        per = count // self.c
        async with trio.open_nursery() as nursery:
            try:
                await self.chatd.start(nursery)
                with trio.fail_after(60):
                    await self.listening.wait()
                await self.b.start(nursery)
                await self.a.start(nursery)
                await self.until(lambda: len(self.ready) == self.c + 1, "every device logged in")
                # sessions both ways first (pkmsg, bundle fetches, device lists): not measured
                for i, b in enumerate(self.b_names):
                    await self.a.send({"cmd": "burst", "from": self.a_name, "to": b, "key": f"wa{i}", "count": 1})
                await self.until(lambda: len(self.handled) == self.c, "the warm-up from A")
                if self.kind != "floor":
                    for i, b in enumerate(self.b_names):
                        await self.b.send({"cmd": "burst", "from": b, "to": self.a_name, "key": f"wb{i}", "count": 1})
                    await self.until(lambda: len(self.handled) == 2 * self.c, "the warm-up from B")
                base = len(self.handled)
                cpu0 = {c.name: _cpu(c) for c in (self.chatd, self.a, self.b)}
                pg0, m0 = _postgres_cpu(), _machine()
                wall0 = time.monotonic()
                for i, b in enumerate(self.b_names):
                    await self.a.send({"cmd": "burst", "from": self.a_name, "to": b, "key": f"m{i}", "count": per,
                                       "size": size, "window": window, "rate": rate / self.c,
                                       "offset": i / rate if rate else 0})  # paced: the conversations in turn
                await self.until(lambda: len(self.handled) - base == per * self.c, "every message handled")
                wall = time.monotonic() - wall0
                cpu = {c.name: round((_cpu(c) - cpu0[c.name]) / wall, 2) for c in (self.chatd, self.a, self.b)}
                m1 = _machine()
                cpu["postgres"] = round((_postgres_cpu() - pg0) / wall, 2)
                cpu["busy"] = round((m1[0] - m0[0]) / max(1e-9, m1[1] - m0[1]), 2)
                if self.kind != "floor":
                    async def drained() -> None:
                        while True:
                            self.pending = None
                            await self.a.send({"cmd": "pending"})
                            await self.until(lambda: self.pending is not None, "the outbox depth")
                            if self.pending == 0:
                                return
                            await trio.sleep(0.05)
                    with trio.fail_after(STEP):
                        await drained()
                for c in (self.a, self.b):
                    await c.quit()
                with trio.move_on_after(20):
                    await self.a.wait()
                    await self.b.wait()
            finally:
                for c in (self.a, self.b, self.chatd):
                    c.kill_now()
            nursery.cancel_scope.cancel()
        keys = [k for k in self.handled if k.startswith("m")]
        lat = sorted(self.handled[k] - self.sent[k] for k in keys)
        send = sorted(self.sent_done[k] - self.sent[k] for k in keys)
        transit = sorted(self.received[k] - self.sent_done[k] for k in keys)
        handle = sorted(self.handled[k] - self.received[k] for k in keys)
        elapsed = max(self.handled[k] for k in keys) - min(self.sent[k] for k in keys)
        return {"msgs_per_s": round(len(keys) / elapsed), "p50_ms": _pct(lat, 0.5), "p99_ms": _pct(lat, 0.99),
                "send_p50_ms": _pct(send, 0.5), "transit_p50_ms": _pct(transit, 0.5),
                "handle_p50_ms": _pct(handle, 0.5), "count": len(keys), "failed": len(self.failed), "cpu": cpu}


def _cpu(child: Child) -> float:
    """CPU seconds (user + system) the child's process has used so far (Linux /proc)."""
    assert child.proc is not None
    fields = Path(f"/proc/{child.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine() -> tuple[float, float]:
    """(busy, all) CPU seconds of the whole machine so far, every core (/proc/stat)."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(f) - f[3] - f[4]) / tick, sum(f) / tick


def _postgres_cpu() -> float:
    """CPU seconds used so far by the PostgreSQL server's processes on this machine."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if text[text.index("(") + 1:text.rindex(")")] == "postgres":
            fields = text.rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def write_results(out: Path, name: str, res: dict[str, Any], text: str) -> None:
    """``out/NAME.json`` (the figures) and ``out/NAME.txt`` (the table), and the table on stdout."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(res, indent=2) + "\n")
    (out / f"{name}.txt").write_text(text)
    print(text)


def _cpu_per_msg(r: dict[str, Any]) -> float:
    """Milliseconds of CPU, every process of the row together, per message."""
    cpu = r["cpu"]
    return 1e3 * sum(cpu.get(k, 0.0) for k in ("chatd", "A", "B", "postgres")) / max(1, r["msgs_per_s"])


def _pct(values: list[float], q: float) -> float:
    return round(values[min(len(values) - 1, int(len(values) * q))] * 1e3, 2)


def _chat_key(path: Path) -> str:
    from wacrypto.primitives.keys import PrivateKey

    return KeyPair(PrivateKey(bytes.fromhex(path.read_text().strip()))).public.u.hex()


@contextmanager
def _workdir(keep: bool) -> Iterator[str]:
    if keep:
        yield tempfile.mkdtemp(prefix="wacrypto-bench-e2e-")
    else:
        with tempfile.TemporaryDirectory(prefix="wacrypto-bench-e2e-") as d:
            yield d


@contextmanager
def _stores(kind: str, n: int, work: Path) -> Iterator[list[str]]:
    if kind == "postgresql":
        with pg_databases(n) as urls:
            yield urls
    else:
        yield [f"sqlite:///{work / f'store{i}.db'}" for i in range(n)]


def run(count: int, size: int, windows: tuple[int, ...], stores: list[str], convs: tuple[int, ...] = (1, 16),
        keep: bool = False, paced: float = 0.0) -> dict[str, Any]:
    out: dict[str, Any] = {}
    plan = [(c, w, 0.0) for c in convs for w in windows]
    if paced:
        plan.append((max(convs), max(windows), paced))
    for c, window, rate in plan:
        for kind in ["floor", *stores]:
            with _workdir(keep) as d:
                if keep:
                    print(f"[bench_e2e] {kind} C={c}: logs and stores in {d}", file=sys.stderr, flush=True)
                work = Path(d)
                trust = init_chatd_keys(work / "keys")
                with _stores(kind, c + 1, work) as urls:
                    res = trio.run(Row(kind, c, work, trust, urls).run, count, size, window, rate)
            out[f"{kind}/{c}/{window}/{rate:g}"] = res
            print(f"[bench_e2e] {kind} C={c} window {window} offered {rate or 'max'}: {res}", file=sys.stderr,
                  flush=True)
    return out


def _code_version() -> str:
    """The commit measured, and whether the package had uncommitted edits (a shared checkout)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=30).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "wacrypto")
    return head + (" plus uncommitted edits in wacrypto/" if dirty else "")


def render(res: dict[str, Any]) -> str:
    lines = [
        "wacrypto end-to-end benchmark: process A (1 account) -> chatd process -> process B (C accounts), loopback",
        f"date {res['date']}  {res['host']}  python {res['python']}",
        f"code {res['code']}",
        f"{res['count']} messages of {res['size']} bytes, spread over C conversations; per conversation `window` "
        "send_text calls under way at a time (1: one after another)",
        "latency: send_text start in A -> mark_handled returned in B",
        "",
        f"{'row':<13}{'C':>3}{'window':>7}{'offered':>8}{'msgs/s':>9}{'x floor':>9}{'p50 ms':>9}{'p99 ms':>9}{'send p50':>10}"
        f"   cpu: chatd    A    B   pg (cores)  busy  cpu ms/msg",
    ]
    for c, w, rate in sorted({(int(k.split("/")[1]), int(k.split("/")[2]), k.split("/")[3]) for k in res["rows"]},
                             key=lambda t: (float(t[2]) > 0, t[0], t[1])):
        floor = res["rows"].get(f"floor/{c}/{w}/{rate}")
        for kind in ["floor", *res["stores"]]:
            r = res["rows"].get(f"{kind}/{c}/{w}/{rate}")
            if r is None:
                continue
            ratio = f"{r['msgs_per_s'] / floor['msgs_per_s']:.2f}" if floor else "-"
            cpu = r["cpu"]
            offered = "max" if float(rate) == 0 else rate
            lines.append(f"{kind:<13}{c:>3}{w:>7}{offered:>8}{r['msgs_per_s']:>9}{ratio:>9}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
                         f"{r['send_p50_ms']:>10.2f}{cpu['chatd']:>13.2f}{cpu['A']:>5.2f}{cpu['B']:>5.2f}"
                         f"{cpu.get('postgres', 0):>5.2f}{cpu.get('busy', 0) * 100:>13.0f}%{_cpu_per_msg(r):>12.2f}")
    lines += ["", "floor: the same JSON-lines processes, ChatClient envelopes through chatd's relay (no Signal, no store)",
              "cpu ms/msg: the CPU all the row's processes used (chatd, A, B, PostgreSQL) per message, steadier than "
              "msgs/s on a noisy machine",
              "sqlite / postgresql: wacrypto wa-client (WaMessenger), chatd run --database (SQLite, synchronous=FULL)",
              "pg: the PostgreSQL server's processes; busy: the share of the machine's cores in use during the row"]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--window", default="1,8", help="send_text calls under way per conversation, comma-separated")
    ap.add_argument("--paced", type=float, default=300.0,
                    help="also rows at this offered load (msgs/s, all conversations together; 0: none), for the "
                         "latency below saturation")
    ap.add_argument("--stores", default="sqlite,postgresql")
    ap.add_argument("--conversations", default="1,16", help="the C values to run, comma-separated")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--keep", action="store_true", help="keep each row's folder (process logs, stores) and print it")
    args = ap.parse_args()
    stores = [s for s in args.stores.split(",") if s]
    res: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": f"{platform.platform()}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}",
        "python": platform.python_version(),
        "count": args.count,
        "size": args.size,
        "windows": args.window,
        "paced": args.paced,
        "stores": stores,
        "code": _code_version(),
    }
    res["rows"] = run(args.count, args.size, tuple(int(w) for w in args.window.split(",")), stores, tuple(int(c) for c in args.conversations.split(",")),
                      args.keep, args.paced)
    write_results(args.out, "e2e", res, render(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
