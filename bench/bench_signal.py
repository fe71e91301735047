#!/usr/bin/env python3
"""Signal v3 pairwise-session benchmark: wacrypto vs. the primitive floor vs. its peers, in one run.

Run from the repository root::

    .venv/bin/python bench/bench_signal.py [--quick] [--cpu N | --no-pin] [--size 64]

Operations (each with the session record loaded, parsed, re-serialized and stored per operation):

  (a) encrypt    encrypt on an existing sending chain (type-2 message, the peer has answered).
  (b) decrypt    parse + decrypt of the next in-order message of an existing receiving chain.
  (c) ping-pong  messages alternate direction, so every receiver performs a DH ratchet step;
                 one "message" = one encrypt by its sender + one parse/decrypt by its receiver.
  (d) setup/initiator  process_bundle (signature check, X3DH, new record stored) for a fresh
                 address; bundle with a one-time prekey.
  (d) setup/responder  parse + decrypt of the first PreKeySignalMessage from a fresh address
                 (X3DH as Bob, DH ratchet step, first decrypt, record stored, one-time prekey removed).
  (e) sender key encrypt / decrypt  the group hot path through the pure layer only (core column):
                 record parse, chain step, AES-CBC, XEdDSA sign (cached signer) or verify, serialize.
                 bench/bench_groups.py measures the public GroupCipher and the fan-out.

Columns:

  wacrypto       the public async API (``SessionCipher`` over ``MemoryKeyStore``) inside one
                 ``trio.run``: one store transaction per operation.
  core           the same step through the pure synchronous core, without store, trust checks
                 or async: parse record -> ``wacrypto.signal.ratchet`` step -> serialize into a
                 dict (shows the store/async overhead separately).
  floor          the bare sum of the cryptographic library calls the operation needs (see
                 FLOOR_DEFINITIONS below), each at its fastest in the libraries wacrypto uses.
  axolotl        python-axolotl 0.2.3 (bench/peers/axolotl_bench.py, its own venv, subprocess).
  libsignal-node @signalapp/libsignal-client 0.23.1 through Node (bench/peers/libsignal_bench.js),
                 if that script exists.
  baileys        Baileys' pure-JavaScript libsignal (npm ``libsignal`` 6.0.0, WhiskeySockets/
                 libsignal-node) through Node (bench/peers/baileys_libsignal_bench.js; installed in
                 bench/peers/baileys by ``make bench``).

Method: the process (and so its children) is pinned to one CPU; each figure is calibrated
(warm-up, then batch size for ~0.25 s per round; ~0.03 s with --quick), measured for 5 rounds (--rounds)
with ``time.perf_counter_ns`` and the median round is reported. Inputs that an operation
consumes (messages to decrypt, bundles, PreKey messages) are prepared outside the timed region.
Results go to bench/results/signal.{json,txt}. This is a benchmark, never a test: nothing here
asserts on timings.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import hmac
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The checkout, not whatever the venv's (possibly stale) editable install maps "wacrypto" to.
sys.path.insert(0, str(ROOT))

import nacl.bindings as _nacl  # noqa: E402
import trio  # noqa: E402
from cryptography.hazmat.primitives.ciphers import Cipher  # noqa: E402
from cryptography.hazmat.primitives.ciphers.algorithms import AES  # noqa: E402
from cryptography.hazmat.primitives.ciphers.modes import CBC  # noqa: E402

import wacrypto  # noqa: E402
from wacrypto import Address, MemoryKeyStore, SessionCipher, SessionRecord  # noqa: E402
from wacrypto.session.account import create_account, generate_prekeys, get_bundle  # noqa: E402
from wacrypto.primitives.keys import KeyPair  # noqa: E402
from wacrypto.primitives.xeddsa import montgomery_to_edwards, xeddsa_sign  # noqa: E402
from wacrypto.signal import ratchet  # noqa: E402
from wacrypto.signal.bundle import PreKeyBundle  # noqa: E402
from wacrypto.signal import senderkeys as sk  # noqa: E402
from wacrypto.signal.records import PreKeyRecord  # noqa: E402
from wacrypto.signal.senderkeys import SenderKeyRecord  # noqa: E402
from wacrypto.wire.messages import (  # noqa: E402
    PreKeySignalMessage,
    SenderKeyMessage,
    SignalMessage,
    encode_prekey_message,
)

RESULTS = ROOT / "bench" / "results"
ROUNDS = 5
CLOCK = time.perf_counter_ns  # --clock cpu switches to time.thread_time_ns (busy machines)

OPS: list[tuple[str, str]] = [
    ("encrypt", "(a) encrypt, existing chain"),
    ("decrypt", "(b) decrypt, existing chain"),
    ("pingpong", "(c) ping-pong, DH step/msg"),
    ("setup_initiator", "(d) setup: initiator"),
    ("setup_responder", "(d) setup: responder"),
]
TARGET_FLOOR_RATIO = {"encrypt": 1.5, "decrypt": 1.5, "pingpong": 1.3, "setup_initiator": 1.3, "setup_responder": 1.3}
TARGET_AXOLOTL_SPEEDUP = {"encrypt": 3.0, "decrypt": 3.0}
PEER_KEYS = {  # JSON keys printed by bench/peers/*
    "encrypt": "encrypt_us",
    "decrypt": "decrypt_us",
    "pingpong": "pingpong_us_per_msg",
    "setup_initiator": "setup_initiator_us",
    "setup_responder": "setup_responder_us",
}

# ----------------------------------------------------------------------------------- floors
# The primitive floor of each operation: the library calls it cannot avoid, nothing else (no
# protobuf, no record, no store, no padding, no Montgomery->Edwards conversion, no compare).
#   HMAC      = hmac.digest(key, msg, "sha256")  (OpenSSL one-shot; the fastest stdlib HMAC call)
#   HKDF(n)   = RFC 5869 with hmac.digest: 1 extract + ceil(n/32) expand calls
#               (HKDF(80) = 4 HMAC, HKDF(64) = 3 HMAC)
#   AES-enc   = Cipher(AES(k), CBC(iv)).encryptor(); update(padded) + finalize()   (cryptography)
#   AES-dec   = Cipher(AES(k), CBC(iv)).decryptor(); update(ct) + finalize()       (cryptography)
#   X25519    = nacl.bindings.crypto_scalarmult     (PyNaCl; ~1.5x faster than cryptography's)
#   keygen    = os.urandom(32) + nacl.bindings.crypto_scalarmult_base  (~3x faster than
#               cryptography's X25519PrivateKey.generate().public_key())
#   verify    = nacl.bindings.crypto_sign_open (Ed25519 on the already-converted Edwards key;
#               ~2x faster than cryptography's Ed25519PublicKey.verify)
FLOOR_DEFINITIONS = {
    "encrypt": "2 HMAC (chain: seed, next key) + HKDF(80) message keys + AES-enc + 1 HMAC (MAC)"
    " = 7 HMAC + 1 AES-enc",
    "decrypt": "2 HMAC (chain) + HKDF(80) + 1 HMAC (MAC) + AES-dec = 7 HMAC + 1 AES-dec",
    "pingpong": "floor(a) + floor(b) + DH step [2 X25519 + 2 HKDF(64) + 1 keygen]"
    " = 20 HMAC + AES-enc + AES-dec + 2 X25519 + 1 keygen",
    "setup_initiator": "verify + keygen (base key) + 4 X25519 (X3DH with one-time prekey) + HKDF(64)"
    " + keygen (ratchet key) + X25519 + HKDF(64) = verify + 2 keygen + 5 X25519 + 6 HMAC",
    "setup_responder": "4 X25519 (X3DH) + HKDF(64) + DH step [2 X25519 + 2 HKDF(64) + keygen] + floor(b)"
    " = 6 X25519 + 1 keygen + 16 HMAC + AES-dec",
}

_hd = hmac.digest
_ZERO32 = bytes(32)
_INFO_KEYS = b"WhisperMessageKeys"
_INFO_RATCHET = b"WhisperRatchet"
_INFO_TEXT = b"WhisperText"
_scalarmult = _nacl.crypto_scalarmult
_scalarmult_base = _nacl.crypto_scalarmult_base
_sign_open = _nacl.crypto_sign_open
_urandom = os.urandom


def _hkdf80(ikm: bytes) -> tuple[bytes, bytes, bytes]:
    prk = _hd(_ZERO32, ikm, "sha256")
    t1 = _hd(prk, _INFO_KEYS + b"\x01", "sha256")
    t2 = _hd(prk, t1 + _INFO_KEYS + b"\x02", "sha256")
    t3 = _hd(prk, t2 + _INFO_KEYS + b"\x03", "sha256")
    return t1, t2, t3


def _hkdf64(ikm: bytes, salt: bytes, info: bytes) -> tuple[bytes, bytes]:
    prk = _hd(salt, ikm, "sha256")
    t1 = _hd(prk, info + b"\x01", "sha256")
    t2 = _hd(prk, t1 + info + b"\x02", "sha256")
    return t1, t2


class Floor:
    """Fixed realistic inputs (a 64-byte plaintext -> 80-byte ciphertext, real key sizes)."""

    def __init__(self, size: int) -> None:
        pad = 16 - size % 16
        self.padded = _urandom(size) + bytes((pad,)) * pad
        self.ct = _urandom(len(self.padded))
        self.header = b"\x33" + _urandom(33 + 8)  # version + ratchet key + counters (MAC input)
        self.ids = b"\x05" + _urandom(32) + b"\x05" + _urandom(32)
        self.ck = _urandom(32)
        self.root = _urandom(32)
        self.priv = _urandom(32)
        self.pubs = [_scalarmult_base(_urandom(32)) for _ in range(4)]
        kp = KeyPair.generate()
        spk = b"\x05" + self.pubs[0]
        sig = xeddsa_sign(kp.private.to_bytes(), spk, _urandom(64))
        ed = montgomery_to_edwards(kp.public.u, sig[63] >> 7)
        assert ed is not None
        self.ed: bytes = ed
        s = bytearray(sig)
        s[63] &= 0x7F
        self.signed = bytes(s) + spk

    def encrypt(self) -> None:
        ck = self.ck
        seed = _hd(ck, b"\x01", "sha256")
        self.ck = _hd(ck, b"\x02", "sha256")
        k, mk, iv = _hkdf80(seed)
        e = Cipher(AES(k), CBC(iv[:16])).encryptor()
        ct = e.update(self.padded) + e.finalize()
        _hd(mk, self.ids + self.header + ct, "sha256")

    def decrypt(self) -> None:
        ck = self.ck
        seed = _hd(ck, b"\x01", "sha256")
        self.ck = _hd(ck, b"\x02", "sha256")
        k, mk, iv = _hkdf80(seed)
        ct = self.ct
        _hd(mk, self.ids + self.header + ct, "sha256")
        d = Cipher(AES(k), CBC(iv[:16])).decryptor()
        d.update(ct) + d.finalize()

    def dh_step(self) -> None:
        their = self.pubs[1]
        root, _ck = _hkdf64(_scalarmult(self.priv, their), self.root, _INFO_RATCHET)
        new = _urandom(32)
        _scalarmult_base(new)
        self.root, _ck2 = _hkdf64(_scalarmult(new, their), root, _INFO_RATCHET)
        self.priv = new

    def pingpong(self) -> None:
        self.encrypt()
        self.dh_step()
        self.decrypt()

    def setup_initiator(self) -> None:
        _sign_open(self.signed, self.ed)
        p = self.pubs
        base = _urandom(32)
        _scalarmult_base(base)
        secret = b"\xff" * 32 + _scalarmult(self.priv, p[0]) + _scalarmult(base, p[1]) + _scalarmult(base, p[0])
        secret += _scalarmult(base, p[2])
        root, _ck = _hkdf64(secret, _ZERO32, _INFO_TEXT)
        send = _urandom(32)
        _scalarmult_base(send)
        _hkdf64(_scalarmult(send, p[0]), root, _INFO_RATCHET)

    def setup_responder(self) -> None:
        p = self.pubs
        priv = self.priv
        secret = b"\xff" * 32 + _scalarmult(priv, p[1]) + _scalarmult(priv, p[2]) + _scalarmult(priv, p[2])
        secret += _scalarmult(priv, p[2])
        self.root, _ck = _hkdf64(secret, _ZERO32, _INFO_TEXT)
        self.dh_step()
        self.decrypt()


# ----------------------------------------------------------------------------------- harness
class Timer:
    """Registers figures (warm-up + calibration at once), then measures them all interleaved.

    Rounds are interleaved across every in-process figure (round r of each figure runs before
    round r+1 of any), so background load on the machine hits all columns alike.
    """

    def __init__(self, round_s: float, rounds: int = ROUNDS) -> None:
        self.round_s = round_s
        self.rounds = rounds
        self.figures: list[tuple[Callable[[int], Any], bool, int, dict[str, Any]]] = []

    def _n(self, per_op_ns: float) -> int:
        return max(10, min(200_000, int(self.round_s * 1e9 / max(per_op_ns, 1.0))))

    def sync(self, batch: Callable[[int], int]) -> dict[str, Any]:
        """``batch(n)`` runs n operations (preparing its inputs untimed) and returns the timed ns."""
        batch(10)  # warm-up
        n = self._n(min(batch(20), batch(20)) / 20)
        slot: dict[str, Any] = {}
        self.figures.append((batch, False, n, slot))
        return slot

    async def trio(self, batch: Callable[[int], Awaitable[int]]) -> dict[str, Any]:
        await batch(10)
        n = self._n(min(await batch(20), await batch(20)) / 20)
        slot: dict[str, Any] = {}
        self.figures.append((batch, True, n, slot))
        return slot

    async def run(self, log: Callable[[str], None]) -> None:
        per: list[list[float]] = [[] for _ in self.figures]
        for r in range(self.rounds):
            log(f"round {r + 1}/{self.rounds} ({len(self.figures)} figures)")
            for i, (batch, is_async, n, _slot) in enumerate(self.figures):
                gc.collect()
                ns = (await batch(n)) if is_async else batch(n)
                per[i].append(ns / n)
        for (_b, _a, n, slot), p in zip(self.figures, per):
            slot.update(_summary(p, n))


def _summary(per_ns: list[float], n: int) -> dict[str, Any]:
    med = statistics.median(per_ns)
    return {
        "us": round(med / 1000, 2),
        "msgs_per_s": round(1e9 / med),
        "min_us": round(min(per_ns) / 1000, 2),
        "rounds_us": [round(x / 1000, 2) for x in per_ns],
        "spread_pct": round((max(per_ns) - min(per_ns)) / med * 100, 1),
        "n_per_round": n,
    }


def _loop(fn: Callable[[], object]) -> Callable[[int], int]:
    def batch(n: int) -> int:
        pc = CLOCK
        t0 = pc()
        for _ in range(n):
            fn()
        return pc() - t0

    return batch


# ----------------------------------------------------------------------------------- wacrypto
class WaParty:
    def __init__(self, prekeys: int = 1) -> None:
        self.store = MemoryKeyStore()
        self.cipher = SessionCipher(self.store)
        self.prekeys = prekeys

    async def init(self) -> WaParty:
        await create_account(self.store, prekeys=self.prekeys)
        return self

    async def bundles(self, n: int) -> list[PreKeyBundle]:
        """n bundles, each with its own fresh one-time prekey."""
        recs: list[PreKeyRecord] = []
        while len(recs) < n:
            recs += await generate_prekeys(self.store, min(10_000, n - len(recs)))
        return [await get_bundle(self.store, prekey_id=r.id) for r in recs]


async def wa_established(pt: bytes) -> tuple[WaParty, WaParty, Address, Address]:
    alice, bob = await WaParty().init(), await WaParty().init()
    a_addr, b_addr = Address("alice"), Address("bob")
    await alice.cipher.process_bundle(b_addr, await get_bundle(bob.store))
    m = await alice.cipher.encrypt(b_addr, pt)
    await bob.cipher.decrypt(a_addr, m.type, m.body)
    r = await bob.cipher.encrypt(a_addr, pt)
    await alice.cipher.decrypt(b_addr, r.type, r.body)
    m = await alice.cipher.encrypt(b_addr, pt)
    assert m.type == 2, "session should be established"
    await bob.cipher.decrypt(a_addr, m.type, m.body)
    return alice, bob, a_addr, b_addr


async def bench_wacrypto(timer: Timer, pt: bytes) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    pc = CLOCK

    # (a)
    alice, bob, a_addr, b_addr = await wa_established(pt)
    enc = alice.cipher.encrypt

    async def encrypt_batch(n: int) -> int:
        t0 = pc()
        for _ in range(n):
            await enc(b_addr, pt)
        return pc() - t0

    out["encrypt"] = await timer.trio(encrypt_batch)

    # (b)
    b_alice, b_bob, _, _ = await wa_established(pt)
    dec = b_bob.cipher.decrypt
    b_enc = b_alice.cipher.encrypt

    async def decrypt_batch(n: int) -> int:
        msgs = [await b_enc(b_addr, pt) for _ in range(n)]
        t0 = pc()
        for m in msgs:
            await dec(a_addr, m.type, m.body)
        return pc() - t0

    out["decrypt"] = await timer.trio(decrypt_batch)

    # (c)
    alice, bob, a_addr, b_addr = await wa_established(pt)
    ac, bc = alice.cipher, bob.cipher

    async def pingpong_batch(n: int) -> int:
        t0 = pc()
        for i in range(n):
            if i & 1:
                m = await bc.encrypt(a_addr, pt)
                await ac.decrypt(b_addr, m.type, m.body)
            else:
                m = await ac.encrypt(b_addr, pt)
                await bc.decrypt(a_addr, m.type, m.body)
        return pc() - t0

    out["pingpong"] = await timer.trio(pingpong_batch)

    # (d) initiator: fresh address each time, bundles prepared untimed
    init, target = await WaParty().init(), await WaParty().init()
    seq = [0]

    async def initiator_batch(n: int) -> int:
        bundles = await target.bundles(n)
        base = seq[0]
        seq[0] += n
        addrs = [Address(f"bob{base + i}") for i in range(n)]
        pb = init.cipher.process_bundle
        t0 = pc()
        for a, b in zip(addrs, bundles):
            await pb(a, b)
        return pc() - t0

    out["setup_initiator"] = await timer.trio(initiator_batch)

    # (d) responder: first PreKey message from a fresh address, messages prepared untimed
    sender, responder = await WaParty().init(), await WaParty().init()

    async def responder_batch(n: int) -> int:
        bundles = await responder.bundles(n)
        base = seq[0]
        seq[0] += n
        bodies = []
        for i, b in enumerate(bundles):
            to = Address(f"bob{base + i}")
            await sender.cipher.process_bundle(to, b)
            m = await sender.cipher.encrypt(to, pt)
            assert m.type == 3
            bodies.append((Address(f"alice{base + i}"), m.body))
        dec = responder.cipher.decrypt
        t0 = pc()
        for a, body in bodies:
            await dec(a, 3, body)
        return pc() - t0

    out["setup_responder"] = await timer.trio(responder_batch)
    return out


# ----------------------------------------------------------------------------------- core
async def core_db(pt: bytes) -> dict[str, bytes]:
    """Session records of an established pair: "a" (alice's, with bob) and "b" (bob's, with alice)."""
    alice, bob, a_addr, b_addr = await wa_established(pt)
    return {"a": alice.store._data[("session", b_addr)], "b": bob.store._data[("session", a_addr)]}


async def bench_core(timer: Timer, pt: bytes) -> dict[str, dict[str, Any]]:
    """The pure synchronous path: record bytes in a dict, parse, ratchet step, serialize, store."""
    out: dict[str, dict[str, Any]] = {}
    trusted = SessionRecord._trusted

    def c_encrypt(db: dict[str, bytes], who: str = "a") -> bytes:
        rec = trusted(db[who])
        body = ratchet.encrypt(rec.current, pt)
        db[who] = rec.to_bytes()
        return body

    def c_decrypt(db: dict[str, bytes], body: bytes, who: str = "b") -> bytes:
        m = SignalMessage.from_bytes(body)
        rec = trusted(db[who])
        p = ratchet.decrypt(rec.current, m)
        db[who] = rec.to_bytes()
        return p

    db_a = await core_db(pt)
    out["encrypt"] = timer.sync(_loop(lambda: c_encrypt(db_a)))

    db_b = await core_db(pt)

    def decrypt_batch(n: int) -> int:
        msgs = [c_encrypt(db_b) for _ in range(n)]
        pc = CLOCK
        t0 = pc()
        for body in msgs:
            c_decrypt(db_b, body)
        return pc() - t0

    out["decrypt"] = timer.sync(decrypt_batch)
    db_c = await core_db(pt)

    def pingpong_batch(n: int) -> int:
        pc = CLOCK
        t0 = pc()
        for i in range(n):
            if i & 1:
                c_decrypt(db_c, c_encrypt(db_c, "b"), "a")
            else:
                c_decrypt(db_c, c_encrypt(db_c, "a"), "b")
        return pc() - t0

    out["pingpong"] = timer.sync(pingpong_batch)

    # (d) with pre-parsed local keys (no key-record loading), records built and serialized
    ident = KeyPair.generate()
    ident_pub, ident_priv = ident.public.to_bytes(), ident.private.to_bytes()
    spk = KeyPair.generate()
    spk_pub, spk_priv = spk.public.to_bytes(), spk.private.to_bytes()
    spk_sig = xeddsa_sign(ident_priv, spk_pub, os.urandom(64))
    peer = KeyPair.generate()

    def make_bundle() -> tuple[PreKeyBundle, bytes]:
        opk = KeyPair.generate()
        b = PreKeyBundle(1234, 1, ident_pub, 1, spk_pub, spk_sig, 7, opk.public.to_bytes())
        return b, opk.private.to_bytes()

    def c_initiator(b: PreKeyBundle, store: dict[int, bytes], key: int) -> None:
        if not b.signature_valid():
            raise AssertionError("bad signature")
        state = ratchet.new_state_alice(
            local_identity_pub=peer.public.to_bytes(),
            local_identity_priv=peer.private.to_bytes(),
            remote_identity=b.identity_key,
            their_signed_prekey=b.signed_prekey,
            their_one_time_prekey=b.prekey,
            base_priv=os.urandom(32),
            rng=os.urandom,
        )
        pk = state.pending_pre_key
        pk.pre_key_id = b.prekey_id or 0
        pk.signed_pre_key_id = b.signed_prekey_id
        pk.base_key = state.alice_base_key
        pk.timestamp = 1
        state.remote_registration_id = b.registration_id
        state.local_registration_id = 4321
        rec = SessionRecord()
        rec.promote(state)
        store[key] = rec.to_bytes()

    def initiator_batch(n: int) -> int:
        bundles = [make_bundle()[0] for _ in range(n)]
        store: dict[int, bytes] = {}
        pc = CLOCK
        t0 = pc()
        for i, b in enumerate(bundles):
            c_initiator(b, store, i)
        return pc() - t0

    out["setup_initiator"] = timer.sync(initiator_batch)

    def responder_batch(n: int) -> int:
        items = []
        tmp: dict[int, bytes] = {}
        for i in range(n):
            b, opk_priv = make_bundle()
            c_initiator(b, tmp, 0)
            rec = trusted(tmp[0])
            st = rec.current
            inner = ratchet.encrypt(st, pt)
            pk = st.pending_pre_key
            body = encode_prekey_message(4321, pk.pre_key_id, pk.signed_pre_key_id, pk.base_key, st.local_identity_public, inner)
            items.append((body, opk_priv))
        store: dict[int, bytes] = {}
        pc = CLOCK
        t0 = pc()
        for i, (body, opk_priv) in enumerate(items):
            m = PreKeySignalMessage.from_bytes(body)
            state = ratchet.new_state_bob(
                local_identity_pub=ident_pub,
                local_identity_priv=ident_priv,
                remote_identity=m.identity_key,
                signed_prekey_pub=spk_pub,
                signed_prekey_priv=spk_priv,
                one_time_prekey_priv=opk_priv,
                their_base_key=m.base_key,
            )
            state.remote_registration_id = m.registration_id
            state.local_registration_id = 1234
            ratchet.decrypt(state, m.message)
            rec = SessionRecord()
            rec.promote(state)
            store[i] = rec.to_bytes()
        return pc() - t0

    out["setup_responder"] = timer.sync(responder_batch)
    return out


GROUP_OPS: list[tuple[str, str]] = [
    ("group_encrypt", "(e) sender key: encrypt"),
    ("group_decrypt", "(e) sender key: decrypt"),
]


def bench_group_core(timer: Timer, pt: bytes) -> dict[str, dict[str, Any]]:
    """Sender keys through the pure layer: record bytes in a dict, parse, chain step, AES, XEdDSA, serialize."""
    out: dict[str, dict[str, Any]] = {}
    db = {"own": sk.new_own_record().to_bytes()}
    signers = sk.SigningKeyCache()
    trusted = SenderKeyRecord._trusted

    def enc_once(who: str = "own") -> bytes:
        rec = trusted(db[who])
        body = sk.encrypt(rec, pt, signers=signers)
        db[who] = rec.to_bytes()
        return body

    out["group_encrypt"] = timer.sync(_loop(enc_once))
    db["sender"] = sk.new_own_record().to_bytes()  # advanced only by the decrypt figure (no gaps)
    recv = SenderKeyRecord()
    sk.process_distribution(recv, sk.create_distribution(trusted(db["sender"])))
    db["recv"] = recv.to_bytes()

    def decrypt_batch(n: int) -> int:
        bodies = [enc_once("sender") for _ in range(n)]
        pc = CLOCK
        t0 = pc()
        for body in bodies:
            m = SenderKeyMessage.from_bytes(body)
            rec = trusted(db["recv"])
            sk.decrypt(rec, m)
            db["recv"] = rec.to_bytes()
        return pc() - t0

    out["group_decrypt"] = timer.sync(decrypt_batch)
    return out


def bench_floor(timer: Timer, size: int) -> dict[str, dict[str, Any]]:
    f = Floor(size)
    return {op: timer.sync(_loop(getattr(f, op))) for op, _ in OPS}


# ----------------------------------------------------------------------------------- peers
def run_peer(name: str, argv: list[str], timeout: float) -> dict[str, Any]:
    try:
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": f"{name}: {exc}"}
    if proc.returncode != 0:
        return {"error": f"{name}: exit {proc.returncode}: {proc.stderr.strip()[-500:]}"}
    try:
        line = [ln for ln in proc.stdout.splitlines() if ln.strip().startswith("{")][-1]
        return dict(json.loads(line))
    except (IndexError, ValueError) as exc:
        return {"error": f"{name}: unparsable output ({exc}): {proc.stdout[-300:]}"}


def peer_axolotl(seconds: float, size: int) -> dict[str, Any]:
    # axolotl's fastest configuration: protobuf's C++ runtime (Python 3.10 venv, `setup.sh --axolotl-cpp`)
    py = ROOT / ".venv-axolotl-cpp" / "bin" / "python"
    if not py.exists():
        py = ROOT / ".venv-axolotl" / "bin" / "python"
    script = ROOT / "bench" / "peers" / "axolotl_bench.py"
    if not script.exists():
        return {"error": f"{script.relative_to(ROOT)} missing"}
    if not py.exists():
        return {"error": ".venv-axolotl missing (run tests/interop/setup.sh)"}
    return run_peer("axolotl", [str(py), str(script), "--seconds", str(seconds), "--size", str(size)], 900)


def peer_libsignal(seconds: float, size: int) -> dict[str, Any]:
    script = ROOT / "bench" / "peers" / "libsignal_bench.js"
    node = shutil.which("node")
    if not script.exists():
        return {"error": f"{script.relative_to(ROOT)} missing"}
    if node is None:
        return {"error": "node not found"}
    if not (ROOT / "tests" / "interop" / "node" / "node_modules" / "@signalapp").exists():
        return {"error": "tests/interop/node not installed (run tests/interop/setup.sh)"}
    return run_peer("libsignal-node", [node, str(script), "--seconds", str(seconds), "--size", str(size)], 900)


def peer_baileys(seconds: float, size: int) -> dict[str, Any]:
    script = ROOT / "bench" / "peers" / "baileys_libsignal_bench.js"
    node = shutil.which("node")
    if not script.exists():
        return {"error": f"{script.relative_to(ROOT)} missing"}
    if node is None:
        return {"error": "node not found"}
    if not (ROOT / "bench" / "peers" / "baileys" / "node_modules" / "libsignal").exists():
        return {"error": "bench/peers/baileys/node_modules missing (run make bench)"}
    return run_peer("baileys-libsignal", [node, str(script), "--seconds", str(seconds), "--size", str(size)], 900)


# ----------------------------------------------------------------------------------- report
def machine_info(cpu: int | None) -> dict[str, Any]:
    model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def ver(p: str) -> str:
        try:
            return metadata.version(p)
        except metadata.PackageNotFoundError:
            return "?"

    try:
        from google.protobuf.internal import api_implementation

        pb_impl = api_implementation.Type()
    except ImportError:
        pb_impl = "?"
    try:
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        commit = "?"
    node = shutil.which("node")
    node_v = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip() if node else None
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": model,
        "cpus_online": os.cpu_count(),
        "pinned_cpu": cpu,
        "loadavg_at_start": os.getloadavg(),
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "wacrypto": f"{wacrypto.__version__} (git {commit})",
        "cryptography": ver("cryptography"),
        "pynacl": ver("PyNaCl"),
        "protobuf": f"{ver('protobuf')} ({pb_impl})",
        "trio": ver("trio"),
        "node": node_v,
    }


def render(res: dict[str, Any]) -> str:
    info, w, core, fl, ax, ls = (res[k] for k in ("machine", "wacrypto", "core", "floor", "axolotl", "libsignal_node"))
    bl: dict[str, Any] = res.get("baileys_libsignal", {"error": "not run"})

    def us(d: dict[str, Any], op: str) -> float | None:
        v = d.get(op)
        if isinstance(v, dict):
            return float(v["us"])
        return None

    def peer_us(d: dict[str, Any], op: str) -> float | None:
        v = d.get(PEER_KEYS[op])
        return float(v) if isinstance(v, (int, float)) else None

    def f(v: float | None, fmt: str = "{:.1f}") -> str:
        return "-" if v is None else fmt.format(v)

    hdr = ["operation", "wacrypto us", "msgs/s", "core us", "floor us", "wa/floor", "target",
           "axolotl us", "speedup", "libsignal-node us", "baileys us"]
    rows = []
    for op, label in OPS:
        wu, cu, fu = us(w, op), us(core, op), us(fl, op)
        au, lu, bu = peer_us(ax, op), peer_us(ls, op), peer_us(bl, op)
        ratio = wu / fu if wu and fu else None
        tgt = f"<={TARGET_FLOOR_RATIO[op]}x"
        if ratio is not None:
            tgt += " ok" if ratio <= TARGET_FLOOR_RATIO[op] else " MISS"
        sp = au / wu if au and wu else None
        sp_s = f(sp, "{:.2f}x")
        if op in TARGET_AXOLOTL_SPEEDUP and sp is not None:
            sp_s += " ok" if sp >= TARGET_AXOLOTL_SPEEDUP[op] else " MISS"
        rows.append([label, f(wu), f(1e6 / wu if wu else None, "{:,.0f}"), f(cu), f(fu), f(ratio, "{:.2f}x"),
                     tgt, f(au), sp_s, f(lu), f(bu)])
    widths = [max(len(r[i]) for r in [hdr, *rows]) for i in range(len(hdr))]

    def line(r: list[str]) -> str:
        return "  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r))
    out = [
        f"wacrypto Signal v3 benchmark (µs per operation, median of {res['rounds']} rounds; lower is better)",
        f"date {info['date']}  cpu {info['cpu_model']} (pinned to cpu {info['pinned_cpu']}, "
        f"load at start {', '.join(f'{x:.2f}' for x in info['loadavg_at_start'])})",
        f"{info['python']}  wacrypto {info['wacrypto']}  cryptography {info['cryptography']}  "
        f"PyNaCl {info['pynacl']}  protobuf {info['protobuf']}  trio {info['trio']}  node {info['node']}",
        f"clock {res['clock']}; plaintext {res['plaintext_bytes']} bytes; every operation loads, parses, re-serializes and stores "
        "the session record",
        "",
        line(hdr),
        line(["-" * x for x in widths]),
        *[line(r) for r in rows],
        *[f"{label:<{widths[0]}}  core {f(us(res.get('group_core', {}), op)):>6} us (sender keys: pure layer only)"
          for op, label in GROUP_OPS],
        "",
        "wacrypto = public async API (SessionCipher + MemoryKeyStore, one transaction/op, in trio.run);",
        "core     = pure sync core: parse record -> ratchet step -> serialize (no store/trust/async;",
        "           (d) without loading identity/prekey records);",
        "wa/floor = wacrypto / floor; speedup = axolotl / wacrypto (targets: (a),(b) <=1.5x floor and",
        "           >=3x axolotl; (c),(d) <=1.3x floor).",
        "baileys  = Baileys' pure-JS libsignal (npm libsignal, WhiskeySockets/libsignal-node) through Node; session",
        "           records stored as JSON.stringify(record.serialize()) (as Baileys' file store). Its (d) initiator",
        "           does no signed-prekey signature check (initOutgoing passes verifySignature isInit=true).",
        "floor definitions (bare library calls, fastest form; see bench_signal.py):",
        *[f"  {op:16s} {FLOOR_DEFINITIONS[op]}" for op, _ in OPS],
        "  HMAC = hmac.digest(sha256); HKDF(n) = extract + ceil(n/32) expand HMACs; AES = cryptography",
        "  Cipher(AES,CBC) encryptor/decryptor update+finalize; X25519/keygen = PyNaCl crypto_scalarmult(_base)",
        "  (+ os.urandom(32)); verify = PyNaCl crypto_sign_open on the Edwards key.",
        "spread (max-min)/median % per figure: "
        + "; ".join(
            f"{name} " + "/".join(f(d[op]["spread_pct"], "{:.0f}") if isinstance(d.get(op), dict) else "-" for op, _ in OPS)
            for name, d in (("wacrypto", w), ("core", core), ("floor", fl))
        ),
    ]
    for name, d in (("axolotl", ax), ("libsignal-node", ls)):
        if "error" in d:
            out.append(f"{name}: not measured: {d['error']}")
        else:
            extra = {k: v for k, v in d.items() if k.startswith("group_")}
            out.append(
                f"{name}: {d.get('implementation', name)} {d.get('version', '?')}"
                + (f", protobuf {d.get('protobuf')} ({d.get('protobuf_implementation')})" if "protobuf" in d else "")
                + (f"; also {extra}" if extra else "")
                + (f"; single measurement of ~{res['peer_seconds']} s per figure (peer's own harness)")
            )
    if "error" in bl:
        out.append(f"baileys: not measured: {bl['error']}")
    else:
        sv = bl.get("signature_verify_us")
        out.append(
            f"baileys: npm {bl.get('package', 'libsignal')} {bl.get('version', '?')} ({bl.get('implementation', '?')}; "
            f"curve25519-js {bl.get('curve25519_js', '?')}, protobufjs {bl.get('protobufjs', '?')})"
            + (f"; the skipped signature check alone costs {sv} us" if isinstance(sv, (int, float)) else "")
            + f"; single measurement of ~{res['peer_seconds']} s per figure (peer's own harness)"
        )
    return "\n".join(out) + "\n"


def pin(cpu: int | None, no_pin: bool) -> int | None:
    if no_pin or not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    target = cpu if cpu is not None else allowed[-1]
    try:
        os.sched_setaffinity(0, {target})  # inherited by the peer subprocesses
    except OSError:
        return None
    return target


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="~10x shorter rounds (smoke run)")
    ap.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: the last allowed one)")
    ap.add_argument("--no-pin", action="store_true", help="do not pin to one CPU")
    ap.add_argument("--size", type=int, default=64, help="plaintext bytes per message (default 64)")
    ap.add_argument("--no-peers", action="store_true", help="skip the peers (python-axolotl, libsignal-node, baileys)")
    ap.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: time.perf_counter_ns (default); cpu: time.thread_time_ns, for a loaded machine"
        " (the peers keep their own wall clock)",
    )
    ap.add_argument("--rounds", type=int, default=ROUNDS, help=f"measured rounds per figure (default {ROUNDS})")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results directory (default bench/results)")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")

    cpu = pin(args.cpu, args.no_pin)
    global CLOCK
    if args.clock == "cpu":
        CLOCK = time.thread_time_ns
    round_s = 0.03 if args.quick else 0.25
    peer_seconds = 0.15 if args.quick else 1.5
    timer = Timer(round_s, args.rounds)
    pt = bytes(range(256)) * (args.size // 256) + bytes(range(args.size % 256))
    res: dict[str, Any] = {
        "machine": machine_info(cpu),
        "unit": "us/op",
        "plaintext_bytes": args.size,
        "rounds": args.rounds,
        "round_seconds": round_s,
        "peer_seconds": peer_seconds,
        "clock": "time.perf_counter_ns (wall)" if args.clock == "wall" else "time.thread_time_ns (thread CPU time)",
        "floor_definitions": FLOOR_DEFINITIONS,
    }

    def log(msg: str) -> None:
        print(f"bench: {msg}", file=sys.stderr, flush=True)

    async def in_process() -> None:
        log("calibrating: floor")
        res["floor"] = bench_floor(timer, args.size)
        log("calibrating: wacrypto (async API, MemoryKeyStore)")
        res["wacrypto"] = await bench_wacrypto(timer, pt)
        log("calibrating: wacrypto core")
        res["core"] = await bench_core(timer, pt)
        log("calibrating: sender keys core")
        res["group_core"] = bench_group_core(timer, pt)
        await timer.run(log)

    trio.run(in_process)

    if args.no_peers:
        res["axolotl"] = {"error": "skipped (--no-peers)"}
        res["libsignal_node"] = {"error": "skipped (--no-peers)"}
        res["baileys_libsignal"] = {"error": "skipped (--no-peers)"}
    else:
        log("python-axolotl (subprocess)")
        res["axolotl"] = peer_axolotl(peer_seconds, args.size)
        log("libsignal-node (subprocess)")
        res["libsignal_node"] = peer_libsignal(peer_seconds, args.size)
        log("baileys libsignal (subprocess)")
        res["baileys_libsignal"] = peer_baileys(peer_seconds, args.size)

    res["ratios"] = {
        op: {
            "wacrypto_over_floor": round(res["wacrypto"][op]["us"] / res["floor"][op]["us"], 3),
            "core_over_floor": round(res["core"][op]["us"] / res["floor"][op]["us"], 3),
            "axolotl_over_wacrypto": (
                round(res["axolotl"][PEER_KEYS[op]] / res["wacrypto"][op]["us"], 2)
                if isinstance(res["axolotl"].get(PEER_KEYS[op]), (int, float))
                else None
            ),
            "libsignal_node_over_wacrypto": (
                round(res["libsignal_node"][PEER_KEYS[op]] / res["wacrypto"][op]["us"], 2)
                if isinstance(res["libsignal_node"].get(PEER_KEYS[op]), (int, float))
                else None
            ),
            "baileys_libsignal_over_wacrypto": (
                round(res["baileys_libsignal"][PEER_KEYS[op]] / res["wacrypto"][op]["us"], 2)
                if isinstance(res["baileys_libsignal"].get(PEER_KEYS[op]), (int, float))
                else None
            ),
        }
        for op, _ in OPS
    }
    text = render(res)
    sys.stdout.write(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "signal.json").write_text(json.dumps(res, indent=2) + "\n")
    (args.out / "signal.txt").write_text(text)
    log(f"wrote {args.out / 'signal.json'} and {args.out / 'signal.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
