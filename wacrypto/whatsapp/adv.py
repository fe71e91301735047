"""ADV ("account device verification"): proof that a companion device belongs to an account.

An account's primary device signs each companion's identity key (a :class:`DeviceIdentity` with
the companion's key index); the companion countersigns; the primary also signs the list of key
indexes it still accepts (a :class:`KeyIndexList`), so a removed device is refused from then on.
Neither whatsmeow nor Baileys checks these for other users' devices; here a device of another user
is accepted only when :func:`verify_device_identity` passes, and everything fails closed:

- the account signature must verify with the account's identity key as we know it (from the
  primary's session), over ``[6, 0] || details || device identity key`` (``[6, 5]`` hosted);
- the device signature must verify with the device's own identity key, over
  ``[6, 1] || details || device identity key || account identity key`` (``[6, 6]`` hosted);
- the account's key-index list must verify (``[6, 2] || details``), be the same list
  (``raw_id``) and still hold the device's key index.

Keys in these messages are raw 32-byte Curve25519 u coordinates; signatures are XEdDSA. Pure: no
I/O; time and randomness are parameters.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Final, final

from wacrypto._proto import adv_pb2 as _pb
from wacrypto.errors import InvalidArgumentError, InvalidMessageError, InvalidSignatureError, RevokedDeviceError
from wacrypto.limits import MAX_ADV_MESSAGE_LEN, MAX_KEY_INDEXES, SIGNATURE_LEN
from wacrypto.primitives.kdf import hmac_sha256
from wacrypto.primitives.keys import KeyPair, PublicKey, Rng, system_rng
from wacrypto.primitives.protobuf import parse_message

__all__ = [
    "DeviceIdentity",
    "KeyIndexList",
    "countersign_device_identity",
    "device_identity_details",
    "sign_device_identity",
    "sign_key_index_list",
    "unwrap_pairing_identity",
    "verify_device_identity",
    "verify_key_index_list",
    "wrap_pairing_identity",
]

ACCOUNT_PREFIX: Final = bytes((6, 0))
DEVICE_PREFIX: Final = bytes((6, 1))
KEY_INDEX_PREFIX: Final = bytes((6, 2))
HOSTED_ACCOUNT_PREFIX: Final = bytes((6, 5))
HOSTED_DEVICE_PREFIX: Final = bytes((6, 6))


@final
@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """What an account's primary states about one companion device."""

    raw_id: int  # the key-index list this device belongs to
    timestamp: int  # seconds
    key_index: int
    hosted: bool = False  # account type: hosted accounts use other signature prefixes

    def to_bytes(self) -> bytes:
        m = _pb.DeviceIdentity(raw_id=self.raw_id, timestamp=self.timestamp, key_index=self.key_index)
        if self.hosted:
            m.account_type = _pb.HOSTED
        return m.SerializeToString()

    @classmethod
    def from_bytes(cls, data: bytes) -> DeviceIdentity:
        m = parse_message(_pb.DeviceIdentity, data, "ADV device identity", max_len=MAX_ADV_MESSAGE_LEN)
        if not (m.HasField("raw_id") and m.HasField("key_index")):
            raise InvalidMessageError("ADV device identity: raw_id or key_index missing")
        return cls(m.raw_id, m.timestamp, m.key_index, m.account_type == _pb.HOSTED)


@final
@dataclass(frozen=True, slots=True)
class KeyIndexList:
    """The key indexes an account still accepts for its companion devices."""

    raw_id: int
    timestamp: int
    current_index: int
    valid_indexes: frozenset[int]
    hosted: bool = False

    def to_bytes(self) -> bytes:
        m = _pb.KeyIndexList(raw_id=self.raw_id, timestamp=self.timestamp, current_index=self.current_index,
                             valid_indexes=sorted(self.valid_indexes))
        if self.hosted:
            m.account_type = _pb.HOSTED
        return m.SerializeToString()

    @classmethod
    def from_bytes(cls, data: bytes) -> KeyIndexList:
        m = parse_message(_pb.KeyIndexList, data, "ADV key-index list", max_len=MAX_ADV_MESSAGE_LEN)
        if not m.HasField("raw_id"):
            raise InvalidMessageError("ADV key-index list: raw_id missing")
        if len(m.valid_indexes) > MAX_KEY_INDEXES:
            raise InvalidMessageError(f"ADV key-index list: more than {MAX_KEY_INDEXES} indexes")
        return cls(m.raw_id, m.timestamp, m.current_index, frozenset(m.valid_indexes), m.account_type == _pb.HOSTED)


