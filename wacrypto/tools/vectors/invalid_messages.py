"""Every class of message a receiver must reject: bad MAC, tampered ciphertext, truncated, bad
version, bad key type, wrong message type, duplicate, replay of a used skipped key, too far ahead,
no session, garbage.

Each case has the receiver take over a conversation (``setup``), optionally decrypt valid messages,
then receive the bad one (``expect: reject``; ``error`` names the class wacrypto raises, for
information). The final ``probe`` step is a valid message that must still decrypt after the rejection:
``wacrypto vectors check`` skips it, ``wacrypto conformance`` runs it to prove the state survived.
"""

from __future__ import annotations

from typing import Any

import trio

from wacrypto.tools.vectors.common import VectorFile, family_rng, flip
from wacrypto.tools.vectors.parties import Party, step
from wacrypto.wire.messages import PreKeySignalMessage, SignalMessage, encode_prekey_message, encode_signal_body

FAMILY = "invalid_messages"

NOTES = {
    "BadMac": "The 8-byte MAC (last bytes of a SignalMessage) is altered or cut.",
    "TamperedCiphertext": "A byte of the AES-CBC ciphertext is flipped (the MAC no longer matches).",
    "TamperedHeader": "A header field (counter, previous counter, ratchet key, base key) is changed and the MAC "
                      "kept: the MAC must catch it, and a DH ratchet step tried for a new ratchet key must not stick.",
    "Truncated": "The message is cut short.",
    "BadVersion": "The version byte is not 0x33 (v2 0x22/0x23 is legacy; 0x43 a future version). The MAC of a "
                  "SignalMessage covers that byte, so a receiver rejects it by its version check or by the MAC.",
    "BadKeyType": "A key's type byte is not 0x05.",
    "WrongType": "The message is delivered with another message type.",
    "Duplicate": "The same message is delivered twice.",
    "SkippedKeyReplay": "A late message is delivered twice: its skipped key was used up by the first delivery.",
    "TooFarAhead": "The counter is 25050 ahead of the chain: beyond every implementation's limit (libsignal 25000).",
    "NoSession": "A SignalMessage from an address without a session.",
    "Garbage": "Bytes that do not parse as a message.",
    "PreKeyInner": "The SignalMessage inside a PreKeySignalMessage is damaged.",
    "StateSafety": "The last step (probe) is a valid message that must decrypt after the rejections.",
}


