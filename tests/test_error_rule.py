"""The error rule of ``wacrypto.errors``, checked module by module.

Bytes from the other side (a peer, the chat server, an untrusted file) raise only the
:class:`PeerError` family, in every layer, the transport included; local conditions (an EOF, a
timeout, our own misuse) never raise a :class:`PeerError`.

* Dynamic: every parser of untrusted bytes is fed random bytes and mutated / truncated genuine
  encodings (hypothesis); only ``PeerError`` may escape (and, from the transport, a ``PeerError``
  that is also a ``TransportError``).
* Static: the ``raise`` statements reachable from each parser's entry points (following calls
  inside its module) raise only ``PeerError`` classes, except for a short list of local conditions
  named below with their reason; and each parsing module's inventory of non-``PeerError`` raises is
  listed here, so a new one is a reviewed change.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wacrypto.errors as errors
from wacrypto import (
    Address,
    GroupCipher,
    MemoryKeyStore,
    SessionCipher,
    create_account,
    generate_prekeys,
    get_bundle,
    rotate_signed_prekey,
)
from wacrypto.chat.envelope import Envelope
from wacrypto.errors import (
    ConnectionClosedError,
    HandshakeTimeoutError,
    KeepaliveTimeoutError,
    NetworkError,
    PeerError,
    TransportError,
    UsageError,
)
from wacrypto.media import MediaDecryptor, MediaType, decrypt, decrypt_sidecar_chunk, derive_media_keys, encrypt
from wacrypto.primitives.keys import KeyPair, PrivateKey
from wacrypto.signal.bundle import PreKeyBundle
from wacrypto.signal.fingerprint import create_fingerprint
from wacrypto.signal.records import PreKeyRecord, SessionRecord, SignedPreKeyRecord
from wacrypto.signal.senderkeys import SenderKeyRecord
from wacrypto.transport.certs import CertChain, CertDetails
from wacrypto.transport.chat_connection import ChatConnection, KeepaliveSettings
from wacrypto.transport.framing import DEFAULT_HEADER, FrameDecoder
from wacrypto.transport.messages import (
    Ack,
    ClientPayload,
    HandshakeKind,
    Message,
    Ping,
    Pong,
    StreamError,
    StreamErrorCode,
    decode_handshake,
    decode_stanza,
    encode_stanza,
)
from wacrypto.transport.noise import CipherState, HandshakeState, NoiseMessage, Role
from wacrypto.transport.noise_connection import (
    NEED_DATA,
    ClientSettings,
    ConnectionState,
    NoiseConnection,
    ServerSettings,
)
from wacrypto.whatsapp.adv import (
    DeviceIdentity,
    KeyIndexList,
    countersign_device_identity,
    sign_device_identity,
    sign_key_index_list,
    unwrap_pairing_identity,
    verify_device_identity,
    verify_key_index_list,
    wrap_pairing_identity,
)
from wacrypto.whatsapp.padding import pad, unpad
from wacrypto.wire.binary import Node, decode_node, decode_node_body, encode_node, encode_node_body
from wacrypto.wire.messages import (
    PreKeySignalMessage,
    SenderKeyDistributionMessage,
    SenderKeyMessage,
    SignalMessage,
)

NOW = 1_700_000_000


def _kp(seed: int) -> KeyPair:
    return KeyPair(PrivateKey(bytes([seed]) * 32))


ROOT, INTER = _kp(1), _kp(2)
CLIENT_STATIC, CLIENT_E = _kp(3), _kp(4)
SERVER_STATIC, SERVER_E = _kp(5), _kp(6)
CHAIN = CertChain.create(
    ROOT.private,
    INTER.private,
    SERVER_STATIC.public,
    not_before=NOW - 86400,
    intermediate_not_after=NOW + 86400,
    leaf_not_after=NOW + 86400,
    rng=lambda n: b"\x07" * n,
)
CLIENT_SETTINGS = ClientSettings(static=CLIENT_STATIC, trusted_root=ROOT.public, payload=ClientPayload((1, 2, 3), "t"))
SERVER_SETTINGS = ServerSettings(static=SERVER_STATIC, cert_chain=CHAIN)
MEDIA_KEY = bytes(range(32))
STANZAS = (Ping(7), Pong(7), Message("m1", b"hello"), Ack("m1"), StreamError(StreamErrorCode.RATE_LIMITED, "slow"))


# --------------------------------------------------------------------------- genuine encodings
def _client() -> NoiseConnection:
    return NoiseConnection(CLIENT_SETTINGS, wall_time=NOW, ephemeral=CLIENT_E)


def _server() -> NoiseConnection:
    return NoiseConnection(SERVER_SETTINGS, ephemeral=SERVER_E)


def _open_pair() -> tuple[NoiseConnection, NoiseConnection, bytes, bytes]:
    """A handshaken pair with fixed keys (so every pair is identical) and the bytes each side sent."""
    c, s = _client(), _server()
    sent = {id(c): bytearray(), id(s): bytearray()}
    for _ in range(3):
        for a, b in ((c, s), (s, c)):
            data = a.data_to_send()
            sent[id(a)] += data
            if data:
                b.receive_data(data)
            while b.next_event() is not NEED_DATA:
                pass
    assert c.state is s.state is ConnectionState.OPEN
    return c, s, bytes(sent[id(c)]), bytes(sent[id(s)])


@functools.cache
def transport_seeds() -> dict[str, list[bytes]]:
    """Genuine byte streams: client -> server (intro, ClientHello, ClientFinish, frames) and server
    -> client (ServerHello, frames), the frames holding every stanza and some non-stanza payloads."""
    out: dict[str, list[bytes]] = {}
    for to_server in (True, False):
        key = "to_server" if to_server else "to_client"
        streams = []
        for payloads in ([], [encode_stanza(x) for x in STANZAS], [b"\x08\x01not a stanza", b""]):
            c, s, c_hs, s_hs = _open_pair()  # a fresh pair each: the nonces start at 0
            sender, hs = (c, c_hs) if to_server else (s, s_hs)
            for payload in payloads:
                sender.send_frame(payload)
            streams.append(hs + sender.data_to_send())
        out[key] = streams
        out[key + "_chat"] = streams[:2]  # every frame a stanza
    hello = _client().data_to_send()
    out["client_hello"] = [hello]
    return out


@functools.cache
def signal_seeds() -> dict[str, list[bytes]]:
    """Genuine Signal encodings made through the public API."""

    async def make() -> dict[str, list[bytes]]:
        a, b = Address("alice"), Address("bob")
        sa, sb = MemoryKeyStore(), MemoryKeyStore()
        await create_account(sa, prekeys=1)
        await create_account(sb, prekeys=1)
        ca, cb = SessionCipher(sa), SessionCipher(sb)
        await ca.process_bundle(b, await get_bundle(sb))
        first = await ca.encrypt(b, b"first")
        await cb.decrypt(a, first.type, first.body)
        reply = await cb.encrypt(a, b"reply")
        ga, gb = GroupCipher(sa), GroupCipher(sb)
        skdm = await ga.create_distribution("g1", a)
        await gb.process_distribution("g1", a, skdm)
        skm = await ga.encrypt("g1", a, b"to the group")
        return {
            "prekey_message": [first.body],
            "message": [reply.body],
            "skdm": [skdm],
            "skm": [skm],
            "session_record": [await cb.export_session(a)],
            "sender_key_record": [await gb.export_sender_key("g1", a)],
            "prekey_record": [(await generate_prekeys(sa, 1))[0].to_bytes()],
            "signed_prekey_record": [(await rotate_signed_prekey(sa)).to_bytes()],
            "bundle": [repr((await get_bundle(sa)).to_dict()).encode()],
        }

    return trio.run(make)


@functools.cache
def media_seeds() -> list[bytes]:
    blob, _ = encrypt(b"a small picture" * 9, MediaType.IMAGE, MEDIA_KEY)
    return [blob]


ACCOUNT, DEVICE = _kp(11), _kp(12)
ADV_SECRET = bytes(range(32, 64))
KEY_INDEXES = KeyIndexList(raw_id=9, timestamp=NOW, current_index=2, valid_indexes=frozenset({1, 2}))


def _fixed_rng(n: int) -> bytes:
    return b"\x13" * n


@functools.cache
def adv_seeds() -> dict[str, list[bytes]]:
    details = DeviceIdentity(raw_id=9, timestamp=NOW, key_index=2)
    half = sign_device_identity(ACCOUNT, DEVICE.public, details, _fixed_rng)
    signed = countersign_device_identity(DEVICE, half, _fixed_rng)
    return {
        "details": [details.to_bytes()],
        "key_index_list": [KEY_INDEXES.to_bytes()],
        "signed_list": [sign_key_index_list(ACCOUNT, KEY_INDEXES, _fixed_rng)],
        "half": [half],
        "signed": [signed],
        "container": [wrap_pairing_identity(signed, ADV_SECRET)],
    }


def _adv_device(data: bytes) -> None:
    verify_device_identity(data, device_identity=DEVICE.public, account_identity=ACCOUNT.public, key_index_list=KEY_INDEXES)


def _adv(key: str) -> Callable[[], list[bytes]]:
    return lambda: adv_seeds()[key]


# --------------------------------------------------------------------------- the parsers
_LIVE = (ConnectionState.OPEN, ConnectionState.HANDSHAKING)


def _drain(conn: NoiseConnection | ChatConnection) -> None:
    """Take events until more bytes are needed or the connection has ended."""
    for _ in range(1000):
        if conn.next_event() is NEED_DATA or conn.state not in _LIVE:
            return


def _feed_server(data: bytes) -> None:
    conn = _server()
    if data:  # b"" is an EOF, not bytes
        conn.receive_data(data)
    _drain(conn)


def _feed_client(data: bytes) -> None:
    conn = _client()
    if data:
        conn.receive_data(data)
    _drain(conn)


def _feed_chat(data: bytes, *, client: bool) -> None:
    conn = ChatConnection(_client() if client else _server(), now=0.0)
    if data:
        conn.receive_data(data, 0.0)
    _drain(conn)


def _chat_frame(data: bytes) -> None:
    """``data`` as the plaintext of one genuine encrypted frame: what decode_stanza sees behind the
    Noise layer, through the ChatConnection of each role."""
    for to_server in (True, False):
        c, s, _, _ = _open_pair()
        sender, receiver = (c, s) if to_server else (s, c)
        chat = ChatConnection(receiver, now=0.0)
        sender.send_frame(data)
        chat.receive_data(sender.data_to_send(), 0.0)
        try:
            _drain(chat)
        except PeerError:
            if chat.state is not ConnectionState.ERROR:
                pytest.fail(f"a bad stanza left the connection {chat.state}")
            raise


def _framing(data: bytes, intro: bool = False) -> None:
    dec = FrameDecoder(1024, expect_intro=intro)
    dec.feed(data)
    while dec.next_frame() is not None:
        pass


def _framing_intro(data: bytes) -> None:
    _framing(data, intro=True)


def _handshake_messages(data: bytes) -> None:
    for kind in HandshakeKind:
        try:
            decode_handshake(kind, data)
        except PeerError:
            pass


def _noise_read(data: bytes) -> None:
    """A responder reads a ClientHello, an initiator a ServerHello, built from the bytes."""
    parts = [data[i::3] for i in range(3)]
    msg = NoiseMessage(ephemeral=parts[0][:32] or None, static=parts[1] or None, payload=parts[2] or None)
    responder = HandshakeState(Role.RESPONDER, SERVER_STATIC, DEFAULT_HEADER, e=SERVER_E)
    try:
        responder.read_message(dataclasses.replace(msg, static=None, payload=None))
        responder.write_message(b"")  # the DH with the peer's key happens here
    except PeerError:
        pass
    initiator = HandshakeState(Role.INITIATOR, CLIENT_STATIC, DEFAULT_HEADER, e=CLIENT_E)
    initiator.write_message()
    initiator.read_message(msg)


def _cipher(data: bytes) -> None:
    CipherState(bytes(32)).decrypt(data)


def _certs(data: bytes) -> None:
    try:
        CertDetails.from_bytes(data)
    except PeerError:
        pass
    CertChain.from_bytes(data).verify(ROOT.public, SERVER_STATIC.public, NOW)


def _bundle(data: bytes) -> None:
    try:
        d = ast.literal_eval(data.decode("utf-8", "replace"))
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        d = data.hex()  # not a literal: hand the parser a str, which it must refuse
    PreKeyBundle.from_dict(d)


def _fingerprint(data: bytes) -> None:
    create_fingerprint("alice", bytes([5]) + bytes(32), "bob", bytes([5]) + bytes(range(32)), iterations=1).compare(data)


def _media(data: bytes) -> None:
    try:
        decrypt(data, MediaType.IMAGE, MEDIA_KEY)
    except PeerError:
        pass
    dec = MediaDecryptor(MediaType.IMAGE, MEDIA_KEY)
    for i in range(0, len(data), 7):
        dec.update(data[i : i + 7])
    dec.finalize()


def _media_sidecar(data: bytes) -> None:
    keys = derive_media_keys(MEDIA_KEY, MediaType.VIDEO)
    blob, info = encrypt(b"v" * 40, MediaType.VIDEO, MEDIA_KEY, sidecar=True)
    assert info.sidecar is not None
    try:
        decrypt_sidecar_chunk(keys, info.sidecar, 0, data, blob_length=len(blob))
    except PeerError:
        pass
    decrypt_sidecar_chunk(keys, data, 0, blob, blob_length=len(blob))


@dataclass(frozen=True)
class Parser:
    module: str  # the module whose parser this is (for the report)
    name: str
    run: Callable[[bytes], object]
    seeds: Callable[[], list[bytes]]
    transport: bool = False  # errors must also be TransportError
    seeds_parse: bool = True  # False: the seeds are raw material, not inputs this parser accepts


def _sig(key: str) -> Callable[[], list[bytes]]:
    return lambda: signal_seeds()[key]


def _tr(key: str) -> Callable[[], list[bytes]]:
    return lambda: transport_seeds()[key]


def _frames_of(key: str) -> Callable[[], list[bytes]]:
    """The frame payloads in a genuine stream (decoded by a plain decoder)."""

    def seeds() -> list[bytes]:
        out = []
        for stream in transport_seeds()[key]:
            dec = FrameDecoder(expect_intro=key == "to_server")
            dec.feed(stream)
            while (f := dec.next_frame()) is not None:
                out.append(f)
        return out

    return seeds


_NODE = Node("message", {"to": "123@s.whatsapp.net", "id": "ABC", "type": "text"}, (Node("enc", {"v": "2"}, b"\x00\x01"),))

PARSERS = [
    Parser("wire.binary", "decode_node", decode_node, lambda: [encode_node(_NODE)]),
    Parser("wire.binary", "decode_node_body", decode_node_body, lambda: [encode_node_body(_NODE)]),
    Parser("wire.messages", "SignalMessage", SignalMessage.from_bytes, _sig("message")),
    Parser("wire.messages", "PreKeySignalMessage", PreKeySignalMessage.from_bytes, _sig("prekey_message")),
    Parser("wire.messages", "SenderKeyMessage", SenderKeyMessage.from_bytes, _sig("skm")),
    Parser("wire.messages", "SenderKeyDistributionMessage", SenderKeyDistributionMessage.from_bytes, _sig("skdm")),
    Parser("signal.records", "SessionRecord", SessionRecord.from_bytes, _sig("session_record")),
    Parser("signal.records", "PreKeyRecord", PreKeyRecord.from_bytes, _sig("prekey_record")),
    Parser("signal.records", "SignedPreKeyRecord", SignedPreKeyRecord.from_bytes, _sig("signed_prekey_record")),
    Parser("signal.senderkeys", "SenderKeyRecord", SenderKeyRecord.from_bytes, _sig("sender_key_record")),
    Parser("signal.bundle", "PreKeyBundle.from_dict", _bundle, _sig("bundle")),
    Parser("signal.fingerprint", "Fingerprint.compare", _fingerprint, lambda: [], seeds_parse=False),
    Parser("transport.framing", "FrameDecoder", _framing, _tr("to_client"), transport=True),
    Parser("transport.framing", "FrameDecoder(intro)", _framing_intro, _tr("to_server"), transport=True),
    Parser("transport.messages", "decode_handshake", _handshake_messages, _frames_of("to_server"), transport=True),
    Parser("transport.messages", "decode_stanza", decode_stanza, lambda: [encode_stanza(s) for s in STANZAS], transport=True),
    Parser("transport.messages", "ClientPayload", ClientPayload.from_bytes, lambda: [CLIENT_SETTINGS.payload.to_bytes()], transport=True),
    Parser("transport.certs", "CertChain", _certs, lambda: [CHAIN.to_bytes(), CHAIN.leaf.details], transport=True, seeds_parse=False),
    Parser("transport.noise", "HandshakeState.read_message", _noise_read, _tr("client_hello"), transport=True, seeds_parse=False),
    Parser("transport.noise", "CipherState.decrypt", _cipher, lambda: [CipherState(bytes(32)).encrypt(b"frame")], transport=True),
    Parser("transport.noise_connection", "server", _feed_server, _tr("to_server"), transport=True),
    Parser("transport.noise_connection", "client", _feed_client, _tr("to_client"), transport=True),
    Parser("transport.chat_connection", "server", functools.partial(_feed_chat, client=False), _tr("to_server_chat"), transport=True),
    Parser("transport.chat_connection", "client", functools.partial(_feed_chat, client=True), _tr("to_client_chat"), transport=True),
    Parser("transport.chat_connection", "stanza frame", _chat_frame, lambda: [encode_stanza(s) for s in STANZAS], transport=True),
    Parser("chat.envelope", "Envelope", Envelope.from_bytes, lambda: [Envelope(bytes(32), 2, b"body", bytes(range(32))).to_bytes()]),
    Parser("whatsapp.adv", "DeviceIdentity", DeviceIdentity.from_bytes, _adv("details")),
    Parser("whatsapp.adv", "KeyIndexList", KeyIndexList.from_bytes, _adv("key_index_list")),
    Parser("whatsapp.adv", "verify_key_index_list", lambda d: verify_key_index_list(d, ACCOUNT.public), _adv("signed_list")),
    Parser("whatsapp.adv", "countersign_device_identity", lambda d: countersign_device_identity(DEVICE, d, _fixed_rng), _adv("half")),
    Parser("whatsapp.adv", "verify_device_identity", _adv_device, _adv("signed")),
    Parser("whatsapp.adv", "unwrap_pairing_identity", lambda d: unwrap_pairing_identity(d, ADV_SECRET), _adv("container")),
    Parser("whatsapp.padding", "unpad", unpad, lambda: [pad(b"plaintext", _fixed_rng)]),
    Parser("media.decryptor", "decrypt", _media, media_seeds),
    Parser("media.sidecar", "decrypt_sidecar_chunk", _media_sidecar, media_seeds, seeds_parse=False),
]


@st.composite
def _mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A genuine encoding with a few edits: bit flips, truncation, insertion, overwrite, deletion."""
    b = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 5))):
        if not b:
            b += draw(st.binary(min_size=1, max_size=8))
            continue
        i = draw(st.integers(0, len(b) - 1))
        op = draw(st.integers(0, 5))
        if op == 0:
            b[i] ^= 1 << draw(st.integers(0, 7))
        elif op == 1:
            del b[i:]
        elif op == 2:
            b[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif op == 3:
            b[i] = draw(st.integers(0, 255))
        elif op == 4:  # a length or count at an edge: empty fields, huge lengths
            b[i] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF]))
        else:
            del b[i : i + draw(st.integers(1, 16))]
    return bytes(b)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _pb_encode(fields: list[tuple[int, int | bytes]]) -> bytes:
    out = bytearray()
    for number, value in fields:
        if isinstance(value, int):
            out += _varint(number << 3) + _varint(value)
        else:
            out += _varint(number << 3 | 2) + _varint(len(value)) + value
    return bytes(out)


