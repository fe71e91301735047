"""atheris harness: the decrypted plaintext of a WhatsApp message (padding, then the Message protobuf).

Invariant: any bytes decode to a Content or raise a PeerError, never anything else; what decodes
encodes again (v=3) to bytes that decode to the same Content.
Run: python fuzz/fuzz_message.py -runs=2000
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from wacrypto.errors import PeerError
    from wacrypto.whatsapp.message import Content, DocumentRef, ImageRef, SenderKeyDistribution, decode, encode

SEEDS = [
    encode(Content(text="hello"), v=3),
    encode(Content(text="sent", destination="15551234567@s.whatsapp.net", phash="2:abcdefgh"), v=3),
    encode(Content(image=ImageRef("https://m/x", "/x", b"\x01" * 32, b"\x02" * 32, b"\x03" * 32, 1234)), v=3),
    encode(Content(document=DocumentRef("https://m/d", "/d", b"\x04" * 32, b"\x05" * 32, b"\x06" * 32, 9, file_name="a.pdf")), v=3),
    encode(Content(distribution=SenderKeyDistribution("123-456@g.us", b"\x33" * 40), text="g"), v=3),
]


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    v = 2 if fdp.ConsumeBool() else 3
    if fdp.ConsumeBool():
        seed = bytearray(SEEDS[fdp.ConsumeIntInRange(0, len(SEEDS) - 1)])
        for _ in range(fdp.ConsumeIntInRange(0, 4)):
            if seed:
                seed[fdp.ConsumeIntInRange(0, len(seed) - 1)] = fdp.ConsumeInt(1) & 0xFF
        body = bytes(seed) + (bytes((1,)) if v == 2 else b"")
    else:
        body = fdp.ConsumeBytes(fdp.remaining_bytes())
    try:
        got = decode(body, v=v)
    except PeerError:
        return
    assert isinstance(got, Content)
    assert decode(encode(got, v=3), v=3) == got


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
