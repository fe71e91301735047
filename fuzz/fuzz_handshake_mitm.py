"""atheris harness: the WhatsApp Noise_XX handshake, both roles, against forged peers.

Responder (server ``NoiseConnection``):
  * arbitrary intro header / ClientHello / ClientFinish frames (raw bytes or well-formed protobuf
    with arbitrary fields);
  * a real initiator (``HandshakeState``) whose ClientHello / ClientFinish are mutated by the
    fuzzer, or whose encrypted ClientFinish payload (the ClientPayload) is arbitrary.
Initiator (client ``NoiseConnection``, after its genuine ClientHello):
  * an arbitrary ServerHello frame;
  * a real responder (``HandshakeState``: a man in the middle) with the genuine or an attacker
    static key, presenting the genuine certificate chain, a root-signed chain that breaks one rule,
    a chain signed by an attacker root with fuzzer-chosen details, arbitrary chain bytes, or a
    mutated genuine chain; the ServerHello fields may then be bit-flipped, dropped or replaced;
    the certificate clock is fuzzed.

Invariants: only the ``PeerError`` family escapes (``ConnectionClosedError`` only when the input
is empty, which ``receive_data`` takes for an EOF); a failed handshake leaves the
connection in ERROR and queues nothing to send (no ClientFinish after a bad certificate); the
client completes only when the server proved the genuine static key and presented the genuine
root-signed chain inside its validity window; the server completes only for a peer that holds
the static key it claims, with the payload it sent; genuine peers always complete.
Run: python fuzz/fuzz_handshake_mitm.py -runs=2000   (longer: -max_total_time=600)
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
    from wacrypto.transport.certs import CertChain, CertDetails, NoiseCertificate
    from wacrypto.transport.noise_connection import (
        NEED_DATA,
        ClientSettings,
        ConnectionState,
        HandshakeComplete,
        NoiseConnection,
        ServerSettings,
    )
    from wacrypto.transport.framing import DEFAULT_HEADER, FrameDecoder, encode_frame, make_intro
    from wacrypto.transport.messages import ClientPayload, HandshakeKind, decode_handshake, encode_handshake
    from wacrypto.transport.noise import HandshakeState, NoiseMessage, Role

ALLOWED = (PeerError,)
NOW = 1_700_000_000
DAY = 86400


def _kp(seed: int) -> KeyPair:
    return KeyPair(PrivateKey(bytes([seed]) * 32))


def _fixed_rng(n: int) -> bytes:
    return b"\x11" * n


ROOT, INTER = _kp(1), _kp(2)
CLIENT_STATIC, CLIENT_E = _kp(3), _kp(4)
SERVER_STATIC, SERVER_E = _kp(5), _kp(6)
ATTACKER_ROOT, ATTACKER_STATIC, ATTACKER_E = _kp(7), _kp(8), _kp(9)
BYSTANDER = _kp(10)  # certified by the genuine intermediate, but no fuzzed server holds it

NOT_BEFORE, INTER_NOT_AFTER, LEAF_NOT_AFTER = NOW - DAY, NOW + 10 * DAY, NOW + DAY
GENUINE = CertChain.create(
    ROOT.private,
    INTER.private,
    SERVER_STATIC.public,
    not_before=NOT_BEFORE,
    intermediate_not_after=INTER_NOT_AFTER,
    leaf_not_after=LEAF_NOT_AFTER,
    rng=_fixed_rng,
)
GENUINE_BYTES = GENUINE.to_bytes()
GENUINE_LEAF = GENUINE.leaf.parsed()
CLIENT_PAYLOAD = ClientPayload((2, 3, 4), "fuzz")
CLIENT_SETTINGS = ClientSettings(static=CLIENT_STATIC, trusted_root=ROOT.public, payload=CLIENT_PAYLOAD)
SERVER_SETTINGS = ServerSettings(static=SERVER_STATIC, cert_chain=GENUINE)


def _issue(details: CertDetails, signer: KeyPair) -> NoiseCertificate:
    return NoiseCertificate.issue(details, signer.private, _fixed_rng)


def _root_signed_bad_chains() -> list[bytes]:
    """Chains signed by the genuine root/intermediate, each breaking exactly one rule."""
    key = SERVER_STATIC.public.u
    inter_ok = GENUINE.intermediate
    out = [
        # leaf issuer serial does not name the intermediate
        CertChain(_issue(CertDetails(2, 99, key, NOT_BEFORE, LEAF_NOT_AFTER), INTER), inter_ok),
        # intermediate with a non-zero issuer serial
        CertChain(GENUINE.leaf, _issue(CertDetails(1, 5, INTER.public.u, NOT_BEFORE, INTER_NOT_AFTER), ROOT)),
        # leaf signed by the root directly, not by the intermediate
        CertChain(_issue(CertDetails(2, 1, key, NOT_BEFORE, LEAF_NOT_AFTER), ROOT), inter_ok),
        # expired leaf / not-yet-valid leaf / expired intermediate
        CertChain(_issue(CertDetails(2, 1, key, NOW - 3 * DAY, NOW - DAY), INTER), inter_ok),
        CertChain(_issue(CertDetails(2, 1, key, NOW + DAY, NOW + 3 * DAY), INTER), inter_ok),
        CertChain(GENUINE.leaf, _issue(CertDetails(1, 0, INTER.public.u, NOW - 3 * DAY, NOW - DAY), ROOT)),
        # leaf and intermediate swapped
        CertChain(GENUINE.intermediate, GENUINE.leaf),
        # a valid leaf for another server's key: whoever shows it proves a different key (mismatch)
        CertChain(_issue(CertDetails(2, 1, BYSTANDER.public.u, NOT_BEFORE, LEAF_NOT_AFTER), INTER), inter_ok),
    ]
    return [c.to_bytes() for c in out]


BAD_CHAINS = _root_signed_bad_chains()


# --------------------------------------------------------------------------- helpers
def _mutate(fdp: atheris.FuzzedDataProvider, data: bytes) -> bytes:
    """Flip bits, truncate, insert, overwrite or append, as the fuzzer chooses."""
    kind = fdp.ConsumeIntInRange(0, 5)
    if kind == 0 or not data:
        return data + fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 16)) if kind else data
    b = bytearray(data)
    if kind == 1:
        for _ in range(fdp.ConsumeIntInRange(1, 4)):
            b[fdp.ConsumeIntInRange(0, len(b) - 1)] ^= 1 << fdp.ConsumeIntInRange(0, 7)
        return bytes(b)
    if kind == 2:
        return bytes(b[: fdp.ConsumeIntInRange(0, len(b) - 1)])
    if kind == 3:
        pos = fdp.ConsumeIntInRange(0, len(b))
        return bytes(b[:pos]) + fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 16)) + bytes(b[pos:])
    if kind == 4:
        b[fdp.ConsumeIntInRange(0, len(b) - 1)] = fdp.ConsumeIntInRange(0, 255)
        return bytes(b)
    return data + fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 16))


def _mutate_message(fdp: atheris.FuzzedDataProvider, msg: NoiseMessage, finish: bool = False) -> NoiseMessage:
    fields: dict[str, bytes | None] = {"ephemeral": msg.ephemeral, "static": msg.static, "payload": msg.payload}
    for name in fields:
        if finish and name == "ephemeral":
            continue  # ClientFinish has no ephemeral field
        choice = fdp.ConsumeIntInRange(0, 7)
        if choice == 1:
            fields[name] = None
        elif choice == 2 and fields[name] is not None:
            fields[name] = _mutate(fdp, fields[name] or b"")
        elif choice == 3:
            fields[name] = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 80))
    return NoiseMessage(**fields)


def _feed(conn: NoiseConnection, data: bytes) -> tuple[list[Any], BaseException | None, bytes]:
    """Feed ``data`` to ``conn``; collect events until NEED_DATA or a typed error. Also returns
    what the connection queued at the moment it reported HandshakeComplete."""
    events: list[Any] = []
    flight = b""
    try:
        conn.receive_data(data)
        while (ev := conn.next_event()) is not NEED_DATA:
            events.append(ev)
            if isinstance(ev, HandshakeComplete):
                flight = conn.data_to_send()
            if conn.state is not ConnectionState.OPEN:
                break
    except (PeerError, ConnectionClosedError) as exc:
        if not isinstance(exc, ALLOWED) and data:  # b"" is an EOF: the only non-peer error allowed
            raise AssertionError(f"{exc!r} from bytes, not from an EOF") from None
        if conn.state is not ConnectionState.ERROR:
            raise AssertionError(f"{exc!r} left the connection in {conn.state}") from None
        if conn.data_to_send():
            raise AssertionError("a failed connection still queued bytes to send") from None
        return events, exc, flight
    return events, None, flight


def _frames(data: bytes, intro: bool = False) -> list[bytes]:
    dec = FrameDecoder(expect_intro=intro)
    dec.feed(data)
    out = []
    while (f := dec.next_frame()) is not None:
        out.append(f)
    return out


# --------------------------------------------------------------------------- responder side
def fuzz_responder_raw(fdp: atheris.FuzzedDataProvider) -> None:
    server = NoiseConnection(SERVER_SETTINGS, ephemeral=SERVER_E)
    choice = fdp.ConsumeIntInRange(0, 3)
    if choice == 0:
        intro = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 12))
    elif choice == 1:
        routing = fdp.ConsumeBytes(8) if fdp.ConsumeBool() else None
        intro = make_intro(b"WA" + fdp.ConsumeBytes(2).ljust(2, b"\x00"), routing)
    else:
        intro = make_intro(DEFAULT_HEADER)
    for kind in (HandshakeKind.CLIENT_HELLO, HandshakeKind.CLIENT_FINISH):
        if fdp.ConsumeBool():
            body = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 200))
        else:
            eph = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 40)) if kind is HandshakeKind.CLIENT_HELLO else None
            msg = NoiseMessage(
                ephemeral=eph,
                static=fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 60)) if fdp.ConsumeBool() else None,
                payload=fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 60)) if fdp.ConsumeBool() else None,
            )
            body = encode_handshake(kind, msg)
        data = intro + encode_frame(body)
        intro = b""
        events, error, _ = _feed(server, data)
        if any(isinstance(e, HandshakeComplete) for e in events):
            raise AssertionError("server completed a handshake from forged client messages")
        if error is not None:
            return
        if kind is HandshakeKind.CLIENT_HELLO:
            if server.state is not ConnectionState.HANDSHAKING:
                raise AssertionError(f"server in {server.state} after a ClientHello")
            sent = server.data_to_send()
            if sent:  # a ServerHello must be one well-formed frame
                (frame,) = _frames(sent)
                decode_handshake(HandshakeKind.SERVER_HELLO, frame)


def fuzz_responder_peer(fdp: atheris.FuzzedDataProvider) -> None:
    """A real initiator (our HandshakeState) with fuzzer-mutated messages."""
    server = NoiseConnection(SERVER_SETTINGS, ephemeral=SERVER_E)
    claimed = CLIENT_STATIC if fdp.ConsumeBool() else ATTACKER_STATIC
    hs = HandshakeState(Role.INITIATOR, claimed, DEFAULT_HEADER, e=CLIENT_E)
    hello = hs.write_message()
    mutate_hello = fdp.ConsumeIntInRange(0, 3) == 0
    if mutate_hello:
        hello = _mutate_message(fdp, hello)
    first = make_intro(DEFAULT_HEADER) + encode_frame(encode_handshake(HandshakeKind.CLIENT_HELLO, hello))
    events, error, _ = _feed(server, first)
    if error is not None:
        if not mutate_hello:
            raise AssertionError(f"server rejected a genuine ClientHello: {error!r}")
        return
    (frame,) = _frames(server.data_to_send())
    try:
        hs.read_message(decode_handshake(HandshakeKind.SERVER_HELLO, frame))
    except ALLOWED:
        if not mutate_hello:
            raise AssertionError("our initiator rejected our server's genuine ServerHello") from None
        return
    genuine_payload = fdp.ConsumeBool()
    payload = CLIENT_PAYLOAD.to_bytes() if genuine_payload else fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 120))
    finish = hs.write_message(payload)
    mutate_finish = fdp.ConsumeBool()
    body = encode_handshake(HandshakeKind.CLIENT_FINISH, finish)
    if mutate_finish:
        if fdp.ConsumeBool():
            body = _mutate(fdp, body)
        else:
            body = encode_handshake(HandshakeKind.CLIENT_FINISH, _mutate_message(fdp, finish, finish=True))
    events, error, _ = _feed(server, encode_frame(body))
    done = [e for e in events if isinstance(e, HandshakeComplete)]
    if done:
        ev = done[0]
        if ev.remote_static != claimed.public:
            raise AssertionError("server completed with a static key the peer does not hold")
        if ev.client_payload is None or ev.client_payload.to_bytes() != ClientPayload.from_bytes(payload).to_bytes():
            raise AssertionError("server reported a client payload the peer did not send")
        if server.state is not ConnectionState.OPEN:
            raise AssertionError("handshake complete but the connection is not open")
    elif error is None and not mutate_finish and not mutate_hello and genuine_payload:
        raise AssertionError("a genuine client did not complete the handshake")


# --------------------------------------------------------------------------- initiator side
def _attacker_chain(fdp: atheris.FuzzedDataProvider, server_key: KeyPair) -> bytes:
    """A chain signed by the attacker's root with fuzzer-chosen details (or raw details bytes)."""

    def details(serial: int, issuer: int, key: bytes) -> bytes:
        if fdp.ConsumeIntInRange(0, 5) == 0:
            return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64))
        nb = fdp.ConsumeIntInRange(0, 2 * NOW)
        return CertDetails(
            fdp.ConsumeIntInRange(0, 3) if fdp.ConsumeBool() else serial,
            fdp.ConsumeIntInRange(0, 3) if fdp.ConsumeBool() else issuer,
            key,
            nb,
            nb + fdp.ConsumeIntInRange(0, 2 * NOW),
        ).to_bytes()

    inter_raw = details(1, 0, INTER.public.u if fdp.ConsumeBool() else ATTACKER_E.public.u)
    leaf_raw = details(2, 1, server_key.public.u)
    inter = NoiseCertificate(inter_raw, ATTACKER_ROOT.private.sign(inter_raw, _fixed_rng))
    leaf = NoiseCertificate(leaf_raw, ATTACKER_E.private.sign(leaf_raw, _fixed_rng))
    return CertChain(leaf, inter).to_bytes()


