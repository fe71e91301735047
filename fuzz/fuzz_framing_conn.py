"""atheris harness: chat transport framing and the connection receive path.

Two targets, picked by the first input byte:

* ``FrameDecoder`` (client side, and server side with the WA intro / ED pre-intro) fed arbitrary
  or mostly well-formed bytes, in one piece, in fuzzer-chosen splits and byte by byte;
* an established ``NoiseConnection`` / ``ChatConnection`` (real handshake with fixed keys) fed a
  fuzzer-built byte stream mixing genuine encrypted frames (arbitrary plaintext or valid stanzas),
  raw garbage, flipped tag bits, oversized length prefixes, truncation and EOF, whole and split.

Invariants: only the ``PeerError`` family escapes, except that an EOF inside a frame may end in
``ConnectionClosedError`` (no bytes are at fault there); any split of the same
bytes gives the same frames / events and the same final error; well-formed / genuine frames before
the first defect come out exactly as sent; a failed connection stays failed (sticky).
Run: python fuzz/fuzz_framing_conn.py -runs=2000   (longer: -max_total_time=600)
"""

from __future__ import annotations

import sys
from typing import Any

import atheris

# Import the dependencies uninstrumented (instrumenting trio, protobuf and the store takes ~25 s),
# then instrument only the transport modules under test.
import google.protobuf.message  # noqa: F401
import wacrypto  # noqa: F401
import wacrypto.primitives.xeddsa  # noqa: F401

with atheris.instrument_imports(include=["wacrypto.transport"]):
    from wacrypto.errors import ConnectionClosedError, PeerError
    from wacrypto.primitives.keys import KeyPair, PrivateKey
    from wacrypto.transport.certs import CertChain
    from wacrypto.transport.chat_connection import ChatConnection
    from wacrypto.transport.noise_connection import (
        NEED_DATA,
        ClientSettings,
        ConnectionState,
        FrameReceived,
        NoiseConnection,
        ServerSettings,
    )
    from wacrypto.transport.framing import DEFAULT_HEADER, ROUTING_MAGIC, FrameDecoder
    from wacrypto.transport.messages import (
        Ack,
        Message,
        Ping,
        Pong,
        StreamError,
        StreamErrorCode,
        encode_stanza,
    )

ALLOWED = (PeerError,)
ALLOWED_AT_EOF = (PeerError, ConnectionClosedError)
NOW = 1_700_000_000
MAX_SPLITS = 64
MAX_OPS = 24
FRAME_LIMITS = (1, 3, 17, 64, 1024, 4 * 1024 * 1024, (1 << 24) - 1)


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
CLIENT_SETTINGS = ClientSettings(static=CLIENT_STATIC, trusted_root=ROOT.public)
SERVER_SETTINGS = ServerSettings(static=SERVER_STATIC, cert_chain=CHAIN)
DEFAULT_LIMIT = CLIENT_SETTINGS.max_frame_len


# --------------------------------------------------------------------------- helpers
def _splits(fdp: atheris.FuzzedDataProvider, data: bytes) -> list[bytes]:
    """Cut ``data`` at fuzzer-chosen points (empty pieces are skipped)."""
    n = fdp.ConsumeIntInRange(0, MAX_SPLITS)
    cuts = sorted({fdp.ConsumeIntInRange(0, len(data)) for _ in range(n)}) if data else []
    pieces, prev = [], 0
    for c in cuts + [len(data)]:
        if c > prev:
            pieces.append(data[prev:c])
        prev = c
    return pieces


def _err(exc: BaseException | None) -> tuple[str, str] | None:
    return None if exc is None else (type(exc).__name__, str(exc))


# --------------------------------------------------------------------------- target 1: FrameDecoder
def _decode_all(pieces: list[bytes], max_len: int, intro: bool) -> tuple[list[bytes], Any, Any]:
    dec = FrameDecoder(max_len, expect_intro=intro)
    frames: list[bytes] = []
    error: BaseException | None = None
    try:
        for piece in pieces:
            dec.feed(piece)
            while (f := dec.next_frame()) is not None:
                frames.append(f)
    except ALLOWED as exc:
        error = exc
    tail = None if error else (dec.buffered, dec.header, dec.routing_info)
    return frames, _err(error), tail


