"""Unit tests of the pure media crypto: keys, edge sizes, limits, verification order, sidecar, misuse."""

from __future__ import annotations

import hashlib
import hmac
import os

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

import media_spec
from wacrypto.errors import (
    InvalidArgumentError,
    MediaIntegrityError,
    MediaTooLargeError,
    PeerError,
    UsageError,
)
from wacrypto.limits import DEFAULT_MEDIA_MAX_BYTES
from wacrypto.media import (
    MediaDecryptor,
    MediaEncryptor,
    MediaType,
    decrypt,
    decrypt_sidecar_chunk,
    derive_media_keys,
    encrypt,
    generate_media_key,
    sidecar_window,
    upload_token,
    verify_sidecar_chunk,
)

KEY = bytes(range(32))


# --------------------------------------------------------------------------- keys and classes


def test_info_strings_follow_the_message_class() -> None:
    assert {m.value: m.info for m in MediaType} == media_spec.INFO


def test_audio_sent_as_document_needs_document_keys() -> None:
    blob, info = encrypt(b"an mp3 file", MediaType.DOCUMENT, KEY)
    assert decrypt(blob, MediaType.DOCUMENT, KEY) == b"an mp3 file"
    with pytest.raises(MediaIntegrityError):
        decrypt(blob, MediaType.AUDIO, KEY)


def test_sidecar_only_for_video_and_audio_classes() -> None:
    with_sidecar = {m for m in MediaType if encrypt(b"x", m, KEY)[1].sidecar is not None}
    assert with_sidecar == {MediaType.VIDEO, MediaType.GIF, MediaType.PTV, MediaType.AUDIO, MediaType.VOICE}
    assert encrypt(b"x", MediaType.IMAGE, KEY, sidecar=True)[1].sidecar is not None
    assert encrypt(b"x", MediaType.VIDEO, KEY, sidecar=False)[1].sidecar is None


def test_parse_names() -> None:
    assert MediaType.parse("App-State") is MediaType.APP_STATE
    assert MediaType.parse("voice") is MediaType.VOICE
    with pytest.raises(InvalidArgumentError):
        MediaType.parse("mp3")


@pytest.mark.parametrize("bad", [b"", b"\x00" * 31, b"\x00" * 33, "00" * 32])
def test_media_key_must_be_32_bytes(bad: object) -> None:
    with pytest.raises(InvalidArgumentError):
        derive_media_keys(bad, MediaType.IMAGE)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        MediaDecryptor(MediaType.IMAGE, bad)  # type: ignore[arg-type]


def test_media_type_must_be_explicit() -> None:
    with pytest.raises(InvalidArgumentError):
        derive_media_keys(KEY, "image")  # type: ignore[arg-type]


def test_generated_keys_come_from_the_rng_parameter() -> None:
    assert generate_media_key(lambda n: b"\x07" * n) == b"\x07" * 32
    enc = MediaEncryptor(MediaType.IMAGE, randbytes=lambda n: b"\x09" * n)
    assert enc.media_key == b"\x09" * 32
    assert generate_media_key() != generate_media_key()


def test_no_key_material_in_repr() -> None:
    keys = derive_media_keys(KEY, MediaType.IMAGE)
    _, info = encrypt(b"secret", MediaType.VIDEO, KEY)
    for text in (repr(keys), repr(info), repr(MediaEncryptor(MediaType.IMAGE, KEY)), repr(MediaDecryptor(MediaType.IMAGE, KEY))):
        for secret in (KEY, keys.iv, keys.cipher_key, keys.mac_key, keys.ref_key):
            assert secret.hex() not in text
            assert repr(secret) not in text


def test_upload_token_is_unpadded_base64url() -> None:
    assert upload_token(b"\xfb\xff" + b"\x00" * 30) == "-_8" + "A" * 40
    _, info = encrypt(b"x", MediaType.IMAGE, KEY)
    assert info.token == upload_token(info.file_enc_sha256) and "=" not in info.token


# --------------------------------------------------------------------------- sizes and structure


@pytest.mark.parametrize("length", [0, 1, 15, 16, 17, 31, 32, 33, 1024 * 1024 - 1, 1024 * 1024, 1024 * 1024 + 1])
def test_round_trip_and_blob_layout(length: int) -> None:
    plain = os.urandom(length)
    blob, info = encrypt(plain, MediaType.VIDEO, KEY)
    pad = 16 - length % 16
    assert len(blob) == length + pad + 10 == info.blob_length
    assert info.file_length == length
    assert info.file_sha256 == hashlib.sha256(plain).digest()
    assert info.file_enc_sha256 == hashlib.sha256(blob).digest()
    keys = derive_media_keys(KEY, MediaType.VIDEO)
    assert blob[-10:] == info.mac == hmac.new(keys.mac_key, keys.iv + blob[:-10], hashlib.sha256).digest()[:10]
    raw = Cipher(algorithms.AES(keys.cipher_key), modes.CBC(keys.iv)).decryptor().update(blob[:-10])
    assert raw == plain + bytes([pad]) * pad  # always padded, 1..16 bytes
    assert decrypt(blob, MediaType.VIDEO, KEY, file_sha256=info.file_sha256, file_enc_sha256=info.file_enc_sha256) == plain


