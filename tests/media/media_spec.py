"""A from-the-spec reference of the media scheme for tests: RFC 5869 HKDF by hand, AES-CBC by chaining
raw AES-ECB blocks, PKCS#7 by hand, and the sidecar computed over the whole ``S`` in memory.

Deliberately simple and slow; it shares no code with ``wacrypto.media``."""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

INFO = {
    "image": b"WhatsApp Image Keys",
    "sticker": b"WhatsApp Image Keys",
    "video": b"WhatsApp Video Keys",
    "gif": b"WhatsApp Video Keys",
    "ptv": b"WhatsApp Video Keys",
    "audio": b"WhatsApp Audio Keys",
    "voice": b"WhatsApp Audio Keys",
    "document": b"WhatsApp Document Keys",
    "history": b"WhatsApp History Keys",
    "app_state": b"WhatsApp App State Keys",
    "sticker_pack": b"WhatsApp Sticker Pack Keys",
    "link_thumbnail": b"WhatsApp Link Thumbnail Keys",
}


def hkdf(ikm: bytes, info: bytes, length: int = 112) -> bytes:
    prk = hmac.new(b"\x00" * 32, ikm, hashlib.sha256).digest()  # salt = none -> HashLen zeros
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([i]), hashlib.sha256).digest()
        out += block
        i += 1
    return out[:length]


def keys(media_key: bytes, type_name: str) -> tuple[bytes, bytes, bytes, bytes]:
    x = hkdf(media_key, INFO[type_name])
    return x[0:16], x[16:48], x[48:80], x[80:112]


def encrypt(media_key: bytes, type_name: str, plaintext: bytes) -> tuple[bytes, bytes]:
    """Return (blob, sidecar-over-S)."""
    iv, ck, mk, _ = keys(media_key, type_name)
    pad = 16 - len(plaintext) % 16
    padded = plaintext + bytes([pad]) * pad
    ecb = Cipher(algorithms.AES(ck), modes.ECB()).encryptor()
    prev, ct = iv, bytearray()
    for pos in range(0, len(padded), 16):
        block = bytes(a ^ b for a, b in zip(padded[pos : pos + 16], prev))
        prev = ecb.update(block)
        ct += prev
    mac = hmac.new(mk, iv + bytes(ct), hashlib.sha256).digest()[:10]
    blob = bytes(ct) + mac
    return blob, sidecar(mk, iv + blob)


def sidecar(mac_key: bytes, s: bytes) -> bytes:
    out = b""
    n = 0
    while n * 65536 < len(s):
        out += hmac.new(mac_key, s[n * 65536 : (n + 1) * 65536 + 16], hashlib.sha256).digest()[:10]
        n += 1
    return out
