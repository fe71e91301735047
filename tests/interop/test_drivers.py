"""Prove the third-party peer drivers by pairing them with each other.

python-axolotl 0.2.3 (``drivers/axolotl_peer.py``) <-> official libsignal 0.23.1 through its Node
binding (``drivers/libsignal_peer.js``), both directions; axolotl <-> axolotl for WhatsApp-format
sender keys (libsignal's group API is Signal's newer format, unsupported by its driver).
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from peerproc import DRIVERS, PeerFactory
from peerproc import PeerCallError, PeerProcess

PAIRS = [("axolotl", "libsignal"), ("libsignal", "axolotl")]
PAIR_IDS = ["axolotl->libsignal", "libsignal->axolotl"]
KINDS = ["axolotl", "libsignal"]

# Every error a peer may give for garbage, forged or tampered bytes.
PEER_GARBAGE = {"DecryptionError", "InvalidMessageError", "InvalidKeyError", "LegacyMessageError",
                "InvalidSignatureError"}


# --------------------------------------------------------------------------- helpers
def start(spawn: PeerFactory, kind: str, name: str, **identity: Any) -> PeerProcess:
    p = spawn(DRIVERS[kind](), name=f"{kind}:{name}")
    ident = p.call("new_identity", name=name, **identity)
    p.ident = ident  # type: ignore[attr-defined]
    p.kind = kind  # type: ignore[attr-defined]
    p.user = name  # type: ignore[attr-defined]
    return p


def enc(sender: PeerProcess, to: PeerProcess, text: str) -> dict[str, Any]:
    return sender.call("encrypt", remote=to.user, remote_device=1, plaintext=text.encode().hex())  # type: ignore[attr-defined]


def dec(receiver: PeerProcess, frm: PeerProcess, msg: dict[str, Any]) -> str:
    res = receiver.call("decrypt", remote=frm.user, remote_device=1, type=msg["type"], body=msg["body"])  # type: ignore[attr-defined]
    return bytes.fromhex(res["plaintext"]).decode()


def expect_error(fn: Callable[[], Any], *names: str) -> PeerCallError:
    with pytest.raises(PeerCallError) as ei:
        fn()
    assert ei.value.name in names, f"expected one of {names}, got {ei.value.error!r}"
    return ei.value


def top_level_fields(buf: bytes) -> list[int]:
    """Field numbers of a protobuf message, top level only (our own tiny reader)."""
    return [f for f, _, _ in field_spans(buf)]


def field_spans(buf: bytes) -> list[tuple[int, int, int]]:
    """(field number, start, end) of each top-level field's value (length-delimited: the payload)."""
    out: list[tuple[int, int, int]] = []
    i = 0

    def varint() -> int:
        nonlocal i
        shift = val = 0
        while True:
            b = buf[i]
            i += 1
            val |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return val

    while i < len(buf):
        key = varint()
        field, wt = key >> 3, key & 7
        start = i
        if wt == 0:
            varint()
        elif wt == 2:
            length = varint()  # (not "i += varint()": that would read i before the call moves it)
            start = i
            i += length
        elif wt == 1:
            i += 8
        elif wt == 5:
            i += 4
        else:
            raise ValueError(f"wire type {wt}")
        out.append((field, start, i))
    return out


def establish(alice: PeerProcess, bob: PeerProcess, with_prekey: bool = True) -> None:
    """alice processes bob's bundle, sends a PreKey message, bob answers."""
    bundle = bob.call("bundle", with_prekey=with_prekey)
    assert ("prekey" in bundle) == with_prekey
    alice.call("process_bundle", remote=bob.user, remote_device=1, bundle=bundle)  # type: ignore[attr-defined]
    m = enc(alice, bob, "hello")
    assert m["type"] == 3
    assert dec(bob, alice, m) == "hello"
    r = enc(bob, alice, "welcome")
    assert r["type"] == 2
    assert dec(alice, bob, r) == "welcome"


def flip(hexbody: str, index: int, mask: int = 0x01) -> str:
    b = bytearray.fromhex(hexbody)
    b[index] ^= mask
    return b.hex()


