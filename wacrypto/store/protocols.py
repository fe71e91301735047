"""The key store interface: small async Protocols, one per kind of state, combined in a transaction.

Every value is an opaque, versioned blob (libsignal storage protobuf layout for Signal records).
A :class:`KeyStore` hands out :class:`Transaction` objects through ``transaction()``; writes become
visible to others only when the ``async with`` block exits without an exception, and vanish if it
raises. Transactions naming the same address are serialized (in-process and across processes for
SQL backends).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from wacrypto.address import Address


@dataclass(frozen=True, slots=True)
class LocalIdentity:
    """The account's own identity: key pair (serialized ``IdentityKeyPairStructure``) and registration id."""

    identity_pair: bytes
    registration_id: int

    def __repr__(self) -> str:
        return f"LocalIdentity(registration_id={self.registration_id}, identity_pair=<secret>)"


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A ciphertext waiting for the server's acknowledgement."""

    message_id: str
    address: str
    msg_type: int
    body: bytes
    created_at: float


class IdentityStore(Protocol):
    async def get_local_identity(self) -> LocalIdentity | None: ...
    async def set_local_identity(self, identity: LocalIdentity) -> None: ...
    async def get_remote_identity(self, address: Address) -> bytes | None: ...
    async def save_remote_identity(self, address: Address, identity_key: bytes) -> None: ...


class PreKeyStore(Protocol):
    async def load_prekey(self, prekey_id: int) -> bytes | None: ...
    async def store_prekey(self, prekey_id: int, record: bytes) -> None: ...
    async def remove_prekey(self, prekey_id: int) -> None: ...
    async def count_prekeys(self) -> int: ...


class SignedPreKeyStore(Protocol):
    async def load_signed_prekey(self, signed_prekey_id: int) -> bytes | None: ...
    async def store_signed_prekey(self, signed_prekey_id: int, record: bytes) -> None: ...
    async def remove_signed_prekey(self, signed_prekey_id: int) -> None: ...
    async def list_signed_prekeys(self) -> list[int]: ...


class SessionStore(Protocol):
    async def load_session(self, address: Address) -> bytes | None: ...
    async def load_sessions(self, addresses: Sequence[Address]) -> dict[Address, bytes]: ...
    async def store_session(self, address: Address, record: bytes) -> None: ...
    async def store_sessions(self, records: dict[Address, bytes]) -> None: ...
    async def delete_session(self, address: Address) -> None: ...
    async def list_sessions(self) -> list[Address]: ...


class SenderKeyStore(Protocol):
    async def load_sender_key(self, group_id: str, sender: Address) -> bytes | None: ...
    async def store_sender_key(self, group_id: str, sender: Address, record: bytes) -> None: ...
    async def delete_sender_key(self, group_id: str, sender: Address) -> None: ...


class MetaStore(Protocol):
    """Small account settings (next prekey id, current signed prekey id, ...)."""

    async def get_meta(self, key: str) -> bytes | None: ...
    async def set_meta(self, key: str, value: bytes) -> None: ...


class MessageStore(Protocol):
    """The caller's rows that must commit atomically with a ratchet step."""

    async def get_received(self, digest: bytes) -> tuple[bytes, bool] | None:
        """(plaintext, handled) for a message already decrypted, by digest of sender + ciphertext."""
        ...

    async def put_received(self, digest: bytes, plaintext: bytes, now: float) -> None: ...
    async def mark_handled(self, digest: bytes, now: float) -> None: ...
    async def prune_received(self, handled_before: float) -> int: ...
    async def outbox_put(self, entry: OutboxEntry) -> None: ...
    async def outbox_remove(self, message_id: str) -> bool: ...
    async def outbox_list(self, limit: int = 1000) -> list[OutboxEntry]: ...


class Transaction(IdentityStore, PreKeyStore, SignedPreKeyStore, SessionStore, SenderKeyStore, MetaStore, MessageStore, Protocol):
    """Everything a single atomic operation may read and write."""


class KeyStore(Protocol):
    """A key store. ``transaction(*addresses)`` serializes with other transactions on those addresses."""

    def transaction(self, *addresses: Address | str) -> AbstractAsyncContextManager[Transaction]: ...

    async def aclose(self) -> None: ...
