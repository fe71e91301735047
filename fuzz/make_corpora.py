"""Seed corpora and dictionaries for every harness in ``fuzz/``, from valid traffic, deterministically.

    python fuzz/make_corpora.py              # write fuzz/corpus/<harness>/ (each folder wiped first)
    python fuzz/make_corpora.py --verify     # also: every seed reads back as intended and runs clean
    python fuzz/make_corpora.py --dicts      # rewrite fuzz/dict/<harness>.dict
    python fuzz/make_corpora.py --check-dicts  # exit 1 if fuzz/dict/ is not what this script writes

The seeds are genuine messages: the differential harness's conversation (PreKeySignalMessages,
SignalMessages, SenderKeyMessages, an SKDM, bob's session records), the vector suite's stanzas,
media blobs, Noise transcripts and frame streams, and handshakes made with the harnesses' own fixed
keys, so that a seed reaches as deep as a valid input can (a full handshake, a decrypt that
succeeds). A harness that reads its input through ``atheris.FuzzedDataProvider`` gets its seeds
written with :class:`fuzzkit.FdpWriter`, value by value in the order the harness reads them;
``--verify`` replays every such seed through the harness with a recording provider and checks that
it read exactly those values, then checks the harness accepts the seed (no crash).

``make fuzz`` runs this first (a few seconds): the corpora are generated, not committed
(``fuzz/corpus/`` is ignored by git), the dictionaries are committed (``tests/fuzz_regressions``
checks they are current).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fuzzkit import FUZZ_DIR, FdpWriter, harness_paths, load_harness, normalize, recording, replay  # noqa: E402

Seed = bytes | FdpWriter
Seeds = Iterator[tuple[str, Seed]]
SEEDS: dict[str, Callable[[], Seeds]] = {}
DICTS: dict[str, Callable[[], list[tuple[str, bytes]]]] = {}


def seeds(name: str) -> Callable[[Callable[[], Seeds]], Callable[[], Seeds]]:
    def deco(fn: Callable[[], Seeds]) -> Callable[[], Seeds]:
        SEEDS[name] = fn
        return fn

    return deco


def dictionary(*names: str) -> Callable[[Callable[[], list[tuple[str, bytes]]]], Callable[[], list[tuple[str, bytes]]]]:
    def deco(fn: Callable[[], list[tuple[str, bytes]]]) -> Callable[[], list[tuple[str, bytes]]]:
        for n in names:
            DICTS[n] = fn
        return fn

    return deco


# =========================================================================== valid traffic
@functools.cache
def traffic() -> Any:
    """The differential harness's deterministic conversation (loading it starts no peer)."""
    return load_harness("fuzz_differential").TRAFFIC


def signal_messages() -> list[tuple[str, int, bytes]]:
    """(name, type, body) of every distinct genuine message: 3 PreKey, 2 Signal, 7 SenderKey, 0 SKDM."""
    out, seen = [], set()
    for t in traffic().targets:
        if t.body in seen:
            continue
        seen.add(t.body)
        kind = {"prekey": 3, "signal": 2, "group": 7, "skdm": 0}[t.kind]
        out.append((t.name.split(",")[0].split(" ")[0], kind, t.body))
    return out


@functools.cache
def vectors() -> dict[str, dict[str, Any]]:
    from wacrypto.tools.vectors import build_all

    return build_all(families=("binary", "media", "noise", "x3dh"))


def cases(family: str, kind: str, valid_only: bool = True) -> list[dict[str, Any]]:
    return [t for g in vectors()[family]["testGroups"] if g["type"] == kind for t in g["tests"]
            if not valid_only or t["result"] in ("valid", "acceptable")]


@functools.cache
def records() -> list[tuple[str, bytes]]:
    """Stored records of a short conversation: sessions (stored and exported form), prekeys, identity."""
    import trio

    from wacrypto.signal.records import export_record, identity_to_bytes
    from wacrypto.testing.rng import SeededRng
    from wacrypto.tools.vectors.parties import Party

    async def run() -> list[tuple[str, bytes]]:
        rng = SeededRng(b"wacrypto make_corpora records")
        a = await Party("alice", rng, registration_id=7).setup()
        b = await Party("bob", rng, registration_id=8).setup()
        await a.cipher.process_bundle(b.address, b.bundle())
        pending = await a.cipher.export_session(b.address)
        first = await a.send(b, b"one")
        await b.receive(first, a)
        await a.receive(await b.send(a, b"two"), b)
        await b.receive(await a.send(b, b"three"), a)
        async with b.store.transaction(a.address) as tx:
            raw = await tx.load_session(a.address)
        assert raw is not None
        return [("session-pending", pending), ("session-stored", raw), ("session-exported", export_record(raw)),
                ("prekey", b.opk.to_bytes()), ("signed-prekey", b.spk.to_bytes()), ("identity", identity_to_bytes(b.identity))]

    return trio.run(run)