def test_upload_limit_edges() -> None:
    limit = 1000
    for n in (limit - 1, limit):
        assert encrypt(b"a" * n, MediaType.IMAGE, KEY, max_bytes=limit)[1].file_length == n
    with pytest.raises(MediaTooLargeError):
        encrypt(b"a" * (limit + 1), MediaType.IMAGE, KEY, max_bytes=limit)


def test_default_limit_is_64_mib_and_streaming_encryptor_stops_at_it() -> None:
    assert DEFAULT_MEDIA_MAX_BYTES == 64 * 1024 * 1024
    enc = MediaEncryptor(MediaType.IMAGE, KEY, max_bytes=100)
    assert len(enc.update(b"a" * 100)) == 96
    with pytest.raises(MediaTooLargeError) as err:
        enc.update(b"a")
    assert isinstance(err.value, UsageError)  # the caller's file is too big: not the peer's fault
    with pytest.raises(UsageError):
        enc.finalize()  # the encryptor is spent: no blob for an over-limit file


def test_decrypt_limit_rejects_oversized_blob_early() -> None:
    blob, _ = encrypt(b"a" * 2000, MediaType.IMAGE, KEY, max_bytes=None)
    dec = MediaDecryptor(MediaType.IMAGE, KEY, max_bytes=1000)
    with pytest.raises(MediaIntegrityError):
        dec.update(blob)
    assert decrypt(blob, MediaType.IMAGE, KEY, max_bytes=2000) == b"a" * 2000


# --------------------------------------------------------------------------- verification


def _forge(plaintext_padded: bytes, mtype: MediaType = MediaType.IMAGE) -> bytes:
    """A blob with a *valid MAC* over arbitrary (possibly badly padded) plaintext blocks."""
    keys = derive_media_keys(KEY, mtype)
    ct = Cipher(algorithms.AES(keys.cipher_key), modes.CBC(keys.iv)).encryptor().update(plaintext_padded)
    return ct + hmac.new(keys.mac_key, keys.iv + ct, hashlib.sha256).digest()[:10]


@pytest.mark.parametrize(
    "padded",
    [
        b"A" * 16,  # last byte 0x41: pad > 16
        b"A" * 15 + b"\x00",  # pad 0
        b"A" * 13 + b"\x01\x02\x03",  # pad 3 with wrong filler
        b"A" * 14 + b"\x01\x02",  # pad 2 with wrong filler
        b"A" * 16 + b"\x11" * 16,  # pad 17 in a whole block
    ],
)
def test_bad_padding_behind_a_valid_mac_is_rejected(padded: bytes) -> None:
    with pytest.raises(MediaIntegrityError):
        decrypt(_forge(padded), MediaType.IMAGE, KEY)


def test_valid_forge_control() -> None:
    """Control for the test above: the forging helper does produce acceptable blobs."""
    assert decrypt(_forge(b"A" * 15 + b"\x01"), MediaType.IMAGE, KEY) == b"A" * 15
    assert decrypt(_forge(b"\x10" * 16), MediaType.IMAGE, KEY) == b""


def _blob() -> tuple[bytes, bytes, bytes]:
    blob, info = encrypt(b"hello media" * 100, MediaType.IMAGE, KEY)
    return blob, info.file_sha256, info.file_enc_sha256


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b[:-1],  # truncated MAC
        lambda b: b[:-10],  # MAC cut off
        lambda b: b[:-26],  # a whole block and the MAC missing
        lambda b: b[16:],  # first block missing
        lambda b: b + b"\x00",  # extended by one byte
        lambda b: b + b"\x00" * 16,  # extended by a block
        lambda b: b[:-10] + b"\x10" * 16 + b[-10:],  # a padding block inserted
        lambda b: bytes([b[0] ^ 1]) + b[1:],  # ciphertext bit flip
        lambda b: b[:-1] + bytes([b[-1] ^ 0x80]),  # MAC bit flip
        lambda b: b"",
        lambda b: b[:10],
        lambda b: b[:26],
    ],
)
def test_every_tampering_gives_one_opaque_error(mutate: object) -> None:
    blob, fsha, fenc = _blob()
    bad = mutate(blob)  # type: ignore[operator]
    messages = set()
    for kwargs in ({}, {"file_sha256": fsha}, {"file_enc_sha256": fenc}):
        with pytest.raises(MediaIntegrityError) as err:
            decrypt(bad, MediaType.IMAGE, KEY, **kwargs)  # type: ignore[arg-type]
        assert isinstance(err.value, PeerError)
        messages.add(str(err.value))
    assert len(messages) == 1


