"""Upload and download of encrypted media blobs over HTTP (httpx on trio).

**Upload contract** (what the media endpoint, e.g. the reference chatd, implements)::

    POST {host}/mms/{kind}/{token}?token={token}[&auth={auth}]
    Content-Type: application/octet-stream, Content-Length: blob length, body: ct || mac
    -> 200/201 with a JSON object, e.g. {"url": "...", "direct_path": "..."} (both optional)

``token`` is ``file_enc_sha256`` in unpadded base64url; the server may check ``SHA256(body)`` against it,
which also makes retries idempotent. ``kind`` is the media type value with ``_`` written ``-``
(``image``, ``video``, ``app-state``...).

**Download**: ``GET`` each URL in turn (host fallback). Bytes stream straight into a
:class:`~wacrypto.media.decryptor.MediaDecryptor` whose plaintext is staged next to the destination and
published only after verification. A connection lost mid-body is resumed with ``Range: bytes=N-`` when
the server answers ``206``; a ``200`` answer restarts from zero. ``403``/``404``/``410`` mean the blob is
gone: :class:`~wacrypto.errors.MediaExpiredError` when no URL succeeds (ask the sender to re-upload).

Transient failures (connection errors, ``408``, ``429``, ``5xx``) are retried ``retries`` times per
host with exponential backoff and jitter; other failures surface as
:class:`~wacrypto.errors.MediaTransferError`. No function takes a timeout: wrap calls in
``trio.fail_after``.
"""

from __future__ import annotations

import wacrypto.limits as _limits

import json
import random
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, final

import httpx
import trio

from wacrypto.errors import (
    InvalidArgumentError,
    MediaExpiredError,
    MediaIntegrityError,
    MediaTooLargeError,
    MediaTransferError,
)
from wacrypto.limits import DEFAULT_CONNECT_TIMEOUT, DEFAULT_MEDIA_MAX_BYTES, MEDIA_IO_CHUNK
from wacrypto.media.blob import DecryptedMedia, EncryptedMedia, max_blob_length
from wacrypto.media.decryptor import MediaDecryptor
from wacrypto.media.files import StagedFile, StrPath, encrypt_file
from wacrypto.media.keys import MediaType

__all__ = ["MediaClient", "UploadResult", "upload_path"]

_EXPIRED: Final = frozenset({403, 404, 410})
_RETRY_STATUS: Final = frozenset({408, 425, 429})
_THREAD_MIN: Final = 64 * 1024
_DEFAULT_HTTP_TIMEOUT: Final = _limits.DEFAULT_MEDIA_HTTP_TIMEOUT


@final
@dataclass(frozen=True, slots=True)
class UploadResult:
    """What the media endpoint answered: the blob's ``url`` and/or ``direct_path``, and which host took it."""

    host: str
    url: str | None
    direct_path: str | None


def upload_path(media_type: MediaType, token: str, auth: str | None = None) -> str:
    """The path and query of an upload request (see the module docstring)."""
    kind = media_type.value.replace("_", "-")
    query = httpx.QueryParams({"token": token} | ({"auth": auth} if auth is not None else {}))
    return f"/mms/{kind}/{token}?{query}"


class _Retry(Exception):
    """Internal: a transient failure worth another attempt."""


class _NextHost(Exception):
    """Internal: this host cannot serve the request; try the next one."""


