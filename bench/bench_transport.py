"""Transport benchmarks, each side by side with its reference in the same run.

1. Full Noise_XX handshake (both sides, WhatsApp variant): wacrypto vs dissononce (PyPI)
   configured identically; also our whole connection handshake (framing, protobuf, cert chain).
2. One-way encrypted frames/s between two processes over loopback TCP, 100 B and 16 KiB:
   wacrypto NoiseStream (one send_all per frame) and the ChatClient message path (stanzas,
   acks coming back) next to a bare trio baseline doing the same AES-GCM + 3-byte framing work.
3. Fallback to the second port after a refused first port (in-process chatd).
4. Time from a chatd restart (after SIGKILL) to the client being connected again.

Run: .venv/bin/python bench/bench_transport.py [--quick]
Writes bench/results/transport.json and bench/results/transport.txt.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from wacrypto.chat.client import ChatClientConfig, open_chat_client  # noqa: E402
from wacrypto.chat.events import ClientState  # noqa: E402
from wacrypto.chatd.server import ChatdServer, ServerKeys, load_trust_file  # noqa: E402
from wacrypto.chat.stream import NoiseStream  # noqa: E402
from wacrypto.primitives.keys import KeyPair  # noqa: E402
from wacrypto.transport.chat_connection import AckReceived, KeepaliveSettings  # noqa: E402
from wacrypto.transport.noise_connection import ClientSettings, NoiseConnection, ServerSettings  # noqa: E402
from wacrypto.transport.noise import HandshakeState, Role  # noqa: E402

HEADER = b"WA\x06\x03"
KEY = b"k" * 32
NONCE = struct.Struct(">8xI")
RESULTS = REPO / "bench" / "results"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- 1. handshake
def bench_handshake(n: int) -> dict[str, float]:
    sys.path.insert(0, str(REPO / "tests" / "interop"))
    from test_noise_interop import d_read, d_state, d_write  # dissononce, WhatsApp-configured

    c_static, s_static = KeyPair.generate(), KeyPair.generate()
    c_priv, s_priv = c_static.private.to_bytes(), s_static.private.to_bytes()
    payload = b"p" * 300

    def ours() -> None:
        ini = HandshakeState(Role.INITIATOR, c_static, HEADER)
        res = HandshakeState(Role.RESPONDER, s_static, HEADER)
        res.read_message(ini.write_message())
        ini.read_message(res.write_message(payload))
        res.read_message(ini.write_message(b"c"))
        ini.split(), res.split()

    def theirs() -> None:
        ini = d_state(True, c_priv)
        res = d_state(False, s_priv)
        m1, _ = d_write(ini, b"", True, False)
        d_read(res, m1)
        m2, _ = d_write(res, payload, True, True)
        d_read(ini, m2)
        m3, _ = d_write(ini, b"c", False, True)
        d_read(res, m3)

    keys, _, _ = ServerKeys.generate()
    now = time.time()

    def ours_full() -> None:
        c = NoiseConnection(ClientSettings(c_static, keys.root_public), wall_time=now)
        s = NoiseConnection(ServerSettings(keys.static, keys.chain))
        s.receive_data(c.data_to_send())
        s.next_event()
        c.receive_data(s.data_to_send())
        c.next_event()
        s.receive_data(c.data_to_send())
        s.next_event()

    fns = {"wacrypto": ours, "dissononce": theirs, "wacrypto_connection_with_certs": ours_full}
    runs: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        for _ in range(20):
            fn()
    for _ in range(10):  # interleaved rounds, so background load hits every implementation alike
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(n // 10 or 1):
                fn()
            runs[name].append((time.perf_counter() - t0) / (n // 10 or 1))
    return {name: min(v) * 1e6 for name, v in runs.items()}  # microseconds per full handshake


# --------------------------------------------------------------------------- 2. throughput
def receiver_main(mode: str, port_file: str, n: int, size: int, keydir: str) -> None:
    """Child process: accept one connection, receive n frames of `size`, answer one byte."""

    async def baseline(stream: trio.SocketStream) -> None:
        aead = AESGCM(KEY)
        buf = bytearray()
        got = counter = 0
        while got < n:
            data = await stream.receive_some(65536)
            if not data:
                return
            buf += data
            while len(buf) >= 3:
                ln = (buf[0] << 16) | (buf[1] << 8) | buf[2]
                if len(buf) < 3 + ln:
                    break
                frame = bytes(buf[3 : 3 + ln])
                del buf[: 3 + ln]
                aead.decrypt(NONCE.pack(counter), frame, None)
                counter += 1
                got += 1
        await stream.send_all(b"!")

    async def ours(stream: trio.SocketStream) -> None:
        keys = ServerKeys.load(Path(keydir))
        ns = NoiseStream(stream, NoiseConnection(ServerSettings(keys.static, keys.chain)))
        await ns.do_handshake()
        total = n * size
        got = 0
        while got < total:
            data = await ns.receive_some()
            if not data:
                return
            got += len(data)
        await ns.send_all(b"!")

    async def main() -> None:
        if mode == "chatclient":
            keys = ServerKeys.load(Path(keydir))
            server = ChatdServer(keys, keepalive=KeepaliveSettings(interval=0))
            async with trio.open_nursery() as nursery:
                ports = await nursery.start(server.serve, "127.0.0.1", [0])
                Path(port_file).write_text(str(ports[0]))
            return
        handler = baseline if mode == "baseline" else ours
        done = trio.Event()

        async def handle(stream: trio.SocketStream) -> None:
            await handler(stream)
            done.set()

        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(trio.serve_tcp, handle, 0)
            Path(port_file).write_text(str(listeners[0].socket.getsockname()[1]))
            await done.wait()
            nursery.cancel_scope.cancel()

    trio.run(main)


def spawn_receiver(mode: str, n: int, size: int, keydir: str) -> tuple[subprocess.Popen[bytes], int]:
    fd, port_file = tempfile.mkstemp()
    os.close(fd)
    os.unlink(port_file)
    proc = subprocess.Popen([sys.executable, __file__, "--receiver", mode, port_file, str(n), str(size), keydir])
    for _ in range(3000):
        if os.path.exists(port_file) and Path(port_file).read_text():
            port = int(Path(port_file).read_text())
            os.unlink(port_file)
            return proc, port
        time.sleep(0.005)
    raise RuntimeError("receiver did not start")


async def send_baseline(port: int, n: int, payload: bytes) -> float:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    aead = AESGCM(KEY)
    t0 = time.perf_counter()
    for i in range(n):
        ct = aead.encrypt(NONCE.pack(i), payload, None)
        await stream.send_all(len(ct).to_bytes(3, "big") + ct)
    assert await stream.receive_some(1) == b"!"
    elapsed = time.perf_counter() - t0
    await stream.aclose()
    return elapsed


async def send_noise_stream(port: int, n: int, payload: bytes, root: Any) -> float:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    ns = NoiseStream(stream, NoiseConnection(ClientSettings(KeyPair.generate(), root), wall_time=time.time()))
    await ns.do_handshake()
    t0 = time.perf_counter()
    for _ in range(n):
        await ns.send_all(payload)
    assert await ns.receive_some(1) == b"!"
    elapsed = time.perf_counter() - t0
    await ns.aclose()
    return elapsed


async def send_chat_client(port: int, n: int, payload: bytes, root: Any) -> float:
    config = ChatClientConfig(host="127.0.0.1", trusted_root=root, static_key=KeyPair.generate(), ports=(port,),
                              keepalive=KeepaliveSettings(interval=0, dead_socket=60.0), send_queue=1024, event_queue=4096)
    async with open_chat_client(config) as client:
        await client.wait_connected()
        last = f"m{n - 1}"
        async with trio.open_nursery() as nursery:
            done = trio.Event()

            async def acks() -> None:
                async for ev in client.events():
                    if isinstance(ev, AckReceived) and ev.id == last:
                        done.set()
                        return

            nursery.start_soon(acks)
            t0 = time.perf_counter()
            for i in range(n):
                await client.send_message(payload, f"m{i}")
            await done.wait()
            return time.perf_counter() - t0
    raise AssertionError("unreachable")


def bench_throughput(size: int, n: int, repeats: int, keydir: str, root: Any) -> dict[str, float]:
    payload = os.urandom(size)
    results: dict[str, list[float]] = {"baseline": [], "noise_stream": [], "chat_client": []}
    for _ in range(repeats):
        for mode, key in (("baseline", "baseline"), ("ours", "noise_stream"), ("chatclient", "chat_client")):
            proc, port = spawn_receiver(mode, n, size, keydir)
            try:
                if mode == "baseline":
                    elapsed = trio.run(send_baseline, port, n, payload)
                elif mode == "ours":
                    elapsed = trio.run(send_noise_stream, port, n, payload, root)
                else:
                    elapsed = trio.run(send_chat_client, port, n, payload, root)
            finally:
                if mode == "chatclient":
                    proc.kill()
                proc.wait(10)
            results[key].append(n / elapsed)
    return {k: statistics.median(v) for k, v in results.items()}


# --------------------------------------------------------------------------- 3. fallback
async def bench_fallback(repeats: int) -> dict[str, float]:
    keys, _, _ = ServerKeys.generate()
    server = ChatdServer(keys)
    direct, fallback = [], []
    async with trio.open_nursery() as nursery:
        ports = await nursery.start(server.serve, "127.0.0.1", [0])
        for _ in range(repeats):
            for bucket, plist in ((direct, (ports[0],)), (fallback, (free_port(), ports[0]))):
                config = ChatClientConfig(host="127.0.0.1", trusted_root=keys.root_public, static_key=KeyPair.generate(), ports=plist)
                t0 = time.perf_counter()
                async with open_chat_client(config) as client:
                    await client.wait_connected()
                    bucket.append(time.perf_counter() - t0)
        nursery.cancel_scope.cancel()
    return {"direct_ms": statistics.median(direct) * 1000, "after_refused_port_ms": statistics.median(fallback) * 1000}


# --------------------------------------------------------------------------- 4. restart
def start_chatd(keydir: str, ports: list[int]) -> tuple[subprocess.Popen[str], float]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "wacrypto", "chatd", "run", "--dir", keydir, "--host", "127.0.0.1", "--ports", ",".join(map(str, ports))],
        stdout=subprocess.PIPE, text=True, cwd=str(REPO),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "listening" in line, line
    return proc, time.perf_counter()


async def bench_restart(keydir: str, root: Any, repeats: int) -> dict[str, float]:
    ports = [free_port(), free_port()]
    proc, _ = await trio.to_thread.run_sync(start_chatd, keydir, ports)
    from_ready, from_kill = [], []
    # stable_period 1 s + 1.5 s connected before each kill: every kill hits a *stable* connection,
    # as a production restart would (the default stable period is 60 s)
    config = ChatClientConfig(host="127.0.0.1", trusted_root=root, static_key=KeyPair.generate(), ports=tuple(ports),
                              stable_period=1.0)
    try:
        async with open_chat_client(config) as client:
            await client.wait_connected()
            for i in range(repeats):
                await trio.sleep(1.5)
                t_kill = time.perf_counter()
                proc.kill()
                proc.wait()
                await client.wait_state(ClientState.CONNECTING, ClientState.WAITING)
                proc, t_ready = await trio.to_thread.run_sync(start_chatd, keydir, ports)
                await client.wait_connected()
                t_conn = time.perf_counter()
                from_ready.append(t_conn - t_ready)
                from_kill.append(t_conn - t_kill)
                assert client.connections == i + 2
    finally:
        proc.kill()
        proc.wait()
    return {
        "restart_ready_to_reconnected_s_median": statistics.median(from_ready),
        "restart_ready_to_reconnected_s_max": max(from_ready),
        "kill_to_reconnected_s_median": statistics.median(from_kill),
    }


# --------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    quick = args.quick
    keys, root_kp, inter = ServerKeys.generate()
    keydir = tempfile.mkdtemp(prefix="bench-chatd-")
    keys.save(Path(keydir), root_kp, inter)
    root = load_trust_file(Path(keydir) / "root.pub")

    print("handshake ...", flush=True)
    hs = bench_handshake(100 if quick else 300)
    print("throughput ...", flush=True)
    small = bench_throughput(100, 10000 if quick else 30000, 1 if quick else 3, keydir, root)
    large = bench_throughput(16384, 2000 if quick else 5000, 1 if quick else 3, keydir, root)
    print("fallback ...", flush=True)
    fb = trio.run(bench_fallback, 5 if quick else 20)
    print("restart ...", flush=True)
    rs = trio.run(bench_restart, keydir, root, 2 if quick else 5)

    results: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "handshake_us": hs,
        "handshake_speedup_vs_dissononce": hs["dissononce"] / hs["wacrypto"],
        "frames_per_s_100B": small,
        "frames_per_s_16KiB": large,
        "ratio_vs_baseline": {
            "noise_stream_100B": small["noise_stream"] / small["baseline"],
            "noise_stream_16KiB": large["noise_stream"] / large["baseline"],
            "chat_client_100B": small["chat_client"] / small["baseline"],
            "chat_client_16KiB": large["chat_client"] / large["baseline"],
        },
        "fallback": fb,
        "restart": rs,
    }
    r = results
    lines = [
        "wacrypto transport benchmarks  (" + f"python {r['machine']['python']}, {r['machine']['cpus']} cpus)",
        "",
        f"{'measure':<58}{'value':>14}  {'target':<12}",
        "-" * 88,
        f"{'handshake, wacrypto (us, both sides)':<58}{hs['wacrypto']:>14.1f}",
        f"{'handshake, dissononce (us, both sides)':<58}{hs['dissononce']:>14.1f}",
        f"{'handshake speedup vs dissononce':<58}{r['handshake_speedup_vs_dissononce']:>13.2f}x  {'>= 2x':<12}",
        f"{'handshake, our connection incl. protobuf + certs (us)':<58}{hs['wacrypto_connection_with_certs']:>14.1f}",
        f"{'100 B frames/s, bare trio baseline':<58}{small['baseline']:>14.0f}",
        f"{'100 B frames/s, NoiseStream':<58}{small['noise_stream']:>14.0f}  ({r['ratio_vs_baseline']['noise_stream_100B']:.2f}x, >= 0.8x)",
        f"{'100 B frames/s, ChatClient.send_message (acked)':<58}{small['chat_client']:>14.0f}  ({r['ratio_vs_baseline']['chat_client_100B']:.2f}x)",
        f"{'16 KiB frames/s, bare trio baseline':<58}{large['baseline']:>14.0f}",
        f"{'16 KiB frames/s, NoiseStream':<58}{large['noise_stream']:>14.0f}  ({r['ratio_vs_baseline']['noise_stream_16KiB']:.2f}x, >= 0.8x)",
        f"{'16 KiB frames/s, ChatClient.send_message (acked)':<58}{large['chat_client']:>14.0f}  ({r['ratio_vs_baseline']['chat_client_16KiB']:.2f}x)",
        f"{'connect, direct (ms)':<58}{fb['direct_ms']:>14.1f}",
        f"{'connect after a refused first port (ms)':<58}{fb['after_refused_port_ms']:>14.1f}  {'< 100 ms':<12}",
        f"{'chatd restart ready -> reconnected (s, median)':<58}{rs['restart_ready_to_reconnected_s_median']:>14.3f}  {'< 2 s':<12}",
        f"{'chatd restart ready -> reconnected (s, max)':<58}{rs['restart_ready_to_reconnected_s_max']:>14.3f}",
        f"{'chatd SIGKILL -> reconnected (s, median; incl. restart)':<58}{rs['kill_to_reconnected_s_median']:>14.3f}",
    ]
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "transport.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "transport.txt").write_text(text + "\n")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--receiver":
        receiver_main(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
    else:
        main()
