"""atheris harness: binary stanzas (WABinary) as a chat connection receives them.

Invariant: any bytes decode to a Node or raise InvalidMessageError (a PeerError), never anything
else; a decoded node re-encodes to a stanza that decodes to the same node, and re-encoding that is
a fixed point (one canonical form). Half the inputs are valid stanzas with bytes flipped and cut.
Run: python fuzz/fuzz_binary.py -runs=2000
"""

from __future__ import annotations

import sys
import zlib

import atheris

with atheris.instrument_imports():
    from wacrypto.errors import InvalidMessageError
    from wacrypto.wire.binary import Node, decode_node, encode_node

SEEDS = [
    encode_node(Node("message", {"to": "123456:2@s.whatsapp.net", "id": "3EB0ABCDEF", "type": "text"},
                     (Node("enc", {"v": "2", "type": "pkmsg"}, b"\x33" * 40),))),
    encode_node(Node("iq", {"xmlns": "encrypt", "type": "get", "to": "@s.whatsapp.net"},
                     (Node("key", {}, (Node("user", {"jid": "99:1@lid"}),)),))),
    encode_node(Node("receipt", {"type": "retry", "id": "A1B2", "t": "1700000000"}, "hello there")),
]


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, 2)
    if mode == 0:
        raw = fdp.ConsumeBytes(fdp.remaining_bytes())
    else:
        seed = bytearray(SEEDS[fdp.ConsumeIntInRange(0, len(SEEDS) - 1)])
        for _ in range(fdp.ConsumeIntInRange(0, 4)):
            if seed:
                seed[fdp.ConsumeIntInRange(0, len(seed) - 1)] = fdp.ConsumeInt(1) & 0xFF
        seed = seed[: fdp.ConsumeIntInRange(0, len(seed))] + fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 8))
        raw = bytes(seed) if mode == 1 else b"\x02" + zlib.compress(bytes(seed[1:]))
    try:
        node = decode_node(raw)
    except InvalidMessageError:
        return
    again = encode_node(node)
    assert decode_node(again) == node
    assert encode_node(decode_node(again)) == again


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
