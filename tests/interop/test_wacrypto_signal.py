"""wacrypto against real independent implementations (python-axolotl 0.2.3 from PyPI and the
official libsignal 0.23.1 Node binding from npm), in both directions, over the peer protocol."""

from __future__ import annotations

import random
from typing import Any

import pytest
from peerproc import DRIVERS, PeerFactory
from peerproc import PeerCallError, PeerProcess, axolotl_env, wacrypto_argv


def _start(spawn: PeerFactory, kind: str, name: str) -> PeerProcess:
    if kind == "wacrypto":
        p = spawn(wacrypto_argv(), name=f"wacrypto-{name}")
    else:
        p = spawn(DRIVERS[kind](), env=axolotl_env() if kind == "axolotl" else None, name=f"{kind}-{name}")
    p.call("new_identity", name=name)
    return p


def _send(p: PeerProcess, to: str, text: str) -> dict[str, Any]:
    r = p.call("encrypt", remote=to, remote_device=1, plaintext=text.encode().hex())
    r["text"] = text
    return r


def _recv(p: PeerProcess, frm: str, m: dict[str, Any]) -> str:
    r = p.call("decrypt", remote=frm, remote_device=1, type=m["type"], body=m["body"])
    return bytes.fromhex(r["plaintext"]).decode()


def _tamper(body_hex: str, pos: int) -> str:
    b = bytearray(bytes.fromhex(body_hex))
    b[pos % len(b)] ^= 0x01
    return b.hex()