def test_wrong_expected_hashes_are_rejected() -> None:
    blob, fsha, fenc = _blob()
    with pytest.raises(MediaIntegrityError):
        decrypt(blob, MediaType.IMAGE, KEY, file_enc_sha256=fsha)
    with pytest.raises(MediaIntegrityError):
        decrypt(blob, MediaType.IMAGE, KEY, file_sha256=fenc)
    with pytest.raises(MediaIntegrityError):
        decrypt(blob, MediaType.IMAGE, os.urandom(32))
    with pytest.raises(InvalidArgumentError):
        decrypt(blob, MediaType.IMAGE, KEY, file_sha256=b"short")


class _RecordingSink:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: memoryview) -> int:
        self.data += data
        return len(data)


def test_streaming_decryptor_holds_back_the_last_block_and_only_reports_after_checks() -> None:
    plain = os.urandom(100)
    blob, info = encrypt(plain, MediaType.IMAGE, KEY)
    sink = _RecordingSink()
    dec = MediaDecryptor(MediaType.IMAGE, KEY, staging=sink, file_sha256=info.file_sha256)
    dec.update(blob)
    assert len(sink.data) < len(plain)  # the padded last block is still held back
    result = dec.finalize()
    assert bytes(sink.data) == plain and result.plaintext is None and result.file_length == 100


def test_in_memory_decryptor_returns_nothing_before_verification() -> None:
    blob, _ = encrypt(b"x" * 5000, MediaType.IMAGE, KEY)
    dec = MediaDecryptor(MediaType.IMAGE, KEY)
    assert dec.update(blob[:-1] + bytes([blob[-1] ^ 1])) is None  # type: ignore[func-returns-value]
    with pytest.raises(MediaIntegrityError):
        dec.finalize()
    with pytest.raises(MediaIntegrityError):  # a failed decryptor stays failed
        dec.update(b"more")


def test_spent_objects_refuse_reuse() -> None:
    enc = MediaEncryptor(MediaType.IMAGE, KEY)
    blob = enc.update(b"abc")
    tail, _ = enc.finalize()
    with pytest.raises(UsageError):
        enc.update(b"x")
    with pytest.raises(UsageError):
        enc.finalize()
    dec = MediaDecryptor(MediaType.IMAGE, KEY)
    dec.update(blob + tail)
    assert dec.finalize().plaintext == b"abc"
    with pytest.raises(UsageError):
        dec.finalize()


def test_update_into_needs_room() -> None:
    enc = MediaEncryptor(MediaType.IMAGE, KEY)
    with pytest.raises(InvalidArgumentError):
        enc.update_into(b"a" * 32, bytearray(40))
    out = bytearray(47)
    assert enc.update_into(b"a" * 32, out) == 32


# --------------------------------------------------------------------------- sidecar


@pytest.mark.parametrize("length", [0, 65536 - 42, 65536 - 26, 65536 - 25, 65536, 3 * 65536 + 7, 300_000])
def test_sidecar_matches_the_spec_computation(length: int) -> None:
    plain = os.urandom(length)
    blob, info = encrypt(plain, MediaType.VIDEO, KEY)
    keys = derive_media_keys(KEY, MediaType.VIDEO)
    assert info.sidecar == media_spec.sidecar(keys.mac_key, keys.iv + blob)
    assert info.sidecar is not None and len(info.sidecar) == 10 * (-(-(len(blob) + 16) // 65536))


def test_sidecar_chunks_verify_and_decrypt_for_streamed_playback() -> None:
    plain = os.urandom(3 * 65536 + 1234)
    blob, info = encrypt(plain, MediaType.VIDEO, KEY)
    keys = derive_media_keys(KEY, MediaType.VIDEO)
    assert info.sidecar is not None
    pieces = []
    n = len(info.sidecar) // 10
    for index in range(n):
        start, end = sidecar_window(index, len(blob))
        verify_sidecar_chunk(keys, info.sidecar, index, blob[start:end], blob_length=len(blob))
        pieces.append(decrypt_sidecar_chunk(keys, info.sidecar, index, blob[start:end], blob_length=len(blob)))
        assert pieces[-1] == plain[index * 65536 : (index + 1) * 65536]
    assert b"".join(pieces) == plain
    start, end = sidecar_window(1, len(blob))
    tampered = bytearray(blob[start:end])
    tampered[100] ^= 1
    with pytest.raises(MediaIntegrityError):
        verify_sidecar_chunk(keys, info.sidecar, 1, bytes(tampered), blob_length=len(blob))
    with pytest.raises(MediaIntegrityError):  # a chunk presented as another index
        verify_sidecar_chunk(keys, info.sidecar, 2, blob[start:end], blob_length=len(blob))
    with pytest.raises(InvalidArgumentError):
        sidecar_window(n, len(blob))
