"""atheris harness: chat envelopes as a relaying chatd and a Messenger receive them.

Invariant: any bytes parse to an Envelope or raise InvalidMessageError (a PeerError), never
anything else; a parsed envelope re-encodes to bytes that parse to the same envelope.
Run: python fuzz/fuzz_envelope.py -runs=2000
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from wacrypto._proto import chat_pb2
    from wacrypto.errors import PeerError
    from wacrypto.chat.envelope import Envelope


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    if fdp.ConsumeBool():
        raw = fdp.ConsumeBytes(fdp.remaining_bytes())
    else:  # near-valid envelopes: every field present, sizes around the limits
        m = chat_pb2.Envelope(
            recipient=fdp.ConsumeBytes(fdp.ConsumeIntInRange(31, 33)),
            type=fdp.ConsumeIntInRange(0, 4),
            body=fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64)),
        )
        if fdp.ConsumeBool():
            m.sender = fdp.ConsumeBytes(fdp.ConsumeIntInRange(31, 33))
        raw = m.SerializeToString() + fdp.ConsumeBytes(fdp.remaining_bytes())
    try:
        env = Envelope.from_bytes(raw)
    except PeerError:
        return
    again = Envelope.from_bytes(env.to_bytes())
    assert again == env, (again, env)
    if env.sender is None:
        assert Envelope.from_bytes(env.stamped(bytes(32)).to_bytes()).sender == bytes(32)


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
