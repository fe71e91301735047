"""Sans-I/O connection state machines: handshake, stanzas, sticky errors, keepalive deadlines."""

from __future__ import annotations

import time

import pytest
from wacrypto.testing.connections import chat_pair, handshake, pump

from wacrypto.chatd.server import ServerKeys
from wacrypto.errors import (
    CertificateError,
    ConnectionClosedError,
    FrameError,
    HandshakeTimeoutError,
    KeepaliveTimeoutError,
    PeerError,
)
from wacrypto.primitives.keys import KeyPair
from wacrypto.transport.chat_connection import (
    AckReceived,
    ChatConnection,
    Connected,
    KeepaliveSettings,
    MessageReceived,
    PingReceived,
    PongReceived,
    StreamErrorReceived,
)
from wacrypto.transport.noise_connection import (
    NEED_DATA,
    ClientSettings,
    ConnectionClosed,
    ConnectionState,
    NoiseConnection,
    ServerSettings,
)
from wacrypto.transport.messages import Ack, Message, StreamErrorCode


def test_handshake_both_roles_and_messages(server_keys: ServerKeys) -> None:
    c, s = chat_pair(server_keys)
    assert pump(c, s, 0) == []  # ClientHello -> server answers, no event yet
    (ev,) = pump(s, c, 0)
    assert isinstance(ev, Connected) and ev.server_certificate is not None
    assert ev.remote_static == server_keys.static.public
    (ev2,) = pump(c, s, 0)
    assert isinstance(ev2, Connected) and ev2.client_payload is not None
    assert c.state is s.state is ConnectionState.OPEN
    assert c.noise.handshake_hash == s.noise.handshake_hash
    c.send(Message("m1", b"payload"), 1.0)
    c.send(Message("m2", b""), 1.0)
    assert pump(c, s, 1.0) == [MessageReceived("m1", b"payload"), MessageReceived("m2", b"")]
    s.send(Ack("m1"), 1.0)
    assert pump(s, c, 1.0) == [AckReceived("m1")]


def test_wrong_trust_root_fails_closed(server_keys: ServerKeys) -> None:
    c = NoiseConnection(ClientSettings(KeyPair.generate(), KeyPair.generate().public), wall_time=time.time())
    s = NoiseConnection(ServerSettings(server_keys.static, server_keys.chain))
    s.receive_data(c.data_to_send())
    assert s.next_event() is NEED_DATA
    c.receive_data(s.data_to_send())
    with pytest.raises(CertificateError):
        c.next_event()
    assert c.state is ConnectionState.ERROR
    with pytest.raises(CertificateError):  # sticky
        c.next_event()
    assert c.data_to_send() == b""  # no ClientFinish leaks out


def test_expired_certificate_fails(server_keys: ServerKeys) -> None:
    c = NoiseConnection(ClientSettings(KeyPair.generate(), server_keys.root_public), wall_time=time.time() + 20 * 365 * 86400)
    s = NoiseConnection(ServerSettings(server_keys.static, server_keys.chain))
    s.receive_data(c.data_to_send())
    s.next_event()
    c.receive_data(s.data_to_send())
    with pytest.raises(CertificateError, match="validity"):
        c.next_event()


def test_bad_tag_is_a_sticky_frame_error(server_keys: ServerKeys) -> None:
    c, s = chat_pair(server_keys)
    handshake(c, s)
    c.send(Message("m", b"x" * 50), 0)
    data = bytearray(c.data_to_send())
    data[-1] ^= 1
    s.receive_data(bytes(data), 0)
    with pytest.raises(FrameError):
        s.next_event()
    assert s.state is ConnectionState.ERROR
    with pytest.raises(FrameError):
        s.send(Ack("m"), 0)
    with pytest.raises(FrameError):
        s.receive_data(b"more", 0)


def test_oversized_length_prefix_is_refused_at_once(server_keys: ServerKeys) -> None:
    c, s = chat_pair(server_keys)
    handshake(c, s)
    c.receive_data(b"\xff\xff\xff", 0)  # 16 MiB - 1 > DEFAULT_MAX_FRAME_LEN; no body needed
    with pytest.raises(FrameError, match="exceeds"):
        c.next_event()


def test_garbage_stanza_inside_a_valid_frame(server_keys: ServerKeys) -> None:
    c, s = chat_pair(server_keys)
    handshake(c, s)
    s.noise.send_frame(b"\xff\xff\xff not protobuf")
    c.receive_data(s.data_to_send(), 0)
    with pytest.raises(FrameError):
        c.next_event()
    assert c.state is ConnectionState.ERROR


def test_eof_mid_frame_and_during_handshake(server_keys: ServerKeys) -> None:
    c, s = chat_pair(server_keys)
    s.receive_data(c.data_to_send()[:10], 0)
    s.receive_data(b"", 0)
    with pytest.raises(ConnectionClosedError):
        s.next_event()
    c, s = chat_pair(server_keys)
    handshake(c, s)
    c.send(Message("m", b"abc"), 0)
    s.receive_data(c.data_to_send()[:-1], 0)
    s.receive_data(b"", 0)
    with pytest.raises(ConnectionClosedError, match="middle of a frame"):
        s.next_event()


