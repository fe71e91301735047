"""Media encryption benchmark: wacrypto next to the serial OpenSSL floor, measured in the same run.

    /work/main/.venv/bin/python bench/bench_media.py [--size-mib 64] [--repeat 5]

The *floor* is the work the scheme cannot avoid, done serially through the same libraries
(``cryptography``'s OpenSSL AES and ``hashlib``/``hmac``) over an in-memory buffer in 1 MiB chunks:
AES-256-CBC + HMAC-SHA256 + SHA-256 of the plaintext + SHA-256 of the ciphertext. The issue's floor
uses AES-CBC *encryption*; for decryption the same passes with AES-CBC *decryption* (much faster in
OpenSSL: CBC decryption is parallel) are shown too. wacrypto is measured file to file (page cache, the
destination removed before each run), including reading, writing and atomic publication, so it
does strictly more than the floor. Each measurement is the best of ``--repeat`` interleaved rounds
(the floor and wacrypto alternate, so a noisy neighbour hurts both alike). MB = 10^6 bytes.

Peak memory is measured in fresh subprocesses from their own accounting (``VmHWM`` of
/proc/self/status, reset through /proc/self/clear_refs after imports and a warm-up).

Writes bench/results/media.json and bench/results/media.txt and prints the table.

**Before/after in the same run** (``--compare-with DIR``, DIR another checkout, e.g. a ``git worktree``
of the base commit): two worker processes, one importing wacrypto from DIR and one from this
checkout, time the same cases on the same files, alternating case by case and round by round, so
load hits both alike (new processes every round). Besides the file cases it times small blobs (1 KiB encrypt and decrypt, where
key derivation and set-up dominate). Prints a table of both and writes it to ``--compare-out``
(default bench/results/media_compare.txt); media.txt/media.json are left alone::

    git worktree add /tmp/base-media <base commit>
    .venv/bin/python bench/bench_media.py --compare-with /tmp/base-media --compare-out before_after.txt
    git worktree remove /tmp/base-media
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

from cryptography.hazmat.backends.openssl import backend as openssl_backend
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

ROOT = Path(__file__).resolve().parents[1]
# a --worker imports wacrypto from the tree it is given (--tree DIR), everything else from this checkout
TREE = Path(sys.argv[sys.argv.index("--tree") + 1]).resolve() if "--tree" in sys.argv else ROOT
sys.path.insert(0, str(TREE))

import wacrypto  # noqa: E402
from wacrypto.media import MediaEncryptor, MediaType, decrypt, decrypt_file, encrypt, encrypt_file  # noqa: E402

CHUNK = 1024 * 1024
RESULTS = ROOT / "bench" / "results"


def floor(buf: memoryview, *, decrypt_side: bool) -> None:
    key, iv = bytes(32), bytes(16)
    cipher = Cipher(algorithms.AES(key), modes.CBC(iv))
    ctx = cipher.decryptor() if decrypt_side else cipher.encryptor()
    out = bytearray(CHUNK + 16)
    ov = memoryview(out)
    sha_a, sha_b = hashlib.sha256(), hashlib.sha256()
    mac = hmac.new(key, iv, hashlib.sha256)
    for pos in range(0, len(buf), CHUNK):
        piece = buf[pos : pos + CHUNK]
        n = ctx.update_into(piece, out)
        sha_a.update(piece)
        mac.update(ov[:n])
        sha_b.update(ov[:n])
    sha_a.digest(), sha_b.digest(), mac.digest()


def core_encrypt(buf: memoryview) -> None:
    """MediaEncryptor alone, in memory, serial (sidecar on): the pure core's own speed."""
    enc = MediaEncryptor(MediaType.VIDEO, bytes(32))
    out = bytearray(CHUNK + 16)
    for pos in range(0, len(buf), CHUNK):
        enc.update_into(buf[pos : pos + CHUNK], out)
    enc.finalize()


Case = tuple[str, Callable[[], object], Callable[[], object] | None]