_EDGE_INTS = st.sampled_from([0, 1, 2, 3, 5, 0x7F, 0x80, 0xFFFFFF, 0x1000000, 2**31, 2**32 - 1, 2**32, 2**63, 2**64 - 1])
# well-formed protobuf with arbitrary field numbers and values: reaches the checks after parsing
# (missing fields, empty ids, out-of-range numbers) that mutated bytes seldom get past
_PROTOBUF: st.SearchStrategy[bytes] = st.recursive(
    st.just(b""),
    lambda inner: st.lists(
        st.tuples(st.integers(1, 10), _EDGE_INTS | st.integers(0, 2**64 - 1) | inner | st.binary(max_size=40)),
        max_size=6,
    ).map(_pb_encode),
    max_leaves=24,
)


def _inputs(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    raw = st.binary(max_size=400) | _PROTOBUF
    return raw | _mutated(seeds) if seeds else raw


def _check(p: Parser, data: bytes) -> None:
    try:
        p.run(data)
    except PeerError as exc:
        if p.transport and not isinstance(exc, TransportError):
            pytest.fail(f"{p.module} {p.name}: {type(exc).__name__} is a PeerError but not a TransportError")
    except Exception as exc:  # noqa: BLE001 - the point of the test
        pytest.fail(f"{p.module} {p.name}: {type(exc).__name__} escaped for untrusted input {data[:64]!r}: {exc}")


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: f"{p.module}:{p.name}")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_untrusted_bytes_raise_only_peer_errors(parser: Parser, data: st.DataObject) -> None:
    _check(parser, data.draw(_inputs(parser.seeds()), label="input"))


