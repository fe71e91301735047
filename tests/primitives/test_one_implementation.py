"""The one implementation of each primitive, checked against independent references.

HMAC and HKDF against the standard library and ``cryptography``; XEdDSA against a reference
written from the spec with libsodium's scalar arithmetic (the algorithm the package used before
the signer precomputed its key), and its verifier against libsodium's Ed25519 on the converted key.
"""

from __future__ import annotations

import hashlib
import hmac
import os

import nacl.bindings as nacl
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from wacrypto.errors import InvalidArgumentError, InvalidMessageError, LegacyMessageError
from wacrypto.primitives.kdf import chain_step, hkdf_info, hkdf_sha256, hkdf_sha256_blocks, hmac_sha256
from wacrypto.primitives.keys import KeyPair, PrivateKey, clamp
from wacrypto.primitives.protobuf import parse_message
from wacrypto.primitives.xeddsa import XEdDSASigner, montgomery_to_edwards, xeddsa_sign, xeddsa_verify


def _reference_xeddsa_sign(private_key: bytes, message: bytes, random64: bytes) -> bytes:
    k = bytearray(private_key)
    k[0] &= 248
    k[31] = (k[31] & 127) | 64
    a = nacl.crypto_core_ed25519_scalar_reduce(bytes(k) + bytes(32))
    big_a = nacl.crypto_scalarmult_ed25519_base_noclamp(a)
    r = nacl.crypto_core_ed25519_scalar_reduce(hashlib.sha512(b"\xfe" + b"\xff" * 31 + bytes(k) + message + random64).digest())
    big_r = nacl.crypto_scalarmult_ed25519_base_noclamp(r)
    h = nacl.crypto_core_ed25519_scalar_reduce(hashlib.sha512(big_r + big_a + message).digest())
    s = bytearray(nacl.crypto_core_ed25519_scalar_add(nacl.crypto_core_ed25519_scalar_mul(h, a), r))
    s[31] = (s[31] & 0x7F) | (big_a[31] & 0x80)
    return big_r + bytes(s)


def _reference_xeddsa_verify(public_u: bytes, message: bytes, signature: bytes) -> bool:
    ed = montgomery_to_edwards(public_u, signature[63] >> 7)
    sig = bytearray(signature)
    sig[63] &= 0x7F
    if ed is None or sig[63] & 0xE0:
        return False
    try:
        nacl.crypto_sign_open(bytes(sig) + message, ed)
    except Exception:  # noqa: BLE001 - any libsodium refusal is "does not verify"
        return False
    return True


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200), st.binary(max_size=100))
def test_hmac_matches_stdlib(key: bytes, msg: bytes) -> None:
    assert hmac_sha256(key, msg) == hmac.digest(key, msg, "sha256")


def test_chain_step_is_two_hmacs() -> None:
    ck = os.urandom(32)
    assert chain_step(ck) == (hmac.digest(ck, b"\x01", "sha256"), hmac.digest(ck, b"\x02", "sha256"))


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=80), st.one_of(st.none(), st.binary(max_size=80)), st.binary(max_size=40),
       st.integers(1, 300))
def test_hkdf_matches_cryptography(ikm: bytes, salt: bytes | None, info: bytes, length: int) -> None:
    want = HKDF(hashes.SHA256(), length, salt or None, info).derive(ikm)
    assert hkdf_sha256(ikm, salt, info, length) == want
    assert b"".join(hkdf_sha256_blocks(ikm, salt, hkdf_info(info, length)))[:length] == want


def test_hkdf_for_media_keys_is_112_bytes() -> None:
    key = os.urandom(32)
    out = hkdf_sha256(key, None, b"WhatsApp Image Keys", 112)
    assert out == HKDF(hashes.SHA256(), 112, None, b"WhatsApp Image Keys").derive(key)


def test_hkdf_length_is_bounded() -> None:
    for bad in (0, -1, 255 * 32 + 1):
        with pytest.raises(InvalidArgumentError):
            hkdf_sha256(b"k", None, b"", bad)


def test_noise_mixkey_is_the_shared_hkdf() -> None:
    from wacrypto.transport.noise import hkdf2

    ck, ikm = os.urandom(32), os.urandom(32)
    temp = hmac.digest(ck, ikm, "sha256")
    out1 = hmac.digest(temp, b"\x01", "sha256")
    assert hkdf2(ck, ikm) == (out1, hmac.digest(temp, out1 + b"\x02", "sha256"))
    assert hkdf2(ck, b"")[0] == hmac.digest(hmac.digest(ck, b"", "sha256"), b"\x01", "sha256")


def test_clamp_is_rfc7748() -> None:
    k = clamp(b"\xff" * 32)
    assert k[0] == 0xF8 and k[31] == 0x7F
    assert clamp(bytes(32))[31] == 0x40
    assert PrivateKey(b"\xff" * 32).to_bytes() == k


@pytest.mark.parametrize("msglen", [0, 1, 64, 1000])
def test_signer_matches_reference_xeddsa(msglen: int) -> None:
    for _ in range(10):
        priv, z, msg = os.urandom(32), os.urandom(64), os.urandom(msglen)
        want = _reference_xeddsa_sign(priv, msg, z)
        assert XEdDSASigner(priv).sign(msg, z) == want
        assert xeddsa_sign(priv, msg, z) == want


def test_signer_reuses_its_key_for_many_messages() -> None:
    priv = os.urandom(32)
    signer = XEdDSASigner(priv)
    pub = KeyPair(PrivateKey(priv)).public.to_bytes()
    for i in range(5):
        z = os.urandom(64)
        assert signer.sign(b"%d" % i, z) == _reference_xeddsa_sign(priv, b"%d" % i, z)
        assert xeddsa_verify(pub, b"%d" % i, signer.sign(b"%d" % i, z))
    assert priv.hex() not in repr(signer)
    with pytest.raises(InvalidArgumentError):
        signer.sign(b"m", bytes(63))
    with pytest.raises(InvalidArgumentError):
        XEdDSASigner(bytes(31))


def test_verify_agrees_with_reference_on_tampering() -> None:
    kp = KeyPair.generate()
    pub = kp.public.to_bytes()
    msg = b"group message"
    sig = xeddsa_sign(kp.private.to_bytes(), msg, os.urandom(64))
    assert xeddsa_verify(pub, msg, sig) and _reference_xeddsa_verify(kp.public.u, msg, sig)
    for i in range(64):
        for bit in (0x01, 0x80):
            bad = bytearray(sig)
            bad[i] ^= bit
            assert xeddsa_verify(pub, msg, bytes(bad)) == _reference_xeddsa_verify(kp.public.u, msg, bytes(bad))
    assert not xeddsa_verify(pub, msg + b"!", sig)
    assert not xeddsa_verify(b"\x06" + pub[1:], msg, sig)
    assert not xeddsa_verify(b"\xff" * 32, msg, sig)


def test_parse_message_raises_the_callers_peer_error() -> None:
    from wacrypto._proto import storage_pb2

    rec = storage_pb2.PreKeyRecordStructure(id=7)
    assert parse_message(storage_pb2.PreKeyRecordStructure, rec.SerializeToString(), "prekey").id == 7
    with pytest.raises(InvalidMessageError, match="^prekey: malformed protobuf$"):
        parse_message(storage_pb2.PreKeyRecordStructure, b"\x0a\xff", "prekey")
    with pytest.raises(LegacyMessageError, match="^thing: longer than 3 bytes$"):
        parse_message(storage_pb2.PreKeyRecordStructure, b"\x08\x01\x08\x01", "thing", max_len=3,
                      error=LegacyMessageError)
