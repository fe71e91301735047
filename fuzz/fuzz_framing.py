"""atheris harness: frame reassembly and chat-stanza parsing of untrusted bytes.

Invariant: untrusted bytes raise only the PeerError family (here FrameError, which is also a
TransportError); anything else, a NetworkError or UsageError included, is a crash. Run: python fuzz/fuzz_framing.py -runs=2000
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from wacrypto.errors import PeerError
    from wacrypto.transport.framing import FrameDecoder
    from wacrypto.transport.messages import decode_stanza

ALLOWED = (PeerError,)


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    expect_intro = fdp.ConsumeBool()
    limit = fdp.ConsumeIntInRange(1, 1 << 16)
    cuts = sorted(fdp.ConsumeIntInRange(0, 4096) for _ in range(fdp.ConsumeIntInRange(0, 8)))
    stream = fdp.ConsumeBytes(fdp.remaining_bytes())
    whole = FrameDecoder(limit, expect_intro=expect_intro)
    split = FrameDecoder(limit, expect_intro=expect_intro)
    got_whole: list[bytes] = []
    got_split: list[bytes] = []
    err_whole = err_split = None
    try:
        whole.feed(stream)
        while (f := whole.next_frame()) is not None:
            got_whole.append(f)
    except ALLOWED as exc:
        err_whole = type(exc)
    try:
        prev = 0
        for c in [*cuts, len(stream)]:
            c = min(c, len(stream))
            if c < prev:
                continue
            split.feed(stream[prev:c])
            prev = c
            while (f := split.next_frame()) is not None:
                got_split.append(f)
    except ALLOWED as exc:
        err_split = type(exc)
    # any split parses the same frames and fails the same way
    assert err_whole == err_split, (err_whole, err_split)
    if err_whole is None:
        assert got_whole == got_split
    for frame in got_whole:
        assert len(frame) <= limit
        try:
            decode_stanza(frame)
        except ALLOWED:
            pass


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
