"""The Noise vector family (handshake, transport frames, tampered handshakes) checked by dissononce,
an independent Noise implementation, in WhatsApp's configuration (dissononce_wa.py)."""

from __future__ import annotations

from typing import Any

import pytest
from dissononce_wa import d_state

from wacrypto.tools.vectors import noise


@pytest.fixture(scope="module")
def noise_vectors() -> dict[str, Any]:
    return noise.build("wacrypto-vectors-1")


def _tests(data: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [t for g in data["testGroups"] if g["type"] == kind for t in g["tests"]]


def _d_state(initiator: bool, static: str, ephemeral: str, prologue: bytes) -> Any:
    return d_state(initiator, bytes.fromhex(static), bytes.fromhex(ephemeral), prologue)


def _fields(message_hex: str, kind: str) -> bytes:
    """ephemeral || static || payload of a serialized HandshakeMessage, parsed by hand here (field
    numbers from proto/noise.proto: client_hello 2, server_hello 3, client_finish 4; in the hellos
    ephemeral 1, static 2, payload 3; in the finish static 1, payload 2: number order is token order)."""
    data = bytes.fromhex(message_hex)

    def fields(buf: bytes) -> dict[int, bytes]:
        out, i = {}, 0
        while i < len(buf):
            key, i = _varint(buf, i)
            assert key & 7 == 2, "only length-delimited fields in these messages"
            n, i = _varint(buf, i)
            out[key >> 3] = buf[i:i + n]
            i += n
        return out

    sub = fields(data)[{"client_hello": 2, "server_hello": 3, "client_finish": 4}[kind]]
    f = fields(sub)
    return f.get(1, b"") + f.get(2, b"") + f.get(3, b"")


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def test_noise_handshake_and_frames_match_dissononce(noise_vectors: dict[str, Any]) -> None:
    (v,) = _tests(noise_vectors, "NoiseHandshake")
    prologue = bytes.fromhex(v["prologue"])
    ini = _d_state(True, v["client_static_private"], v["client_ephemeral_private"], prologue)
    res = _d_state(False, v["server_static_private"], v["server_ephemeral_private"], prologue)
    buf = bytearray()
    ini.write_message(b"", buf)
    assert bytes(buf) == _fields(v["client_hello"], "client_hello")
    res.read_message(bytes(buf), bytearray())
    buf = bytearray()
    res.write_message(bytes.fromhex(v["server_payload"]), buf)
    assert bytes(buf) == _fields(v["server_hello"], "server_hello")
    out = bytearray()
    ini.read_message(bytes(buf), out)
    assert out.hex() == v["server_payload"]
    buf = bytearray()
    c2s, s2c = ini.write_message(bytes.fromhex(v["client_payload"]), buf)
    assert bytes(buf) == _fields(v["client_finish"], "client_finish")
    assert ini.symmetricstate.get_handshake_hash().hex() == v["handshake_hash"]
    # the client stream is the WA header, then 3-byte length-prefixed frames
    m1, m3 = bytes.fromhex(v["client_hello"]), bytes.fromhex(v["client_finish"])
    assert v["client_stream"] == (prologue + len(m1).to_bytes(3, "big") + m1 + len(m3).to_bytes(3, "big") + m3).hex()
    transports = {t["direction"]: t for t in _tests(noise_vectors, "NoiseTransport") if t["result"] == "valid"}
    for direction, cs in (("client_to_server", c2s), ("server_to_client", s2c)):
        for fr in transports[direction]["frames"]:
            assert cs.encrypt_with_ad(b"", bytes.fromhex(fr["plaintext"])).hex() == fr["ciphertext"], direction


def test_tampered_handshake_messages_fail_in_dissononce(noise_vectors: dict[str, Any]) -> None:
    (v,) = _tests(noise_vectors, "NoiseHandshake")
    bad = _tests(noise_vectors, "NoiseHandshakeInvalid")
    assert bad
    for tc in bad:
        reader_prologue = bytes.fromhex(tc.get("reader_prologue", v["prologue"]))
        prologue = bytes.fromhex(v["prologue"])
        ini = _d_state(True, v["client_static_private"], v["client_ephemeral_private"],
                       reader_prologue if tc["reader"] == "initiator" else prologue)
        res = _d_state(False, v["server_static_private"], v["server_ephemeral_private"],
                       reader_prologue if tc["reader"] == "responder" else prologue)
        buf = bytearray()
        ini.write_message(b"", buf)
        res.read_message(bytes(buf), bytearray())
        buf = bytearray()
        res.write_message(bytes.fromhex(v["server_payload"]), buf)
        if tc["reader"] == "initiator":
            reader, raw = ini, _fields(tc["message"], "server_hello")
        else:
            ini.read_message(bytes(buf), bytearray())
            ini.write_message(bytes.fromhex(v["client_payload"]), bytearray())
            reader, raw = res, _fields(tc["message"], "client_finish")
        with pytest.raises(Exception):  # noqa: B017 - dissononce raises assorted errors; any refusal will do
            reader.read_message(raw, bytearray())
