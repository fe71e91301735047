"""Prekey bundles: what a device publishes so others can start a session with it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wacrypto.errors import InvalidMessageError
from wacrypto.limits import KEY_TYPE_DJB, MAX_PREKEY_ID, MAX_REGISTRATION_ID, PUBLIC_KEY_LEN, SIGNATURE_LEN
from wacrypto.primitives.xeddsa import xeddsa_verify

__all__ = ["PreKeyBundle"]


def _key(v: bytes, what: str) -> bytes:
    if not isinstance(v, bytes) or len(v) != PUBLIC_KEY_LEN or v[0] != KEY_TYPE_DJB:
        raise InvalidMessageError(f"bundle: {what} is not a 33-byte Curve25519 public key")
    return v


def _int(v: Any, limit: int, what: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= limit:
        raise InvalidMessageError(f"bundle: {what} out of range")
    return v


@dataclass(frozen=True, slots=True)
class PreKeyBundle:
    """A device's published keys. Validated on construction (untrusted input: InvalidMessageError)."""

    registration_id: int
    device_id: int
    identity_key: bytes
    signed_prekey_id: int
    signed_prekey: bytes
    signed_prekey_signature: bytes
    prekey_id: int | None = None
    prekey: bytes | None = None

    def __post_init__(self) -> None:
        _int(self.registration_id, MAX_REGISTRATION_ID, "registration id")
        _int(self.device_id, 0xFFFFFFFF, "device id")
        _key(self.identity_key, "identity key")
        _int(self.signed_prekey_id, MAX_PREKEY_ID, "signed prekey id")
        _key(self.signed_prekey, "signed prekey")
        if not isinstance(self.signed_prekey_signature, bytes) or len(self.signed_prekey_signature) != SIGNATURE_LEN:
            raise InvalidMessageError("bundle: signed prekey signature must be 64 bytes")
        if (self.prekey_id is None) != (self.prekey is None):
            raise InvalidMessageError("bundle: prekey id and prekey must come together")
        if self.prekey_id is not None:
            _int(self.prekey_id, MAX_PREKEY_ID, "prekey id")
            assert self.prekey is not None
            _key(self.prekey, "one-time prekey")

    def signature_valid(self) -> bool:
        """True iff the signed prekey is signed by the identity key (over its 33-byte form)."""
        return xeddsa_verify(self.identity_key, self.signed_prekey, self.signed_prekey_signature)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (hex for bytes), the shape ``wacrypto peer`` uses."""
        d: dict[str, Any] = {
            "registration_id": self.registration_id,
            "device_id": self.device_id,
            "identity_key": self.identity_key.hex(),
            "signed_prekey_id": self.signed_prekey_id,
            "signed_prekey": self.signed_prekey.hex(),
            "signed_prekey_signature": self.signed_prekey_signature.hex(),
        }
        if self.prekey_id is not None and self.prekey is not None:
            d["prekey_id"] = self.prekey_id
            d["prekey"] = self.prekey.hex()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreKeyBundle:
        """Parse the JSON-friendly form. Untrusted input: raises InvalidMessageError."""
        if not isinstance(d, dict):
            raise InvalidMessageError("bundle must be an object")

        def hx(name: str, required: bool = True) -> bytes | None:
            v = d.get(name)
            if v is None:
                if required:
                    raise InvalidMessageError(f"bundle: missing {name}")
                return None
            if not isinstance(v, str):
                raise InvalidMessageError(f"bundle: {name} must be hex")
            try:
                return bytes.fromhex(v)
            except ValueError:
                raise InvalidMessageError(f"bundle: {name} is not hex") from None

        try:
            ik, spk, sig = hx("identity_key"), hx("signed_prekey"), hx("signed_prekey_signature")
            assert ik is not None and spk is not None and sig is not None
            return cls(
                registration_id=d.get("registration_id", 0),
                device_id=d.get("device_id", 1),
                identity_key=ik,
                signed_prekey_id=d.get("signed_prekey_id"),  # type: ignore[arg-type]
                signed_prekey=spk,
                signed_prekey_signature=sig,
                prekey_id=d.get("prekey_id"),
                prekey=hx("prekey", required=False),
            )
        except TypeError:
            raise InvalidMessageError("bundle: wrong field types") from None

    def __repr__(self) -> str:
        return (
            f"PreKeyBundle(registration_id={self.registration_id}, device_id={self.device_id}, "
            f"signed_prekey_id={self.signed_prekey_id}, prekey_id={self.prekey_id})"
        )
