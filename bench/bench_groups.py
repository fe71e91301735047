#!/usr/bin/env python3
"""Group messaging benchmark: sender keys vs. python-axolotl in the same run, and fan-out.

Run from the repository root::

    .venv/bin/python bench/bench_groups.py [--quick] [--cpu N | --no-pin] [--size 64] [--devices 256]

Figures:

  group encrypt   ``GroupCipher.encrypt`` over ``MemoryKeyStore``: one store transaction per
                  message (load record, parse, chain step, AES-CBC, XEdDSA signature, serialize,
                  store).
  group decrypt   ``GroupCipher.decrypt`` of the next in-order SenderKeyMessage: parse, one
                  transaction, signature check, chain step, AES-CBC, store.
  core            the same steps through the pure layer (``wacrypto.signal.senderkeys``) on a
                  record held as bytes in a dict, no store, no async: shows the store overhead.
  axolotl         python-axolotl 0.2.3's GroupCipher on its in-memory sender-key store
                  (bench/peers/axolotl_bench.py, run twice in its own venv; the faster run counts).
  fan-out         ``fan_out(store, 256 addresses, skdm)``: one SenderKeyDistributionMessage
                  encrypted to 256 devices with established sessions (type-2 messages), one
                  transaction with one ``load_sessions`` and one ``store_sessions``; on the
                  memory store and on SQLite (``open_store("sqlite:///...")``, WAL,
                  synchronous=FULL, in a temporary directory).

Method: the process (and its children) is pinned to one CPU (the idlest at start). wacrypto and
python-axolotl run interleaved (axolotl, wacrypto, axolotl, ..., axolotl) so both see the same
machine conditions. Each wacrypto figure is measured in rounds (~0.3 s each, ~0.05 s with
--quick) after a warm-up; reported: the median of the passes' median rounds and the best round.
axolotl's script gives one figure per run; reported: the median and the best run. Speedups are
given median-vs-median and best-vs-best. Inputs an operation consumes are prepared outside the
timed region.
Results go to bench/results/groups.{json,txt}. A benchmark, never a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the checkout, not a possibly stale editable install

import trio  # noqa: E402

import wacrypto  # noqa: E402
from wacrypto.session.account import create_account, get_bundle  # noqa: E402
from wacrypto.address import Address  # noqa: E402
from wacrypto.session.cipher import SessionCipher  # noqa: E402
from wacrypto.session.groups import GroupCipher, fan_out  # noqa: E402
from wacrypto.signal import senderkeys as sk  # noqa: E402
from wacrypto.signal.senderkeys import SenderKeyRecord  # noqa: E402
from wacrypto.store.memory import MemoryKeyStore  # noqa: E402
from wacrypto.wire.messages import SenderKeyDistributionMessage, SenderKeyMessage  # noqa: E402

RESULTS = ROOT / "bench" / "results"
# axolotl's fastest configuration (protobuf C++ runtime, `setup.sh --axolotl-cpp`) when installed
AXOLOTL_PY = ROOT / ".venv-axolotl-cpp" / "bin" / "python"
if not AXOLOTL_PY.exists():
    AXOLOTL_PY = ROOT / ".venv-axolotl" / "bin" / "python"
AXOLOTL_BENCH = ROOT / "bench" / "peers" / "axolotl_bench.py"
ROUNDS = 5
TARGET_SPEEDUP = 3.0
TARGET_FANOUT_MS = 100.0
TARGET_SQLITE_RATIO = 2.0
GROUP = "120363000000000042@g.us"
ME = Address("sender", 1)


# ----------------------------------------------------------------------------------- timing
def summary(per_op_s: list[float], n: int) -> dict[str, Any]:
    us = sorted(x * 1e6 for x in per_op_s)
    return {"median_us": round(statistics.median(us), 2), "best_us": round(us[0], 2), "rounds": len(us), "batch": n}


def calibrate(per_op_s: float, round_s: float) -> int:
    return max(20, int(round_s / max(per_op_s, 1e-7)))


async def time_async(batch: Callable[[int], Awaitable[float]], round_s: float, rounds: int = ROUNDS) -> dict[str, Any]:
    """batch(n) runs n operations and returns the seconds spent in the timed part."""
    await batch(20)
    n = calibrate(await batch(20) / 20, round_s)
    per = []
    for _ in range(rounds):
        gc.collect()
        per.append(await batch(n) / n)
    return summary(per, n)


def time_sync(batch: Callable[[int], float], round_s: float, rounds: int = ROUNDS) -> dict[str, Any]:
    batch(20)
    n = calibrate(batch(20) / 20, round_s)
    per = []
    for _ in range(rounds):
        gc.collect()
        per.append(batch(n) / n)
    return summary(per, n)


# ----------------------------------------------------------------------------------- groups
async def bench_group(round_s: float, pt: bytes) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    sender = GroupCipher(MemoryKeyStore())
    skdm = await sender.create_distribution(GROUP, ME)

    async def enc_batch(n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            await sender.encrypt(GROUP, ME, pt)
        return time.perf_counter() - t0

    out["group_encrypt"] = await time_async(enc_batch, round_s)

    state: dict[str, GroupCipher] = {}

    async def fresh_receiver() -> None:
        r = GroupCipher(MemoryKeyStore())
        await r.process_distribution(GROUP, ME, await sender.create_distribution(GROUP, ME))
        state["r"] = r

    async def dec_batch(n: int) -> float:
        await fresh_receiver()
        r = state["r"]
        bodies = [await sender.encrypt(GROUP, ME, pt) for _ in range(n)]
        t0 = time.perf_counter()
        for b in bodies:
            await r.decrypt(GROUP, ME, b)
        return time.perf_counter() - t0

    out["group_decrypt"] = await time_async(dec_batch, round_s)
    _ = skdm
    return out


def bench_core(round_s: float, pt: bytes) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    own = sk.new_own_record()
    db = {"own": own.to_bytes()}
    signers = sk.SigningKeyCache()

    def enc_once() -> bytes:
        rec = SenderKeyRecord._trusted(db["own"])
        body = sk.encrypt(rec, pt, signers=signers)
        db["own"] = rec.to_bytes()
        return body

    def enc_batch(n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            enc_once()
        return time.perf_counter() - t0

    out["group_encrypt"] = time_sync(enc_batch, round_s)

    def dec_batch(n: int) -> float:
        recv = SenderKeyRecord()
        sk.process_distribution(recv, sk.create_distribution(SenderKeyRecord._trusted(db["own"])))
        db["recv"] = recv.to_bytes()
        bodies = [enc_once() for _ in range(n)]
        t0 = time.perf_counter()
        for b in bodies:
            m = SenderKeyMessage.from_bytes(b)
            rec = SenderKeyRecord._trusted(db["recv"])
            sk.decrypt(rec, m)
            db["recv"] = rec.to_bytes()
        return time.perf_counter() - t0

    out["group_decrypt"] = time_sync(dec_batch, round_s)
    return out


def merge(passes: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Median of the passes' medians, best of their bests."""
    out: dict[str, dict[str, Any]] = {}
    for op in passes[0]:
        out[op] = {
            "median_us": round(statistics.median(p[op]["median_us"] for p in passes), 2),
            "best_us": round(min(p[op]["best_us"] for p in passes), 2),
            "passes": [p[op]["median_us"] for p in passes],
            "rounds_per_pass": passes[0][op]["rounds"],
        }
    return out


