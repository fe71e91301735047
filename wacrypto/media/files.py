"""Constant-memory file encryption and decryption with atomic publication.

* :func:`encrypt_file` checks the size limit before reading a byte, encrypts in 1 MiB chunks and
  publishes the blob atomically (``os.replace``) only when complete.
* :func:`decrypt_file` writes plaintext to a private temporary file *next to* the destination
  (``.NAME.XXXX.wacrypto-part``, mode 0600) and renames it over the destination only after every check of
  :class:`~wacrypto.media.decryptor.MediaDecryptor` passed; on any error the temporary file is removed and
  the destination is left untouched.

Both overlap the hash/MAC passes with the cipher on a second thread (``overlap=True``, the default
for files of 2 MiB and more), through the public two-thread seam of the core
(:class:`~wacrypto.media.encryptor.SplitEncryptor`, :class:`~wacrypto.media.decryptor.SplitDecryptor`):
``hashlib``/``hmac`` and ``cryptography`` release the GIL on large buffers, so on two cores the
pipeline runs faster than the same work done serially. Memory use is a handful of 1 MiB buffers
whatever the file size.
"""

from __future__ import annotations

import os
import queue
import stat
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Final, final

from wacrypto.errors import MediaTooLargeError
from wacrypto.limits import DEFAULT_MEDIA_MAX_BYTES, MEDIA_IO_CHUNK, MEDIA_MAC_LEN
from wacrypto.media.blob import DecryptedMedia, EncryptedMedia, integrity_error, is_blob_length
from wacrypto.media.decryptor import MediaDecryptor
from wacrypto.media.encryptor import MediaEncryptor
from wacrypto.media.keys import MediaType

__all__ = ["PARTIAL_SUFFIX", "StagedFile", "encrypt_file", "decrypt_file"]

PARTIAL_SUFFIX: Final = ".wacrypto-part"
"""Suffix of the temporary files this package creates; ``wacrypto media prune`` removes stale ones."""

_OVERLAP_MIN: Final = 2 * MEDIA_IO_CHUNK  # below this a second thread costs more than it saves
_RING: Final = 3  # buffers in flight between the two threads

StrPath = str | os.PathLike[str]
Progress = Callable[[int], None]


