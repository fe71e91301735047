"""WhatsApp-format sender keys between wacrypto and python-axolotl 0.2.3, both directions.

The SenderKeyDistributionMessage travels inside the pairwise Signal session (as on WhatsApp);
group messages are delivered out of order; a replay is rejected as a duplicate; a forged
signature is rejected; a rejected message changes nothing (the next genuine one decrypts).
"""

from __future__ import annotations

import os
import random
from typing import Any

import pytest
from peerproc import DRIVERS, PeerFactory
from peerproc import PeerCallError, PeerProcess, axolotl_env, wacrypto_argv

from wacrypto.primitives.xeddsa import xeddsa_sign

GROUP = "120363040000000000@g.us"
DIRECTIONS = [("axolotl", "wacrypto"), ("wacrypto", "axolotl")]
DIRECTION_IDS = ["axolotl->wacrypto", "wacrypto->axolotl"]


def start(spawn: PeerFactory, kind: str, name: str, device: int = 1) -> PeerProcess:
    if kind == "wacrypto":
        p = spawn(wacrypto_argv(), name=f"wacrypto-{name}")
    else:
        p = spawn(DRIVERS[kind](), env=axolotl_env(), name=f"{kind}-{name}")
    p.call("new_identity", name=name, device_id=device)
    p.user, p.device, p.kind = name, device, kind  # type: ignore[attr-defined]
    return p


def addr(p: PeerProcess) -> dict[str, Any]:
    return {"remote": p.user, "remote_device": p.device}  # type: ignore[attr-defined]


def sender_of(p: PeerProcess) -> dict[str, Any]:
    return {"sender": p.user, "sender_device": p.device}  # type: ignore[attr-defined]


def establish(a: PeerProcess, b: PeerProcess) -> None:
    """a starts a pairwise session with b's bundle."""
    a.call("process_bundle", **addr(b), bundle=b.call("bundle"))


def send_skdm(sender: PeerProcess, receiver: PeerProcess) -> None:
    """Create the sender's SKDM and deliver it inside the pairwise session."""
    skdm = sender.call("group_create", group_id=GROUP)["distribution"]
    m = sender.call("encrypt", **addr(receiver), plaintext=skdm)
    got = receiver.call("decrypt", **addr(sender), type=m["type"], body=m["body"])["plaintext"]
    assert got == skdm
    receiver.call("group_process", group_id=GROUP, **sender_of(sender), distribution=got)


def genc(p: PeerProcess, text: str) -> str:
    r = p.call("group_encrypt", group_id=GROUP, plaintext=text.encode().hex())
    assert r["type"] == 7
    body = bytes.fromhex(r["body"])
    assert body[0] == 0x33 and len(body) > 64
    return str(r["body"])


def gdec(p: PeerProcess, frm: PeerProcess, body: str) -> str:
    return bytes.fromhex(p.call("group_decrypt", group_id=GROUP, **sender_of(frm), body=body)["plaintext"]).decode()


def expect(fn: Any, *names: str) -> None:
    with pytest.raises(PeerCallError) as ei:
        fn()
    assert ei.value.name in names, f"expected {names}, got {ei.value.error!r}"


@pytest.mark.parametrize("sender_kind,receiver_kind", DIRECTIONS, ids=DIRECTION_IDS)
def test_group_messages_out_of_order_replay_forgery(spawn: PeerFactory, sender_kind: str, receiver_kind: str) -> None:
    rnd = random.Random(4)
    alice = start(spawn, sender_kind, "alice", device=2)
    bob = start(spawn, receiver_kind, "bob")
    establish(alice, bob)
    send_skdm(alice, bob)

    bodies = [genc(alice, f"group message {i}") for i in range(8)]
    order = list(range(8))
    rnd.shuffle(order)
    for i in order:
        assert gdec(bob, alice, bodies[i]) == f"group message {i}"

    # replays are rejected, in and out of order
    for i in (order[0], order[-1]):
        expect(lambda: gdec(bob, alice, bodies[i]), "DuplicateMessageError")

    # forged signatures: a flipped signature bit, and the body re-signed with another key
    nxt = genc(alice, "after the forgeries")
    raw = bytes.fromhex(nxt)
    flipped = bytearray(raw)
    flipped[-10] ^= 0x01
    resigned = raw[:-64] + xeddsa_sign(os.urandom(32), raw[:-64], os.urandom(64))
    for bad in (bytes(flipped), resigned):
        expect(lambda: gdec(bob, alice, bad.hex()), "InvalidSignatureError")
    # the rejected copies changed nothing: the genuine message decrypts once
    assert gdec(bob, alice, nxt) == "after the forgeries"
    expect(lambda: gdec(bob, alice, nxt), "DuplicateMessageError")

    # a message from a sender with no distributed key
    carol = start(spawn, sender_kind, "carol")
    carol.call("group_create", group_id=GROUP)
    expect(lambda: gdec(bob, carol, genc(carol, "who?")), "NoSenderKeyError")


@pytest.mark.parametrize("sender_kind,receiver_kind", DIRECTIONS, ids=DIRECTION_IDS)
def test_skdm_after_messages_and_gap(spawn: PeerFactory, sender_kind: str, receiver_kind: str) -> None:
    """The SKDM carries the sender's current iteration; a receiver skips dropped messages."""
    alice = start(spawn, sender_kind, "alice")
    bob = start(spawn, receiver_kind, "bob")
    establish(bob, alice)  # the receiver initiates this time
    hello = bob.call("encrypt", **addr(alice), plaintext=b"hi".hex())
    alice.call("decrypt", **addr(bob), type=hello["type"], body=hello["body"])
    alice.call("group_create", group_id=GROUP)
    early = [genc(alice, f"early {i}") for i in range(3)]  # sent before bob joined
    send_skdm(alice, bob)
    later = [genc(alice, f"later {i}") for i in range(12)]
    # deliver only every third message, then the skipped ones in reverse
    for i in range(0, 12, 3):
        assert gdec(bob, alice, later[i]) == f"later {i}"
    for i in reversed([i for i in range(12) if i % 3]):
        assert gdec(bob, alice, later[i]) == f"later {i}"
    # messages from before the SKDM's iteration cannot be decrypted (and do not break anything)
    expect(lambda: gdec(bob, alice, early[0]), "DuplicateMessageError", "DecryptionError", "InvalidMessageError")
    assert gdec(bob, alice, genc(alice, "still fine")) == "still fine"


def test_group_both_ways_three_members(spawn: PeerFactory) -> None:
    """Two wacrypto peers and python-axolotl exchange keys and messages, all in one group."""
    w1 = start(spawn, "wacrypto", "walter", device=1)
    ax = start(spawn, "axolotl", "anna")
    w2 = start(spawn, "wacrypto", "wendy", device=7)  # axolotl trusts one identity per name
    members = [w1, ax, w2]
    pairs = [(a, b) for i, a in enumerate(members) for b in members[i + 1 :]]
    for a, b in pairs:
        establish(a, b)
        send_skdm(a, b)  # a's first (PreKey) message sets up b's side of the session
    for a, b in pairs:
        send_skdm(b, a)
    for s in members:
        body = genc(s, f"from {s.user}.{s.device}")  # type: ignore[attr-defined]
        for r in members:
            if r is not s:
                assert gdec(r, s, body) == f"from {s.user}.{s.device}"  # type: ignore[attr-defined]