# =========================================================================== seeds, one function per harness
@seeds("fuzz_wire")
def _wire() -> Seeds:
    for name, t, body in signal_messages():
        yield f"{name}-type{t}", bytes((3 if t == 3 else 2,)) + body


@seeds("fuzz_senderkey")
def _senderkey() -> Seeds:
    h = load_harness("fuzz_senderkey")
    for i in range(len(h.GENUINE)):  # mode 1 with a zero XOR mask: the harness's own genuine messages
        yield f"genuine-{i}", b"\x01" + bytes(len(h.GENUINE) + i)
        yield f"genuine-{i}-decrypt", b"\x00" + h.GENUINE[i]
    yield "receiver-record", b"\x03" + bytes(2)  # mode 3, zero mask: the genuine records
    yield "own-record", b"\x03" + bytes(3)
    yield "own-record-raw", b"\x02" + h.OWN_BYTES
    yield "receiver-record-raw", b"\x02" + h.RECEIVER_BYTES
    yield "skdm", b"\x00" + h.SKDM
    for name, t, body in signal_messages():
        if t in (0, 7):
            yield f"traffic-{name}", b"\x00" + body


@seeds("fuzz_records")
def _records() -> Seeds:
    yield from records()


@seeds("fuzz_envelope")
def _envelope() -> Seeds:
    from wacrypto.chat.envelope import Envelope

    key_a, key_b = hashlib.sha256(b"a").digest(), hashlib.sha256(b"b").digest()
    for name, t, body in signal_messages():
        if t in (2, 3):
            w = FdpWriter()
            w.boolean(True)
            w.rest(Envelope(key_b, t, body).to_bytes())
            yield f"{name}", w
            w = FdpWriter()
            w.boolean(True)
            w.rest(Envelope(key_b, t, body).stamped(key_a).to_bytes())
            yield f"{name}-stamped", w
    w = FdpWriter()  # the structured branch: every field, a genuine body
    w.boolean(False)
    w.int_in_range(31, 33, 32)
    w.bytes_(32, key_b)
    w.int_in_range(0, 4, 2)
    body = signal_messages()[3][2][:64]
    w.int_in_range(0, 64, len(body))
    w.bytes_(len(body), body)
    w.boolean(True)
    w.int_in_range(31, 33, 32)
    w.bytes_(32, key_a)
    w.rest(b"")
    yield "structured", w


def _streams() -> list[tuple[str, bool, bytes]]:
    """(name, starts with an intro, bytes) of genuine client and server streams."""
    hs = cases("noise", "NoiseHandshake")[0]
    out = [("client-stream", True, bytes.fromhex(hs["client_stream"])),
           ("server-stream", False, bytes.fromhex(hs["server_stream"]))]
    out += [(f"framing-{t['tcId']}", bool(t["intro"]), bytes.fromhex(t["stream"])) for t in cases("noise", "Framing")]
    return out


@seeds("fuzz_framing")
def _framing() -> Seeds:
    for name, intro, stream in _streams():
        for cuts in ((), (1, 5, 40)):
            w = FdpWriter()
            w.boolean(intro)
            w.int_in_range(1, 1 << 16, 1 << 16)
            w.int_in_range(0, 8, len(cuts))
            for c in cuts:
                w.int_in_range(0, 4096, c)
            w.rest(stream)
            yield f"{name}-{len(cuts)}cuts", w


@seeds("fuzz_framing_conn")
def _framing_conn() -> Seeds:
    h = load_harness("fuzz_framing_conn")
    for name, intro, stream in _streams():  # the decoder, raw mode, split as a nested provider says
        w = FdpWriter()
        w.int_in_range(0, 3, 1)
        w.boolean(intro)
        w.int_in_range(0, len(h.FRAME_LIMITS) - 1, 5)
        split = FdpWriter()
        cuts = sorted({min(c, len(stream)) for c in (3, 4, 17)})
        split.int_in_range(0, h.MAX_SPLITS, len(cuts))
        for c in (3, 4, 17):
            split.int_in_range(0, len(stream), min(c, len(stream)))
        inner = split.data()
        w.bytes_(2 * h.MAX_SPLITS, bytes(2 * h.MAX_SPLITS - len(inner)) + inner)
        w.boolean(False)
        w.rest(stream)
        yield f"decoder-{name}", w
    stanzas = [s for s in (bytes.fromhex(t["stanza"]) for t in cases("binary", "StanzaEncode")) if len(s) <= 300][:4]
    for to_client in (False, True):  # a connection: genuine frames of stanzas and Signal messages
        for chat in (False, True):
            w = FdpWriter()
            w.int_in_range(0, 3, 0)
            w.boolean(to_client)
            w.boolean(chat)
            ops: list[Callable[[FdpWriter], None]] = []
            for st in stanzas:
                ops.append(functools.partial(_op_payload, payload=st))
            ops.append(functools.partial(_op_stanza, kind=0, ident="ping0001", value=42))
            ops.append(functools.partial(_op_stanza, kind=2, ident="m0000001", value=traffic().targets[3].body[:64].ljust(64, b"\0")))
            ops.append(functools.partial(_op_stanza, kind=3, ident="m0000001", value=None))
            w.int_in_range(0, h.MAX_OPS, len(ops))
            for op in ops:
                op(w)
            w.boolean(False)  # no EOF
            w.int_in_range(0, h.MAX_SPLITS, 0)
            yield f"connection-{'to-client' if to_client else 'to-server'}{'-chat' if chat else ''}", w


