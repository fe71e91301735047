"""AES-256-CBC with strict PKCS#7, through OpenSSL (``cryptography``)."""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher
from cryptography.hazmat.primitives.ciphers.algorithms import AES
from cryptography.hazmat.primitives.ciphers.modes import CBC

_PADS = [bytes([n]) * n for n in range(17)]


def pkcs7_pad(data: bytes) -> bytes:
    n = 16 - (len(data) & 15)
    return data + _PADS[n]


def pkcs7_unpad(data: bytes) -> bytes | None:
    """Strict PKCS#7 removal; None if the padding is malformed."""
    if not data or len(data) & 15:
        return None
    n = data[-1]
    if n < 1 or n > 16 or data[-n:] != _PADS[n]:
        return None
    return data[:-n]


def cbc_encrypt(key: bytes, iv: bytes, plaintext: bytes) -> bytes:
    """AES-256-CBC of PKCS#7-padded ``plaintext`` (always a pad block on aligned input)."""
    enc = Cipher(AES(key), CBC(iv)).encryptor()
    return enc.update(pkcs7_pad(plaintext)) + enc.finalize()


def cbc_decrypt(key: bytes, iv: bytes, ciphertext: bytes) -> bytes | None:
    """AES-256-CBC decryption with strict unpadding; None on any failure (no oracle)."""
    if not ciphertext or len(ciphertext) & 15:
        return None
    dec = Cipher(AES(key), CBC(iv)).decryptor()
    return pkcs7_unpad(dec.update(ciphertext) + dec.finalize())
