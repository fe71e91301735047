"""The `wacrypto peer` group_* and fingerprint commands, in process and through the real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from wacrypto.errors import InvalidArgumentError, InvalidSignatureError, NoSenderKeyError, DuplicateMessageError
from wacrypto.tools.peer import COMMANDS, Peer, _load_extensions

_load_extensions()
VEC = json.loads((Path(__file__).parents[1] / "vectors" / "fingerprint_libsignal.json").read_text())


async def new_peer(name: str, device: int = 1) -> Peer:
    p = Peer()
    await p.handle({"cmd": "new_identity", "name": name, "device_id": device})
    return p


async def test_commands_registered() -> None:
    for c in ("group_create", "group_process", "group_encrypt", "group_decrypt", "fingerprint"):
        assert c in COMMANDS
    info = await Peer().handle({"cmd": "info"})
    assert "group" in info["capabilities"] and "fingerprint" in info["capabilities"]


async def test_group_flow_between_two_peers() -> None:
    alice, bob = await new_peer("alice", 3), await new_peer("bob")
    d = await alice.handle({"cmd": "group_create", "group_id": "g1"})
    assert d == await alice.handle({"cmd": "group_create", "group_id": "g1"})
    await bob.handle({"cmd": "group_process", "group_id": "g1", "sender": "alice", "sender_device": 3, **d})
    m = await alice.handle({"cmd": "group_encrypt", "group_id": "g1", "plaintext": b"hi".hex()})
    assert m["type"] == 7
    req = {"cmd": "group_decrypt", "group_id": "g1", "sender": "alice", "sender_device": 3, "body": m["body"]}
    assert await bob.handle(req) == {"plaintext": b"hi".hex()}
    with pytest.raises(DuplicateMessageError):
        await bob.handle(req)
    bad = bytearray(bytes.fromhex(m["body"]))
    bad[-1] ^= 1
    with pytest.raises(InvalidSignatureError):
        await bob.handle({**req, "body": bad.hex()})
    with pytest.raises(NoSenderKeyError):
        await bob.handle({**req, "sender_device": 1})
    with pytest.raises(NoSenderKeyError):
        await bob.handle({"cmd": "group_encrypt", "group_id": "g1", "plaintext": "00"})
    # new_identity resets state, including the sender keys
    await bob.handle({"cmd": "new_identity", "name": "bob"})
    with pytest.raises(NoSenderKeyError):
        await bob.handle(req)


async def test_fingerprint_command_vector() -> None:
    p = Peer()
    r = await p.handle(
        {
            "cmd": "fingerprint",
            "local_id": VEC["alice_stable_id"],
            "local_identity": VEC["alice_identity"],
            "remote_id": VEC["bob_stable_id"],
            "remote_identity": VEC["bob_identity"],
        }
    )
    assert r == {"display": VEC["display"], "scannable": VEC["alice_scannable"]}
    with pytest.raises(InvalidArgumentError):
        await p.handle({"cmd": "fingerprint", "local_id": 1, "local_identity": "05", "remote_id": "x", "remote_identity": "05"})


def test_subprocess_peer_speaks_group_commands() -> None:
    """The real `python -m wacrypto peer` process (JSON lines), as interop harnesses drive it."""
    reqs: list[dict[str, Any]] = [
        {"id": 1, "cmd": "new_identity", "name": "alice"},
        {"id": 2, "cmd": "group_create", "group_id": "g"},
        {"id": 3, "cmd": "group_encrypt", "group_id": "g", "plaintext": "6869"},
        {"id": 4, "cmd": "group_decrypt", "group_id": "g", "sender": "zed", "body": "33"},
        {"id": 5, "cmd": "fingerprint", "local_id": VEC["bob_stable_id"], "local_identity": VEC["bob_identity"],
         "remote_id": VEC["alice_stable_id"], "remote_identity": VEC["alice_identity"], "iterations": 5200},
    ]
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-m", "wacrypto", "peer"],
        input="".join(json.dumps(r) + "\n" for r in reqs),
        capture_output=True, text=True, timeout=60, cwd=root,
    )
    assert proc.returncode == 0, proc.stderr
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [o["id"] for o in out] == [1, 2, 3, 4, 5]
    assert all(o["ok"] for o in out[:3]) and out[2]["result"]["type"] == 7
    assert not out[3]["ok"] and out[3]["error"].startswith("InvalidMessageError")
    assert out[4]["result"] == {"display": VEC["display"], "scannable": VEC["bob_scannable"]}