def _op_payload(w: FdpWriter, payload: bytes) -> None:
    w.int_in_range(0, 6, 0)
    w.int_in_range(0, 300, len(payload))
    w.bytes_(len(payload), payload)


def _op_stanza(w: FdpWriter, kind: int, ident: str, value: Any) -> None:
    w.int_in_range(0, 6, 2)
    w.int_in_range(0, 4, kind)
    w.ascii(8, ident)
    if kind in (0, 1):
        w.int_in_range(0, 2**64 - 1, value)
    elif kind == 2:
        w.bytes_(64, value)
    elif kind == 4:
        w.int_in_range(0, 5, value)


@seeds("fuzz_handshake")
def _handshake() -> Seeds:
    from wacrypto.transport.messages import ClientPayload

    hs = cases("noise", "NoiseHandshake")[0]
    mitm = load_harness("fuzz_handshake_mitm")
    bodies = [(0, "client-stream", bytes.fromhex(hs["client_stream"])),
              (1, "client-hello", bytes.fromhex(hs["client_hello"])),
              (2, "server-hello", bytes.fromhex(hs["server_hello"])),
              (3, "client-hello", bytes.fromhex(hs["client_hello"])),
              (3, "server-hello", bytes.fromhex(hs["server_hello"])),
              (3, "client-finish", bytes.fromhex(hs["client_finish"])),
              (4, "cert-chain", mitm.GENUINE_BYTES),
              (5, "client-payload", ClientPayload((2, 3, 4), "fuzz", "15551234567", "s.whatsapp.net", 1).to_bytes()),
              (5, "client-payload-stripe", ClientPayload((2, 3, 4), "fuzz", "15551234567", "s.whatsapp.net", 0,
                                                         3, 4).to_bytes())]
    bodies += [(4, f"bad-chain-{i}", c) for i, c in enumerate(mitm.BAD_CHAINS)]
    for mode, name, body in bodies:
        w = FdpWriter()
        w.int_in_range(0, 5, mode)
        w.rest(body)
        yield f"mode{mode}-{name}", w


def _genuine_client_messages() -> tuple[bytes, bytes]:
    """A ClientHello and ClientFinish the mitm harness's server accepts (its fixed keys and ephemerals)."""
    h = load_harness("fuzz_handshake_mitm")
    from wacrypto.transport.framing import DEFAULT_HEADER, make_intro
    from wacrypto.transport.framing import encode_frame
    from wacrypto.transport.messages import HandshakeKind, decode_handshake, encode_handshake
    from wacrypto.transport.noise import HandshakeState, Role

    server = h.NoiseConnection(h.SERVER_SETTINGS, ephemeral=h.SERVER_E)
    hs = HandshakeState(Role.INITIATOR, h.CLIENT_STATIC, DEFAULT_HEADER, e=h.CLIENT_E)
    hello = encode_handshake(HandshakeKind.CLIENT_HELLO, hs.write_message())
    h._feed(server, make_intro(DEFAULT_HEADER) + encode_frame(hello))
    (frame,) = h._frames(server.data_to_send())
    hs.read_message(decode_handshake(HandshakeKind.SERVER_HELLO, frame))
    finish = encode_handshake(HandshakeKind.CLIENT_FINISH, hs.write_message(h.CLIENT_PAYLOAD.to_bytes()))
    return hello, finish


