#!/usr/bin/env python3
"""Micro-benchmark of python-axolotl 0.2.3 (the peer we compare against).

Run with the interpreter of ``.venv-axolotl`` (``tests/interop/setup.sh`` creates it)::

    .venv-axolotl/bin/python bench/peers/axolotl_bench.py [--seconds 1.5] [--size 64]

Prints one JSON object (µs per operation) on stdout. Every figure goes through axolotl's own
in-memory stores, which keep the session record *serialized*: each operation loads (parses)
and stores (re-serializes) the whole record, exactly as a persistent store would.

Figures:
  encrypt_us            (a) SessionCipher.encrypt on an established chain (type-2 messages, the
                            peer has answered), incl. record load/store and message serialization.
  decrypt_us            (b) parse + SessionCipher.decryptMsg of the next in-order message of an
                            established receiving chain (no DH step), incl. record load/store.
  pingpong_us_per_msg   (c) messages alternate direction, so every message makes the receiver do
                            a DH ratchet step (new receiving and sending chain); one "message" =
                            one encrypt by its sender + one parse/decrypt by its receiver.
  setup_initiator_us    (d) SessionBuilder.processPreKeyBundle (signature check, X3DH, new record
                            stored) for a fresh remote address, bundle with a one-time prekey.
  setup_responder_us    (d) parse + decryptPkmsg of the first PreKeySignalMessage from a fresh
                            address (X3DH as Bob, first decrypt, record stored, prekey removed).
  group_encrypt_us      GroupCipher.encrypt (sender-key record load/store, XEdDSA signature).
  group_decrypt_us      GroupCipher.decrypt of the next in-order SenderKeyMessage (signature
                            verify, record load/store).

Fastest configuration: axolotl's generated ``*_pb2`` modules predate protobuf 3.19, so the upb
runtime (protobuf >= 4.21) cannot load them; only the pure-Python runtime (any release) or the C++
runtime of protobuf <= 3.20.x can. That C++ runtime ships as wheels for CPython <= 3.10 only, so
the fastest working configuration is CPython 3.10 + protobuf 3.20.3 (cpp), about 2-3x faster on
(a)/(b) than pure Python. ``tests/interop/setup.sh --axolotl-cpp`` builds it as
``.venv-axolotl-cpp``; ``.venv-axolotl`` (CPython 3.11, the interop driver's venv) runs pure
Python. This script picks the C++ runtime whenever it is installed and reports which one ran
(``protobuf_implementation``).
"""

from __future__ import annotations

import os

