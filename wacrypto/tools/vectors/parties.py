"""Deterministic Signal parties for the session families: a user with fixed keys on a memory store.

Each party is driven by wacrypto's :class:`~wacrypto.session.cipher.SessionCipher` with the family's
seeded RNG and a fixed clock, so the messages it sends are the same on every run. The receiver side of
a vector case is described by the fields of the peer protocol's ``new_identity`` (and optionally a
session record to ``import_session``), so any implementation that speaks the protocol can replay it.
"""

from __future__ import annotations

from typing import Any, Final

from wacrypto.address import Address
from wacrypto.primitives.keys import KeyPair, PrivateKey, Rng, clamp
from wacrypto.session import account
from wacrypto.session.cipher import SessionCipher
from wacrypto.signal.bundle import PreKeyBundle
from wacrypto.signal.records import PreKeyRecord, SignedPreKeyRecord
from wacrypto.store.memory import MemoryKeyStore

__all__ = ["Party", "step", "FIXED_TIME"]

FIXED_TIME: Final = 1_700_000_000.0


class Party:
    """One user (device 1) with fixed identity, signed prekey and one-time prekey."""

    def __init__(self, name: str, rng: Rng, *, registration_id: int, signed_prekey_id: int = 1, prekey_id: int = 1) -> None:
        self.name = name
        self.rng = rng
        self.registration_id = registration_id
        self.identity = KeyPair(PrivateKey(clamp(rng(32))))
        self.spk: SignedPreKeyRecord = account.make_signed_prekey(
            self.identity, signed_prekey_id, int(FIXED_TIME * 1000), rng, private=clamp(rng(32)))
        self.opk = PreKeyRecord(prekey_id, KeyPair(PrivateKey(clamp(rng(32)))))
        self.store = MemoryKeyStore()
        self.cipher = SessionCipher(self.store, rng=rng, clock=lambda: FIXED_TIME)

    @property
    def address(self) -> Address:
        return Address(self.name, 1)

    async def setup(self) -> Party:
        await account.create_account(self.store, identity=self.identity, registration_id=self.registration_id,
                                     signed_prekey_id=self.spk.id, prekeys=0, rng=self.rng, clock=lambda: FIXED_TIME)
        async with self.store.transaction() as tx:
            await tx.store_signed_prekey(self.spk.id, self.spk.to_bytes())
            await tx.store_prekey(self.opk.id, self.opk.to_bytes())
        return self

    def new_identity(self) -> dict[str, Any]:
        """The ``new_identity`` request fields that give a peer exactly this party's keys."""
        return {
            "name": self.name,
            "device_id": 1,
            "registration_id": self.registration_id,
            "identity_private": self.identity.private.to_bytes().hex(),
            "identity_public": self.identity.public.to_bytes().hex(),
            "signed_prekey_id": self.spk.id,
            "signed_prekey_private": self.spk.key_pair.private.to_bytes().hex(),
            "signed_prekey_signature": self.spk.signature.hex(),
            "prekey_id": self.opk.id,
            "prekey_private": self.opk.key_pair.private.to_bytes().hex(),
        }

    def bundle(self, *, with_prekey: bool = True) -> PreKeyBundle:
        return PreKeyBundle(
            registration_id=self.registration_id, device_id=1, identity_key=self.identity.public.to_bytes(),
            signed_prekey_id=self.spk.id, signed_prekey=self.spk.key_pair.public.to_bytes(),
            signed_prekey_signature=self.spk.signature,
            prekey_id=self.opk.id if with_prekey else None,
            prekey=self.opk.key_pair.public.to_bytes() if with_prekey else None,
        )

    async def send(self, to: Party, text: bytes) -> dict[str, Any]:
        """Encrypt ``text`` for ``to``: a step dict (``type``, ``body``, ``plaintext``)."""
        m = await self.cipher.encrypt(to.address, text)
        return {"remote": self.name, "remote_device": 1, "type": m.type, "body": m.body.hex(),
                "expect": "plaintext", "plaintext": text.hex()}

    async def receive(self, step_: dict[str, Any], sender: Party) -> bytes:
        """Decrypt a step sent by ``sender`` (advances this party's state as a real receiver would)."""
        return await self.cipher.decrypt(sender.address, int(step_["type"]), bytes.fromhex(step_["body"]))

    async def record(self, other: Party) -> str:
        """This party's session record with ``other`` (libsignal ``RecordStructure``), hex."""
        return (await self.cipher.export_session(other.address)).hex()


def step(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy of a step with fields changed (e.g. a tampered body expected to be rejected)."""
    out = dict(base)
    out.update(changes)
    if out.get("expect") == "reject":
        out.pop("plaintext", None)
    return out
