"""atheris harness: ADV device identities, key-index lists and pairing containers from a peer.

Invariant: any bytes verify or raise a PeerError, never anything else; nothing verifies that the
account did not sign (the keys here sign only the seeds, so a mutated seed that verifies must be the
seed itself, byte for byte, or differ only in fields the signatures do not cover).
Run: python fuzz/fuzz_adv.py -runs=2000
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from wacrypto.errors import PeerError
    from wacrypto.primitives.keys import KeyPair
    from wacrypto.testing.rng import SeededRng
    from wacrypto.whatsapp.adv import (
        DeviceIdentity,
        KeyIndexList,
        countersign_device_identity,
        sign_device_identity,
        sign_key_index_list,
        unwrap_pairing_identity,
        verify_device_identity,
        verify_key_index_list,
        wrap_pairing_identity,
    )

RNG = SeededRng(b"fuzz-adv")
ACCOUNT, DEVICE = KeyPair.generate(RNG), KeyPair.generate(RNG)
SECRET = RNG(32)
LIST = KeyIndexList(7, 1, 2, frozenset({1, 2}))
SIGNED_LIST = sign_key_index_list(ACCOUNT, LIST, RNG)
DETAILS = DeviceIdentity(7, 1, 2)
SIGNED_DEVICE = countersign_device_identity(DEVICE, sign_device_identity(ACCOUNT, DEVICE.public, DETAILS, RNG), RNG)
BOX = wrap_pairing_identity(SIGNED_DEVICE, SECRET)
SEEDS = [SIGNED_LIST, SIGNED_DEVICE, BOX]


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    which = fdp.ConsumeIntInRange(0, 2)
    raw = bytearray(SEEDS[which])
    for _ in range(fdp.ConsumeIntInRange(0, 3)):
        raw[fdp.ConsumeIntInRange(0, len(raw) - 1)] = fdp.ConsumeInt(1) & 0xFF
    raw = raw[: fdp.ConsumeIntInRange(0, len(raw))] + fdp.ConsumeBytes(fdp.remaining_bytes())
    try:
        if which == 0:
            got_list = verify_key_index_list(bytes(raw), ACCOUNT.public)
            assert got_list == LIST, got_list  # only the signed details can verify
        elif which == 1:
            got = verify_device_identity(bytes(raw), device_identity=DEVICE.public,
                                         account_identity=ACCOUNT.public, key_index_list=LIST)
            assert got == DETAILS, got
        else:
            assert unwrap_pairing_identity(bytes(raw), SECRET) == SIGNED_DEVICE
    except PeerError:
        return


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