def test_clean_eof(server_keys: ServerKeys) -> None:
    c, s = chat_pair(server_keys)
    handshake(c, s)
    c.receive_data(b"", 0)
    assert c.next_event() == ConnectionClosed()
    assert c.state is ConnectionState.CLOSED


def test_stream_error_closes(server_keys: ServerKeys) -> None:
    c, s = chat_pair(server_keys)
    handshake(c, s)
    s.send_stream_error(StreamErrorCode.CONFLICT, "replaced")
    assert pump(s, c, 0) == [StreamErrorReceived(StreamErrorCode.CONFLICT, "replaced")]
    assert c.state is ConnectionState.CLOSED and c.next_deadline() is None
    with pytest.raises(ConnectionClosedError):
        c.send(Message("m", b""), 0)


def test_pings_are_answered_automatically(server_keys: ServerKeys) -> None:
    c, s = chat_pair(server_keys)
    handshake(c, s)
    pid = c.ping(5.0)
    assert pump(c, s, 5.1) == [PingReceived(pid)]
    (pong,) = pump(s, c, 5.3)
    assert isinstance(pong, PongReceived) and pong.id == pid and pong.rtt == pytest.approx(0.3)


KA = KeepaliveSettings(interval=20.0, jitter=5.0, deadline=15.0, dead_socket=20.0, handshake_timeout=10.0)


def test_ping_schedule_skips_when_traffic_arrived(server_keys: ServerKeys) -> None:
    c, s = chat_pair(server_keys, keepalive=KA)
    handshake(c, s)
    assert c.next_deadline() == pytest.approx(20.0)  # jitter rng 0.5 -> no offset
    s.send(Message("m", b"x"), 15.0)
    pump(s, c, 15.0)  # inbound traffic at t=15 moves the ping out
    assert c.next_deadline() == pytest.approx(35.0)
    c.handle_timeout(30.0)
    assert c.data_to_send() == b""  # nothing due yet
    c.handle_timeout(35.0)
    assert pump(c, s, 35.0) == [PingReceived(1)]
    assert c.next_deadline() == pytest.approx(50.0)  # pong deadline 35 + 15


def test_no_pong_within_the_deadline(server_keys: ServerKeys) -> None:
    c, s = chat_pair(server_keys, keepalive=KA)
    handshake(c, s)
    c.handle_timeout(20.0)  # ping sent; the server stays silent
    assert c.next_deadline() == pytest.approx(35.0)
    c.handle_timeout(34.9)
    with pytest.raises(KeepaliveTimeoutError, match="pong"):
        c.handle_timeout(35.0)
    assert c.state is ConnectionState.ERROR
    with pytest.raises(KeepaliveTimeoutError):
        c.handle_timeout(36.0)


def test_dead_socket_rule_after_an_unanswered_message(server_keys: ServerKeys) -> None:
    ka = KeepaliveSettings(interval=0, deadline=15.0, dead_socket=20.0)
    c, s = chat_pair(server_keys, keepalive=ka)
    handshake(c, s)
    assert c.next_deadline() is None  # pings disabled, nothing outstanding
    c.send(Message("m", b"x"), 100.0)
    assert c.next_deadline() == pytest.approx(120.0)
    c.send(Message("m2", b"x"), 110.0)  # the first unanswered send counts
    assert c.next_deadline() == pytest.approx(120.0)
    with pytest.raises(KeepaliveTimeoutError, match="dead socket"):
        c.handle_timeout(120.0)


def test_inbound_bytes_clear_the_dead_socket_timer(server_keys: ServerKeys) -> None:
    ka = KeepaliveSettings(interval=0, deadline=15.0, dead_socket=20.0)
    c, s = chat_pair(server_keys, keepalive=ka)
    handshake(c, s)
    c.send(Message("m", b"x"), 100.0)
    pump(c, s, 100.0)
    assert pump(s, c, 101.0) == [AckReceived("m")] or True  # the reference ack comes from chatd, not here
    s.send(Ack("m"), 101.0)
    pump(s, c, 101.0)
    assert c.next_deadline() is None
    c.handle_timeout(500.0)


def test_answering_a_ping_does_not_arm_the_dead_socket_timer(server_keys: ServerKeys) -> None:
    ka = KeepaliveSettings(interval=0, deadline=15.0, dead_socket=20.0)
    c, s = chat_pair(server_keys, keepalive=ka)
    handshake(c, s)
    s.ping(10.0)
    pump(s, c, 10.0)  # client answers with a pong
    assert c.next_deadline() is None


def test_handshake_timeout(server_keys: ServerKeys) -> None:
    c, s = chat_pair(server_keys, keepalive=KA, now=50.0)
    assert c.next_deadline() == pytest.approx(60.0)
    c.handle_timeout(59.0)
    with pytest.raises(HandshakeTimeoutError, match="handshake") as err:
        c.handle_timeout(60.0)
    assert not isinstance(err.value, PeerError)  # our clock ran out: nothing the server sent


def test_repr_shows_no_secrets(server_keys: ServerKeys) -> None:
    c, s = chat_pair(server_keys)
    handshake(c, s)
    text = repr(c) + repr(s) + repr(c.noise) + repr(ServerSettings(server_keys.static, server_keys.chain))
    assert server_keys.static.private.to_bytes().hex() not in text
    assert isinstance(c, ChatConnection)
