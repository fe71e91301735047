"""chatd's media endpoint (wacrypto.chatd.media) with the real MediaClient on loopback.

What a client sees: blobs encrypted by wacrypto.media go up and come back byte for byte, a cut
download resumes where it stopped, and every refusal (wrong token, too big, expired, malformed,
too slow) is the documented status; what the folder holds: only complete blobs under their own
hash, whatever happened to the uploads."""

from __future__ import annotations

import hashlib
import inspect
import os
import re
import time
import tracemalloc
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from wacrypto.chatd.media import PARTIAL_DIR, MediaServer, parse_range
from wacrypto.chatd.server import ServerKeys
from wacrypto.errors import MediaExpiredError, MediaTransferError
from wacrypto.media import EncryptedMedia, MediaType, encrypt_file, upload_token
from wacrypto.media.client import MediaClient, upload_path
from wacrypto.testing.chatd_process import ChatdProcess

MiB = 1024 * 1024
DAY = 86400.0


async def start(nursery: trio.Nursery, tmp_path: Path, **kwargs: Any) -> MediaServer:
    server = MediaServer(tmp_path / "blobs", **kwargs)
    await nursery.start(server.serve)
    return server


def client(server: MediaServer | str, **kwargs: Any) -> MediaClient:
    url = server if isinstance(server, str) else server.url
    assert url is not None
    return MediaClient(upload_hosts=[url], retries=kwargs.pop("retries", 2), backoff=0.01, **kwargs)


def blobs(server: MediaServer) -> list[Path]:
    return sorted(p for p in server.directory.iterdir() if p.is_file())


def partials(server: MediaServer) -> list[Path]:
    return sorted((server.directory / PARTIAL_DIR).iterdir())


def encrypted(tmp_path: Path, size: int, mtype: MediaType = MediaType.DOCUMENT, name: str = "f") -> tuple[Path, EncryptedMedia]:
    plain = tmp_path / f"{name}.plain"
    plain.write_bytes(os.urandom(size))
    blob = tmp_path / f"{name}.blob"
    return blob, encrypt_file(plain, blob, mtype)


async def stored_blob(nursery: trio.Nursery, tmp_path: Path, size: int) -> tuple[MediaServer, Path, EncryptedMedia, str]:
    """A server holding one uploaded blob of a ``size``-byte document: (server, blob file, media, url)."""
    server = await start(nursery, tmp_path)
    blob, media = encrypted(tmp_path, size)
    async with client(server) as c:
        up = await c.upload_file(blob, media)
    assert up.url is not None
    return server, blob, media, up.url


async def download(server: MediaServer, url: str, media: EncryptedMedia, out: Path, **kwargs: Any) -> bytes:
    async with client(server) as c:
        await c.download([url], out, media.media_type, media.media_key, file_enc_sha256=media.file_enc_sha256,
                         file_sha256=media.file_sha256, **kwargs)
    return out.read_bytes()


async def raw_exchange(port: int, data: bytes, *, close_after_send: bool = False, limit: float = 5.0) -> bytes:
    """Send ``data`` on a fresh connection and read what the server answers until it closes."""
    with trio.fail_after(limit):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(data)
            if close_after_send:
                await stream.send_eof()
            out = b""
            while chunk := await stream.receive_some(65536):
                out += chunk
            return out


def port_of(server: MediaServer) -> int:
    assert server.url is not None
    return int(server.url.rsplit(":", 1)[1])


# --------------------------------------------------------------------------- round trips
async def test_an_image_and_a_multi_mb_document_go_up_and_come_back(nursery: trio.Nursery, tmp_path: Path) -> None:
    server = await start(nursery, tmp_path)
    for mtype, size in ((MediaType.IMAGE, 150_000), (MediaType.DOCUMENT, 5 * MiB + 3)):
        src = tmp_path / f"{mtype.value}.plain"
        src.write_bytes(os.urandom(size))
        async with client(server) as c:
            media, up = await c.upload(src, mtype)
        kind = mtype.value
        assert up.direct_path == f"/mms/{kind}/{media.token}" and up.url == f"{server.url}{up.direct_path}"
        stored = server.path_of(media.file_enc_sha256)
        assert hashlib.sha256(stored.read_bytes()).digest() == media.file_enc_sha256
        assert stored.stat().st_size == media.blob_length
        assert await download(server, up.url, media, tmp_path / f"{kind}.out") == src.read_bytes()
    assert server.stored == 2 and server.downloads == 2 and len(blobs(server)) == 2 and partials(server) == []


