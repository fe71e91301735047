"""Certificate chain: verifies when right, fails closed on every kind of wrong."""

from __future__ import annotations

import dataclasses

import pytest

from wacrypto.errors import CertificateError
from wacrypto.primitives.keys import KeyPair
from wacrypto.transport.certs import CertChain, CertDetails, NoiseCertificate

NOW = 1_700_000_000


@pytest.fixture(scope="module")
def pki() -> dict[str, KeyPair]:
    return {n: KeyPair.generate() for n in ("root", "inter", "server", "other")}


def chain(pki: dict[str, KeyPair], **kw: int) -> CertChain:
    args = dict(not_before=NOW - 10, intermediate_not_after=NOW + 1000, leaf_not_after=NOW + 100)
    args.update(kw)
    return CertChain.create(pki["root"].private, pki["inter"].private, pki["server"].public, **args)


def test_valid_chain_round_trips_and_verifies(pki: dict[str, KeyPair]) -> None:
    c = chain(pki)
    again = CertChain.from_bytes(c.to_bytes())
    assert again == c
    leaf = again.verify(pki["root"].public, pki["server"].public, NOW)
    assert leaf.key == pki["server"].public.u and leaf.issuer_serial == 1


def test_wrong_root(pki: dict[str, KeyPair]) -> None:
    with pytest.raises(CertificateError, match="root"):
        chain(pki).verify(pki["other"].public, pki["server"].public, NOW)


def test_leaf_key_must_be_the_handshake_static(pki: dict[str, KeyPair]) -> None:
    with pytest.raises(CertificateError, match="static"):
        chain(pki).verify(pki["root"].public, pki["other"].public, NOW)


@pytest.mark.parametrize("when", [NOW - 11, NOW + 101, NOW + 1001])
def test_validity_windows(pki: dict[str, KeyPair], when: int) -> None:
    with pytest.raises(CertificateError, match="validity"):
        chain(pki).verify(pki["root"].public, pki["server"].public, when)


def test_window_edges_are_inclusive(pki: dict[str, KeyPair]) -> None:
    for when in (NOW - 10, NOW + 100):
        chain(pki).verify(pki["root"].public, pki["server"].public, when)


def test_issuer_serials(pki: dict[str, KeyPair]) -> None:
    with pytest.raises(CertificateError, match="issuer serial"):
        c = chain(pki, intermediate_serial=3)
        bad_leaf = CertDetails(2, 9, pki["server"].public.u, NOW - 10, NOW + 100)
        c = dataclasses.replace(c, leaf=NoiseCertificate.issue(bad_leaf, pki["inter"].private))
        c.verify(pki["root"].public, pki["server"].public, NOW)
    inter = CertDetails(1, 5, pki["inter"].public.u, NOW - 10, NOW + 1000)
    c = dataclasses.replace(chain(pki), intermediate=NoiseCertificate.issue(inter, pki["root"].private))
    with pytest.raises(CertificateError, match="non-zero issuer"):
        c.verify(pki["root"].public, pki["server"].public, NOW)


def test_leaf_signed_by_someone_else(pki: dict[str, KeyPair]) -> None:
    leaf = CertDetails(2, 1, pki["server"].public.u, NOW - 10, NOW + 100)
    c = dataclasses.replace(chain(pki), leaf=NoiseCertificate.issue(leaf, pki["other"].private))
    with pytest.raises(CertificateError, match="intermediate"):
        c.verify(pki["root"].public, pki["server"].public, NOW)


def test_tampered_bytes_fail_closed(pki: dict[str, KeyPair]) -> None:
    raw = chain(pki).to_bytes()
    for i in range(len(raw)):
        b = bytearray(raw)
        b[i] ^= 0x20
        try:
            CertChain.from_bytes(bytes(b)).verify(pki["root"].public, pki["server"].public, NOW)
        except CertificateError:
            continue
        pytest.fail(f"flipping byte {i} was accepted")


@pytest.mark.parametrize("garbage", [b"", b"\x0a", b"\xff" * 40, b"\x0a\x02\x0a\x00"])
def test_garbage(garbage: bytes, pki: dict[str, KeyPair]) -> None:
    with pytest.raises(CertificateError):
        CertChain.from_bytes(garbage).verify(pki["root"].public, pki["server"].public, NOW)