# --------------------------------------------------------------------------- basics
@pytest.mark.parametrize("kind", KINDS)
def test_info_and_robustness(spawn: PeerFactory, kind: str) -> None:
    p = start(spawn, kind, "alice")
    info = p.call("info")
    assert info["version"] == {"axolotl": "0.2.3", "libsignal": "0.23.1"}[kind]
    assert "session" in info["capabilities"] and "primitives" in info["capabilities"]
    assert ("group" in info["capabilities"]) == (kind == "axolotl")

    resp = p.raw("this is not json")
    assert resp["ok"] is False and resp["error"].startswith("InvalidArgumentError")
    expect_error(lambda: p.call("no_such_command"), "UnsupportedError")
    expect_error(lambda: p.call("encrypt", remote="nobody", plaintext="00"), "NoSessionError")
    expect_error(lambda: p.call("decrypt", remote="nobody", type=2, body="33" + "00" * 40), *PEER_GARBAGE,
                 "NoSessionError")
    expect_error(lambda: p.call("decrypt", remote="nobody", type=3, body="33ffff"), *PEER_GARBAGE)
    expect_error(lambda: p.call("export_session", remote="nobody"), "NoSessionError")
    assert p.call("has_session", remote="nobody") == {"has_session": False}
    # a bundle whose signed-prekey signature is forged
    other = start(spawn, kind, "bob")
    bundle = other.call("bundle")
    bundle["signed_prekey_signature"] = flip(bundle["signed_prekey_signature"], 5)
    expect_error(lambda: p.call("process_bundle", remote="bob", bundle=bundle), "InvalidSignatureError")
    assert p.call("has_session", remote="bob") == {"has_session": False}
    # still alive, ids echoed
    assert p.request({"cmd": "info", "id": "x-1"})["id"] == "x-1"


def test_libsignal_has_no_whatsapp_groups(spawn: PeerFactory) -> None:
    p = start(spawn, "libsignal", "alice")
    for cmd in ("group_create", "group_process", "group_encrypt", "group_decrypt"):
        expect_error(lambda: p.call(cmd, group_id="g"), "UnsupportedError")


# --------------------------------------------------------------------------- sessions
@pytest.mark.parametrize("with_prekey", [True, False], ids=["with-otpk", "no-otpk"])
@pytest.mark.parametrize("init_kind,resp_kind", PAIRS, ids=PAIR_IDS)
def test_session_from_bundle(spawn: PeerFactory, init_kind: str, resp_kind: str, with_prekey: bool) -> None:
    alice = start(spawn, init_kind, "alice")
    bob = start(spawn, resp_kind, "bob")
    bundle = bob.call("bundle", with_prekey=with_prekey)
    assert bundle["identity_key"] == bob.ident["identity_public"]  # type: ignore[attr-defined]
    alice.call("process_bundle", remote="bob", remote_device=1, bundle=bundle)
    assert alice.call("has_session", remote="bob")["has_session"] is True
    assert bob.call("has_session", remote="alice")["has_session"] is False

    # two PreKey messages before any answer, delivered in reverse order
    p1, p2 = enc(alice, bob, "first"), enc(alice, bob, "second")
    for m in (p1, p2):
        assert m["type"] == 3
        body = bytes.fromhex(m["body"])
        assert body[0] == 0x33, f"{init_kind} emits version byte {body[0]:#x}"
        fields = top_level_fields(body[1:])
        assert (1 in fields) == with_prekey, f"pre_key_id presence wrong: fields {fields}"
        assert {2, 3, 4, 5, 6} <= set(fields)
        inner = body[1:]
    assert dec(bob, alice, p2) == "second"
    assert dec(bob, alice, p1) == "first"
    assert bob.call("has_session", remote="alice")["has_session"] is True

    # the late PreKey message is a duplicate now
    expect_error(lambda: dec(bob, alice, p1), "DuplicateMessageError")

    r = enc(bob, alice, "reply")
    assert r["type"] == 2 and bytes.fromhex(r["body"])[0] == 0x33, f"{resp_kind} emits {r['body'][:2]}"
    assert dec(alice, bob, r) == "reply"
    m3 = enc(alice, bob, "now a normal message")
    assert m3["type"] == 2, "initiator must stop sending PreKey messages once the peer answered"
    assert dec(bob, alice, m3) == "now a normal message"
    del inner

    if with_prekey:
        # the one-time prekey was used up: the next bundle offers another one
        assert bob.call("bundle")["prekey_id"] != bundle["prekey_id"]


