"""atheris harness: differential fuzzing of Signal decryption, wacrypto against a peer implementation.

A fixed, deterministic conversation (alice -> bob: PreKeySignalMessages, SignalMessages on two
ratchet chains, a second session that archives the first, a SenderKeyDistributionMessage and
SenderKeyMessages) gives bob's receiving states and the genuine messages (``TARGETS``). Each input
picks a target and mutates its message: bit flips, byte edits, truncation, insertion, splices of
other genuine messages, protobuf field edits (drop, duplicate, new values, other messages' values,
non-canonical varints, unknown fields, reordering, wire types), the version byte, the message type,
wrapping a SignalMessage into a PreKeySignalMessage and back; then, if the input says so, the
harness re-authenticates the result as the sender could (a new MAC, a new sender-key signature, a
ciphertext re-encrypted under the keys its header names), so the receivers' parsers and checks are
reached behind the MAC and the signature.

The same receiving state is loaded into wacrypto (``wacrypto peer``'s handler, in this process,
instrumented) and into the peer (a JSON-lines peer subprocess, ``docs/peer-protocol.md``) for every
input: ``new_identity`` with bob's fixed keys, then ``import_session`` of bob's exported record or
``group_process`` / ``group_decrypt`` of genuine group traffic. Both decrypt the mutated message.

Invariant: both accept it with the same plaintext, or both reject it. Anything else is a finding,
unless it is one of the documented divergences in ``ALLOW`` (each with its reason), which are
counted and otherwise ignored. A finding raises ``Divergence`` with both answers and the message;
libFuzzer writes the input (crash-<sha1>) and the harness writes a description beside it
(divergence-<sha1>.json, in -artifact_prefix). wacrypto must also keep the fuzz invariant (only
``PeerError`` or ``MissingStateError`` from untrusted bytes) and leave its store unchanged on a
rejection.

Peer: ``WACRYPTO_FUZZ_PEER`` (a command line; default python-axolotl 0.2.3 through its driver,
``.venv-axolotl/bin/python tests/interop/drivers/axolotl_peer.py``; ``make interop-setup``
builds that venv). A peer without the ``group`` capability gets the pairwise targets only.
Run: python fuzz/fuzz_differential.py -runs=2000 -dict=fuzz/dict/fuzz_differential.dict fuzz/corpus/fuzz_differential
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import os
import select
import shlex
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import atheris

# Import the dependencies uninstrumented, then instrument the Signal code under test.
import google.protobuf.message  # noqa: F401
import trio
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the checkout, not a stale install

with atheris.instrument_imports(include=["wacrypto.wire", "wacrypto.signal", "wacrypto.session", "wacrypto.primitives"]):
    from wacrypto.errors import MissingStateError, PeerError
    from wacrypto.primitives.aes import cbc_encrypt
    from wacrypto.primitives.kdf import chain_step, hmac_sha256
    from wacrypto.primitives.xeddsa import xeddsa_sign, xeddsa_verify
    from wacrypto.signal import ratchet
    from wacrypto.signal import senderkeys as sk
    from wacrypto.signal.records import SessionRecord
    from wacrypto.store.memory import MemoryKeyStore
    from wacrypto.testing.rng import SeededRng
    from wacrypto.tools.peer import Peer, _load_extensions
    from wacrypto.tools.vectors.parties import Party
    from wacrypto.wire.messages import encode_prekey_message

GROUP = "fuzz-group"
PEER_TIMEOUT = 20.0  # seconds for one input's requests; a peer that takes longer hangs: a finding
FORGE_STEPS = 3000  # chain steps the harness derives to re-authenticate a message with another counter
PEER_SAFE_JUMP = 2500  # a re-signed group message further ahead is not sent to python-axolotl (see ALLOW)
DEFAULT_PEER = [str(REPO / ".venv-axolotl" / "bin" / "python"), str(REPO / "tests" / "interop" / "drivers" / "axolotl_peer.py")]
PEERS = {  # implementation name (its ``info``) -> command line: for replaying a case recorded with that peer
    "python-axolotl": DEFAULT_PEER,
    "libsignal-client (node)": ["node", str(REPO / "tests" / "interop" / "drivers" / "libsignal_peer.js")],
}


# =========================================================================== protobuf, leniently
@dataclass
class PbField:
    """One protobuf field as it is on the wire: number, wire type, value and its exact bytes."""

    num: int
    wt: int
    value: int | bytes
    raw: bytes


def read_varint(data: bytes, i: int) -> tuple[int, int] | None:
    value = shift = 0
    for n in range(10):
        if i + n >= len(data):
            return None
        b = data[i + n]
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i + n + 1
    return None


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def pb_fields(data: bytes, *, groups: bool = False) -> list[PbField] | None:
    """The fields of ``data`` in order, or None if it is not a protobuf.

    Groups (wire types 3 and 4) make it "not a protobuf", unless ``groups``: then they are read as
    the pure-Python protobuf runtime reads them (a group ends at the next end-group tag, whatever its
    field number).
    """
    out: list[PbField] = []
    i = 0
    while i < len(data):
        tag = read_varint(data, i)
        if tag is None:
            return None
        t, j = tag
        num, wt = t >> 3, t & 7
        value: int | bytes
        if wt == 3 and groups:
            end = _skip_group(data, j)
            if end is None:
                return None
            value = data[j:end]
        elif wt == 0:
            v = read_varint(data, j)
            if v is None:
                return None
            value, end = v
        elif wt in (1, 5):
            end = j + (8 if wt == 1 else 4)
            if end > len(data):
                return None
            value = data[j:end]
        elif wt == 2:
            ln = read_varint(data, j)
            if ln is None or ln[1] + ln[0] > len(data):
                return None
            value, end = data[ln[1] : ln[1] + ln[0]], ln[1] + ln[0]
        else:
            return None
        if num == 0:
            return None
        out.append(PbField(num, wt, value, data[i:end]))
        i = end
    return out


def _skip_group(data: bytes, i: int) -> int | None:
    """The end of the group that starts at ``i`` (after its end-group tag), the pure-Python way."""
    while i < len(data):
        tag = read_varint(data, i)
        if tag is None:
            return None
        t, i = tag
        wt = t & 7
        if wt == 4:
            return i
        if wt == 3:
            end = _skip_group(data, i)
        elif wt == 0:
            v = read_varint(data, i)
            end = None if v is None else v[1]
        elif wt in (1, 5):
            end = i + (8 if wt == 1 else 4)
        elif wt == 2:
            ln = read_varint(data, i)
            end = None if ln is None else ln[1] + ln[0]
        else:
            return None
        if end is None or end > len(data):
            return None
        i = end
    return None


def pb_field(num: int, wt: int, value: int | bytes) -> PbField:
    if wt == 0:
        assert isinstance(value, int)
        payload = varint(value)
    elif wt == 2:
        assert isinstance(value, bytes)
        payload = varint(len(value)) + value
    else:
        assert isinstance(value, bytes)
        payload = value
    return PbField(num, wt, value, varint(num << 3 | wt) + payload)


def last(fields: Sequence[PbField], num: int, wt: int) -> PbField | None:
    """The field a protobuf parser keeps for ``num`` (the last one of that wire type)."""
    for f in reversed(fields):
        if f.num == num and f.wt == wt:
            return f
    return None


def join(fields: Sequence[PbField]) -> bytes:
    return b"".join(f.raw for f in fields)


# =========================================================================== the conversation
@dataclass
class Target:
    """A genuine message and the receiving state it is decrypted in."""

    name: str
    state: str
    kind: str  # "signal" (type 2), "prekey" (type 3), "group" (SenderKeyMessage), "skdm"
    body: bytes
    plaintext: bytes | None  # None: the genuine message is rejected too (a duplicate)
    group_iteration: int = 0  # the receiver chain's iteration in this state (group targets)


@dataclass
class Traffic:
    alice_identity: bytes
    bob_identity: bytes
    states: dict[str, list[tuple[str, dict[str, Any]]]]
    targets: list[Target]
    genuine: list[bytes]  # every genuine message (for splices and borrowed field values)
    chains: dict[bytes, tuple[int, bytes]]  # alice's sending ratchet key -> (first index seen, chain key there)
    group_key_id: int
    group_chain: bytes  # alice's sender chain key at iteration 0
    group_signing_private: bytes
    group_signing_public: bytes
    prekey_outer: bytes  # a genuine PreKeySignalMessage of session 1 (fields for wrapping)
    skdm: bytes
    group_probe: bytes  # the genuine SenderKeyMessage decrypted after an SKDM target


def _request(kind: str, body: bytes, msg_type: int) -> tuple[str, dict[str, Any]]:
    if kind in ("group", "skdm_probe"):
        return "group_decrypt", {"group_id": GROUP, "sender": "alice", "sender_device": 1, "body": body.hex()}
    return "decrypt", {"remote": "alice", "remote_device": 1, "type": msg_type, "body": body.hex()}


async def _conversation() -> Traffic:
    rng = SeededRng(b"wacrypto fuzz_differential traffic 1")
    alice = await Party("alice", rng, registration_id=0x1111).setup()
    bob = await Party("bob", rng, registration_id=0x2222).setup()
    chains: dict[bytes, tuple[int, bytes]] = {}

    async def send(text: bytes) -> bytes:
        rec = SessionRecord.from_bytes(await alice.cipher.export_session(bob.address))
        sc = rec.current.sender_chain
        chains.setdefault(bytes(sc.sender_ratchet_key), (sc.chain_key.index, bytes(sc.chain_key.key)))
        step = await alice.send(bob, text)
        return bytes.fromhex(step["body"])

    def received(body: bytes, t: int) -> dict[str, Any]:
        return {"remote": "alice", "remote_device": 1, "type": t, "body": body.hex()}

    await alice.cipher.process_bundle(bob.address, bob.bundle())
    p0, p1 = await send(b"p0: the first PreKey message"), await send(b"p1: the second, on the same chain")
    await bob.receive(received(p0, 3), alice)
    await alice.receive(await bob.send(alice, b"r0: bob answers"), bob)
    s = [await send(b"s%d: after the DH step %s" % (i, b"." * i)) for i in range(4)]
    for i in (0, 2):
        await bob.receive(received(s[i], 2), alice)
    record_mid = await bob.record(alice)
    await alice.cipher.process_bundle(bob.address, bob.bundle(with_prekey=False))
    q0, q1 = await send(b"q0: a new session, no one-time prekey"), await send(b"q1: its second message")
    await bob.receive(received(q0, 3), alice)
    record_arch = await bob.record(alice)

    own = sk.new_own_record(rng)
    st = own._newest()
    assert st is not None
    key_id, group_chain, signing = st.sender_key_id, bytes(st.sender_chain_key.seed), bytes(st.sender_signing_key.private)
    skdm = sk.create_distribution(own).to_bytes()
    k = [sk.encrypt(own, b"k%d: to the group" % i, rng=rng) for i in range(4)]

    alice_id = alice.identity.public.to_bytes()
    ident = {key: v for key, v in bob.new_identity().items() if key != "identity_public"}
    fresh = [("new_identity", ident)]
    imported = {"remote": "alice", "remote_device": 1, "remote_identity": alice_id.hex()}
    group = fresh + [("group_process", {"group_id": GROUP, "sender": "alice", "sender_device": 1, "distribution": skdm.hex()})]
    states = {
        "fresh": fresh,
        "mid": fresh + [("import_session", {**imported, "record": record_mid})],
        "archived": fresh + [("import_session", {**imported, "record": record_arch})],
        "group": group,
        "group_mid": group + [_request("group", k[0], 7), _request("group", k[2], 7)],
    }
    plain = {p0: b"p0: the first PreKey message", p1: b"p1: the second, on the same chain",
             q0: b"q0: a new session, no one-time prekey", q1: b"q1: its second message"}
    plain.update({s[i]: b"s%d: after the DH step %s" % (i, b"." * i) for i in range(4)})
    plain.update({k[i]: b"k%d: to the group" % i for i in range(4)})
    targets = [
        Target("p0 to a fresh bob", "fresh", "prekey", p0, plain[p0]),
        Target("p1 to a fresh bob (skips p0)", "fresh", "prekey", p1, plain[p1]),
        Target("p1 late, to the session p0 made", "mid", "prekey", p1, plain[p1]),
        Target("s1, a skipped message key", "mid", "signal", s[1], plain[s[1]]),
        Target("s3, the next on the chain", "mid", "signal", s[3], plain[s[3]]),
        Target("s2 again (a duplicate)", "mid", "signal", s[2], None),
        Target("q0, a second session over the first", "mid", "prekey", q0, plain[q0]),
        Target("s3 in the archived session", "archived", "signal", s[3], plain[s[3]]),
        Target("q1 in the new session", "archived", "prekey", q1, plain[q1]),
        Target("k0, the first group message", "group", "group", k[0], plain[k[0]]),
        Target("k1, a skipped group key", "group_mid", "group", k[1], plain[k[1]], group_iteration=3),
        Target("k3, the next group message", "group_mid", "group", k[3], plain[k[3]], group_iteration=3),
        Target("the SKDM, then k1", "fresh", "skdm", skdm, plain[k[1]]),
    ]
    return Traffic(alice_id, bob.identity.public.to_bytes(), states, targets, [p0, p1, q0, q1, *s, *k, skdm],
                   chains, key_id, group_chain, signing, bytes(st.sender_signing_key.public), p0, skdm, k[1])


TRAFFIC = trio.run(_conversation)
TARGETS = TRAFFIC.targets


# =========================================================================== keys, as the sender has them
_KEYS: dict[tuple[bytes, int], tuple[bytes, bytes, bytes]] = {}


def signal_keys(ratchet_key: bytes, counter: int) -> tuple[bytes, bytes, bytes] | None:
    """(cipher key, MAC key, IV) of alice's message ``counter`` on the chain of ``ratchet_key``."""
    start = TRAFFIC.chains.get(ratchet_key)
    if start is None or not start[0] <= counter <= start[0] + FORGE_STEPS:
        return None
    got = _KEYS.get((ratchet_key, counter))
    if got is None:
        ck = start[1]
        for _ in range(counter - start[0]):
            ck = chain_step(ck)[1]
        got = _KEYS[(ratchet_key, counter)] = ratchet.message_keys(chain_step(ck)[0])
    return got