@seeds("fuzz_handshake_mitm")
def _mitm() -> Seeds:
    h = load_harness("fuzz_handshake_mitm")
    hello, finish = _genuine_client_messages()
    tampered = finish[:-1] + bytes((finish[-1] ^ 1,))  # a genuine finish would complete: the harness forbids that here
    w = FdpWriter()  # responder, raw frames: the genuine ClientHello, then a ClientFinish with one bit off
    w.int_in_range(0, 3, 0)
    w.int_in_range(0, 3, 2)
    for body in (hello, tampered):
        w.boolean(True)
        w.int_in_range(0, 200, len(body))
        w.bytes_(len(body), body)
    yield "responder-raw-genuine-hello", w
    for claimed in (True, False):  # responder against a real initiator: the genuine handshake
        w = FdpWriter()
        w.int_in_range(0, 3, 1)
        w.boolean(claimed)
        w.int_in_range(0, 3, 1)
        w.boolean(True)
        w.boolean(False)
        yield f"responder-peer-{'genuine' if claimed else 'attacker'}-static", w
    choices: list[tuple[str, list[int]]] = [("genuine-chain", [0])] + [(f"bad-chain-{i}", [1, i]) for i in range(len(h.BAD_CHAINS))]
    for name, which in choices:  # initiator against a real responder with the genuine or a flawed chain
        w = FdpWriter()
        w.int_in_range(0, 3, 2)
        w.int_in_range(0, 3, 1)
        w.int_in_range(0, 2, 1)
        w.boolean(True)
        w.int_in_range(0, 5, which[0])
        if which[0] == 1:
            w.int_in_range(0, len(h.BAD_CHAINS) - 1, which[1])
        w.boolean(False)
        yield f"initiator-{name}", w
    w = FdpWriter()
    w.int_in_range(0, 3, 2)
    w.int_in_range(0, 3, 1)
    w.int_in_range(0, 2, 1)
    w.boolean(True)
    w.int_in_range(0, 5, 3)  # the chain as raw bytes: the genuine ones
    w.int_in_range(0, 400, len(h.GENUINE_BYTES))
    w.bytes_(len(h.GENUINE_BYTES), h.GENUINE_BYTES)
    w.boolean(False)
    yield "initiator-raw-genuine-chain", w


