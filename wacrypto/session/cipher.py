"""Async recipes: load -> pure step -> commit, one store transaction per operation.

:class:`SessionCipher` is the public entry point for pairwise sessions. Every operation runs in one
transaction of the :class:`~wacrypto.store.protocols.KeyStore`; a failure of any kind (bad MAC,
duplicate, tampered bytes, untrusted identity, store error) commits nothing.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import final

from wacrypto.address import Address
from wacrypto.errors import (
    DuplicateMessageError,
    InvalidArgumentError,
    InvalidMessageError,
    InvalidSignatureError,
    MissingStateError,
    NoPreKeyError,
    NoSessionError,
    NoSignedPreKeyError,
    PeerError,
    UntrustedIdentityError,
)
from wacrypto.limits import DEFAULT_MAX_FORWARD_JUMP, MAX_FORWARD_JUMP_CEILING, MAX_PLAINTEXT_LEN
from wacrypto.primitives.keys import Rng, clamp, system_rng
from wacrypto.session.account import local_identity
from wacrypto.signal import records
from wacrypto.signal.bundle import PreKeyBundle
from wacrypto.signal.records import PreKeyRecord, SessionRecord, SignedPreKeyRecord, export_record
from wacrypto.store.protocols import KeyStore, OutboxEntry, Transaction
from wacrypto.wire.messages import PREKEY_TYPE, WHISPER_TYPE, PreKeySignalMessage, SignalMessage

__all__ = ["CiphertextMessage", "ReceivedMessage", "SessionCipher", "WHISPER_TYPE", "PREKEY_TYPE", "export_record"]


@dataclass(frozen=True, slots=True)
class CiphertextMessage:
    """An encrypted message: ``type`` 3 (PreKeySignalMessage) or 2 (SignalMessage) and its bytes."""

    type: int
    body: bytes

    def __repr__(self) -> str:
        return f"CiphertextMessage(type={self.type}, len={len(self.body)})"


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """A decrypted message recorded for exactly-once processing (see :meth:`SessionCipher.decrypt_once`)."""

    digest: bytes
    plaintext: bytes
    redelivered: bool

    def __repr__(self) -> str:
        return f"ReceivedMessage(digest={self.digest.hex()[:16]}..., len={len(self.plaintext)}, redelivered={self.redelivered})"


def message_digest(address: Address, msg_type: int, body: bytes) -> bytes:
    """Dedup key of a received message: SHA-256 over sender address and ciphertext."""
    a = str(address).encode()
    return hashlib.sha256(len(a).to_bytes(4, "big") + a + bytes((msg_type,)) + body).digest()


@final
class SessionCipher:
    """Pairwise Signal sessions over a key store.

    ``max_forward_jump`` bounds how far ahead a message counter may be (default 2000 as WhatsApp
    clients; libsignal uses 25000). ``rng`` and ``clock`` are injectable for deterministic tests.
    """

    def __init__(
        self,
        store: KeyStore,
        *,
        max_forward_jump: int = DEFAULT_MAX_FORWARD_JUMP,
        rng: Rng = system_rng,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 1 <= max_forward_jump <= MAX_FORWARD_JUMP_CEILING:
            raise InvalidArgumentError(f"max_forward_jump must be in 1..{MAX_FORWARD_JUMP_CEILING}")
        self.store = store
        self.max_forward_jump = max_forward_jump
        self._rng = rng
        self._clock = clock

    def __repr__(self) -> str:
        return f"SessionCipher(store={self.store!r}, max_forward_jump={self.max_forward_jump})"

    # ------------------------------------------------------------------ trust
    async def _check_trust(self, tx: Transaction, address: Address, identity_key: bytes) -> None:
        trusted = await tx.get_remote_identity(address)
        if trusted is not None and trusted != identity_key:
            err = UntrustedIdentityError(str(address))
            err.identity_key = identity_key  # type: ignore[attr-defined]
            raise err

    async def trust_identity(self, address: Address, identity_key: bytes) -> None:
        """Accept ``identity_key`` for ``address`` (after the user verified a changed key)."""
        async with self.store.transaction(address) as tx:
            await tx.save_remote_identity(address, identity_key)

    async def remote_identity(self, address: Address) -> bytes | None:
        async with self.store.transaction(address) as tx:
            return await tx.get_remote_identity(address)

    # ------------------------------------------------------------------ sessions
    async def has_session(self, address: Address) -> bool:
        async with self.store.transaction(address) as tx:
            raw = await tx.load_session(address)
        return raw is not None and SessionRecord._trusted(raw).has_current_state()

    async def process_bundle(self, address: Address, bundle: PreKeyBundle) -> None:
        """X3DH as initiator: verify the bundle and start a session (the first messages are PreKey messages)."""
        if not bundle.signature_valid():
            raise InvalidSignatureError("signed prekey signature does not verify")
        async with self.store.transaction(address) as tx:
            await self._process_verified_bundle(tx, address, bundle)

    async def process_bundle_in(self, tx: Transaction, address: Address, bundle: PreKeyBundle) -> None:
        if not bundle.signature_valid():
            raise InvalidSignatureError("signed prekey signature does not verify")
        await self._process_verified_bundle(tx, address, bundle)

    async def _process_verified_bundle(self, tx: Transaction, address: Address, bundle: PreKeyBundle) -> None:
        identity, registration_id = await local_identity(tx)
        await self._check_trust(tx, address, bundle.identity_key)
        raw = await tx.load_session(address)
        rec = SessionRecord._trusted(raw) if raw else SessionRecord()
        records.initiate(
            rec,
            local_identity=identity,
            local_registration_id=registration_id,
            bundle=bundle,
            base_priv=clamp(self._rng(32)),
            timestamp_ms=int(self._clock() * 1000),
            rng=self._rng,
        )
        await tx.store_session(address, rec.to_bytes())
        await tx.save_remote_identity(address, bundle.identity_key)

    async def encrypt(self, address: Address, plaintext: bytes) -> CiphertextMessage:
        """Encrypt for ``address``: one transaction, the ratchet advance is committed with it."""
        async with self.store.transaction(address) as tx:
            return await self.encrypt_in(tx, address, plaintext)

    async def encrypt_durable(self, address: Address, plaintext: bytes, message_id: str) -> CiphertextMessage:
        """Encrypt and put the ciphertext in the outbox in the same transaction (durable send)."""
        if not message_id:
            raise InvalidArgumentError("message_id must be non-empty")
        async with self.store.transaction(address) as tx:
            msg = await self.encrypt_in(tx, address, plaintext)
            await tx.outbox_put(OutboxEntry(message_id, str(address), msg.type, msg.body, self._clock()))
            return msg

    async def encrypt_in(self, tx: Transaction, address: Address, plaintext: bytes) -> CiphertextMessage:
        """Encrypt inside the caller's transaction (so the caller's rows commit with it)."""
        if not isinstance(plaintext, (bytes, bytearray, memoryview)):
            raise InvalidArgumentError("plaintext must be bytes")
        if len(plaintext) > MAX_PLAINTEXT_LEN:
            raise InvalidArgumentError(f"plaintext longer than {MAX_PLAINTEXT_LEN} bytes")
        raw = await tx.load_session(address)
        if raw is None:
            raise NoSessionError(f"no session with {address}")
        rec = SessionRecord._trusted(raw)
        identity = rec.remote_identity()
        if identity is None:
            raise NoSessionError(f"no session with {address}")
        if not rec.can_send():
            raise NoSessionError(f"session with {address} cannot send")
        await self._check_trust(tx, address, identity)
        msg_type, body = rec.encrypt(bytes(plaintext))
        await tx.store_session(address, rec.to_bytes())
        return CiphertextMessage(msg_type, body)

    # ------------------------------------------------------------------ decrypt
    @staticmethod
    def parse(msg_type: int, body: bytes) -> SignalMessage | PreKeySignalMessage:
        """Parse a received message of ``msg_type`` (3 PreKey, 2 Whisper; 1 is read as 2)."""
        if msg_type == PREKEY_TYPE:
            return PreKeySignalMessage.from_bytes(body)
        if msg_type in (1, WHISPER_TYPE):
            return SignalMessage.from_bytes(body)
        raise InvalidMessageError(f"unknown message type {msg_type}")

    async def decrypt(self, address: Address, msg_type: int, body: bytes) -> bytes:
        """Decrypt a message from ``address``. On any error nothing in the store changes."""
        message = self.parse(msg_type, body)
        async with self.store.transaction(address) as tx:
            return await self.decrypt_in(tx, address, message)

    async def decrypt_in(
        self, tx: Transaction, address: Address, message: SignalMessage | PreKeySignalMessage
    ) -> bytes:
        if isinstance(message, PreKeySignalMessage):
            return await self._decrypt_prekey(tx, address, message)
        raw = await tx.load_session(address)
        if raw is None:
            raise NoSessionError(f"no session with {address}")
        pt, rec = records.decrypt_stored(raw, message, max_forward_jump=self.max_forward_jump, rng=self._rng)
        identity = rec.remote_identity()
        assert identity is not None  # the state that decrypted is current
        await self._check_trust(tx, address, identity)
        await tx.store_session(address, rec.to_bytes())
        return pt

    async def _decrypt_prekey(self, tx: Transaction, address: Address, message: PreKeySignalMessage) -> bytes:
        identity, registration_id = await local_identity(tx)
        await self._check_trust(tx, address, message.identity_key)
        raw = await tx.load_session(address)
        rec = SessionRecord._trusted(raw) if raw else SessionRecord()
        if raw is not None and rec.has_base_key(message.base_key):
            pt, rec = records.decrypt_stored(raw, message.message, max_forward_jump=self.max_forward_jump, rng=self._rng)
        else:
            spk_raw = await tx.load_signed_prekey(message.signed_pre_key_id)
            if spk_raw is None:
                raise NoSignedPreKeyError(f"signed prekey {message.signed_pre_key_id} not found")
            spk = SignedPreKeyRecord.from_bytes(spk_raw, trusted=True)
            opk: PreKeyRecord | None = None
            if message.pre_key_id is not None:
                opk_raw = await tx.load_prekey(message.pre_key_id)
                if opk_raw is None:
                    raise NoPreKeyError(f"one-time prekey {message.pre_key_id} not found (already used?)")
                opk = PreKeyRecord.from_bytes(opk_raw, trusted=True)
            pt = records.respond(
                rec,
                message,
                local_identity=identity,
                local_registration_id=registration_id,
                signed_prekey=spk,
                one_time_prekey=opk,
                max_forward_jump=self.max_forward_jump,
                rng=self._rng,
            )
            if opk is not None:
                await tx.remove_prekey(opk.id)
        await tx.save_remote_identity(address, message.identity_key)
        await tx.store_session(address, rec.to_bytes())
        return pt

    # ------------------------------------------------------------------ exactly-once
    async def decrypt_once(self, address: Address, msg_type: int, body: bytes) -> ReceivedMessage:
        """Decrypt with exactly-once semantics.

        The plaintext is stored in the same transaction as the ratchet step, keyed by a digest of
        sender and ciphertext. A redelivered message returns the stored plaintext
        (``redelivered=True``) instead of a duplicate error until :meth:`mark_handled`; after that a
        redelivery raises :class:`DuplicateMessageError`.
        """
        digest = message_digest(address, msg_type, body)
        message = self.parse(msg_type, body)
        async with self.store.transaction(address) as tx:
            return await self._decrypt_once_in(tx, address, digest, message)

    async def decrypt_once_many(
        self, address: Address, messages: Sequence[tuple[int, bytes]]
    ) -> list[ReceivedMessage | PeerError | MissingStateError]:
        """:meth:`decrypt_once` of several messages from ``address`` in one transaction (one commit).

        Each result is the :class:`ReceivedMessage` or the error of that message, in order; a
        message that fails changes nothing and the others still commit. A store error fails the
        whole batch (nothing commits).
        """
        prepared: list[tuple[bytes, SignalMessage | PreKeySignalMessage] | PeerError] = []
        for msg_type, body in messages:
            try:
                prepared.append((message_digest(address, msg_type, body), self.parse(msg_type, body)))
            except PeerError as exc:
                prepared.append(exc)
        out: list[ReceivedMessage | PeerError | MissingStateError] = []
        async with self.store.transaction(address) as tx:
            for p in prepared:
                if isinstance(p, PeerError):
                    out.append(p)
                    continue
                try:
                    out.append(await self._decrypt_once_in(tx, address, *p))
                except (PeerError, MissingStateError) as exc:  # raised before this message wrote anything
                    out.append(exc)
        return out

    async def _decrypt_once_in(
        self, tx: Transaction, address: Address, digest: bytes, message: SignalMessage | PreKeySignalMessage
    ) -> ReceivedMessage:
        seen = await tx.get_received(digest)
        if seen is not None:
            pt, handled = seen
            if handled:
                raise DuplicateMessageError("message already received and handled")
            return ReceivedMessage(digest, pt, True)
        pt = await self.decrypt_in(tx, address, message)
        await tx.put_received(digest, pt, self._clock())
        return ReceivedMessage(digest, pt, False)

    async def mark_handled(self, address: Address, digest: bytes) -> None:
        """The application has processed the message: drop its plaintext, keep the digest for dedup."""
        async with self.store.transaction(address) as tx:
            await tx.mark_handled(digest, self._clock())

    async def mark_handled_many(self, items: list[tuple[Address, bytes]]) -> None:
        """:meth:`mark_handled` for several (address, digest) pairs in one transaction (one commit)."""
        if not items:
            return
        now = self._clock()
        async with self.store.transaction(*{a for a, _ in items}) as tx:
            for _, digest in items:
                await tx.mark_handled(digest, now)

    async def export_session(self, address: Address) -> bytes:
        """The session record as libsignal's ``RecordStructure``, with skipped keys also in expanded form."""
        async with self.store.transaction(address) as tx:
            raw = await tx.load_session(address)
        if raw is None:
            raise NoSessionError(f"no session with {address}")
        return export_record(raw)

    async def import_session(self, address: Address, record: bytes, remote_identity: bytes | None = None) -> None:
        """Install a session record (from libsignal, python-axolotl, whatsmeow or us)."""
        rec = SessionRecord.from_bytes(record)
        stored = rec.remote_identity()
        if stored is None:
            raise InvalidMessageError("session record has no current state")
        ident = remote_identity if remote_identity is not None else stored
        if ident != stored:
            raise InvalidArgumentError("remote_identity does not match the record")
        async with self.store.transaction(address) as tx:
            await tx.store_session(address, rec.to_bytes())
            await tx.save_remote_identity(address, ident)

