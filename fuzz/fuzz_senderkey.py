"""atheris harness: sender-key parsers (SenderKeyMessage, SKDM, sender-key record) and group decrypt.

Invariant: parsing arbitrary bytes raises only the PeerError family (or succeeds); group decrypt
of arbitrary or mutated bytes raises only PeerError or NoSenderKeyError and, when it does, leaves
the receiver's record byte-for-byte unchanged; a parsed record is usable without crashing.
Run: python fuzz/fuzz_senderkey.py -runs=2000   (longer: -max_total_time=600)
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout, not a stale install

with atheris.instrument_imports():
    from wacrypto.errors import NoSenderKeyError, PeerError
    from wacrypto.signal import senderkeys as sk
    from wacrypto.signal.senderkeys import SenderKeyRecord
    from wacrypto.wire.messages import SenderKeyDistributionMessage, SenderKeyMessage


def _rng_factory(seed: bytes):  # type: ignore[no-untyped-def]
    import hashlib

    counter = [0]

    def rng(n: int) -> bytes:
        out = b""
        while len(out) < n:
            out += hashlib.sha256(seed + counter[0].to_bytes(8, "big")).digest()
            counter[0] += 1
        return out[:n]

    return rng


RNG = _rng_factory(b"fuzz-senderkey")
OWN = sk.new_own_record(RNG)
SKDM = sk.create_distribution(OWN).to_bytes()
RECEIVER = SenderKeyRecord()
sk.process_distribution(RECEIVER, SenderKeyDistributionMessage.from_bytes(SKDM))
GENUINE = [sk.encrypt(OWN, b"seed message %d" % i, rng=RNG) for i in range(4)]
# the receiver has seen message 1 (so 0 is a stored skipped key, 1 a duplicate, 2 and 3 are new)
sk.decrypt(RECEIVER, SenderKeyMessage.from_bytes(GENUINE[1]))
RECEIVER_BYTES = RECEIVER.to_bytes()
OWN_BYTES = OWN.to_bytes()


def _parse_all(data: bytes) -> None:
    for parse in (SenderKeyMessage.from_bytes, SenderKeyDistributionMessage.from_bytes, SenderKeyRecord.from_bytes):
        try:
            parse(data)
        except PeerError:
            pass


def _decrypt_checked(body: bytes) -> None:
    rec = SenderKeyRecord._trusted(RECEIVER_BYTES)
    try:
        sk.decrypt(rec, SenderKeyMessage.from_bytes(body), max_forward_jump=50)
    except (PeerError, NoSenderKeyError):
        if rec.to_bytes() != RECEIVER_BYTES:
            raise AssertionError("a rejected group message changed the record") from None


def _use_record(data: bytes) -> None:
    try:
        rec = SenderKeyRecord.from_bytes(data)
    except PeerError:
        return
    for body in GENUINE:
        try:
            sk.decrypt(rec, SenderKeyMessage.from_bytes(body), max_forward_jump=50)
        except (PeerError, NoSenderKeyError):
            pass
    try:
        sk.process_distribution(rec, SenderKeyDistributionMessage.from_bytes(SKDM))
        sk.create_distribution(rec)
        sk.encrypt(rec, b"x", rng=RNG)
    except NoSenderKeyError:
        pass
    SenderKeyRecord.from_bytes(rec.to_bytes())


def TestOneInput(data: bytes) -> None:
    _parse_all(data)
    if not data:
        return
    mode, rest = data[0] % 4, data[1:]
    if mode == 0:
        _decrypt_checked(rest)
    elif mode == 1:
        # mutate a genuine message: XOR the input over it at an offset
        base = bytearray(GENUINE[len(rest) % len(GENUINE)])
        off = rest[0] % len(base) if rest else 0
        for i, b in enumerate(rest[1:]):
            base[(off + i) % len(base)] ^= b
        _decrypt_checked(bytes(base))
    elif mode == 2:
        _use_record(rest)
    else:
        # mutate a genuine record (ours or the receiver's)
        base = bytearray(OWN_BYTES if len(rest) & 1 else RECEIVER_BYTES)
        off = rest[0] % len(base) if rest else 0
        for i, b in enumerate(rest[1:]):
            base[(off + i) % len(base)] ^= b
        _use_record(bytes(base))


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
