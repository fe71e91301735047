"""The two-thread seam of the media core (SplitEncryptor, SplitDecryptor) and MediaDecryptor.restart.

Whatever the chunking and however the two halves interleave (on one thread or two), the blob, the
hashes, the MAC and the sidecar are exactly those of the one-shot functions; misuse is a UsageError,
a bad blob the one opaque MediaIntegrityError."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from functools import partial

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wacrypto.errors import InvalidArgumentError, MediaIntegrityError, MediaTooLargeError, UsageError
from wacrypto.media import (
    MediaDecryptor,
    MediaEncryptor,
    MediaType,
    SplitDecryptor,
    SplitEncryptor,
    decrypt,
    encrypt,
)

KEY = bytes(range(32))
TYPES = st.sampled_from(list(MediaType))
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:])]


class Worker:
    """A real second thread that runs submitted jobs in order; :meth:`close` re-raises its error."""

    def __init__(self) -> None:
        self._work: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._loop)
        self._thread.start()

    def _loop(self) -> None:
        while (job := self._work.get()) is not None:
            try:
                job()
            except BaseException as exc:  # handed to the test thread
                self._errors.append(exc)

    def submit(self, job: Callable[[], None]) -> None:
        self._work.put(job)

    def close(self) -> None:
        self._work.put(None)
        self._thread.join()
        if self._errors:
            raise self._errors[0]


def encrypt_split(plain: bytes, mtype: MediaType, cuts: list[int], *, threaded: bool, lag: int = 0) -> bytes:
    """Encrypt through the seam; the back runs ``lag`` chunks behind the front (or on a thread)."""
    enc = MediaEncryptor(mtype, KEY)
    halves = enc.split()
    assert isinstance(halves, SplitEncryptor)
    blob = bytearray()
    backlog: list[tuple[bytes, bytes]] = []
    worker = Worker() if threaded else None
    for piece in split(plain, cuts):
        out = bytearray(len(piece) + 15)
        n = halves.encrypt_into(piece, out)
        blob += out[:n]
        if worker is not None:
            worker.submit(partial(halves.authenticate, piece, bytes(out[:n])))
        else:
            backlog.append((piece, bytes(out[:n])))
            while len(backlog) > lag:
                halves.authenticate(*backlog.pop(0))
    if worker is not None:
        worker.close()
    for p, c in backlog:
        halves.authenticate(p, c)
    assert halves.pending == 0
    tail, info = enc.finalize()
    assert info == encrypt(plain, mtype, KEY)[1]
    return bytes(blob + tail)


@SETTINGS
@given(
    plain=st.binary(max_size=3000),
    cuts=st.lists(st.integers(min_value=0), max_size=12),
    mtype=TYPES,
    lag=st.integers(min_value=0, max_value=3),
)
def test_split_encryption_equals_one_shot(plain: bytes, cuts: list[int], mtype: MediaType, lag: int) -> None:
    assert encrypt_split(plain, mtype, cuts, threaded=False, lag=lag) == encrypt(plain, mtype, KEY)[0]


@pytest.mark.parametrize("mtype", [MediaType.VIDEO, MediaType.DOCUMENT])  # with and without a sidecar
def test_split_encryption_on_two_threads_equals_one_shot(mtype: MediaType) -> None:
    plain = bytes(range(256)) * 3000  # 768000 bytes: many sidecar windows
    cuts = list(range(0, len(plain), 70001))
    assert encrypt_split(plain, mtype, cuts, threaded=True) == encrypt(plain, mtype, KEY)[0]


def decrypt_split(blob: bytes, mtype: MediaType, cuts: list[int], *, lag: int = 0, mac_to_back: bool = True,
                  **hashes: bytes) -> bytes:
    dec = MediaDecryptor(mtype, KEY, **hashes)  # type: ignore[arg-type]
    halves = dec.split(len(blob))
    assert isinstance(halves, SplitDecryptor) and halves.blob_length == len(blob)
    backlog: list[bytes] = []
    chunks = split(blob, cuts)
    for i, piece in enumerate(chunks):
        halves.decrypt(piece)
        if mac_to_back or i < len(chunks) - 1:
            backlog.append(piece)
        while len(backlog) > lag:
            halves.authenticate(backlog.pop(0))
    for piece in backlog:
        halves.authenticate(piece)
    result = dec.finalize()
    assert result.plaintext is not None
    return result.plaintext


@SETTINGS
@given(
    plain=st.binary(max_size=3000),
    cuts=st.lists(st.integers(min_value=0), max_size=12),
    mtype=TYPES,
    lag=st.integers(min_value=0, max_value=3),
)
def test_split_decryption_equals_one_shot(plain: bytes, cuts: list[int], mtype: MediaType, lag: int) -> None:
    blob, info = encrypt(plain, mtype, KEY)
    got = decrypt_split(blob, mtype, cuts, lag=lag, file_sha256=info.file_sha256, file_enc_sha256=info.file_enc_sha256)
    assert got == plain


def test_the_mac_may_go_to_the_front_alone() -> None:
    plain = b"z" * 1000
    blob, info = encrypt(plain, MediaType.IMAGE, KEY)
    cut = [len(blob) - 10]  # the last chunk is exactly the MAC
    assert decrypt_split(blob, MediaType.IMAGE, cut, mac_to_back=False, file_enc_sha256=info.file_enc_sha256) == plain


@SETTINGS
@given(plain=st.binary(max_size=1500), bit=st.integers(min_value=0), cuts=st.lists(st.integers(min_value=0), max_size=6))
def test_split_decryption_rejects_any_bit_flip(plain: bytes, bit: int, cuts: list[int]) -> None:
    blob, _ = encrypt(plain, MediaType.AUDIO, KEY)
    bad = bytearray(blob)
    bit %= len(bad) * 8
    bad[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(MediaIntegrityError):
        decrypt_split(bytes(bad), MediaType.AUDIO, cuts)


def test_split_decryptor_rejects_impossible_lengths_at_once() -> None:
    for length in (0, 25, 27, 16 + 10 + 5):
        with pytest.raises(MediaIntegrityError):
            MediaDecryptor(MediaType.IMAGE, KEY).split(length)
    with pytest.raises(MediaIntegrityError):  # longer than the limit allows
        MediaDecryptor(MediaType.IMAGE, KEY, max_bytes=15).split(32 + 10)
    assert MediaDecryptor(MediaType.IMAGE, KEY, max_bytes=16).split(32 + 10).blob_length == 42
    for bad in (-1, True, 26.0):
        with pytest.raises(InvalidArgumentError):
            MediaDecryptor(MediaType.IMAGE, KEY).split(bad)  # type: ignore[arg-type]


def test_split_decryptor_fails_on_more_or_fewer_bytes_than_announced() -> None:
    blob, _ = encrypt(b"q" * 100, MediaType.IMAGE, KEY)
    dec = MediaDecryptor(MediaType.IMAGE, KEY)
    halves = dec.split(len(blob))
    halves.decrypt(blob)
    with pytest.raises(MediaIntegrityError):  # the excess fails as soon as it arrives
        halves.decrypt(b"\x00")
    with pytest.raises(MediaIntegrityError):  # and the decryptor stays failed
        dec.finalize()
    dec = MediaDecryptor(MediaType.IMAGE, KEY)
    halves = dec.split(len(blob) + 16)  # a file that shrank under the reader
    halves.decrypt(blob)
    halves.authenticate(blob)
    with pytest.raises(MediaIntegrityError):
        dec.finalize()


def test_split_misuse_is_usage_error() -> None:
    enc = MediaEncryptor(MediaType.VIDEO, KEY)
    halves = enc.split()
    with pytest.raises(UsageError):
        enc.update(b"x")
    with pytest.raises(UsageError):
        enc.split()
    with pytest.raises(InvalidArgumentError):
        halves.encrypt_into(b"x" * 32, bytearray(40))
    out = bytearray(64)
    n = halves.encrypt_into(b"x" * 32, out)
    assert halves.pending == n == 32
    with pytest.raises(UsageError, match="authenticate"):
        enc.finalize()  # the back half is behind: finishing now would give a wrong MAC
    halves.authenticate(b"x" * 32, out[:n])
    enc.finalize()
    with pytest.raises(UsageError):
        halves.authenticate(b"", b"")
    with pytest.raises(UsageError):
        halves.encrypt_into(b"", out)

    blob, _ = encrypt(b"y" * 50, MediaType.IMAGE, KEY)
    dec = MediaDecryptor(MediaType.IMAGE, KEY)
    dec.update(blob[:5])
    with pytest.raises(UsageError):
        dec.split(len(blob))  # the split covers the whole blob
    dec = MediaDecryptor(MediaType.IMAGE, KEY)
    dhalves = dec.split(len(blob))
    with pytest.raises(UsageError):
        dec.split(len(blob))
    with pytest.raises(UsageError):
        dec.update(blob)
    dhalves.decrypt(blob)
    with pytest.raises(UsageError, match="authenticate"):
        dec.finalize()
    dhalves.authenticate(blob)
    assert dec.finalize().plaintext == b"y" * 50
    with pytest.raises(UsageError):
        dhalves.authenticate(blob)


def test_split_encryptor_keeps_the_size_limit() -> None:
    enc = MediaEncryptor(MediaType.IMAGE, KEY, max_bytes=20)
    halves = enc.split()
    out = bytearray(64)
    halves.encrypt_into(b"a" * 16, out)
    with pytest.raises(MediaTooLargeError):
        halves.encrypt_into(b"a" * 5, out)
    halves.authenticate(b"a" * 16, out[:16])  # the back may still drain what the front produced


def test_restart_starts_over_with_the_same_expectations() -> None:
    plain = bytes(range(200)) * 7
    blob, info = encrypt(plain, MediaType.DOCUMENT, KEY)
    dec = MediaDecryptor(MediaType.DOCUMENT, KEY, file_sha256=info.file_sha256, file_enc_sha256=info.file_enc_sha256)
    dec.update(blob[:300])
    dec.restart()
    assert dec.received == 0
    dec.update(blob)
    assert dec.finalize().plaintext == plain
    with pytest.raises(UsageError):
        dec.restart()
    # after a failed verification the same decryptor can take the genuine blob
    dec = MediaDecryptor(MediaType.DOCUMENT, KEY, file_enc_sha256=info.file_enc_sha256)
    dec.update(blob[:-1] + bytes([blob[-1] ^ 1]))
    with pytest.raises(MediaIntegrityError):
        dec.finalize()
    dec.restart()
    dec.update(blob)
    assert dec.finalize().plaintext == plain
    # the expected hash survives a restart: a different blob still fails
    other, _ = encrypt(plain[:-1], MediaType.DOCUMENT, KEY)
    dec = MediaDecryptor(MediaType.DOCUMENT, KEY, file_enc_sha256=info.file_enc_sha256)
    dec.restart()
    dec.update(other)
    with pytest.raises(MediaIntegrityError):
        dec.finalize()
    assert decrypt(other, MediaType.DOCUMENT, KEY) == plain[:-1]


def test_restart_empties_the_staging_sink_it_owns_only() -> None:
    blob, _ = encrypt(b"m" * 5000, MediaType.IMAGE, KEY)

    class Sink:
        def __init__(self) -> None:
            self.data = bytearray()

        def write(self, data: memoryview, /) -> None:
            self.data += data

    sink = Sink()
    dec = MediaDecryptor(MediaType.IMAGE, KEY, staging=sink)
    dec.update(blob[:2000])
    assert sink.data  # unverified bytes reached the private sink
    dec.restart()
    sink.data.clear()  # the caller empties its own sink (StagedFile.reset)
    dec.update(blob)
    assert dec.finalize().plaintext is None and bytes(sink.data) == b"m" * 5000
