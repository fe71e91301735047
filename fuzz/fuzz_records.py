"""atheris harness: stored/imported records (session, prekey, signed prekey, identity).

Invariant: loading arbitrary bytes raises only the PeerError family; a record that loads can be
used for an encrypt attempt that raises only wacrypto errors (never a crash).
Run: python fuzz/fuzz_records.py -runs=2000
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from wacrypto.errors import PeerError, WacryptoError
    from wacrypto.signal import ratchet
    from wacrypto.signal.records import (
        PreKeyRecord,
        SessionRecord,
        SignedPreKeyRecord,
        identity_from_bytes,
    )


def TestOneInput(data: bytes) -> None:
    for fn in (PreKeyRecord.from_bytes, SignedPreKeyRecord.from_bytes, identity_from_bytes):
        try:
            fn(data)
        except PeerError:
            pass
    try:
        rec = SessionRecord.from_bytes(data)
    except PeerError:
        return
    if rec.has_current_state() and rec.current.HasField("sender_chain"):
        try:
            ratchet.encrypt(rec.current, b"x")
        except WacryptoError:
            pass
    rec.to_bytes()


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