@pytest.mark.parametrize("init_kind,resp_kind", PAIRS, ids=PAIR_IDS)
def test_out_of_order_across_ratchet_steps(spawn: PeerFactory, init_kind: str, resp_kind: str) -> None:
    alice = start(spawn, init_kind, "alice")
    bob = start(spawn, resp_kind, "bob")
    establish(alice, bob)

    a1 = [enc(alice, bob, f"a1-{i}") for i in range(4)]  # alice's chain 1
    assert dec(bob, alice, a1[3]) == "a1-3"  # skips 0..2
    b1 = [enc(bob, alice, f"b1-{i}") for i in range(3)]  # bob: DH step, chain 1
    assert dec(alice, bob, b1[2]) == "b1-2"
    a2 = [enc(alice, bob, f"a2-{i}") for i in range(3)]  # alice: DH step, chain 2
    assert dec(bob, alice, a2[1]) == "a2-1"
    assert dec(bob, alice, a1[0]) == "a1-0"  # from the previous receiving chain
    b2 = [enc(bob, alice, f"b2-{i}") for i in range(2)]
    assert dec(alice, bob, b2[1]) == "b2-1"
    assert dec(alice, bob, b1[0]) == "b1-0"
    assert dec(bob, alice, a2[0]) == "a2-0"
    assert dec(bob, alice, a1[2]) == "a1-2"
    a3 = [enc(alice, bob, f"a3-{i}") for i in range(2)]
    assert dec(bob, alice, a3[0]) == "a3-0"
    assert dec(alice, bob, b1[1]) == "b1-1"
    assert dec(alice, bob, b2[0]) == "b2-0"
    assert dec(bob, alice, a1[1]) == "a1-1"
    assert dec(bob, alice, a2[2]) == "a2-2"
    assert dec(bob, alice, a3[1]) == "a3-1"

    # every message decrypts exactly once
    for m in (a1[0], a1[3], a2[1], a3[0]):
        expect_error(lambda m=m: dec(bob, alice, m), "DuplicateMessageError")
    for m in (b1[0], b2[1]):
        expect_error(lambda m=m: dec(alice, bob, m), "DuplicateMessageError")
    # and the conversation goes on
    assert dec(alice, bob, enc(bob, alice, "still fine")) == "still fine"
    assert dec(bob, alice, enc(alice, bob, "me too")) == "me too"


@pytest.mark.parametrize("init_kind,resp_kind", PAIRS, ids=PAIR_IDS)
def test_replay_rejected(spawn: PeerFactory, init_kind: str, resp_kind: str) -> None:
    alice = start(spawn, init_kind, "alice")
    bob = start(spawn, resp_kind, "bob")
    establish(alice, bob)
    for sender, receiver in ((alice, bob), (bob, alice)):
        m1, m2 = enc(sender, receiver, "one"), enc(sender, receiver, "two")
        assert dec(receiver, sender, m1) == "one"
        expect_error(lambda: dec(receiver, sender, m1), "DuplicateMessageError")
        expect_error(lambda: dec(receiver, sender, m1), "DuplicateMessageError")
        assert dec(receiver, sender, m2) == "two"
        expect_error(lambda: dec(receiver, sender, m2), "DuplicateMessageError")
        assert dec(receiver, sender, enc(sender, receiver, "three")) == "three"