@functools.lru_cache(maxsize=4096)
def group_keys(iteration: int) -> tuple[bytes, bytes] | None:
    """(IV, cipher key) of alice's group message ``iteration``."""
    if not 0 <= iteration <= FORGE_STEPS:
        return None
    ck = TRAFFIC.group_chain
    for _ in range(iteration):
        ck = chain_step(ck)[1]
    return sk.group_message_keys(chain_step(ck)[0])


def _raw_cbc(key: bytes, iv: bytes, data: bytes) -> bytes:
    """AES-256-CBC of ``data`` with no padding (zero-filled to a block): ciphertexts whose padding is wrong."""
    data += b"\0" * (-len(data) % 16)
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    out: bytes = enc.update(data) + enc.finalize()
    return out


def _new_ciphertext(fdp: atheris.FuzzedDataProvider, key: bytes, iv: bytes) -> bytes:
    how = fdp.ConsumeIntInRange(0, 2)
    payload = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 48))
    if how == 0:
        return cbc_encrypt(key, iv, payload)  # valid padding: the receivers must agree on the plaintext
    if how == 1:
        return _raw_cbc(key, iv, payload)  # whole blocks, padding as it falls
    return _raw_cbc(key, iv, payload)[: max(len(payload), 1)]  # not whole blocks