async def _build(seed: str) -> dict[str, Any]:
    rng = family_rng(seed, FAMILY)
    f = VectorFile(FAMILY, "Rejection of malformed and replayed Signal v3 messages", seed,
                   "Two wacrypto SessionCiphers (fixed keys, seeded RNG, fixed clock) make a conversation; "
                   "the bad messages are valid ones altered byte-wise or re-encoded with one field changed.", NOTES)
    bob = await Party("bob", rng, registration_id=5151, signed_prekey_id=3, prekey_id=77).setup()
    alice = await Party("alice", rng, registration_id=6161).setup()
    await alice.cipher.process_bundle(bob.address, bob.bundle())
    a = [await alice.send(bob, f"a{i}".encode()) for i in range(3)]
    for m in a:
        await bob.receive(m, alice)
    reply = await bob.send(alice, b"reply")
    await alice.receive(reply, bob)
    bob_rec = await bob.record(alice)
    c = [await alice.send(bob, f"c{i}".encode()) for i in range(25051)]

    mid = {"new_identity": bob.new_identity(),
           "import_session": [{"remote": "alice", "remote_device": 1, "record": bob_rec}]}
    fresh = {"new_identity": bob.new_identity()}

    def bad(m: dict[str, Any], body: bytes, error: str = "DecryptionError", **kw: Any) -> dict[str, Any]:
        return step(m, body=body.hex(), expect="reject", error=error, **kw)

    def probe(m: dict[str, Any]) -> dict[str, Any]:
        return {**m, "probe": True}

    g = f.group("InvalidSignalMessage", receiver="bob",
                procedure="new_identity + import_session (setup); decrypt the steps; reject steps must fail")
    body = bytes.fromhex(c[1]["body"])
    sm = SignalMessage.from_bytes(body)

    def case(comment: str, flags: list[str], bad_step: dict[str, Any], before: list[dict[str, Any]] | None = None,
             after: dict[str, Any] | None = None, setup: dict[str, Any] | None = None) -> None:
        steps = [*(before if before is not None else [c[0]]), bad_step, probe(after or c[1])]
        f.case(g, comment, "invalid", [*flags, "StateSafety"], setup=setup or mid, steps=steps)

    case("last MAC byte flipped", ["BadMac"], bad(c[1], flip(body, -1)))
    case("first MAC byte flipped", ["BadMac"], bad(c[1], flip(body, -8)))
    case("MAC cut to 7 bytes", ["BadMac", "Truncated"], bad(c[1], body[:-1]))
    case("MAC missing", ["BadMac", "Truncated"], bad(c[1], body[:-8]))
    case("last ciphertext byte flipped", ["TamperedCiphertext"], bad(c[1], flip(body, -9)))
    case("first ciphertext byte flipped", ["TamperedCiphertext"], bad(c[1], flip(body, -8 - len(sm.ciphertext))))
    hdr = encode_signal_body(sm.ratchet_key, sm.counter + 1, sm.previous_counter, sm.ciphertext)
    case("counter + 1, MAC of the original", ["TamperedHeader"], bad(c[1], body[:1] + hdr + sm.mac))
    hdr = encode_signal_body(sm.ratchet_key, sm.counter, sm.previous_counter + 1, sm.ciphertext)
    case("previous counter + 1, MAC of the original", ["TamperedHeader"], bad(c[1], body[:1] + hdr + sm.mac))
    other_key = bob.opk.key_pair.public.to_bytes()  # a valid key nobody ratchets with: a DH step that must not stick
    hdr = encode_signal_body(other_key, sm.counter, sm.previous_counter, sm.ciphertext)
    case("ratchet key replaced by another valid key, MAC of the original", ["TamperedHeader"],
         bad(c[1], body[:1] + hdr + sm.mac))
    hdr = encode_signal_body(b"\x06" + sm.ratchet_key[1:], sm.counter, sm.previous_counter, sm.ciphertext)
    case("ratchet key type byte 0x06", ["BadKeyType"], bad(c[1], body[:1] + hdr + sm.mac, "InvalidMessageError"))
    hdr = encode_signal_body(sm.ratchet_key[1:], sm.counter, sm.previous_counter, sm.ciphertext)
    case("ratchet key without its type byte (32 bytes)", ["BadKeyType"], bad(c[1], body[:1] + hdr + sm.mac, "InvalidMessageError"))
    case("ciphertext cut by one AES block", ["Truncated"],
         bad(c[1], body[:1] + encode_signal_body(sm.ratchet_key, sm.counter, sm.previous_counter, sm.ciphertext[:-16]) + sm.mac))
    case("cut to 10 bytes", ["Truncated"], bad(c[1], body[:10], "InvalidMessageError"))
    case("version byte only", ["Truncated"], bad(c[1], body[:1], "InvalidMessageError"))
    case("empty body", ["Truncated"], bad(c[1], b"", "InvalidMessageError"))
    for v, why in ((0x23, "v2 (legacy)"), (0x22, "v2 (legacy)"), (0x43, "v4"), (0x13, "v1"), (0x34, "message version 3, current version 4")):
        case(f"version byte 0x{v:02x}: {why}", ["BadVersion"], bad(c[1], bytes((v,)) + body[1:], "InvalidMessageError"))
    case("delivered as a PreKeySignalMessage (type 3)", ["WrongType"], bad(c[1], body, "InvalidMessageError", type=3))
    case("delivered as type 7 (SenderKeyMessage)", ["WrongType"], bad(c[1], body, "InvalidMessageError", type=7))
    case("the same message twice", ["Duplicate"], bad(c[0], bytes.fromhex(c[0]["body"]), "DuplicateMessageError"))
    case("a late message delivered twice", ["SkippedKeyReplay", "Duplicate"],
         bad(c[2], bytes.fromhex(c[2]["body"]), "DuplicateMessageError"), before=[c[3], c[2]], after=c[4])
    case("message 25051 of the chain (25050 skipped)", ["TooFarAhead"],
         bad(c[25050], bytes.fromhex(c[25050]["body"]), "InvalidMessageError"))
    case("protobuf garbage after the version byte", ["Garbage"], bad(c[1], b"\x33" + rng(40), "InvalidMessageError"))
    case("a SignalMessage from an address without a session", ["NoSession"],
         bad(c[1], body, "NoSessionError", remote="mallory"))
    f.case(g, "a SignalMessage to a receiver without any session", "invalid", ["NoSession"], setup=fresh,
           steps=[bad(c[1], body, "NoSessionError")])

    g = f.group("InvalidPreKeySignalMessage", receiver="bob",
                procedure="new_identity (setup); decrypt the steps; reject steps must fail")
    pbody = bytes.fromhex(a[0]["body"])
    pm = PreKeySignalMessage.from_bytes(pbody)
    inner = pm.message.serialized

    def pre(inner_: bytes, *, base_key: bytes = pm.base_key, identity_key: bytes = pm.identity_key) -> bytes:
        return encode_prekey_message(pm.registration_id, pm.pre_key_id, pm.signed_pre_key_id, base_key, identity_key, inner_)

    def pcase(comment: str, flags: list[str], body_: bytes, error: str) -> None:
        f.case(g, comment, "invalid", [*flags, "StateSafety"], setup=fresh,
               steps=[bad(a[0], body_, error), probe(a[0])])

    pcase("inner MAC flipped", ["PreKeyInner", "BadMac"], pre(flip(inner, -1)), "DecryptionError")
    pcase("inner ciphertext flipped", ["PreKeyInner", "TamperedCiphertext"], pre(flip(inner, -9)), "DecryptionError")
    pcase("inner message cut", ["PreKeyInner", "Truncated"], pre(inner[:-8]), "InvalidMessageError")
    pcase("inner version byte 0x23", ["PreKeyInner", "BadVersion"], pre(b"\x23" + inner[1:]), "InvalidMessageError")
    pcase("outer version byte 0x23", ["BadVersion"], b"\x23" + pbody[1:], "InvalidMessageError")
    pcase("outer version byte 0x43", ["BadVersion"], b"\x43" + pbody[1:], "InvalidMessageError")
    pcase("base key type byte 0x06", ["BadKeyType"], pre(inner, base_key=b"\x06" + pm.base_key[1:]), "InvalidMessageError")
    pcase("identity key type byte 0x06", ["BadKeyType"], pre(inner, identity_key=b"\x06" + pm.identity_key[1:]),
          "InvalidMessageError")
    pcase("base key of another session (other key, same id)", ["TamperedHeader"],
          pre(inner, base_key=bob.identity.public.to_bytes()), "DecryptionError")
    pcase("cut in half", ["Truncated"], pbody[: len(pbody) // 2], "InvalidMessageError")
    pcase("delivered as a SignalMessage (type 2)", ["WrongType"], pbody, "InvalidMessageError")
    g[-1]["steps"][0]["type"] = 2
    f.case(g, "the same PreKeySignalMessage twice", "invalid", ["Duplicate", "StateSafety"], setup=fresh,
           steps=[a[0], bad(a[0], pbody, "DuplicateMessageError"), probe(a[1])])
    return f.to_json()


def build(seed: str) -> dict[str, Any]:
    return trio.run(_build, seed)
