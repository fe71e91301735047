"""XEdDSA (libsignal's variant): signatures made with fixed randomness, and verification cases.

Signing cases give the private key, the message and the 64 random bytes, so an implementation that
takes its nonce randomness as a parameter can reproduce the signature byte for byte; every case
also says whether ``verify(public, message, signature)`` must hold.
"""

from __future__ import annotations

from typing import Any

from wacrypto.primitives.keys import PrivateKey, clamp
from wacrypto.primitives.xeddsa import xeddsa_sign
from wacrypto.tools.vectors.common import VectorFile, family_rng, flip

FAMILY = "xeddsa"
_L = 2**252 + 27742317777372353535851937790883648493

NOTES = {
    "Signing": "The signature is reproducible from private key, message and the 64 random bytes (libsignal's calculate_signature).",
    "ModifiedMessage": "The message differs from the one signed.",
    "ModifiedR": "A bit of R (signature bytes 0..31) is flipped.",
    "ModifiedS": "A bit of s (signature bytes 32..63) is flipped.",
    "SignBit": "The top bit of byte 63 carries the sign of the Edwards key (libsignal's variant); flipping it names the negated key.",
    "NonCanonicalS": "s + L instead of s (still below 2^253): the XEdDSA specification bounds s only by 2^253, so the "
                     "equation holds and libsignal 0.23.1 and python-axolotl accept it; wacrypto (libsodium) requires s < L.",
    "WrongKey": "The signature is checked against another identity key.",
    "BadKeyType": "The public key's type byte is not 0x05.",
    "WrongLength": "The signature is not 64 bytes; verification returns false (not an error).",
    "ZeroSignature": "All-zero signature bytes.",
}


def build(seed: str) -> dict[str, Any]:
    rng = family_rng(seed, FAMILY)
    f = VectorFile(FAMILY, "XEdDSA over Curve25519 (libsignal variant, 64-byte signatures)", seed,
                   "Keys, messages and nonce randomness from the seeded RNG; signatures by wacrypto.primitives.xeddsa.", NOTES)
    sign_tests = f.group("XEdDSASign", publicKeyFormat="0x05 || u (33 bytes)")
    messages = [b"", b"hello", rng(33), rng(200), bytes(1000)]
    signed: list[tuple[bytes, bytes, bytes]] = []
    for i, msg in enumerate(messages):
        priv = clamp(rng(32))
        pub = PrivateKey(priv).public_key().to_bytes()
        rnd = rng(64)
        sig = xeddsa_sign(priv, msg, rnd)
        signed.append((pub, msg, sig))
        f.case(sign_tests, f"sign a {len(msg)}-byte message", "valid", ["Signing"],
               private=priv.hex(), public=pub.hex(), message=msg.hex(), random=rnd.hex(), signature=sig.hex())
    tests = f.group("XEdDSAVerify", publicKeyFormat="0x05 || u (33 bytes)")
    pub, msg, sig = signed[2]
    other_pub = signed[3][0]

    def v(comment: str, result: str, flags: list[str], public: bytes, message: bytes, signature: bytes) -> None:
        f.case(tests, comment, result, flags, public=public.hex(), message=message.hex(), signature=signature.hex())

    v("valid signature", "valid", [], pub, msg, sig)
    v("message with one bit flipped", "invalid", ["ModifiedMessage"], pub, flip(msg, 0), sig)
    v("message with a byte appended", "invalid", ["ModifiedMessage"], pub, msg + b"\x00", sig)
    v("empty message instead of the signed one", "invalid", ["ModifiedMessage"], pub, b"", sig)
    for i in (0, 15, 31):
        v(f"R byte {i} bit 0 flipped", "invalid", ["ModifiedR"], pub, msg, flip(sig, i))
    for i in (32, 48, 62):
        v(f"s byte {i} bit 0 flipped", "invalid", ["ModifiedS"], pub, msg, flip(sig, i))
    v("sign bit (byte 63, 0x80) flipped", "invalid", ["SignBit"], pub, msg, flip(sig, 63, 0x80))
    s = int.from_bytes(sig[32:63] + bytes((sig[63] & 0x7F,)), "little")
    s2 = (s + _L).to_bytes(32, "little")
    v("s + L (not reduced mod L)", "acceptable", ["NonCanonicalS"], pub, msg,
      sig[:32] + s2[:31] + bytes((s2[31] | (sig[63] & 0x80),)))
    v("another identity's key", "invalid", ["WrongKey"], other_pub, msg, sig)
    v("key type byte 0x06", "invalid", ["BadKeyType"], b"\x06" + pub[1:], msg, sig)
    v("signature truncated to 63 bytes", "invalid", ["WrongLength"], pub, msg, sig[:63])
    v("signature with a byte appended", "invalid", ["WrongLength"], pub, msg, sig + b"\x00")
    v("empty signature", "invalid", ["WrongLength"], pub, msg, b"")
    v("all-zero signature", "invalid", ["ZeroSignature"], pub, msg, bytes(64))
    for pub2, msg2, sig2 in signed:
        if pub2 != pub:
            v(f"valid signature of a {len(msg2)}-byte message", "valid", [], pub2, msg2, sig2)
    return f.to_json()
