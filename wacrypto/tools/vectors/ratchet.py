"""Double Ratchet transcripts with fixed randomness: in order, out of order, skipped message keys,
keys of a previous chain, several ratchet steps, an archived session, forward jumps.

A case replays one side of a conversation made by two wacrypto parties. ``setup.new_identity`` gives
the peer that side's keys; ``setup.import_session`` (when present) installs that side's session
record (libsignal ``RecordStructure``) as it was at a point of the conversation, so the peer can
take over mid-conversation; then every step is decrypted in the order listed.
"""

from __future__ import annotations

from typing import Any

import trio

from wacrypto.tools.vectors.common import VectorFile, family_rng
from wacrypto.tools.vectors.parties import Party, step

FAMILY = "ratchet"

NOTES = {
    "InOrder": "Messages arrive in the order they were sent.",
    "OutOfOrder": "Messages of one chain arrive shuffled; the receiver keeps skipped message keys.",
    "SkippedKeys": "A later message arrives first: the keys of the ones before it must be kept and used later.",
    "PreviousChain": "A late message of the sender's previous chain arrives after a ratchet step.",
    "RatchetStep": "The conversation turns around one or more times (new DH ratchet keys).",
    "ImportedSession": "The receiver starts from a session record taken mid-conversation (setup.import_session).",
    "ArchivedSession": "The sender started a new session; a late message of the old (archived) session must still decrypt.",
    "ForwardJump": "The message is far ahead of the chain (1000 messages skipped), within every implementation's limit.",
    "ForwardJumpPolicy": "2500 messages skipped: beyond WhatsApp's and wacrypto's default limit of 2000 (python-axolotl "
                         "2000), within libsignal's 25000. Implementations may accept or reject; one that accepts may "
                         "have dropped the oldest skipped keys (libsignal keeps 2000), so the late first message may fail too.",
    "LongMessage": "A plaintext spanning many AES blocks.",
}


async def _build(seed: str) -> dict[str, Any]:
    rng = family_rng(seed, FAMILY)
    f = VectorFile(FAMILY, "Signal Double Ratchet (v3 SignalMessage / PreKeySignalMessage)", seed,
                   "Two wacrypto SessionCiphers on memory stores with fixed keys, the seeded RNG and a fixed clock "
                   "hold one conversation; records are exported at the points the cases start from.", NOTES)
    bob = await Party("bob", rng, registration_id=4242, signed_prekey_id=7, prekey_id=31337).setup()
    alice = await Party("alice", rng, registration_id=1717).setup()
    await alice.cipher.process_bundle(bob.address, bob.bundle())
    a = [await alice.send(bob, f"a{i}".encode() if i != 3 else b"L" * 1000) for i in range(12)]
    alice_after_a = await alice.record(bob)
    for m in a[:10]:
        await bob.receive(m, alice)
    b = [await bob.send(alice, f"b{i}".encode()) for i in range(6)]
    bob_after_b = await bob.record(alice)
    for m in b[:5]:
        await alice.receive(m, bob)
    c = [await alice.send(bob, f"c{i}".encode()) for i in range(2600)]
    for m in c[:3]:
        await bob.receive(m, alice)
    d = [await bob.send(alice, f"d{i}".encode()) for i in range(3)]
    bob_after_d = await bob.record(alice)
    for m in d:
        await alice.receive(m, bob)
    e = [await alice.send(bob, f"e{i}".encode()) for i in range(3)]
    # alice starts over: a new session from bob's bundle without one-time prekey archives the old one
    await alice.cipher.process_bundle(bob.address, bob.bundle(with_prekey=False))
    n = [await alice.send(bob, f"n{i}".encode()) for i in range(3)]

    as_bob = {"new_identity": bob.new_identity()}
    as_bob_mid = {**as_bob, "import_session": [{"remote": "alice", "remote_device": 1, "record": bob_after_b}]}
    as_alice = {"new_identity": alice.new_identity(),
                "import_session": [{"remote": "bob", "remote_device": 1, "record": alice_after_a}]}

    g = f.group("RatchetResponderFromPreKey", receiver="bob",
                procedure="new_identity(setup.new_identity); decrypt the steps in order")
    f.case(g, "first five messages in order (all PreKeySignalMessages)", "valid", ["InOrder", "LongMessage"],
           setup=as_bob, steps=a[:5])
    f.case(g, "first five messages shuffled", "valid", ["OutOfOrder", "LongMessage"], setup=as_bob,
           steps=[a[4], a[0], a[3], a[1], a[2]])
    f.case(g, "message 10 first, then 1..9", "valid", ["SkippedKeys", "LongMessage"], setup=as_bob,
           steps=[a[9], *a[:9]])
    f.case(g, "all twelve in reverse order", "valid", ["OutOfOrder", "SkippedKeys", "LongMessage"], setup=as_bob,
           steps=a[::-1])

    g = f.group("RatchetInitiatorImported", receiver="alice",
                procedure="new_identity(setup.new_identity); import_session(setup.import_session); decrypt the steps")
    f.case(g, "replies b1..b6 in order", "valid", ["InOrder", "RatchetStep", "ImportedSession"], setup=as_alice, steps=b)
    f.case(g, "replies in reverse order", "valid", ["OutOfOrder", "RatchetStep", "ImportedSession"], setup=as_alice,
           steps=b[::-1])
    f.case(g, "reply 6 first", "valid", ["SkippedKeys", "RatchetStep", "ImportedSession"], setup=as_alice,
           steps=[b[5], *b[:5]])

    g = f.group("RatchetResponderImported", receiver="bob",
                procedure="new_identity(setup.new_identity); import_session(setup.import_session); decrypt the steps")
    f.case(g, "alice's new chain after bob's replies", "valid", ["InOrder", "RatchetStep", "ImportedSession"],
           setup=as_bob_mid, steps=c[:5])
    f.case(g, "late messages 11, 12 of alice's previous chain after her new chain", "valid",
           ["PreviousChain", "RatchetStep", "ImportedSession"], setup=as_bob_mid, steps=[c[0], c[2], a[11], c[1], a[10]])
    as_bob_late = {**as_bob, "import_session": [{"remote": "alice", "remote_device": 1, "record": bob_after_d}]}
    f.case(g, "after bob's second reply: alice's third chain shuffled, then a late message of her second chain",
           "valid", ["RatchetStep", "ImportedSession", "SkippedKeys", "PreviousChain"], setup=as_bob_late,
           steps=[e[2], e[0], c[3], e[1]])
    f.case(g, "a new session (PreKeySignalMessage without one-time prekey) then late messages of the old one",
           "valid", ["ArchivedSession", "ImportedSession"], setup=as_bob_mid, steps=[c[0], n[0], c[4], n[1], c[3], n[2]])
    f.case(g, "1000 messages skipped", "valid", ["ForwardJump", "ImportedSession"], setup=as_bob_mid,
           steps=[c[1000], c[0]])
    f.case(g, "2500 messages skipped", "acceptable", ["ForwardJumpPolicy", "ImportedSession"], setup=as_bob_mid,
           steps=[step(c[2500], expect="either"), step(c[0], expect="either")])
    return f.to_json()


def build(seed: str) -> dict[str, Any]:
    return trio.run(_build, seed)
