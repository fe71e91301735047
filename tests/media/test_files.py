"""File encryption/decryption: atomic publication, no plaintext left on failure, limits, 64 MB in bounded memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from wacrypto.errors import InvalidArgumentError, MediaIntegrityError, MediaTooLargeError
from wacrypto.media import MediaType, decrypt, decrypt_file, encrypt, encrypt_file
from wacrypto.media.files import PARTIAL_SUFFIX

KEY = bytes(range(32))
MiB = 1024 * 1024


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(PARTIAL_SUFFIX))


# sizes straddle the 1 MiB chunk and the 2 MiB threshold of the two-thread pipeline
@pytest.mark.parametrize("length", [0, 1, 4095, MiB, 2 * MiB - 1, 2 * MiB, 2 * MiB + 17, 5 * MiB + 3])
@pytest.mark.parametrize("mtype", [MediaType.VIDEO, MediaType.IMAGE])
def test_file_round_trip_equals_in_memory(tmp_path: Path, length: int, mtype: MediaType) -> None:
    plain = os.urandom(length)
    (tmp_path / "p").write_bytes(plain)
    info = encrypt_file(tmp_path / "p", tmp_path / "b", mtype, KEY)
    blob, ref = encrypt(plain, mtype, KEY)
    assert (tmp_path / "b").read_bytes() == blob and info == ref
    for overlap in (True, False):
        out = tmp_path / f"o{overlap}"
        result = decrypt_file(
            tmp_path / "b", out, mtype, KEY, file_sha256=info.file_sha256, file_enc_sha256=info.file_enc_sha256, overlap=overlap
        )
        assert out.read_bytes() == plain
        assert result.file_length == length and result.plaintext is None
    serial = encrypt_file(tmp_path / "p", tmp_path / "b2", mtype, KEY, overlap=False)
    assert serial == info and (tmp_path / "b2").read_bytes() == blob
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("length", [100, 3 * MiB])
@pytest.mark.parametrize("where", ["start", "middle", "mac", "truncate", "extend"])
def test_failed_decrypt_leaves_no_file_and_keeps_existing_output(tmp_path: Path, length: int, where: str) -> None:
    blob = bytearray(encrypt(os.urandom(length), MediaType.DOCUMENT, KEY)[0])
    if where == "start":
        blob[0] ^= 1
    elif where == "middle":
        blob[len(blob) // 2] ^= 0x40
    elif where == "mac":
        blob[-1] ^= 1
    elif where == "truncate":
        del blob[-16:]
    else:
        blob += b"\x00" * 16
    (tmp_path / "b").write_bytes(blob)
    with pytest.raises(MediaIntegrityError):
        decrypt_file(tmp_path / "b", tmp_path / "new", MediaType.DOCUMENT, KEY)
    assert not (tmp_path / "new").exists()
    (tmp_path / "old").write_bytes(b"previous content")
    with pytest.raises(MediaIntegrityError):
        decrypt_file(tmp_path / "b", tmp_path / "old", MediaType.DOCUMENT, KEY)
    assert (tmp_path / "old").read_bytes() == b"previous content"
    assert leftovers(tmp_path) == []


def test_limit_is_checked_before_reading(tmp_path: Path) -> None:
    big = tmp_path / "big"
    with open(big, "wb") as f:  # sparse: 64 MiB + 1 byte, costs nothing
        f.truncate(64 * MiB + 1)
    with pytest.raises(MediaTooLargeError, match="limit"):
        encrypt_file(big, tmp_path / "b", MediaType.VIDEO)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big"]
    small = tmp_path / "small"
    small.write_bytes(b"x" * 11)
    with pytest.raises(MediaTooLargeError):
        encrypt_file(small, tmp_path / "b", MediaType.IMAGE, max_bytes=10)
    assert encrypt_file(small, tmp_path / "b", MediaType.IMAGE, max_bytes=11).file_length == 11


def test_stream_input_over_the_limit_leaves_no_output(tmp_path: Path) -> None:
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b"y" * 5000)
    os.close(write_fd)
    with pytest.raises(MediaTooLargeError):
        encrypt_file(f"/dev/fd/{read_fd}", tmp_path / "b", MediaType.IMAGE, max_bytes=4096)
    os.close(read_fd)
    assert list(tmp_path.iterdir()) == []


def test_pipe_input_round_trip(tmp_path: Path) -> None:
    plain = os.urandom(3000)
    read_fd, write_fd = os.pipe()
    os.write(write_fd, plain)
    os.close(write_fd)
    info = encrypt_file(f"/dev/fd/{read_fd}", tmp_path / "b", MediaType.AUDIO, KEY)
    os.close(read_fd)
    assert decrypt((tmp_path / "b").read_bytes(), MediaType.AUDIO, KEY, file_sha256=info.file_sha256) == plain


def test_bad_arguments_are_misuse_not_integrity(tmp_path: Path) -> None:
    (tmp_path / "b").write_bytes(b"short")
    with pytest.raises(InvalidArgumentError):
        decrypt_file(tmp_path / "b", tmp_path / "o", MediaType.IMAGE, b"short key")
    assert not (tmp_path / "o").exists()


def test_progress_reports_every_byte(tmp_path: Path) -> None:
    (tmp_path / "p").write_bytes(os.urandom(3 * MiB + 5))
    seen: list[int] = []
    info = encrypt_file(tmp_path / "p", tmp_path / "b", MediaType.IMAGE, KEY, progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == 3 * MiB + 5
    seen.clear()
    decrypt_file(tmp_path / "b", tmp_path / "o", MediaType.IMAGE, KEY, progress=seen.append)
    assert seen[-1] == info.blob_length - 10


MEMORY_SCRIPT = textwrap.dedent(
    """
    import hashlib, json, os, sys, tracemalloc
    from wacrypto.media import MediaType, decrypt_file, encrypt_file

    def status(field):  # this process's own accounting (per address space, not inherited over exec)
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError(field)

    def reset_peak():  # "5" resets VmHWM to the current RSS (Linux >= 4.0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return status("VmRSS")

    d = sys.argv[1]
    src, blob, out = (os.path.join(d, n) for n in ("p", "b", "o"))
    sha = hashlib.sha256()
    with open(src, "wb") as f:
        for _ in range(64):
            chunk = os.urandom(1 << 20)
            sha.update(chunk)
            f.write(chunk)
    # warm-up on a small file so lazily created state (thread, OpenSSL tables) is in the baseline
    with open(os.path.join(d, "w"), "wb") as f:
        f.write(os.urandom(3 << 20))
    info = encrypt_file(os.path.join(d, "w"), os.path.join(d, "wb"), MediaType.VIDEO)
    decrypt_file(os.path.join(d, "wb"), os.path.join(d, "wo"), MediaType.VIDEO, info.media_key)
    tracemalloc.start()
    base = reset_peak()
    info = encrypt_file(src, blob, MediaType.VIDEO)
    enc_rss = status("VmHWM") - base
    enc_py = tracemalloc.get_traced_memory()[1]
    tracemalloc.reset_peak()
    base = reset_peak()
    res = decrypt_file(blob, out, MediaType.VIDEO, info.media_key,
                       file_sha256=info.file_sha256, file_enc_sha256=info.file_enc_sha256)
    dec_rss = status("VmHWM") - base
    dec_py = tracemalloc.get_traced_memory()[1]
    # control: the same measurement does see a 64 MiB buffer
    base = reset_peak()
    big = bytearray(os.urandom(64 << 20))
    ctl_rss = status("VmHWM") - base
    print(json.dumps({"enc_rss": enc_rss, "dec_rss": dec_rss, "enc_py": enc_py, "dec_py": dec_py,
                      "ctl_rss": ctl_rss, "ok": res.file_sha256 == sha.digest(),
                      "size": os.path.getsize(out), "blob": os.path.getsize(blob)}))
    """
)


def test_64_mb_round_trip_in_bounded_memory(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    m = json.loads(proc.stdout)
    assert m["ok"] and m["size"] == 64 * MiB and m["blob"] == 64 * MiB + 16 + 10
    limit = 32 * MiB
    assert m["ctl_rss"] >= 64 * MiB  # the probe can see a large allocation
    # the process's own accounting: peak RSS growth (kernel) and peak traced Python allocations
    assert m["enc_rss"] <= limit, m
    assert m["dec_rss"] <= limit, m
    assert m["enc_py"] <= limit and m["dec_py"] <= limit, m


def test_staged_file_is_private_and_published_with_umask_permissions(tmp_path: Path) -> None:
    (tmp_path / "p").write_bytes(b"photo" * 1000)
    info = encrypt_file(tmp_path / "p", tmp_path / "b", MediaType.IMAGE, KEY)
    seen: list[int] = []

    def spy(done: int) -> None:
        seen.extend(p.stat().st_mode & 0o777 for p in tmp_path.iterdir() if p.name.endswith(PARTIAL_SUFFIX))

    old = os.umask(0o027)
    try:
        decrypt_file(tmp_path / "b", tmp_path / "o", MediaType.IMAGE, KEY, progress=spy)
    finally:
        os.umask(old)
    assert seen and set(seen) == {0o600}  # unverified plaintext is never readable by others
    assert (tmp_path / "o").stat().st_mode & 0o777 == 0o640
    assert info.file_length == 5000
