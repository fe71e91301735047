"""Safety numbers: libsignal's published vector, symmetry, comparison of scanned codes, limits."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from wacrypto.errors import InvalidArgumentError, InvalidMessageError, LegacyMessageError
from wacrypto.limits import MAX_FINGERPRINT_ITERATIONS, MAX_STABLE_ID_LEN
from wacrypto.primitives.keys import KeyPair
from wacrypto.signal.fingerprint import Fingerprint, create_fingerprint, displayable_digits, fingerprint_hash

V = json.loads((Path(__file__).parents[1] / "vectors" / "fingerprint_libsignal.json").read_text())
ALICE_KEY = bytes.fromhex(V["alice_identity"])
BOB_KEY = bytes.fromhex(V["bob_identity"])


def alice_view() -> Fingerprint:
    return create_fingerprint(V["alice_stable_id"], ALICE_KEY, V["bob_stable_id"], BOB_KEY, iterations=V["iterations"])


def bob_view() -> Fingerprint:
    return create_fingerprint(V["bob_stable_id"], BOB_KEY, V["alice_stable_id"], ALICE_KEY, iterations=V["iterations"])


def test_libsignal_vector_display_and_scannable() -> None:
    a, b = alice_view(), bob_view()
    assert a.display == b.display == V["display"]
    assert a.scannable.hex() == V["alice_scannable"]
    assert b.scannable.hex() == V["bob_scannable"]
    assert len(a.display) == 60 and a.display.isdigit()
    assert "".join(a.display_groups()) == a.display and len(a.display_groups()) == 12


def test_hash_definition_independently() -> None:
    """h = SHA512(0x0000 || key || id || key), then iterations-1 times SHA512(h || key)."""
    h = hashlib.sha512(b"\x00\x00" + ALICE_KEY + V["alice_stable_id"].encode() + ALICE_KEY).digest()
    for _ in range(V["iterations"] - 1):
        h = hashlib.sha512(h + ALICE_KEY).digest()
    assert fingerprint_hash(ALICE_KEY, V["alice_stable_id"]) == h
    assert displayable_digits(h) in V["display"]


def test_compare_scanned_codes() -> None:
    a, b = alice_view(), bob_view()
    assert a.compare(b.scannable) and b.compare(a.scannable)
    assert not a.compare(a.scannable)  # our own code is not the peer's
    mallory = create_fingerprint(V["bob_stable_id"], KeyPair.generate().public.to_bytes(), V["alice_stable_id"], ALICE_KEY)
    assert not a.compare(mallory.scannable)
    assert mallory.display != a.display


def test_compare_rejects_garbage_and_other_versions() -> None:
    a, b = alice_view(), bob_view()
    for bad in (b"", b"\xff\xff", b"\x08\x01", b"\x08\x01\x12\x02\x0a\x00\x1a\x02\x0a\x00", b"\x00" * 300):
        with pytest.raises(InvalidMessageError):
            a.compare(bad)
    v2 = create_fingerprint(V["bob_stable_id"], BOB_KEY, V["alice_stable_id"], ALICE_KEY, version=2)
    assert v2.display == a.display  # the display does not depend on the scannable version
    with pytest.raises(LegacyMessageError):
        a.compare(v2.scannable)
    assert b.compare(a.scannable)


def test_iterations_and_inputs_are_bounded() -> None:
    for it in (0, MAX_FINGERPRINT_ITERATIONS + 1, True):
        with pytest.raises(InvalidArgumentError):
            create_fingerprint("a", ALICE_KEY, "b", BOB_KEY, iterations=it)  # type: ignore[arg-type]
    assert create_fingerprint("a", ALICE_KEY, "b", BOB_KEY, iterations=1).display != V["display"]
    with pytest.raises(InvalidArgumentError):
        create_fingerprint("a" * (MAX_STABLE_ID_LEN + 1), ALICE_KEY, "b", BOB_KEY, iterations=1)
    create_fingerprint("a" * MAX_STABLE_ID_LEN, ALICE_KEY, "b", BOB_KEY, iterations=1)
    with pytest.raises(InvalidArgumentError):
        create_fingerprint("a", ALICE_KEY[1:], "b", BOB_KEY)
    with pytest.raises(InvalidArgumentError):
        create_fingerprint("a", ALICE_KEY, "b", BOB_KEY, version=3)


def test_equality_and_repr() -> None:
    assert alice_view() == alice_view() and alice_view() != bob_view()
    assert V["display"] in repr(alice_view())
