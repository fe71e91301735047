"""Known-answer vectors (vectors/media_vectors.json): the spec reference and wacrypto both reproduce them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from media_spec import encrypt as spec_encrypt
from media_spec import keys as spec_keys
from wacrypto.media import MediaType, decrypt, derive_media_keys, encrypt

DOC = json.loads((Path(__file__).parent / "vectors" / "media_vectors.json").read_text())
VECTORS: list[dict[str, Any]] = DOC["vectors"]


def plaintext(v: dict[str, Any]) -> bytes:
    return bytes((7 * j + v["index"]) % 256 for j in range(v["file_length"]))


def test_file_starts_with_provenance() -> None:
    text = (Path(__file__).parent / "vectors" / "media_vectors.json").read_text()
    assert text.lstrip().startswith('{\n "provenance"')
    assert "make_vectors.py" in DOC["provenance"]["made_by"]


def test_every_media_type_is_covered() -> None:
    assert {v["type"] for v in VECTORS} == {m.value for m in MediaType}


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: f"{v['index']}-{v['type']}-{v['file_length']}")
def test_vector(v: dict[str, Any]) -> None:
    key = bytes.fromhex(v["media_key"])
    mtype = MediaType(v["type"])
    pt = plaintext(v)
    if "plaintext" in v:
        assert bytes.fromhex(v["plaintext"]) == pt

    # 1. the independent from-spec reference agrees with the stored answers
    iv, ck, mk, rk = spec_keys(key, v["type"])
    assert (iv.hex(), ck.hex(), mk.hex(), rk.hex()) == (v["iv"], v["cipher_key"], v["mac_key"], v["ref_key"])
    ref_blob, ref_sidecar = spec_encrypt(key, v["type"], pt)
    assert hashlib.sha256(ref_blob).hexdigest() == v["file_enc_sha256"]
    assert hashlib.sha256(pt).hexdigest() == v["file_sha256"]
    assert ref_blob[-10:].hex() == v["mac"]
    assert len(ref_blob) == v["blob_length"]
    if "blob" in v:
        assert ref_blob.hex() == v["blob"]
    if v["sidecar"] is not None:
        assert ref_sidecar.hex() == v["sidecar"]

    # 2. wacrypto reproduces them
    keys = derive_media_keys(key, mtype)
    assert (keys.iv.hex(), keys.cipher_key.hex(), keys.mac_key.hex(), keys.ref_key.hex()) == (
        v["iv"], v["cipher_key"], v["mac_key"], v["ref_key"],
    )
    blob, info = encrypt(pt, mtype, key)
    assert blob == ref_blob
    assert info.file_enc_sha256.hex() == v["file_enc_sha256"]
    assert info.file_sha256.hex() == v["file_sha256"]
    assert info.file_length == v["file_length"]
    assert (info.sidecar.hex() if info.sidecar is not None else None) == v["sidecar"]
    assert decrypt(
        blob, mtype, key, file_sha256=info.file_sha256, file_enc_sha256=info.file_enc_sha256
    ) == pt