def _key32(data: bytes, what: str) -> PublicKey:
    if len(data) != 32:
        raise InvalidMessageError(f"{what}: a key must be 32 bytes, got {len(data)}")
    return PublicKey(data)


def _signature(data: bytes, what: str) -> bytes:
    if len(data) != SIGNATURE_LEN:
        raise InvalidMessageError(f"{what}: a signature must be {SIGNATURE_LEN} bytes, got {len(data)}")
    return data


def _account_message(details: bytes, device: PublicKey, hosted: bool) -> bytes:
    return (HOSTED_ACCOUNT_PREFIX if hosted else ACCOUNT_PREFIX) + details + device.u


def _device_message(details: bytes, device: PublicKey, account: PublicKey, hosted: bool) -> bytes:
    return (HOSTED_DEVICE_PREFIX if hosted else DEVICE_PREFIX) + details + device.u + account.u


# --------------------------------------------------------------------------- key-index lists
def sign_key_index_list(account: KeyPair, lst: KeyIndexList, rng: Rng = system_rng) -> bytes:
    """The signed list (SignedKeyIndexList bytes), as an account's primary publishes it."""
    details = lst.to_bytes()
    sig = account.private.sign(KEY_INDEX_PREFIX + details, rng)
    return _pb.SignedKeyIndexList(details=details, account_signature=sig,
                                  account_signature_key=account.public.u).SerializeToString()


def verify_key_index_list(signed: bytes, account_identity: PublicKey) -> KeyIndexList:
    """The list, if ``account_identity`` signed it; :class:`InvalidSignatureError` otherwise."""
    m = parse_message(_pb.SignedKeyIndexList, signed, "ADV signed key-index list", max_len=MAX_ADV_MESSAGE_LEN)
    if m.HasField("account_signature_key") and _key32(m.account_signature_key, "ADV key-index list") != account_identity:
        raise InvalidSignatureError("ADV key-index list is signed by another account key")
    sig = _signature(m.account_signature, "ADV key-index list")
    if not account_identity.verify(KEY_INDEX_PREFIX + m.details, sig):
        raise InvalidSignatureError("ADV key-index list signature does not verify")
    return KeyIndexList.from_bytes(m.details)


# --------------------------------------------------------------------------- device identities
def sign_device_identity(
    account: KeyPair, device_identity: PublicKey, details: DeviceIdentity, rng: Rng = system_rng
) -> bytes:
    """The primary's half: SignedDeviceIdentity bytes with the account signature (no device signature yet)."""
    raw = details.to_bytes()
    sig = account.private.sign(_account_message(raw, device_identity, details.hosted), rng)
    return _pb.SignedDeviceIdentity(details=raw, account_signature_key=account.public.u,
                                    account_signature=sig).SerializeToString()


def countersign_device_identity(device: KeyPair, signed: bytes, rng: Rng = system_rng) -> bytes:
    """The companion's half: check the account signature over our own key, then add the device signature."""
    m = parse_message(_pb.SignedDeviceIdentity, signed, "ADV device identity", max_len=MAX_ADV_MESSAGE_LEN)
    account = _key32(m.account_signature_key, "ADV device identity")
    details = DeviceIdentity.from_bytes(m.details)
    if not account.verify(_account_message(m.details, device.public, details.hosted),
                          _signature(m.account_signature, "ADV device identity")):
        raise InvalidSignatureError("ADV account signature over this device does not verify")
    m.device_signature = device.private.sign(_device_message(m.details, device.public, account, details.hosted), rng)
    return m.SerializeToString()