def peer_axolotl(seconds: float, size: int) -> dict[str, Any]:
    if not AXOLOTL_PY.exists():
        return {"error": f"{AXOLOTL_PY} missing: run tests/interop/setup.sh"}
    # no PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION: axolotl_bench.py picks its fastest runtime (C++ protobuf
    # in .venv-axolotl-cpp) itself
    env = {k: v for k, v in os.environ.items() if k != "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"}
    try:
        proc = subprocess.run(
            [str(AXOLOTL_PY), str(AXOLOTL_BENCH), "--seconds", str(seconds), "--size", str(size)],
            capture_output=True, text=True, timeout=600, env=env, cwd=ROOT,
        )
    except subprocess.TimeoutExpired:
        return {"error": "timeout"}
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:]}
    res: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return res


# ----------------------------------------------------------------------------------- fan-out
async def build_sender(devices: int) -> tuple[MemoryKeyStore, list[Address]]:
    """A sender with established sessions (the peers have answered) to ``devices`` devices."""
    store = MemoryKeyStore()
    await create_account(store, prekeys=0)
    cipher = SessionCipher(store)
    addrs = []
    for i in range(devices):
        rstore = MemoryKeyStore()
        await create_account(rstore, prekeys=1)
        addr = Address(f"4915100{i // 4:05d}", 1 + i % 4)
        await cipher.process_bundle(addr, await get_bundle(rstore, addr.device_id))
        rc = SessionCipher(rstore)
        m = await cipher.encrypt(addr, b"hello")
        await rc.decrypt(ME, m.type, m.body)
        r = await rc.encrypt(ME, b"hi")
        await cipher.decrypt(addr, r.type, r.body)
        addrs.append(addr)
    return store, addrs


