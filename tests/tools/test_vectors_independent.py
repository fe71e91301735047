"""The vector families outside the peer protocol, checked by code that shares nothing with
wacrypto: media by the published scheme written out here with ``cryptography`` and ``hmac``
(HKDF, AES-256-CBC, HMAC-SHA256/10, the sidecar formula), the Noise handshake and transport frames
by dissononce (an independent Noise implementation) configured for WhatsApp's variant. (The Signal
families are checked by python-axolotl and libsignal, the stanzas by Baileys: tests/interop.)"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from dissononce.cipher.aesgcm import AESGCMCipher
from dissononce.dh.private import PrivateKey as DPrivateKey
from dissononce.dh.x25519.x25519 import X25519DH
from dissononce.hash.sha256 import SHA256Hash
from dissononce.processing.handshakepatterns.interactive.XX import XXHandshakePattern
from dissononce.processing.impl.cipherstate import CipherState as DCipherState
from dissononce.processing.impl.handshakestate import HandshakeState as DHandshakeState
from dissononce.processing.impl.symmetricstate import SymmetricState as DSymmetricState

from wacrypto.tools.vectors import media, noise


@pytest.fixture(scope="module")
def media_vectors() -> dict[str, Any]:
    return media.build("wacrypto-vectors-1")


@pytest.fixture(scope="module")
def noise_vectors() -> dict[str, Any]:
    return noise.build("wacrypto-vectors-1")


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


# --------------------------------------------------------------------------- Noise, by dissononce
class _WASymmetricState(DSymmetricState):  # type: ignore[misc]
    """WhatsApp's one change to Noise's symmetric state: an empty payload before any key is not hashed."""

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        if not self.cipherstate_has_key() and plaintext == b"":
            return b""
        return super().encrypt_and_hash(plaintext)  # type: ignore[no-any-return]

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        if not self.cipherstate_has_key() and ciphertext == b"":
            return b""
        return super().decrypt_and_hash(ciphertext)  # type: ignore[no-any-return]


class _FixedDH(X25519DH):  # type: ignore[misc]
    def __init__(self, ephemeral: bytes) -> None:
        super().__init__()
        self._e: bytes | None = ephemeral

    def generate_keypair(self, privatekey: Any = None) -> Any:
        if privatekey is None and self._e is not None:
            privatekey, self._e = DPrivateKey(self._e), None
        return super().generate_keypair(privatekey)


def _d_state(initiator: bool, static: str, ephemeral: str, prologue: bytes) -> Any:
    hs = DHandshakeState(_WASymmetricState(DCipherState(AESGCMCipher()), SHA256Hash()), _FixedDH(bytes.fromhex(ephemeral)))
    hs.initialize(XXHandshakePattern(), initiator, prologue, s=X25519DH().generate_keypair(DPrivateKey(bytes.fromhex(static))))
    return hs


def _fields(message_hex: str, kind: str) -> bytes:
    """ephemeral || static || payload of a serialized HandshakeMessage, parsed by hand here (field
    numbers from proto/noise.proto: client_hello 2, server_hello 3, client_finish 4; in the hellos
    ephemeral 1, static 2, payload 3; in the finish static 1, payload 2: number order is token order)."""
    data = bytes.fromhex(message_hex)

    def fields(buf: bytes) -> dict[int, bytes]:
        out, i = {}, 0
        while i < len(buf):
            key, i = _varint(buf, i)
            assert key & 7 == 2, "only length-delimited fields in these messages"
            n, i = _varint(buf, i)
            out[key >> 3] = buf[i:i + n]
            i += n
        return out

    sub = fields(data)[{"client_hello": 2, "server_hello": 3, "client_finish": 4}[kind]]
    f = fields(sub)
    return f.get(1, b"") + f.get(2, b"") + f.get(3, b"")


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def test_noise_handshake_and_frames_match_dissononce(noise_vectors: dict[str, Any]) -> None:
    (v,) = _tests(noise_vectors, "NoiseHandshake")
    prologue = bytes.fromhex(v["prologue"])
    ini = _d_state(True, v["client_static_private"], v["client_ephemeral_private"], prologue)
    res = _d_state(False, v["server_static_private"], v["server_ephemeral_private"], prologue)
    buf = bytearray()
    ini.write_message(b"", buf)
    assert bytes(buf) == _fields(v["client_hello"], "client_hello")
    res.read_message(bytes(buf), bytearray())
    buf = bytearray()
    res.write_message(bytes.fromhex(v["server_payload"]), buf)
    assert bytes(buf) == _fields(v["server_hello"], "server_hello")
    out = bytearray()
    ini.read_message(bytes(buf), out)
    assert out.hex() == v["server_payload"]
    buf = bytearray()
    c2s, s2c = ini.write_message(bytes.fromhex(v["client_payload"]), buf)
    assert bytes(buf) == _fields(v["client_finish"], "client_finish")
    assert ini.symmetricstate.get_handshake_hash().hex() == v["handshake_hash"]
    # the client stream is the WA header, then 3-byte length-prefixed frames
    m1, m3 = bytes.fromhex(v["client_hello"]), bytes.fromhex(v["client_finish"])
    assert v["client_stream"] == (prologue + len(m1).to_bytes(3, "big") + m1 + len(m3).to_bytes(3, "big") + m3).hex()
    transports = {t["direction"]: t for t in _tests(noise_vectors, "NoiseTransport") if t["result"] == "valid"}
    for direction, cs in (("client_to_server", c2s), ("server_to_client", s2c)):
        for fr in transports[direction]["frames"]:
            assert cs.encrypt_with_ad(b"", bytes.fromhex(fr["plaintext"])).hex() == fr["ciphertext"], direction


def test_tampered_handshake_messages_fail_in_dissononce(noise_vectors: dict[str, Any]) -> None:
    (v,) = _tests(noise_vectors, "NoiseHandshake")
    bad = _tests(noise_vectors, "NoiseHandshakeInvalid")
    assert bad
    for tc in bad:
        reader_prologue = bytes.fromhex(tc.get("reader_prologue", v["prologue"]))
        prologue = bytes.fromhex(v["prologue"])
        ini = _d_state(True, v["client_static_private"], v["client_ephemeral_private"],
                       reader_prologue if tc["reader"] == "initiator" else prologue)
        res = _d_state(False, v["server_static_private"], v["server_ephemeral_private"],
                       reader_prologue if tc["reader"] == "responder" else prologue)
        buf = bytearray()
        ini.write_message(b"", buf)
        res.read_message(bytes(buf), bytearray())
        buf = bytearray()
        res.write_message(bytes.fromhex(v["server_payload"]), buf)
        if tc["reader"] == "initiator":
            reader, raw = ini, _fields(tc["message"], "server_hello")
        else:
            ini.read_message(bytes(buf), bytearray())
            ini.write_message(bytes.fromhex(v["client_payload"]), bytearray())
            reader, raw = res, _fields(tc["message"], "client_finish")
        with pytest.raises(Exception):  # noqa: B017 - dissononce raises assorted errors; any refusal will do
            reader.read_message(raw, bytearray())
