"""ADV device verification: a companion is accepted only when its account signed it, it signed
itself, and the account's signed key-index list still holds it. Everything else fails closed."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wacrypto._proto import adv_pb2
from wacrypto.errors import InvalidArgumentError, InvalidMessageError, InvalidSignatureError, PeerError, RevokedDeviceError
from wacrypto.primitives.keys import KeyPair
from wacrypto.testing import SeededRng
from wacrypto.whatsapp.adv import (
    DeviceIdentity,
    KeyIndexList,
    countersign_device_identity,
    sign_device_identity,
    sign_key_index_list,
    unwrap_pairing_identity,
    verify_device_identity,
    verify_key_index_list,
    wrap_pairing_identity,
)

RNG = SeededRng(b"adv")
ACCOUNT = KeyPair.generate(RNG)
DEVICE = KeyPair.generate(RNG)
OTHER = KeyPair.generate(RNG)


def paired(details: DeviceIdentity, device: KeyPair = DEVICE, account: KeyPair = ACCOUNT) -> bytes:
    return countersign_device_identity(device, sign_device_identity(account, device.public, details, RNG), RNG)


def key_list(*indexes: int, raw_id: int = 77, hosted: bool = False) -> KeyIndexList:
    signed = sign_key_index_list(ACCOUNT, KeyIndexList(raw_id, 1_700_000_000, max(indexes, default=0),
                                                       frozenset(indexes), hosted), RNG)
    return verify_key_index_list(signed, ACCOUNT.public)


@pytest.mark.parametrize("hosted", [False, True])
def test_a_paired_device_verifies(hosted: bool) -> None:
    details = DeviceIdentity(raw_id=77, timestamp=1_700_000_000, key_index=3, hosted=hosted)
    got = verify_device_identity(paired(details), device_identity=DEVICE.public, account_identity=ACCOUNT.public,
                                 key_index_list=key_list(1, 3))
    assert got == details


def test_the_account_key_may_be_stripped() -> None:
    signed = adv_pb2.SignedDeviceIdentity.FromString(paired(DeviceIdentity(77, 1, 3)))
    signed.ClearField("account_signature_key")  # as servers forward other users' devices
    assert verify_device_identity(signed.SerializeToString(), device_identity=DEVICE.public,
                                  account_identity=ACCOUNT.public, key_index_list=key_list(3)).key_index == 3


def test_a_removed_device_is_refused() -> None:
    signed = paired(DeviceIdentity(77, 1, 3))
    with pytest.raises(RevokedDeviceError, match="no longer accepted"):
        verify_device_identity(signed, device_identity=DEVICE.public, account_identity=ACCOUNT.public,
                               key_index_list=key_list(1, 4))
    with pytest.raises(RevokedDeviceError, match="another key-index list"):
        verify_device_identity(signed, device_identity=DEVICE.public, account_identity=ACCOUNT.public,
                               key_index_list=key_list(3, raw_id=78))


def test_forgeries_are_refused() -> None:
    good = paired(DeviceIdentity(77, 1, 3))
    lst = key_list(3)
    # another device's key presented with this identity; another account; a device signed by a stranger
    for device, account, signed in (
        (OTHER.public, ACCOUNT.public, good),
        (DEVICE.public, OTHER.public, good),
        (DEVICE.public, ACCOUNT.public, paired(DeviceIdentity(77, 1, 3), account=OTHER)),
    ):
        with pytest.raises(InvalidSignatureError):
            verify_device_identity(signed, device_identity=device, account_identity=account, key_index_list=lst)
    # the details changed after signing (a key index the list accepts)
    m = adv_pb2.SignedDeviceIdentity.FromString(good)
    m.details = DeviceIdentity(77, 1, 1).to_bytes()
    with pytest.raises(InvalidSignatureError):
        verify_device_identity(m.SerializeToString(), device_identity=DEVICE.public,
                               account_identity=ACCOUNT.public, key_index_list=key_list(1, 3))
    # no device signature: the primary's half alone is not enough
    half = sign_device_identity(ACCOUNT, DEVICE.public, DeviceIdentity(77, 1, 3), RNG)
    with pytest.raises(PeerError):
        verify_device_identity(half, device_identity=DEVICE.public, account_identity=ACCOUNT.public,
                               key_index_list=lst)


def test_a_companion_refuses_an_account_signature_not_over_its_key() -> None:
    half = sign_device_identity(ACCOUNT, OTHER.public, DeviceIdentity(77, 1, 3), RNG)
    with pytest.raises(InvalidSignatureError):
        countersign_device_identity(DEVICE, half, RNG)


def test_key_index_list_is_checked() -> None:
    lst = KeyIndexList(5, 9, 2, frozenset({0, 2}))
    signed = sign_key_index_list(ACCOUNT, lst, RNG)
    assert verify_key_index_list(signed, ACCOUNT.public) == lst
    with pytest.raises(InvalidSignatureError):
        verify_key_index_list(signed, OTHER.public)
    m = adv_pb2.SignedKeyIndexList.FromString(signed)
    m.details = KeyIndexList(5, 9, 3, frozenset({0, 2, 3})).to_bytes()  # a device slipped in
    with pytest.raises(InvalidSignatureError):
        verify_key_index_list(m.SerializeToString(), ACCOUNT.public)


def test_pairing_container() -> None:
    secret = RNG(32)
    signed = sign_device_identity(ACCOUNT, DEVICE.public, DeviceIdentity(77, 1, 3), RNG)
    for hosted in (False, True):
        box = wrap_pairing_identity(signed, secret, hosted=hosted)
        assert unwrap_pairing_identity(box, secret) == signed
        with pytest.raises(InvalidSignatureError):
            unwrap_pairing_identity(box, RNG(32))
    tampered = adv_pb2.SignedDeviceIdentityHMAC.FromString(wrap_pairing_identity(signed, secret))
    tampered.account_type = adv_pb2.HOSTED  # switching the type changes the MAC input
    with pytest.raises(InvalidSignatureError):
        unwrap_pairing_identity(tampered.SerializeToString(), secret)
    with pytest.raises(InvalidArgumentError):
        wrap_pairing_identity(signed, b"short")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_raises_only_peer_errors(data: bytes) -> None:
    lst = key_list(3)
    for call in (
        lambda: verify_device_identity(data, device_identity=DEVICE.public, account_identity=ACCOUNT.public,
                                       key_index_list=lst),
        lambda: verify_key_index_list(data, ACCOUNT.public),
        lambda: unwrap_pairing_identity(data, bytes(32)),
        lambda: DeviceIdentity.from_bytes(data),
        lambda: KeyIndexList.from_bytes(data),
    ):
        try:
            call()
        except PeerError:
            pass


def test_size_bounds() -> None:
    with pytest.raises(InvalidMessageError, match="longer than"):
        verify_key_index_list(b"\x0a" + b"\x00" * 5000, ACCOUNT.public)
