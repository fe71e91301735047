"""libsignal-node (npm `libsignal` 6.0.0, the pure-JavaScript libsignal Baileys uses) through
``drivers/libsignal_node_peer.js``: the vector suite (`wacrypto vectors check --peer`), state safety
(`wacrypto conformance --peer`) and sessions with wacrypto in both directions.

Pinned findings (libsignal-node's own behaviour; the driver passes inputs through unchanged):
  * SessionBuilder.initOutgoing does not check the signed-prekey signature of a bundle: every
    BadBundleSignature vector is accepted.
  * At a ratchet step it derives every skipped key of the sender's previous chain up to the
    message's previous-counter field, within its 2000-message limit: a sender who sent more than
    2000 messages on a chain that were not delivered gets every message of her next chain refused
    (TooFarAheadError), the session is stuck. wacrypto and libsignal accept them.
  * Its MAC covers a constant version byte 0x33 and its version check takes any high nibble from 3
    up and any low nibble up to 3: a SignalMessage or PreKeySignalMessage with version byte 0x43
    (or 0x32) decrypts.
  * It hands the store the identity key of a PreKeySignalMessage before anything in the message is
    checked, key type byte included; its store interface has no saveIdentity, so trust on first use
    is recorded there: one tampered first message (any of the key's 33 bytes) makes every genuine
    message of that sender fail with UntrustedIdentityError.
"""

from __future__ import annotations

import json
import random
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from peerproc import PeerCallError, PeerFactory, PeerProcess, libsignal_node_argv, wacrypto_argv
from test_wacrypto_signal import _conversation

from wacrypto.tools.conformance import run_conformance
from wacrypto.tools.vectors import build_all, generate
from wacrypto.wire.messages import PreKeySignalMessage

IDENTITY_KEYS = ("name", "device_id", "registration_id", "identity_private", "signed_prekey_id",
                 "signed_prekey_private", "signed_prekey_signature", "prekey_id", "prekey_private")
UNSUPPORTED = {"sender_keys", "fingerprint",  # the package has neither (see the driver's header)
               "media", "noise", "binary"}  # not in the peer protocol


def _expected_failure(family: str, tc: dict[str, Any]) -> str | None:
    """Why libsignal-node fails this case (the start of `vectors check`'s detail), or None."""
    if family == "x3dh" and "BadBundleSignature" in tc["flags"]:
        return "bundle accepted"  # the signature is never checked
    if family == "ratchet" and tc["comment"].startswith("after bob's second reply"):
        # alice sent 2600 messages on her second chain, 3 delivered: previous counter 2599
        return "step 1: rejected (TooFarAheadError)"
    if family == "invalid_messages" and "BadVersion" in tc["flags"] and "0x43" in tc["comment"]:
        return "step "  # "step N: accepted, expected a rejection": version byte 0x43 decrypts
    return None


def test_vector_suite(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    generate(suite)
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "wacrypto", "vectors", "check", "-v", "--json", str(report),
           "--peer", shlex.join(libsignal_node_argv()), str(suite)]
    out = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)
    print(out.stdout)
    assert out.returncode == 1, out.stdout + out.stderr  # it fails the cases below
    rows = {r["family"]: r for r in json.loads(report.read_text())["families"]}
    cases = {json.loads(p.read_text())["family"]: json.loads(p.read_text())
             for p in suite.glob("*.json") if p.name != "schema.json"}
    assert set(rows) == set(cases)
    for fam, row in rows.items():
        if fam in UNSUPPORTED:
            assert (row["pass"], row["fail"], row["unsupported"]) == (0, 0, row["cases"]), row
            continue
        expected = {tc["tcId"]: why for g in cases[fam]["testGroups"] for tc in g["tests"]
                    if (why := _expected_failure(fam, tc)) is not None}
        got = {f["tcId"]: f["detail"] for f in row["failures"]}
        assert set(got) == set(expected), (fam, got)
        assert all(got[t].startswith(expected[t]) for t in got), (fam, got)
        assert (row["pass"], row["unsupported"]) == (row["cases"] - len(expected), 0), row
    # Today: xeddsa 27/27, x3dh 15/20, ratchet 12/13, invalid_messages 38/40.
    assert [len(rows[f]["failures"]) for f in ("xeddsa", "x3dh", "ratchet", "invalid_messages")] == [0, 5, 1, 2]


def _identity_key_at(suite: dict[str, dict[str, Any]]) -> int:
    group = next(g for g in suite["invalid_messages"]["testGroups"] if g["type"] == "InvalidPreKeySignalMessage")
    body = bytes.fromhex(group["tests"][0]["steps"][-1]["body"])
    return body.find(PreKeySignalMessage.from_bytes(body).identity_key)