def device_identity_details(signed: bytes) -> DeviceIdentity:
    """The details of a signed device identity, **not verified**: what a server that stores the bytes
    as given reads its key index from (a hint; clients verify with :func:`verify_device_identity`)."""
    m = parse_message(_pb.SignedDeviceIdentity, signed, "ADV device identity", max_len=MAX_ADV_MESSAGE_LEN)
    return DeviceIdentity.from_bytes(m.details)


def verify_device_identity(
    signed: bytes, *, device_identity: PublicKey, account_identity: PublicKey, key_index_list: KeyIndexList
) -> DeviceIdentity:
    """Check that the device whose identity key is ``device_identity`` belongs to the account whose
    identity key is ``account_identity`` and is still accepted by ``key_index_list`` (already verified
    with :func:`verify_key_index_list`). Returns the device's details; raises
    :class:`InvalidSignatureError` (a signature fails or names another account),
    :class:`RevokedDeviceError` (the list no longer holds the device) or :class:`InvalidMessageError`.
    """
    m = parse_message(_pb.SignedDeviceIdentity, signed, "ADV device identity", max_len=MAX_ADV_MESSAGE_LEN)
    details = DeviceIdentity.from_bytes(m.details)
    # the server may strip the account key (Baileys does when it sends its own); when present it must match
    if m.HasField("account_signature_key") and _key32(m.account_signature_key, "ADV device identity") != account_identity:
        raise InvalidSignatureError("ADV device identity is signed by another account key")
    if not account_identity.verify(_account_message(m.details, device_identity, details.hosted),
                                   _signature(m.account_signature, "ADV device identity")):
        raise InvalidSignatureError("ADV account signature does not verify")
    if not device_identity.verify(_device_message(m.details, device_identity, account_identity, details.hosted),
                                  _signature(m.device_signature, "ADV device identity")):
        raise InvalidSignatureError("ADV device signature does not verify")
    if key_index_list.raw_id != details.raw_id:
        raise RevokedDeviceError("ADV device identity belongs to another key-index list (account re-registered?)")
    if details.key_index not in key_index_list.valid_indexes:
        raise RevokedDeviceError(f"ADV key index {details.key_index} is no longer accepted by the account")
    return details


# --------------------------------------------------------------------------- pairing container
def wrap_pairing_identity(signed: bytes, adv_secret: bytes, *, hosted: bool = False) -> bytes:
    """SignedDeviceIdentityHMAC bytes: ``signed`` under HMAC-SHA256 keyed by the pairing secret."""
    if len(adv_secret) != 32:
        raise InvalidArgumentError("the ADV secret must be 32 bytes")
    mac = hmac_sha256(adv_secret, (HOSTED_ACCOUNT_PREFIX if hosted else b"") + signed)
    m = _pb.SignedDeviceIdentityHMAC(details=signed, hmac=mac)
    if hosted:
        m.account_type = _pb.HOSTED
    return m.SerializeToString()


def unwrap_pairing_identity(container: bytes, adv_secret: bytes) -> bytes:
    """The SignedDeviceIdentity bytes inside, if the HMAC matches (constant-time); raises otherwise."""
    if len(adv_secret) != 32:
        raise InvalidArgumentError("the ADV secret must be 32 bytes")
    m = parse_message(_pb.SignedDeviceIdentityHMAC, container, "ADV pairing container", max_len=MAX_ADV_MESSAGE_LEN)
    hosted = m.account_type == _pb.HOSTED
    want = hmac_sha256(adv_secret, (HOSTED_ACCOUNT_PREFIX if hosted else b"") + m.details)
    if not hmac.compare_digest(want, m.hmac):
        raise InvalidSignatureError("ADV pairing HMAC does not match")
    return bytes(m.details)