@pytest.mark.parametrize("init_kind,resp_kind", PAIRS, ids=PAIR_IDS)
def test_tampered_rejected(spawn: PeerFactory, init_kind: str, resp_kind: str) -> None:
    alice = start(spawn, init_kind, "alice")
    bob = start(spawn, resp_kind, "bob")
    bob.call("bundle")
    alice.call("process_bundle", remote="bob", bundle=bob.call("bundle"))

    # PreKey message: a failed decrypt must not consume the one-time prekey or create a session
    pk = enc(alice, bob, "prekey message")
    (_, m_start, m_end), = [s for s in field_spans(bytes.fromhex(pk["body"])[1:]) if s[0] == 4]
    # inner SignalMessage: its MAC (last byte) and its ciphertext (a byte before the MAC)
    for bad in (flip(pk["body"], m_end), flip(pk["body"], m_end - 11), flip(pk["body"], 1 + m_start)):
        expect_error(lambda bad=bad: bob.call("decrypt", remote="alice", type=3, body=bad), *PEER_GARBAGE)
    # cut off the tail (the signed_pre_key_id field): read as id 0, which does not exist
    expect_error(lambda: bob.call("decrypt", remote="alice", type=3, body=pk["body"][: -2 * 9]),
                 *PEER_GARBAGE, "NoSignedPreKeyError")
    assert dec(bob, alice, pk) == "prekey message"
    assert dec(alice, bob, enc(bob, alice, "ack")) == "ack"

    for sender, receiver in ((alice, bob), (bob, alice)):
        m = enc(sender, receiver, "the real one")
        assert m["type"] == 2
        n = len(m["body"]) // 2
        variants = {
            "mac": flip(m["body"], n - 1),
            "ciphertext": flip(m["body"], n - 9 - 3),
            "counter": None,
            "truncated": m["body"][:-2],
            "version-2": "23" + m["body"][2:],
            "version-15": "f3" + m["body"][2:],
            "empty": "",
            "short": m["body"][:10],
        }
        # change the counter byte (field 2, after the 33-byte ratchet key: 1 + 2 + 33 = byte 36, value at 37)
        body = bytearray.fromhex(m["body"])
        assert body[36] == 0x10
        body[37] ^= 0x01
        variants["counter"] = body.hex()
        for what, bad in variants.items():
            err = expect_error(lambda bad=bad: receiver.call("decrypt", remote=sender.user, type=2, body=bad),  # type: ignore[attr-defined]
                               *PEER_GARBAGE, "DuplicateMessageError", "InvalidArgumentError")
            assert err.name != "InvalidArgumentError" or what == "empty", (what, err.error)
        assert dec(receiver, sender, m) == "the real one"


# --------------------------------------------------------------------------- session records
@pytest.mark.parametrize("state", ["acknowledged", "pending-prekey"])
@pytest.mark.parametrize("src_kind,dst_kind", PAIRS, ids=PAIR_IDS)
def test_session_record_export_import(spawn: PeerFactory, src_kind: str, dst_kind: str, state: str) -> None:
    """alice's session record moves from one implementation to the other and goes on working."""
    alice = start(spawn, src_kind, "alice")
    bob = start(spawn, dst_kind, "bob")
    if state == "acknowledged":
        establish(alice, bob)
        for i in range(3):  # some ratchet history, and a skipped key kept in the record
            dec(alice, bob, enc(bob, alice, f"ping {i}"))
            dec(bob, alice, enc(alice, bob, f"pong {i}"))
        skipped = enc(bob, alice, "skipped")
        assert dec(alice, bob, enc(bob, alice, "after skipped")) == "after skipped"
    else:
        alice.call("process_bundle", remote="bob", bundle=bob.call("bundle"))
        skipped = None

    record = alice.call("export_session", remote="bob")["record"]
    assert len(record) > 100
    alice.close()

    ident = alice.ident  # type: ignore[attr-defined]
    alice2 = start(spawn, dst_kind, "alice", identity_private=ident["identity_private"],
                   registration_id=ident["registration_id"])
    assert alice2.ident["identity_public"] == ident["identity_public"]  # type: ignore[attr-defined]
    alice2.call("import_session", remote="bob", remote_device=1, record=record,
                remote_identity=bob.ident["identity_public"])  # type: ignore[attr-defined]
    assert alice2.call("has_session", remote="bob")["has_session"] is True

    m = enc(alice2, bob, "from the imported session")
    assert m["type"] == (2 if state == "acknowledged" else 3)
    assert dec(bob, alice2, m) == "from the imported session"
    if skipped is not None:
        assert dec(alice2, bob, skipped) == "skipped"
    r = enc(bob, alice2, "answer")
    assert dec(alice2, bob, r) == "answer"
    assert dec(bob, alice2, enc(alice2, bob, "and on")) == "and on"

    # and the record round-trips back into the source implementation
    record2 = alice2.call("export_session", remote="bob")["record"]
    alice3 = start(spawn, src_kind, "alice", identity_private=ident["identity_private"],
                   registration_id=ident["registration_id"])
    alice3.call("import_session", remote="bob", record=record2, remote_identity=bob.ident["identity_public"])  # type: ignore[attr-defined]
    assert dec(bob, alice3, enc(alice3, bob, "back home")) == "back home"
    assert dec(alice3, bob, enc(bob, alice3, "welcome back")) == "welcome back"


