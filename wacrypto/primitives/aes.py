"""AES-256-CBC with strict PKCS#7, through OpenSSL (``cryptography``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher
from cryptography.hazmat.primitives.ciphers.algorithms import AES
from cryptography.hazmat.primitives.ciphers.modes import CBC

_PADS = [bytes([n]) * n for n in range(17)]


def _public_enc(algorithm: Any, mode: Any) -> Any:
    return Cipher(algorithm, mode).encryptor()


def _public_dec(algorithm: Any, mode: Any) -> Any:
    return Cipher(algorithm, mode).decryptor()


def _select() -> tuple[Callable[[Any, Any], Any], Callable[[Any, Any], Any]]:
    """cryptography's Rust context constructors, skipping ``Cipher.__init__``'s ABC checks
    (~2 µs per message), if present and correct on a known answer; else the public API."""
    try:
        from cryptography.hazmat.bindings._rust import openssl as _ro

        enc, dec = _ro.ciphers.create_encryption_ctx, _ro.ciphers.create_decryption_ctx
        k, iv, p = bytes(range(32)), bytes(16), bytes(range(32))
        e = _public_enc(AES(k), CBC(iv))
        want = e.update(p) + e.finalize()
        c = enc(AES(k), CBC(iv))
        if c.update(p) + c.finalize() != want:
            raise ValueError
        d = dec(AES(k), CBC(iv))
        if d.update(want) + d.finalize() != p:
            raise ValueError
        return enc, dec
    except Exception:  # noqa: BLE001 - any change in the private API: use the public one
        return _public_enc, _public_dec


_enc_ctx, _dec_ctx = _select()


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
    enc = _enc_ctx(AES(key), CBC(iv))
    out: bytes = enc.update(plaintext + _PADS[16 - (len(plaintext) & 15)]) + enc.finalize()
    return out


def cbc_decrypt(key: bytes, iv: bytes, ciphertext: bytes) -> bytes | None:
    """AES-256-CBC decryption with strict unpadding; None on any failure (no oracle)."""
    if not ciphertext or len(ciphertext) & 15:
        return None
    dec = _dec_ctx(AES(key), CBC(iv))
    return pkcs7_unpad(dec.update(ciphertext) + dec.finalize())