@seeds("fuzz_media_decrypt")
def _media() -> Seeds:
    from wacrypto.media.crypto import MediaType

    types = [m.value for m in MediaType]
    for t in cases("media", "MediaDecrypt"):
        if len(bytes.fromhex(t["blob"])) > 4096:
            continue
        w = FdpWriter()
        w.int_in_range(0, 2, 0)
        w.int_in_range(0, len(types) - 1, types.index(t["media_type"]))
        w.int_in_range(1, 80, 1 + t["tcId"] % 80)
        w.boolean(False)
        w.bytes_(32, bytes.fromhex(t["media_key"]))
        w.boolean(True)
        w.bytes_(32, bytes.fromhex(t["file_sha256"]))
        w.boolean(True)
        w.bytes_(32, bytes.fromhex(t["file_enc_sha256"]))
        w.rest(bytes.fromhex(t["blob"]))
        yield f"vector-{t['tcId']}-{t['media_type']}", w
    for mode in (1, 2):  # a genuine blob of a fuzzed plaintext, unedited
        for i, plain in enumerate((b"", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", bytes(range(256)) * 2)):
            w = FdpWriter()
            w.int_in_range(0, 2, mode)
            w.int_in_range(0, len(types) - 1, i % len(types))
            w.int_in_range(1, 80, 16 + i)
            w.int_in_range(0, 4, 0)
            w.int_in_range(0, 1 << 16, 0)
            w.int_in_range(0, 7, 0)
            w.int_in_range(1, 40, 1)
            w.bytes_(1, b"\x00")
            w.rest(plain)
            yield f"mode{mode}-plain{i}", w


@seeds("fuzz_adv")
def _adv() -> Seeds:
    h = load_harness("fuzz_adv")
    for which, seed in enumerate(h.SEEDS):
        w = FdpWriter()
        w.int_in_range(0, 2, which)
        w.int_in_range(0, 3, 0)
        w.int_in_range(0, len(seed), len(seed))
        w.rest(b"")
        yield f"genuine-{which}", w


@seeds("fuzz_binary")
def _binary() -> Seeds:
    from wacrypto.wire.binary import Node, encode_node

    stanzas = [(f"vector-{t['tcId']}", bytes.fromhex(t["stanza"])) for kind in ("StanzaEncode", "StanzaDecode")
               for t in cases("binary", kind)]
    for name, t, body in signal_messages():
        kind = {3: "pkmsg", 2: "msg", 7: "skmsg"}.get(t)
        if kind:
            node = Node("message", {"id": "3EB0" + body[:4].hex().upper(), "from": "15551234567:2@s.whatsapp.net",
                                    "t": "1700000000", "type": "text"}, (Node("enc", {"v": "2", "type": kind}, body),))
            stanzas.append((f"message-{name}", encode_node(node)))
    for name, raw in stanzas:
        w = FdpWriter()
        w.int_in_range(0, 2, 0)
        w.rest(raw)
        yield name, w


@seeds("fuzz_bundle")
def _bundle() -> Seeds:
    bundles = [b for t in vectors()["x3dh"]["testGroups"] for c in t["tests"] for b in [c.get("bundle")] if isinstance(b, dict)]
    seen: set[str] = set()
    for i, b in enumerate(bundles):
        text = json.dumps(b, separators=(",", ":"), sort_keys=True)
        if text in seen or len(text) > 512:
            continue
        seen.add(text)
        w = FdpWriter()
        w.int_in_range(0, 2, 0)
        w.ascii(512, text, last=True)
        yield f"x3dh-bundle-{i}", w


@seeds("fuzz_stanzas")
def _stanzas() -> Seeds:
    h = load_harness("fuzz_stanzas")
    for i in range(len(h.SEEDS)):
        w = FdpWriter()
        w.int_in_range(0, len(h.SEEDS) - 1, i)
        w.int_in_range(0, 4, 0)
        w.rest(b"")
        yield f"genuine-{i}", w


@seeds("fuzz_differential")
def _differential() -> Seeds:
    targets = traffic().targets
    n = len(targets) - 1
    for i, t in enumerate(targets):
        slug = t.name.split(",")[0].split(" ")[0]
        for reauth in (0, 1):
            w = FdpWriter()
            w.int_in_range(0, n, i)
            w.int_in_range(0, 4, 0)
            w.int_in_range(0, 2, reauth)
            yield f"{i:02d}-{slug}-genuine{'-remac' if reauth else ''}", w
        if t.kind != "skdm":  # a new plaintext under the sender's keys: both must decrypt it alike
            w = FdpWriter()
            w.int_in_range(0, n, i)
            w.int_in_range(0, 4, 0)
            w.int_in_range(0, 2, 2)
            w.int_in_range(0, 2, 0)
            w.int_in_range(0, 48, 5)
            w.bytes_(5, b"fresh")
            yield f"{i:02d}-{slug}-reencrypted", w
        if t.kind in ("signal", "prekey"):  # wrapped into / unwrapped from a PreKey message; the version byte 0x34
            for op, extra in ((8, []), (6, [0x34])):
                w = FdpWriter()
                w.int_in_range(0, n, i)
                w.int_in_range(0, 4, 1)
                w.int_in_range(0, 11, op)
                for v in extra:
                    w.int_in_range(0, 255, v)
                w.int_in_range(0, 2, 1)
                yield f"{i:02d}-{slug}-op{op}", w


@seeds("fuzz_message")
def _message() -> Seeds:
    from wacrypto.testing.rng import SeededRng
    from wacrypto.whatsapp.message import Content, ImageRef, SenderKeyDistribution, encode

    t = traffic()
    contents = [Content(text="hello"), Content(text="s\u00e9nt \u2713", destination="15551234567@s.whatsapp.net", phash="2:abcdefgh"),
                Content(image=ImageRef("https://mmg.example/d/f/A", "/v/t62/A", bytes(range(32)), b"\x02" * 32,
                                       b"\x03" * 32, 4096, caption="a picture")),
                Content(distribution=SenderKeyDistribution("120363012345678901@g.us", t.skdm), text="to the group")]
    for i, c in enumerate(contents):
        for v in (2, 3):
            w = FdpWriter()
            w.boolean(v == 2)
            w.boolean(False)
            w.rest(encode(c, v=v, rng=SeededRng(b"pad %d" % i)))
            yield f"content{i}-v{v}", w


@seeds("fuzz_media_http")
def _media_http() -> Seeds:
    import base64

    h = load_harness("fuzz_media_http")

    def token(body: bytes) -> bytes:
        return base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=")

    body = bytes(range(32, 72)).replace(b"H", b"h")
    requests = {
        "post": b"POST /mms/image/" + token(body) + b" HTTP/1.1\r\nHost: media\r\nContent-Length: 40\r\n\r\n" + body,
        "get": b"GET /mms/image/" + h.KNOWN_TOKEN + b" HTTP/1.1\r\nHost: media\r\n\r\n",
        "head": b"HEAD /mms/document/" + h.KNOWN_TOKEN + b"?token=" + h.KNOWN_TOKEN + b" HTTP/1.1\r\nHost: media\r\n\r\n",
        "range": b"GET /mms/image/" + h.KNOWN_TOKEN + b" HTTP/1.1\r\nHost: media\r\nRange: bytes=10-99\r\n\r\n",
        "chunked": b"POST /mms/app-state/" + token(body) + b" HTTP/1.1\r\nHost: media\r\nTransfer-Encoding: chunked\r\n"
                   b"Expect: 100-continue\r\n\r\n14\r\n" + body[:20] + b"\r\n14\r\n" + body[20:] + b"\r\n0\r\n\r\n",
    }
    requests["keep-alive"] = requests["post"] + requests["get"] + requests["range"]
    for name, wire in requests.items():
        w = FdpWriter()
        w.int_in_range(0, 7, 1)
        w.int_in_range(0, 8192, len(wire))
        w.bytes_(len(wire), wire)
        w.int_in_range(0, 16, 0)
        yield f"raw-{name}", w
    for spec in ("bytes=0-99", "bytes=10-", "bytes=-5", "bytes=0-0,5-9"):
        w = FdpWriter()
        w.int_in_range(0, 7, 0)
        w.int_in_range(0, 1 << 20, 1000)
        w.boolean(True)
        w.int_in_range(0, 60, len(spec))
        w.ascii(len(spec), spec)
        yield f"range-{spec.replace('=', '-').replace(',', '_')}", w


# =========================================================================== dictionaries
def _tags(*fields: tuple[int, int]) -> list[tuple[str, bytes]]:
    return [(f"f{num}w{wt}", bytes(((num << 3) | wt,))) for num, wt in fields]


SIGNAL_DICT = [
    ("v33", b"\x33"), ("v34", b"\x34"), ("v43", b"\x43"), ("v23", b"\x23"),
    ("djb_key_f1", b"\x0a\x21\x05"), ("djb_key_f2", b"\x12\x21\x05"), ("djb_key_f3", b"\x1a\x21\x05"),
    ("djb_key_f4", b"\x22\x21\x05"), ("chain_key_f3", b"\x1a\x20"), ("ciphertext_f4", b"\x22\x10"),
    ("ciphertext_f3", b"\x1a\x10"), ("inner_f4", b"\x22\x42\x33"),
    ("uint32_max", b"\xff\xff\xff\xff\x0f"), ("uint32_over", b"\x80\x80\x80\x80\x10"), ("prekey_max", b"\xff\xff\xff\x07"),
    ("jump_2001", b"\xd1\x0f"), ("jump_2000", b"\xd0\x0f"), ("overlong_zero", b"\x80\x00"),
    ("group_start", b"\x0b"), ("group_end", b"\x0c"), ("pad16", b"\x10" * 16), ("pad1", b"\x01"),
] + _tags((1, 0), (2, 0), (3, 0), (5, 0), (6, 0), (1, 2), (2, 2), (3, 2), (4, 2))


@dictionary("fuzz_wire", "fuzz_senderkey", "fuzz_differential", "fuzz_envelope")
def _signal_dict() -> list[tuple[str, bytes]]:
    out = list(SIGNAL_DICT)
    out += [("envelope_recipient", b"\x0a\x20"), ("envelope_sender", b"\x12\x20"), ("envelope_type3", b"\x18\x03"),
            ("envelope_type2", b"\x18\x02")]
    return out


@dictionary("fuzz_records")
def _records_dict() -> list[tuple[str, bytes]]:
    return list(SIGNAL_DICT) + [
        ("current_session", b"\x0a"), ("previous_session", b"\x12"), ("session_version3", b"\x08\x03"),
        ("local_identity", b"\x12\x21\x05"), ("remote_identity", b"\x1a\x21\x05"), ("root_key", b"\x22\x20"),
        ("sender_chain", b"\x32"), ("receiver_chain", b"\x3a"), ("pending_prekey", b"\x4a"), ("alice_base_key", b"\x6a\x21\x05"),
        ("chain_private", b"\x12\x20"), ("chain_key", b"\x1a\x24\x08"), ("message_key", b"\x22"), ("mk_seed", b"\x2a\x20"),
        ("mk_iv", b"\x22\x10"), ("timestamp_fixed64", b"\x29"), ("signature64", b"\x22\x40"),
    ]


def _binary_tokens() -> list[tuple[str, bytes]]:
    from wacrypto.wire import binary as wb

    out = [("list_empty", bytes((wb.LIST_EMPTY,))), ("list8", bytes((wb.LIST_8,))), ("list16", bytes((wb.LIST_16,))),
           ("jid_pair", bytes((wb.JID_PAIR,))), ("ad_jid", bytes((wb.AD_JID,))), ("hex8", bytes((wb.HEX_8,))),
           ("binary8", bytes((wb.BINARY_8,))), ("binary20", bytes((wb.BINARY_20,))), ("binary32", bytes((wb.BINARY_32,))),
           ("nibble8", bytes((wb.NIBBLE_8,))), ("flags_zlib", bytes((wb.FLAG_COMPRESSED,))), ("zlib", b"\x78\x9c")]
    out += [(f"dictionary{d}", bytes((wb.DICTIONARY_0 + d,))) for d in range(4)]
    common = ("message", "iq", "receipt", "notification", "ack", "enc", "to", "from", "id", "type", "t", "v",
              "participants", "pkmsg", "msg", "skmsg", "s.whatsapp.net", "lid", "g.us", "xmlns", "encrypt", "devices")
    out += [(f"token_{s.replace('.', '_')}", wb._TOKENS[s]) for s in common if s in wb._TOKENS]
    return out


@dictionary("fuzz_binary", "fuzz_stanzas")
def _binary_dict() -> list[tuple[str, bytes]]:
    return _binary_tokens() + [("str_lid", b"lid"), ("str_device_jid", b":2@s.whatsapp.net"), ("count", b"count"),
                               ("registration4", b"\x00\x00\x00\x07")]


@dictionary("fuzz_framing", "fuzz_framing_conn")
def _framing_dict() -> list[tuple[str, bytes]]:
    from wacrypto.transport.framing import DEFAULT_HEADER, ROUTING_MAGIC

    return [("intro_web", DEFAULT_HEADER), ("intro_native", b"WA\x04\x00"), ("wa", b"WA"), ("routing", ROUTING_MAGIC),
            ("len0", b"\x00\x00\x00"), ("len16", b"\x00\x00\x10"), ("len_max", b"\xff\xff\xff"), ("len_64k", b"\x01\x00\x00"),
            ("tag16", b"\x00" * 16)] + _binary_tokens()[:10]


@dictionary("fuzz_handshake", "fuzz_handshake_mitm")
def _handshake_dict() -> list[tuple[str, bytes]]:
    from wacrypto.transport.framing import DEFAULT_HEADER

    return [("intro_web", DEFAULT_HEADER), ("client_hello", b"\x12"), ("server_hello", b"\x1a"), ("client_finish", b"\x22"),
            ("ephemeral32", b"\x0a\x20"), ("static48", b"\x12\x30"), ("finish_static48", b"\x0a\x30"),
            ("leaf", b"\x0a"), ("intermediate", b"\x12"), ("details", b"\x0a"), ("signature64", b"\x12\x40"),
            ("serial1", b"\x08\x01"), ("serial2", b"\x08\x02"), ("issuer0", b"\x10\x00"), ("issuer1", b"\x10\x01"),
            ("key32", b"\x1a\x20"), ("not_before", b"\x20"), ("not_after", b"\x28"), ("server_user", b"s.whatsapp.net"),
            ("server_lid", b"lid"), ("uint32_max", b"\xff\xff\xff\xff\x0f"), ("uint64_big", b"\xff\xff\xff\xff\xff\xff\xff\xff\x7f")]


@dictionary("fuzz_media_decrypt")
def _media_dict() -> list[tuple[str, bytes]]:
    return [("pad_full", b"\x10" * 16), ("pad1", b"\x01"), ("pad2", b"\x02\x02"), ("zero_block", bytes(16)),
            ("mac10", bytes(10)), ("jpeg", b"\xff\xd8\xff\xe0"), ("png", b"\x89PNG\r\n\x1a\n"), ("mp4", b"ftypisom")]


@dictionary("fuzz_adv")
def _adv_dict() -> list[tuple[str, bytes]]:
    from wacrypto.whatsapp import adv

    return [("account_prefix", adv.ACCOUNT_PREFIX), ("device_prefix", adv.DEVICE_PREFIX), ("key_index_prefix", adv.KEY_INDEX_PREFIX),
            ("hosted_account", adv.HOSTED_ACCOUNT_PREFIX), ("hosted_device", adv.HOSTED_DEVICE_PREFIX),
            ("details", b"\x0a"), ("key32_f2", b"\x12\x20"), ("sig64_f3", b"\x1a\x40"), ("sig64_f4", b"\x22\x40"),
            ("sig64_f2", b"\x12\x40"), ("key32_f3", b"\x1a\x20"), ("hmac32", b"\x12\x20"), ("hosted", b"\x18\x01"),
            ("raw_id", b"\x08"), ("timestamp", b"\x10"), ("key_index", b"\x18"), ("valid_indexes_packed", b"\x22"),
            ("account_type_hosted", b"\x28\x01")]


@dictionary("fuzz_message")
def _message_dict() -> list[tuple[str, bytes]]:
    return [("conversation", b"\x0a"), ("skd", b"\x12"), ("image", b"\x1a"), ("device_sent", b"\xfa\x01"),
            ("group_jid", b"@g.us"), ("user_jid", b"@s.whatsapp.net"), ("media_key32", b"\x42\x20"), ("sha32", b"\x22\x20"),
            ("enc_sha32", b"\x4a\x20"), ("direct_path", b"\x5a"), ("file_length", b"\x28"), ("pad1", b"\x01"),
            ("pad16", b"\x10" * 16), ("utf8_bad", b"\xc3\x28"), ("utf8_surrogate", b"\xed\xa0\x80"), ("jpeg", b"image/jpeg")]


@dictionary("fuzz_media_http")
def _http_dict() -> list[tuple[str, bytes]]:
    return [("get", b"GET "), ("head", b"HEAD "), ("post", b"POST "), ("http11", b" HTTP/1.1\r\n"), ("crlf", b"\r\n"),
            ("end_head", b"\r\n\r\n"), ("host", b"Host: media\r\n"), ("mms_image", b"/mms/image/"), ("mms_doc", b"/mms/document/"),
            ("mms_state", b"/mms/app-state/"), ("query_token", b"?token="), ("auth", b"&auth="),
            ("content_length", b"Content-Length: "), ("chunked", b"Transfer-Encoding: chunked\r\n"),
            ("expect", b"Expect: 100-continue\r\n"), ("close", b"Connection: close\r\n"), ("range", b"Range: bytes="),
            ("last_chunk", b"0\r\n\r\n"), ("huge", b"99999999999999999999")]


@dictionary("fuzz_bundle")
def _bundle_dict() -> list[tuple[str, bytes]]:
    words = ("registration_id", "device_id", "identity_key", "signed_prekey_id", "signed_prekey",
             "signed_prekey_signature", "prekey_id", "prekey")
    return ([(w, f'"{w}":'.encode()) for w in words] + [("djb", b'"05'), ("null", b"null"), ("true", b"true"),
            ("uint32_max", b"4294967295"), ("prekey_max", b"16777215"), ("minus", b"-1"), ("brace", b"{}"), ("hex32", b"11" * 32)])


def _escape(b: bytes) -> str:
    return "".join(chr(c) if 0x20 <= c < 0x7F and c not in (0x22, 0x5C) else f"\\x{c:02x}" for c in b)


def dict_text(name: str) -> str:
    entries = DICTS[name]()
    head = (f"# libFuzzer dictionary for fuzz/{name}.py: protocol tokens, field tags and magic bytes.\n"
            "# Written by fuzz/make_corpora.py --dicts (edit the script, not this file).\n")
    seen: set[bytes] = set()
    lines = []
    for key, value in entries:
        if value in seen or not value:
            continue
        seen.add(value)
        lines.append(f'{key}="{_escape(value)}"')
    return head + "\n".join(lines) + "\n"


# =========================================================================== writing and checking
def generate(name: str) -> list[tuple[str, bytes, FdpWriter | None]]:
    out, names = [], set()
    for label, seed in SEEDS[name]():
        data = seed.data() if isinstance(seed, FdpWriter) else seed
        assert label not in names, f"{name}: two seeds named {label}"
        names.add(label)
        out.append((label, data, seed if isinstance(seed, FdpWriter) else None))
    return out


def write(out: Path, name: str, seeds_: list[tuple[str, bytes, FdpWriter | None]]) -> None:
    d = out / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    for label, data, _ in seeds_:
        (d / label).write_bytes(data)


def verify(name: str, seeds_: list[tuple[str, bytes, FdpWriter | None]]) -> list[str]:
    """Problems with ``name``'s seeds: a value the provider or the harness reads differently, a crash."""
    problems = []
    h = load_harness(name)
    for label, data, w in seeds_:
        if w is not None:
            got = replay(data, w.ops)
            if got != w.ops:
                problems.append(f"{name}/{label}: atheris reads {got} for {w.ops}")
                continue
        try:
            with recording() as providers:
                h.TestOneInput(data)
        except Exception as exc:  # noqa: BLE001 - any failure of a valid seed is a problem
            problems.append(f"{name}/{label}: the harness fails on it: {type(exc).__name__}: {exc}"[:400])
            continue
        if w is not None:
            calls = normalize(providers[0].calls, w.ops) if providers else []
            if calls[: len(w.ops)] != w.ops:
                problems.append(f"{name}/{label}: the harness read {calls[:len(w.ops)]}, the seed was written as {w.ops}"[:600])
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=FUZZ_DIR / "corpus", help="corpus folder (default fuzz/corpus)")
    ap.add_argument("--verify", action="store_true", help="check every seed against its harness")
    ap.add_argument("--dicts", action="store_true", help="rewrite fuzz/dict/*.dict")
    ap.add_argument("--check-dicts", action="store_true", help="exit 1 if fuzz/dict/ differs from what --dicts writes")
    ap.add_argument("harness", nargs="*", help="only these harnesses (default: all)")
    args = ap.parse_args(argv)
    names = args.harness or [p.stem for p in harness_paths()]
    missing = [n for n in names if n not in SEEDS or n not in DICTS]
    if missing:  # a new harness runs without seeds until someone adds them (tests/fuzz_regressions says so)
        print(f"make_corpora: warning: no seeds or dictionary for {missing}: add them to fuzz/make_corpora.py", file=sys.stderr)
        names = [n for n in names if n not in missing]
    if args.dicts or args.check_dicts:
        stale = []
        for n in names:
            p = FUZZ_DIR / "dict" / f"{n}.dict"
            text = dict_text(n)
            if args.dicts:
                p.parent.mkdir(exist_ok=True)
                p.write_text(text)
            elif not p.exists() or p.read_text() != text:
                stale.append(str(p.relative_to(FUZZ_DIR.parent)))
        if stale:
            print(f"make_corpora: stale dictionaries (run fuzz/make_corpora.py --dicts): {stale}", file=sys.stderr)
            return 1
        if args.check_dicts:
            return 0
    problems = []
    total = 0
    for n in names:
        got = generate(n)
        total += len(got)
        write(args.out, n, got)
        if args.verify:
            problems += verify(n, got)
    print(f"make_corpora: {total} seeds for {len(names)} harnesses in {args.out}", file=sys.stderr)
    for problem in problems:
        print(f"make_corpora: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
