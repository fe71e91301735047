"""The WhatsApp Noise handshake (``Noise_XX_25519_AESGCM_SHA256`` with WhatsApp's changes) and the
chat framing: a full handshake with fixed keys, the transport frames after it, and what a side
must refuse (tampered handshake messages, wrong prologue, tampered or reordered transport frames,
oversized or malformed frames).

Checked in process (the peer protocol has no transport commands). Handshake messages are given as
the serialized ``HandshakeMessage`` protobuf (``proto/noise.proto``); ``client_stream`` is exactly
what the client writes (intro header, then 3-byte length-prefixed frames).
"""

from __future__ import annotations

from typing import Any, Callable

from wacrypto.errors import FrameError, HandshakeError
from wacrypto.primitives.keys import KeyPair, PrivateKey, clamp
from wacrypto.tools.vectors.common import Mismatch, VectorFile, expect, family_rng, flip
from wacrypto.transport.framing import DEFAULT_HEADER, FrameDecoder, FrameEncoder, encode_frame
from wacrypto.transport.messages import HandshakeKind, decode_handshake, encode_handshake
from wacrypto.transport.noise import CipherState, HandshakeState, NoiseMessage, Role, hkdf2

FAMILY = "noise"

NOTES = {
    "Handshake": "A complete handshake: every message, the handshake hash and both transport keys must match.",
    "TamperedStatic": "The encrypted static key of a handshake message is altered.",
    "TamperedPayload": "The encrypted payload of a handshake message is altered.",
    "TamperedEphemeral": "The ephemeral key is altered (the following decryption fails).",
    "WrongPrologue": "The reader uses another intro header as prologue than the writer.",
    "MissingField": "A field the pattern requires is absent.",
    "TamperedFrame": "A transport frame's ciphertext or tag is altered.",
    "ReorderedFrame": "Transport frames are read in another order than written (nonce mismatch).",
    "ShortFrame": "A transport frame shorter than the 16-byte tag.",
    "Framing": "Length-prefixed framing of the stream.",
    "FrameTooLarge": "A length prefix above the receiver's limit.",
    "BadIntro": "The client stream does not start with the WA intro header.",
}

_KINDS = (HandshakeKind.CLIENT_HELLO, HandshakeKind.SERVER_HELLO, HandshakeKind.CLIENT_FINISH)


def _pair(hexkey: str) -> KeyPair:
    return KeyPair(PrivateKey(bytes.fromhex(hexkey)))


def _run(v: dict[str, Any], *, stop_reader: str | None = None, tampered: bytes | None = None,
         reader_prologue: bytes | None = None) -> dict[str, Any]:
    """Run the handshake from the keys of ``v``. With ``stop_reader`` the message that side reads
    next is replaced by ``tampered`` (and read with ``reader_prologue``); its error propagates."""
    prologue = bytes.fromhex(v["prologue"])
    c = HandshakeState(Role.INITIATOR, _pair(v["client_static_private"]),
                       reader_prologue if stop_reader == "initiator" and reader_prologue else prologue,
                       e=_pair(v["client_ephemeral_private"]))
    s = HandshakeState(Role.RESPONDER, _pair(v["server_static_private"]),
                       reader_prologue if stop_reader == "responder" and reader_prologue else prologue,
                       e=_pair(v["server_ephemeral_private"]))
    out: dict[str, Any] = {}
    m1 = encode_handshake(HandshakeKind.CLIENT_HELLO, c.write_message())
    s.read_message(decode_handshake(HandshakeKind.CLIENT_HELLO, m1))
    m2 = encode_handshake(HandshakeKind.SERVER_HELLO, s.write_message(bytes.fromhex(v["server_payload"])))
    if stop_reader == "initiator":
        assert tampered is not None
        c.read_message(decode_handshake(HandshakeKind.SERVER_HELLO, tampered))
        return out
    out["server_payload_read"] = c.read_message(decode_handshake(HandshakeKind.SERVER_HELLO, m2)).hex()
    m3 = encode_handshake(HandshakeKind.CLIENT_FINISH, c.write_message(bytes.fromhex(v["client_payload"])))
    if stop_reader == "responder":
        assert tampered is not None
        s.read_message(decode_handshake(HandshakeKind.CLIENT_FINISH, tampered))
        return out
    out["client_payload_read"] = s.read_message(decode_handshake(HandshakeKind.CLIENT_FINISH, m3)).hex()
    expect(c.handshake_hash == s.handshake_hash, "the two sides' handshake hashes differ")
    out.update(client_hello=m1.hex(), server_hello=m2.hex(), client_finish=m3.hex(), handshake_hash=c.handshake_hash.hex())
    k1, k2 = hkdf2(c._ck, b"")  # what split() keys its cipher states with (client to server first)
    out["key_client_to_server"], out["key_server_to_client"] = k1.hex(), k2.hex()
    enc = FrameEncoder(intro=prologue)
    out["client_stream"] = (enc.encode(m1) + enc.encode(m3)).hex()
    out["server_stream"] = encode_frame(m2).hex()
    return out


