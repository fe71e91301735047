"""Our recorded known-answer transcript is decrypted by the independent implementations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from peerproc import DRIVERS, PeerFactory
from peerproc import axolotl_env

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "session_v3.json"


@pytest.mark.parametrize("peer", sorted(DRIVERS))
def test_peer_decrypts_recorded_transcript(spawn: PeerFactory, peer: str) -> None:
    v = json.loads(VECTORS.read_text())
    b = v["bob"]
    p = spawn(DRIVERS[peer](), env=axolotl_env() if peer == "axolotl" else None, name=peer)
    got = p.call("new_identity", name="bob", registration_id=b["registration_id"],
                 identity_private=b["identity_private"], signed_prekey_id=b["signed_prekey_id"],
                 signed_prekey_private=b["signed_prekey_private"],
                 signed_prekey_signature=b["signed_prekey_signature"],
                 prekey_id=b["prekey_id"], prekey_private=b["prekey_private"])
    assert got["identity_public"] == b["identity_public"]
    for m in v["messages"][::-1]:  # out of order on purpose
        r = p.call("decrypt", remote="alice", remote_device=1, type=m["type"], body=m["body"])
        assert r["plaintext"] == m["plaintext"]