@pytest.mark.parametrize("parser", [p for p in PARSERS if p.seeds_parse], ids=lambda p: f"{p.module}:{p.name}")
def test_genuine_encodings_parse(parser: Parser) -> None:
    """The seeds are real encodings: each goes through its parser without an error, so the
    mutations above start next to the accepting paths."""
    seeds = parser.seeds()
    assert seeds
    for seed in seeds:
        parser.run(seed)


# --------------------------------------------------------------------------- local conditions
@settings(max_examples=80, deadline=None)
@given(cut=st.integers(0, 10_000), to_server=st.booleans())
def test_an_eof_is_never_a_peer_error(cut: int, to_server: bool) -> None:
    """A genuine stream cut anywhere, then EOF: no bytes are at fault, so the connection ends with
    ConnectionClosedError (mid-handshake or mid-frame) or cleanly, never with a PeerError."""
    stream = transport_seeds()["to_server" if to_server else "to_client"][1]
    conn = _server() if to_server else _client()
    data = stream[: cut % (len(stream) + 1)]
    try:
        if data:
            conn.receive_data(data)
        _drain(conn)
        conn.receive_data(b"")
        _drain(conn)
    except ConnectionClosedError as exc:
        assert not isinstance(exc, PeerError)
    assert conn.state is not ConnectionState.HANDSHAKING