async def copy_sender(src: MemoryKeyStore, dst: Any, addrs: list[Address]) -> None:
    async with src.transaction() as tx:
        local = await tx.get_local_identity()
        sessions = await tx.load_sessions(addrs)
        idents = {a: await tx.get_remote_identity(a) for a in addrs}
    async with dst.transaction(*addrs) as tx:
        assert local is not None
        await tx.set_local_identity(local)
        await tx.store_sessions(sessions)
        for a, k in idents.items():
            assert k is not None
            await tx.save_remote_identity(a, k)


async def bench_fanout(store: Any, addrs: list[Address], rounds: int) -> dict[str, Any]:
    skdm = SenderKeyDistributionMessage.create(1234, 0, os.urandom(32), b"\x05" + os.urandom(32)).to_bytes()
    res = await fan_out(store, addrs, skdm)  # warm-up (also checks every device succeeds)
    assert len(res.messages) == len(addrs) and not res.failures, res
    assert all(m.type == 2 for m in res.messages.values())
    times = []
    for _ in range(rounds):
        gc.collect()
        t0 = time.perf_counter()
        await fan_out(store, addrs, skdm)
        times.append(time.perf_counter() - t0)
    times.sort()
    med = statistics.median(times)
    return {
        "devices": len(addrs),
        "median_ms": round(med * 1e3, 2),
        "best_ms": round(times[0] * 1e3, 2),
        "sessions_per_s": round(len(addrs) / med),
        "rounds": rounds,
        "payload_bytes": len(skdm),
    }


async def fanout_all(devices: int, rounds: int, log: Callable[[str], None]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    log(f"fan-out: building {devices} established sessions ...")
    mem, addrs = await build_sender(devices)
    out["memory"] = await bench_fanout(mem, addrs, rounds)
    log(f"fan-out memory: {out['memory']['median_ms']} ms")
    try:
        from wacrypto.store import open_store
    except ImportError as exc:  # the SQL store is another helper's work
        out["sqlite"] = {"error": f"open_store unavailable: {exc}"}
        return out
    with tempfile.TemporaryDirectory(prefix="wacrypto-bench-") as d:
        sql = await open_store(f"sqlite:///{d}/bench.db")
        try:
            await copy_sender(mem, sql, addrs)
            out["sqlite"] = await bench_fanout(sql, addrs, rounds)
        finally:
            await sql.aclose()
    log(f"fan-out sqlite: {out['sqlite']['median_ms']} ms")
    return out


# ----------------------------------------------------------------------------------- report
def _idlest_cpu(allowed: list[int]) -> int:
    """The allowed CPU with the most idle time over 0.2 s (other benchmarks may pin to the last one)."""

    def idle() -> dict[int, int]:
        out = {}
        try:
            for line in Path("/proc/stat").read_text().splitlines():
                f = line.split()
                if f[0].startswith("cpu") and f[0] != "cpu":
                    out[int(f[0][3:])] = int(f[4]) + int(f[5])
        except (OSError, ValueError, IndexError):
            pass
        return out

    a = idle()
    time.sleep(0.2)
    b = idle()
    candidates = [c for c in allowed if c in a and c in b]
    return max(candidates, key=lambda c: b[c] - a[c]) if candidates else allowed[-1]


def pin(cpu: int | None, no_pin: bool) -> int | None:
    if no_pin or not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    target = cpu if cpu is not None else _idlest_cpu(allowed)
    os.sched_setaffinity(0, {target})  # inherited by the axolotl subprocess
    return target


def machine_info(cpu: int | None) -> dict[str, Any]:
    model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = -1.0
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": model,
        "cpus_online": os.cpu_count(),
        "pinned_cpu": cpu,
        "load_1min_at_start": round(load, 2),
        "python": platform.python_version(),
        "wacrypto": wacrypto.__version__,
        "protobuf": metadata.version("protobuf"),
        "pynacl": metadata.version("pynacl"),
        "cryptography": metadata.version("cryptography"),
    }