def build(seed: str) -> dict[str, Any]:
    rng = family_rng(seed, FAMILY)
    f = VectorFile(FAMILY, "WhatsApp Noise_XX_25519_AESGCM_SHA256 handshake, transport frames and framing", seed,
                   "Static and ephemeral keys and payloads from the seeded RNG; messages by wacrypto.transport.noise "
                   "and wacrypto.transport.messages; frames by wacrypto.transport.framing.", NOTES)
    v: dict[str, Any] = {"prologue": DEFAULT_HEADER.hex()}
    for k in ("client_static", "client_ephemeral", "server_static", "server_ephemeral"):
        priv = clamp(rng(32))
        v[f"{k}_private"] = priv.hex()
        v[f"{k}_public"] = PrivateKey(priv).public_key().u.hex()
    v["server_payload"] = rng(120).hex()  # stands for the certificate chain
    v["client_payload"] = rng(60).hex()  # stands for the ClientPayload
    got = _run(v)
    g = f.group("NoiseHandshake", pattern="XX", procedure="run both roles from the given keys; compare every output")
    hs = f.case(g, "full handshake, header WA 06 03", "valid", ["Handshake"], **v,
                **{k: got[k] for k in ("client_hello", "server_hello", "client_finish", "handshake_hash",
                                       "key_client_to_server", "key_server_to_client", "client_stream", "server_stream")})

    g = f.group("NoiseHandshakeInvalid", procedure="run the handshake from the keys of case handshakeTcId; the side "
                                                  "`reader` reads `message` instead of the real one and must fail")
    m2 = decode_handshake(HandshakeKind.SERVER_HELLO, bytes.fromhex(got["server_hello"]))
    m3 = decode_handshake(HandshakeKind.CLIENT_FINISH, bytes.fromhex(got["client_finish"]))
    assert m2.ephemeral and m2.static and m2.payload and m3.static and m3.payload
    def bad(comment: str, flags: list[str], reader: str, msg: NoiseMessage, **kw: Any) -> None:
        kind = HandshakeKind.SERVER_HELLO if reader == "initiator" else HandshakeKind.CLIENT_FINISH
        f.case(g, comment, "invalid", flags, handshakeTcId=hs["tcId"], reader=reader,
               message=encode_handshake(kind, msg).hex(), **kw)

    bad("server static flipped", ["TamperedStatic"], "initiator", NoiseMessage(m2.ephemeral, flip(m2.static, 3), m2.payload))
    bad("server static tag flipped", ["TamperedStatic"], "initiator", NoiseMessage(m2.ephemeral, flip(m2.static, -1), m2.payload))
    bad("server payload flipped", ["TamperedPayload"], "initiator", NoiseMessage(m2.ephemeral, m2.static, flip(m2.payload, 0)))
    bad("server ephemeral flipped", ["TamperedEphemeral"], "initiator", NoiseMessage(flip(m2.ephemeral, 5), m2.static, m2.payload))
    bad("server hello without static", ["MissingField"], "initiator", NoiseMessage(m2.ephemeral, None, m2.payload))
    bad("server hello without payload", ["MissingField"], "initiator", NoiseMessage(m2.ephemeral, m2.static, None))
    bad("client read with prologue WA 05 02", ["WrongPrologue"], "initiator", m2, reader_prologue=b"WA\x05\x02".hex())
    bad("client static flipped", ["TamperedStatic"], "responder", NoiseMessage(None, flip(m3.static, 0), m3.payload))
    bad("client payload tag flipped", ["TamperedPayload"], "responder", NoiseMessage(None, m3.static, flip(m3.payload, -1)))
    bad("client finish without static", ["MissingField"], "responder", NoiseMessage(None, None, m3.payload))

    g = f.group("NoiseTransport", procedure="AES-256-GCM with the transport key of `direction`, nonce 8 zero bytes || "
                                            "uint32_be(counter), no associated data; decrypt frames in the order listed")
    for direction, key in (("client_to_server", got["key_client_to_server"]), ("server_to_client", got["key_server_to_client"])):
        cs = CipherState(bytes.fromhex(key))
        frames: list[dict[str, Any]] = []
        for i in range(3):
            pt = rng(7 + 40 * i)
            frames.append({"counter": i, "plaintext": pt.hex(), "ciphertext": cs.encrypt(pt).hex()})
        f.case(g, f"{direction}: three frames", "valid", [], direction=direction, key=key, frames=frames)
        ct1 = bytes.fromhex(frames[1]["ciphertext"])
        f.case(g, f"{direction}: second frame's tag flipped", "invalid", ["TamperedFrame"], direction=direction, key=key,
               frames=[frames[0], {**frames[1], "ciphertext": flip(ct1, -1).hex()}])
        f.case(g, f"{direction}: second frame's ciphertext flipped", "invalid", ["TamperedFrame"], direction=direction,
               key=key, frames=[frames[0], {**frames[1], "ciphertext": flip(ct1, 0).hex()}])
        f.case(g, f"{direction}: frames 1 and 2 swapped", "invalid", ["ReorderedFrame"], direction=direction, key=key,
               frames=[frames[1], frames[0]])
        f.case(g, f"{direction}: a 15-byte frame", "invalid", ["ShortFrame"], direction=direction, key=key,
               frames=[{"counter": 0, "ciphertext": ct1[:15].hex()}])

    g = f.group("Framing", maxFrameLength=1 << 20,
                procedure="feed `stream` to a frame decoder (client stream: WA intro first when intro is true); "
                          "valid: it yields exactly `frames`; invalid: it fails")
    payloads = [b"", rng(1), rng(300)]
    stream = FrameEncoder(intro=DEFAULT_HEADER).encode(payloads[0])
    stream += b"".join(encode_frame(p) for p in payloads[1:])
    f.case(g, "intro and three frames (one empty)", "valid", ["Framing"], intro=True, stream=stream.hex(),
           frames=[p.hex() for p in payloads])
    f.case(g, "server stream: frames only", "valid", ["Framing"], intro=False,
           stream=b"".join(encode_frame(p) for p in payloads).hex(), frames=[p.hex() for p in payloads])
    f.case(g, "length prefix 2^20 + 1", "invalid", ["FrameTooLarge"], intro=False,
           stream=((1 << 20) + 1).to_bytes(3, "big").hex())
    f.case(g, "length prefix 0xffffff", "invalid", ["FrameTooLarge"], intro=False, stream="ffffff")
    f.case(g, "stream starting with WB", "invalid", ["BadIntro"], intro=True, stream=(b"WB\x06\x03" + encode_frame(b"x")).hex())
    f.case(g, "stream without intro", "invalid", ["BadIntro"], intro=True, stream=encode_frame(b"x" * 30).hex())
    return f.to_json()


