"""X3DH: sessions started from a bundle with and without a one-time prekey, both roles.

``X3DHResponder`` cases: the peer gets the responder's keys (``setup.new_identity``) and decrypts the
initiator's PreKeySignalMessages (``steps``). ``X3DHInitiator`` cases: the peer processes a bundle
(``bundle``); a bundle whose signed prekey is not signed by its identity key must be refused.
"""

from __future__ import annotations

from typing import Any

import trio

import hashlib
import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from wacrypto.primitives.keys import KeyPair, PrivateKey, Rng, clamp, x25519
from wacrypto.primitives.xeddsa import xeddsa_sign
from wacrypto.tools.vectors.common import VectorFile, family_rng, flip
from wacrypto.tools.vectors.parties import Party, step
from wacrypto.wire.messages import PreKeySignalMessage, encode_prekey_message

_MAC_LEN = 8


class _RecordingRng:
    """Passes draws through and keeps the 32-byte ones (to find the initiator's base and ratchet keys)."""

    def __init__(self, rng: Rng) -> None:
        self._rng = rng
        self.draws: list[bytes] = []

    def __call__(self, n: int) -> bytes:
        out = self._rng(n)
        if n == 32:
            self.draws.append(out)
        return out

    def private_of(self, public33: bytes) -> bytes:
        for d in self.draws:
            if PrivateKey(clamp(d)).public_key().to_bytes() == public33:
                return clamp(d)
        raise LookupError("no recorded draw gives this public key")


def _hkdf(ikm: bytes, salt: bytes | None, info: bytes, n: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=n, salt=salt, info=info).derive(ikm)


def _derivation(alice: Party, bob: Party, rec: _RecordingRng, first: dict[str, Any], with_prekey: bool) -> dict[str, Any]:
    """Every intermediate value of X3DH and the first message key, computed here from the private keys
    (with `cryptography`'s HKDF, not wacrypto's ratchet code) and proven by decrypting the message."""
    pm = PreKeySignalMessage.from_bytes(bytes.fromhex(first["body"]))
    ek = rec.private_of(pm.base_key)
    rk_priv = rec.private_of(pm.message.ratchet_key)
    ik_a = alice.identity.private.to_bytes()
    ik_b, spk_b, opk_b = (bob.identity.public.u, bob.spk.key_pair.public.u, bob.opk.key_pair.public.u)
    dh = [x25519(ik_a, spk_b), x25519(ek, ik_b), x25519(ek, spk_b)] + ([x25519(ek, opk_b)] if with_prekey else [])
    master = b"\xff" * 32 + b"".join(dh)
    okm = _hkdf(master, None, b"WhisperText", 64)
    root, chain = okm[:32], okm[32:]
    okm2 = _hkdf(x25519(rk_priv, spk_b), root, b"WhisperRatchet", 64)
    root2, send_chain = okm2[:32], okm2[32:]
    seed = hmac.new(send_chain, b"\x01", hashlib.sha256).digest()
    keys = _hkdf(seed, None, b"WhisperMessageKeys", 80)
    ck, mk, iv = keys[:32], keys[32:64], keys[64:80]
    body = pm.message.serialized
    mac = hmac.new(mk, alice.identity.public.to_bytes() + bob.identity.public.to_bytes() + body[:-_MAC_LEN],
                   hashlib.sha256).digest()[:_MAC_LEN]
    padded = Cipher(algorithms.AES(ck), modes.CBC(iv)).decryptor().update(pm.message.ciphertext)
    if mac != body[-_MAC_LEN:] or padded[: len(padded) - padded[-1]].hex() != first["plaintext"]:
        raise AssertionError("the X3DH derivation does not open the message")  # a generator bug, never data
    out = {
        "initiator_identity_private": ik_a.hex(), "initiator_identity_public": alice.identity.public.to_bytes().hex(),
        "initiator_base_private": ek.hex(), "initiator_base_public": pm.base_key.hex(),
        "initiator_ratchet_private": rk_priv.hex(), "initiator_ratchet_public": pm.message.ratchet_key.hex(),
        "dh1_ik_a_spk_b": dh[0].hex(), "dh2_ek_a_ik_b": dh[1].hex(), "dh3_ek_a_spk_b": dh[2].hex(),
    }
    if with_prekey:
        out["dh4_ek_a_opk_b"] = dh[3].hex()
    out.update({
        "master_secret": master.hex(), "root_key": root.hex(), "chain_key": chain.hex(),
        "ratchet_dh": x25519(rk_priv, spk_b).hex(), "root_key_2": root2.hex(), "sending_chain_key": send_chain.hex(),
        "message_key_seed": seed.hex(), "cipher_key": ck.hex(), "mac_key": mk.hex(), "iv": iv.hex(), "mac": mac.hex(),
        "next_chain_key": hmac.new(send_chain, b"\x02", hashlib.sha256).digest().hex(),
    })
    return out

