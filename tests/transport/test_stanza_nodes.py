"""The transport's stanzas are WABinary nodes shaped as WhatsApp's (docs/chat-protocol.md)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wacrypto.chatd.server import ServerKeys
from wacrypto.errors import FrameError
from wacrypto.testing.connections import chat_pair, handshake, pump
from wacrypto.testing.stanzas import stanzas
from wacrypto.transport.chat_connection import KeepaliveSettings, MessageReceived, NodeReceived, PongReceived, StreamErrorReceived
from wacrypto.transport.messages import (
    Ack,
    ClientPayload,
    Message,
    Ping,
    Pong,
    StreamError,
    StreamErrorCode,
    decode_stanza,
    encode_stanza,
    node_stanza,
    stanza_node,
)
from wacrypto.wire.binary import Node, decode_node, encode_node

_IDS = st.text("abcdef0123456789.-", min_size=1, max_size=40)
_TYPED = st.one_of(
    st.builds(Ping, st.integers(0, 2**64 - 1)),
    st.builds(Pong, st.integers(0, 2**64 - 1)),
    st.builds(Message, _IDS, st.binary(max_size=200)),
    st.builds(Ack, _IDS),
    st.builds(StreamError, st.sampled_from(list(StreamErrorCode)), st.text(max_size=50)),
)


@given(_TYPED)
def test_typed_stanzas_round_trip(stanza: Ping | Pong | Message | Ack | StreamError) -> None:
    assert decode_stanza(encode_stanza(stanza)) == stanza


@given(stanzas)
def test_other_nodes_pass_through_unchanged(node: Node) -> None:
    got = node_stanza(node)
    if isinstance(got, Node):
        assert got == node
    else:  # a generated node that happens to have a typed stanza's exact shape
        assert stanza_node(got) == node or isinstance(got, StreamError)


def test_the_shapes_are_whatsapps() -> None:
    assert stanza_node(Ping(7)) == Node("iq", {"id": "ping.7", "type": "get", "xmlns": "w:p", "to": "s.whatsapp.net"},
                                        (Node("ping"),))
    assert stanza_node(Pong(7)) == Node("iq", {"id": "ping.7", "type": "result"})
    assert stanza_node(StreamError(StreamErrorCode.CONFLICT)) == Node(
        "stream:error", {"code": "440"}, (Node("conflict", {"type": "replaced"}),))
    assert stanza_node(StreamError(StreamErrorCode.RESTART_REQUIRED)) == Node("stream:error", {"code": "515"})
    assert stanza_node(Ack("m1")) == Node("ack", {"class": "message", "id": "m1"})


def test_whatsapp_stream_errors_are_understood() -> None:
    # as WhatsApp's server writes them: a conflict without a code, and codes we do not know
    replaced = Node("stream:error", {}, (Node("conflict", {"type": "replaced"}),))
    assert node_stanza(replaced) == StreamError(StreamErrorCode.CONFLICT)
    removed = Node("stream:error", {}, (Node("conflict", {"type": "device_removed"}),))
    assert node_stanza(removed) == StreamError(StreamErrorCode.LOGGED_OUT)
    assert node_stanza(Node("stream:error", {"code": "503"})) == StreamError(StreamErrorCode.UNKNOWN)
    assert node_stanza(Node("stream:error", {"code": "4" * 50})) == StreamError(StreamErrorCode.UNKNOWN)


def test_iqs_that_are_not_transport_pings_are_nodes() -> None:
    # a server ping with WhatsApp's own id, and an ordinary iq result: for the layer above
    server_ping = Node("iq", {"id": "123.456-7", "type": "get", "xmlns": "urn:xmpp:ping", "from": "s.whatsapp.net"})
    assert node_stanza(server_ping) is server_ping
    result = Node("iq", {"id": "ping.x", "type": "result"})
    assert node_stanza(result) is result
    with_content = Node("iq", {"id": "ping.3", "type": "result"}, (Node("count", {"value": "5"}),))
    assert node_stanza(with_content) is with_content
    huge = Node("iq", {"id": "ping." + "9" * 30, "type": "result"})
    assert node_stanza(huge) is huge


def test_acks_with_more_attributes_are_nodes() -> None:
    wa_ack = Node("ack", {"class": "message", "id": "m1", "from": "123@s.whatsapp.net", "t": "1"})
    assert node_stanza(wa_ack) is wa_ack


def test_a_relay_message_without_payload_is_a_frame_error() -> None:
    with pytest.raises(FrameError):
        decode_stanza(encode_node(Node("message", {"id": "m", "type": "relay"})))


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x02xyz", b"\x00\xf8\x05\x01"])
def test_garbage_is_a_frame_error(data: bytes) -> None:
    with pytest.raises(FrameError):
        decode_stanza(data)


def test_nodes_travel_over_the_connection(server_keys: ServerKeys) -> None:
    c, s = chat_pair(server_keys)
    handshake(c, s)
    msg = Node("message", {"id": "3EB0", "to": "15551234567@s.whatsapp.net", "type": "text"},
               (Node("enc", {"v": "2", "type": "msg"}, b"\x33" * 40),))
    c.send(msg, 1.0)
    c.send(Message("r1", b"relay"), 1.0)
    assert pump(c, s, 1.0) == [NodeReceived(msg), MessageReceived("r1", b"relay")]
    assert decode_node(encode_node(msg)) == msg
    c.ping(2.0)
    assert pump(c, s, 2.0) != []  # the server sees the ping and answers it itself
    (pong,) = pump(s, c, 2.5)
    assert isinstance(pong, PongReceived) and pong.id == 1
    s.send_stream_error(StreamErrorCode.CONFLICT)
    assert pump(s, c, 3.0) == [StreamErrorReceived(StreamErrorCode.CONFLICT, "")]


def test_a_node_request_arms_the_dead_socket_rule_and_an_ack_does_not(server_keys: ServerKeys) -> None:
    c, s = chat_pair(server_keys, KeepaliveSettings(interval=100.0, jitter=0.0, deadline=10.0, dead_socket=5.0))
    handshake(c, s)
    assert c.next_deadline() == 100.0
    c.send(Node("ack", {"class": "receipt", "id": "x", "to": "1@s.whatsapp.net"}), 1.0)
    assert c.next_deadline() == 100.0
    c.send(Node("iq", {"id": "q1", "type": "get", "xmlns": "encrypt"}, (Node("count"),)), 1.0)
    assert c.next_deadline() == 6.0


def test_client_payload_names_the_account() -> None:
    p = ClientPayload(username="15551234567", server="s.whatsapp.net", device=2)
    assert ClientPayload.from_bytes(p.to_bytes()) == p
    anonymous = ClientPayload()
    assert ClientPayload.from_bytes(anonymous.to_bytes()) == anonymous
    with pytest.raises(Exception):
        ClientPayload(username="1" * 65)
    with pytest.raises(Exception):
        ClientPayload(username="1", device=70000)