def _resign_signal(fdp: atheris.FuzzedDataProvider, body: bytes, reencrypt: bool, fallback: tuple[bytes, bytes, bytes]) -> bytes:
    """A new MAC on a SignalMessage (version || protobuf || mac8) under the keys its header names."""
    if len(body) < 9:
        return body
    head = body[:-8]
    fields = pb_fields(head[1:])
    keys = fallback
    if fields is not None:
        rk, ctr = last(fields, 1, 2), last(fields, 2, 0)
        counter = ctr.value & 0xFFFFFFFF if ctr is not None and isinstance(ctr.value, int) else 0
        if rk is not None and isinstance(rk.value, bytes):
            keys = signal_keys(rk.value, counter) or fallback
        if reencrypt:
            ct = pb_field(4, 2, _new_ciphertext(fdp, keys[0], keys[2]))
            old = last(fields, 4, 2)
            fields = [ct if f is old else f for f in fields] if old is not None else [*fields, ct]
            head = head[:1] + join(fields)
    return head + hmac_sha256(keys[1], TRAFFIC.alice_identity + TRAFFIC.bob_identity + head)[:8]


def _resign_group(fdp: atheris.FuzzedDataProvider, body: bytes, reencrypt: bool, fallback: int) -> bytes:
    """A new signature on a SenderKeyMessage (version || protobuf || sig64) by alice's signing key."""
    if len(body) < 65:
        return body
    head = body[:-64]
    fields = pb_fields(head[1:])
    if fields is not None and reencrypt:
        it = last(fields, 2, 0)
        keys = group_keys(it.value & 0xFFFFFFFF if it is not None and isinstance(it.value, int) else fallback)
        if keys is None:
            keys = group_keys(fallback)
        assert keys is not None
        ct = pb_field(3, 2, _new_ciphertext(fdp, keys[1], keys[0]))
        old = last(fields, 3, 2)
        fields = [ct if f is old else f for f in fields] if old is not None else [*fields, ct]
        head = head[:1] + join(fields)
    random64 = hashlib.sha512(head).digest()  # deterministic: the same input gives the same bytes
    return head + xeddsa_sign(TRAFFIC.group_signing_private, head, random64)


def reauthenticate(fdp: atheris.FuzzedDataProvider, target: Target, body: bytes, msg_type: int) -> bytes:
    """What the sender could have sent: the mutated message with a valid MAC / signature again."""
    mode = fdp.ConsumeIntInRange(0, 2)
    if mode == 0 or target.kind == "skdm":
        return body
    reencrypt = mode == 2
    if target.kind == "group":
        iteration = 0
        genuine = pb_fields(target.body[1:-64])
        if genuine is not None and (g := last(genuine, 2, 0)) is not None and isinstance(g.value, int):
            iteration = g.value
        return _resign_group(fdp, body, reencrypt, iteration)
    fallback = _genuine_keys(target)
    if msg_type != 3:
        return _resign_signal(fdp, body, reencrypt, fallback)
    outer = pb_fields(body[1:]) if body else None
    inner = last(outer, 4, 2) if outer is not None else None
    if outer is None or inner is None or not isinstance(inner.value, bytes):
        return body
    new = pb_field(4, 2, _resign_signal(fdp, inner.value, reencrypt, fallback))
    return body[:1] + join([new if f is inner else f for f in outer])


def _genuine_keys(target: Target) -> tuple[bytes, bytes, bytes]:
    inner = target.body
    if target.kind == "prekey":
        outer = pb_fields(target.body[1:])
        assert outer is not None
        f = last(outer, 4, 2)
        assert f is not None and isinstance(f.value, bytes)
        inner = f.value
    fields = pb_fields(inner[1:-8])
    assert fields is not None
    rk, ctr = last(fields, 1, 2), last(fields, 2, 0)
    assert rk is not None and ctr is not None and isinstance(rk.value, bytes) and isinstance(ctr.value, int)
    keys = signal_keys(rk.value, ctr.value)
    assert keys is not None
    return keys


# =========================================================================== mutations
INTERESTING = (0, 1, 2, 3, 0x7F, 0x80, 2000, 2001, 2999, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x100000000,
               0x100000003, 2**63, 2**64 - 1)


def _pb_region(kind: str, msg_type: int, body: bytes, inner: bool) -> tuple[int, int] | None:
    """(start, end) of the protobuf in ``body``: after the version byte, before the MAC / signature."""
    if kind == "group":
        return (1, len(body) - 64) if len(body) > 65 else None
    if kind == "skdm" or msg_type == 3:
        if not inner:
            return (1, len(body)) if len(body) > 1 else None
        return None
    return (1, len(body) - 8) if len(body) > 9 else None


