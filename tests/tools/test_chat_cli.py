"""`wacrypto chatd init|run` and `wacrypto connect` as an operator would run them (subprocesses)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import trio

from wacrypto.chat.client import ChatClientConfig, open_chat_client
from wacrypto.chat.envelope import Envelope
from wacrypto.chatd.server import load_trust_file
from wacrypto.primitives.keys import KeyPair
from wacrypto.testing.chatd_process import ChatdProcess, cli_env, free_port, wacrypto_cmd
from wacrypto.transport.chat_connection import AckReceived, KeepaliveSettings


def connect(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(wacrypto_cmd("connect", *args), capture_output=True, text=True, env=cli_env(), timeout=timeout)


def test_init_prints_the_root_key_and_refuses_to_overwrite(tmp_path: Path) -> None:
    out = subprocess.run(wacrypto_cmd("chatd", "init", "--dir", str(tmp_path)), capture_output=True, text=True, env=cli_env(), timeout=30)
    assert out.returncode == 0
    info = json.loads(out.stdout)
    assert (tmp_path / "root.pub").read_text().strip() == info["root_public_key"]
    assert oct((tmp_path / "root.key").stat().st_mode & 0o777) == "0o600"
    again = subprocess.run(wacrypto_cmd("chatd", "init", "--dir", str(tmp_path)), capture_output=True, text=True, env=cli_env(), timeout=30)
    assert again.returncode != 0 and "already holds" in again.stderr


def test_connect_falls_back_pings_and_exits_zero(keydir: Path) -> None:
    refused, live = free_port(), free_port()
    server = ChatdProcess(keydir, [refused, live], "--refuse-port", str(refused))
    server.start()
    try:
        out = connect("--host", "127.0.0.1", "--ports", f"{refused},{live}", "--trust", str(keydir / "root.pub"),
                      "--pings", "3", "--ping-every", "0.05")
    finally:
        server.stop()
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds.count("pong") == 3 and all(e["rtt_ms"] >= 0 for e in events if e["event"] == "pong")
    failed = [e for e in events if e["event"] == "port_failed"]
    assert failed[0]["port"] == refused and "refused" in failed[0]["reason"].lower()
    connected = [e for e in events if e["event"] == "state" and e["state"] == "connected"]
    assert connected[0]["port"] == live


def test_connect_with_the_wrong_trust_root_fails_closed(keydir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    subprocess.run(wacrypto_cmd("chatd", "init", "--dir", str(other)), capture_output=True, env=cli_env(), timeout=30, check=True)
    port = free_port()
    server = ChatdProcess(keydir, [port])
    server.start()
    try:
        out = connect("--host", "127.0.0.1", "--ports", str(port), "--trust", str(other / "root.pub"), "--pings", "1")
    finally:
        server.stop()
    assert out.returncode != 0
    assert "CertificateError" in out.stderr and "trusted root" in out.stderr


def test_connect_to_nothing_exits_non_zero_with_a_clear_error(keydir: Path) -> None:
    p1, p2 = free_port(), free_port()
    out = connect("--host", "127.0.0.1", "--ports", f"{p1},{p2}", "--trust", str(keydir / "root.pub"), "--attempts", "1")
    assert out.returncode == 1
    assert "could not connect" in out.stderr and str(p1) in out.stderr and str(p2) in out.stderr


def test_bad_trust_file_is_a_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "trust"
    bad.write_text("not hex")
    out = connect("--host", "127.0.0.1", "--ports", "1", "--trust", str(bad))
    assert out.returncode == 2 and "hex" in out.stderr


async def test_chatd_run_applies_its_mailbox_limits(keydir: Path) -> None:
    """`chatd run --mailbox-sender-limit 2`: a third envelope from one client to one recipient is
    left unacknowledged (its sender keeps it); the server's acks come in order, so the ack of a
    later raw message shows the third was refused, not slow."""
    port = free_port()
    server = ChatdProcess(keydir, [port], "--mailbox-sender-limit", "2")
    server.start()
    acks: list[str] = []
    try:
        config = ChatClientConfig(host="127.0.0.1", trusted_root=load_trust_file(keydir / "root.pub"),
                                  static_key=KeyPair.generate(), ports=(port,), keepalive=KeepaliveSettings(interval=0))
        async with open_chat_client(config) as client:
            await client.wait_connected()
            for i in range(3):
                await client.send_message(Envelope(b"\x01" * 32, 2, b"body %d" % i).to_bytes(), id=f"m{i}")
            await client.send_message(b"not an envelope", id="probe")
            with trio.fail_after(30):
                async for ev in client.events():
                    if isinstance(ev, AckReceived):
                        acks.append(ev.id)
                        if ev.id == "probe":
                            break
    finally:
        server.stop()
    assert acks == ["m0", "m1", "probe"]
