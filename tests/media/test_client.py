"""Upload/download client against a real HTTP server on 127.0.0.1 with injected faults."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
import trio

from wacrypto.errors import MediaExpiredError, MediaIntegrityError, MediaTooLargeError, MediaTransferError
from wacrypto.media import MediaType, encrypt_file
from wacrypto.media.client import MediaClient
from wacrypto.media.files import PARTIAL_SUFFIX

MiB = 1024 * 1024


def client(*hosts: str, **kwargs: Any) -> MediaClient:
    return MediaClient(upload_hosts=hosts, retries=kwargs.pop("retries", 3), backoff=0.01, **kwargs)


async def upload(server: Any, tmp_path: Path, size: int = 3 * MiB + 7, mtype: MediaType = MediaType.VIDEO) -> tuple[bytes, Any, Any]:
    plain = os.urandom(size)
    (tmp_path / "plain").write_bytes(plain)
    async with client(server.base) as c:
        media, up = await c.upload(tmp_path / "plain", mtype)
    return plain, media, up


def no_partials(directory: Path) -> bool:
    return not [p for p in directory.iterdir() if p.name.endswith(PARTIAL_SUFFIX)]


async def test_upload_then_download_round_trip(media_server: Any, tmp_path: Path) -> None:
    plain, media, up = await upload(media_server, tmp_path)
    assert up.direct_path == f"/d/{media.token}" and up.host == media_server.base
    method, path, _ = media_server.state.requests[-1]
    assert method == "POST" and path.startswith(f"/mms/video/{media.token}?") and f"token={media.token}" in path
    assert hashlib.sha256(media_server.state.blobs[up.direct_path]).digest() == media.file_enc_sha256
    async with client() as c:
        result = await c.download(
            [up.url], tmp_path / "out", MediaType.VIDEO, media.media_key,
            file_enc_sha256=media.file_enc_sha256, file_sha256=media.file_sha256,
        )
    assert (tmp_path / "out").read_bytes() == plain and result.file_length == len(plain)
    assert no_partials(tmp_path)


async def test_upload_limit_is_enforced_before_any_byte_is_sent(media_server: Any, tmp_path: Path) -> None:
    big = tmp_path / "big"
    with open(big, "wb") as f:
        f.truncate(64 * MiB + 1)  # sparse
    async with client(media_server.base) as c:
        with pytest.raises(MediaTooLargeError, match="nothing was uploaded"):
            await c.upload(big, MediaType.VIDEO)
    small = tmp_path / "small"
    small.write_bytes(b"s" * 2000)
    media = encrypt_file(small, tmp_path / "blob", MediaType.IMAGE)
    async with client(media_server.base, max_bytes=1999) as c:
        with pytest.raises(MediaTooLargeError):
            await c.upload_file(tmp_path / "blob", media)
        with pytest.raises(MediaTooLargeError):
            await c.upload(small, MediaType.IMAGE)
    assert media_server.state.requests == []


async def test_upload_retries_after_server_errors(media_server: Any, tmp_path: Path) -> None:
    media_server.state.fail_next = 2
    plain, media, up = await upload(media_server, tmp_path, size=1000, mtype=MediaType.IMAGE)
    assert [m for m, _, _ in media_server.state.requests] == ["POST"] * 3
    assert up.direct_path in media_server.state.blobs


async def test_upload_falls_back_to_next_host_and_fails_cleanly(media_server: Any, dead_host: str, tmp_path: Path) -> None:
    (tmp_path / "p").write_bytes(b"p" * 5000)
    media = encrypt_file(tmp_path / "p", tmp_path / "b", MediaType.DOCUMENT)
    async with client(dead_host, media_server.base, retries=1) as c:
        up = await c.upload_file(tmp_path / "b", media)
    assert up.host == media_server.base
    async with client(dead_host, retries=1) as c:
        with pytest.raises(MediaTransferError, match="every host"):
            await c.upload_file(tmp_path / "b", media)


async def test_server_rejects_a_wrong_token(media_server: Any, tmp_path: Path) -> None:
    """Control for the token check of the test server: a blob that does not match its token is refused."""
    (tmp_path / "p").write_bytes(b"p" * 5000)
    media = encrypt_file(tmp_path / "p", tmp_path / "b", MediaType.DOCUMENT)
    other = encrypt_file(tmp_path / "p", tmp_path / "b2", MediaType.DOCUMENT)  # new key: other token, same length
    async with client(media_server.base, retries=0) as c:
        with pytest.raises(MediaTransferError, match="400"):
            await c.upload_file(tmp_path / "b", other)
    assert media.token != other.token


async def test_download_resumes_with_range_after_a_dropped_connection(media_server: Any, tmp_path: Path) -> None:
    plain, media, up = await upload(media_server, tmp_path)
    media_server.state.requests.clear()
    media_server.state.drop_after = MiB + 5
    async with client() as c:
        await c.download([up.url], tmp_path / "out", MediaType.VIDEO, media.media_key, file_enc_sha256=media.file_enc_sha256)
    assert (tmp_path / "out").read_bytes() == plain
    ranges = [r for _, _, r in media_server.state.requests]
    assert ranges[0] is None and len(ranges) == 2
    assert ranges[1] is not None and ranges[1].startswith("bytes=") and int(ranges[1][6:-1]) > 0


async def test_download_restarts_when_the_server_ignores_range(media_server: Any, tmp_path: Path) -> None:
    plain, media, up = await upload(media_server, tmp_path)
    media_server.state.honour_range = False
    media_server.state.drop_after = 2 * MiB
    async with client() as c:
        await c.download([up.url], tmp_path / "out", MediaType.VIDEO, media.media_key, file_enc_sha256=media.file_enc_sha256)
    assert (tmp_path / "out").read_bytes() == plain
    assert no_partials(tmp_path)


async def test_download_retries_500_then_succeeds(media_server: Any, tmp_path: Path) -> None:
    plain, media, up = await upload(media_server, tmp_path, size=5000, mtype=MediaType.IMAGE)
    media_server.state.fail_next = 1
    async with client() as c:
        await c.download([up.url], tmp_path / "out", MediaType.IMAGE, media.media_key, file_enc_sha256=media.file_enc_sha256)
    assert (tmp_path / "out").read_bytes() == plain


async def test_download_host_fallback(media_server: Any, dead_host: str, tmp_path: Path) -> None:
    plain, media, up = await upload(media_server, tmp_path, size=5000, mtype=MediaType.IMAGE)
    missing = f"{media_server.base}/d/nothing-here"
    async with client(retries=1) as c:
        await c.download(
            [f"{dead_host}{up.direct_path}", missing, up.url], tmp_path / "out", MediaType.IMAGE, media.media_key,
            file_enc_sha256=media.file_enc_sha256,
        )
    assert (tmp_path / "out").read_bytes() == plain


@pytest.mark.parametrize("status", [403, 404, 410])
async def test_expired_media_has_its_own_error(media_server: Any, tmp_path: Path, status: int) -> None:
    plain, media, up = await upload(media_server, tmp_path, size=5000, mtype=MediaType.IMAGE)
    media_server.state.expired_status[up.direct_path] = status
    media_server.state.requests.clear()
    async with client() as c:
        with pytest.raises(MediaExpiredError):
            await c.download([up.url], tmp_path / "out", MediaType.IMAGE, media.media_key, file_enc_sha256=media.file_enc_sha256)
    assert len(media_server.state.requests) == 1  # gone is gone: no retries
    assert not (tmp_path / "out").exists() and no_partials(tmp_path)


async def test_unreachable_hosts_give_transfer_error(dead_host: str, tmp_path: Path) -> None:
    async with client(retries=1) as c:
        with pytest.raises(MediaTransferError) as err:
            await c.download([f"{dead_host}/d/x"], tmp_path / "out", MediaType.IMAGE, bytes(32), file_enc_sha256=bytes(32))
    assert not isinstance(err.value, MediaExpiredError)
    assert list(tmp_path.iterdir()) == []


async def test_corrupted_blob_fails_verification_and_falls_back(media_server: Any, tmp_path: Path) -> None:
    plain, media, up = await upload(media_server, tmp_path, size=300_000, mtype=MediaType.AUDIO)
    good = media_server.state.blobs[up.direct_path]
    media_server.state.blobs["/d/corrupt"] = good[:1000] + bytes([good[1000] ^ 1]) + good[1001:]
    corrupt_url = f"{media_server.base}/d/corrupt"
    async with client() as c:
        with pytest.raises(MediaIntegrityError):
            await c.download([corrupt_url], tmp_path / "out", MediaType.AUDIO, media.media_key, file_enc_sha256=media.file_enc_sha256)
        assert not (tmp_path / "out").exists() and no_partials(tmp_path)
        await c.download([corrupt_url, up.url], tmp_path / "out", MediaType.AUDIO, media.media_key, file_enc_sha256=media.file_enc_sha256)
    assert (tmp_path / "out").read_bytes() == plain


async def test_oversized_download_is_refused_early(media_server: Any, tmp_path: Path) -> None:
    plain, media, up = await upload(media_server, tmp_path, size=5000, mtype=MediaType.IMAGE)
    async with client(max_bytes=4000) as c:
        with pytest.raises(MediaTransferError, match="limit"):
            await c.download([up.url], tmp_path / "out", MediaType.IMAGE, media.media_key, file_enc_sha256=media.file_enc_sha256)


async def test_download_can_be_cancelled_without_leftovers(media_server: Any, tmp_path: Path) -> None:
    plain, media, up = await upload(media_server, tmp_path)
    async with client() as c:
        with trio.move_on_after(0.0005):
            await c.download([up.url], tmp_path / "out", MediaType.VIDEO, media.media_key, file_enc_sha256=media.file_enc_sha256)
    assert not (tmp_path / "out").exists() and no_partials(tmp_path)
