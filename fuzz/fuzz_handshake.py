"""atheris harness: the Noise handshake parsers on untrusted bytes, both roles, and the
certificate chain / client payload parsers.

Invariant: untrusted bytes raise only the PeerError family (HandshakeError, CertificateError,
FrameError: each also a TransportError); anything else is a crash. Empty bytes are not fed (that
is an EOF), so not even a ConnectionClosedError may come out.
Run: python fuzz/fuzz_handshake.py -runs=2000
"""

from __future__ import annotations

import sys
import time

import atheris

with atheris.instrument_imports():
    from wacrypto.chatd.server import ServerKeys
    from wacrypto.errors import PeerError
    from wacrypto.primitives.keys import KeyPair, PrivateKey
    from wacrypto.transport.certs import CertChain
    from wacrypto.transport.noise_connection import NEED_DATA, ClientSettings, NoiseConnection, ServerSettings
    from wacrypto.transport.framing import encode_frame
    from wacrypto.transport.messages import ClientPayload, HandshakeKind, decode_handshake

ALLOWED = (PeerError,)
KEYS, _, _ = ServerKeys.generate(now=1_700_000_000)
CLIENT_KEY = KeyPair(PrivateKey(bytes(range(32))))
NOW = 1_700_000_100.0


def drain(conn: NoiseConnection) -> None:
    for _ in range(64):
        if conn.next_event() is NEED_DATA:
            return


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, 5)
    body = fdp.ConsumeBytes(fdp.remaining_bytes())
    try:
        if mode == 0:  # server fed raw bytes (intro + frames)
            conn = NoiseConnection(ServerSettings(KEYS.static, KEYS.chain))
            if body:  # b"" would be an EOF
                conn.receive_data(body)
            drain(conn)
        elif mode == 1:  # server fed a valid intro and a fuzzed ClientHello frame
            conn = NoiseConnection(ServerSettings(KEYS.static, KEYS.chain))
            conn.receive_data(b"WA\x06\x03" + encode_frame(body[: 1 << 16]))
            drain(conn)
        elif mode == 2:  # client fed a fuzzed ServerHello
            conn = NoiseConnection(ClientSettings(CLIENT_KEY, KEYS.root_public), wall_time=NOW)
            conn.receive_data(encode_frame(body[: 1 << 16]))
            drain(conn)
        elif mode == 3:
            for kind in HandshakeKind:
                try:
                    decode_handshake(kind, body)
                except ALLOWED:
                    pass
        elif mode == 4:
            CertChain.from_bytes(body).verify(KEYS.root_public, KEYS.static.public, NOW)
        else:
            ClientPayload.from_bytes(body)
    except ALLOWED:
        pass


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