@pytest.mark.parametrize("init_kind,resp_kind", PAIRS, ids=PAIR_IDS)
def test_changed_identity_is_untrusted(spawn: PeerFactory, init_kind: str, resp_kind: str) -> None:
    alice = start(spawn, init_kind, "alice")
    bob = start(spawn, resp_kind, "bob")
    establish(alice, bob)
    bob.call("new_identity", name="bob")  # bob reinstalls with a new identity key
    expect_error(lambda: alice.call("process_bundle", remote="bob", bundle=bob.call("bundle")),
                 "UntrustedIdentityError")
    bob.call("process_bundle", remote="alice", bundle=alice.call("bundle"))
    m = enc(bob, alice, "it is me, really")
    expect_error(lambda: dec(alice, bob, m), "UntrustedIdentityError")
    assert alice.call("has_session", remote="bob")["has_session"] is True


# --------------------------------------------------------------------------- primitives
FIXED = {
    "k1": bytes(range(32)),  # not clamped: implementations must clamp on use
    "k2": hashlib.sha256(b"wacrypto interop k2").digest(),
    "k3": bytes.fromhex("a8" + "ab" * 30 + "6b"),
}


def x25519_public(priv: bytes) -> str:
    raw = X25519PrivateKey.from_private_bytes(priv).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return "05" + raw.hex()


def test_primitives_cross_check(spawn: PeerFactory) -> None:
    ax = start(spawn, "axolotl", "alice")
    ls = start(spawn, "libsignal", "bob")
    pubs = {}
    for name, k in FIXED.items():
        a = ax.call("public_key", private=k.hex())["public"]
        b = ls.call("public_key", private=k.hex())["public"]
        assert a == b == x25519_public(k), name
        pubs[name] = a

    # X25519 agreement: same in both, symmetric, and equal to an independent computation
    for x, y in (("k1", "k2"), ("k2", "k3"), ("k3", "k1")):
        s_ax = ax.call("agree", private=FIXED[x].hex(), public=pubs[y])["shared"]
        s_ls = ls.call("agree", private=FIXED[x].hex(), public=pubs[y])["shared"]
        s_rev = ls.call("agree", private=FIXED[y].hex(), public=pubs[x])["shared"]
        ref = X25519PrivateKey.from_private_bytes(FIXED[x]).exchange(
            X25519PublicKey.from_public_bytes(bytes.fromhex(pubs[y][2:])))
        assert s_ax == s_ls == s_rev == ref.hex()

    # XEdDSA: each verifies the other's signatures; tampering is caught by both
    for signer, verifier in ((ax, ls), (ls, ax)):
        for name, k in FIXED.items():
            for msg in (b"", b"hello", pubs[name].encode() * 10):
                sig = signer.call("sign", private=k.hex(), message=msg.hex())["signature"]
                assert len(sig) == 128
                for p in (verifier, signer):
                    assert p.call("verify", public=pubs[name], message=msg.hex(), signature=sig)["valid"] is True
                    assert p.call("verify", public=pubs[name], message=(msg + b"!").hex(),
                                  signature=sig)["valid"] is False
                    assert p.call("verify", public=pubs[name], message=msg.hex(),
                                  signature=flip(sig, 10))["valid"] is False
                    other = pubs["k1" if name != "k1" else "k2"]
                    assert p.call("verify", public=other, message=msg.hex(), signature=sig)["valid"] is False
                # the sign bit of A rides in the top bit of s (sig[63])
                a_sig = bytes.fromhex(sig)
                assert a_sig[63] & 0x60 == 0