def test_state_safety() -> None:
    suite = build_all(families=("x3dh", "invalid_messages", "sender_keys"))
    rows = {r.category: r for r in run_conformance(suite, libsignal_node_argv())}
    print({c: (r.inputs, r.rejected, r.kept, r.lost, r.accepted, r.unsupported) for c, r in rows.items()})
    lost = {c: r.lost_labels for c, r in rows.items() if r.lost}
    assert set(lost) == {"sweep/PreKeySignalMessage", "invalid_messages/BadKeyType"}, lost
    # the identity key of a first PreKeySignalMessage: its type byte and its 32 curve bytes
    at = _identity_key_at(suite)
    sweep = lost["sweep/PreKeySignalMessage"]
    assert all("UntrustedIdentityError" in label for label in sweep)
    assert {int(label.split()[2]) for label in sweep} == set(range(at, at + 33)) and len(sweep) == 33
    (bad_type,) = lost["invalid_messages/BadKeyType"]
    assert "identity key type byte 0x06" in bad_type and "UntrustedIdentityError" in bad_type
    # accepted: version byte 0x43 (both message types), 0x32 on a SignalMessage; in a
    # PreKeySignalMessage the outer and inner low version nibble, the registration id (2 bytes) and
    # the wire-type bit of 6 field tags (its protobuf decoder does not check wire types)
    assert rows["invalid_messages/BadVersion"].accepted == 2
    assert rows["sweep/SignalMessage"].accepted == 1
    assert rows["sweep/PreKeySignalMessage"].accepted == 10
    for c, r in rows.items():
        if c.startswith("sender_keys/") or c == "sweep/SenderKeyMessage":
            assert r.unsupported == r.inputs, (c, r)  # no sender keys
        else:
            assert r.unsupported == 0 and r.rejected + r.accepted == r.inputs, (c, r)
            if c not in lost:
                assert r.kept == r.rejected, (c, r)


# --------------------------------------------------------------------------- sessions
def _peer(spawn: PeerFactory, kind: str, name: str, **identity: Any) -> PeerProcess:
    p = spawn(libsignal_node_argv() if kind == "libsignal-node" else wacrypto_argv(), name=f"{kind}-{name}")
    p.ident = p.call("new_identity", name=name, **identity)  # type: ignore[attr-defined]
    return p


def _send(p: PeerProcess, to: str, text: str) -> dict[str, Any]:
    return p.call("encrypt", remote=to, remote_device=1, plaintext=text.encode().hex())


def _recv(p: PeerProcess, frm: str, m: dict[str, Any]) -> str:
    return bytes.fromhex(p.call("decrypt", remote=frm, remote_device=1, type=m["type"], body=m["body"])["plaintext"]).decode()


@pytest.mark.parametrize("we_initiate,with_prekey", [(True, True), (False, False)],
                         ids=["wacrypto-initiates-with-otpk", "libsignal-node-initiates-no-otpk"])
def test_session_with_wacrypto(spawn: PeerFactory, we_initiate: bool, with_prekey: bool) -> None:
    a_kind, b_kind = ("wacrypto", "libsignal-node") if we_initiate else ("libsignal-node", "wacrypto")
    a, b = _peer(spawn, a_kind, "alice"), _peer(spawn, b_kind, "bob")
    a.call("process_bundle", remote="bob", remote_device=1, bundle=b.call("bundle", with_prekey=with_prekey))
    _conversation(a, "alice", b, "bob", random.Random(7))


def _move(spawn: PeerFactory, p: dict[str, PeerProcess], who: str, kind: str) -> PeerProcess:
    """``who``'s session record, exported, goes into a new peer of ``kind`` with the same keys."""
    other = "bob" if who == "alice" else "alice"
    record = p[who].call("export_session", remote=other, remote_device=1)["record"]
    moved = _peer(spawn, kind, who, **{k: p[who].ident[k] for k in IDENTITY_KEYS if k != "name"})  # type: ignore[attr-defined]
    moved.call("import_session", remote=other, remote_device=1, record=record)
    assert moved.call("has_session", remote=other, remote_device=1) == {"has_session": True}
    p[who] = moved
    return moved


@pytest.mark.parametrize("state", ["acknowledged", "pending-prekey"])
@pytest.mark.parametrize("src,dst", [("libsignal-node", "wacrypto"), ("wacrypto", "libsignal-node")])
def test_session_records_move(spawn: PeerFactory, src: str, dst: str, state: str) -> None:
    """Session records (skipped keys in them) move to the other implementation mid-conversation:
    bob's, then alice's (acknowledged); alice's before bob has answered (pending-prekey)."""
    p = {"alice": _peer(spawn, src, "alice"), "bob": _peer(spawn, src if state == "acknowledged" else dst, "bob")}
    p["alice"].call("process_bundle", remote="bob", remote_device=1, bundle=p["bob"].call("bundle"))
    a = [_send(p["alice"], "bob", f"a{i}") for i in range(4)]
    if state == "pending-prekey":
        _move(spawn, p, "alice", dst)
        assert _send(p["alice"], "bob", "a4")["type"] == 3  # still unacknowledged
        assert [_recv(p["bob"], "alice", m) for m in (a[1], a[3])] == ["a1", "a3"]
    else:
        assert [_recv(p["bob"], "alice", m) for m in (a[0], a[2])] == ["a0", "a2"]
        assert [_recv(_move(spawn, p, "bob", dst), "alice", m) for m in (a[1], a[3])] == ["a1", "a3"]
        b = [_send(p["bob"], "alice", f"b{i}") for i in range(3)]
        assert _recv(p["alice"], "bob", b[1]) == "b1"
        assert [_recv(_move(spawn, p, "alice", dst), "bob", m) for m in (b[0], b[2])] == ["b0", "b2"]
    for i in range(3):
        assert _recv(p["bob"], "alice", _send(p["alice"], "bob", f"x{i}")) == f"x{i}"
        assert _recv(p["alice"], "bob", _send(p["bob"], "alice", f"y{i}")) == f"y{i}"


