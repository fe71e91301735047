"""Account setup and prekey lifecycle: identity, registration id, one-time prekeys, signed prekeys."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from wacrypto.errors import InvalidArgumentError, NoIdentityError, NoSignedPreKeyError
from wacrypto.limits import DEFAULT_PREKEY_BATCH, MAX_PREKEY_BATCH, MAX_PREKEY_ID
from wacrypto.primitives.keys import KeyPair, PrivateKey, Rng, system_rng
from wacrypto.primitives.xeddsa import xeddsa_sign
from wacrypto.signal.bundle import PreKeyBundle
from wacrypto.signal.records import (
    PreKeyRecord,
    SignedPreKeyRecord,
    identity_from_bytes,
    identity_to_bytes,
)
from wacrypto.store.protocols import KeyStore, LocalIdentity, Transaction

__all__ = [
    "create_account",
    "generate_prekeys",
    "rotate_signed_prekey",
    "get_bundle",
    "local_identity",
    "next_prekey_id",
    "SIGNED_PREKEY_GRACE_MS",
]

_META_NEXT_PREKEY: Final = "next_prekey_id"
_META_SIGNED_CURRENT: Final = "signed_prekey_current"
SIGNED_PREKEY_GRACE_MS: Final = 30 * 24 * 3600 * 1000
"""Old signed prekeys are kept this long after rotation (late PreKey messages still decrypt)."""


def next_prekey_id(current: int) -> int:
    """The id after ``current`` in the 24-bit space, skipping 0 (some peers read an absent id as 0)."""
    return 1 if current >= MAX_PREKEY_ID else current + 1


def new_registration_id(rng: Rng = system_rng) -> int:
    """A random registration id in 1..16380 as libsignal makes them."""
    return int.from_bytes(rng(4), "big") % 16380 + 1


def make_signed_prekey(identity: KeyPair, key_id: int, timestamp_ms: int, rng: Rng = system_rng, private: bytes | None = None) -> SignedPreKeyRecord:
    pair = KeyPair(PrivateKey(private)) if private is not None else KeyPair.generate(rng)
    sig = xeddsa_sign(identity.private.to_bytes(), pair.public.to_bytes(), rng(64))
    return SignedPreKeyRecord(key_id, pair, sig, timestamp_ms)


async def create_account(
    store: KeyStore,
    *,
    identity: KeyPair | None = None,
    registration_id: int | None = None,
    signed_prekey_id: int = 1,
    prekeys: int = DEFAULT_PREKEY_BATCH,
    rng: Rng = system_rng,
    clock: Callable[[], float] = time.time,
) -> LocalIdentity:
    """Create (or replace) the local identity with a signed prekey and a batch of one-time prekeys."""
    pair = identity or KeyPair.generate(rng)
    reg = registration_id if registration_id is not None else new_registration_id(rng)
    if not 0 <= reg <= 0xFFFFFFFF:
        raise InvalidArgumentError("registration id must be a uint32")
    local = LocalIdentity(identity_to_bytes(pair), reg)
    spk = make_signed_prekey(pair, signed_prekey_id, int(clock() * 1000), rng)
    async with store.transaction() as tx:
        await tx.set_local_identity(local)
        await tx.store_signed_prekey(spk.id, spk.to_bytes())
        await tx.set_meta(_META_SIGNED_CURRENT, spk.id.to_bytes(4, "big"))
    if prekeys:
        await generate_prekeys(store, prekeys, rng=rng)
    return local


async def local_identity(tx: Transaction) -> tuple[KeyPair, int]:
    """The account's identity key pair and registration id (raises NoIdentityError before setup)."""
    local = await tx.get_local_identity()
    if local is None:
        raise NoIdentityError("no local identity: create the account first")
    # we wrote this row ourselves: skip re-deriving the public key
    return identity_from_bytes(local.identity_pair, trusted=True), local.registration_id