def test_timeouts_and_misuse_are_local_errors() -> None:
    ka = KeepaliveSettings(interval=10.0, jitter=0.0, deadline=5.0, dead_socket=30.0, handshake_timeout=3.0)
    slow = ChatConnection(_client(), now=0.0, keepalive=ka)
    with pytest.raises(HandshakeTimeoutError) as hs:
        slow.handle_timeout(3.0)
    c, s, _, _ = _open_pair()
    chat = ChatConnection(c, now=0.0, keepalive=ka)
    chat.handle_timeout(10.0)  # sends a ping
    with pytest.raises(KeepaliveTimeoutError) as ka_err:
        chat.handle_timeout(15.0)
    c2, _, _, _ = _open_pair()
    c2.close()
    with pytest.raises(ConnectionClosedError) as closed:
        c2.send_frame(b"x")
    c3 = _client()
    c3.receive_data(b"")
    with pytest.raises(UsageError) as usage:
        c3.receive_data(b"more")
    for exc in (hs.value, ka_err.value, closed.value):
        assert isinstance(exc, NetworkError) and isinstance(exc, TransportError) and not isinstance(exc, PeerError)
    assert not isinstance(usage.value, PeerError)


def test_bad_bytes_from_the_server_are_peer_errors_of_the_transport() -> None:
    peer: tuple[type[errors.WacryptoError], ...] = (errors.FrameError, errors.HandshakeError, errors.CertificateError)
    for cls in peer:
        assert issubclass(cls, PeerError) and issubclass(cls, TransportError)
    for cls in (errors.ConnectError, errors.ConnectionClosedError, errors.KeepaliveTimeoutError,
                errors.HandshakeTimeoutError, errors.StreamFailure, errors.MediaTransferError):
        assert issubclass(cls, NetworkError) and not issubclass(cls, PeerError)


