"""Hypothesis properties: chunking never matters; no single-bit flip, truncation or extension survives."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wacrypto.errors import MediaIntegrityError
from wacrypto.media import MediaDecryptor, MediaEncryptor, MediaType, decrypt, encrypt

KEY = bytes(range(32))
TYPES = st.sampled_from(list(MediaType))
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:])]


@SETTINGS
@given(plain=st.binary(max_size=3000), cuts=st.lists(st.integers(min_value=0), max_size=12), mtype=TYPES)
def test_any_chunking_of_encryption_equals_one_shot(plain: bytes, cuts: list[int], mtype: MediaType) -> None:
    one_blob, one_info = encrypt(plain, mtype, KEY)
    enc = MediaEncryptor(mtype, KEY)
    parts = [enc.update(piece) for piece in split(plain, cuts)]
    tail, info = enc.finalize()
    assert b"".join(parts) + tail == one_blob
    assert info == one_info


@SETTINGS
@given(plain=st.binary(max_size=3000), cuts=st.lists(st.integers(min_value=0), max_size=12), mtype=TYPES)
def test_any_chunking_of_decryption_equals_one_shot(plain: bytes, cuts: list[int], mtype: MediaType) -> None:
    blob, info = encrypt(plain, mtype, KEY)
    dec = MediaDecryptor(mtype, KEY, file_sha256=info.file_sha256, file_enc_sha256=info.file_enc_sha256)
    for piece in split(blob, cuts):
        dec.update(piece)
    result = dec.finalize()
    assert result.plaintext == plain
    assert (result.file_sha256, result.file_enc_sha256, result.file_length) == (
        info.file_sha256, info.file_enc_sha256, info.file_length,
    )


@pytest.mark.parametrize("with_hashes", [False, True])
@SETTINGS
@given(plain=st.binary(max_size=2000), bit=st.integers(min_value=0), mtype=TYPES)
def test_any_single_bit_flip_is_rejected(plain: bytes, bit: int, mtype: MediaType, with_hashes: bool) -> None:
    blob, info = encrypt(plain, mtype, KEY)
    bit %= len(blob) * 8
    bad = bytearray(blob)
    bad[bit // 8] ^= 1 << (bit % 8)
    kwargs = {"file_sha256": info.file_sha256, "file_enc_sha256": info.file_enc_sha256} if with_hashes else {}
    with pytest.raises(MediaIntegrityError):
        decrypt(bytes(bad), mtype, KEY, **kwargs)  # type: ignore[arg-type]


@SETTINGS
@given(plain=st.binary(max_size=2000), cut=st.integers(min_value=1), extra=st.binary(min_size=1, max_size=40))
def test_truncation_and_extension_are_rejected(plain: bytes, cut: int, extra: bytes) -> None:
    blob, _ = encrypt(plain, MediaType.DOCUMENT, KEY)
    with pytest.raises(MediaIntegrityError):
        decrypt(blob[: len(blob) - (cut % len(blob) or 1)], MediaType.DOCUMENT, KEY)
    with pytest.raises(MediaIntegrityError):
        decrypt(blob + extra, MediaType.DOCUMENT, KEY)
    with pytest.raises(MediaIntegrityError):
        decrypt(extra + blob, MediaType.DOCUMENT, KEY)


@SETTINGS
@given(garbage=st.binary(max_size=600), key=st.binary(min_size=32, max_size=32), mtype=TYPES)
def test_random_bytes_never_decrypt(garbage: bytes, key: bytes, mtype: MediaType) -> None:
    with pytest.raises(MediaIntegrityError):
        decrypt(garbage, mtype, key)
