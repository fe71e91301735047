"""atheris harness for the media decrypt path.

Invariant (design rule 5): decrypting untrusted bytes either succeeds or raises MediaIntegrityError;
nothing else may escape. When the input is a genuine blob left untouched, decryption must succeed and
return the original plaintext; any edit of a genuine blob must be rejected. The two-thread seam
(``MediaDecryptor.split``, run here on one thread with the back half lagging) always agrees with
``MediaDecryptor.update``.

Short CI run:  .venv/bin/python fuzz/fuzz_media_decrypt.py -runs=2000
Longer run:    .venv/bin/python fuzz/fuzz_media_decrypt.py -max_total_time=600 fuzz/corpus-media/
"""

from __future__ import annotations

import sys

import atheris

import wacrypto  # noqa: F401  (parent package imported uninstrumented: it pulls in unrelated modules)

with atheris.instrument_imports(include=["wacrypto.media"]):
    from wacrypto.errors import MediaIntegrityError
    from wacrypto.media.crypto import MediaDecryptor, MediaType, decrypt, encrypt

TYPES = list(MediaType)
KEY = bytes(range(32))


def feed_update(blob: bytes, dec: MediaDecryptor, chunk: int) -> bytes | None:
    try:
        for pos in range(0, len(blob), chunk):
            dec.update(blob[pos : pos + chunk])
        result = dec.finalize()
    except MediaIntegrityError:
        return None
    assert result.plaintext is not None
    return result.plaintext


def feed_split(blob: bytes, dec: MediaDecryptor, chunk: int) -> bytes | None:
    try:
        halves = dec.split(len(blob))
        behind: list[bytes] = []
        for pos in range(0, len(blob), chunk):
            piece = blob[pos : pos + chunk]
            halves.decrypt(piece)
            behind.append(piece)
            if len(behind) > 2:
                halves.authenticate(behind.pop(0))
        for piece in behind:
            halves.authenticate(piece)
        result = dec.finalize()
    except MediaIntegrityError:
        return None
    assert result.plaintext is not None
    return result.plaintext


def feed(blob: bytes, mtype: MediaType, key: bytes, chunk: int, fsha: bytes | None, fenc: bytes | None) -> bytes | None:
    """Decrypt in chunks of ``chunk`` bytes, through update and through the split halves; return the
    plaintext or None on MediaIntegrityError (both ways must agree)."""
    got = feed_update(blob, MediaDecryptor(mtype, key, file_sha256=fsha, file_enc_sha256=fenc), chunk)
    dec = MediaDecryptor(mtype, key, file_sha256=fsha, file_enc_sha256=fenc)
    dec.update(blob[:chunk])
    dec.restart()  # a restarted decryptor is a fresh one
    assert feed_split(blob, dec, chunk) == got, "the split decryptor disagrees with update()"
    return got


def TestOneInput(data: bytes) -> None:  # noqa: N802 - atheris' name
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, 2)
    mtype = TYPES[fdp.ConsumeIntInRange(0, len(TYPES) - 1)]
    chunk = fdp.ConsumeIntInRange(1, 80)
    if mode == 0:  # raw garbage with a fixed or fuzzed key and fuzzed expected hashes
        key = KEY if fdp.ConsumeBool() else fdp.ConsumeBytes(32).ljust(32, b"\0")
        fsha = fdp.ConsumeBytes(32).ljust(32, b"\0") if fdp.ConsumeBool() else None
        fenc = fdp.ConsumeBytes(32).ljust(32, b"\0") if fdp.ConsumeBool() else None
        blob = fdp.ConsumeBytes(fdp.remaining_bytes())
        try:
            decrypt(blob, mtype, key, file_sha256=fsha, file_enc_sha256=fenc)
        except MediaIntegrityError:
            pass
        feed(blob, mtype, key, chunk, fsha, fenc)
        return
    # a genuine blob of a fuzzed plaintext, then maybe one edit
    edit = fdp.ConsumeIntInRange(0, 4)
    where = fdp.ConsumeIntInRange(0, 1 << 16)
    bit = fdp.ConsumeIntInRange(0, 7)
    extra = fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 40)) or b"\x00"  # an edit is never empty
    plain = fdp.ConsumeBytes(fdp.remaining_bytes())
    blob, info = encrypt(plain, mtype, KEY)
    hashes = (info.file_sha256, info.file_enc_sha256) if mode == 2 else (None, None)
    if edit == 0:
        got = feed(blob, mtype, KEY, chunk, *hashes)
        assert got == plain, "a genuine blob was rejected or decrypted wrongly"
        return
    mutable = bytearray(blob)
    if edit == 1:
        mutable[where % len(mutable)] ^= 1 << bit
    elif edit == 2:
        del mutable[len(mutable) - 1 - where % len(mutable) :]
    elif edit == 3:
        mutable += extra
    else:
        mutable[where % (len(mutable) + 1) : where % (len(mutable) + 1)] = extra
    assert feed(bytes(mutable), mtype, KEY, chunk, *hashes) is None, "an edited blob was accepted"


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