def test_new_identity_with_given_keys(spawn: PeerFactory) -> None:
    given = dict(
        registration_id=4242, device_id=3,
        identity_private=FIXED["k1"].hex(), signed_prekey_id=7, signed_prekey_private=FIXED["k2"].hex(),
        prekey_id=99, prekey_private=FIXED["k3"].hex(),
    )
    ax = start(spawn, "axolotl", "alice", **given)
    ls = start(spawn, "libsignal", "alice", **given)
    a, b = ax.ident, ls.ident  # type: ignore[attr-defined]
    for f in ("identity_public", "signed_prekey_public", "prekey_public", "registration_id", "device_id",
              "signed_prekey_id", "prekey_id"):
        assert a[f] == b[f], f
    assert a["identity_public"] == x25519_public(FIXED["k1"])
    # each one's signed-prekey signature verifies in the other
    for who, verifier in ((a, ls), (b, ax)):
        assert verifier.call("verify", public=who["identity_public"], message=who["signed_prekey_public"],
                             signature=who["signed_prekey_signature"])["valid"] is True
    # a given signature is kept verbatim
    ls2 = start(spawn, "libsignal", "carol", **given, signed_prekey_signature=a["signed_prekey_signature"])
    assert ls2.call("bundle")["signed_prekey_signature"] == a["signed_prekey_signature"]
    # new_prekey with a given key
    k = hashlib.sha256(b"otpk").digest()
    assert ax.call("new_prekey", prekey_id=5, prekey_private=k.hex())["prekey_public"] == \
        ls.call("new_prekey", prekey_id=5, prekey_private=k.hex())["prekey_public"] == x25519_public(k)
    assert ax.call("bundle")["prekey_id"] == ls.call("bundle")["prekey_id"] == 5
    assert ax.call("bundle")["device_id"] == 3


def _notes_fingerprint_half(stable_id: str, key33: bytes, iterations: int) -> str:
    """One side of the displayable fingerprint, as docs/protocol-notes.md section 1 describes it."""
    h = hashlib.sha512(b"\x00\x00" + key33 + stable_id.encode() + key33).digest()
    for _ in range(iterations - 1):
        h = hashlib.sha512(h + key33).digest()
    return "".join(f"{int.from_bytes(h[i:i + 5], 'big') % 100000:05d}" for i in range(0, 30, 5))


def test_fingerprint(spawn: PeerFactory) -> None:
    ls = start(spawn, "libsignal", "alice")
    ax = start(spawn, "axolotl", "alice")
    ka, kb = x25519_public(FIXED["k1"]), x25519_public(FIXED["k2"])
    fp = ls.call("fingerprint", local_id="+14152222222", local_identity=ka, remote_id="+14153333333",
                 remote_identity=kb)
    assert len(fp["display"]) == 60 and fp["display"].isdigit()
    rev = ls.call("fingerprint", local_id="+14153333333", local_identity=kb, remote_id="+14152222222",
                  remote_identity=ka)
    assert rev["display"] == fp["display"]
    assert rev["scannable"] != fp["scannable"] and len(fp["scannable"]) > 64
    halves = sorted(_notes_fingerprint_half(i, bytes.fromhex(k), 5200)
                    for i, k in (("+14152222222", ka), ("+14153333333", kb)))
    assert fp["display"] == "".join(halves), "docs/protocol-notes.md's fingerprint algorithm disagrees with libsignal"
    few = ls.call("fingerprint", local_id="a", local_identity=ka, remote_id="b", remote_identity=kb, iterations=2)
    assert few["display"] == "".join(sorted(_notes_fingerprint_half(i, bytes.fromhex(k), 2)
                                            for i, k in (("a", ka), ("b", kb))))
    expect_error(lambda: ax.call("fingerprint", local_id="a", local_identity=ka, remote_id="b",
                                 remote_identity=kb), "UnsupportedError")