def _edit_fields(fdp: atheris.FuzzedDataProvider, pb: bytes) -> bytes:
    fields = pb_fields(pb)
    if fields is None:
        return pb
    action = fdp.ConsumeIntInRange(0, 8)
    if not fields or action == 6:  # add a field (a known number with another type, or an unknown one)
        num, wt = fdp.ConsumeIntInRange(1, 40), (0, 1, 2, 5)[fdp.ConsumeIntInRange(0, 3)]
        value: int | bytes = (fdp.ConsumeIntInRange(0, 2**64 - 1) if wt == 0 else
                              fdp.ConsumeBytes(8 if wt == 1 else 4 if wt == 5 else fdp.ConsumeIntInRange(0, 40)))
        if wt in (1, 5):
            value = bytes(value).ljust(8 if wt == 1 else 4, b"\0")
        fields.insert(fdp.ConsumeIntInRange(0, len(fields)), pb_field(num, wt, value))
        return join(fields)
    i = fdp.ConsumeIntInRange(0, len(fields) - 1)
    f = fields[i]
    if action == 0:  # drop
        del fields[i]
    elif action == 1:  # duplicate (the copy, or a genuine value of the same field, later)
        fields.insert(fdp.ConsumeIntInRange(i, len(fields)), f)
    elif action == 2:  # a new varint value
        pick = fdp.ConsumeIntInRange(0, len(INTERESTING) + 2)
        if pick < len(INTERESTING):
            v = INTERESTING[pick]
        elif pick == len(INTERESTING):
            v = (f.value if isinstance(f.value, int) else 0) + fdp.ConsumeIntInRange(-3, 3)
        else:
            v = fdp.ConsumeIntInRange(0, 2**64 - 1)
        fields[i] = pb_field(f.num, 0, max(v, 0))
    elif action == 3 and isinstance(f.value, bytes):  # a new byte value
        how = fdp.ConsumeIntInRange(0, 4)
        old = f.value
        if how == 0:
            new = old + fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 8))
        elif how == 1:
            new = old[: fdp.ConsumeIntInRange(0, max(len(old) - 1, 0))]
        elif how == 2:  # the same field of another genuine message
            new = _borrow(fdp, f.num) or old
        elif how == 3 and old:
            b = bytearray(old)
            b[fdp.ConsumeIntInRange(0, len(b) - 1)] ^= 1 << fdp.ConsumeIntInRange(0, 7)
            new = bytes(b)
        else:
            new = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 48))
        fields[i] = pb_field(f.num, 2, new)
    elif action == 4:  # the same bytes under another wire type
        wt = fdp.ConsumeIntInRange(0, 7)
        t = read_varint(f.raw, 0)
        assert t is not None
        fields[i] = PbField(f.num, wt, f.value, varint(f.num << 3 | wt) + f.raw[t[1] :])
    elif action == 5:  # non-canonical varints: tag, length or value padded with continuation bytes
        pad = fdp.ConsumeIntInRange(1, 4)
        t = read_varint(f.raw, 0)
        assert t is not None
        tag = f.raw[: t[1]]
        rest = f.raw[t[1] :]
        if fdp.ConsumeBool():
            tag = bytes(tag[:-1]) + bytes((tag[-1] | 0x80,)) + b"\x80" * (pad - 1) + b"\x00"
        else:
            end = read_varint(rest, 0)
            if end is not None:
                e = end[1]
                rest = bytes(rest[: e - 1]) + bytes((rest[e - 1] | 0x80,)) + b"\x80" * (pad - 1) + b"\x00" + rest[e:]
        fields[i] = PbField(f.num, f.wt, f.value, tag + rest)
    elif action == 7:  # move
        fields.insert(fdp.ConsumeIntInRange(0, len(fields) - 1), fields.pop(i))
    elif action == 8:  # swap two fields' values (e.g. base key and identity key)
        j = fdp.ConsumeIntInRange(0, len(fields) - 1)
        g = fields[j]
        fields[i], fields[j] = pb_field(f.num, g.wt, g.value), pb_field(g.num, f.wt, f.value)
    return join(fields)


def _borrow(fdp: atheris.FuzzedDataProvider, num: int) -> bytes | None:
    other = TRAFFIC.genuine[fdp.ConsumeIntInRange(0, len(TRAFFIC.genuine) - 1)]
    for region in ((1, len(other)), (1, len(other) - 8), (1, len(other) - 64)):
        fields = pb_fields(other[region[0] : region[1]])
        if fields is not None and (f := last(fields, num, 2)) is not None and isinstance(f.value, bytes):
            return f.value
    return None


def _field_edit(fdp: atheris.FuzzedDataProvider, target: Target, body: bytes, msg_type: int) -> bytes:
    if msg_type == 3 and target.kind != "skdm" and fdp.ConsumeBool():  # the inner SignalMessage of a PreKey message
        outer = pb_fields(body[1:]) if body else None
        inner = last(outer, 4, 2) if outer is not None else None
        if outer is None or inner is None or not isinstance(inner.value, bytes) or len(inner.value) < 9:
            return body
        m = inner.value
        new = pb_field(4, 2, m[:1] + _edit_fields(fdp, m[1:-8]) + m[-8:])
        return body[:1] + join([new if f is inner else f for f in outer])
    region = _pb_region(target.kind, msg_type, body, inner=False)
    if region is None:
        return body
    a, b = region
    return body[:a] + _edit_fields(fdp, body[a:b]) + body[b:]


def mutate(fdp: atheris.FuzzedDataProvider, target: Target, body: bytes, msg_type: int) -> tuple[bytes, int]:
    """One mutation of ``body`` (and maybe of the type it is sent as)."""
    op = fdp.ConsumeIntInRange(0, 11)
    n = len(body)
    if op == 0 and n:  # flip a bit
        b = bytearray(body)
        b[fdp.ConsumeIntInRange(0, n - 1)] ^= 1 << fdp.ConsumeIntInRange(0, 7)
        return bytes(b), msg_type
    if op == 1 and n:  # set a byte
        b = bytearray(body)
        b[fdp.ConsumeIntInRange(0, n - 1)] = fdp.ConsumeIntInRange(0, 255)
        return bytes(b), msg_type
    if op == 2:  # truncate
        return body[: fdp.ConsumeIntInRange(0, max(n - 1, 0))], msg_type
    if op == 3 and n:  # delete a range
        start = fdp.ConsumeIntInRange(0, n - 1)
        return body[:start] + body[start + fdp.ConsumeIntInRange(1, 16) :], msg_type
    if op == 4:  # insert bytes
        at = fdp.ConsumeIntInRange(0, n)
        return body[:at] + fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 16)) + body[at:], msg_type
    if op == 5:  # splice a piece of another genuine message over a piece of this one
        other = TRAFFIC.genuine[fdp.ConsumeIntInRange(0, len(TRAFFIC.genuine) - 1)]
        src = fdp.ConsumeIntInRange(0, len(other) - 1)
        piece = other[src : src + fdp.ConsumeIntInRange(1, len(other))]
        at = fdp.ConsumeIntInRange(0, n)
        return body[:at] + piece + body[at + fdp.ConsumeIntInRange(0, len(piece)) :], msg_type
    if op == 6:  # the version byte
        v = fdp.ConsumeIntInRange(0, 255)
        return bytes((v,)) + body[1:], msg_type
    if op == 7 and target.kind not in ("group", "skdm"):  # another message type
        return body, (1, 2, 3)[fdp.ConsumeIntInRange(0, 2)]
    if op == 8 and target.kind not in ("group", "skdm"):  # wrap a SignalMessage / unwrap a PreKey message
        if msg_type == 3:
            outer = pb_fields(body[1:]) if body else None
            inner = last(outer, 4, 2) if outer is not None else None
            if inner is not None and isinstance(inner.value, bytes):
                return inner.value, 2
            return body, msg_type
        pk = pb_fields(TRAFFIC.prekey_outer[1:])
        assert pk is not None
        f = {x.num: x.value for x in pk}
        return encode_prekey_message(f[5], f.get(1), f[6], f[2], f[3], body), 3  # type: ignore[arg-type]
    if op == 9:  # append bytes
        return body + fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 16)), msg_type
    return _field_edit(fdp, target, body, msg_type), msg_type