async def test_a_download_cut_mid_body_resumes_where_it_stopped(nursery: trio.Nursery, tmp_path: Path) -> None:
    server, _blob, media, url = await stored_blob(nursery, tmp_path, 3 * MiB + 11)
    server.cut_next_download(after_bytes=MiB + 5)
    seen: list[int] = []
    got = await download(server, url, media, tmp_path / "out", progress=seen.append)
    assert got == (tmp_path / "f.plain").read_bytes()
    # the second request asked for the rest (206) and got it: every byte went out once, none again
    assert server.partial_downloads == 1 and server.downloads == 0
    assert server.bytes_sent == media.blob_length
    assert seen == sorted(seen) and seen[-1] == media.blob_length and MiB + 5 in seen


async def test_transfers_stream_in_constant_memory(nursery: trio.Nursery, tmp_path: Path) -> None:
    server = await start(nursery, tmp_path)
    blob, media = encrypted(tmp_path, 24 * MiB)
    tracemalloc.start()
    try:
        async with client(server) as c:
            up = await c.upload_file(blob, media)
        upload_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        assert up.url is not None
        async with client(server) as c:
            await c.download([up.url], tmp_path / "out", media.media_type, media.media_key,
                             file_enc_sha256=media.file_enc_sha256)
        download_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # client and server together, in this process: a few I/O chunks, never the 24 MiB blob
    assert upload_peak < 8 * MiB and download_peak < 8 * MiB, (upload_peak, download_peak)


# --------------------------------------------------------------------------- refusals
async def test_a_body_that_does_not_match_its_token_is_refused_400(nursery: trio.Nursery, tmp_path: Path) -> None:
    server = await start(nursery, tmp_path)
    blob, media = encrypted(tmp_path, 40_000)
    data = bytearray(blob.read_bytes())
    data[100] ^= 1
    blob.write_bytes(data)  # same length, another hash
    async with client(server) as c:
        with pytest.raises(MediaTransferError, match="HTTP 400"):
            await c.upload_file(blob, media)
    async with httpx.AsyncClient() as http:
        good = bytes(data)
        token = upload_token(hashlib.sha256(good).digest())
        # a query token naming another blob than the path
        r = await http.post(f"{server.url}/mms/document/{token}?token={media.token}", content=good)
        assert r.status_code == 400
        # not a token at all
        r = await http.post(f"{server.url}/mms/document/{token[:-1]}", content=good)
        assert r.status_code == 400
    assert blobs(server) == [] and partials(server) == [] and server.stored == 0


async def test_a_blob_over_the_limit_is_refused_413_declared_or_chunked(nursery: trio.Nursery, tmp_path: Path) -> None:
    server = await start(nursery, tmp_path, max_blob_bytes=64 * 1024)
    blob, media = encrypted(tmp_path, 200_000)
    async with client(server, max_bytes=None) as c:
        with pytest.raises(MediaTransferError, match="HTTP 413"):
            await c.upload_file(blob, media)

    async def chunks() -> Any:
        data = blob.read_bytes()
        for i in range(0, len(data), 16_384):
            yield data[i : i + 16_384]

    async with httpx.AsyncClient() as http:  # no Content-Length: chunked, refused once over the limit
        r = await http.post(f"{server.url}{upload_path(media.media_type, media.token)}", content=chunks())
        assert r.status_code == 413
    assert server.bytes_received < 2 * 64 * 1024  # the chunked body was not read past the limit
    small, small_media = encrypted(tmp_path, 30_000, name="small")
    async with client(server) as c:
        assert (await c.upload_file(small, small_media)).url  # under the limit: taken
    assert blobs(server) == [server.path_of(small_media.file_enc_sha256)] and partials(server) == []