if "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION" not in os.environ:
    # axolotl's generated *_pb2 modules predate protobuf 3.19: they load with the C++ runtime of
    # protobuf <= 3.20.x (fastest; wheels exist for CPython <= 3.10) or the pure-Python runtime,
    # never with upb (protobuf >= 4.21). Pick the fastest one present. Must precede any protobuf import.
    import importlib.util

    try:
        _has_cpp = importlib.util.find_spec("google.protobuf.pyext._message") is not None
    except ImportError:
        _has_cpp = False
    os.environ["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = "cpp" if _has_cpp else "python"

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from importlib import metadata  # noqa: E402
from typing import Callable  # noqa: E402

from axolotl.axolotladdress import AxolotlAddress  # noqa: E402
from axolotl.ecc.curve import Curve  # noqa: E402
from axolotl.groups.groupcipher import GroupCipher  # noqa: E402
from axolotl.groups.groupsessionbuilder import GroupSessionBuilder  # noqa: E402
from axolotl.groups.senderkeyname import SenderKeyName  # noqa: E402
from axolotl.protocol.prekeywhispermessage import PreKeyWhisperMessage  # noqa: E402
from axolotl.protocol.senderkeydistributionmessage import SenderKeyDistributionMessage  # noqa: E402
from axolotl.protocol.whispermessage import WhisperMessage  # noqa: E402
from axolotl.sessionbuilder import SessionBuilder  # noqa: E402
from axolotl.sessioncipher import SessionCipher  # noqa: E402
from axolotl.state.prekeybundle import PreKeyBundle  # noqa: E402
from axolotl.state.prekeyrecord import PreKeyRecord  # noqa: E402
from axolotl.state.signedprekeyrecord import SignedPreKeyRecord  # noqa: E402
from axolotl.tests.groups.inmemorysenderkeystore import InMemorySenderKeyStore  # noqa: E402
from axolotl.tests.inmemoryaxolotlstore import InMemoryAxolotlStore  # noqa: E402
from google.protobuf.internal import api_implementation  # noqa: E402


class Party:
    def __init__(self, name: str, signed_prekey_id: int = 1) -> None:
        self.name = name
        self.store = InMemoryAxolotlStore()
        ident = self.store.getIdentityKeyPair()
        spk = Curve.generateKeyPair()
        sig = Curve.calculateSignature(ident.getPrivateKey(), spk.getPublicKey().serialize())
        self.store.storeSignedPreKey(
            signed_prekey_id, SignedPreKeyRecord(signed_prekey_id, int(time.time() * 1000), spk, sig)
        )
        self.spk_id = signed_prekey_id
        self.next_prekey = 1

    def bundle(self) -> PreKeyBundle:
        pid = self.next_prekey
        self.next_prekey += 1
        kp = Curve.generateKeyPair()
        self.store.storePreKey(pid, PreKeyRecord(pid, kp))
        spk = self.store.loadSignedPreKey(self.spk_id)
        return PreKeyBundle(
            self.store.getLocalRegistrationId(), 1, pid, kp.getPublicKey(), self.spk_id,
            spk.getKeyPair().getPublicKey(), spk.getSignature(), self.store.getIdentityKeyPair().getPublicKey(),
        )

    def cipher(self, remote: str) -> SessionCipher:
        return SessionCipher(self.store, self.store, self.store, self.store, remote, 1)

    def builder(self, remote: str) -> SessionBuilder:
        return SessionBuilder(self.store, self.store, self.store, self.store, remote, 1)


def measure(fn: Callable[[int], float], seconds: float, rounds: int = 5) -> tuple[float, float, int]:
    """fn(n) runs n operations and returns the seconds spent on them (preparation excluded).

    Warm up, calibrate n for ``seconds`` in total, run it as ``rounds`` equal rounds; return
    (best round µs/op, median round µs/op, total n). The best round is the figure: on a shared
    machine it is the one least disturbed by other processes.
    """
    fn(20)
    per = fn(20) / 20
    total = max(5 * rounds, math.ceil(seconds / max(per, 1e-7)))
    per_round = max(5, total // rounds)
    times = []
    for _ in range(rounds):
        gc.collect()
        times.append(fn(per_round) / per_round * 1e6)
    return min(times), statistics.median(times), per_round * rounds


def established(plaintext: bytes) -> tuple[Party, Party]:
    alice, bob = Party("alice"), Party("bob")
    alice.builder("bob").processPreKeyBundle(bob.bundle())
    m = alice.cipher("bob").encrypt(plaintext)
    bob.cipher("alice").decryptPkmsg(PreKeyWhisperMessage(serialized=m.serialize()))
    r = bob.cipher("alice").encrypt(plaintext)
    alice.cipher("bob").decryptMsg(WhisperMessage(serialized=r.serialize()))
    return alice, bob


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=1.5, help="target measuring time per figure")
    ap.add_argument("--size", type=int, default=64, help="plaintext bytes per message")
    args = ap.parse_args()
    pt = bytes(range(256)) * (args.size // 256) + bytes(range(args.size % 256))
    secs = args.seconds
    results: dict[str, float] = {}
    medians: dict[str, float] = {}
    iters: dict[str, int] = {}

    def record(name: str, m: tuple[float, float, int]) -> None:
        results[name], medians[name], iters[name.replace("_us", "").replace("_per_msg", "")] = m

    # (a) encrypt on an existing chain
    alice, bob = established(pt)
    enc = alice.cipher("bob")

    def do_encrypt(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            enc.encrypt(pt)
        return time.perf_counter() - start

    record("encrypt_us", measure(do_encrypt, secs))

    # (b) decrypt on an existing chain (messages pre-generated, decrypted in order)
    alice, bob = established(pt)
    a_enc, b_dec = alice.cipher("bob"), bob.cipher("alice")

    def do_decrypt(n: int) -> float:
        msgs = [a_enc.encrypt(pt).serialize() for _ in range(n)]
        start = time.perf_counter()
        for body in msgs:
            b_dec.decryptMsg(WhisperMessage(serialized=body))
        return time.perf_counter() - start

    record("decrypt_us", measure(do_decrypt, secs))

    # (c) ping-pong: every message alternates direction -> a DH step at each receiver
    alice, bob = established(pt)
    ab, ba = alice.cipher("bob"), bob.cipher("alice")

    def do_pingpong(n: int) -> float:
        start = time.perf_counter()
        for i in range(n):
            if i % 2 == 0:
                ba.decryptMsg(WhisperMessage(serialized=ab.encrypt(pt).serialize()))
            else:
                ab.decryptMsg(WhisperMessage(serialized=ba.encrypt(pt).serialize()))
        return time.perf_counter() - start

    record("pingpong_us_per_msg", measure(do_pingpong, secs))

    # (d) initiator: process a bundle for a fresh address (bundles prepared outside the timing)
    init = Party("alice")
    target = Party("bob")
    counter = [0]

    def do_initiator(n: int) -> float:
        bundles = [target.bundle() for _ in range(n)]
        names = [f"bob{counter[0] + i}" for i in range(n)]
        counter[0] += n
        start = time.perf_counter()
        for name, b in zip(names, bundles):
            init.builder(name).processPreKeyBundle(b)
        return time.perf_counter() - start

    record("setup_initiator_us", measure(do_initiator, secs))

    # (d) responder: first PreKey message from a fresh address (messages prepared outside the timing)
    sender = Party("alice")
    responder = Party("bob")

    def do_responder(n: int) -> float:
        base = counter[0]
        counter[0] += n
        bodies = []
        for i in range(n):
            name = f"bob{base + i}"
            sender.builder(name).processPreKeyBundle(responder.bundle())
            bodies.append((f"alice{base + i}", sender.cipher(name).encrypt(pt).serialize()))
        start = time.perf_counter()
        for name, body in bodies:
            responder.cipher(name).decryptPkmsg(PreKeyWhisperMessage(serialized=body))
        return time.perf_counter() - start

    record("setup_responder_us", measure(do_responder, secs))

    # group: encrypt, then decrypt in order
    g_sender, g_receiver = InMemorySenderKeyStore(), InMemorySenderKeyStore()
    name = SenderKeyName("group-1", AxolotlAddress("alice", 1))
    skdm = GroupSessionBuilder(g_sender).create(name)
    GroupSessionBuilder(g_receiver).process(name, SenderKeyDistributionMessage(serialized=skdm.serialize()))
    g_enc, g_dec = GroupCipher(g_sender, name), GroupCipher(g_receiver, name)

    def do_group_encrypt(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            g_enc.encrypt(pt)
        return time.perf_counter() - start

    record("group_encrypt_us", measure(do_group_encrypt, secs))

    # re-sync the receiver: a fresh pair so decrypts stay in order without skipped keys
    g_sender, g_receiver = InMemorySenderKeyStore(), InMemorySenderKeyStore()
    skdm = GroupSessionBuilder(g_sender).create(name)
    GroupSessionBuilder(g_receiver).process(name, SenderKeyDistributionMessage(serialized=skdm.serialize()))
    g_enc, g_dec = GroupCipher(g_sender, name), GroupCipher(g_receiver, name)

    def do_group_decrypt(n: int) -> float:
        bodies = [g_enc.encrypt(pt) for _ in range(n)]
        start = time.perf_counter()
        for body in bodies:
            g_dec.decrypt(body)
        return time.perf_counter() - start

    record("group_decrypt_us", measure(do_group_decrypt, secs))

    out = {
        "implementation": "python-axolotl",
        "version": metadata.version("python-axolotl"),
        "python": platform.python_version(),
        "protobuf": metadata.version("protobuf"),
        "protobuf_implementation": api_implementation.Type(),
        "cryptography": metadata.version("cryptography"),
        "plaintext_bytes": args.size,
        "unit": "us/op",
        **{k: round(v, 1) for k, v in results.items()},
        "msgs_per_s": {
            k.replace("_us", "").replace("_per_msg", ""): round(1e6 / v) for k, v in results.items()
        },
        "median_round_us": {k: round(v, 1) for k, v in medians.items()},
        "iterations": iters,
        "method": "best of 5 equal rounds (median in median_round_us), after warm-up",
        "store": "axolotl in-memory stores (record serialized per operation)",
    }
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