@final
class MediaClient:
    """Media upload/download client. Use ``async with MediaClient(...) as client``.

    :param upload_hosts: base URLs (``https://media.example``) tried in order for uploads.
    :param http: an ``httpx.AsyncClient`` to use (not closed by us); by default one is created.
    :param auth: upload auth token sent as ``auth`` query parameter.
    :param retries: extra attempts per host after a transient failure.
    :param backoff: first backoff delay in seconds (doubles per attempt, capped at ``backoff_cap``,
        with jitter in [50%, 100%]).
    :param max_bytes: per-file plaintext limit (64 MiB default; ``None`` = none), enforced before any
        byte is uploaded and, for downloads, as soon as the announced or received size exceeds it.
    """

    def __init__(
        self,
        *,
        upload_hosts: Sequence[str] = (),
        http: httpx.AsyncClient | None = None,
        auth: str | None = None,
        retries: int = 3,
        backoff: float = 0.5,
        backoff_cap: float = 8.0,
        max_bytes: int | None = DEFAULT_MEDIA_MAX_BYTES,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if retries < 0 or backoff < 0 or backoff_cap < 0:
            raise InvalidArgumentError("retries and backoff must be non-negative")
        self._hosts = [h.rstrip("/") for h in upload_hosts]
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(
            timeout=httpx.Timeout(_DEFAULT_HTTP_TIMEOUT, connect=DEFAULT_CONNECT_TIMEOUT), follow_redirects=True
        )
        self._auth = auth
        self._retries = retries
        self._backoff = backoff
        self._backoff_cap = backoff_cap
        self._max = max_bytes
        self._jitter = jitter

    def __repr__(self) -> str:
        return f"MediaClient(upload_hosts={self._hosts!r})"

    async def __aenter__(self) -> MediaClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if we created it."""
        if self._own_http:
            await self._http.aclose()

    async def _sleep_backoff(self, attempt: int) -> None:
        delay = min(self._backoff_cap, self._backoff * (2**attempt))
        await trio.sleep(delay * (0.5 + 0.5 * self._jitter()))

    # ------------------------------------------------------------------------------------- upload

    def _check_limit(self, file_length: int) -> None:
        if self._max is not None and file_length > self._max:
            raise MediaTooLargeError(
                f"media is {file_length} bytes, larger than the upload limit of {self._max} bytes; nothing was uploaded"
            )

    async def upload(
        self, src: StrPath, media_type: MediaType, media_key: bytes | None = None
    ) -> tuple[EncryptedMedia, UploadResult]:
        """Encrypt plaintext file ``src`` to a temporary blob and upload it; return both descriptions.

        The size limit is checked on ``src`` before anything is encrypted or sent."""
        size = (await trio.Path(src).stat()).st_size
        self._check_limit(size)
        with tempfile.TemporaryDirectory(prefix="wacrypto-upload-") as tmp:
            blob = Path(tmp) / "blob"
            media = await trio.to_thread.run_sync(
                lambda: encrypt_file(src, blob, media_type, media_key, max_bytes=self._max)
            )
            return media, await self.upload_file(blob, media)

    async def upload_file(self, blob_path: StrPath, media: EncryptedMedia) -> UploadResult:
        """Upload the blob file ``blob_path`` described by ``media``, streaming it from disk.

        Raises :class:`~wacrypto.errors.MediaTooLargeError` (before any request) when over the limit,
        :class:`~wacrypto.errors.MediaTransferError` when every host and retry failed."""
        self._check_limit(media.file_length)
        size = (await trio.Path(blob_path).stat()).st_size
        if size != media.blob_length:
            raise InvalidArgumentError("blob file does not match its EncryptedMedia (wrong length)")
        if not self._hosts:
            raise InvalidArgumentError("no upload host configured")
        path = upload_path(media.media_type, media.token, self._auth)
        last = "no attempt made"
        for host in self._hosts:
            for attempt in range(self._retries + 1):
                if attempt:
                    await self._sleep_backoff(attempt - 1)
                try:
                    return await self._upload_once(host, path, blob_path, size)
                except _Retry as exc:
                    last = str(exc)
                except _NextHost as exc:
                    last = str(exc)
                    break
        raise MediaTransferError(f"upload failed on every host: {last}")

    async def _upload_once(self, host: str, path: str, blob_path: StrPath, size: int) -> UploadResult:
        async def body() -> AsyncIterator[bytes]:
            async with await trio.open_file(blob_path, "rb") as f:
                while chunk := await f.read(MEDIA_IO_CHUNK):
                    yield chunk

        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        try:
            resp = await self._http.post(host + path, content=body(), headers=headers)
        except httpx.TransportError as exc:
            raise _Retry(f"{host}: {type(exc).__name__}") from exc
        if resp.status_code >= 500 or resp.status_code in _RETRY_STATUS:
            raise _Retry(f"{host}: HTTP {resp.status_code}")
        if resp.status_code not in (200, 201):
            raise _NextHost(f"{host}: HTTP {resp.status_code}")
        try:
            doc = json.loads(resp.content) if resp.content else {}
        except ValueError:
            doc = {}
        if not isinstance(doc, dict):
            doc = {}
        url = doc.get("url")
        direct_path = doc.get("direct_path")
        return UploadResult(
            host=host,
            url=url if isinstance(url, str) else None,
            direct_path=direct_path if isinstance(direct_path, str) else None,
        )

    # ----------------------------------------------------------------------------------- download

    async def download(
        self,
        urls: Sequence[str],
        dst: StrPath,
        media_type: MediaType,
        media_key: bytes,
        *,
        file_enc_sha256: bytes | None,
        file_sha256: bytes | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> DecryptedMedia:
        """Download, verify and decrypt the blob into ``dst``, trying ``urls`` in order.

        ``dst`` appears only after every check passed. Raises
        :class:`~wacrypto.errors.MediaExpiredError` if a server said the blob is gone and no URL
        succeeded, :class:`~wacrypto.errors.MediaIntegrityError` if the blob from every URL that
        delivered one failed verification, :class:`~wacrypto.errors.MediaTransferError` otherwise.
        ``file_enc_sha256`` may be ``None`` only deliberately (the MAC is still checked)."""
        if not urls:
            raise InvalidArgumentError("no download URL given")
        max_blob = max_blob_length(self._max)
        expired = False
        integrity_failed = False
        last = "no attempt made"
        with StagedFile(dst) as staged:
            dec = MediaDecryptor(
                media_type,
                media_key,
                file_enc_sha256=file_enc_sha256,
                file_sha256=file_sha256,
                max_bytes=self._max,
                staging=staged,
            )
            state = _Download(staged, dec)
            for url in urls:
                for attempt in range(self._retries + 1):
                    if attempt:
                        await self._sleep_backoff(attempt - 1)
                    try:
                        await self._download_once(url, state, max_blob, progress)
                        result = state.dec.finalize()
                    except _Retry as exc:
                        last = str(exc)
                        continue
                    except _NextHost as exc:
                        last = str(exc)
                        expired = expired or isinstance(exc.__cause__, MediaExpiredError)
                        break
                    except MediaIntegrityError:
                        integrity_failed = True
                        last = f"{url}: blob failed verification"
                        await state.reset()
                        break
                    await trio.to_thread.run_sync(staged.publish)
                    return result
        if integrity_failed:
            raise MediaIntegrityError("media blob failed verification")
        if expired:
            raise MediaExpiredError(f"media is no longer available ({last})")
        raise MediaTransferError(f"download failed from every URL: {last}")

    async def _download_once(
        self, url: str, state: _Download, max_blob: int | None, progress: Callable[[int], None] | None
    ) -> None:
        """One GET, resuming at ``state.dec.received`` when the server allows it."""
        start = state.dec.received
        headers = {"Range": f"bytes={start}-"} if start else {}
        try:
            async with self._http.stream("GET", url, headers=headers) as resp:
                status = resp.status_code
                if status in _EXPIRED:
                    raise _NextHost(f"{url}: HTTP {status}") from MediaExpiredError(f"HTTP {status}")
                if status >= 500 or status in _RETRY_STATUS:
                    raise _Retry(f"{url}: HTTP {status}")
                if status == 206 and start and _range_start(resp) == start:
                    pass  # resume where we stopped
                elif start and status in (200, 206, 416):
                    await state.reset()  # the server ignored or garbled the range: start over
                    if status != 200:
                        raise _Retry(f"{url}: could not resume (HTTP {status})")
                    start = 0
                elif status != 200:
                    raise _NextHost(f"{url}: HTTP {status}")
                length = resp.headers.get("Content-Length")
                if max_blob is not None and length is not None and length.isdigit() and start + int(length) > max_blob:
                    raise _NextHost(f"{url}: blob larger than the limit of {self._max} bytes")
                dec = state.dec
                async for chunk in resp.aiter_bytes():
                    if len(chunk) >= _THREAD_MIN:
                        await trio.to_thread.run_sync(dec.update, chunk)
                    else:
                        dec.update(chunk)
                    if progress is not None:
                        progress(dec.received)
        except httpx.TransportError as exc:
            # keep what was received: the next attempt resumes at dec.received
            raise _Retry(f"{url}: {type(exc).__name__} after {state.dec.received} bytes") from exc


@final
class _Download:
    """Decryptor + staging file of one download; :meth:`reset` starts over from byte 0."""

    def __init__(self, staged: StagedFile, dec: MediaDecryptor) -> None:
        self.staged = staged
        self.dec = dec

    async def reset(self) -> None:
        await trio.to_thread.run_sync(self.staged.reset)
        self.dec.restart()


def _range_start(resp: httpx.Response) -> int | None:
    value = resp.headers.get("Content-Range", "")
    unit, _, rest = value.partition(" ")
    if unit.strip().lower() != "bytes":
        return None
    first = rest.split("-", 1)[0].strip()
    return int(first) if first.isdigit() else None

