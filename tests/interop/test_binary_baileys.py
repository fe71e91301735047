"""Our binary stanza codec against Baileys' (npm ``baileys`` 6.17.16, lib/WABinary), both ways.

For generated stanzas: we write the same bytes as Baileys' encoder; Baileys' decoder reads our bytes
as the stanza we meant; we read Baileys' bytes (and its zlib-compressed form) likewise. Where
Baileys' encoder loses information we stay lossless, and the test says so.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from wacrypto.testing.stanzas import node_from_json, node_to_json, same_node, stanzas
from wacrypto.wire.binary import Node, decode_node, encode_node
from wacrypto.wire.tokens import DOUBLE_BYTE_TOKENS, SINGLE_BYTE_TOKENS

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "drivers" / "baileys_binary.js"




class Baileys:
    """One node process running the driver; a request per line."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(["node", str(DRIVER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def __call__(self, **req: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"the Baileys driver died (exit {self.proc.poll()})"
        return json.loads(line)  # type: ignore[no-any-return]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def baileys() -> Iterator[Baileys]:
    b = Baileys()
    yield b
    b.close()


def test_token_tables_equal_baileys(baileys: Baileys) -> None:
    single, double = baileys(tables=True)["tables"]
    assert tuple(single) == SINGLE_BYTE_TOKENS
    assert tuple(tuple(t) for t in double) == DOUBLE_BYTE_TOKENS


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(stanzas)
def test_generated_stanzas_both_ways(baileys: Baileys, stanza: Node) -> None:
    batch = [stanza]
    ours = [encode_node(n).hex() for n in batch]
    res = baileys(encode=[node_to_json(n) for n in batch], decode=ours, deflate=[h[2:] for h in ours])
    for n, mine, theirs, read in zip(batch, ours, res["encoded"], res["decoded"]):
        assert theirs == mine, f"encoders differ for {node_to_json(n)}"
        assert "error" not in read, read
        back = node_from_json(read)
        assert same_node(n, back)  # Baileys reads our bytes as what we wrote
        assert decode_node(bytes.fromhex(theirs)) == back  # we read Baileys' bytes as Baileys does
    for n, packed in zip(batch, res["deflated"]):
        assert same_node(n, decode_node(bytes.fromhex(packed)))  # zlib-compressed, flag 0x02


def test_a_large_binary_payload_both_ways(baileys: Baileys) -> None:
    # BINARY_8, BINARY_20 (below and above 2^19) and BINARY_32 length prefixes
    batch = [Node("enc", {"type": "msg", "v": "2"}, bytes(range(256)) * k) for k in (1, 5, 3000, 4097)]
    ours = [encode_node(n).hex() for n in batch]
    res = baileys(encode=[node_to_json(n) for n in batch], decode=ours)
    assert res["encoded"] == ours
    assert [node_from_json(d) for d in res["decoded"]] == batch


def test_where_baileys_loses_information_we_do_not(baileys: Baileys) -> None:
    # Each of these reads back as something else after Baileys' encoder; ours reads back exactly.
    lossy = {
        "123_1@s.whatsapp.net": "agent suffix dropped",
        "123:0@s.whatsapp.net": "device 0 dropped",
        "123:007@s.whatsapp.net": "device renumbered",
        "123:5@g.us": "server turned into s.whatsapp.net",
        "constructor": "written as the empty string",
    }
    batch = [Node("iq", {"to": v}) for v in lossy] + [Node("body", {}, "")]
    ours = [encode_node(n) for n in batch]
    res = baileys(encode=[node_to_json(n) for n in batch], decode=[b.hex() for b in ours])
    for n, mine, theirs, read in zip(batch, ours, res["encoded"], res["decoded"]):
        assert decode_node(mine) == n or same_node(n, decode_node(mine))
        assert same_node(n, node_from_json(read)), "Baileys' decoder reads our lossless form correctly"
        assert not same_node(n, decode_node(bytes.fromhex(theirs))), f"Baileys' encoder is lossless for {n.attrs}"