FAMILY = "x3dh"

NOTES = {
    "OneTimePreKey": "The initiator used the bundle's one-time prekey (four DH outputs).",
    "NoOneTimePreKey": "The bundle had no one-time prekey (three DH outputs; the message has no pre_key_id).",
    "UnknownSignedPreKey": "The message names a signed prekey id the responder does not have.",
    "UnknownPreKey": "The message names a one-time prekey id the responder does not have.",
    "PreKeyReuse": "A second initiator uses a one-time prekey that the first one already consumed.",
    "BadBundleSignature": "The bundle's signed prekey signature does not verify with its identity key.",
    "BadKeyType": "A key of the bundle does not start with the type byte 0x05.",
    "IdentityChange": "A PreKeySignalMessage from a known address carries a different identity key.",
    "StateSafety": "The last step (probe) is a valid message that must decrypt after the rejection.",
}


async def _build(seed: str) -> dict[str, Any]:
    rng = family_rng(seed, FAMILY)
    f = VectorFile(FAMILY, "X3DH key agreement (Signal v3) as carried by PreKeySignalMessage", seed,
                   "Two wacrypto SessionCiphers on memory stores with fixed keys, the seeded RNG and a fixed clock; "
                   "the initiator processes the responder's bundle and encrypts.", NOTES)
    resp = f.group("X3DHResponder", role="responder",
                   procedure="new_identity(setup.new_identity); then decrypt every step in order")

    recorded = _RecordingRng(rng)

    async def session(with_prekey: bool, texts: list[bytes], *, reg: int) -> tuple[Party, Party, list[dict[str, Any]]]:
        bob = await Party("bob", rng, registration_id=reg, signed_prekey_id=reg % 100 + 1, prekey_id=reg).setup()
        alice = await Party("alice", recorded, registration_id=reg + 1).setup()
        await alice.cipher.process_bundle(bob.address, bob.bundle(with_prekey=with_prekey))
        return bob, alice, [await alice.send(bob, t) for t in texts]

    derivations: list[tuple[str, str, dict[str, Any], dict[str, Any], dict[str, Any]]] = []
    for with_prekey, flag in ((True, "OneTimePreKey"), (False, "NoOneTimePreKey")):
        what = "with" if with_prekey else "without"
        bob, alice, msgs = await session(with_prekey, [b"hello bob", b"second before any answer", b""], reg=1000 + with_prekey)
        setup = {"new_identity": bob.new_identity()}
        derivations.append((what, flag, setup, msgs[0], _derivation(alice, bob, recorded, msgs[0], with_prekey)))
        f.case(resp, f"first PreKeySignalMessage, bundle {what} one-time prekey", "valid", [flag],
               setup=setup, steps=msgs[:1])
        f.case(resp, f"three PreKeySignalMessages in order, {what} one-time prekey", "valid", [flag],
               setup=setup, steps=msgs)
        f.case(resp, f"three PreKeySignalMessages in reverse order, {what} one-time prekey", "valid", [flag],
               setup=setup, steps=msgs[::-1])

    bob, alice, msgs = await session(True, [b"hi", b"still alice"], reg=2000)
    pm = PreKeySignalMessage.from_bytes(bytes.fromhex(msgs[0]["body"]))

    def rebuilt(*, signed_pre_key_id: int = pm.signed_pre_key_id, pre_key_id: int | None = pm.pre_key_id) -> str:
        return encode_prekey_message(pm.registration_id, pre_key_id, signed_pre_key_id, pm.base_key, pm.identity_key,
                                     pm.message.serialized).hex()

    setup = {"new_identity": bob.new_identity()}
    f.case(resp, "message names signed prekey id + 1", "invalid", ["UnknownSignedPreKey", "StateSafety"], setup=setup,
           steps=[step(msgs[0], body=rebuilt(signed_pre_key_id=pm.signed_pre_key_id + 1), expect="reject",
                       error="NoSignedPreKeyError"), {**msgs[0], "probe": True}])
    f.case(resp, "message names one-time prekey id + 1", "invalid", ["UnknownPreKey", "StateSafety"], setup=setup,
           steps=[step(msgs[0], body=rebuilt(pre_key_id=(pm.pre_key_id or 0) + 1), expect="reject",
                       error="NoPreKeyError"), {**msgs[0], "probe": True}])

    carol = await Party("carol", rng, registration_id=2002).setup()
    await carol.cipher.process_bundle(bob.address, bob.bundle(with_prekey=True))
    c1 = await carol.send(bob, b"from carol")
    f.case(resp, "a second initiator reuses the consumed one-time prekey", "invalid", ["OneTimePreKey", "PreKeyReuse", "StateSafety"],
           setup=setup, steps=[msgs[0], step(c1, expect="reject", error="NoPreKeyError"), {**msgs[1], "probe": True}])

    mallory = await Party("alice", rng, registration_id=2003).setup()
    await mallory.cipher.process_bundle(bob.address, bob.bundle(with_prekey=False))
    m1 = await mallory.send(bob, b"same name, new identity")
    f.case(resp, "PreKeySignalMessage from a known address with a new identity key", "invalid", ["IdentityChange", "StateSafety"],
           setup=setup, steps=[msgs[0], step(m1, expect="reject", error="UntrustedIdentityError"), {**msgs[1], "probe": True}])

    derive = f.group("X3DHKeyAgreement", role="responder",
                     procedure="every intermediate of X3DH and of the first message key (values for debugging); "
                               "as a test: new_identity(setup.new_identity), then decrypt the steps")
    for what, flag, setup_, first, values in derivations:
        f.case(derive, f"X3DH {what} one-time prekey, step by step", "valid", [flag], setup=setup_, steps=[first],
               **values)

    init = f.group("X3DHInitiator", role="initiator",
                   procedure="new_identity() with any keys; then process_bundle(remote='bob', bundle); valid = accepted")
    b = bob.bundle(with_prekey=True).to_dict()
    nb = bob.bundle(with_prekey=False).to_dict()
    f.case(init, "bundle with one-time prekey", "valid", ["OneTimePreKey"], bundle=b)
    f.case(init, "bundle without one-time prekey", "valid", ["NoOneTimePreKey"], bundle=nb)
    sig = bytes.fromhex(b["signed_prekey_signature"])
    f.case(init, "signature with a flipped bit in R", "invalid", ["BadBundleSignature"],
           bundle={**b, "signed_prekey_signature": flip(sig, 0).hex()}, error="InvalidSignatureError")
    f.case(init, "signature with a flipped bit in s", "invalid", ["BadBundleSignature"],
           bundle={**b, "signed_prekey_signature": flip(sig, 40).hex()}, error="InvalidSignatureError")
    f.case(init, "all-zero signature", "invalid", ["BadBundleSignature"],
           bundle={**nb, "signed_prekey_signature": bytes(64).hex()}, error="InvalidSignatureError")
    other = KeyPair(PrivateKey(clamp(rng(32))))
    forged = xeddsa_sign(other.private.to_bytes(), bytes.fromhex(b["signed_prekey"]), rng(64))
    f.case(init, "signed prekey signed by another identity key", "invalid", ["BadBundleSignature"],
           bundle={**b, "signed_prekey_signature": forged.hex()}, error="InvalidSignatureError")
    f.case(init, "signed prekey replaced by the one-time prekey (signature over the other key)", "invalid",
           ["BadBundleSignature"], bundle={**b, "signed_prekey": b["prekey"]}, error="InvalidSignatureError")
    f.case(init, "signed prekey with type byte 0x06", "invalid", ["BadKeyType"],
           bundle={**b, "signed_prekey": "06" + b["signed_prekey"][2:]})
    return f.to_json()


def build(seed: str) -> dict[str, Any]:
    return trio.run(_build, seed)