def _umask() -> int:
    """The process umask without changing it (``os.umask`` would race with other threads)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


@final
class StagedFile:
    """A private temporary file in the directory of ``dest``, published atomically or removed.

    Use as a context manager: leaving the block with an exception removes the file; call
    :meth:`publish` to rename it over ``dest`` (after an optional ``fsync`` when ``durable``).
    While staged the file is mode 0600; on publication it gets the permissions a newly created file
    would get (``0666 & ~umask``)."""

    def __init__(self, dest: StrPath, *, durable: bool = False) -> None:
        self.dest = Path(dest)
        self.durable = durable
        try:
            fd, name = tempfile.mkstemp(prefix=f".{self.dest.name}.", suffix=PARTIAL_SUFFIX, dir=self.dest.parent)
        except OSError as exc:  # report the destination the caller named, not our temporary name
            raise type(exc)(exc.errno, exc.strerror, str(self.dest)) from None
        self.path = Path(name)
        self.file: IO[bytes] = os.fdopen(fd, "w+b")
        self._closed = False

    def write(self, data: memoryview, /) -> int:
        return self.file.write(data)

    def reset(self) -> None:
        """Empty the file (used when a download has to start over)."""
        self.file.seek(0)
        self.file.truncate()

    def publish(self) -> Path:
        """Atomically move the staged bytes to ``dest``; return ``dest``."""
        self.file.flush()
        if self.durable:
            os.fsync(self.file.fileno())
        os.fchmod(self.file.fileno(), 0o666 & ~_umask())
        self.file.close()
        self._closed = True
        os.replace(self.path, self.dest)
        if self.durable:
            dir_fd = os.open(self.dest.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        return self.dest

    def discard(self) -> None:
        """Close and delete the staged file (idempotent)."""
        if not self._closed:
            self.file.close()
            self._closed = True
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    def __enter__(self) -> StagedFile:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None or not self._closed:
            self.discard()


@final
class _Overlap:
    """Runs ``job(index, length)`` on a background thread for buffer slots handed over by the main thread.

    A ring of slots circulates (each a 1 MiB buffer, plus a cipher buffer when ``cipher_room`` is set):
    :meth:`acquire` returns a free slot (waiting for the worker if needed), :meth:`submit` hands it to the
    worker, which frees it when ``job`` returns. The first worker error is re-raised in the main thread,
    and no slot is reused while the worker may still read it."""

    def __init__(self, size: int, job: Callable[[int, int], None], *, cipher_room: int | None = None) -> None:
        self.buffers = [bytearray(size) for _ in range(_RING)]
        self.ciphers = [bytearray(size + cipher_room) for _ in range(_RING)] if cipher_room is not None else []
        self.extra = [0] * _RING
        self._job = job
        self._free: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._work: queue.SimpleQueue[tuple[int, int] | None] = queue.SimpleQueue()
        for i in range(_RING):
            self._free.put(i)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="wacrypto-media-hash", daemon=True)
        self._thread.start()

    def slot(self, index: int) -> tuple[bytearray, bytearray]:
        return self.buffers[index], self.ciphers[index]

    def _run(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            index, length = item
            if self._error is None:
                try:
                    self._job(index, length)
                except BaseException as exc:  # handed to the main thread
                    self._error = exc
            self._free.put(index)

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def acquire(self) -> int:
        index = self._free.get()
        self._raise()
        return index

    def release(self, index: int) -> None:
        self._free.put(index)

    def submit(self, index: int, length: int) -> None:
        self._work.put((index, length))

    def close(self) -> None:
        """Wait for the worker to finish all submitted jobs; re-raise its error if any."""
        self._work.put(None)
        self._thread.join()
        self._raise()


def _regular_size(f: IO[bytes]) -> int | None:
    st = os.fstat(f.fileno())
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def encrypt_file(
    src: StrPath,
    dst: StrPath,
    media_type: MediaType,
    media_key: bytes | None = None,
    *,
    sidecar: bool | None = None,
    max_bytes: int | None = DEFAULT_MEDIA_MAX_BYTES,
    randbytes: Callable[[int], bytes] = os.urandom,
    overlap: bool = True,
    durable: bool = False,
    progress: Progress | None = None,
) -> EncryptedMedia:
    """Encrypt file ``src`` into the blob file ``dst``; return its :class:`EncryptedMedia`.

    A regular file larger than ``max_bytes`` raises :class:`~wacrypto.errors.MediaTooLargeError` before
    anything is read or written; a stream (pipe) is checked as it is read. ``dst`` appears only once it
    is complete. ``progress(bytes_done)`` is called after each chunk. Other parameters as for
    :class:`~wacrypto.media.encryptor.MediaEncryptor`."""
    with open(src, "rb", buffering=0) as fin:
        size = _regular_size(fin)
        if size is not None and max_bytes is not None and size > max_bytes:
            raise MediaTooLargeError(f"media file is {size} bytes, larger than the limit of {max_bytes} bytes")
        enc = MediaEncryptor(media_type, media_key, sidecar=sidecar, max_bytes=max_bytes, randbytes=randbytes)
        with StagedFile(dst, durable=durable) as staged:
            out = staged.file
            done = 0
            if overlap and size is not None and size >= _OVERLAP_MIN:
                # Main thread: read, AES, write (the front half). Worker: MAC, blob hash, sidecar (the
                # back half); the split puts the plaintext hash on the less loaded side.
                halves = enc.split()
                ring: _Overlap

                def job(index: int, length: int) -> None:
                    plain_buf, cipher_buf = ring.slot(index)
                    halves.authenticate(memoryview(plain_buf)[:length], memoryview(cipher_buf)[: ring.extra[index]])

                ring = _Overlap(MEDIA_IO_CHUNK, job, cipher_room=16)
                try:
                    while True:
                        index = ring.acquire()
                        plain_buf, cipher_buf = ring.slot(index)
                        n = fin.readinto(plain_buf)
                        if not n:
                            ring.release(index)
                            break
                        k = halves.encrypt_into(memoryview(plain_buf)[:n], cipher_buf)
                        out.write(memoryview(cipher_buf)[:k])
                        ring.extra[index] = k
                        ring.submit(index, n)
                        done += n
                        if progress is not None:
                            progress(done)
                finally:
                    ring.close()
            else:
                plain = bytearray(MEDIA_IO_CHUNK)
                pview = memoryview(plain)
                cipher = bytearray(MEDIA_IO_CHUNK + 16)
                cview = memoryview(cipher)
                while n := fin.readinto(plain):
                    k = enc.update_into(pview[:n], cipher)
                    out.write(cview[:k])
                    done += n
                    if progress is not None:
                        progress(done)
            tail, result = enc.finalize()
            out.write(tail)
            staged.publish()
    return result


def decrypt_file(
    src: StrPath,
    dst: StrPath,
    media_type: MediaType,
    media_key: bytes,
    *,
    file_enc_sha256: bytes | None = None,
    file_sha256: bytes | None = None,
    max_bytes: int | None = DEFAULT_MEDIA_MAX_BYTES,
    overlap: bool = True,
    durable: bool = False,
    progress: Progress | None = None,
) -> DecryptedMedia:
    """Verify and decrypt blob file ``src`` into ``dst``; ``dst`` appears only if every check passed.

    Raises :class:`~wacrypto.errors.MediaIntegrityError` (opaque) for any bad blob; then no output file
    exists and an existing ``dst`` is unchanged. ``progress(bytes_done)`` is called after each chunk."""
    with open(src, "rb", buffering=0) as fin:
        size = _regular_size(fin)

        def make(staging: StagedFile | None) -> MediaDecryptor:
            return MediaDecryptor(
                media_type,
                media_key,
                file_enc_sha256=file_enc_sha256,
                file_sha256=file_sha256,
                max_bytes=max_bytes,
                staging=staging,
            )

        if size is not None and not is_blob_length(size, max_bytes):
            # the length check comes first: reject impossible sizes before any work or any file
            make(None)  # validates the arguments first: misuse is reported as misuse
            raise integrity_error()
        with StagedFile(dst, durable=durable) as staged:
            dec = make(staged)
            done = 0
            if size is not None and overlap and size >= _OVERLAP_MIN:
                # Main thread: read, AES, staging write (the front half). Worker: MAC, blob hash.
                halves = dec.split(size)
                ring: _Overlap

                def job(index: int, length: int) -> None:
                    halves.authenticate(memoryview(ring.buffers[index])[:length])

                ring = _Overlap(MEDIA_IO_CHUNK, job)
                remaining = size - MEDIA_MAC_LEN
                try:
                    while remaining > 0:
                        index = ring.acquire()
                        buf = memoryview(ring.buffers[index])[: min(MEDIA_IO_CHUNK, remaining)]
                        n = fin.readinto(buf)
                        if not n:
                            ring.release(index)
                            break  # file shrank under us: the length check in finalize fails
                        ring.submit(index, n)
                        halves.decrypt(buf[:n])
                        remaining -= n
                        done += n
                        if progress is not None:
                            progress(done)
                finally:
                    ring.close()
                # the MAC goes to the front alone; a file that grew fails as soon as the excess arrives
                halves.decrypt(fin.read(MEDIA_MAC_LEN + 1) or b"")
            else:
                chunk = bytearray(MEDIA_IO_CHUNK)
                view = memoryview(chunk)
                while n := fin.readinto(chunk):
                    dec.update(view[:n])
                    done += n
                    if progress is not None:
                        progress(done)
            result = dec.finalize()
            staged.publish()
    return result
