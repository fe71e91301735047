"""Server certificate chain of the chat transport: root -> intermediate -> leaf (sans-I/O).

The chain travels encrypted in the server's handshake payload. :meth:`CertChain.verify` checks,
failing closed with :class:`CertificateError` on the first problem:

1. the intermediate is signed (XEdDSA) by the trusted root key and its ``issuer_serial`` is 0;
2. the leaf is signed by the intermediate's key and its ``issuer_serial`` is the intermediate's serial;
3. ``now`` lies inside both validity windows;
4. the leaf key equals the server static key from the handshake (constant-time compare).
"""

from __future__ import annotations

import wacrypto.limits as _limits

import hmac
from dataclasses import dataclass
from typing import Final, final

from wacrypto.transport._pb import DECODE_ERRORS
from wacrypto._proto import noise_pb2
from wacrypto.errors import CertificateError, InvalidArgumentError
from wacrypto.limits import SIGNATURE_LEN
from wacrypto.primitives.keys import PrivateKey, PublicKey, Rng, system_rng
from wacrypto.primitives.xeddsa import xeddsa_sign, xeddsa_verify

__all__ = ["CertChain", "CertDetails", "NoiseCertificate"]

_KEY_LEN: Final = 32
_MAX_UINT32: Final = 0xFFFFFFFF
_MAX_UINT64: Final = (1 << 64) - 1
MAX_CERT_CHAIN_LEN: Final = _limits.MAX_CERT_CHAIN_LEN


@final
@dataclass(frozen=True, slots=True)
class CertDetails:
    serial: int
    issuer_serial: int
    key: bytes  # raw 32-byte Curve25519 u coordinate
    not_before: int  # unix seconds
    not_after: int  # unix seconds

    def __post_init__(self) -> None:
        if not (0 <= self.serial <= _MAX_UINT32 and 0 <= self.issuer_serial <= _MAX_UINT32):
            raise InvalidArgumentError("certificate serials are uint32")
        if len(self.key) != _KEY_LEN:
            raise InvalidArgumentError("certificate key must be 32 bytes")
        if not (0 <= self.not_before <= self.not_after <= _MAX_UINT64):
            raise InvalidArgumentError("certificate validity window is invalid")

    def to_bytes(self) -> bytes:
        m = noise_pb2.CertChain.NoiseCertificate.Details(
            serial=self.serial,
            issuer_serial=self.issuer_serial,
            key=self.key,
            not_before=self.not_before,
            not_after=self.not_after,
        )
        out: bytes = m.SerializeToString(deterministic=True)
        return out

    @classmethod
    def from_bytes(cls, data: bytes) -> CertDetails:
        m = noise_pb2.CertChain.NoiseCertificate.Details()
        try:
            m.ParseFromString(data)
        except DECODE_ERRORS:
            raise CertificateError("malformed certificate details") from None
        for field in ("serial", "issuer_serial", "key", "not_before", "not_after"):
            if not m.HasField(field):
                raise CertificateError(f"certificate details lack {field}")
        try:
            return cls(m.serial, m.issuer_serial, bytes(m.key), m.not_before, m.not_after)
        except InvalidArgumentError as exc:
            raise CertificateError(f"invalid certificate details: {exc}") from None


@final
@dataclass(frozen=True, slots=True)
class NoiseCertificate:
    details: bytes  # serialized CertDetails: the signed bytes, kept exactly as received
    signature: bytes

    @classmethod
    def issue(cls, details: CertDetails, signer: PrivateKey, rng: Rng = system_rng) -> NoiseCertificate:
        raw = details.to_bytes()
        return cls(raw, xeddsa_sign(signer.to_bytes(), raw, rng(64)))

    def parsed(self) -> CertDetails:
        return CertDetails.from_bytes(self.details)

    def _to_pb(self, m: noise_pb2.CertChain.NoiseCertificate) -> None:
        m.details = self.details
        m.signature = self.signature

    @classmethod
    def _from_pb(cls, m: noise_pb2.CertChain.NoiseCertificate, what: str) -> NoiseCertificate:
        if not m.HasField("details") or not m.HasField("signature"):
            raise CertificateError(f"{what} certificate is incomplete")
        if len(m.signature) != SIGNATURE_LEN:
            raise CertificateError(f"{what} signature has the wrong length")
        return cls(bytes(m.details), bytes(m.signature))


@final
@dataclass(frozen=True, slots=True)
class CertChain:
    leaf: NoiseCertificate
    intermediate: NoiseCertificate

    @classmethod
    def create(
        cls,
        root: PrivateKey,
        intermediate: PrivateKey,
        leaf_key: PublicKey,
        *,
        not_before: int,
        intermediate_not_after: int,
        leaf_not_after: int,
        intermediate_serial: int = 1,
        leaf_serial: int = 2,
        rng: Rng = system_rng,
    ) -> CertChain:
        """Issue an intermediate (signed by ``root``) and a leaf for ``leaf_key`` (signed by it)."""
        inter = CertDetails(intermediate_serial, 0, intermediate.public_key().u, not_before, intermediate_not_after)
        leaf = CertDetails(leaf_serial, intermediate_serial, leaf_key.u, not_before, leaf_not_after)
        return cls(
            leaf=NoiseCertificate.issue(leaf, intermediate, rng),
            intermediate=NoiseCertificate.issue(inter, root, rng),
        )

    def to_bytes(self) -> bytes:
        m = noise_pb2.CertChain()
        self.leaf._to_pb(m.leaf)
        self.intermediate._to_pb(m.intermediate)
        out: bytes = m.SerializeToString(deterministic=True)
        return out

    @classmethod
    def from_bytes(cls, data: bytes) -> CertChain:
        """Parse untrusted bytes; raises only :class:`CertificateError`."""
        if len(data) > MAX_CERT_CHAIN_LEN:
            raise CertificateError("certificate chain too long")
        m = noise_pb2.CertChain()
        try:
            m.ParseFromString(data)
        except DECODE_ERRORS:
            raise CertificateError("malformed certificate chain") from None
        if not m.HasField("leaf") or not m.HasField("intermediate"):
            raise CertificateError("certificate chain lacks a leaf or an intermediate")
        return cls(
            leaf=NoiseCertificate._from_pb(m.leaf, "leaf"),
            intermediate=NoiseCertificate._from_pb(m.intermediate, "intermediate"),
        )

    def verify(self, trusted_root: PublicKey, server_static: PublicKey, now: float) -> CertDetails:
        """Verify the chain; returns the leaf details. Raises :class:`CertificateError`, fail closed."""
        inter = self.intermediate.parsed()
        if not xeddsa_verify(trusted_root.u, self.intermediate.details, self.intermediate.signature):
            raise CertificateError("intermediate certificate is not signed by the trusted root")
        if inter.issuer_serial != 0:
            raise CertificateError("intermediate certificate has a non-zero issuer serial")
        leaf = self.leaf.parsed()
        if not xeddsa_verify(inter.key, self.leaf.details, self.leaf.signature):
            raise CertificateError("leaf certificate is not signed by the intermediate")
        if leaf.issuer_serial != inter.serial:
            raise CertificateError("leaf certificate issuer serial does not match the intermediate")
        for what, d in (("intermediate", inter), ("leaf", leaf)):
            if not d.not_before <= now <= d.not_after:
                raise CertificateError(f"{what} certificate is outside its validity window")
        if not hmac.compare_digest(leaf.key, server_static.u):
            raise CertificateError("leaf certificate key is not the server's static key")
        return leaf
