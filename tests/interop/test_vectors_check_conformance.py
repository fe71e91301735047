"""`wacrypto conformance --peer` against python-axolotl and libsignal 0.23.1 (and `wacrypto peer`):
which adversarial inputs cost each peer its state. Pinned finding: both independent libraries save the
sender's identity key from a PreKeySignalMessage before its MAC is checked, so with a store that does
not roll back (the drivers' in-memory stores) one tampered copy whose identity key is altered makes
every genuine message of that sender fail with UntrustedIdentityError. wacrypto loses nothing."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest
from peerproc import axolotl_argv, libsignal_argv, wacrypto_argv

from wacrypto.tools.conformance import run_conformance
from wacrypto.tools.vectors import build_all
from wacrypto.wire.messages import PreKeySignalMessage

PEERS = {"wacrypto": wacrypto_argv, "axolotl": axolotl_argv, "libsignal": libsignal_argv}


@pytest.fixture(scope="module")
def suite() -> dict[str, dict[str, object]]:
    return build_all(families=("x3dh", "invalid_messages", "sender_keys"))


def _identity_key_bytes(suite: dict[str, dict[str, object]]) -> set[int]:
    """Offsets of the identity key's 32 curve bytes in the swept PreKeySignalMessage."""
    data = suite["invalid_messages"]
    group = next(g for g in data["testGroups"] if g["type"] == "InvalidPreKeySignalMessage")  # type: ignore[attr-defined]
    body = bytes.fromhex(group["tests"][0]["steps"][-1]["body"])
    pm = PreKeySignalMessage.from_bytes(body)
    at = body.find(pm.identity_key)
    return set(range(at + 1, at + 33))


@pytest.mark.parametrize("peer", sorted(PEERS))
def test_state_safety_per_peer(suite: dict[str, dict[str, object]], peer: str) -> None:
    rows = {r.category: r for r in run_conformance(suite, PEERS[peer]())}  # type: ignore[arg-type]
    lost = {c: r.lost_labels for c, r in rows.items() if r.lost}
    print(peer, {c: (r.inputs, r.rejected, r.kept, r.lost, r.accepted, r.unsupported) for c, r in rows.items()})
    if peer == "wacrypto":
        assert not lost
        return
    assert set(lost) == {"sweep/PreKeySignalMessage"}, lost
    offsets = {int(m.group(1)) for label in lost["sweep/PreKeySignalMessage"]
               if (m := re.search(r"byte (\d+) of", label)) and "UntrustedIdentityError" in label}
    assert offsets == _identity_key_bytes(suite) and len(lost["sweep/PreKeySignalMessage"]) == 32
    # every other class of bad input leaves both libraries' state intact
    assert all(r.kept == r.rejected for c, r in rows.items() if c != "sweep/PreKeySignalMessage")
    if peer == "libsignal":  # its Node binding cannot take WhatsApp-format sender keys
        assert rows["sweep/SenderKeyMessage"].unsupported == rows["sweep/SenderKeyMessage"].inputs


def test_cli_exits_1_when_a_peer_loses_state() -> None:
    cmd = [sys.executable, "-m", "wacrypto", "conformance", "-v", "--peer", shlex.join(axolotl_argv())]
    out = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "STATE LOST sweep/PreKeySignalMessage: PreKeySignalMessage byte" in out.stdout
