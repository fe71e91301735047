"""``<stream:error>``: one table of codes for the transport and the WhatsApp stanzas, a builder and a
parser that read back what they write and take WhatsApp's bare conflicts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wacrypto.errors import InvalidArgumentError, InvalidMessageError
from wacrypto.testing.stanzas import stanzas
from wacrypto.transport import messages as transport
from wacrypto.whatsapp import stanzas as whatsapp
from wacrypto.wire.binary import Node, decode_node, encode_node
from wacrypto.wire.stream_error import StreamCode, StreamErrorNode, conflict_type, parse_stream_error, stream_error_node

_ends = st.builds(StreamErrorNode, st.sampled_from(list(StreamCode)),
                  st.none() | st.sampled_from(["replaced", "device_removed", "other"]), st.text(max_size=40))


def test_both_layers_use_the_one_table() -> None:
    assert transport.StreamErrorCode is StreamCode is whatsapp.StreamCode
    assert {int(c) for c in StreamCode} == {401, 405, 429, 440, 500, 515}
    assert StreamCode(440) is StreamCode.REPLACED and StreamCode(500) is StreamCode.INTERNAL  # the stanza layer's names
    node = stream_error_node(StreamCode.CONFLICT, conflict="replaced")
    assert transport.stanza_node(transport.StreamError(StreamCode.CONFLICT)) == node == whatsapp.StreamError.replaced().to_node()
    removed = whatsapp.StreamError.device_removed().to_node()
    assert transport.node_stanza(removed) == transport.StreamError(StreamCode.LOGGED_OUT)
    assert conflict_type(StreamCode.RATE_LIMITED) is None


@settings(max_examples=200, deadline=None)
@given(_ends, st.booleans())
def test_what_is_written_reads_back(end: StreamErrorNode, strict: bool) -> None:
    node = decode_node(encode_node(stream_error_node(end.code, conflict=end.conflict, text=end.text)))
    assert parse_stream_error(node, strict=strict) == end


def test_whatsapps_bare_conflicts_and_unknown_codes() -> None:
    def bare(kind: str) -> Node:
        return Node("stream:error", {}, (Node("conflict", {"type": kind}),))

    assert parse_stream_error(bare("replaced")).code is StreamCode.CONFLICT
    assert parse_stream_error(bare("device_removed")).code is StreamCode.LOGGED_OUT
    assert parse_stream_error(bare("unheard_of")) == StreamErrorNode(StreamCode.UNKNOWN, "unheard_of")
    for code in ("503", "4" * 50, "x", "", "\u0664\u0664\u0660"):  # the last: Arabic-Indic digits
        assert parse_stream_error(Node("stream:error", {"code": code})).code is StreamCode.UNKNOWN
    long = parse_stream_error(Node("stream:error", {"code": "515", "text": "t" * 5000}))
    assert long.code is StreamCode.RESTART_REQUIRED and len(long.text) == 1024


@pytest.mark.parametrize("node", [
    Node("stream:error", {}, (Node("conflict", {"type": "replaced"}),)),  # no code
    Node("stream:error", {"code": "1000"}),
    Node("stream:error", {"code": "\u0664\u0664\u0660"}),
    Node("stream:error", {"code": "440"}, (Node("conflict"),)),  # a conflict without its type
    Node("failure", {"code": "440"}),
])
def test_strict_refuses_what_the_stanza_layer_never_accepted(node: Node) -> None:
    with pytest.raises(InvalidMessageError):
        parse_stream_error(node, strict=True)


def test_the_builder_refuses_what_no_parser_reads_back() -> None:
    with pytest.raises(InvalidArgumentError):
        stream_error_node(StreamCode.CONFLICT, conflict="")
    with pytest.raises(InvalidArgumentError):
        stream_error_node(StreamCode.CONFLICT, text="t" * 1025)


@settings(max_examples=300, deadline=None)
@given(stanzas, st.booleans())
def test_hostile_nodes_raise_only_invalid_message(n: Node, strict: bool) -> None:
    for node in (n, Node("stream:error", dict(n.attrs), n.content)):
        try:
            parse_stream_error(node, strict=strict)
        except InvalidMessageError:
            pass