async def generate_prekeys(store: KeyStore, count: int = DEFAULT_PREKEY_BATCH, *, rng: Rng = system_rng) -> list[PreKeyRecord]:
    """Generate and store ``count`` one-time prekeys with consecutive 24-bit ids (wrapping past 0xFFFFFF)."""
    if not 1 <= count <= MAX_PREKEY_BATCH:
        raise InvalidArgumentError(f"count must be in 1..{MAX_PREKEY_BATCH}")
    out = []
    async with store.transaction() as tx:
        raw = await tx.get_meta(_META_NEXT_PREKEY)
        nid = int.from_bytes(raw, "big") if raw else 1
        for _ in range(count):
            rec = PreKeyRecord(nid, KeyPair.generate(rng))
            await tx.store_prekey(nid, rec.to_bytes())
            out.append(rec)
            nid = next_prekey_id(nid)
        await tx.set_meta(_META_NEXT_PREKEY, nid.to_bytes(4, "big"))
    return out


async def rotate_signed_prekey(
    store: KeyStore,
    *,
    rng: Rng = system_rng,
    clock: Callable[[], float] = time.time,
    grace_ms: int = SIGNED_PREKEY_GRACE_MS,
) -> SignedPreKeyRecord:
    """Make a new signed prekey current; delete old ones older than ``grace_ms`` (never the previous one)."""
    now_ms = int(clock() * 1000)
    async with store.transaction() as tx:
        pair, _ = await local_identity(tx)
        cur_raw = await tx.get_meta(_META_SIGNED_CURRENT)
        cur = int.from_bytes(cur_raw, "big") if cur_raw else 0
        new = make_signed_prekey(pair, next_prekey_id(cur), now_ms, rng)
        await tx.store_signed_prekey(new.id, new.to_bytes())
        await tx.set_meta(_META_SIGNED_CURRENT, new.id.to_bytes(4, "big"))
        for sid in await tx.list_signed_prekeys():
            if sid in (new.id, cur):
                continue
            raw = await tx.load_signed_prekey(sid)
            if raw is not None and SignedPreKeyRecord.from_bytes(raw).timestamp < now_ms - grace_ms:
                await tx.remove_signed_prekey(sid)
    return new


async def get_bundle(store: KeyStore, device_id: int = 1, *, with_prekey: bool = True, prekey_id: int | None = None) -> PreKeyBundle:
    """The bundle to publish: the current signed prekey and (optionally) one one-time prekey.

    Each call hands out a different one-time prekey, one that was never handed out nor used, while any
    is left (the hand-out is recorded in the store, so it survives restarts); when none is left the
    bundle has none (``prekey_id=None``): :func:`generate_prekeys` makes more. ``prekey_id`` names the
    one-time prekey to publish instead (``None`` in the bundle if it is not stored).
    """
    async with store.transaction() as tx:
        pair, reg = await local_identity(tx)
        cur_raw = await tx.get_meta(_META_SIGNED_CURRENT)
        if not cur_raw:
            raise NoSignedPreKeyError("no signed prekey")
        spk_raw = await tx.load_signed_prekey(int.from_bytes(cur_raw, "big"))
        if spk_raw is None:
            raise NoSignedPreKeyError("current signed prekey is missing")
        spk = SignedPreKeyRecord.from_bytes(spk_raw)
        opk: PreKeyRecord | None = None
        if with_prekey:
            got = await tx.hand_out_prekey(prekey_id)
            opk = PreKeyRecord.from_bytes(got[1]) if got is not None else None
    return PreKeyBundle(
        registration_id=reg,
        device_id=device_id,
        identity_key=pair.public.to_bytes(),
        signed_prekey_id=spk.id,
        signed_prekey=spk.key_pair.public.to_bytes(),
        signed_prekey_signature=spk.signature,
        prekey_id=opk.id if opk else None,
        prekey=opk.key_pair.public.to_bytes() if opk else None,
    )