def file_cases(src: Path, tmp: Path, data: memoryview) -> list[Case]:
    """The measured cases: (name, timed function, untimed preparation) on plaintext file ``src``."""
    key = bytes(32)
    blob, out, enc_out = tmp / "blob", tmp / "out", tmp / "enc"
    info = encrypt_file(src, blob, MediaType.VIDEO, key)  # warm-up, and the blob to decrypt
    return [
        ("floor_encrypt", lambda: floor(data, decrypt_side=False), None),
        ("encrypt_file_video", lambda: encrypt_file(src, enc_out, MediaType.VIDEO, key), lambda: rm(enc_out)),
        ("encrypt_file_image", lambda: encrypt_file(src, enc_out, MediaType.IMAGE, key), lambda: rm(enc_out)),
        ("core_encrypt_serial", lambda: core_encrypt(data), None),
        ("floor_decrypt", lambda: floor(data, decrypt_side=True), None),
        (
            "decrypt_file_verify",
            lambda: decrypt_file(
                blob, out, MediaType.VIDEO, key, file_sha256=info.file_sha256, file_enc_sha256=info.file_enc_sha256
            ),
            lambda: rm(out),
        ),
        ("encrypt_file_video_serial", lambda: encrypt_file(src, enc_out, MediaType.VIDEO, key, overlap=False), lambda: rm(enc_out)),
        (
            "decrypt_file_verify_serial",
            lambda: decrypt_file(
                blob, out, MediaType.VIDEO, key, file_sha256=info.file_sha256,
                file_enc_sha256=info.file_enc_sha256, overlap=False,
            ),
            lambda: rm(out),
        ),
    ]


SMALL = 1024  # bytes of a small blob (a thumbnail): set-up and key derivation dominate
SMALL_OPS = 2000  # blobs per timed small case


def small_cases() -> list[Case]:
    key = bytes(32)
    plain = os.urandom(SMALL)
    blob, info = encrypt(plain, MediaType.IMAGE, key)

    def enc() -> None:
        for _ in range(SMALL_OPS):
            encrypt(plain, MediaType.IMAGE, key)

    def dec() -> None:
        for _ in range(SMALL_OPS):
            decrypt(blob, MediaType.IMAGE, key, file_sha256=info.file_sha256, file_enc_sha256=info.file_enc_sha256)

    return [("small_encrypt_1k", enc, None), ("small_decrypt_1k", dec, None)]


def timed(fn: Callable[[], object], before: Callable[[], object] | None = None) -> float:
    if before is not None:
        before()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def rm(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


MEMORY_PROBE = """
import json, os, sys
from wacrypto.media import MediaType, decrypt_file, encrypt_file
src, blob, out, mode = sys.argv[1:5]

def status(field):  # per address space: not inherited from the parent over exec, unlike ru_maxrss
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(field)

def reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return status("VmRSS")

w = os.path.join(os.path.dirname(blob), "warm")
with open(w, "wb") as f:
    f.write(os.urandom(3 << 20))
i = encrypt_file(w, w + ".b", MediaType.VIDEO)
decrypt_file(w + ".b", w + ".o", MediaType.VIDEO, i.media_key)
if mode == "encrypt":
    base = reset_peak()
    encrypt_file(src, blob, MediaType.VIDEO, bytes(32))
else:
    info = encrypt_file(src, blob + ".tmp", MediaType.VIDEO, bytes(32))
    base = reset_peak()
    decrypt_file(blob + ".tmp", out, MediaType.VIDEO, bytes(32),
                 file_sha256=info.file_sha256, file_enc_sha256=info.file_enc_sha256)
print(json.dumps({"base": base, "peak": status("VmHWM")}))
"""


def memory_probe(src: Path, tmp: Path, mode: str) -> dict[str, int]:
    proc = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(src), str(tmp / f"m-{mode}.b"), str(tmp / f"m-{mode}.o"), mode],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    result: dict[str, int] = json.loads(proc.stdout)
    return result


def worker(src: Path, tmp: Path) -> None:
    """Answer ``case name`` lines on stdin with the seconds that case took, one JSON line each."""
    cases = {name: (fn, before) for name, fn, before in file_cases(src, tmp, memoryview(src.read_bytes())) + small_cases()}
    for fn, before in cases.values():  # warm-up: no case is timed cold
        timed(fn, before)
    print(json.dumps({"ready": list(cases), "wacrypto": str(Path(wacrypto.__file__).parent)}), flush=True)
    for line in sys.stdin:
        fn, before = cases[line.strip()]
        cpu0 = time.process_time()
        seconds = timed(fn, before)  # the preparation is untimed; its CPU time is tiny (an unlink)
        print(json.dumps({"seconds": seconds, "cpu": time.process_time() - cpu0}), flush=True)


