"""Sender keys (WhatsApp group format): a SenderKeyDistributionMessage and SenderKeyMessages made with
fixed randomness; in order, out of order, skipped iterations, and the messages a receiver must reject.

``setup.group_process`` installs the sender's distribution message; the steps are ``group_decrypt``.
"""

from __future__ import annotations

from typing import Any

import trio

from wacrypto.address import Address
from wacrypto.session.groups import GroupCipher
from wacrypto.store.memory import MemoryKeyStore
from wacrypto.tools.vectors.common import VectorFile, family_rng, flip

FAMILY = "sender_keys"
GROUP = "120363012345678901@g.us"

NOTES = {
    "InOrder": "Messages in the order they were sent.",
    "OutOfOrder": "Messages shuffled; keys of skipped iterations are kept.",
    "ForwardJump": "A message 1000 iterations ahead, within every implementation's limit.",
    "ForwardJumpPolicy": "2600 iterations ahead: beyond the limit of 2000 of WhatsApp, wacrypto and python-axolotl, "
                         "within libsignal's 25000. Implementations may accept or reject (and may then have dropped "
                         "the oldest skipped keys).",
    "BadSignature": "The 64-byte XEdDSA signature at the end of the message is altered.",
    "TamperedCiphertext": "A ciphertext byte is flipped (the signature no longer verifies).",
    "Truncated": "The message is cut short.",
    "BadVersion": "The version byte is not 0x33.",
    "Duplicate": "The same message twice.",
    "NoSenderKey": "No distribution message was processed for this sender.",
    "OtherSender": "The message is attributed to another sender, whose key differs.",
    "StateSafety": "The last step (probe) is a valid message that must decrypt after the rejections.",
}


async def _build(seed: str) -> dict[str, Any]:
    rng = family_rng(seed, FAMILY)
    f = VectorFile(FAMILY, "Signal sender keys (SenderKeyDistributionMessage, SenderKeyMessage v3)", seed,
                   "wacrypto GroupCipher on a memory store with the seeded RNG: create the distribution, encrypt.", NOTES)
    gc = GroupCipher(MemoryKeyStore(), rng=rng)
    me = Address("alice", 1)
    skdm = (await gc.create_distribution(GROUP, me)).hex()
    texts = [f"group message {i}".encode() for i in range(8)] + [b"G" * 500]
    msgs: list[dict[str, Any]] = []
    for t in texts:
        body = await gc.encrypt(GROUP, me, t)
        msgs.append({"op": "group_decrypt", "group_id": GROUP, "sender": "alice", "sender_device": 1,
                     "body": body.hex(), "expect": "plaintext", "plaintext": t.hex()})
    for i in range(len(texts), 2601):  # far iterations for the forward-jump cases
        body = await gc.encrypt(GROUP, me, f"far {i}".encode())
        if i in (1000, 2600):
            msgs.append({"op": "group_decrypt", "group_id": GROUP, "sender": "alice", "sender_device": 1,
                         "body": body.hex(), "expect": "plaintext", "plaintext": f"far {i}".encode().hex()})
    far1000, far2600 = msgs.pop(-2), msgs.pop(-1)
    setup = {"new_identity": {"name": "bob"},
             "group_process": [{"group_id": GROUP, "sender": "alice", "sender_device": 1, "distribution": skdm}]}
    g = f.group("SenderKeyTranscript", distribution=skdm, procedure="new_identity; group_process (setup); group_decrypt the steps")
    f.case(g, "nine messages in order", "valid", ["InOrder"], setup=setup, steps=msgs)
    f.case(g, "nine messages in reverse order", "valid", ["OutOfOrder"], setup=setup, steps=msgs[::-1])
    f.case(g, "message 5 first", "valid", ["OutOfOrder"], setup=setup, steps=[msgs[4], *msgs[:4], *msgs[5:]])
    f.case(g, "iteration 1000 first (1000 skipped), then iteration 0", "valid", ["ForwardJump"], setup=setup,
           steps=[far1000, msgs[0]])
    f.case(g, "iteration 2600 first (2600 skipped)", "acceptable", ["ForwardJumpPolicy"], setup=setup,
           steps=[{**far2600, "expect": "either"}, {**msgs[0], "expect": "either"}])

    def bad(m: dict[str, Any], body: bytes, error: str, **kw: Any) -> dict[str, Any]:
        out = {**m, "body": body.hex(), "expect": "reject", "error": error, **kw}
        out.pop("plaintext")
        return out

    g = f.group("InvalidSenderKeyMessage", distribution=skdm, procedure="as SenderKeyTranscript; reject steps must fail")
    body = bytes.fromhex(msgs[1]["body"])

    def case(comment: str, flags: list[str], bad_step: dict[str, Any], s: dict[str, Any] | None = None) -> None:
        f.case(g, comment, "invalid", [*flags, "StateSafety"], setup=s or setup,
               steps=[msgs[0], bad_step, {**msgs[1], "probe": True}])

    case("last signature byte flipped", ["BadSignature"], bad(msgs[1], flip(body, -1), "InvalidSignatureError"))
    case("first signature byte flipped", ["BadSignature"], bad(msgs[1], flip(body, -64), "InvalidSignatureError"))
    case("ciphertext byte flipped", ["TamperedCiphertext"], bad(msgs[1], flip(body, -65), "InvalidSignatureError"))
    case("signature missing", ["Truncated"], bad(msgs[1], body[:-64], "InvalidMessageError"))
    case("cut to 5 bytes", ["Truncated"], bad(msgs[1], body[:5], "InvalidMessageError"))
    case("empty", ["Truncated"], bad(msgs[1], b"", "InvalidMessageError"))
    case("version byte 0x23", ["BadVersion"], bad(msgs[1], b"\x23" + body[1:], "InvalidMessageError"))
    case("version byte 0x43", ["BadVersion"], bad(msgs[1], b"\x43" + body[1:], "InvalidMessageError"))
    case("the same message twice", ["Duplicate"], bad(msgs[0], bytes.fromhex(msgs[0]["body"]), "DuplicateMessageError"))
    case("attributed to carol (no key)", ["NoSenderKey"], bad(msgs[1], body, "NoSenderKeyError", sender="carol"))
    f.case(g, "no distribution processed", "invalid", ["NoSenderKey"], setup={"new_identity": {"name": "bob"}},
           steps=[bad(msgs[1], body, "NoSenderKeyError")])
    return f.to_json()


def build(seed: str) -> dict[str, Any]:
    return trio.run(_build, seed)
