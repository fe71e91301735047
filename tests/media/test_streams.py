"""trio stream helpers: encrypt from/to async streams; decrypt with no plaintext reaching a sink unverified."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing

from wacrypto.errors import MediaIntegrityError, MediaTooLargeError
from wacrypto.media import MediaType, decrypt, encrypt
from wacrypto.media.files import PARTIAL_SUFFIX
from wacrypto.media.streams import (
    decrypt_file_async,
    decrypt_stream_to_bytes,
    decrypt_stream_to_file,
    decrypt_stream_to_sink,
    encrypt_file_async,
    encrypt_stream,
    encrypt_stream_to_file,
    file_chunks,
)

KEY = bytes(range(32))


async def chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for pos in range(0, len(data), size):
        await trio.lowlevel.checkpoint()
        yield data[pos : pos + size]


class Collect:
    def __init__(self) -> None:
        self.data = bytearray()
        self.calls = 0

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.calls += 1
        self.data += data


@pytest.mark.parametrize(("size", "length"), [(1, 3000), (7, 20_000), (65536, 400_000), (300_000, 400_000)])
async def test_encrypt_stream_matches_one_shot(size: int, length: int) -> None:
    plain = os.urandom(length)
    sink = Collect()
    info = await encrypt_stream(chunks(plain, size), sink, MediaType.VIDEO, KEY)
    blob, ref = encrypt(plain, MediaType.VIDEO, KEY)
    assert bytes(sink.data) == blob and info == ref


async def test_encrypt_over_a_real_trio_stream_pair() -> None:
    plain = os.urandom(200_000)
    send, receive = trio.testing.memory_stream_pair()
    sink = Collect()
    async with trio.open_nursery() as nursery:

        async def producer() -> None:
            for pos in range(0, len(plain), 10_000):
                await send.send_all(plain[pos : pos + 10_000])
            await send.aclose()

        nursery.start_soon(producer)
        info = await encrypt_stream(receive, sink, MediaType.DOCUMENT, KEY)
    assert decrypt(bytes(sink.data), MediaType.DOCUMENT, KEY, file_sha256=info.file_sha256) == plain


async def test_encrypt_stream_to_file_enforces_limit_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(MediaTooLargeError):
        await encrypt_stream_to_file(chunks(b"z" * 5000, 1000), tmp_path / "b", MediaType.IMAGE, max_bytes=4999)
    assert list(tmp_path.iterdir()) == []
    info = await encrypt_stream_to_file(chunks(b"z" * 5000, 1000), tmp_path / "b", MediaType.IMAGE, KEY)
    assert (tmp_path / "b").read_bytes() == encrypt(b"z" * 5000, MediaType.IMAGE, KEY)[0]
    assert info.file_length == 5000


async def test_decrypt_stream_to_sink_sends_nothing_unless_verified() -> None:
    plain = os.urandom(300_000)
    blob, info = encrypt(plain, MediaType.AUDIO, KEY)
    sink = Collect()
    bad = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(MediaIntegrityError):
        await decrypt_stream_to_sink(chunks(bad, 4096), sink, MediaType.AUDIO, KEY)
    assert sink.calls == 0
    result = await decrypt_stream_to_sink(
        chunks(blob, 4096), sink, MediaType.AUDIO, KEY, file_enc_sha256=info.file_enc_sha256
    )
    assert bytes(sink.data) == plain and result.file_length == len(plain)


async def test_decrypt_stream_to_file_and_bytes(tmp_path: Path) -> None:
    plain = os.urandom(150_000)
    blob, info = encrypt(plain, MediaType.IMAGE, KEY)
    await decrypt_stream_to_file(chunks(blob, 70_000), tmp_path / "o", MediaType.IMAGE, KEY, file_sha256=info.file_sha256)
    assert (tmp_path / "o").read_bytes() == plain
    with pytest.raises(MediaIntegrityError):
        await decrypt_stream_to_file(chunks(blob[:-16], 70_000), tmp_path / "o2", MediaType.IMAGE, KEY)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]
    assert await decrypt_stream_to_bytes(chunks(blob, 999), MediaType.IMAGE, KEY) == plain


async def test_async_file_wrappers(tmp_path: Path) -> None:
    (tmp_path / "p").write_bytes(b"q" * 3_000_000)
    info = await encrypt_file_async(tmp_path / "p", tmp_path / "b", MediaType.PTV, KEY)
    result = await decrypt_file_async(tmp_path / "b", tmp_path / "o", MediaType.PTV, KEY, file_sha256=info.file_sha256)
    assert (tmp_path / "o").read_bytes() == b"q" * 3_000_000 and result.file_length == 3_000_000
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(PARTIAL_SUFFIX)]


async def test_file_to_async_sink(tmp_path: Path) -> None:
    plain = os.urandom(2_500_000)
    (tmp_path / "p").write_bytes(plain)
    sink = Collect()
    info = await encrypt_stream(file_chunks(tmp_path / "p"), sink, MediaType.VIDEO, KEY)
    assert sink.calls >= 3  # streamed, not buffered whole
    assert bytes(sink.data) == encrypt(plain, MediaType.VIDEO, KEY)[0] and info.file_length == len(plain)