def _structured_stream(fdp: atheris.FuzzedDataProvider, intro: bool, max_len: int) -> tuple[bytes, list[bytes]]:
    """A mostly well-formed stream (pre-intro, header, frames) with fuzzer-chosen defects;
    returns it with the payloads of the well-formed frames before the first defect."""
    out = bytearray()
    expected: list[bytes] = []
    clean = True
    if intro:
        if fdp.ConsumeBool():  # ED pre-intro with (usually) a consistent length
            info = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 40))
            n = len(info) if fdp.ConsumeIntInRange(0, 7) else fdp.ConsumeIntInRange(0, (1 << 24) - 1)
            magic = ROUTING_MAGIC if fdp.ConsumeIntInRange(0, 7) else fdp.ConsumeBytes(4)
            out += magic + n.to_bytes(3, "big") + info
            clean = clean and magic == ROUTING_MAGIC and n == len(info) and n <= max_len
        header = DEFAULT_HEADER if fdp.ConsumeIntInRange(0, 7) else fdp.ConsumeBytes(4)
        out += header
        clean = clean and header[:2] == b"WA" and len(header) == 4
    for _ in range(fdp.ConsumeIntInRange(0, MAX_OPS)):
        payload = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, min(max_len, 200)))
        n = len(payload) if fdp.ConsumeIntInRange(0, 7) else fdp.ConsumeIntInRange(0, (1 << 24) - 1)
        out += n.to_bytes(3, "big") + payload
        if clean and n == len(payload):
            expected.append(payload)
        else:
            clean = False
    return bytes(out), expected


def fuzz_decoder(fdp: atheris.FuzzedDataProvider) -> None:
    intro = fdp.ConsumeBool()
    max_len = FRAME_LIMITS[fdp.ConsumeIntInRange(0, len(FRAME_LIMITS) - 1)]
    split_seed = fdp.ConsumeBytes(2 * MAX_SPLITS)
    if fdp.ConsumeBool():
        data, expected = _structured_stream(fdp, intro, max_len)
    else:
        data, expected = fdp.ConsumeBytes(fdp.remaining_bytes()), []
    whole = _decode_all([data], max_len, intro)
    split = _decode_all(_splits(atheris.FuzzedDataProvider(split_seed), data), max_len, intro)
    bytewise = _decode_all([data[i : i + 1] for i in range(len(data))], max_len, intro)
    if whole != split or whole != bytewise:
        raise AssertionError(f"split changed the parse: {whole!r} / {split!r} / {bytewise!r}")
    frames = whole[0]
    if frames[: len(expected)] != expected[: len(frames)]:
        raise AssertionError("well-formed frames were not returned as sent")
    if len(frames) < len(expected) and whole[1] is None:
        raise AssertionError("well-formed frames went missing without an error")
    for f in frames:
        if len(f) > max_len:
            raise AssertionError("decoder returned a frame above its limit")


# --------------------------------------------------------------------------- target 2: connections
def _pump(a: NoiseConnection, b: NoiseConnection) -> None:
    for _ in range(4):
        for x, y in ((a, b), (b, a)):
            data = x.data_to_send()
            if data:
                y.receive_data(data)
            while y.next_event() is not NEED_DATA:
                pass
        if a.state is ConnectionState.OPEN and b.state is ConnectionState.OPEN:
            return
    raise AssertionError("handshake between our own client and server did not complete")


def _open_pair() -> tuple[NoiseConnection, NoiseConnection]:
    """A client/server pair after a real handshake; fixed keys make every pair identical."""
    c = NoiseConnection(CLIENT_SETTINGS, wall_time=NOW, ephemeral=CLIENT_E)
    s = NoiseConnection(SERVER_SETTINGS, ephemeral=SERVER_E)
    _pump(c, s)
    return c, s


def _stanza(fdp: atheris.FuzzedDataProvider) -> bytes:
    kind = fdp.ConsumeIntInRange(0, 4)
    ident = fdp.ConsumeUnicodeNoSurrogates(8) or "x"
    if kind == 0:
        return encode_stanza(Ping(fdp.ConsumeIntInRange(0, 2**64 - 1)))
    if kind == 1:
        return encode_stanza(Pong(fdp.ConsumeIntInRange(0, 2**64 - 1)))
    if kind == 2:
        return encode_stanza(Message(ident, fdp.ConsumeBytes(64)))
    if kind == 3:
        return encode_stanza(Ack(ident))
    return encode_stanza(StreamError(list(StreamErrorCode)[fdp.ConsumeIntInRange(0, 5)], ident))


