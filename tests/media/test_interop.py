"""Interop with an independent implementation: Baileys 6.17.16 (npm, MIT), driven through node/interop.js.

Both directions: Baileys encrypts and wacrypto verifies/decrypts; wacrypto encrypts and Baileys decrypts;
plus key derivation for every media class and byte-exact agreement on the stored vectors."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from wacrypto.errors import MediaIntegrityError
from wacrypto.media import MediaType, decrypt_file, derive_media_keys, encrypt_file

# wacrypto class -> Baileys' media type name (None: Baileys has no such class)
BAILEYS_TYPE = {
    MediaType.IMAGE: "image",
    MediaType.STICKER: "sticker",
    MediaType.VIDEO: "video",
    MediaType.GIF: "gif",
    MediaType.PTV: "ptv",
    MediaType.AUDIO: "audio",
    MediaType.VOICE: "ptt",
    MediaType.DOCUMENT: "document",
    MediaType.HISTORY: "md-msg-hist",
    MediaType.APP_STATE: "md-app-state",
    MediaType.STICKER_PACK: None,
    MediaType.LINK_THUMBNAIL: "thumbnail-link",
}
VECTORS: list[dict[str, Any]] = json.loads((Path(__file__).parent / "vectors" / "media_vectors.json").read_text())[
    "vectors"
]


def test_keys_agree_for_every_class(node_peer: Any) -> None:
    key = bytes(range(32))
    items = [
        {"type": BAILEYS_TYPE[m], "info": None if BAILEYS_TYPE[m] else m.info.decode(), "media_key": key.hex()}
        for m in MediaType
    ]
    answer = node_peer({"op": "keys", "items": items})["items"]
    for mtype, theirs in zip(MediaType, answer):
        ours = derive_media_keys(key, mtype)
        assert theirs == {"iv": ours.iv.hex(), "cipher_key": ours.cipher_key.hex(), "mac_key": ours.mac_key.hex()}, mtype


def test_vectors_match_baileys(node_peer: Any, tmp_path: Path) -> None:
    requests, checked = [], []
    for v in VECTORS:
        btype = BAILEYS_TYPE[MediaType(v["type"])]
        if btype is None:
            continue
        src = tmp_path / f"{v['index']}.in"
        src.write_bytes(bytes((7 * j + v["index"]) % 256 for j in range(v["file_length"])))
        out = tmp_path / f"{v['index']}.enc"
        requests.append({"op": "encrypt", "type": btype, "media_key": v["media_key"], "in": str(src), "out": str(out)})
        checked.append((v, out))
    answers = node_peer({"op": "batch", "requests": requests})["answers"]
    assert len(answers) == len(checked) >= 40
    for (v, out), theirs in zip(checked, answers):
        assert theirs["file_enc_sha256"] == v["file_enc_sha256"], v["index"]
        assert theirs["file_sha256"] == v["file_sha256"]
        assert theirs["file_length"] == v["file_length"]
        assert theirs["mac"] == v["mac"]
        if "blob" in v:
            assert out.read_bytes().hex() == v["blob"]


@pytest.mark.parametrize("mtype", [MediaType.VIDEO, MediaType.VOICE, MediaType.DOCUMENT])
def test_baileys_encrypts_wacrypto_decrypts(node_peer: Any, tmp_path: Path, mtype: MediaType) -> None:
    plain = os.urandom(3 * 1024 * 1024 + 5)  # several chunks: exercises the threaded pipeline
    key = os.urandom(32)
    (tmp_path / "p").write_bytes(plain)
    theirs = node_peer(
        {"op": "encrypt", "type": BAILEYS_TYPE[mtype], "media_key": key.hex(), "in": str(tmp_path / "p"), "out": str(tmp_path / "b")}
    )
    result = decrypt_file(
        tmp_path / "b",
        tmp_path / "out",
        mtype,
        key,
        file_sha256=bytes.fromhex(theirs["file_sha256"]),
        file_enc_sha256=bytes.fromhex(theirs["file_enc_sha256"]),
    )
    assert (tmp_path / "out").read_bytes() == plain
    assert result.file_length == len(plain)
    # the key type follows the message class: the same blob under another class's key is rejected
    other = MediaType.IMAGE
    with pytest.raises(MediaIntegrityError):
        decrypt_file(tmp_path / "b", tmp_path / "out2", other, key)
    assert not (tmp_path / "out2").exists()


def test_wacrypto_encrypts_baileys_decrypts(node_peer: Any, tmp_path: Path) -> None:
    requests, expected = [], []
    for length in (0, 1, 15, 16, 17, 1_000_003):
        plain = os.urandom(length)
        (tmp_path / f"p{length}").write_bytes(plain)
        info = encrypt_file(tmp_path / f"p{length}", tmp_path / f"b{length}", MediaType.AUDIO)
        requests.append(
            {"op": "decrypt", "type": "audio", "media_key": info.media_key.hex(), "in": str(tmp_path / f"b{length}"), "out": str(tmp_path / f"o{length}")}
        )
        expected.append((tmp_path / f"o{length}", plain))
    answers = node_peer({"op": "batch", "requests": requests})["answers"]
    assert answers == [{"ok": True}] * len(expected)
    for path, plain in expected:
        assert path.read_bytes() == plain


def test_baileys_rejects_a_wrong_class_key(node_peer: Any, tmp_path: Path) -> None:
    """The peer is not a rubber stamp: a document blob decrypted with audio keys fails there too."""
    (tmp_path / "p").write_bytes(os.urandom(5000))
    info = encrypt_file(tmp_path / "p", tmp_path / "b", MediaType.DOCUMENT)
    answer = node_peer({"op": "decrypt", "type": "audio", "media_key": info.media_key.hex(), "in": str(tmp_path / "b"), "out": str(tmp_path / "o")})
    assert answer["ok"] is False
