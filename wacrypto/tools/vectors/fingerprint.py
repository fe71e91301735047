"""Safety numbers (libsignal fingerprint version 1): the 60-digit display string and each side's
scannable ``CombinedFingerprints`` bytes, for seeded identity keys and ids, plus libsignal's own
published test case."""

from __future__ import annotations

from typing import Any

from wacrypto.primitives.keys import PrivateKey, clamp
from wacrypto.signal.fingerprint import create_fingerprint
from wacrypto.tools.vectors.common import VectorFile, family_rng

FAMILY = "fingerprint"

NOTES = {
    "Published": "The test case published with libsignal (rust/protocol/src/fingerprint.rs), re-typed as facts.",
    "Iterations": "A SHA-512 iteration count other than the default 5200.",
    "Symmetric": "The same pair seen from the other side: same display string, swapped scannable halves.",
}

_PUB = {
    "alice_id": "+14152222222", "bob_id": "+14153333333",
    "alice": "0506863bc66d02b40d27b8d49ca7c09e9239236f9d7d25d6fcca5ce13c7064d868",
    "bob": "05f781b6fb32fed9ba1cf2de978d4d5da28dc34046ae814402b5c0dbd96fda907b",
    "display": "300354477692869396892869876765458257569162576843440918079131",
}


def build(seed: str) -> dict[str, Any]:
    rng = family_rng(seed, FAMILY)
    f = VectorFile(FAMILY, "Signal safety numbers (NumericFingerprint version 1)", seed,
                   "Identity keys from the seeded RNG; display and scannable forms by wacrypto.signal.fingerprint.", NOTES)
    g = f.group("Fingerprint", procedure="fingerprint(local_id, local_identity, remote_id, remote_identity, iterations)")

    def case(comment: str, flags: list[str], lid: str, lk: str, rid: str, rk: str, it: int) -> None:
        fp = create_fingerprint(lid, bytes.fromhex(lk), rid, bytes.fromhex(rk), iterations=it)
        f.case(g, comment, "valid", flags, local_id=lid, local_identity=lk, remote_id=rid, remote_identity=rk,
               iterations=it, display=fp.display, scannable=fp.scannable.hex())

    fp = create_fingerprint(_PUB["alice_id"], bytes.fromhex(_PUB["alice"]), _PUB["bob_id"], bytes.fromhex(_PUB["bob"]))
    assert fp.display == _PUB["display"], "wacrypto disagrees with libsignal's published safety number"
    case("libsignal's published case, alice's side", ["Published"], _PUB["alice_id"], _PUB["alice"], _PUB["bob_id"], _PUB["bob"], 5200)
    case("libsignal's published case, bob's side", ["Published", "Symmetric"], _PUB["bob_id"], _PUB["bob"], _PUB["alice_id"], _PUB["alice"], 5200)
    keys = [PrivateKey(clamp(rng(32))).public_key().to_bytes().hex() for _ in range(4)]
    ids = ["+4915112345678", "+14155550100", "491234567890@s.whatsapp.net", "a"]
    case("seeded pair", [], ids[0], keys[0], ids[1], keys[1], 5200)
    case("seeded pair, other side", ["Symmetric"], ids[1], keys[1], ids[0], keys[0], 5200)
    case("JID-shaped and one-letter ids", [], ids[2], keys[2], ids[3], keys[3], 5200)
    case("1024 iterations", ["Iterations"], ids[0], keys[2], ids[1], keys[3], 1024)
    return f.to_json()
