"""Media encryption and decryption over trio byte streams.

Sources are any async iterable of byte chunks (a :class:`trio.abc.ReceiveStream` is one); sinks are
anything with ``async send_all(data)`` (a :class:`trio.abc.SendStream` is one). Chunks of 64 KiB and more
are processed on a worker thread (``trio.to_thread``) so the event loop keeps running.

Decryption never hands unverified plaintext to a sink: it is staged in a private temporary file
(next to the destination for :func:`decrypt_stream_to_file`, an anonymous one for
:func:`decrypt_stream_to_sink`) and only replayed/published after every check passed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Callable
from functools import partial
from typing import IO, Final, Protocol

import trio

from wacrypto.limits import DEFAULT_MEDIA_MAX_BYTES, MEDIA_IO_CHUNK
from wacrypto.media.blob import DecryptedMedia, EncryptedMedia
from wacrypto.media.decryptor import MediaDecryptor, StagingSink
from wacrypto.media.encryptor import MediaEncryptor
from wacrypto.media.keys import MediaType
from wacrypto.media.files import StagedFile, StrPath, decrypt_file, encrypt_file

__all__ = [
    "AsyncByteSink",
    "file_chunks",
    "encrypt_stream",
    "encrypt_stream_to_file",
    "decrypt_stream_to_file",
    "decrypt_stream_to_sink",
    "decrypt_stream_to_bytes",
    "encrypt_file_async",
    "decrypt_file_async",
]

_THREAD_MIN: Final = 64 * 1024  # below this, crypto on the event loop is cheaper than a thread hop


class AsyncByteSink(Protocol):
    """Anything with ``async send_all(data)``, e.g. a :class:`trio.abc.SendStream`."""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None: ...


ByteSource = AsyncIterable[bytes | bytearray | memoryview]


async def file_chunks(path: StrPath, chunk_size: int = MEDIA_IO_CHUNK) -> AsyncIterator[bytes]:
    """Read a file as an async byte source (reads run on a worker thread), e.g. to encrypt a file
    straight into an async sink: ``await encrypt_stream(file_chunks(path), sink, MediaType.VIDEO)``."""
    async with await trio.open_file(path, "rb") as f:
        while chunk := await f.read(chunk_size):
            yield chunk


async def _run(fn: Callable[[], object], size: int) -> None:
    if size >= _THREAD_MIN:
        await trio.to_thread.run_sync(fn)
    else:
        fn()


class _FileSink:
    """An :class:`AsyncByteSink` over an open file; large writes run on a worker thread."""

    def __init__(self, file: IO[bytes]) -> None:
        self._file = file

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await _run(partial(self._file.write, data), len(data))


async def encrypt_stream(
    source: ByteSource,
    sink: AsyncByteSink,
    media_type: MediaType,
    media_key: bytes | None = None,
    *,
    sidecar: bool | None = None,
    max_bytes: int | None = DEFAULT_MEDIA_MAX_BYTES,
    randbytes: Callable[[int], bytes] = os.urandom,
) -> EncryptedMedia:
    """Encrypt ``source`` into ``sink`` as it arrives; return :class:`EncryptedMedia`.

    Crossing ``max_bytes`` raises :class:`~wacrypto.errors.MediaTooLargeError`; bytes already sent stay
    sent, so to enforce the limit *before* an upload use :func:`encrypt_stream_to_file` and upload the file.
    """
    enc = MediaEncryptor(media_type, media_key, sidecar=sidecar, max_bytes=max_bytes, randbytes=randbytes)
    async for chunk in source:
        view = memoryview(chunk)
        for pos in range(0, len(view), MEDIA_IO_CHUNK):
            piece = view[pos : pos + MEDIA_IO_CHUNK]
            out: list[bytes] = []
            await _run(lambda: out.append(enc.update(piece)), len(piece))
            if out[0]:
                await sink.send_all(out[0])
    tail, result = enc.finalize()
    await sink.send_all(tail)
    return result


async def encrypt_stream_to_file(
    source: ByteSource,
    dst: StrPath,
    media_type: MediaType,
    media_key: bytes | None = None,
    *,
    sidecar: bool | None = None,
    max_bytes: int | None = DEFAULT_MEDIA_MAX_BYTES,
    randbytes: Callable[[int], bytes] = os.urandom,
) -> EncryptedMedia:
    """Encrypt ``source`` into blob file ``dst`` (published atomically when complete).

    If ``source`` exceeds ``max_bytes`` the error is raised and no file is left behind."""
    with StagedFile(dst) as staged:
        sink = _FileSink(staged.file)
        result = await encrypt_stream(
            source, sink, media_type, media_key, sidecar=sidecar, max_bytes=max_bytes, randbytes=randbytes
        )
        await trio.to_thread.run_sync(staged.publish)
    return result


async def _decrypt_into(
    source: ByteSource,
    staging: StagingSink | None,
    media_type: MediaType,
    media_key: bytes,
    file_enc_sha256: bytes | None,
    file_sha256: bytes | None,
    max_bytes: int | None,
) -> DecryptedMedia:
    dec = MediaDecryptor(
        media_type,
        media_key,
        file_enc_sha256=file_enc_sha256,
        file_sha256=file_sha256,
        max_bytes=max_bytes,
        staging=staging,
    )
    async for chunk in source:
        await _run(partial(dec.update, chunk), len(chunk))
    return dec.finalize()


async def decrypt_stream_to_file(
    source: ByteSource,
    dst: StrPath,
    media_type: MediaType,
    media_key: bytes,
    *,
    file_enc_sha256: bytes | None = None,
    file_sha256: bytes | None = None,
    max_bytes: int | None = DEFAULT_MEDIA_MAX_BYTES,
) -> DecryptedMedia:
    """Verify and decrypt ``source`` into ``dst``; ``dst`` appears only if every check passed.

    Raises :class:`~wacrypto.errors.MediaIntegrityError` otherwise, leaving no file behind."""
    with StagedFile(dst) as staged:
        result = await _decrypt_into(source, staged, media_type, media_key, file_enc_sha256, file_sha256, max_bytes)
        await trio.to_thread.run_sync(staged.publish)
    return result


async def decrypt_stream_to_sink(
    source: ByteSource,
    sink: AsyncByteSink,
    media_type: MediaType,
    media_key: bytes,
    *,
    file_enc_sha256: bytes | None = None,
    file_sha256: bytes | None = None,
    max_bytes: int | None = DEFAULT_MEDIA_MAX_BYTES,
) -> DecryptedMedia:
    """Verify and decrypt ``source``; send the plaintext to ``sink`` only after every check passed.

    The plaintext is staged in an anonymous temporary file meanwhile (constant memory)."""
    with tempfile.TemporaryFile() as spool:
        result = await _decrypt_into(source, spool, media_type, media_key, file_enc_sha256, file_sha256, max_bytes)
        spool.seek(0)
        while True:
            data = await trio.to_thread.run_sync(spool.read, MEDIA_IO_CHUNK)
            if not data:
                break
            await sink.send_all(data)
    return result


async def decrypt_stream_to_bytes(
    source: ByteSource,
    media_type: MediaType,
    media_key: bytes,
    *,
    file_enc_sha256: bytes | None = None,
    file_sha256: bytes | None = None,
    max_bytes: int | None = DEFAULT_MEDIA_MAX_BYTES,
) -> bytes:
    """Verify and decrypt ``source`` in memory; return the plaintext only after every check passed."""
    result = await _decrypt_into(source, None, media_type, media_key, file_enc_sha256, file_sha256, max_bytes)
    assert result.plaintext is not None
    return result.plaintext


async def encrypt_file_async(
    src: StrPath,
    dst: StrPath,
    media_type: MediaType,
    media_key: bytes | None = None,
    *,
    sidecar: bool | None = None,
    max_bytes: int | None = DEFAULT_MEDIA_MAX_BYTES,
    randbytes: Callable[[int], bytes] = os.urandom,
) -> EncryptedMedia:
    """:func:`wacrypto.media.files.encrypt_file` on a worker thread (the event loop keeps running)."""
    fn = partial(
        encrypt_file, src, dst, media_type, media_key, sidecar=sidecar, max_bytes=max_bytes, randbytes=randbytes
    )
    return await trio.to_thread.run_sync(fn)


async def decrypt_file_async(
    src: StrPath,
    dst: StrPath,
    media_type: MediaType,
    media_key: bytes,
    *,
    file_enc_sha256: bytes | None = None,
    file_sha256: bytes | None = None,
    max_bytes: int | None = DEFAULT_MEDIA_MAX_BYTES,
) -> DecryptedMedia:
    """:func:`wacrypto.media.files.decrypt_file` on a worker thread (the event loop keeps running)."""
    fn = partial(
        decrypt_file,
        src,
        dst,
        media_type,
        media_key,
        file_enc_sha256=file_enc_sha256,
        file_sha256=file_sha256,
        max_bytes=max_bytes,
    )
    return await trio.to_thread.run_sync(fn)
