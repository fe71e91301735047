"""Our WhatsApp-variant Noise_XX handshake against an independent implementation: dissononce
(PyPI, MIT licence) configured for the same variant, in both roles, plus the known-answer transcript.

dissononce's WhatsApp configuration is in ``dissononce_wa.py``; here the message parts are split
into the protobuf fields (ephemeral / static / payload).

Run as a script to regenerate ``tests/transport/vectors/noise_wa_xx_kat.json`` from dissononce.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

dissononce = pytest.importorskip("dissononce") if __name__ != "__main__" else __import__("dissononce")

from dissononce.cipher.aesgcm import AESGCMCipher  # noqa: E402
from dissononce.hash.sha256 import SHA256Hash  # noqa: E402
from dissononce.processing.handshakepatterns.interactive.XX import XXHandshakePattern  # noqa: E402
from dissononce.processing.impl.cipherstate import CipherState as DCipherState  # noqa: E402
from dissononce.processing.impl.handshakestate import HandshakeState as DHandshakeState  # noqa: E402
from dissononce.processing.impl.symmetricstate import SymmetricState as DSymmetricState  # noqa: E402

from dissononce_wa import HEADER, FixedDH, d_keypair, d_state  # noqa: E402

from wacrypto.chatd.server import ServerKeys  # noqa: E402
from wacrypto.primitives.keys import KeyPair, PrivateKey  # noqa: E402
from wacrypto.transport.noise_connection import (
    NEED_DATA,
    ClientSettings,
    FrameReceived,
    HandshakeComplete,
    NoiseConnection,
    ServerSettings,
)
from wacrypto.transport.framing import FrameDecoder, FrameEncoder  # noqa: E402
from wacrypto.transport.messages import HandshakeKind, decode_handshake, encode_handshake  # noqa: E402
from wacrypto.transport.noise import HandshakeState, NoiseMessage, Role  # noqa: E402

VECTOR_FILE = Path(__file__).resolve().parents[1] / "transport" / "vectors" / "noise_wa_xx_kat.json"


def d_write(hs: Any, payload: bytes, has_e: bool, has_payload: bool) -> tuple[NoiseMessage, Any]:
    buf = bytearray()
    split = hs.write_message(payload, buf)
    raw = bytes(buf)
    e = raw[:32] if has_e else None
    rest = raw[32:] if has_e else raw
    if not has_payload:
        return NoiseMessage(ephemeral=e), split
    static, pay = rest[:48], rest[48:]
    return NoiseMessage(ephemeral=e, static=static, payload=pay), split


def d_read(hs: Any, msg: NoiseMessage) -> tuple[bytes, Any]:
    raw = (msg.ephemeral or b"") + (msg.static or b"") + (msg.payload or b"")
    out = bytearray()
    split = hs.read_message(raw, out)
    return bytes(out), split


# --------------------------------------------------------------------------- known answers
FIXED = {
    "client_static": bytes(range(1, 33)),
    "client_ephemeral": bytes(range(33, 65)),
    "server_static": bytes(range(65, 97)),
    "server_ephemeral": bytes(range(97, 129)),
}
SERVER_PAYLOAD = b"server handshake payload (a certificate chain in real use)"
CLIENT_PAYLOAD = b"client handshake payload"
C2S_FRAME = b"first client->server transport frame"
S2C_FRAME = b"first server->client transport frame"


def transcript_dissononce() -> dict[str, str]:
    """The whole transcript computed by dissononce alone."""
    ini = d_state(True, FIXED["client_static"], FIXED["client_ephemeral"])
    res = d_state(False, FIXED["server_static"], FIXED["server_ephemeral"])
    m1, _ = d_write(ini, b"", True, False)
    d_read(res, m1)
    m2, _ = d_write(res, SERVER_PAYLOAD, True, True)
    d_read(ini, m2)
    m3, (c1, c2) = d_write(ini, CLIENT_PAYLOAD, False, True)
    d_read(res, m3)
    return {
        "msg1_ephemeral": m1.ephemeral.hex(),  # type: ignore[union-attr]
        "msg2_ephemeral": m2.ephemeral.hex(),  # type: ignore[union-attr]
        "msg2_static": m2.static.hex(),  # type: ignore[union-attr]
        "msg2_payload": m2.payload.hex(),  # type: ignore[union-attr]
        "msg3_static": m3.static.hex(),  # type: ignore[union-attr]
        "msg3_payload": m3.payload.hex(),  # type: ignore[union-attr]
        "handshake_hash": ini.symmetricstate.get_handshake_hash().hex(),
        "c2s_frame": c1.encrypt_with_ad(b"", C2S_FRAME).hex(),
        "s2c_frame": c2.encrypt_with_ad(b"", S2C_FRAME).hex(),
    }


def transcript_ours() -> dict[str, str]:
    kp = {k: KeyPair(PrivateKey(v)) for k, v in FIXED.items()}
    ini = HandshakeState(Role.INITIATOR, kp["client_static"], HEADER, e=kp["client_ephemeral"])
    res = HandshakeState(Role.RESPONDER, kp["server_static"], HEADER, e=kp["server_ephemeral"])
    m1 = ini.write_message()
    res.read_message(m1)
    m2 = res.write_message(SERVER_PAYLOAD)
    assert ini.read_message(m2) == SERVER_PAYLOAD
    m3 = ini.write_message(CLIENT_PAYLOAD)
    assert res.read_message(m3) == CLIENT_PAYLOAD
    send, _ = ini.split()
    rsend, _ = res.split()
    return {
        "msg1_ephemeral": m1.ephemeral.hex(),  # type: ignore[union-attr]
        "msg2_ephemeral": m2.ephemeral.hex(),  # type: ignore[union-attr]
        "msg2_static": m2.static.hex(),  # type: ignore[union-attr]
        "msg2_payload": m2.payload.hex(),  # type: ignore[union-attr]
        "msg3_static": m3.static.hex(),  # type: ignore[union-attr]
        "msg3_payload": m3.payload.hex(),  # type: ignore[union-attr]
        "handshake_hash": ini.handshake_hash.hex(),
        "c2s_frame": send.encrypt(C2S_FRAME).hex(),
        "s2c_frame": rsend.encrypt(S2C_FRAME).hex(),
    }


def test_known_answer_transcript_matches_dissononce_and_the_stored_vector() -> None:
    theirs = transcript_dissononce()
    assert transcript_ours() == theirs
    stored = json.loads(VECTOR_FILE.read_text())
    assert stored["transcript"] == theirs


def test_standard_noise_would_differ() -> None:
    """The quirk matters: stock dissononce (hashing the empty first payload) gives another h."""
    dh = FixedDH([FIXED["client_ephemeral"]])
    hs = DHandshakeState(DSymmetricState(DCipherState(AESGCMCipher()), SHA256Hash()), dh)
    hs.initialize(XXHandshakePattern(), True, HEADER, s=d_keypair(FIXED["client_static"]))
    hs.write_message(b"", bytearray())
    ours = HandshakeState(Role.INITIATOR, KeyPair(PrivateKey(FIXED["client_static"])), HEADER,
                          e=KeyPair(PrivateKey(FIXED["client_ephemeral"])))
    ours.write_message()
    assert hs.symmetricstate.get_handshake_hash() != ours.handshake_hash


# --------------------------------------------------------------------------- live, both roles
def test_our_client_against_dissononce_server() -> None:
    """Our full client connection (framing, protobuf, certificate check) vs a dissononce responder."""
    keys, _, _ = ServerKeys.generate()
    client = NoiseConnection(ClientSettings(KeyPair.generate(), keys.root_public), wall_time=time.time())
    server_priv = keys.static.private.to_bytes()
    res = d_state(False, server_priv)
    dec = FrameDecoder(expect_intro=True)
    enc = FrameEncoder()
    dec.feed(client.data_to_send())
    frame = dec.next_frame()
    assert frame is not None and dec.header == HEADER
    d_read(res, decode_handshake(HandshakeKind.CLIENT_HELLO, frame))
    m2, _ = d_write(res, keys.chain.to_bytes(), True, True)
    client.receive_data(enc.encode(encode_handshake(HandshakeKind.SERVER_HELLO, m2)))
    ev = client.next_event()
    assert isinstance(ev, HandshakeComplete) and ev.server_certificate is not None
    dec.feed(client.data_to_send())
    frame = dec.next_frame()
    assert frame is not None
    payload, (c2s, s2c) = d_read(res, decode_handshake(HandshakeKind.CLIENT_FINISH, frame))
    assert payload  # our ClientPayload
    # transport both ways
    client.send_frame(b"hello from wacrypto")
    dec.feed(client.data_to_send())
    frame = dec.next_frame()
    assert frame is not None
    assert c2s.decrypt_with_ad(b"", frame) == b"hello from wacrypto"
    client.receive_data(enc.encode(s2c.encrypt_with_ad(b"", b"hello from dissononce")))
    assert client.next_event() == FrameReceived(b"hello from dissononce")
    assert client.next_event() is NEED_DATA


def test_dissononce_client_against_our_server() -> None:
    """A dissononce initiator vs our full server connection, which sends its certificate chain."""
    keys, _, _ = ServerKeys.generate()
    server = NoiseConnection(ServerSettings(keys.static, keys.chain))
    client_priv = KeyPair.generate().private.to_bytes()
    ini = d_state(True, client_priv)
    dec = FrameDecoder()
    enc = FrameEncoder(HEADER)
    m1, _ = d_write(ini, b"", True, False)
    server.receive_data(enc.encode(encode_handshake(HandshakeKind.CLIENT_HELLO, m1)))
    assert server.next_event() is NEED_DATA
    dec.feed(server.data_to_send())
    frame = dec.next_frame()
    assert frame is not None
    chain_bytes, _ = d_read(ini, decode_handshake(HandshakeKind.SERVER_HELLO, frame))
    assert chain_bytes == keys.chain.to_bytes()
    assert ini.rs.data == keys.static.public.u
    from wacrypto.transport.messages import ClientPayload

    m3, (c2s, s2c) = d_write(ini, ClientPayload((2, 3, 4), "dissononce").to_bytes(), False, True)
    server.receive_data(enc.encode(encode_handshake(HandshakeKind.CLIENT_FINISH, m3)))
    ev = server.next_event()
    assert isinstance(ev, HandshakeComplete)
    assert ev.client_payload == ClientPayload((2, 3, 4), "dissononce")
    assert ev.remote_static.u == KeyPair(PrivateKey(client_priv)).public.u
    server.receive_data(enc.encode(c2s.encrypt_with_ad(b"", b"ping from dissononce")))
    assert server.next_event() == FrameReceived(b"ping from dissononce")
    server.send_frame(b"pong from wacrypto")
    dec.feed(server.data_to_send())
    frame = dec.next_frame()
    assert frame is not None and s2c.decrypt_with_ad(b"", frame) == b"pong from wacrypto"


def _write_vectors() -> None:
    import importlib.metadata

    data = {
        "provenance": (
            "Generated by tests/interop/test_noise_interop.py (run as a script) with dissononce "
            f"{importlib.metadata.version('dissononce')} (PyPI, MIT) configured for WhatsApp's "
            "Noise_XX_25519_AESGCM_SHA256 variant (prologue = header, empty first payload not hashed). "
            "Private keys are the fixed byte ranges below; all values hex."
        ),
        "header": HEADER.hex(),
        "keys": {k: v.hex() for k, v in FIXED.items()},
        "server_payload": SERVER_PAYLOAD.hex(),
        "client_payload": CLIENT_PAYLOAD.hex(),
        "c2s_plaintext": C2S_FRAME.hex(),
        "s2c_plaintext": S2C_FRAME.hex(),
        "transcript": transcript_dissononce(),
    }
    VECTOR_FILE.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {VECTOR_FILE}", file=sys.stderr)


if __name__ == "__main__":
    _write_vectors()
