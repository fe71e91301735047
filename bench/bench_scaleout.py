"""Scale-out benchmark (issue 12): one account served by N worker processes sharing one PostgreSQL store.

Account A (a business) is one device whose chats are striped over N ``wacrypto wa-client --stripe
i/N`` processes (wacrypto/whatsapp/stripes.py): every worker holds its stripe's lease in the shared
store, logs in to chatd as that stripe, and sends and receives in its own chats only. Its C customers
(C accounts, SQLite stores) run in two other processes; chatd is one more process (its SQLite
database). The C peers are picked so that every stripe of 4 (and so of 2) has the same number.

Per conversation, both ways at once: A's worker sends ``count / C / 2`` messages to the customer and
the customer as many to A, ``window`` send_text calls under way each; every message is decrypted,
handed out and marked handled. Sessions are established first (one message each way per
conversation, not measured). Reported for N = 1, 2, 4 in one run: msgs/s from the first send to the
last "handled" line, latency send_text start -> mark_handled returned (p50/p99), the CPU cores each
group of processes used, and the ratio to N = 1.

Run: .venv/bin/python bench/bench_scaleout.py [--workers 1,2,4] [--count 4000] [--conversations 16]
     [--window 8] [--size 64] [--keep]
Writes bench/results/scaleout.json and bench/results/scaleout.txt.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import trio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "soak"))
sys.path.insert(0, str(REPO / "bench"))

from bench_e2e import _code_version, _cpu, _machine, _pct, _postgres_cpu, _workdir, write_results  # noqa: E402
from procs import Child, Line, chatd_argv, init_chatd_keys, pg_databases, wa_client_argv  # noqa: E402

from wacrypto.primitives.keys import KeyPair  # noqa: E402
from wacrypto.testing.chatd_process import free_port  # noqa: E402
from wacrypto.testing.stripes import chats_by_stripe  # noqa: E402
from wacrypto.whatsapp.stripes import stripe_of  # noqa: E402

RESULTS = REPO / "bench" / "results"
STEP = 300.0  # hang guard of one phase (s), not a target
ACCOUNT = "15550000001@s.whatsapp.net"
B_PROCESSES = 2


def balanced_peers(c: int, stripes: int = 4) -> list[str]:
    """``c`` customer JIDs, the same number in each stripe of ``stripes`` (so of every divisor too)."""
    got = chats_by_stripe(stripes, -(-c // stripes))
    return [chat for k in range(len(got[0])) for i in range(stripes) for chat in got[i][k:k + 1]][:c]


class Run:
    """One measured run: chatd, N workers of account A, the customers' processes."""

    def __init__(self, n: int, peers: list[str], work: Path, trust: Path, a_url: str) -> None:
        self.n, self.peers, self.work = n, peers, work
        self.port = free_port()
        self.chatd = Child("chatd", chatd_argv(work / "keys", work / "chatd.db", self.port, "--ping-interval", "60"),
                           work / "chatd.log", self._line)
        flags = ["--ping-interval", "0"]
        akey = work / "a.key"
        akey.write_text(KeyPair.generate().private.to_bytes().hex() + "\n")  # one device: one chat key for all
        self.workers = [Child(f"A{i}", wa_client_argv([(ACCOUNT, a_url, akey)], trust, self.port, *flags,
                                                      "--pool-size", "4", "--stripe", f"{i}/{n}"),
                              work / f"a{i}.log", self._line) for i in range(n)]
        self.owner = {p: self.workers[stripe_of(p, n)] for p in peers}
        groups = [peers[i::B_PROCESSES] for i in range(B_PROCESSES)]
        self.customers = []
        self.side: dict[str, Child] = {}
        for g, names in enumerate(groups):
            devs = [(p, f"sqlite:///{work / ('b' + p.split('@')[0] + '.db')}", work / ("b" + p.split("@")[0] + ".key"))
                    for p in names]
            child = Child(f"B{g}", wa_client_argv(devs, trust, self.port, *flags, "--pool-size", "2"),
                          work / f"b{g}.log", self._line)
            self.customers.append(child)
            self.side.update({p: child for p in names})
        self.listening = trio.Event()
        self.ready: set[tuple[str, str]] = set()  # (process, jid)
        self.sent: dict[str, float] = {}
        self.handled: dict[str, float] = {}
        self.key_of: dict[tuple[str, str], str] = {}
        self.problems: list[str] = []
        self.pending: dict[str, int] = {}
        self.changed = trio.Event()

    def _line(self, child: Child, lifetime: int, obj: Line) -> None:
        if obj.get("event") == "listening":
            self.listening.set()
        elif "ready" in obj:
            self.ready.add((child.name, obj["ready"]))
        elif "sent" in obj:
            self.sent[obj["sent"]] = obj["t0"]
        elif "received" in obj:
            self.key_of[(obj["me"], obj["received"])] = (obj.get("text") or "").split("|", 1)[0]
        elif "handled" in obj:
            key = self.key_of.get((obj["me"], obj["handled"]))
            if key is None or key in self.handled:
                self.problems.append(f"handled line without one received line before it: {obj}")
            else:
                self.handled[key] = obj["t"]
        elif "pending" in obj:
            self.pending[child.name] = obj["pending"]
        elif "failed" in obj or "error" in obj or "unparsed" in obj or "closed" in obj or "undecryptable" in obj:
            self.problems.append(f"{child.name}: {obj}")
        self.changed.set()

    async def until(self, cond: Any, what: str) -> None:
        with trio.fail_after(STEP):
            while not cond() and not self.problems:
                self.changed = trio.Event()
                with trio.move_on_after(0.5):
                    await self.changed.wait()
        if self.problems:
            raise RuntimeError(f"N={self.n}: {what}: {self.problems[:5]}")

    async def _burst(self, child: Child, sender: str, to: str, key: str, count: int, size: int, window: int) -> None:
        await child.send({"cmd": "burst", "from": sender, "to": to, "key": key, "count": count, "size": size,
                          "window": window})

    async def run(self, count: int, size: int, window: int) -> dict[str, Any]:
        per = max(1, count // len(self.peers) // 2)  # each way, per conversation
        procs = [self.chatd, *self.workers, *self.customers]
        async with trio.open_nursery() as nursery:
            try:
                await self.chatd.start(nursery)
                with trio.fail_after(60):
                    await self.listening.wait()
                for c in self.customers:
                    await c.start(nursery)
                await self.workers[0].start(nursery)  # stripe 0 first: it creates and registers the account
                await self.until(lambda: ("A0", ACCOUNT) in self.ready, "stripe 0 logged in")
                for w in self.workers[1:]:
                    await w.start(nursery)
                await self.until(lambda: len(self.ready) == self.n + len(self.peers), "every worker and customer logged in")
                for i, p in enumerate(self.peers):  # sessions both ways first: not measured
                    await self._burst(self.owner[p], ACCOUNT, p, f"wa{i}", 1, size, 1)
                await self.until(lambda: len(self.handled) == len(self.peers), "the warm-up from A")
                for i, p in enumerate(self.peers):
                    await self._burst(self.side[p], p, ACCOUNT, f"wb{i}", 1, size, 1)
                await self.until(lambda: len(self.handled) == 2 * len(self.peers), "the warm-up to A")
                base = len(self.handled)
                cpu0 = {c.name: _cpu(c) for c in procs}
                pg0, m0 = _postgres_cpu(), _machine()
                wall0 = time.monotonic()
                for i, p in enumerate(self.peers):
                    await self._burst(self.owner[p], ACCOUNT, p, f"ma{i}", per, size, window)
                    await self._burst(self.side[p], p, ACCOUNT, f"mb{i}", per, size, window)
                total = 2 * per * len(self.peers)
                await self.until(lambda: len(self.handled) - base == total, "every message handled")
                wall = time.monotonic() - wall0
                used = {c.name: (_cpu(c) - cpu0[c.name]) / wall for c in procs}
                m1 = _machine()
                used["postgres"] = (_postgres_cpu() - pg0) / wall
                busy = (m1[0] - m0[0]) / max(1e-9, m1[1] - m0[1])
                for c in (*self.workers, *self.customers):  # outboxes empty: every send acknowledged
                    while True:
                        self.pending.pop(c.name, None)
                        await c.send({"cmd": "pending"})
                        await self.until(lambda c=c: c.name in self.pending, "the outbox depth")
                        if self.pending[c.name] == 0:
                            break
                        await trio.sleep(0.05)
                for c in (*self.workers, *self.customers):
                    await c.quit()
                with trio.move_on_after(20):
                    for c in (*self.workers, *self.customers):
                        await c.wait()
            finally:
                for c in procs:
                    c.kill_now()
            nursery.cancel_scope.cancel()
        keys = [k for k in self.handled if k.startswith("m")]
        lat = sorted(self.handled[k] - self.sent[k] for k in keys)
        elapsed = max(self.handled[k] for k in keys) - min(self.sent[k] for k in keys)
        return {"msgs_per_s": round(len(keys) / elapsed), "p50_ms": _pct(lat, 0.5), "p99_ms": _pct(lat, 0.99),
                "count": len(keys),
                "cpu": {"chatd": round(used["chatd"], 2),
                        "A": round(sum(v for k, v in used.items() if k.startswith("A")), 2),
                        "B": round(sum(v for k, v in used.items() if k.startswith("B")), 2),
                        "postgres": round(used["postgres"], 2)},
                "machine_busy": round(busy, 2),
                "per_worker_cpu": [round(used[w.name], 2) for w in self.workers]}


def run(workers: list[int], count: int, size: int, window: int, conversations: int, keep: bool) -> dict[str, Any]:
    peers = balanced_peers(conversations)
    out: dict[str, Any] = {}
    for n in workers:
        with _workdir(keep) as d:
            work = Path(d)
            if keep:
                print(f"[bench_scaleout] N={n}: logs and stores in {d}", file=sys.stderr, flush=True)
            trust = init_chatd_keys(work / "keys")
            with pg_databases(1) as (a_url,):
                res = trio.run(Run(n, peers, work, trust, a_url).run, count, size, window)
        out[str(n)] = res
        print(f"[bench_scaleout] N={n}: {res}", file=sys.stderr, flush=True)
    return out


def render(res: dict[str, Any]) -> str:
    lines = [
        "wacrypto scale-out benchmark: account A served by N worker processes on one PostgreSQL store",
        f"date {res['date']}  {res['host']}  python {res['python']}",
        f"code {res['code']}",
        f"{res['count']} messages of {res['size']} bytes over {res['conversations']} conversations, half each way "
        f"(A's workers -> customers, customers -> A), {res['window']} send_text calls under way per conversation "
        "and direction",
        "latency: send_text start -> mark_handled returned; cpu: cores used by each group of processes "
        "(pg: the PostgreSQL server's); busy: the share of the machine's cores in use during the run",
        "",
        f"{'N':>3}{'msgs/s':>9}{'x N=1':>7}{'p50 ms':>9}{'p99 ms':>9}   cpu: chatd    A    B   pg  busy   per worker",
    ]
    one = res["rows"].get("1")
    for n, r in sorted(res["rows"].items(), key=lambda kv: int(kv[0])):
        ratio = f"{r['msgs_per_s'] / one['msgs_per_s']:.2f}" if one else "-"
        cpu = r["cpu"]
        lines.append(f"{n:>3}{r['msgs_per_s']:>9}{ratio:>7}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}"
                     f"{cpu['chatd']:>13.2f}{cpu['A']:>5.2f}{cpu['B']:>5.2f}{cpu.get('postgres', 0):>5.2f}"
                     f"{r.get('machine_busy', 0) * 100:>5.0f}%   {' '.join(f'{c:.2f}' for c in r['per_worker_cpu'])}")
    lines += ["", "A: wacrypto wa-client --stripe i/N (WaMessenger, lease of its stripe, PostgreSQL 127.0.0.1:5432);",
              f"customers: {B_PROCESSES} wa-client processes, SQLite stores; chatd run --database (SQLite)",
              f"machine: {os.cpu_count()} cpus shared by every process of the run"]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", default="1,2,4", help="the N values, comma-separated")
    ap.add_argument("--count", type=int, default=4000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--window", type=int, default=8)
    ap.add_argument("--conversations", type=int, default=16)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--keep", action="store_true", help="keep each run's folder (process logs, stores) and print it")
    args = ap.parse_args()
    workers = [int(w) for w in args.workers.split(",") if w]
    res: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": f"{platform.platform()}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}",
        "python": platform.python_version(),
        "count": args.count, "size": args.size, "window": args.window, "conversations": args.conversations,
        "code": _code_version(),
    }
    res["rows"] = run(workers, args.count, args.size, args.window, args.conversations, args.keep)
    write_results(args.out, "scaleout", res, render(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
