"""atheris harness: Signal wire messages and a full decrypt of untrusted bytes.

Invariant: parsing or decrypting arbitrary bytes raises only the PeerError family (or succeeds),
and a rejected message leaves the receiver's store unchanged.
Run: python fuzz/fuzz_wire.py -runs=2000   (longer: -max_total_time=600)
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    import trio

    from wacrypto.session import account
    from wacrypto.address import Address
    from wacrypto.session.cipher import SessionCipher
    from wacrypto.errors import DuplicateMessageError, MissingStateError, PeerError
    from wacrypto.store.memory import MemoryKeyStore
    from wacrypto.wire.messages import (
        PreKeySignalMessage,
        SenderKeyDistributionMessage,
        SenderKeyMessage,
        SignalMessage,
    )

A, B = Address("alice"), Address("bob")


async def _setup() -> tuple[SessionCipher, MemoryKeyStore, list[bytes]]:
    sa, sb = MemoryKeyStore(), MemoryKeyStore()
    await account.create_account(sa, prekeys=1)
    await account.create_account(sb, prekeys=1)
    ca, cb = SessionCipher(sa), SessionCipher(sb)
    await ca.process_bundle(B, await account.get_bundle(sb))
    seeds = []
    for i in range(3):
        m = await ca.encrypt(B, b"seed %d" % i)
        seeds.append(bytes((m.type,)) + m.body)
    m0 = seeds[0]
    await cb.decrypt(A, m0[0], m0[1:])
    return cb, sb, seeds


CIPHER, STORE, SEEDS = trio.run(_setup)
BEFORE = STORE.snapshot()


def TestOneInput(data: bytes) -> None:
    for cls in (SignalMessage, PreKeySignalMessage, SenderKeyMessage, SenderKeyDistributionMessage):
        try:
            cls.from_bytes(data)
        except PeerError:
            pass
    if not data:
        return
    msg_type = 3 if data[0] & 1 else 2
    try:
        trio.run(CIPHER.decrypt, A, msg_type, data[1:])
    except (PeerError, MissingStateError):
        pass
    else:
        # a valid seed message may decrypt once: then restore for the next input
        STORE.restore(BEFORE)
        return
    if STORE.snapshot() != BEFORE:
        raise AssertionError("a rejected message changed the store")


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    _ = DuplicateMessageError
    main()
