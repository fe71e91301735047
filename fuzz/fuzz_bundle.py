"""atheris harness: prekey bundles as received (JSON shape of the peer protocol / a server).

Invariant: any JSON object yields a valid PreKeyBundle or an InvalidMessageError; signature checks
never raise.
Run: python fuzz/fuzz_bundle.py -runs=2000
"""

from __future__ import annotations

import json
import sys

import atheris

with atheris.instrument_imports():
    from wacrypto.errors import PeerError
    from wacrypto.signal.bundle import PreKeyBundle

KEY = "05" + "11" * 32


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    choice = fdp.ConsumeIntInRange(0, 2)
    if choice == 0:
        try:
            obj = json.loads(fdp.ConsumeUnicodeNoSurrogates(512))
        except (ValueError, RecursionError):
            return
    else:
        obj = {
            "registration_id": fdp.ConsumeIntInRange(-2, 2**33),
            "device_id": fdp.ConsumeIntInRange(-2, 2**33),
            "identity_key": fdp.ConsumeBytes(34).hex() if choice == 1 else KEY,
            "signed_prekey_id": fdp.ConsumeIntInRange(-2, 2**25),
            "signed_prekey": fdp.ConsumeBytes(34).hex() if choice == 1 else KEY,
            "signed_prekey_signature": fdp.ConsumeBytes(65).hex(),
        }
        if fdp.ConsumeBool():
            obj["prekey_id"] = fdp.ConsumeIntInRange(-2, 2**25)
            obj["prekey"] = fdp.ConsumeBytes(34).hex()
    try:
        b = PreKeyBundle.from_dict(obj)
    except PeerError:
        return
    b.signature_valid()
    PreKeyBundle.from_dict(b.to_dict())


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
