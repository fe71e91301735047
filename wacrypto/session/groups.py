"""Async group recipes: sender keys through the key store, and fan-out of one payload to many devices.

Every :class:`GroupCipher` operation is one store transaction: load the sender-key record, run the
pure step of :mod:`wacrypto.signal.senderkeys` on a freshly parsed copy, store it on success. A
failed decrypt (forged signature, duplicate, too far ahead, garbage) commits nothing.

:func:`fan_out` encrypts one payload (typically a SenderKeyDistributionMessage) for N recipient
devices over their pairwise sessions, with one batched ``load_sessions`` and one batched
``store_sessions`` inside one transaction. A device without a usable session (or with an identity
we no longer trust) is reported in :attr:`FanOutResult.failures`; it does not fail the batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, cast, final

from wacrypto.address import Address
from wacrypto.session.cipher import CiphertextMessage, SessionCipher
from wacrypto.errors import (
    InvalidArgumentError,
    MissingStateError,
    NoSenderKeyError,
    NoSessionError,
    UntrustedIdentityError,
)
from wacrypto.limits import DEFAULT_MAX_GROUP_FORWARD_JUMP, MAX_FORWARD_JUMP_CEILING, MAX_GROUP_ID_LEN
from wacrypto.primitives.keys import Rng, system_rng
from wacrypto.signal import senderkeys
from wacrypto.signal.senderkeys import SenderKeyRecord, SigningKeyCache
from wacrypto.store.protocols import KeyStore, Transaction
from wacrypto.wire.messages import SenderKeyDistributionMessage, SenderKeyMessage

__all__ = ["FanOutResult", "GroupCipher", "SENDER_KEY_TYPE", "fan_out", "fan_out_in"]

SENDER_KEY_TYPE: Final = 7  # message type of a SenderKeyMessage
_MAX_GROUP_ID_LEN: Final = MAX_GROUP_ID_LEN


def _group_id(group_id: str) -> str:
    if not isinstance(group_id, str) or not group_id:
        raise InvalidArgumentError("group_id must be a non-empty string")
    if len(group_id) > _MAX_GROUP_ID_LEN or "\x00" in group_id:
        raise InvalidArgumentError(f"group_id is longer than {_MAX_GROUP_ID_LEN} characters or contains NUL")
    return group_id


def _address(a: Address, what: str) -> Address:
    if not isinstance(a, Address):
        raise InvalidArgumentError(f"{what} must be an Address")
    return a


def sender_key_lock(group_id: str, sender: Address) -> str:
    """The store lock of ``sender``'s sender key in ``group_id`` (pass it to ``store.transaction``
    with the pairwise addresses to use :meth:`GroupCipher.encrypt_in` and friends in one transaction)."""
    return f"senderkey/{group_id}/{sender}"


_lock_name = sender_key_lock


@final
class GroupCipher:
    """Sender-key group messaging over a key store (WhatsApp format).

    The sender-key name is ``(group_id, sender address)``; our own key is stored under our own
    address. ``max_forward_jump`` bounds how many iterations a received message may skip ahead
    (default 2000, at most 25000); keys of skipped iterations are kept (at most 2000 per state) so
    late messages still decrypt.
    """

    def __init__(
        self,
        store: KeyStore,
        *,
        max_forward_jump: int = DEFAULT_MAX_GROUP_FORWARD_JUMP,
        rng: Rng = system_rng,
    ) -> None:
        if not isinstance(max_forward_jump, int) or not 1 <= max_forward_jump <= MAX_FORWARD_JUMP_CEILING:
            raise InvalidArgumentError(f"max_forward_jump must be in 1..{MAX_FORWARD_JUMP_CEILING}")
        self.store = store
        self.max_forward_jump = max_forward_jump
        self._rng = rng
        self._signers = SigningKeyCache()

    def __repr__(self) -> str:
        return f"GroupCipher(store={self.store!r}, max_forward_jump={self.max_forward_jump})"

    # ------------------------------------------------------------------ own sender key
    async def create_distribution(self, group_id: str, own_address: Address) -> bytes:
        """The SKDM of our sender key for ``group_id`` (created on first use). Send it to each
        member inside the pairwise session (see :meth:`distribute` / :func:`fan_out`)."""
        gid, own = _group_id(group_id), _address(own_address, "own_address")
        async with self.store.transaction(_lock_name(gid, own)) as tx:
            return await self.create_distribution_in(tx, gid, own)

    async def create_distribution_in(self, tx: Transaction, group_id: str, own_address: Address) -> bytes:
        raw = await tx.load_sender_key(group_id, own_address)
        rec = SenderKeyRecord._trusted(raw) if raw else None
        if rec is None or rec.is_empty():
            rec = senderkeys.new_own_record(self._rng)
            await tx.store_sender_key(group_id, own_address, rec.to_bytes())
        return senderkeys.create_distribution(rec).to_bytes()

    async def rotate(self, group_id: str, own_address: Address, removed: Iterable[Address] = ()) -> bytes:
        """Replace our sender key for ``group_id`` by a new one (after a member left) and forget
        the sender keys of the ``removed`` members, in one transaction. Returns the new SKDM,
        to be distributed to the remaining members only."""
        gid, own = _group_id(group_id), _address(own_address, "own_address")
        gone = [_address(a, "removed member") for a in removed]
        async with self.store.transaction(_lock_name(gid, own), *(_lock_name(gid, a) for a in gone)) as tx:
            rec = senderkeys.new_own_record(self._rng)
            await tx.store_sender_key(gid, own, rec.to_bytes())
            for a in gone:
                await tx.delete_sender_key(gid, a)
            return senderkeys.create_distribution(rec).to_bytes()

    async def distribute(
        self,
        group_id: str,
        own_address: Address,
        recipients: Sequence[Address],
        session_cipher: SessionCipher | None = None,
    ) -> tuple[bytes, FanOutResult]:
        """Create (on first use) our SKDM and encrypt it for every recipient device, all in one
        transaction. Returns the SKDM bytes and the per-device result."""
        gid, own = _group_id(group_id), _address(own_address, "own_address")
        addrs = _unique(recipients)
        cipher = session_cipher if session_cipher is not None else SessionCipher(self.store)
        async with self.store.transaction(_lock_name(gid, own), *addrs) as tx:
            skdm = await self.create_distribution_in(tx, gid, own)
            return skdm, await fan_out_in(tx, addrs, skdm, cipher)

    # ------------------------------------------------------------------ receiving keys
    async def process_distribution(self, group_id: str, sender: Address, distribution: bytes) -> None:
        """Install the sender key of ``sender`` from its SKDM (as decrypted from the pairwise session)."""
        gid, snd = _group_id(group_id), _address(sender, "sender")
        skdm = SenderKeyDistributionMessage.from_bytes(distribution)
        async with self.store.transaction(_lock_name(gid, snd)) as tx:
            await self.process_distribution_in(tx, gid, snd, skdm)

    async def process_distribution_in(
        self, tx: Transaction, group_id: str, sender: Address, skdm: SenderKeyDistributionMessage
    ) -> None:
        raw = await tx.load_sender_key(group_id, sender)
        rec = SenderKeyRecord._trusted(raw) if raw else SenderKeyRecord()
        if senderkeys.process_distribution(rec, skdm):
            await tx.store_sender_key(group_id, sender, rec.to_bytes())

    async def has_sender_key(self, group_id: str, sender: Address) -> bool:
        gid, snd = _group_id(group_id), _address(sender, "sender")
        async with self.store.transaction(_lock_name(gid, snd)) as tx:
            raw = await tx.load_sender_key(gid, snd)
        return raw is not None and not SenderKeyRecord._trusted(raw).is_empty()

    async def forget(self, group_id: str, sender: Address) -> None:
        """Delete the sender key of ``sender`` in ``group_id`` (member left, or our own before rotation)."""
        gid, snd = _group_id(group_id), _address(sender, "sender")
        async with self.store.transaction(_lock_name(gid, snd)) as tx:
            await tx.delete_sender_key(gid, snd)

    async def import_sender_key(self, group_id: str, sender: Address, record: bytes) -> None:
        """Install a sender-key record written by libsignal, python-axolotl, whatsmeow or us."""
        gid, snd = _group_id(group_id), _address(sender, "sender")
        rec = SenderKeyRecord.from_bytes(record)
        async with self.store.transaction(_lock_name(gid, snd)) as tx:
            await tx.store_sender_key(gid, snd, rec.to_bytes())

    async def export_sender_key(self, group_id: str, sender: Address) -> bytes:
        """The stored record (libsignal ``SenderKeyRecordStructure``)."""
        gid, snd = _group_id(group_id), _address(sender, "sender")
        async with self.store.transaction(_lock_name(gid, snd)) as tx:
            raw = await tx.load_sender_key(gid, snd)
        if raw is None:
            raise NoSenderKeyError(f"no sender key for {snd} in this group")
        return raw

    # ------------------------------------------------------------------ messages
    async def encrypt(self, group_id: str, own_address: Address, plaintext: bytes) -> bytes:
        """Encrypt for the group with our sender key; returns the SenderKeyMessage bytes (type 7)."""
        gid, own = _group_id(group_id), _address(own_address, "own_address")
        if not isinstance(plaintext, (bytes, bytearray, memoryview)):
            raise InvalidArgumentError("plaintext must be bytes")
        async with self.store.transaction(_lock_name(gid, own)) as tx:
            return await self.encrypt_in(tx, gid, own, bytes(plaintext))

    async def encrypt_in(self, tx: Transaction, group_id: str, own_address: Address, plaintext: bytes) -> bytes:
        raw = await tx.load_sender_key(group_id, own_address)
        if raw is None:
            raise NoSenderKeyError("no own sender key for this group: call create_distribution first")
        rec = SenderKeyRecord._trusted(raw)
        body = senderkeys.encrypt(rec, plaintext, rng=self._rng, signers=self._signers)
        await tx.store_sender_key(group_id, own_address, rec.to_bytes())
        return body

    async def decrypt(self, group_id: str, sender: Address, body: bytes) -> bytes:
        """Decrypt a SenderKeyMessage from ``sender``. On any error nothing in the store changes."""
        gid, snd = _group_id(group_id), _address(sender, "sender")
        message = SenderKeyMessage.from_bytes(body)
        async with self.store.transaction(_lock_name(gid, snd)) as tx:
            return await self.decrypt_in(tx, gid, snd, message)

    async def decrypt_in(self, tx: Transaction, group_id: str, sender: Address, message: SenderKeyMessage) -> bytes:
        raw = await tx.load_sender_key(group_id, sender)
        if raw is None:
            raise NoSenderKeyError(f"no sender key for {sender} in this group")
        rec = SenderKeyRecord._trusted(raw)
        pt = senderkeys.decrypt(rec, message, max_forward_jump=self.max_forward_jump)
        await tx.store_sender_key(group_id, sender, rec.to_bytes())
        return pt


# --------------------------------------------------------------------------- fan-out
@dataclass(frozen=True, slots=True)
class FanOutResult:
    """Per-device outcome of :func:`fan_out`: a message for each device that has a usable session,
    and the error (:class:`NoSessionError`, :class:`UntrustedIdentityError`) for each that has not."""

    messages: dict[Address, CiphertextMessage] = field(default_factory=dict)
    failures: dict[Address, MissingStateError | UntrustedIdentityError] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"FanOutResult(sent={len(self.messages)}, failed={len(self.failures)})"


def _unique(addresses: Iterable[Address]) -> list[Address]:
    """Validated recipients in their given order, each once."""
    return list(dict.fromkeys(_address(a, "recipient") for a in addresses))


class _BatchTx:
    """A transaction view serving sessions from one batched load and buffering their writes."""

    def __init__(self, tx: Transaction, sessions: dict[Address, bytes]) -> None:
        self._tx = tx
        self._sessions = sessions
        self.written: dict[Address, bytes] = {}

    async def load_session(self, address: Address) -> bytes | None:
        return self._sessions.get(address)

    async def store_session(self, address: Address, record: bytes) -> None:
        self._sessions[address] = record
        self.written[address] = record

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)


async def fan_out(
    target: SessionCipher | KeyStore, addresses: Iterable[Address], plaintext: bytes
) -> FanOutResult:
    """Encrypt ``plaintext`` for every device in ``addresses`` over the pairwise sessions.

    One transaction, one ``load_sessions`` and one ``store_sessions`` for the whole batch. A device
    without a session, or whose identity is no longer trusted, is reported in ``failures``.
    """
    cipher = target if isinstance(target, SessionCipher) else SessionCipher(target)
    addrs = _unique(addresses)
    async with cipher.store.transaction(*addrs) as tx:
        return await fan_out_in(tx, addrs, plaintext, cipher)


async def fan_out_in(
    tx: Transaction, addresses: Sequence[Address], plaintext: bytes, cipher: SessionCipher
) -> FanOutResult:
    """:func:`fan_out` inside the caller's transaction (so the caller's rows commit with it)."""
    if not isinstance(plaintext, (bytes, bytearray, memoryview)):
        raise InvalidArgumentError("plaintext must be bytes")
    addrs = _unique(addresses)
    pt = bytes(plaintext)
    result = FanOutResult()
    if not addrs:
        return result
    sessions = await tx.load_sessions(addrs)
    batch = _BatchTx(tx, dict(sessions))
    view = cast(Transaction, batch)
    for a in addrs:
        if a not in sessions:
            result.failures[a] = NoSessionError(f"no session with {a}")
            continue
        try:
            result.messages[a] = await cipher.encrypt_in(view, a, pt)
        except (NoSessionError, UntrustedIdentityError) as exc:
            result.failures[a] = exc
    if batch.written:
        await tx.store_sessions(batch.written)
    return result