def fuzz_initiator(fdp: atheris.FuzzedDataProvider) -> None:
    wall_time = NOW if fdp.ConsumeIntInRange(0, 3) else fdp.ConsumeIntInRange(0, 4 * NOW)
    client = NoiseConnection(CLIENT_SETTINGS, wall_time=wall_time, ephemeral=CLIENT_E)
    frames = _frames(client.data_to_send(), intro=True)  # the genuine first message
    if len(frames) != 1:
        raise AssertionError("client's first flight is not one frame after the intro")

    mode = fdp.ConsumeIntInRange(0, 2)
    server_key = SERVER_STATIC
    chain = b""
    if mode == 0:  # arbitrary ServerHello frame (or arbitrary bytes with no framing)
        body = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 300))
        wire = encode_frame(body) if fdp.ConsumeBool() else body
    else:  # a real responder, genuine or not, with some chain; mode 2 also mangles its message
        server_key = SERVER_STATIC if fdp.ConsumeBool() else ATTACKER_STATIC
        hs = HandshakeState(Role.RESPONDER, server_key, DEFAULT_HEADER, e=SERVER_E)
        hs.read_message(decode_handshake(HandshakeKind.CLIENT_HELLO, frames[0]))
        which = fdp.ConsumeIntInRange(0, 5)
        if which == 0:
            chain = GENUINE_BYTES
        elif which == 1:
            chain = BAD_CHAINS[fdp.ConsumeIntInRange(0, len(BAD_CHAINS) - 1)]
        elif which == 2:
            chain = _attacker_chain(fdp, server_key)
        elif which == 3:
            chain = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 400))
        else:
            chain = _mutate(fdp, GENUINE_BYTES)
        hello = hs.write_message(chain)
        if mode == 2:
            hello = _mutate_message(fdp, hello)
        wire = encode_frame(encode_handshake(HandshakeKind.SERVER_HELLO, hello))
        if fdp.ConsumeBool():
            wire += fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 40))  # trailing bytes after ServerHello
    events, error, flight = _feed(client, wire)
    done = [e for e in events if isinstance(e, HandshakeComplete)]
    if not done:
        if client.state is ConnectionState.OPEN:
            raise AssertionError("connection open without a HandshakeComplete event")
        if client.data_to_send():
            raise AssertionError("client sent something before the server was authenticated")
        if mode == 1 and server_key is SERVER_STATIC and chain == GENUINE_BYTES and wall_time == NOW:
            raise AssertionError(f"the genuine server was rejected: {error!r}")
        return
    # the client accepted the server: it must be the genuine, certified one
    ev = done[0]
    if server_key is not SERVER_STATIC or ev.remote_static != SERVER_STATIC.public:
        raise AssertionError("client completed a handshake with an uncertified server key")
    presented = CertChain.from_bytes(chain)
    if presented.leaf != GENUINE.leaf or presented.intermediate != GENUINE.intermediate:
        raise AssertionError("client accepted a certificate chain the root did not issue")
    if ev.server_certificate != GENUINE_LEAF:
        raise AssertionError("client reported a leaf other than the genuine one")
    if not (NOT_BEFORE <= wall_time <= min(LEAF_NOT_AFTER, INTER_NOT_AFTER)):
        raise AssertionError("client accepted a certificate outside its validity window")
    fin = _frames(flight)
    if len(fin) != 1:
        raise AssertionError("handshake complete but not exactly one ClientFinish queued")
    decode_handshake(HandshakeKind.CLIENT_FINISH, fin[0])


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    target = fdp.ConsumeIntInRange(0, 3)
    if target == 0:
        fuzz_responder_raw(fdp)
    elif target == 1:
        fuzz_responder_peer(fdp)
    else:
        fuzz_initiator(fdp)


def main() -> None:
    argv = list(sys.argv)
    if not any(a.startswith("-len_control") for a in argv):
        argv.append("-len_control=0")  # structured inputs: use long inputs from the first run
    atheris.Setup(argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