# --------------------------------------------------------------------------- groups (axolotl only)
def test_axolotl_group_sender_keys(spawn: PeerFactory) -> None:
    alice = start(spawn, "axolotl", "alice")
    bob = start(spawn, "axolotl", "bob")
    carol = start(spawn, "axolotl", "carol")
    establish(alice, bob)
    gid = "120363025246125486@g.us"

    # alice's SKDM travels inside the pairwise session
    dist = alice.call("group_create", group_id=gid)["distribution"]
    skdm = bytes.fromhex(dist)
    assert skdm[0] == 0x33 and top_level_fields(skdm[1:]) == [1, 2, 3, 4]
    assert alice.call("group_create", group_id=gid)["distribution"] == dist  # same key until used
    carried = alice.call("encrypt", remote="bob", plaintext=dist)
    assert bob.call("decrypt", remote="alice", **carried)["plaintext"] == dist
    bob.call("group_process", group_id=gid, sender="alice", sender_device=1, distribution=dist)

    # no sender key yet: typed errors
    expect_error(lambda: carol.call("group_decrypt", group_id=gid, sender="alice", sender_device=1,
                                    body=alice.call("group_encrypt", group_id=gid, plaintext="00")["body"]),
                 "NoSenderKeyError")
    expect_error(lambda: carol.call("group_encrypt", group_id=gid, plaintext="00"), "NoSenderKeyError")

    msgs = [alice.call("group_encrypt", group_id=gid, plaintext=f"g{i}".encode().hex()) for i in range(6)]
    for m in msgs:
        body = bytes.fromhex(m["body"])
        assert m["type"] == 7 and body[0] == 0x33
        assert top_level_fields(body[1:-64]) == [1, 2, 3]

    def gdec(receiver: PeerProcess, m: dict[str, Any], sender: str = "alice") -> str:
        res = receiver.call("group_decrypt", group_id=gid, sender=sender, sender_device=1, body=m["body"])
        return bytes.fromhex(res["plaintext"]).decode()

    # carol's probe used iteration 0 (bob never gets it); msgs[i] has iteration i+1: out of order
    for i in (3, 1, 5, 0, 4, 2):
        assert gdec(bob, msgs[i]) == f"g{i}"
    for i in (3, 0):
        expect_error(lambda i=i: gdec(bob, msgs[i]), "DuplicateMessageError")

    # forged: bad signature, body changed under a valid signature, signature of another key
    nxt = alice.call("group_encrypt", group_id=gid, plaintext="6e657874")
    n = len(nxt["body"]) // 2
    for bad in (flip(nxt["body"], n - 1), flip(nxt["body"], n - 40), flip(nxt["body"], n - 64 - 2)):
        expect_error(lambda bad=bad: bob.call("group_decrypt", group_id=gid, sender="alice", sender_device=1,
                                              body=bad), "InvalidSignatureError")
    # a valid XEdDSA signature over the same bytes, but by another key
    unsigned = bytes.fromhex(nxt["body"])[:-64]
    forged_sig = carol.call("sign", private=FIXED["k1"].hex(), message=unsigned.hex())["signature"]
    expect_error(lambda: bob.call("group_decrypt", group_id=gid, sender="alice", sender_device=1,
                                  body=unsigned.hex() + forged_sig), "InvalidSignatureError")
    # wrong sender address: no key
    expect_error(lambda: bob.call("group_decrypt", group_id=gid, sender="alice", sender_device=2,
                                  body=nxt["body"]), "NoSenderKeyError")
    assert gdec(bob, nxt) == "next"

    # the other direction: bob's own sender key in the same group
    bob_dist = bob.call("group_create", group_id=gid)["distribution"]
    assert bob_dist != dist
    alice.call("group_process", group_id=gid, sender="bob", sender_device=1, distribution=bob_dist)
    b = [bob.call("group_encrypt", group_id=gid, plaintext=f"b{i}".encode().hex()) for i in range(3)]
    assert [gdec(alice, b[i], "bob") for i in (2, 0, 1)] == ["b2", "b0", "b1"]
    # alice's own messages stay hers: her key is not bob's
    expect_error(lambda: alice.call("group_decrypt", group_id=gid, sender="bob", sender_device=1,
                                    body=nxt["body"]), "NoSenderKeyError", "InvalidSignatureError")