def _by_id(data: dict[str, Any], tc_id: int) -> dict[str, Any]:
    return next(t for g in data["testGroups"] for t in g["tests"] if t["tcId"] == tc_id)


def check_handshake(data: dict[str, Any], group: dict[str, Any], tc: dict[str, Any]) -> None:
    got = _run(tc)
    for k, v in got.items():
        if k in tc:
            expect(tc[k] == v, f"{k} differs")
    expect(got["server_payload_read"] == tc["server_payload"] and got["client_payload_read"] == tc["client_payload"],
           "payloads differ")


def check_handshake_invalid(data: dict[str, Any], group: dict[str, Any], tc: dict[str, Any]) -> None:
    v = _by_id(data, tc["handshakeTcId"])
    prologue = bytes.fromhex(tc["reader_prologue"]) if "reader_prologue" in tc else None
    try:
        _run(v, stop_reader=tc["reader"], tampered=bytes.fromhex(tc["message"]), reader_prologue=prologue)
    except HandshakeError:
        return
    raise Mismatch("tampered handshake message accepted")


def check_transport(data: dict[str, Any], group: dict[str, Any], tc: dict[str, Any]) -> None:
    cs = CipherState(bytes.fromhex(tc["key"]))
    try:
        for fr in tc["frames"]:
            pt = cs.decrypt(bytes.fromhex(fr["ciphertext"]))
            expect(pt.hex() == fr["plaintext"], "wrong plaintext")
    except FrameError:
        expect(tc["result"] != "valid", "valid frame refused")
        return
    expect(tc["result"] != "invalid", "bad frame accepted")


def check_framing(data: dict[str, Any], group: dict[str, Any], tc: dict[str, Any]) -> None:
    dec = FrameDecoder(group["maxFrameLength"], expect_intro=tc["intro"])
    frames = []
    try:
        stream = bytes.fromhex(tc["stream"])
        for i in range(len(stream)):  # byte by byte: the split must not matter
            dec.feed(stream[i:i + 1])
            while (fr := dec.next_frame()) is not None:
                frames.append(fr.hex())
    except FrameError:
        expect(tc["result"] != "valid", "valid stream refused")
        return
    expect(tc["result"] != "invalid", "bad stream accepted")
    expect(frames == tc["frames"] and dec.buffered == 0, "wrong frames")


LOCAL_CHECKS: dict[str, Callable[[dict[str, Any], dict[str, Any], dict[str, Any]], None]] = {
    "NoiseHandshake": check_handshake, "NoiseHandshakeInvalid": check_handshake_invalid,
    "NoiseTransport": check_transport, "Framing": check_framing,
}