# =========================================================================== the two receivers
class PeerBroken(Exception):
    """The peer process died, hung or broke the framing."""


class PeerProcess:
    """A JSON-lines peer (``docs/peer-protocol.md``) with pipelined requests: one write, then the answers.

    (``wacrypto.tools.vectors.peerclient.PeerClient`` waits for each answer before the next request;
    a reset plus a decrypt is 2-5 requests per input, and the round trips were most of the time.)
    """

    def __init__(self, argv: Sequence[str]) -> None:
        self.argv = list(argv)
        self._err = tempfile.TemporaryFile()
        try:
            self._proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err)
        except OSError as exc:
            raise PeerBroken(f"cannot start the peer {self.argv[0]!r}: {exc.strerror or exc}") from None
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._in, self._out = self._proc.stdin, self._proc.stdout.fileno()
        self._buf = bytearray()
        self._id = 0

    def stderr_tail(self) -> str:
        self._err.seek(0)
        return self._err.read()[-2000:].decode("utf-8", "replace").strip()

    def calls(self, requests: Sequence[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
        """Send every request, then read one answer per request (in order)."""
        first = self._id + 1
        lines = []
        for cmd, fields in requests:
            self._id += 1
            lines.append(json.dumps({"cmd": cmd, "id": self._id, **fields}))
        try:
            self._in.write(("\n".join(lines) + "\n").encode())
            self._in.flush()
        except OSError:
            raise PeerBroken(f"the peer exited (code {self._proc.poll()}): {self.stderr_tail()}") from None
        answers = []
        for want in range(first, self._id + 1):
            line = self._line()
            try:
                resp = json.loads(line)
            except ValueError:
                raise PeerBroken(f"the peer wrote a line that is not JSON: {line[:200]!r}") from None
            if not isinstance(resp, dict) or resp.get("id") != want:
                raise PeerBroken(f"the peer answered out of order: {resp!r:.200}")
            answers.append(resp)
        return answers

    def _line(self) -> bytes:
        while (nl := self._buf.find(b"\n")) < 0:
            ready, _, _ = select.select([self._out], [], [], PEER_TIMEOUT)
            if not ready:
                raise PeerBroken(f"no answer within {PEER_TIMEOUT:g} s (the peer hangs)")
            chunk = os.read(self._out, 1 << 16)
            if not chunk:
                raise PeerBroken(f"the peer closed its output (code {self._proc.poll()}): {self.stderr_tail()}")
            self._buf += chunk
        line = bytes(self._buf[:nl])
        del self._buf[: nl + 1]
        return line

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self._in.close()
                self._proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()


Outcome = tuple[str, str]
"""("ok", plaintext hex) or ("err", error class name)."""


def _outcome(resp: dict[str, Any]) -> Outcome:
    if resp.get("ok") is True:
        return "ok", str(resp.get("result", {}).get("plaintext", ""))
    return "err", str(resp.get("error", "")).split(":", 1)[0].strip()


class Wacrypto:
    """wacrypto's side: one ``wacrypto peer`` handler per receiving state, reset by a store snapshot."""

    def __init__(self, states: dict[str, list[tuple[str, dict[str, Any]]]]) -> None:
        _load_extensions()
        self.peers: dict[str, tuple[Peer, dict[Any, Any]]] = {}
        for name, setup in states.items():
            peer = Peer(MemoryKeyStore())
            for cmd, fields in setup:
                trio.run(peer.handle, {"cmd": cmd, **fields})
            assert isinstance(peer.store, MemoryKeyStore)
            self.peers[name] = (peer, peer.store.snapshot())

    def run(self, state: str, requests: Sequence[tuple[str, dict[str, Any]]]) -> list[Outcome]:
        peer, snap = self.peers[state]
        store = peer.store
        assert isinstance(store, MemoryKeyStore)
        store.restore(snap)
        out: list[Outcome] = []
        for cmd, fields in requests:
            before = store.snapshot()
            try:
                result = trio.run(peer.handle, {"cmd": cmd, **fields})
            except (PeerError, MissingStateError) as exc:
                if store.snapshot() != before:
                    raise AssertionError(f"wacrypto: a rejected {cmd} ({type(exc).__name__}) changed the store") from None
                out.append(("err", type(exc).__name__))
                continue
            out.append(("ok", str(result.get("plaintext", ""))))
        return out


# =========================================================================== known divergences
@dataclass
class Case:
    """One input as both receivers saw it."""

    target: Target
    msg_type: int
    body: bytes
    ours: list[Outcome]
    theirs: list[Outcome]
    peer: str  # the peer's ``implementation``
    inner_alone: Outcome | None = None  # a PreKey message's inner SignalMessage decrypted by wacrypto as type 2

    def raw_layers(self) -> list[tuple[str, bytes | None, int | None]]:
        """(what, protobuf bytes, version byte) of every protobuf in the message, outer first."""
        b = self.body
        if self.target.kind == "group":
            return [("SenderKeyMessage", b[1:-64] if len(b) > 65 else None, b[0] if b else None)]
        if self.target.kind == "skdm":
            return [("SenderKeyDistributionMessage", b[1:] if b else None, b[0] if b else None)]
        if self.msg_type != 3:
            return [("SignalMessage", b[1:-8] if len(b) > 9 else None, b[0] if b else None)]
        out: list[tuple[str, bytes | None, int | None]] = [("PreKeySignalMessage", b[1:] if b else None, b[0] if b else None)]
        outer = pb_fields(b[1:], groups=True) if b else None
        inner = last(outer, 4, 2) if outer is not None else None
        if inner is not None and isinstance(inner.value, bytes):
            m = inner.value
            out.append(("SignalMessage", m[1:-8] if len(m) > 9 else None, m[0] if m else None))
        return out

    def layers(self) -> list[tuple[str, list[PbField] | None, int | None]]:
        """(what, fields, version byte) of every protobuf in the message, outer first."""
        return [(what, pb_fields(raw) if raw is not None else None, v) for what, raw, v in self.raw_layers()]


@dataclass
class Rule:
    id: str
    peers: frozenset[str]
    reason: str
    applies: Callable[[Case], bool]


_REQUIRED = {  # fields wacrypto requires, whose proto2 default is 0 (a peer reading "absent" as 0 goes on)
    "SignalMessage": (2,),
    "PreKeySignalMessage": (6,),
    "SenderKeyMessage": (1, 2),
    "SenderKeyDistributionMessage": (1, 2),
}
_KEY_FIELDS = {"SignalMessage": (1,), "PreKeySignalMessage": (2, 3), "SenderKeyDistributionMessage": (4,)}


def _we_reject_they_accept(c: Case) -> bool:
    return any(o[0] == "err" and t[0] == "ok" for o, t in zip(c.ours, c.theirs))


def _version_four(c: Case) -> bool:
    return (any(o[0] == "ok" and t[0] == "err" for o, t in zip(c.ours, c.theirs))
            and any(v is not None and v >> 4 == 4 for _, _, v in c.layers()))


def _absent_required(c: Case) -> bool:
    if not _we_reject_they_accept(c) or not any(o == ("err", "InvalidMessageError") for o in c.ours):
        return False
    for what, fields, _ in c.layers():
        if fields is not None and any(last(fields, n, 0) is None for n in _REQUIRED[what]):
            return True
    return False


def _long_key(c: Case) -> bool:
    if not _we_reject_they_accept(c):
        return False
    for what, fields, _ in c.layers():
        for n in _KEY_FIELDS.get(what, ()):
            f = last(fields or [], n, 2)
            if f is not None and isinstance(f.value, bytes) and len(f.value) > 33 and f.value[0] == 5:
                return True
    return False


def _group_jump(c: Case) -> bool:
    if c.target.kind != "group" or c.ours != [("err", "TooFarAheadError")] or c.theirs[0][0] != "ok":
        return False
    fields = c.layers()[0][1]
    it = last(fields or [], 2, 0)
    return it is not None and isinstance(it.value, int) and (it.value & 0xFFFFFFFF) - c.target.group_iteration > 2000


_KNOWN = {"SignalMessage": {1, 2, 3, 4}, "PreKeySignalMessage": {1, 2, 3, 4, 5, 6}, "SenderKeyMessage": {1, 2, 3},
          "SenderKeyDistributionMessage": {1, 2, 3, 4}}


def _overlong_tag(c: Case) -> bool:
    """A known field whose tag is a padded (overlong) varint."""
    return any(f.num in _KNOWN[what] and not f.raw.startswith(varint(f.num << 3 | f.wt))
               for what, fields, _ in c.layers() for f in fields or [])


def _prekey_id_range(c: Case) -> bool:
    if c.msg_type != 3 or c.ours[0] != ("err", "InvalidMessageError") or c.theirs[0][0] != "ok":
        return False
    fields = c.layers()[0][1] or []
    return any(isinstance(f.value, int) and f.value & 0xFFFFFFFF > 0xFFFFFF
               for f in (last(fields, 1, 0), last(fields, 6, 0)) if f is not None)


def _python_groups(c: Case) -> bool:
    """A layer is a protobuf only when groups are read the pure-Python way."""
    return _we_reject_they_accept(c) and any(
        raw is not None and pb_fields(raw) is None and pb_fields(raw, groups=True) is not None
        for _, raw, _ in c.raw_layers())


def _python_field_numbers(c: Case) -> bool:
    """A field number above protobuf's 2^29 - 1: upb refuses the message, the pure-Python runtime keeps it."""
    return _we_reject_they_accept(c) and any(
        f.num > (1 << 29) - 1 for _, raw, _ in c.raw_layers() for f in (pb_fields(raw or b"", groups=True) or []))


def _varint_len(raw: bytes, at: int) -> int:
    v = read_varint(raw, at)
    return 0 if v is None else v[1] - at


def _long_tag_or_length(c: Case) -> bool:
    """A tag or length varint of more than 5 bytes: upb refuses it, the pure-Python runtime reads it."""
    if not _we_reject_they_accept(c):
        return False
    for _, raw, _ in c.raw_layers():
        for f in pb_fields(raw, groups=True) or [] if raw is not None else []:
            n = _varint_len(f.raw, 0)
            if n > 5 or (f.wt == 2 and _varint_len(f.raw, n) > 5):
                return True
    return False


_WIRE_TYPES = {"SignalMessage": {1: 2, 2: 0, 3: 0, 4: 2}, "PreKeySignalMessage": {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 0},
               "SenderKeyMessage": {1: 0, 2: 0, 3: 2}, "SenderKeyDistributionMessage": {1: 0, 2: 0, 3: 2, 4: 2}}


def _wrong_wire_type(c: Case) -> bool:
    """A known field number under another wire type: upb keeps it as an unknown field, prost refuses it."""
    return (any(o[0] == "ok" and t[0] == "err" for o, t in zip(c.ours, c.theirs))
            and any(f.num in _WIRE_TYPES[what] and f.wt != _WIRE_TYPES[what][f.num]
                    for what, fields, _ in c.layers() for f in fields or []))


def _zero_padded_chain_key(c: Case) -> bool:
    """An SKDM chain key with zero bytes after the 32 genuine ones: the same HMAC key."""
    if c.target.kind != "skdm" or c.ours[0] != ("err", "InvalidMessageError") or c.theirs != [("ok", ""), ("ok", c.target.plaintext.hex() if c.target.plaintext else "")]:
        return False
    genuine, got = pb_fields(TRAFFIC.skdm[1:]), pb_fields(c.body[1:])
    g, k = last(genuine or [], 3, 2), last(got or [], 3, 2)
    return (g is not None and k is not None and isinstance(k.value, bytes) and len(k.value) > 32
            and k.value[:32] == g.value and not k.value[32:].strip(b"\0"))


def _skdm_unchecked(c: Case) -> bool:
    if c.target.kind != "skdm" or c.ours[0] != ("err", "InvalidMessageError") or c.theirs[0][0] != "ok" or c.theirs[1][0] != "err":
        return False
    fields = c.layers()[0][1]
    if fields is None:
        return False
    chain, signing = last(fields, 3, 2), last(fields, 4, 2)
    return (any(last(fields, n, 0) is None for n in (1, 2)) or chain is None or signing is None
            or len(bytes(chain.value)) != 32 or not bytes(signing.value).startswith(b"\x05") or len(bytes(signing.value)) < 33)


def _prekey_fallback(c: Case) -> bool:
    return (c.msg_type == 3 and c.ours == [("err", "DecryptionError")] and c.theirs[0][0] == "ok"
            and c.inner_alone == c.theirs[0])


AXOLOTL = frozenset({"python-axolotl"})
LIBSIGNAL = frozenset({"libsignal-client (node)"})
OLD_PEERS = AXOLOTL | LIBSIGNAL
ALLOW = [
    Rule("version-4", OLD_PEERS,
         "wacrypto accepts version nibble 4 as well as 3 (libsignal >= 0.24 writes it on v3 sessions; "
         "docs/protocol-notes.md); python-axolotl 0.2.3 and libsignal 0.23.1 refuse it", _version_four),
    Rule("absent-zero-field", OLD_PEERS,
         "wacrypto requires the counter / id / iteration / signed-prekey-id fields the canonical encoding "
         "always carries (docs/protocol-notes.md); python-axolotl reads an absent one as the proto2 default 0",
         _absent_required),
    Rule("long-key", OLD_PEERS,
         "python-axolotl's Curve.decodePoint and libsignal 0.23.1's PublicKey deserializer read the 32 bytes after "
         "the 0x05 type byte and ignore what follows, so a key field with extra bytes works as the key; wacrypto "
         "requires exactly 33 bytes", _long_key),
    Rule("group-jump", AXOLOTL,
         "python-axolotl has its sender-key forward-jump check reversed (no limit); wacrypto refuses a group "
         "message more than 2000 iterations ahead (docs/protocol-notes.md)", _group_jump),
    Rule("overlong-tag", AXOLOTL,
         "the protobuf runtime of python-axolotl's venv (pure Python, 3.20.3) finds fields by their tag bytes, so a "
         "field whose tag is written as a padded (overlong) varint is an unknown field to it; upb (wacrypto) reads "
         "the field", _overlong_tag),
    Rule("prekey-id-range", OLD_PEERS,
         "found by this harness (docs/fuzzing.md): wacrypto refuses a PreKeySignalMessage whose prekey or signed-prekey "
         "id does not fit the 24 bits every peer writes (wacrypto/limits.py MAX_PREKEY_ID); python-axolotl and "
         "libsignal 0.23.1 take any uint32 and ignore the ids when the base key names a session they have",
         _prekey_id_range),
    Rule("python-groups", AXOLOTL,
         "the pure-Python protobuf runtime (3.20.3) of python-axolotl's venv skips an unknown group up to the next "
         "end-group tag whatever its field number; upb (wacrypto) refuses a group whose end tag does not match "
         "as a corrupt message", _python_groups),
    Rule("python-field-numbers", AXOLOTL,
         "the pure-Python protobuf runtime of python-axolotl's venv keeps a field whose number is above protobuf's "
         "limit 2^29 - 1 as an unknown field; upb (wacrypto) refuses the message", _python_field_numbers),
    Rule("long-varint", AXOLOTL,
         "upb (wacrypto) reads a tag or a length as a varint of at most 5 bytes; the pure-Python protobuf runtime "
         "of python-axolotl's venv reads overlong ones up to 10 bytes", _long_tag_or_length),
    Rule("wrong-wire-type", LIBSIGNAL,
         "a known field under another wire type (field 5 of a PreKeySignalMessage as bytes, say) is an unknown field "
         "to upb (wacrypto), as the protobuf rules say; libsignal's Rust decoder (prost) refuses the message",
         _wrong_wire_type),
    Rule("skdm-zero-padded-chain-key", AXOLOTL,
         "python-axolotl takes an SKDM chain key of any length, and HMAC pads a key with zero bytes to 64 bytes, so "
         "the genuine key with zero bytes appended is the same key: the sender key works; wacrypto requires 32 bytes",
         _zero_padded_chain_key),
    Rule("skdm-unchecked", AXOLOTL,
         "python-axolotl installs a SenderKeyDistributionMessage without checking it (absent fields read as 0, a "
         "chain key of any length); the sender key it installs then decrypts nothing; wacrypto refuses the SKDM",
         _skdm_unchecked),
    Rule("prekey-fallback", OLD_PEERS,
         "found by this harness (docs/fuzzing.md): when the X3DH of a PreKeySignalMessage fails (its unauthenticated "
         "base key or prekey ids altered), python-axolotl and libsignal 0.23.1 still decrypt its inner SignalMessage "
         "with an existing or archived session; wacrypto tries only the session its X3DH made", _prekey_fallback),
]
SKIP_UNBOUNDED = Rule(
    "group-jump-unbounded", AXOLOTL,
    f"a validly signed group message more than {PEER_SAFE_JUMP} iterations ahead is not sent to python-axolotl, "
    "which would derive every key up to it (unbounded work, the reversed check above); wacrypto must reject it",
    lambda c: True)


def _far_ahead_group(target: Target, body: bytes, peer: str) -> bool:
    """A signed group message python-axolotl would spend unbounded time on."""
    if target.kind != "group" or peer not in SKIP_UNBOUNDED.peers or len(body) < 66:
        return False
    fields = pb_fields(body[1:-64])
    if fields is None:
        return False
    it, kid = last(fields, 2, 0), last(fields, 1, 0)
    if it is None or kid is None or not isinstance(it.value, int) or kid.value != TRAFFIC.group_key_id:
        return False
    if (it.value & 0xFFFFFFFF) - target.group_iteration <= PEER_SAFE_JUMP:
        return False
    return xeddsa_verify(TRAFFIC.group_signing_public, body[:-64], body[-64:])


# =========================================================================== one input
@dataclass
class Verdict:
    kind: str  # "agree", "classified", "skipped", "divergence"
    rule: str = ""
    case: Case | None = None


class Divergence(AssertionError):
    """wacrypto and the peer disagree on a message, and no rule in ALLOW explains it."""


@dataclass
class _Session:
    peer: PeerProcess
    implementation: str
    targets: list[Target]
    ours: Wacrypto
    stats: Counter[str] = field(default_factory=Counter)


_SESSIONS: dict[tuple[str, ...], _Session] = {}
ARTIFACT_PREFIX: list[str] = []  # set by main() from -artifact_prefix (only when libFuzzer runs)


def peer_argv() -> list[str]:
    cmd = os.environ.get("WACRYPTO_FUZZ_PEER")
    if cmd:
        return shlex.split(cmd)
    if not Path(DEFAULT_PEER[0]).exists():
        raise SystemExit("fuzz_differential: python-axolotl's venv (.venv-axolotl) is missing: run `make interop-setup` "
                         "(bash tests/interop/setup.sh), or name another peer in WACRYPTO_FUZZ_PEER")
    return DEFAULT_PEER


def _probe(target: Target, body: bytes, msg_type: int) -> list[tuple[str, dict[str, Any]]]:
    if target.kind == "skdm":
        process = {"group_id": GROUP, "sender": "alice", "sender_device": 1, "distribution": body.hex()}
        return [("group_process", process), _request("skdm_probe", TRAFFIC.group_probe, 7)]
    return [_request(target.kind, body, msg_type)]


def _run_peer(s: _Session, target: Target, probe: list[tuple[str, dict[str, Any]]]) -> list[Outcome]:
    setup = TRAFFIC.states[target.state]
    answers = s.peer.calls([*setup, *probe])
    for (cmd, _), resp in zip(setup, answers):
        if resp.get("ok") is not True:
            raise PeerBroken(f"the peer could not load state {target.state!r}: {cmd} -> {resp.get('error')}")
    return [_outcome(r) for r in answers[len(setup) :]]


def session(argv: Sequence[str] | None = None) -> _Session:
    """Start the peer (``argv``, default :func:`peer_argv`) and load every state, once per process and
    peer; check that both sides decrypt every genuine message as it was sent."""
    key = tuple(argv or peer_argv())
    if key in _SESSIONS:
        return _SESSIONS[key]
    try:
        peer = PeerProcess(key)
        atexit.register(peer.close)
        info = peer.calls([("info", {})])[0].get("result", {})
    except PeerBroken as exc:
        raise SystemExit(f"fuzz_differential: the peer does not answer: {exc}") from None
    caps = set(info.get("capabilities", []))
    targets = [t for t in TARGETS if "group" in caps or t.kind not in ("group", "skdm")]
    groups = {"group", "group_mid"}
    ours = Wacrypto({k: v for k, v in TRAFFIC.states.items() if "group" in caps or k not in groups})
    s = _Session(peer, str(info.get("implementation", "?")), targets, ours)
    for t in targets:  # the genuine messages: both must agree with what was sent
        want = [("ok", t.plaintext.hex())] if t.plaintext is not None else [("err", "*")]
        if t.kind == "skdm":
            want = [("ok", ""), ("ok", t.plaintext.hex() if t.plaintext else "")]
        probe = _probe(t, t.body, 3 if t.kind == "prekey" else 2)
        for who, got in (("wacrypto", ours.run(t.state, probe)), (s.implementation, _run_peer(s, t, probe))):
            if [g if w[1] != "*" else (g[0], "*") for g, w in zip(got, want)] != want:
                raise SystemExit(f"fuzz_differential: {who} does not decrypt the genuine {t.name!r} as sent: {got}")
    _SESSIONS[key] = s
    return s


def decode(data: bytes) -> tuple[Target, int, bytes]:
    """The target, message type and (mutated, maybe re-authenticated) message an input stands for."""
    s = session()
    fdp = atheris.FuzzedDataProvider(data)
    target = s.targets[fdp.ConsumeIntInRange(0, len(s.targets) - 1)]
    msg_type = 7 if target.kind in ("group", "skdm") else 3 if target.kind == "prekey" else 2
    body = target.body
    for _ in range(fdp.ConsumeIntInRange(0, 4)):
        body, msg_type = mutate(fdp, target, body, msg_type)
    return target, msg_type, reauthenticate(fdp, target, body, msg_type)


def evaluate(data: bytes) -> Verdict:
    """Decode one input, run it on both sides and judge the answers (no exception for a divergence)."""
    return judge(*decode(data))


def replay(description: dict[str, Any]) -> Verdict:
    """Judge a message as :func:`describe` wrote it (``target``, ``type``, ``body``, ``peer``) with that
    peer: the regression form."""
    s = session(PEERS[description["peer"]] if "peer" in description else None)
    target = next((t for t in s.targets if t.name == description["target"]), None)
    if target is None:
        raise KeyError(f"no target {description['target']!r} for this peer")
    return judge(target, int(description["type"]), bytes.fromhex(description["body"]), s)


def judge(target: Target, msg_type: int, body: bytes, s: _Session | None = None) -> Verdict:
    """Decrypt ``body`` in ``target``'s state on both sides (the default peer unless ``s``) and compare."""
    s = s or session()
    probe = _probe(target, body, msg_type)
    ours = s.ours.run(target.state, probe)
    if _far_ahead_group(target, body, s.implementation):
        if ours[0][0] == "ok":
            case = Case(target, msg_type, body, ours, [("err", "not sent")], s.implementation)
            return Verdict("divergence", "wacrypto accepted a group message far beyond its jump limit", case)
        return Verdict("skipped", SKIP_UNBOUNDED.id, Case(target, msg_type, body, ours, [("err", "not sent")], s.implementation))
    try:
        theirs = _run_peer(s, target, probe)
    except PeerBroken as exc:
        case = Case(target, msg_type, body, ours, [("err", f"peer broke: {exc}")], s.implementation)
        return Verdict("divergence", "the peer broke", case)
    case = Case(target, msg_type, body, ours, theirs, s.implementation)
    if msg_type == 3 and target.kind in ("prekey", "signal") and ours[0][0] != theirs[0][0]:
        outer = pb_fields(body[1:]) if body else None
        inner = last(outer, 4, 2) if outer is not None else None
        if inner is not None and isinstance(inner.value, bytes):
            case.inner_alone = s.ours.run(target.state, [_request("signal", inner.value, 2)])[0]
    if all(o[0] == t[0] and (o[0] == "err" or o[1] == t[1]) for o, t in zip(ours, theirs)):
        return Verdict("agree", "accepted" if ours[-1][0] == "ok" else "rejected", case)
    for rule in ALLOW:
        if s.implementation in rule.peers and rule.applies(case):
            return Verdict("classified", rule.id, case)
    return Verdict("divergence", "", case)


def describe(v: Verdict) -> dict[str, Any]:
    assert v.case is not None
    c = v.case
    return {
        "peer": c.peer,
        "target": c.target.name,
        "state": c.target.state,
        "type": c.msg_type,
        "body": c.body.hex(),
        "genuine": c.target.body.hex(),
        "wacrypto": [list(o) for o in c.ours],
        c.peer: [list(t) for t in c.theirs],
        "note": v.rule,
    }


def TestOneInput(data: bytes) -> None:  # noqa: N802 - atheris' name
    v = evaluate(data)
    s = session()
    s.stats[v.kind if v.kind in ("divergence",) else f"{v.kind}:{v.rule}"] += 1
    n = sum(s.stats.values())
    if n % 1000 == 0:
        print(f"fuzz_differential: {n} inputs: " + ", ".join(f"{k} {c}" for k, c in sorted(s.stats.items())), file=sys.stderr)
    if v.kind == "divergence":
        text = json.dumps(describe(v), indent=1)
        if ARTIFACT_PREFIX:
            digest = hashlib.sha1(data).hexdigest()
            Path(f"{ARTIFACT_PREFIX[0]}divergence-{digest}.json").write_text(text + "\n")
        raise Divergence(f"wacrypto and {s.implementation} disagree{': ' + v.rule if v.rule else ''}:\n{text}")


def main() -> None:
    prefix = [a.split("=", 1)[1] for a in sys.argv if a.startswith("-artifact_prefix=")]
    ARTIFACT_PREFIX[:] = [prefix[-1] if prefix else "./"]
    session()
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
