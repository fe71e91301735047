"""The media vector family, checked by code that shares nothing with wacrypto: the published scheme
written out here with ``cryptography`` and ``hmac`` (HKDF, AES-256-CBC, HMAC-SHA256/10, the sidecar
formula). (The Signal families are checked by python-axolotl and libsignal, the Noise family by
dissononce, the stanzas by Baileys: tests/interop.)"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from wacrypto.tools.vectors import media


@pytest.fixture(scope="module")
def media_vectors() -> dict[str, Any]:
    return media.build("wacrypto-vectors-1")


def _tests(data: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [t for g in data["testGroups"] if g["type"] == kind for t in g["tests"]]


# --------------------------------------------------------------------------- media, by the scheme
INFO = {"image": "Image", "sticker": "Image", "video": "Video", "gif": "Video", "ptv": "Video", "audio": "Audio",
        "voice": "Audio", "document": "Document", "history": "History", "app_state": "App State",
        "sticker_pack": "Sticker Pack", "link_thumbnail": "Link Thumbnail"}


def _expand(media_key: bytes, media_type: str) -> bytes:
    info = f"WhatsApp {INFO[media_type]} Keys".encode()
    return HKDF(algorithm=hashes.SHA256(), length=112, salt=None, info=info).derive(media_key)


def _spec_decrypt(tc: dict[str, Any]) -> bytes | None:
    """The plaintext, or None where a receiver following the scheme refuses the blob."""
    x = _expand(bytes.fromhex(tc["media_key"]), tc["media_type"])
    iv, ck, mk = x[:16], x[16:48], x[48:80]
    blob = bytes.fromhex(tc["blob"])
    if tc.get("file_enc_sha256") and hashlib.sha256(blob).hexdigest() != tc["file_enc_sha256"]:
        return None
    ct, mac = blob[:-10], blob[-10:]
    if len(blob) < 26 or len(ct) % 16 or not hmac.compare_digest(hmac.new(mk, iv + ct, hashlib.sha256).digest()[:10], mac):
        return None
    padded = Cipher(algorithms.AES(ck), modes.CBC(iv)).decryptor().update(ct)
    n = padded[-1]
    if not 1 <= n <= 16 or padded[-n:] != bytes([n]) * n:
        return None
    unpadder = padding.PKCS7(128).unpadder()
    pt = unpadder.update(padded) + unpadder.finalize()
    if tc.get("file_sha256") and hashlib.sha256(pt).hexdigest() != tc["file_sha256"]:
        return None
    return pt


def test_media_blobs_decrypt_by_the_scheme(media_vectors: dict[str, Any]) -> None:
    cases = _tests(media_vectors, "MediaDecrypt")
    for tc in cases:
        got = _spec_decrypt(tc)
        if tc["result"] == "valid":
            assert got is not None and got.hex() == tc["plaintext"], tc["comment"]
            x = _expand(bytes.fromhex(tc["media_key"]), tc["media_type"])
            if "iv" in tc:
                assert (tc["iv"], tc["cipher_key"], tc["mac_key"], tc["ref_key"]) == (
                    x[:16].hex(), x[16:48].hex(), x[48:80].hex(), x[80:].hex())
        else:
            assert got is None, tc["comment"]
    assert sum(t["result"] == "invalid" for t in cases) >= 10


def test_media_sidecars_by_the_formula(media_vectors: dict[str, Any]) -> None:
    with_sidecar = [t for t in _tests(media_vectors, "MediaDecrypt") if "sidecar" in t]
    assert {t["media_type"] for t in with_sidecar} == {"video", "gif", "ptv", "audio", "voice"}
    for tc in with_sidecar:
        x = _expand(bytes.fromhex(tc["media_key"]), tc["media_type"])
        s = x[:16] + bytes.fromhex(tc["blob"])
        want = b"".join(hmac.new(x[48:80], s[n:n + 65536 + 16], hashlib.sha256).digest()[:10]
                        for n in range(0, len(s), 65536))
        assert want.hex() == tc["sidecar"], tc["comment"]
    blobs = {t["tcId"]: bytes.fromhex(t["blob"]) for t in with_sidecar}
    for tc in _tests(media_vectors, "MediaSidecar"):
        x = _expand(bytes.fromhex(tc["media_key"]), tc["media_type"])
        chunk = bytearray(blobs[tc["blobTcId"]][tc["start"]:tc["end"]])
        if "flip" in tc:
            chunk[tc["flip"]] ^= 1
        data = (x[:16] if tc["index"] == 0 else b"") + bytes(chunk)
        entry = bytes.fromhex(tc["sidecar"])[tc["index"] * 10:(tc["index"] + 1) * 10]
        ok = hmac.new(x[48:80], data, hashlib.sha256).digest()[:10] == entry
        assert ok == (tc["result"] == "valid"), tc["comment"]