# --------------------------------------------------------------------------- static check
# Entry points that take untrusted bytes, per module (qualified names inside the module).
ENTRY_POINTS: dict[str, list[str]] = {
    "wacrypto.wire.binary": ["decode_node", "decode_node_body"],
    "wacrypto.wire.messages": [
        "SignalMessage.from_bytes",
        "PreKeySignalMessage.from_bytes",
        "SenderKeyMessage.from_bytes",
        "SenderKeyDistributionMessage.from_bytes",
    ],
    "wacrypto.signal.records": ["SessionRecord.from_bytes", "PreKeyRecord.from_bytes", "SignedPreKeyRecord.from_bytes"],
    "wacrypto.signal.senderkeys": ["SenderKeyRecord.from_bytes"],
    "wacrypto.signal.bundle": ["PreKeyBundle.from_dict"],
    "wacrypto.signal.fingerprint": ["Fingerprint.compare", "compare_scannable"],
    "wacrypto.transport.framing": ["FrameDecoder.next_frame"],
    "wacrypto.transport.messages": ["decode_handshake", "decode_stanza", "ClientPayload.from_bytes"],
    "wacrypto.transport.certs": ["CertChain.from_bytes", "CertChain.verify", "CertDetails.from_bytes"],
    "wacrypto.transport.noise": ["CipherState.decrypt", "HandshakeState.read_message"],
    "wacrypto.transport.noise_connection": ["NoiseConnection.receive_data", "NoiseConnection.next_event", "NoiseConnection.read_payloads"],
    "wacrypto.transport.chat_connection": ["ChatConnection.receive_data", "ChatConnection.next_event"],
    "wacrypto.chat.envelope": ["Envelope.from_bytes"],
    "wacrypto.whatsapp.adv": [
        "DeviceIdentity.from_bytes",
        "KeyIndexList.from_bytes",
        "verify_key_index_list",
        "countersign_device_identity",
        "verify_device_identity",
        "unwrap_pairing_identity",
    ],
    "wacrypto.whatsapp.padding": ["unpad"],
    "wacrypto.media.decryptor": ["decrypt", "MediaDecryptor.update", "MediaDecryptor.finalize"],
    "wacrypto.media.sidecar": ["verify_sidecar_chunk", "decrypt_sidecar_chunk"],
}

