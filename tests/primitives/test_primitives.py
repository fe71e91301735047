"""Primitives: known answers, XEdDSA, DH edge cases."""

from __future__ import annotations

import os

import pytest

from wacrypto.errors import InvalidArgumentError, InvalidKeyError
from wacrypto.primitives.aes import cbc_decrypt, cbc_encrypt, pkcs7_unpad
from wacrypto.primitives.kdf import chain_step, hkdf_sha256
from wacrypto.primitives.keys import KeyPair, PrivateKey, PublicKey
from wacrypto.primitives.xeddsa import xeddsa_sign, xeddsa_verify
from wacrypto.signal.ratchet import message_keys


def test_chain_key_known_answer() -> None:
    # Known-answer data from the protocol notes (libsignal's chain-key test case).
    ck = bytes.fromhex("8ab72d6f4cc5ac0d387eaf463378ddb28edd07385b1cb01250c715982e7ad48f")
    seed, nxt = chain_step(ck)
    cipher_key, mac_key, iv = message_keys(seed)
    assert cipher_key.hex() == "bf51e9d75e0e31031051f82a2491ffc084fa298b7793bd9db620056febf45217"
    assert mac_key.hex() == "c6c77d6a73a354337a56435e34607dfe48e3ace14e77314dc6abc172e7a7030b"
    assert iv.hex() == "afa8207986b692a116d4b40bbff72d6c"
    assert nxt.hex() == "28e8f8fee54b801eef7c5cfb2f17f32c7b334485bbb70fac6ec10342a246d15d"


def test_hkdf_rfc5869_case1() -> None:
    # RFC 5869 test case 1.
    ikm = bytes.fromhex("0b" * 22)
    salt = bytes.fromhex("000102030405060708090a0b0c")
    info = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9")
    okm = hkdf_sha256(ikm, salt, info, 42)
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


def test_x25519_rfc7748_vector() -> None:
    # RFC 7748 section 6.1.
    a = PrivateKey(bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"))
    b = PrivateKey(bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"))
    assert a.public_key().u.hex() == "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
    assert a.exchange(b.public_key()).hex() == shared
    assert b.exchange(a.public_key()).hex() == shared


@pytest.mark.parametrize("u", [bytes(32), (1).to_bytes(32, "little")])
def test_all_zero_dh_output_rejected(u: bytes) -> None:
    with pytest.raises(InvalidKeyError):
        PrivateKey.generate().exchange(PublicKey(u))


def test_public_key_serialization_edges() -> None:
    k = KeyPair.generate().public
    assert len(k.to_bytes()) == 33 and k.to_bytes()[0] == 5
    assert PublicKey.from_bytes(k.to_bytes()) == k
    for bad in (k.to_bytes()[1:], k.to_bytes() + b"\0", b"\x06" + k.u, b""):
        with pytest.raises(InvalidKeyError):
            PublicKey.from_bytes(bad)
    with pytest.raises(InvalidArgumentError):
        PrivateKey(b"\0" * 31)


def test_private_key_repr_shows_no_key_bytes() -> None:
    k = PrivateKey.generate()
    assert k.to_bytes().hex() not in repr(k)
    assert k.to_bytes().hex() not in repr(KeyPair(k))


@pytest.mark.parametrize("msglen", [0, 1, 33, 1000])
def test_xeddsa_round_trip_and_tamper(msglen: int) -> None:
    for _ in range(10):
        k = PrivateKey.generate()
        m = os.urandom(msglen)
        sig = k.sign(m)
        pub = k.public_key()
        assert xeddsa_verify(pub.to_bytes(), m, sig)
        assert xeddsa_verify(pub.u, m, sig)
        assert not xeddsa_verify(pub.u, m + b"x", sig)
        for i in (0, 31, 32, 62, 63):
            bad = bytearray(sig)
            bad[i] ^= 0x01
            assert not xeddsa_verify(pub.u, m, bytes(bad))
        assert not xeddsa_verify(PrivateKey.generate().public_key().u, m, sig)


def test_xeddsa_is_deterministic_given_randomness() -> None:
    k = bytes(range(32))
    assert xeddsa_sign(k, b"m", bytes(64)) == xeddsa_sign(k, b"m", bytes(64))
    assert xeddsa_sign(k, b"m", bytes(64)) != xeddsa_sign(k, b"m", b"\x01" * 64)


def test_xeddsa_rejects_malformed_inputs() -> None:
    k = PrivateKey.generate()
    sig = k.sign(b"m")
    pub = k.public_key().u
    assert not xeddsa_verify(pub, b"m", sig[:63])
    assert not xeddsa_verify(pub[:31], b"m", sig)
    assert not xeddsa_verify(b"\x06" + pub, b"m", sig)
    high = bytearray(sig)
    high[63] |= 0x60  # s with high bits set is rejected
    assert not xeddsa_verify(pub, b"m", bytes(high))
    # u = p - 1 has no Edwards image
    p_minus_1 = (2**255 - 20).to_bytes(32, "little")
    assert not xeddsa_verify(p_minus_1, b"m", sig)


@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 31, 32, 1000])
def test_cbc_padding_edges(n: int) -> None:
    key, iv = os.urandom(32), os.urandom(16)
    pt = os.urandom(n)
    ct = cbc_encrypt(key, iv, pt)
    assert len(ct) == (n // 16 + 1) * 16  # always padded, a full block on aligned input
    assert cbc_decrypt(key, iv, ct) == pt
    assert cbc_decrypt(key, iv, ct[:-1]) is None
    assert cbc_decrypt(key, iv, b"") is None


def test_strict_pkcs7() -> None:
    assert pkcs7_unpad(b"a" * 15 + b"\x01") == b"a" * 15
    assert pkcs7_unpad(b"a" * 14 + b"\x01\x02") is None
    assert pkcs7_unpad(b"a" * 15 + b"\x00") is None
    assert pkcs7_unpad(b"a" * 15 + b"\x11") is None
    assert pkcs7_unpad(b"\x10" * 16) == b""