COMPARED = [
    ("encrypt_file_video", "encrypt_file video (sidecar), 2 threads", "MB/s"),
    ("encrypt_file_image", "encrypt_file image, 2 threads", "MB/s"),
    ("encrypt_file_video_serial", "encrypt_file video, overlap=False", "MB/s"),
    ("core_encrypt_serial", "MediaEncryptor core, in memory", "MB/s"),
    ("decrypt_file_verify", "decrypt_file + verify, 2 threads", "MB/s"),
    ("decrypt_file_verify_serial", "decrypt_file + verify, overlap=False", "MB/s"),
    ("small_encrypt_1k", f"encrypt {SMALL} B blob in memory", "blobs/s"),
    ("small_decrypt_1k", f"decrypt + verify {SMALL} B blob in memory", "blobs/s"),
    ("floor_encrypt", "OpenSSL floor, encrypt side (control)", "MB/s"),
    ("floor_decrypt", "OpenSSL floor, decrypt side (control)", "MB/s"),
]


def compare(args: argparse.Namespace) -> None:
    before_tree = Path(args.compare_with).resolve()
    size = args.size_mib * CHUNK
    with tempfile.TemporaryDirectory(prefix="wacrypto-bench-") as tmpdir:
        tmp = Path(tmpdir)
        src = tmp / "plain"
        with open(src, "wb") as f:
            for _ in range(args.size_mib):
                f.write(os.urandom(CHUNK))
        trees = {"before": before_tree, "after": ROOT}
        where: dict[str, str] = {}

        def start(label: str) -> subprocess.Popen[str]:
            tree = trees[label]
            work = tmp / label
            work.mkdir(exist_ok=True)
            env = {**os.environ, "PYTHONPATH": str(tree)}
            cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(src), str(work), "--tree", str(tree)]
            return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=tree)

        def ready(label: str, proc: subprocess.Popen[str]) -> subprocess.Popen[str]:
            assert proc.stdout is not None
            where[label] = json.loads(proc.stdout.readline())["wacrypto"]
            return proc

        runs: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
        cpu: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
        for r in range(args.repeat):
            # fresh worker processes every round: a process's own luck (memory placement, where the
            # scheduler puts its threads) then varies between rounds instead of biasing one side
            procs = {label: ready(label, proc) for label, proc in [(label, start(label)) for label in trees]}
            for name, _, _ in COMPARED:
                order = ("before", "after") if r % 2 == 0 else ("after", "before")
                for label in order:
                    proc = procs[label]
                    assert proc.stdin is not None and proc.stdout is not None
                    proc.stdin.write(name + "\n")
                    proc.stdin.flush()
                    reply = json.loads(proc.stdout.readline())
                    runs[label].setdefault(name, []).append(reply["seconds"])
                    cpu[label].setdefault(name, []).append(reply["cpu"])
            for proc in procs.values():
                assert proc.stdin is not None
                proc.stdin.close()
                proc.wait()
    load = os.getloadavg()[0]

    def rate(label: str, name: str, unit: str) -> float:
        best = min(runs[label][name])
        return SMALL_OPS / best if unit == "blobs/s" else size / best / 1e6

    command = " ".join(["python", "bench/bench_media.py", *sys.argv[1:]])
    lines = [
        f"wacrypto media, before/after in one run ({args.size_mib} MiB files, best of {args.repeat} interleaved rounds, "
        f"{os.cpu_count()} cores, python {platform.python_version()}, cryptography {version('cryptography')}, "
        f"{openssl_backend.openssl_version_text()}, load average {load:.1f} at the end)",
        f"command: {command}",
        f"before: wacrypto from {where['before']}",
        f"after:  wacrypto from {where['after']}",
        "",
        "speed = work / best wall time; cpu speed = the same from the least CPU time of the process (all its",
        "threads), which a busy machine disturbs less: it shows whether the work itself changed.",
        "",
        f"{'operation':<46} {'unit':>8} {'before':>9} {'after':>9} {'speed a/b':>10} {'cpu speed a/b':>14}",
        "-" * 100,
    ]
    for name, label, unit in COMPARED:
        b, a = rate("before", name, unit), rate("after", name, unit)
        cpu_ratio = min(cpu["before"][name]) / min(cpu["after"][name])
        lines.append(f"{label:<46} {unit:>8} {b:9.0f} {a:9.0f} {a / b:10.3f} {cpu_ratio:14.3f}")
    lines.append("-" * 100)
    text = "\n".join(lines)
    print(text)
    out = Path(args.compare_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--compare-with", metavar="DIR", help="another checkout to measure against, in the same run")
    ap.add_argument("--compare-out", default=str(RESULTS / "media_compare.txt"), help="where --compare-with writes its table")
    ap.add_argument("--worker", nargs=2, metavar=("SRC", "TMP"), help=argparse.SUPPRESS)
    ap.add_argument("--tree", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(Path(args.worker[0]), Path(args.worker[1]))
        return
    if args.compare_with:
        compare(args)
        return
    size = args.size_mib * CHUNK
    with tempfile.TemporaryDirectory(prefix="wacrypto-bench-") as tmpdir:
        tmp = Path(tmpdir)
        src = tmp / "plain"
        with open(src, "wb") as f:
            for _ in range(args.size_mib):
                f.write(os.urandom(CHUNK))
        data = memoryview(src.read_bytes())
        cases = file_cases(src, tmp, data)
        runs: dict[str, list[float]] = {}
        for _ in range(args.repeat):
            for name, fn, before in cases:
                runs.setdefault(name, []).append(timed(fn, before))
        mem_enc = memory_probe(src, tmp, "encrypt")
        mem_dec = memory_probe(src, tmp, "decrypt")

    load = os.getloadavg()[0]
    mbps = {name: size / min(times) / 1e6 for name, times in runs.items()}
    fe, fd = mbps["floor_encrypt"], mbps["floor_decrypt"]
    rows = [
        ("OpenSSL floor, encrypt side (serial, in memory)", mbps["floor_encrypt"], 1.0, None),
        ("encrypt_file video: hashes+MAC+sidecar, file->file", mbps["encrypt_file_video"], mbps["encrypt_file_video"] / fe, None),
        ("encrypt_file image: hashes+MAC, file->file", mbps["encrypt_file_image"], mbps["encrypt_file_image"] / fe, None),
        ("encrypt_file video, overlap=False (serial)", mbps["encrypt_file_video_serial"], mbps["encrypt_file_video_serial"] / fe, None),
        ("MediaEncryptor core, in memory, serial, sidecar", mbps["core_encrypt_serial"], mbps["core_encrypt_serial"] / fe, None),
        ("OpenSSL floor, decrypt side (serial, in memory)", mbps["floor_decrypt"], mbps["floor_decrypt"] / fe, 1.0),
        ("decrypt_file + verify (both hashes), file->file", mbps["decrypt_file_verify"], mbps["decrypt_file_verify"] / fe, mbps["decrypt_file_verify"] / fd),
        ("decrypt_file + verify, overlap=False (serial)", mbps["decrypt_file_verify_serial"], mbps["decrypt_file_verify_serial"] / fe, mbps["decrypt_file_verify_serial"] / fd),
    ]
    mib = 1024 * 1024
    enc_growth = (mem_enc["peak"] - mem_enc["base"]) / mib
    dec_growth = (mem_dec["peak"] - mem_dec["base"]) / mib
    env = (
        f"{args.size_mib} MiB, best of {args.repeat}, {os.cpu_count()} cores, python {platform.python_version()}, "
        f"cryptography {version('cryptography')}, {openssl_backend.openssl_version_text()}, "
        f"load average {load:.1f} at the end"
    )
    lines = [
        f"wacrypto media bench ({env})",
        f"{'operation':<52} {'MB/s':>7} {'x enc floor':>12} {'x dec floor':>12}",
        "-" * 86,
    ]
    for label, speed, vs_enc, vs_dec in rows:
        lines.append(f"{label:<52} {speed:7.0f} {vs_enc:12.2f} {(f'{vs_dec:.2f}' if vs_dec is not None else ''):>12}")
    lines += [
        "-" * 86,
        f"peak RSS growth, encrypt_file {args.size_mib} MiB: {enc_growth:.1f} MiB "
        f"(process peak {mem_enc['peak'] / mib:.0f} MiB)",
        f"peak RSS growth, decrypt_file {args.size_mib} MiB: {dec_growth:.1f} MiB "
        f"(process peak {mem_dec['peak'] / mib:.0f} MiB)",
    ]
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "media.txt").write_text(text + "\n")
    (RESULTS / "media.json").write_text(
        json.dumps(
            {
                "environment": env,
                "load_average_1min": round(load, 2),
                "size_bytes": size,
                "repeat": args.repeat,
                "mb_per_s": {k: round(v, 1) for k, v in mbps.items()},
                "seconds": {k: [round(t, 4) for t in v] for k, v in runs.items()},
                "ratio_vs_encrypt_floor": {k: round(v / fe, 3) for k, v in mbps.items()},
                "ratio_vs_decrypt_floor": {k: round(v / fd, 3) for k, v in mbps.items()},
                "peak_rss_growth_mib": {"encrypt_file": round(enc_growth, 1), "decrypt_file": round(dec_growth, 1)},
                "peak_rss_mib": {"encrypt_file": round(mem_enc["peak"] / mib, 1), "decrypt_file": round(mem_dec["peak"] / mib, 1)},
            },
            indent=1,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