def test_more_than_2000_undelivered_messages_before_a_ratchet_step(spawn: PeerFactory) -> None:
    """libsignal-node on both sides (no record conversion involved). The same situation in the
    vector suite (ratchet: "after bob's second reply ...") decrypts in wacrypto and libsignal."""
    alice, bob = _peer(spawn, "libsignal-node", "alice"), _peer(spawn, "libsignal-node", "bob")
    alice.call("process_bundle", remote="bob", remote_device=1, bundle=bob.call("bundle"))
    assert _recv(bob, "alice", _send(alice, "bob", "a0")) == "a0"
    assert _recv(alice, "bob", _send(bob, "alice", "b0")) == "b0"
    chain = [_send(alice, "bob", f"c{i}") for i in range(2002)]  # alice's second chain, 1 delivered
    assert _recv(bob, "alice", chain[0]) == "c0"
    assert _recv(alice, "bob", _send(bob, "alice", "b1")) == "b1"
    for m in [_send(alice, "bob", f"d{i}") for i in range(2)]:  # her third chain: previous counter 2001
        with pytest.raises(PeerCallError) as ei:  # every message of it, not just the first: stuck
            _recv(bob, "alice", m)
        assert ei.value.name == "TooFarAheadError", ei.value.error
    assert _recv(bob, "alice", chain[1]) == "c1"  # the old chain still works


def test_driver_protocol(spawn: PeerFactory) -> None:
    p = spawn(libsignal_node_argv(), name="libsignal-node")
    info = p.call("info")
    assert info["implementation"] == "libsignal-node" and info["version"] == "6.0.0"
    assert info["capabilities"] == ["session", "primitives", "export_import"]
    with pytest.raises(PeerCallError, match="call new_identity first"):
        p.call("bundle")
    assert p.raw("not json")["error"].startswith("InvalidArgumentError: JSONDecodeError")
    assert p.raw("[1]")["error"].startswith("InvalidMessageError")
    assert p.raw('{"cmd": "constructor"}')["error"].startswith("UnsupportedError: unknown command")
    unsupported: list[tuple[str, dict[str, Any]]] = [
        ("group_create", {"group_id": "g"}), ("group_encrypt", {"group_id": "g", "plaintext": "00"}), ("fingerprint", {})]
    for cmd, fields in unsupported:
        with pytest.raises(PeerCallError) as ei:
            p.call(cmd, **fields)
        assert ei.value.name == "UnsupportedError"
    ident = p.call("new_identity", name="bob")
    with pytest.raises(PeerCallError) as ei:
        p.call("new_identity", identity_private=ident["identity_private"],
               signed_prekey_private=ident["signed_prekey_private"], signed_prekey_signature="00" * 64)
    assert ei.value.name == "InvalidArgumentError"
    with pytest.raises(PeerCallError) as ei:
        p.call("encrypt", remote="nobody", plaintext="00")
    assert ei.value.name == "NoSessionError"


def test_primitives_agree_with_wacrypto(spawn: PeerFactory) -> None:
    lsn, wa = spawn(libsignal_node_argv(), name="libsignal-node"), spawn(wacrypto_argv(), name="wacrypto")
    rnd = random.Random(3)
    privs = [bytes(rnd.getrandbits(8) for _ in range(32)).hex() for _ in range(2)]
    pubs = [wa.call("public_key", private=k)["public"] for k in privs]
    assert [lsn.call("public_key", private=k)["public"] for k in privs] == pubs
    shared = wa.call("agree", private=privs[0], public=pubs[1])["shared"]
    assert lsn.call("agree", private=privs[0], public=pubs[1])["shared"] == shared
    assert lsn.call("agree", private=privs[1], public=pubs[0])["shared"] == shared
    msg = b"signed by libsignal-node".hex()
    sig = lsn.call("sign", private=privs[0], message=msg)["signature"]
    assert wa.call("verify", public=pubs[0], message=msg, signature=sig) == {"valid": True}
    sig = wa.call("sign", private=privs[1], message=msg)["signature"]
    assert lsn.call("verify", public=pubs[1], message=msg, signature=sig) == {"valid": True}
    assert lsn.call("verify", public=pubs[0], message=msg, signature=sig) == {"valid": False}
    with pytest.raises(PeerCallError) as ei:
        lsn.call("agree", private=privs[0], public="05" + "00" * 32)
    assert ei.value.name == "InvalidKeyError"
