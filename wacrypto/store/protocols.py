"""The key store interface: a :class:`KeyStore` hands out :class:`Transaction` objects.

Every value is an opaque, versioned blob (libsignal storage protobuf layout for Signal records).
``transaction()`` gives a :class:`Transaction`; writes become visible to others only when the
``async with`` block exits without an exception, and vanish if it raises. Transactions naming the same
address are serialized (in-process and across processes for SQL backends).

One Protocol per kind of state was tried and dropped: every operation of wacrypto reads and writes
several kinds in one transaction (a decrypt touches the session, the identity, a prekey and the
caller's rows), so no caller ever took one kind alone, and a store has to implement them all anyway.
:class:`Transaction` lists the kinds in sections instead; :func:`wacrypto.testing.check_key_store`
checks an implementation kind by kind.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from wacrypto.address import Address
from wacrypto.errors import InvalidArgumentError

if TYPE_CHECKING:
    from wacrypto.store.dump import StoreDump

__all__ = ["KeyStore", "Transaction", "LocalIdentity", "OutboxEntry", "SentMessage", "StoreInfo"]


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


@dataclass(frozen=True, slots=True)
class SentMessage:
    """A plaintext we sent, kept to encrypt it again when a recipient's device asks (a retry receipt).

    Keyed by (``message_id``, ``chat``); the repr never shows the plaintext.
    """

    message_id: str
    chat: str
    plaintext: bytes
    created_at: float

    def __post_init__(self) -> None:
        if not isinstance(self.message_id, str) or not isinstance(self.chat, str):
            raise InvalidArgumentError("sent message id and chat must be strings")
        if not isinstance(self.plaintext, bytes):
            raise InvalidArgumentError("sent message plaintext must be bytes")

    def __repr__(self) -> str:
        return (
            f"SentMessage(message_id={self.message_id!r}, chat={self.chat!r}, created_at={self.created_at!r},"
            " plaintext=<secret>)"
        )


def check_names(*names: str) -> None:
    """Refuse what cannot be an address name or a user (what ``migrate_address`` and ``set_lid_mapping`` take)."""
    for n in names:
        if not isinstance(n, str) or not n or "\x00" in n or len(n) > 1024:
            raise InvalidArgumentError("a user or address name must be a non-empty string without NUL, at most 1024")


@dataclass(frozen=True)
class StoreInfo:
    """What ``wacrypto store info`` shows: the backend, its schema, row counts and the instance lease.

    ``rows`` counts every kind of state under the names of :meth:`StoreDump.counts
    <wacrypto.store.dump.StoreDump.counts>`; ``schema_version`` is ``None`` for a store without a schema
    (the memory store).
    """

    backend: str
    rows: dict[str, int]
    schema_version: int | None = None
    latest_schema_version: int | None = None
    url: str | None = None  # with the password removed
    server: str | None = None
    encrypted_at_rest: bool = False
    lease: dict[str, Any] | None = field(default=None)  # holder, token, expires_in (an unexpired lease only)

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "server": self.server,
            "url": self.url,
            "schema_version": self.schema_version,
            "latest_schema_version": self.latest_schema_version,
            "encrypted_at_rest": self.encrypted_at_rest,
            "rows": dict(self.rows),
            "lease": self.lease,
        }


class Transaction(Protocol):
    """Everything a single atomic operation may read and write, by kind of state."""

    # -- identity: our own key pair and the identity keys of remote addresses
    async def get_local_identity(self) -> LocalIdentity | None: ...
    async def set_local_identity(self, identity: LocalIdentity) -> None: ...
    async def get_remote_identity(self, address: Address) -> bytes | None: ...
    async def save_remote_identity(self, address: Address, identity_key: bytes) -> None: ...

    # -- one-time prekeys
    async def load_prekey(self, prekey_id: int) -> bytes | None: ...

    async def store_prekey(self, prekey_id: int, record: bytes) -> None:
        """Store (or replace) a one-time prekey; a replaced one counts as not handed out."""
        ...

    async def remove_prekey(self, prekey_id: int) -> None: ...

    async def hand_out_prekey(self, prekey_id: int | None = None) -> tuple[int, bytes] | None:
        """A one-time prekey to publish in a bundle, marked handed out (durably, on commit).

        Without ``prekey_id``: a stored prekey that was never handed out (nor used), so each is handed
        out at most once; ``None`` when none is left. With ``prekey_id``: that prekey if it is stored,
        handed out before or not.
        """
        ...

    async def count_prekeys(self) -> int:
        """One-time prekeys stored (handed out or not)."""
        ...

    async def count_available_prekeys(self) -> int:
        """One-time prekeys stored and not handed out yet: what bundles can still carry."""
        ...

    # -- signed prekeys
    async def load_signed_prekey(self, signed_prekey_id: int) -> bytes | None: ...
    async def store_signed_prekey(self, signed_prekey_id: int, record: bytes) -> None: ...
    async def remove_signed_prekey(self, signed_prekey_id: int) -> None: ...
    async def list_signed_prekeys(self) -> list[int]: ...

    # -- sessions
    async def load_session(self, address: Address) -> bytes | None: ...
    async def load_sessions(self, addresses: Sequence[Address]) -> dict[Address, bytes]: ...
    async def store_session(self, address: Address, record: bytes) -> None: ...
    async def store_sessions(self, records: dict[Address, bytes]) -> None: ...
    async def delete_session(self, address: Address) -> None: ...
    async def list_sessions(self) -> list[Address]: ...
    async def count_sessions(self) -> int: ...

    # -- sender keys (groups)
    async def load_sender_key(self, group_id: str, sender: Address) -> bytes | None: ...
    async def store_sender_key(self, group_id: str, sender: Address, record: bytes) -> None: ...
    async def delete_sender_key(self, group_id: str, sender: Address) -> None: ...

    # -- small account settings (next prekey id, current signed prekey id, ...)
    async def get_meta(self, key: str) -> bytes | None: ...
    async def set_meta(self, key: str, value: bytes) -> None: ...

    # -- the caller's rows that must commit atomically with a ratchet step
    async def get_received(self, digest: bytes) -> tuple[bytes, bool] | None:
        """(plaintext, handled) for a message already decrypted, by digest of sender + ciphertext."""
        ...

    async def put_received(self, digest: bytes, plaintext: bytes, now: float) -> None: ...
    async def mark_handled(self, digest: bytes, now: float) -> None: ...
    async def prune_received(self, handled_before: float) -> int: ...
    async def outbox_put(self, entry: OutboxEntry) -> None: ...
    async def outbox_remove(self, message_id: str) -> bool: ...
    async def outbox_discard(self, message_ids: Sequence[str]) -> None:
        """Remove these outbox entries, whether or not they are there (no read: acks in bulk)."""
    async def outbox_list(self, limit: int = 1000, *, chats: Callable[[str], bool] | None = None) -> list[OutboxEntry]:
        """The oldest ``limit`` entries (by commit time, then id); ``chats``: only those whose
        ``address`` (the chat) it accepts (a scale-out worker reads its stripe's)."""
    async def count_outbox(self, *, chats: Callable[[str], bool] | None = None) -> int:
        """Outbox entries (``chats``: of the chats it accepts, as in :meth:`outbox_list`, reading
        only their addresses: a scale-out worker's outbox depth)."""

    # -- session health on WhatsApp: sent plaintexts, retry counters, PN -> LID
    async def sent_put(self, msg: SentMessage) -> None:
        """Keep a sent plaintext (replacing the one with the same ``message_id`` and ``chat``)."""
        ...

    async def sent_get(self, message_id: str, chat: str) -> SentMessage | None: ...

    async def sent_prune(self, created_before: float) -> int:
        """Delete the sent plaintexts created before ``created_before``; how many were deleted."""
        ...

    async def count_sent(self) -> int: ...

    async def retry_count_bump(self, message_id: str, sender: str, now: float) -> int:
        """Count one more failed decrypt of (``message_id``, ``sender``): the new count, 1 the first time."""
        ...

    async def retry_count_clear(self, message_id: str, sender: str) -> None: ...

    async def retry_prune(self, before: float) -> int:
        """Delete the retry counters last bumped before ``before``; how many were deleted."""
        ...

    async def migrate_address(self, old_name: str, new_name: str) -> int:
        """Move every session, remote identity and sender key of address name ``old_name`` (all device
        ids) to ``new_name``, same device ids, in this transaction: PN -> LID migration.

        Where ``new_name`` already has a row for a device (a session, an identity, or a sender key of
        the same group), that row is kept and the old one is dropped. Returns the rows moved (the
        dropped ones are not counted). Name the devices' old and new addresses in ``transaction(...)``
        so that no concurrent encrypt or decrypt writes one of them meanwhile.
        """
        ...

    async def set_lid_mapping(self, pn_user: str, lid_user: str) -> None:
        """Record that phone-number user ``pn_user`` is LID user ``lid_user`` (each maps to one other)."""
        ...

    async def get_lid_for_pn(self, pn_user: str) -> str | None: ...
    async def get_pn_for_lid(self, lid_user: str) -> str | None: ...


class KeyStore(Protocol):
    """A key store. ``transaction(*addresses)`` serializes with other transactions on those addresses."""

    def transaction(self, *addresses: Address | str) -> AbstractAsyncContextManager[Transaction]: ...

    async def wipe(self) -> None:
        """Delete every row of the account (the account starts over); exclusive with transactions."""
        ...

    async def dump(self) -> StoreDump:
        """A consistent snapshot of the whole account, decrypted (what backup and export move)."""
        ...

    async def load(self, dump: StoreDump) -> None:
        """Replace the whole account with ``dump``, atomically (what restore and import do)."""
        ...

    async def info(self) -> StoreInfo: ...

    async def aclose(self) -> None: ...