async def test_an_expired_blob_answers_410_and_is_deleted(nursery: trio.Nursery, tmp_path: Path) -> None:
    server, blob, media, url = await stored_blob(nursery, tmp_path, 20_000)
    stored = server.path_of(media.file_enc_sha256)
    old = time.time() - 31 * DAY
    os.utime(stored, (old, old))
    async with httpx.AsyncClient() as http:
        assert (await http.get(url)).status_code == 410
        assert not stored.exists()
        assert (await http.get(url)).status_code == 404  # pruned: never heard of
    with pytest.raises(MediaExpiredError):
        await download(server, url, media, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    # the sender uploads again: it is served for another 30 days
    async with client(server) as c:
        await c.upload_file(blob, media)
    assert await download(server, url, media, tmp_path / "out") == (tmp_path / "f.plain").read_bytes()


async def test_the_sweep_deletes_expired_blobs_and_abandoned_uploads_only(tmp_path: Path) -> None:
    server = MediaServer(tmp_path / "blobs", max_age=10 * DAY)
    now = time.time()
    expired, fresh = server.path_of(b"\x01" * 32), server.path_of(b"\x02" * 32)
    abandoned, in_progress = server.directory / PARTIAL_DIR / "a.part", server.directory / PARTIAL_DIR / "b.part"
    unrelated = server.directory / "README"
    for p in (expired, fresh, abandoned, in_progress, unrelated):
        p.write_bytes(b"x")
    os.utime(expired, (now - 11 * DAY,) * 2)
    os.utime(abandoned, (now - 2 * 3600,) * 2)
    os.utime(unrelated, (now - 11 * DAY,) * 2)
    assert server.prune(now) == 1 and server.expired == 1
    assert {p.name for p in server.directory.rglob("*") if p.is_file()} == {fresh.name, in_progress.name, "README"}


async def test_an_upload_cut_mid_body_leaves_nothing(nursery: trio.Nursery, tmp_path: Path) -> None:
    server = await start(nursery, tmp_path)
    blob, media = encrypted(tmp_path, 300_000)
    data = blob.read_bytes()
    head = (f"POST {upload_path(media.media_type, media.token)} HTTP/1.1\r\nHost: x\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode()
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", port_of(server))
        await stream.send_all(head + data[: len(data) // 2])
        while not partials(server):  # the server is writing the body to its temporary file
            await trio.sleep(0.01)
        await stream.aclose()  # the client dies mid-body
        while server.connections:
            await trio.sleep(0.01)
    assert blobs(server) == [] and partials(server) == []
    async with client(server) as c:  # the upload again, whole: taken
        await c.upload_file(blob, media)
    assert server.stored == 1 and blobs(server) == [server.path_of(media.file_enc_sha256)]


async def test_concurrent_uploads_of_one_blob_store_it_once(nursery: trio.Nursery, tmp_path: Path) -> None:
    server = await start(nursery, tmp_path)
    blob, media = encrypted(tmp_path, 2 * MiB + 1)
    results: list[Any] = []

    async def one() -> None:
        async with client(server) as c:
            results.append(await c.upload_file(blob, media))

    async with trio.open_nursery() as uploads:
        for _ in range(8):
            uploads.start_soon(one)
    assert len(results) == 8 and len({r.url for r in results}) == 1
    assert server.stored + server.deduplicated == 8 and server.stored >= 1
    assert blobs(server) == [server.path_of(media.file_enc_sha256)] and partials(server) == []
    assert await download(server, results[0].url, media, tmp_path / "out") == (tmp_path / "f.plain").read_bytes()


# --------------------------------------------------------------------------- HTTP details
async def test_head_ranges_and_keep_alive(nursery: trio.Nursery, tmp_path: Path) -> None:
    server, blob, media, url = await stored_blob(nursery, tmp_path, 1000)
    data, size = blob.read_bytes(), media.blob_length
    async with httpx.AsyncClient() as http:
        r = await http.head(url)
        assert r.status_code == 200 and r.content == b"" and r.headers["content-length"] == str(size)
        assert r.headers["accept-ranges"] == "bytes"
        for header, status, want, content_range in (
            ("bytes=0-9", 206, data[:10], f"bytes 0-9/{size}"),
            ("bytes=-5", 206, data[-5:], f"bytes {size - 5}-{size - 1}/{size}"),
            (f"bytes=100-{10 * size}", 206, data[100:], f"bytes 100-{size - 1}/{size}"),
            (f"bytes={size}-", 416, None, f"bytes */{size}"),
            ("bytes=0-1,5-6", 200, data, None),  # several ranges: the whole blob
            ("lines=1-2", 200, data, None),
        ):
            r = await http.get(url, headers={"Range": header})
            assert r.status_code == status, header
            assert r.headers.get("content-range") == content_range, header
            if want is not None:
                assert r.content == want, header
    # two pipelined requests on one connection, both answered, then the connection closes
    target = url.removeprefix(server.url or "")
    out = await raw_exchange(port_of(server), (f"HEAD {target} HTTP/1.1\r\nHost: x\r\n\r\n"
                                               f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").encode())
    assert out.count(b"HTTP/1.1 200 OK\r\n") == 2 and out.endswith(data)


async def test_malformed_slow_and_oversized_requests_get_their_status(nursery: trio.Nursery, tmp_path: Path) -> None:
    server = await start(nursery, tmp_path, timeout=0.3)
    port = port_of(server)
    token = "A" * 43
    cases = [
        (b"this is not http\r\n\r\n", b"HTTP/1.1 400 "),
        (b"GET /mms/image/" + token.encode() + b" HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 40_000 + b"\r\n\r\n", b"HTTP/1.1 431 "),
        (b"DELETE /mms/image/" + token.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 405 "),
        (b"GET /elsewhere HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 404 "),
        (b"GET /mms/image/" + token.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 404 "),
    ]
    for request, status in cases:
        out = await raw_exchange(port, request, close_after_send=True)
        assert out.startswith(status), (request[:40], out[:60])
    # a head that never ends, and a body that stops coming: 408, then the server closes
    t0 = trio.current_time()
    assert (await raw_exchange(port, b"POST /mms/image/" + token.encode() + b" HTTP/1.1\r\nHo")).startswith(b"HTTP/1.1 408 ")
    slow_body = b"POST /mms/image/" + token.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc"
    assert (await raw_exchange(port, slow_body)).startswith(b"HTTP/1.1 408 ")
    assert trio.current_time() - t0 < 4.0 + 2 * 2.0  # two timeouts of 0.3 s and two drains of at most 2 s
    # a connection that sends nothing is closed without a word
    assert await raw_exchange(port, b"") == b""
    assert partials(server) == [] and blobs(server) == []


async def test_an_upload_that_waits_for_100_continue_gets_it(nursery: trio.Nursery, tmp_path: Path) -> None:
    server = await start(nursery, tmp_path)
    blob, media = encrypted(tmp_path, 5000)
    data = blob.read_bytes()
    with trio.fail_after(5):
        async with await trio.open_tcp_stream("127.0.0.1", port_of(server)) as stream:
            await stream.send_all((f"POST {upload_path(media.media_type, media.token)} HTTP/1.1\r\nHost: x\r\n"
                                   f"Content-Length: {len(data)}\r\nExpect: 100-continue\r\n\r\n").encode())
            interim = b""
            while b"\r\n\r\n" not in interim:
                interim += await stream.receive_some(65536)
            assert interim.startswith(b"HTTP/1.1 100 Continue\r\n") and interim.endswith(b"\r\n\r\n")
            await stream.send_all(data)
            answer = await stream.receive_some(65536)
    assert answer.startswith(b"HTTP/1.1 201 Created\r\n") and blobs(server) == [server.path_of(media.file_enc_sha256)]


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 10, None),
        ("bytes=0-0", 10, range(0, 1)),
        ("bytes=3-", 10, range(3, 10)),
        ("BYTES=3-5", 10, range(3, 6)),
        ("bytes=-3", 10, range(7, 10)),
        ("bytes=-30", 10, range(0, 10)),
        ("bytes=9-100", 10, range(9, 10)),
        ("bytes=10-", 10, range(0)),
        ("bytes=-0", 10, range(0)),
        ("bytes=0-", 0, range(0)),
        ("bytes=5-3", 10, None),
        ("bytes=-", 10, None),
        ("bytes=1-2,4-5", 10, None),
        ("bytes=+1-2", 10, None),
        ("bytes=\u0661-2", 10, None),  # an Arabic-Indic digit is not a digit here
        ("bytes=" + "9" * 20 + "-", 10, None),
    ],
)
def test_parse_range(header: str | None, size: int, expected: range | None) -> None:
    assert parse_range(header, size) == expected


@given(st.text(max_size=40) | st.from_regex(r"bytes=[0-9]{0,4}-[0-9]{0,4}", fullmatch=True), st.integers(0, 5000))
def test_parse_range_answers_within_the_blob(header: str, size: int) -> None:
    got = parse_range(header, size)
    if got is not None and len(got):
        assert 0 <= got.start < got.stop <= size and got.step == 1


# --------------------------------------------------------------------------- the CLI
async def test_chatd_run_media_port_serves_media_from_its_folder(tmp_path: Path) -> None:
    keys, root, inter = ServerKeys.generate()
    keys.save(tmp_path / "chatd", root, inter)
    proc = ChatdProcess(tmp_path / "chatd", [0], "--media-port", "0")
    proc.start()
    try:
        url = proc.listening["media_url"]
        assert isinstance(url, str) and url.startswith("http://127.0.0.1:")
        src = tmp_path / "photo"
        src.write_bytes(os.urandom(50_000))
        async with client(url) as c:
            media, up = await c.upload(src, MediaType.IMAGE)
            assert up.url is not None
            await c.download([up.url], tmp_path / "out", MediaType.IMAGE, media.media_key,
                             file_enc_sha256=media.file_enc_sha256)
        assert (tmp_path / "out").read_bytes() == src.read_bytes()
        assert (tmp_path / "chatd" / "media" / media.file_enc_sha256.hex()).stat().st_size == media.blob_length
    finally:
        proc.stop()
    without = ChatdProcess(tmp_path / "chatd", [0])
    without.start()
    try:
        assert "media_url" not in without.listening
    finally:
        without.stop()


def test_the_chat_doc_lists_every_parameter() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "chat.md").read_text()
    section = text[text.index("## The media endpoint: `MediaServer`"):]
    params = set(inspect.signature(MediaServer.__init__).parameters) - {"self"}
    assert set(re.findall(r"^\| `([^`]+)` \|", section, re.M)) == params
    shown = section[section.index("MediaServer(directory"):]
    shown = shown[: shown.index("```")]
    assert all(f"{name}=" in shown or name == "directory" for name in params), shown
