"""WhatsApp media encryption: every media class (HKDF info string), the expanded keys, blobs,
hashes and streaming sidecars, and the tampered blobs a receiver must refuse.

Checked in process (the peer protocol has no media commands). The scheme is in
``docs/protocol-notes.md`` section 3; a case gives ``media_key`` and ``media_type`` (the message
class) and expects ``plaintext`` back from ``blob`` only when ``result`` is valid.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Callable

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from wacrypto.errors import MediaIntegrityError
from wacrypto.media import MediaType, decrypt, derive_media_keys, encrypt, sidecar_window, verify_sidecar_chunk
from wacrypto.tools.vectors.common import VectorFile, expect, family_rng, flip

FAMILY = "media"

NOTES = {
    "Sidecar": "A video or audio class: the blob has a streaming sidecar (10-byte HMAC per 64 KiB window + 16).",
    "EmptyFile": "A zero-length plaintext (one block of padding).",
    "BlockBoundary": "The plaintext length is a multiple of 16 (a whole block of padding).",
    "TamperedCiphertext": "A ciphertext byte is flipped.",
    "TamperedMac": "A byte of the 10-byte MAC is flipped.",
    "Truncated": "The blob is cut short.",
    "WrongMediaType": "Decrypted with another class's keys (the HKDF info string decides).",
    "WrongFileEncSha256": "file_enc_sha256 does not match the blob.",
    "WrongFileSha256": "file_sha256 does not match the plaintext.",
    "BadPadding": "A correctly MACed blob whose PKCS#7 padding is malformed.",
    "TamperedSidecarChunk": "A byte of a sidecar window is flipped.",
}


def build(seed: str) -> dict[str, Any]:
    rng = family_rng(seed, FAMILY)
    f = VectorFile(FAMILY, "WhatsApp media encryption (HKDF-SHA256, AES-256-CBC, HMAC-SHA256/10, sidecar)", seed,
                   "Media keys and plaintexts from the seeded RNG; blobs by wacrypto.media.encrypt.", NOTES)
    g = f.group("MediaDecrypt", procedure="expand media_key with HKDF(info of media_type, 112 bytes); verify and decrypt blob")
    sizes = {MediaType.VIDEO: 70000, MediaType.AUDIO: 65537}
    first: dict[str, Any] = {}
    for i, mt in enumerate(MediaType):
        key = rng(32)
        n = sizes.get(mt, (0, 1, 15, 16, 17, 100, 1000, 31, 32, 48, 4096, 5)[i % 12])
        pt = rng(n)
        blob, info = encrypt(pt, mt, key)
        keys = derive_media_keys(key, mt)
        flags = (["Sidecar"] if info.sidecar else []) + (["EmptyFile"] if n == 0 else []) + (["BlockBoundary"] if n % 16 == 0 and n else [])
        tc = f.case(g, f"{mt.value}: {n}-byte file", "valid", flags, media_type=mt.value, hkdf_info=mt.info.decode(),
                    media_key=key.hex(), iv=keys.iv.hex(), cipher_key=keys.cipher_key.hex(), mac_key=keys.mac_key.hex(),
                    ref_key=keys.ref_key.hex(), plaintext=pt.hex(), blob=blob.hex(), mac=info.mac.hex(),
                    file_sha256=info.file_sha256.hex(), file_enc_sha256=info.file_enc_sha256.hex(), file_length=n,
                    **({"sidecar": info.sidecar.hex()} if info.sidecar else {}))
        if mt is MediaType.IMAGE:
            first = tc
    base = {k: first[k] for k in ("media_type", "media_key", "file_sha256", "file_enc_sha256")}
    blob = bytes.fromhex(first["blob"])

    def bad(comment: str, flags: list[str], blob_: bytes, **kw: Any) -> None:
        f.case(g, comment, "invalid", flags, **{**base, "blob": blob_.hex(), **kw})

    keyless = {"file_sha256": None, "file_enc_sha256": None}
    bad("image: first ciphertext byte flipped (no hashes given)", ["TamperedCiphertext"], flip(blob, 0), **keyless)
    bad("image: last ciphertext byte flipped (no hashes given)", ["TamperedCiphertext"], flip(blob, -11), **keyless)
    bad("image: MAC byte flipped (no hashes given)", ["TamperedMac"], flip(blob, -1), **keyless)
    bad("image: MAC cut off", ["Truncated"], blob[:-10], **keyless)
    bad("image: one byte short", ["Truncated"], blob[:-1], **keyless)
    bad("image: empty blob", ["Truncated"], b"", **keyless)
    bad("image blob decrypted as a document", ["WrongMediaType"], blob, media_type="document", **keyless)
    f.case(g, "image blob decrypted as a sticker (same info string: valid)", "valid", [],
           **{**base, "media_type": "sticker", "blob": first["blob"], "plaintext": first["plaintext"]})
    bad("file_enc_sha256 of another blob", ["WrongFileEncSha256"], blob, file_enc_sha256=hashlib.sha256(b"x").hexdigest())
    bad("file_sha256 of another file", ["WrongFileSha256"], blob, file_sha256=hashlib.sha256(b"x").hexdigest())
    keys = derive_media_keys(bytes.fromhex(base["media_key"]), MediaType.IMAGE)
    for pad, what in ((b"\x00" * 16, "zero padding byte"), (b"\x11" * 16, "padding length 17"),
                      (b"A" * 15 + b"\x02", "padding bytes differ")):
        enc = Cipher(algorithms.AES(keys.cipher_key), modes.CBC(keys.iv)).encryptor()
        ct = enc.update(b"media" * 6 + b"!!" + pad) + enc.finalize()
        mac = hmac.new(keys.mac_key, keys.iv + ct, hashlib.sha256).digest()[:10]
        bad(f"MAC valid, {what}", ["BadPadding"], ct + mac, **keyless)

    g = f.group("MediaSidecar", procedure="chunk = blob[start:end] of the MediaDecrypt case blobTcId, with the byte at "
                                          "offset `flip` of the chunk XOR 1 when given; verify chunk against sidecar entry "
                                          "`index` (HMAC-SHA256(mac_key, chunk, window 0 prefixed with the iv)[:10])")
    for tc in [t for t in f.to_json()["testGroups"][0]["tests"] if "sidecar" in t]:
        blob_ = bytes.fromhex(tc["blob"])
        for idx in range(len(bytes.fromhex(tc["sidecar"])) // 10):
            start, end = sidecar_window(idx, len(blob_))
            common = dict(blobTcId=tc["tcId"], media_type=tc["media_type"], media_key=tc["media_key"],
                          sidecar=tc["sidecar"], index=idx, blob_length=len(blob_), start=start, end=end)
            f.case(g, f"{tc['media_type']}: window {idx}", "valid", ["Sidecar"], **common)
            f.case(g, f"{tc['media_type']}: window {idx} with a flipped byte", "invalid", ["Sidecar", "TamperedSidecarChunk"],
                   flip=(end - start) // 2, **common)
    return f.to_json()


def _opt(tc: dict[str, Any], name: str) -> bytes | None:
    v = tc.get(name)
    return bytes.fromhex(v) if isinstance(v, str) else None


def check_decrypt(data: dict[str, Any], group: dict[str, Any], tc: dict[str, Any]) -> None:
    try:
        pt = decrypt(bytes.fromhex(tc["blob"]), MediaType.parse(tc["media_type"]), bytes.fromhex(tc["media_key"]),
                     file_enc_sha256=_opt(tc, "file_enc_sha256"), file_sha256=_opt(tc, "file_sha256"))
    except MediaIntegrityError:
        expect(tc["result"] != "valid", "valid blob refused")
        return
    expect(tc["result"] != "invalid", "invalid blob accepted")
    expect(pt.hex() == tc["plaintext"], "wrong plaintext")
    if "sidecar" in tc:
        _, info = encrypt(pt, MediaType.parse(tc["media_type"]), bytes.fromhex(tc["media_key"]))
        expect(info.sidecar is not None and info.sidecar.hex() == tc["sidecar"], "wrong sidecar")


def check_sidecar(data: dict[str, Any], group: dict[str, Any], tc: dict[str, Any]) -> None:
    blob = bytes.fromhex(next(t["blob"] for g in data["testGroups"] for t in g["tests"] if t["tcId"] == tc["blobTcId"]))
    keys = derive_media_keys(bytes.fromhex(tc["media_key"]), MediaType.parse(tc["media_type"]))
    expect(sidecar_window(tc["index"], tc["blob_length"]) == (tc["start"], tc["end"]), "wrong window")
    try:
        chunk = blob[tc["start"]:tc["end"]]
        if "flip" in tc:
            chunk = flip(chunk, tc["flip"])
        verify_sidecar_chunk(keys, bytes.fromhex(tc["sidecar"]), tc["index"], chunk,
                             blob_length=tc["blob_length"])
    except MediaIntegrityError:
        expect(tc["result"] != "valid", "valid window refused")
        return
    expect(tc["result"] != "invalid", "tampered window accepted")


LOCAL_CHECKS: dict[str, Callable[[dict[str, Any], dict[str, Any], dict[str, Any]], None]] = {
    "MediaDecrypt": check_decrypt, "MediaSidecar": check_sidecar,
}