# Non-PeerError raises reachable from an entry point, each a local condition: (function, class) -> why.
LOCAL_CONDITIONS: dict[str, dict[tuple[str, str], str]] = {
    "wacrypto.transport.noise": {
        ("CipherState.decrypt", "ConnectionClosedError"): "our own nonce counter is exhausted",
        ("HandshakeState._current", "UsageError"): "read out of turn or after the handshake completed",
        ("HandshakeState._dh", "UsageError"): "a handshake pattern that uses a key before it exists",
    },
    "wacrypto.transport.noise_connection": {
        ("NoiseConnection.receive_data", "UsageError"): "bytes fed after the EOF",
        ("NoiseConnection.next_event", "ConnectionClosedError"): "EOF inside a frame or the handshake: no bytes at fault",
    },
    "wacrypto.whatsapp.adv": {
        ("unwrap_pairing_identity", "InvalidArgumentError"): "the caller's pairing secret is not 32 bytes",
    },
    "wacrypto.media.decryptor": {
        ("MediaDecryptor._check_open", "UsageError"): "used after finalize",
        ("MediaDecryptor.update", "UsageError"): "used after finalize",
        ("MediaDecryptor.finalize", "UsageError"): "finalized twice",
    },
    "wacrypto.media.sidecar": {
        ("sidecar_window", "InvalidArgumentError"): "the caller's window index is out of range",
    },
}