def _conversation(a: PeerProcess, an: str, b: PeerProcess, bn: str, rnd: random.Random) -> None:
    """a already processed b's bundle. Out-of-order delivery across several ratchet steps."""
    first = [_send(a, bn, f"{an} hello {i}") for i in range(3)]
    assert {m["type"] for m in first} == {3}
    held_b: list[dict[str, Any]] = []
    held_a: list[dict[str, Any]] = []
    order = [2, 0]  # keep first[1] for later
    for i in order:
        assert _recv(b, an, first[i]) == first[i]["text"]
    held_b.append(first[1])
    for turn in range(4):
        replies = [_send(b, an, f"{bn} turn {turn} msg {i}") for i in range(3)]
        assert all(m["type"] == 2 for m in replies)
        held_a.append(replies.pop(rnd.randrange(3)))
        rnd.shuffle(replies)
        for m in replies:
            assert _recv(a, bn, m) == m["text"]
        msgs = [_send(a, bn, f"{an} turn {turn} msg {i}") for i in range(3)]
        held_b.append(msgs.pop(rnd.randrange(3)))
        rnd.shuffle(msgs)
        for m in msgs:
            assert _recv(b, an, m) == m["text"]
    # the held messages are from older chains (at most 4 steps back): still decrypt
    rnd.shuffle(held_a)
    rnd.shuffle(held_b)
    for m in held_a:
        assert _recv(a, bn, m) == m["text"]
    for m in held_b:
        assert _recv(b, an, m) == m["text"]
    # replay rejected on both sides, and the session goes on
    for recv, frm, m in ((a, bn, held_a[0]), (b, an, held_b[0])):
        with pytest.raises(PeerCallError) as ei:
            _recv(recv, frm, m)
        assert "Duplicate" in ei.value.name, ei.value.error
    # tampered bytes rejected, the next valid message still decrypts
    m = _send(a, bn, "after tamper")
    for pos in (len(bytes.fromhex(m["body"])) - 1, len(bytes.fromhex(m["body"])) // 2, 1):
        with pytest.raises(PeerCallError):
            b.call("decrypt", remote=an, remote_device=1, type=m["type"], body=_tamper(m["body"], pos))
    assert _recv(b, an, m) == "after tamper"
    r = _send(b, an, "still fine")
    assert _recv(a, bn, r) == "still fine"


@pytest.mark.parametrize("peer", sorted(DRIVERS))
@pytest.mark.parametrize("with_prekey", [True, False], ids=["with-otpk", "no-otpk"])
@pytest.mark.parametrize("we_initiate", [True, False], ids=["wacrypto-initiates", "peer-initiates"])
def test_session_interop(spawn: PeerFactory, peer: str, with_prekey: bool, we_initiate: bool) -> None:
    w = _start(spawn, "wacrypto", "walter")
    o = _start(spawn, peer, "olga")
    if we_initiate:
        a, an, b, bn = w, "walter", o, "olga"
    else:
        a, an, b, bn = o, "olga", w, "walter"
    bundle = b.call("bundle", with_prekey=with_prekey)
    assert ("prekey_id" in bundle) == with_prekey
    a.call("process_bundle", remote=bn, remote_device=1, bundle=bundle)
    assert a.call("has_session", remote=bn, remote_device=1)["has_session"] is True
    _conversation(a, an, b, bn, random.Random(hash((peer, with_prekey, we_initiate)) & 0xFFFF))


@pytest.mark.parametrize("peer", sorted(DRIVERS))
def test_forged_bundle_signature_rejected_by_wacrypto(spawn: PeerFactory, peer: str) -> None:
    w = _start(spawn, "wacrypto", "walter")
    o = _start(spawn, peer, "olga")
    bundle = o.call("bundle")
    bundle["signed_prekey_signature"] = _tamper(bundle["signed_prekey_signature"], 7)
    with pytest.raises(PeerCallError) as ei:
        w.call("process_bundle", remote="olga", remote_device=1, bundle=bundle)
    assert ei.value.name == "InvalidSignatureError"
    assert w.call("has_session", remote="olga", remote_device=1)["has_session"] is False


@pytest.mark.parametrize("peer", sorted(DRIVERS))
@pytest.mark.parametrize("direction", ["ours-to-theirs", "theirs-to-ours"])
def test_session_record_export_import(spawn: PeerFactory, peer: str, direction: str) -> None:
    """A session record written by one implementation continues the conversation in the other."""
    w = spawn(wacrypto_argv(), name="wacrypto-walter")
    wid = w.call("new_identity", name="walter")
    o = _start(spawn, peer, "olga")
    w.call("process_bundle", remote="olga", remote_device=1, bundle=o.call("bundle"))
    m = _send(w, "olga", "hi")
    assert _recv(o, "walter", m) == "hi"
    r = _send(o, "walter", "hello")
    assert _recv(w, "walter" if False else "olga", r) == "hello"
    held = _send(o, "walter", "sent before the move")  # a skipped key travels with the record
    r2 = _send(o, "walter", "after")
    assert _recv(w, "olga", r2) == "after"

    if direction == "ours-to-theirs":
        record = w.call("export_session", remote="olga", remote_device=1)["record"]
        oid_remote = o.call("bundle")["identity_key"]
        clone = spawn(DRIVERS[peer](), env=axolotl_env() if peer == "axolotl" else None, name=f"{peer}-clone")
        clone.call("new_identity", name="walter", identity_private=wid["identity_private"],
                   registration_id=wid["registration_id"])
        clone.call("import_session", remote="olga", remote_device=1, record=record, remote_identity=oid_remote)
        assert _recv(clone, "olga", held) == "sent before the move"
        x = _send(clone, "olga", "from the imported session")
        assert _recv(o, "walter", x) == "from the imported session"
        y = _send(o, "walter", "answer")
        assert _recv(clone, "olga", y) == "answer"
    else:
        # olga's record (written by the other implementation) moves into a fresh wacrypto peer
        record = o.call("export_session", remote="walter", remote_device=1)["record"]
        w2 = spawn(wacrypto_argv(), name="wacrypto-olga")
        w2.call("new_identity", name="olga")
        w2.call("import_session", remote="walter", remote_device=1, record=record,
                remote_identity=wid["identity_public"])
        x = _send(w, "olga", "to the imported session")
        assert _recv(w2, "walter", x) == "to the imported session"
        y = _send(w2, "walter", "from the imported session")
        assert _recv(w, "olga", y) == "from the imported session"


@pytest.mark.parametrize("peer", sorted(DRIVERS))
def test_primitives_agree(spawn: PeerFactory, peer: str) -> None:
    w = spawn(wacrypto_argv(), name="wacrypto")
    o = spawn(DRIVERS[peer](), env=axolotl_env() if peer == "axolotl" else None, name=peer)
    rnd = random.Random(5)
    for _ in range(5):
        priv = rnd.randbytes(32).hex()
        other = rnd.randbytes(32).hex()
        assert w.call("public_key", private=priv) == o.call("public_key", private=priv)
        pub_other = w.call("public_key", private=other)["public"]
        assert w.call("agree", private=priv, public=pub_other) == o.call("agree", private=priv, public=pub_other)
        msg = rnd.randbytes(rnd.randrange(0, 100)).hex()
        pub = w.call("public_key", private=priv)["public"]
        s_ours = w.call("sign", private=priv, message=msg)["signature"]
        s_theirs = o.call("sign", private=priv, message=msg)["signature"]
        assert o.call("verify", public=pub, message=msg, signature=s_ours)["valid"] is True
        assert w.call("verify", public=pub, message=msg, signature=s_theirs)["valid"] is True
        bad = _tamper(s_ours, 3)
        assert o.call("verify", public=pub, message=msg, signature=bad)["valid"] is False
        assert w.call("verify", public=pub, message=msg, signature=_tamper(s_theirs, 40))["valid"] is False