def render(res: dict[str, Any]) -> str:
    info = res["machine"]
    lines = [
        "wacrypto group benchmark (sender keys, WhatsApp format)",
        f"date {info['date']}  cpu {info['cpu_model']} (pinned to {info['pinned_cpu']}, "
        f"{info['cpus_online']} online, load {info['load_1min_at_start']})  python {info['python']}",
        f"plaintext {res['plaintext_bytes']} bytes; us per message: median [best] over interleaved passes",
        "",
        f"{'operation':<15}{'wacrypto':>17}{'core':>9}{'axolotl':>17}{'speedup med':>12}{'best':>7}{'target':>8}  met",
    ]
    ax = res.get("axolotl", {})
    for op in ("group_encrypt", "group_decrypt"):
        w = res["wacrypto"][op]
        c = res["core"][op]
        a, ab = ax.get(f"{op}_us"), ax.get(f"{op}_best_us")
        speed = a / w["median_us"] if a else None
        speed_b = ab / w["best_us"] if ab else None
        met = "-" if speed is None else ("yes" if speed >= TARGET_SPEEDUP else "NO")
        ax_txt = f"{a:.1f} [{ab:.1f}]" if a else "n/a"
        lines.append(
            f"{op.replace('_', ' '):<15}{w['median_us']:>9.1f} [{w['best_us']:>5.1f}]{c['median_us']:>9.1f}"
            f"{ax_txt:>17}{(f'{speed:.2f}x' if speed else 'n/a'):>12}{(f'{speed_b:.2f}x' if speed_b else 'n/a'):>7}"
            f"{TARGET_SPEEDUP:>7.1f}x  {met}"
        )
    if "error" in ax:
        lines.append(f"axolotl: {ax['error'][:200]}")
    else:
        lines.append(f"axolotl: python-axolotl {ax.get('version')} with the {ax.get('protobuf_implementation')} "
                     f"protobuf runtime; runs (group enc, dec us): {res.get('axolotl_runs')}")
        lines.append(f"wacrypto pass medians: enc {res['wacrypto']['group_encrypt']['passes']}, "
                     f"dec {res['wacrypto']['group_decrypt']['passes']}")
    lines += ["", f"{'fan-out of one SKDM':<28}{'devices':>8}{'median ms':>11}{'best ms':>9}{'sessions/s':>12}  target  met"]
    fo = res["fanout"]
    mem = fo.get("memory", {})
    for name in ("memory", "sqlite"):
        f = fo.get(name, {})
        if "error" in f or not f:
            lines.append(f"{name:<28}  {f.get('error', 'not run')}")
            continue
        if name == "memory":
            target, met = f"< {TARGET_FANOUT_MS:.0f} ms", f["median_ms"] < TARGET_FANOUT_MS
        else:
            ratio = f["median_ms"] / mem["median_ms"] if mem.get("median_ms") else float("inf")
            target, met = f"<= {TARGET_SQLITE_RATIO:.0f}x mem ({ratio:.2f}x)", ratio <= TARGET_SQLITE_RATIO
        lines.append(
            f"{name:<28}{f['devices']:>8}{f['median_ms']:>11.2f}{f['best_ms']:>9.2f}{f['sessions_per_s']:>12}  "
            f"{target}  {'yes' if met else 'NO'}"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short rounds (smoke run)")
    ap.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: the idlest allowed one)")
    ap.add_argument("--no-pin", action="store_true")
    ap.add_argument("--size", type=int, default=64, help="plaintext bytes per group message")
    ap.add_argument("--devices", type=int, default=256, help="fan-out recipients")
    ap.add_argument("--no-peers", action="store_true", help="skip python-axolotl")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    cpu = pin(args.cpu, args.no_pin)
    round_s = 0.05 if args.quick else 0.3
    pt = bytes(range(256)) * (args.size // 256) + bytes(range(args.size % 256))

    def log(msg: str) -> None:
        print(f"[bench_groups] {msg}", file=sys.stderr, flush=True)

    res: dict[str, Any] = {"machine": machine_info(cpu), "plaintext_bytes": args.size, "unit": "us/op"}
    # Interleave: axolotl, wacrypto, axolotl, wacrypto, ..., axolotl, so both sides see the same
    # machine conditions; report the median and the best of each side.
    ours: list[dict[str, dict[str, Any]]] = []
    cores: list[dict[str, dict[str, Any]]] = []
    ax_runs: list[dict[str, Any]] = []
    passes = 2 if args.quick else 3
    ax_seconds = 0.3 if args.quick else 0.6
    for i in range(passes):
        if not args.no_peers:
            log(f"python-axolotl (run {i + 1}) ...")
            ax_runs.append(peer_axolotl(ax_seconds, args.size))
        log(f"wacrypto (pass {i + 1}) ...")
        ours.append(trio.run(bench_group, round_s, pt))
        cores.append(bench_core(round_s, pt))
    if not args.no_peers:
        log(f"python-axolotl (run {passes + 1}) ...")
        ax_runs.append(peer_axolotl(ax_seconds, args.size))
    res["wacrypto"] = merge(ours)
    res["core"] = merge(cores)
    if not args.no_peers:
        ok = [r for r in ax_runs if "error" not in r]
        if ok:
            res["axolotl"] = {
                "implementation": "python-axolotl",
                "version": ok[0].get("version"),
                "protobuf_implementation": ok[0].get("protobuf_implementation"),
                "note": "one figure per run of bench/peers/axolotl_bench.py (mean over the run); best and median of the runs",
            }
            for op in ("group_encrypt", "group_decrypt"):
                vals = sorted(r[f"{op}_us"] for r in ok)
                res["axolotl"][f"{op}_us"] = statistics.median(vals)
                res["axolotl"][f"{op}_best_us"] = vals[0]
            res["axolotl_runs"] = [(r["group_encrypt_us"], r["group_decrypt_us"]) for r in ok]
        else:
            res["axolotl"] = {"error": ax_runs[0].get("error", "failed")}
    res["fanout"] = trio.run(fanout_all, args.devices, 3 if args.quick else ROUNDS, log)
    ax = res.get("axolotl", {})
    res["targets"] = {
        "group_speedup_vs_axolotl": TARGET_SPEEDUP,
        "fanout_memory_ms": TARGET_FANOUT_MS,
        "fanout_sqlite_vs_memory": TARGET_SQLITE_RATIO,
    }
    if "group_encrypt_us" in ax:
        res["speedup"] = {
            op: {
                "median_vs_median": round(ax[f"{op}_us"] / res["wacrypto"][op]["median_us"], 2),
                "best_vs_best": round(ax[f"{op}_best_us"] / res["wacrypto"][op]["best_us"], 2),
            }
            for op in ("group_encrypt", "group_decrypt")
        }
    text = render(res)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "groups.json").write_text(json.dumps(res, indent=2) + "\n")
    (args.out / "groups.txt").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