def _qualified_functions(tree: ast.Module) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    out: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out[node.name] = node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    out[f"{node.name}.{item.name}"] = item
    return out


def _raised_name(node: ast.Raise) -> str | None:
    exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
    if isinstance(exc, ast.Name):
        return exc.id
    if isinstance(exc, ast.Attribute):
        return exc.attr
    return None


def _error_class(name: str | None) -> type[errors.WacryptoError] | None:
    cls = getattr(errors, name, None) if name else None
    return cls if isinstance(cls, type) and issubclass(cls, errors.WacryptoError) else None


def _made_error(node: ast.AST) -> str | None:
    """The wacrypto error class ``node`` constructs (``X(...)``), if any: an error is made to be
    raised, here or by a caller (``exc = X(...); conn.fail(exc); raise exc``)."""
    if isinstance(node, ast.Call):
        f = node.func
        name = f.id if isinstance(f, ast.Name) else (f.attr if isinstance(f, ast.Attribute) else None)
        if _error_class(name) is not None:
            return name
    return None


def _raises_and_calls(fn: ast.AST, owner: str | None, funcs: dict[str, Any]) -> tuple[set[str], set[str]]:
    raises: set[str] = set()
    calls: set[str] = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Raise) and node.exc is not None and _error_class(_raised_name(node)) is not None:
            raises.add(_raised_name(node))  # type: ignore[arg-type]
        elif (made := _made_error(node)) is not None:
            raises.add(made)
        elif isinstance(node, ast.Call):  # raise self._fail(...), integrity_error(), helpers
            calls |= _callee(node.func, owner, funcs)
    return raises, calls


def _callee(func: ast.expr, owner: str | None, funcs: dict[str, Any]) -> set[str]:
    if isinstance(func, ast.Name) and func.id in funcs:
        return {func.id}
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        base = func.value.id
        if base in ("self", "cls") and owner is not None and f"{owner}.{func.attr}" in funcs:
            return {f"{owner}.{func.attr}"}
        if f"{base}.{func.attr}" in funcs:
            return {f"{base}.{func.attr}"}
    return set()


def _module_raises(module: str) -> Iterator[tuple[str, str]]:
    """(function, error class) for every raise of a wacrypto error in ``module``."""
    tree = ast.parse(inspect.getsource(importlib.import_module(module)))
    for qual, fn in _qualified_functions(tree).items():
        for node in ast.walk(fn):
            if isinstance(node, ast.Raise) and node.exc is not None and _error_class(_raised_name(node)) is not None:
                yield qual, _raised_name(node)  # type: ignore[misc]
            elif (made := _made_error(node)) is not None:
                yield qual, made


