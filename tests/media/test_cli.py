"""`wacrypto media ...` through a real subprocess, as a user runs it."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from wacrypto.media import MediaType, derive_media_keys
from wacrypto.media.files import PARTIAL_SUFFIX

PY = sys.executable  # the venv running the tests: /work/main/.venv/bin/python here
ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "wacrypto", "media", *args], capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_encrypt_decrypt_round_trip(tmp_path: Path) -> None:
    plain = os.urandom(3 * 1024 * 1024 + 3)
    (tmp_path / "in.mp4").write_bytes(plain)
    enc = run("encrypt", "--type", "video", "--in", str(tmp_path / "in.mp4"), "--out", str(tmp_path / "blob"))
    assert enc.returncode == 0, enc.stderr
    assert enc.stderr == ""  # no bar: stderr is not a terminal
    doc = json.loads(enc.stdout)
    assert set(doc) == {"media_key", "file_sha256", "file_enc_sha256", "file_length", "sidecar"}
    blob = (tmp_path / "blob").read_bytes()
    assert doc["file_sha256"] == hashlib.sha256(plain).hexdigest()
    assert doc["file_enc_sha256"] == hashlib.sha256(blob).hexdigest()
    assert doc["file_length"] == len(plain) and len(bytes.fromhex(doc["sidecar"])) == 10 * 49
    dec = run(
        "decrypt", "--type", "video", "--media-key", doc["media_key"], "--in", str(tmp_path / "blob"),
        "--out", str(tmp_path / "out.mp4"), "--file-sha256", doc["file_sha256"], "--file-enc-sha256", doc["file_enc_sha256"],
        "--progress",
    )
    assert dec.returncode == 0, dec.stderr
    assert (tmp_path / "out.mp4").read_bytes() == plain
    assert "100.0%" in dec.stderr  # --progress forces the bar on stderr


def test_encrypt_with_given_key_is_deterministic_and_has_no_sidecar_for_images(tmp_path: Path) -> None:
    (tmp_path / "p").write_bytes(b"picture")
    key = "ab" * 32
    out = [run("encrypt", "--type", "image", "--media-key", key, "--in", str(tmp_path / "p"), "--out", str(tmp_path / f"b{i}")) for i in (1, 2)]
    docs = [json.loads(o.stdout) for o in out]
    assert docs[0] == docs[1] and docs[0]["media_key"] == key and "sidecar" not in docs[0]
    assert (tmp_path / "b1").read_bytes() == (tmp_path / "b2").read_bytes()


def test_tampered_blob_one_line_error_and_no_output(tmp_path: Path) -> None:
    (tmp_path / "p").write_bytes(os.urandom(50_000))
    doc = json.loads(run("encrypt", "--type", "document", "--in", str(tmp_path / "p"), "--out", str(tmp_path / "b")).stdout)
    blob = bytearray((tmp_path / "b").read_bytes())
    blob[20_000] ^= 1
    (tmp_path / "b").write_bytes(blob)
    dec = run("decrypt", "--type", "document", "--media-key", doc["media_key"], "--in", str(tmp_path / "b"), "--out", str(tmp_path / "o"))
    assert dec.returncode == 1
    assert dec.stdout == "" and len(dec.stderr.strip().splitlines()) == 1 and "verification" in dec.stderr
    assert not (tmp_path / "o").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(PARTIAL_SUFFIX)]


def test_wrong_class_and_bad_arguments(tmp_path: Path) -> None:
    (tmp_path / "p").write_bytes(b"voice note")
    doc = json.loads(run("encrypt", "--type", "voice", "--in", str(tmp_path / "p"), "--out", str(tmp_path / "b")).stdout)
    wrong = run("decrypt", "--type", "document", "--media-key", doc["media_key"], "--in", str(tmp_path / "b"), "--out", str(tmp_path / "o"))
    assert wrong.returncode == 1 and not (tmp_path / "o").exists()
    badkey = run("decrypt", "--type", "voice", "--media-key", "zz", "--in", str(tmp_path / "b"), "--out", str(tmp_path / "o"))
    assert badkey.returncode == 2 and len(badkey.stderr.strip().splitlines()) == 1 and "hex" in badkey.stderr
    missing = run("decrypt", "--type", "voice", "--media-key", doc["media_key"], "--in", str(tmp_path / "nope"), "--out", str(tmp_path / "o"))
    assert missing.returncode == 1 and len(missing.stderr.strip().splitlines()) == 1 and "nope" in missing.stderr
    too_big = run("encrypt", "--type", "image", "--max-bytes", "5", "--in", str(tmp_path / "p"), "--out", str(tmp_path / "o"))
    assert too_big.returncode == 1 and "limit" in too_big.stderr and not (tmp_path / "o").exists()


def test_keys_command_prints_the_derived_keys() -> None:
    key = bytes(range(32))
    out = run("keys", "--type", "sticker-pack", "--media-key", key.hex())
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    keys = derive_media_keys(key, MediaType.STICKER_PACK)
    assert doc == {
        "type": "sticker_pack", "info": "WhatsApp Sticker Pack Keys", "iv": keys.iv.hex(),
        "cipher_key": keys.cipher_key.hex(), "mac_key": keys.mac_key.hex(), "ref_key": keys.ref_key.hex(),
    }


def test_prune_command(tmp_path: Path) -> None:
    old = tmp_path / "old.jpg"
    old.write_bytes(b"o")
    os.utime(old, (0, 0))
    (tmp_path / "new.jpg").write_bytes(b"n")
    dry = run("prune", "--older-than", "30d", "--dry-run", str(tmp_path))
    assert dry.returncode == 0 and str(old) in dry.stdout and old.exists()
    real = run("prune", "--older-than", "30d", str(tmp_path))
    assert real.returncode == 0 and not old.exists() and (tmp_path / "new.jpg").exists()
    bad = run("prune", "--older-than", "soon", str(tmp_path))
    assert bad.returncode == 2 and "invalid duration" in bad.stderr


def test_help_lists_each_action() -> None:
    out = run("--help")
    assert out.returncode == 0
    for action in ("encrypt", "decrypt", "keys", "prune"):
        assert action in out.stdout
