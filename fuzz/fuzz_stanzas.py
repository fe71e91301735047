"""atheris harness: WhatsApp stanzas from the server, through the binary codec and every typed parser.

Invariant: bytes off the wire end as typed stanzas or as a PeerError, never any other exception;
a parsed stanza re-encodes to a node the same parser reads back as the same value.
Run: python fuzz/fuzz_stanzas.py -runs=2000
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from wacrypto.errors import PeerError
    from wacrypto.whatsapp import stanzas as s
    from wacrypto.whatsapp.retry import RetryReceipt
    from wacrypto.wire.binary import Node, decode_node, encode_node

ROUND_TRIP = [s.PrekeyUpload.from_node, s.IncomingMessage.from_node, s.OutgoingMessage.from_node, s.Ack.from_node,
              s.Receipt.from_node, RetryReceipt.from_node]
OTHER = [s.parse_prekey_count, s.parse_bundle_result, s.parse_notification]
SEEDS = [
    encode_node(Node("message", {"id": "m", "from": "1@lid", "t": "5", "type": "text"}, (Node("enc", {"v": "2", "type": "msg"}, b"ct"),))),
    encode_node(Node("receipt", {"id": "a", "from": "1@s.whatsapp.net", "type": "read"}, (Node("list", {}, (Node("item", {"id": "b"}),)),))),
    encode_node(Node("notification", {"type": "devices", "from": "1@lid"}, (Node("add", {}, (Node("device", {"jid": "1:2@lid"}),)),))),
    encode_node(Node("receipt", {"id": "a", "type": "retry", "from": "1@lid"}, (Node("retry", {"count": "2", "id": "a", "t": "1", "v": "1"}),
                                                                               Node("registration", {}, b"\x00\x00\x00\x07")))),
]


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    raw = bytearray(SEEDS[fdp.ConsumeIntInRange(0, len(SEEDS) - 1)])
    for _ in range(fdp.ConsumeIntInRange(0, 4)):
        raw[fdp.ConsumeIntInRange(0, len(raw) - 1)] = fdp.ConsumeInt(1) & 0xFF
    raw += fdp.ConsumeBytes(fdp.remaining_bytes())
    try:
        node = decode_node(bytes(raw))
    except PeerError:
        return
    for parse in ROUND_TRIP:
        try:
            value = parse(node)
        except PeerError:
            continue
        assert parse(decode_node(encode_node(value.to_node()))) == value  # type: ignore[attr-defined]
    for other in OTHER:
        try:
            other(node)
        except PeerError:
            pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