def _build_stream(fdp: atheris.FuzzedDataProvider, sender: NoiseConnection) -> tuple[bytes, list[bytes], bool]:
    """Wire bytes from ``sender`` plus corruption; returns (wire, genuine payloads before the
    first corruption, whether EOF follows)."""
    wire = bytearray()
    genuine: list[bytes] = []
    clean = True
    for _ in range(fdp.ConsumeIntInRange(0, MAX_OPS)):
        op = fdp.ConsumeIntInRange(0, 6)
        if op <= 1:  # genuine frame, arbitrary plaintext
            payload = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 300))
        elif op == 2:  # genuine frame holding a well-formed stanza
            payload = _stanza(fdp)
        elif op == 3:  # raw garbage
            wire += fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64))
            clean = False
            continue
        elif op == 4:  # genuine frame with a flipped bit
            sender.send_frame(fdp.ConsumeBytes(32))
            frame = bytearray(sender.data_to_send())
            if len(frame) > 3:
                pos = fdp.ConsumeIntInRange(3, len(frame) - 1)
                frame[pos] ^= 1 << fdp.ConsumeIntInRange(0, 7)
            wire += frame
            clean = False
            continue
        elif op == 5:  # length prefix above the receiver's limit, then a few bytes
            wire += fdp.ConsumeIntInRange(DEFAULT_LIMIT + 1, (1 << 24) - 1).to_bytes(3, "big")
            wire += fdp.ConsumeBytes(8)
            clean = False
            continue
        else:  # truncated genuine frame
            sender.send_frame(fdp.ConsumeBytes(40))
            frame = sender.data_to_send()
            wire += frame[: fdp.ConsumeIntInRange(0, len(frame) - 1)]
            clean = False
            continue
        sender.send_frame(payload)
        wire += sender.data_to_send()
        if clean:
            genuine.append(payload)
    return bytes(wire), genuine, fdp.ConsumeBool()


def _run_receiver(conn: NoiseConnection, chat: bool, pieces: list[bytes], eof: bool) -> tuple[list[Any], Any]:
    recv: NoiseConnection | ChatConnection = ChatConnection(conn, now=0.0) if chat else conn
    events: list[Any] = []
    error: BaseException | None = None
    try:
        feeds: list[bytes] = pieces + ([b""] if eof else [])
        for piece in feeds:
            if isinstance(recv, ChatConnection):
                recv.receive_data(piece, 0.0)
            else:
                recv.receive_data(piece)
            while True:
                ev = recv.next_event()
                if ev is NEED_DATA:
                    break
                events.append(ev)
                if recv.state is not ConnectionState.OPEN:
                    break
            if recv.state is not ConnectionState.OPEN:
                break
        recv.data_to_send()  # pongs queued for pings; just drain
    except ALLOWED_AT_EOF as exc:
        if not isinstance(exc, ALLOWED) and not eof:
            raise AssertionError(f"{exc!r} without an EOF") from None
        error = exc
    if error is not None:
        if recv.state is not ConnectionState.ERROR:
            raise AssertionError(f"error {error!r} left the connection in {recv.state}")
        try:
            recv.next_event()
        except ALLOWED_AT_EOF as again:
            if type(again) is not type(error):
                raise AssertionError("sticky error changed type") from None
        else:
            raise AssertionError("a failed connection produced an event")
    return events, _err(error)


def fuzz_connection(fdp: atheris.FuzzedDataProvider) -> None:
    to_client = fdp.ConsumeBool()  # direction: server -> client, or client -> server
    chat = fdp.ConsumeBool()  # receive through the ChatConnection (stanza) layer
    c1, s1 = _open_pair()
    c2, s2 = _open_pair()
    c3, s3 = _open_pair()
    if to_client:
        sender, recv_whole, recv_split = s1, c2, c3
    else:
        sender, recv_whole, recv_split = c1, s2, s3
    wire, genuine, eof = _build_stream(fdp, sender)
    whole = _run_receiver(recv_whole, chat, [wire] if wire else [], eof)
    split = _run_receiver(recv_split, chat, _splits(fdp, wire), eof)
    if whole != split:
        raise AssertionError(f"split changed the events: {whole!r} != {split!r}")
    if not chat:
        got = [ev.payload for ev in whole[0] if isinstance(ev, FrameReceived)]
        if got[: len(genuine)] != genuine[: len(got)] or (whole[1] is None and len(got) < len(genuine)):
            raise AssertionError("genuine frames did not decrypt to what was sent")


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    if fdp.ConsumeIntInRange(0, 3) == 0:
        fuzz_connection(fdp)
    else:
        fuzz_decoder(fdp)


def main() -> None:
    argv = list(sys.argv)
    if not any(a.startswith("-len_control") for a in argv):
        argv.append("-len_control=0")  # structured inputs: use long inputs from the first run
    atheris.Setup(argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