@pytest.mark.parametrize("module", sorted(ENTRY_POINTS))
def test_parsers_raise_only_peer_errors_statically(module: str) -> None:
    """Follow each entry point through the functions of its module; every wacrypto error raised on
    the way is a PeerError, or a local condition listed in LOCAL_CONDITIONS with its reason."""
    tree = ast.parse(inspect.getsource(importlib.import_module(module)))
    funcs = _qualified_functions(tree)
    allowed = LOCAL_CONDITIONS.get(module, {})
    seen: set[str] = set()
    todo = list(ENTRY_POINTS[module])
    for entry in todo:
        assert entry in funcs, f"{module}: entry point {entry} is gone; update ENTRY_POINTS"
    used: set[tuple[str, str]] = set()
    bad: list[str] = []
    while todo:
        qual = todo.pop()
        if qual in seen:
            continue
        seen.add(qual)
        owner = qual.split(".")[0] if "." in qual else None
        raises, calls = _raises_and_calls(funcs[qual], owner, funcs)
        for name in raises:
            cls = _error_class(name)
            assert cls is not None
            if issubclass(cls, PeerError):
                continue
            if (qual, name) in allowed:
                used.add((qual, name))
                continue
            bad.append(f"{qual} raises {name}")
        todo.extend(c for c in calls if not c.endswith(("__init__", "__post_init__")))
    assert not bad, f"{module}: non-PeerError raised while parsing untrusted bytes: {bad}"
    stale = set(allowed) - used
    assert not stale, f"{module}: LOCAL_CONDITIONS lists raises no parser reaches any more: {stale}"


def test_each_parsing_module_lists_its_non_peer_raises() -> None:
    """Per module, the error classes it raises that are not PeerError (its own callers' misuse,
    local conditions). Adding one to a parsing module is a change to review here."""
    got: dict[str, set[str]] = {}
    for module in ENTRY_POINTS:
        got[module] = {name for _, name in _module_raises(module) if not issubclass(getattr(errors, name), PeerError)}
    assert got == NON_PEER_RAISES


NON_PEER_RAISES: dict[str, set[str]] = {
    "wacrypto.wire.binary": {"InvalidArgumentError"},  # encoding our own nodes
    "wacrypto.wire.messages": {"InvalidArgumentError"},  # constructors
    "wacrypto.signal.records": {"InvalidArgumentError"},  # constructors
    "wacrypto.signal.senderkeys": {"InvalidArgumentError", "NoSenderKeyError"},  # encrypt/decrypt API
    "wacrypto.signal.bundle": set(),
    "wacrypto.signal.fingerprint": {"InvalidArgumentError"},  # computing our own fingerprint
    "wacrypto.transport.framing": {"InvalidArgumentError"},  # encoder and constructor arguments
    "wacrypto.transport.messages": {"InvalidArgumentError"},  # building our own stanzas
    "wacrypto.transport.certs": {"InvalidArgumentError"},  # building certificates
    "wacrypto.transport.noise": {"ConnectionClosedError", "InvalidArgumentError", "UsageError"},
    "wacrypto.transport.noise_connection": {"ConnectionClosedError", "InvalidArgumentError", "UsageError"},
    "wacrypto.transport.chat_connection": {"HandshakeTimeoutError", "InvalidArgumentError", "KeepaliveTimeoutError"},
    "wacrypto.chat.envelope": {"InvalidArgumentError"},  # building our own envelope
    "wacrypto.whatsapp.adv": {"InvalidArgumentError"},  # the caller's pairing secret
    "wacrypto.whatsapp.padding": {"InvalidArgumentError"},  # padding our own plaintext
    "wacrypto.media.decryptor": {"InvalidArgumentError", "UsageError"},
    "wacrypto.media.sidecar": {"InvalidArgumentError"},
}


def test_nothing_raises_an_error_outside_the_families() -> None:
    """The layer class and the root are for ``except``: whatever is raised names its fault."""
    from pathlib import Path

    import wacrypto

    families = (errors.UsageError, errors.PeerError, errors.MissingStateError, errors.StoreError, errors.NetworkError)
    bad = []
    for path in sorted(Path(wacrypto.__file__).parent.rglob("*.py")):
        if "_proto" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            name = _made_error(node)
            if name is not None and not issubclass(getattr(errors, name), families):
                bad.append(f"{path.name}:{node.lineno} {name}")  # type: ignore[attr-defined]
    assert not bad, bad
