"""Cryptographic primitives: Curve25519 keys with XEdDSA, HKDF/HMAC steps, AES, constant-time compare.

Pure functions over bytes; no I/O, no clocks. Randomness is a parameter (``rng``) where it is used.
"""

from wacrypto.primitives.keys import (
    IdentityKeyPair,
    KeyPair,
    PrivateKey,
    PublicKey,
    Rng,
    system_rng,
)
from wacrypto.primitives.xeddsa import xeddsa_sign, xeddsa_verify

__all__ = [
    "IdentityKeyPair",
    "KeyPair",
    "PrivateKey",
    "PublicKey",
    "Rng",
    "system_rng",
    "xeddsa_sign",
    "xeddsa_verify",
]
