#!/usr/bin/env python3
"""Durable key-store throughput: encrypt + commit + outbox row, per backend, in one run.

Run from the repository root (``make bench`` runs it)::

    .venv/bin/python bench/bench_store.py [--seconds 3] [--backends memory,sqlite,postgresql,mariadb]
                                          [--conversations 1,16,64]

Each cell: one account (the store under test) with N sessions; N concurrent trio tasks each loop
``SessionCipher.encrypt_durable`` (one transaction: session read, ratchet step, session write, outbox
row, commit) for ``--seconds`` after a short warm-up. msgs/s counts committed messages; latency is per
``encrypt_durable`` call. The SQL databases are created fresh for the run and dropped afterwards:
SQLite in a temporary directory (WAL, synchronous=FULL), PostgreSQL and MariaDB on the local servers
(``WACRYPTO_BENCH_PG`` / ``WACRYPTO_BENCH_MYSQL`` override the admin URLs). Results go to
bench/results/store.json and store.txt.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import trio

from wacrypto.session import account
from wacrypto.address import Address
from wacrypto.session.cipher import SessionCipher
from wacrypto.store import open_store

PG_ADMIN = os.environ.get("WACRYPTO_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
MY_ADMIN = os.environ.get("WACRYPTO_BENCH_MYSQL", "mysql://root@127.0.0.1:3306/")
RESULTS = Path(__file__).resolve().parent / "results"


@contextmanager
def fresh_db(backend: str, tmp: str) -> Iterator[str]:
    name = f"wabench_{uuid.uuid4().hex[:10]}"
    if backend == "memory":
        yield "memory:"
    elif backend == "sqlite":
        yield f"sqlite:///{os.path.join(tmp, name + '.db')}"
    elif backend == "postgresql":
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        try:
            yield PG_ADMIN.rsplit("/", 1)[0] + "/" + name
        finally:
            with psycopg.connect(PG_ADMIN, autocommit=True) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    elif backend == "mariadb":
        import pymysql

        from wacrypto.store.sql.url import parse_store_url

        u = parse_store_url(MY_ADMIN)
        kw = {"host": u.host, "port": u.port, "user": u.user, "password": u.password or "", "autocommit": True}
        c = pymysql.connect(**kw)  # type: ignore[arg-type]
        c.cursor().execute(f"CREATE DATABASE `{name}`")
        c.close()
        try:
            yield f"mysql://{MY_ADMIN.split('://', 1)[1].split('/', 1)[0]}/{name}"
        finally:
            c = pymysql.connect(**kw)  # type: ignore[arg-type]
            c.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
            c.close()
    else:
        raise SystemExit(f"unknown backend {backend}")


async def run_cell(url: str, conversations: int, seconds: float) -> dict[str, float]:
    store = await open_store(url)
    peer = await open_store("memory:")
    await account.create_account(store, prekeys=1)
    await account.create_account(peer, prekeys=1)
    bundle = await account.get_bundle(peer)
    cipher = SessionCipher(store)
    addrs = [Address(f"peer{i}", 1) for i in range(conversations)]
    for a in addrs:
        await cipher.process_bundle(a, bundle)
    payload = b"x" * 120
    lat: list[float] = []
    count = 0
    # The measurement window is decided by timestamps, not by a flag flipped from another task: a store
    # whose transactions never yield (the memory store) would starve such a task for the whole run.
    warm = min(1.0, seconds / 4)
    start = time.perf_counter() + warm
    stop_at = start + seconds
    last_end = start

    async def worker(i: int) -> None:
        nonlocal count, last_end
        a = addrs[i]
        n = 0
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at:
                return
            await cipher.encrypt_durable(a, payload, f"{i}-{n}")
            n += 1
            if t0 >= start:
                t1 = time.perf_counter()
                lat.append(t1 - t0)
                count += 1
                last_end = max(last_end, t1)

    async with trio.open_nursery() as nursery:
        for i in range(conversations):
            nursery.start_soon(worker, i)
    elapsed = last_end - start
    await store.aclose()
    lat.sort()
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")  # noqa: E731
    return {
        "msgs_per_s": count / elapsed if elapsed > 0 else 0.0,
        "p50_ms": q(0.50),
        "p99_ms": q(0.99),
        "mean_ms": statistics.fmean(lat) * 1000 if lat else float("nan"),
        "messages": count,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("BENCH_SECONDS", "3")))
    ap.add_argument("--backends", default="memory,sqlite,postgresql,mariadb")
    ap.add_argument("--conversations", default="1,16,64")
    args = ap.parse_args()
    backends = args.backends.split(",")
    convs = [int(x) for x in args.conversations.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for b in backends:
            for n in convs:
                with fresh_db(b, tmp) as url:
                    r = trio.run(run_cell, url, n, args.seconds)
                r.update(backend=b, conversations=n)
                rows.append(r)
                print(f"{b:<11} {n:>3} conv  {r['msgs_per_s']:>9.0f} msg/s  p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms", file=sys.stderr)
    lines = [
        "durable encrypt (encrypt + session write + outbox row + commit), msgs/s and latency per call",
        f"{'backend':<11} {'conv':>4} {'msgs/s':>9} {'p50 ms':>8} {'p99 ms':>8}",
    ]
    for r in rows:
        lines.append(f"{r['backend']:<11} {r['conversations']:>4} {r['msgs_per_s']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f}")
    target = [r for r in rows if r["backend"] in ("sqlite", "postgresql") and r["conversations"] == 16]
    for r in target:
        ok = r["msgs_per_s"] >= 2000 and r["p99_ms"] < 50
        lines.append(f"target {r['backend']} 16 conv >= 2000 msg/s, p99 < 50 ms: {'MET' if ok else 'NOT MET'}")
    load = os.getloadavg()
    lines.append(f"host: {platform.platform()}, {os.cpu_count()} cpus, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "store.txt").write_text(text + "\n")
    (RESULTS / "store.json").write_text(
        json.dumps({"seconds": args.seconds, "results": rows, "cpus": os.cpu_count(), "loadavg": load}, indent=2) + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
