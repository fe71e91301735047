"""The in-memory reference key store: real transactions (overlay, commit on success, rollback on error)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final, final

import trio

from wacrypto.address import Address
from wacrypto.store.dump import StoreDump
from wacrypto.store.protocols import LocalIdentity, OutboxEntry, SentMessage, StoreInfo, check_names

_DELETED: Final = object()

_AS_DUMPED: Final = {
    "prekey": "prekeys",
    "signed": "signed_prekeys",
    "meta": "meta",
    "received": "received",
    "outbox": "outbox",
    "sent": "sent",
    "retry": "retry_counts",
    "lid": "lid_mappings",
}
"""Kinds of rows whose keys and values are the same here and in a :class:`StoreDump` field."""


@final
class MemoryTransaction:
    """Reads see committed data plus this transaction's own writes; nothing is shared until commit."""

    __slots__ = ("_data", "_writes")

    def __init__(self, data: dict[tuple[str, Any], Any]) -> None:
        self._data = data
        self._writes: dict[tuple[str, Any], Any] = {}

    def _get(self, table: str, key: Any) -> Any:
        k = (table, key)
        if k in self._writes:
            v = self._writes[k]
            return None if v is _DELETED else v
        return self._data.get(k)

    def _put(self, table: str, key: Any, value: Any) -> None:
        self._writes[(table, key)] = value

    def _keys(self, table: str) -> list[Any]:
        keys = {k[1] for k in self._data if k[0] == table}
        for (t, k), v in self._writes.items():
            if t == table:
                if v is _DELETED:
                    keys.discard(k)
                else:
                    keys.add(k)
        return sorted(keys)

    def _commit(self) -> None:
        for k, v in self._writes.items():
            if v is _DELETED:
                self._data.pop(k, None)
            else:
                self._data[k] = v
        self._writes.clear()

    # identity
    async def get_local_identity(self) -> LocalIdentity | None:
        v = self._get("local", "identity")
        return v if isinstance(v, LocalIdentity) else None

    async def set_local_identity(self, identity: LocalIdentity) -> None:
        self._put("local", "identity", identity)

    async def get_remote_identity(self, address: Address) -> bytes | None:
        v = self._get("identity", address)
        return v if isinstance(v, bytes) else None

    async def save_remote_identity(self, address: Address, identity_key: bytes) -> None:
        self._put("identity", address, bytes(identity_key))

    # prekeys
    async def load_prekey(self, prekey_id: int) -> bytes | None:
        v = self._get("prekey", prekey_id)
        return v if isinstance(v, bytes) else None

    async def store_prekey(self, prekey_id: int, record: bytes) -> None:
        self._put("prekey", prekey_id, bytes(record))
        self._put("handed", prekey_id, _DELETED)

    async def remove_prekey(self, prekey_id: int) -> None:
        self._put("prekey", prekey_id, _DELETED)
        self._put("handed", prekey_id, _DELETED)

    async def hand_out_prekey(self, prekey_id: int | None = None) -> tuple[int, bytes] | None:
        if prekey_id is not None:
            ids = [int(prekey_id)]
        else:
            ids = [k for k in self._keys("prekey") if self._get("handed", k) is None]
        for k in ids:
            v = self._get("prekey", k)
            if isinstance(v, bytes):
                self._put("handed", k, True)
                return k, v
        return None

    async def count_prekeys(self) -> int:
        return len(self._keys("prekey"))

    async def count_available_prekeys(self) -> int:
        return sum(1 for k in self._keys("prekey") if self._get("handed", k) is None)

    async def load_signed_prekey(self, signed_prekey_id: int) -> bytes | None:
        v = self._get("signed", signed_prekey_id)
        return v if isinstance(v, bytes) else None

    async def store_signed_prekey(self, signed_prekey_id: int, record: bytes) -> None:
        self._put("signed", signed_prekey_id, bytes(record))

    async def remove_signed_prekey(self, signed_prekey_id: int) -> None:
        self._put("signed", signed_prekey_id, _DELETED)

    async def list_signed_prekeys(self) -> list[int]:
        return [int(k) for k in self._keys("signed")]

    # sessions
    async def load_session(self, address: Address) -> bytes | None:
        v = self._get("session", address)
        return v if isinstance(v, bytes) else None

    async def load_sessions(self, addresses: Sequence[Address]) -> dict[Address, bytes]:
        out = {}
        for a in addresses:
            v = self._get("session", a)
            if isinstance(v, bytes):
                out[a] = v
        return out

    async def store_session(self, address: Address, record: bytes) -> None:
        self._put("session", address, bytes(record))

    async def store_sessions(self, records: dict[Address, bytes]) -> None:
        for a, r in records.items():
            self._put("session", a, bytes(r))

    async def delete_session(self, address: Address) -> None:
        self._put("session", address, _DELETED)

    async def list_sessions(self) -> list[Address]:
        return list(self._keys("session"))

    async def count_sessions(self) -> int:
        return len(self._keys("session"))

    # sender keys
    async def load_sender_key(self, group_id: str, sender: Address) -> bytes | None:
        v = self._get("senderkey", (group_id, sender))
        return v if isinstance(v, bytes) else None

    async def store_sender_key(self, group_id: str, sender: Address, record: bytes) -> None:
        self._put("senderkey", (group_id, sender), bytes(record))

    async def delete_sender_key(self, group_id: str, sender: Address) -> None:
        self._put("senderkey", (group_id, sender), _DELETED)

    # meta
    async def get_meta(self, key: str) -> bytes | None:
        v = self._get("meta", key)
        return v if isinstance(v, bytes) else None

    async def set_meta(self, key: str, value: bytes) -> None:
        self._put("meta", key, bytes(value))

    # caller rows
    async def get_received(self, digest: bytes) -> tuple[bytes, bool] | None:
        v = self._get("received", digest)
        if v is None:
            return None
        pt, handled, _t = v
        return pt, handled

    async def put_received(self, digest: bytes, plaintext: bytes, now: float) -> None:
        self._put("received", digest, (bytes(plaintext), False, now))

    async def mark_handled(self, digest: bytes, now: float) -> None:
        v = self._get("received", digest)
        if v is not None:
            self._put("received", digest, (b"", True, now))

    async def prune_received(self, handled_before: float) -> int:
        return self._prune("received", lambda v: bool(v[1]) and v[2] < handled_before)

    def _prune(self, table: str, older: Callable[[Any], bool]) -> int:
        """Delete the rows of ``table`` for which ``older(value)``; how many."""
        n = 0
        for k in self._keys(table):
            if older(self._get(table, k)):
                self._put(table, k, _DELETED)
                n += 1
        return n

    async def outbox_put(self, entry: OutboxEntry) -> None:
        self._put("outbox", entry.message_id, entry)

    async def outbox_remove(self, message_id: str) -> bool:
        if self._get("outbox", message_id) is None:
            return False
        self._put("outbox", message_id, _DELETED)
        return True

    async def outbox_discard(self, message_ids: Sequence[str]) -> None:
        for mid in message_ids:
            self._put("outbox", mid, _DELETED)

    async def outbox_list(self, limit: int = 1000, *, chats: Callable[[str], bool] | None = None) -> list[OutboxEntry]:
        entries = [self._get("outbox", k) for k in self._keys("outbox")]
        if chats is not None:
            entries = [e for e in entries if chats(e.address)]
        entries.sort(key=lambda e: (e.created_at, e.message_id))
        return entries[:limit]

    async def count_outbox(self, *, chats: Callable[[str], bool] | None = None) -> int:
        if chats is None:
            return len(self._keys("outbox"))
        return sum(1 for k in self._keys("outbox") if chats(self._get("outbox", k).address))

    # session health: sent plaintexts, retry counters, PN -> LID
    async def sent_put(self, msg: SentMessage) -> None:
        self._put("sent", (msg.message_id, msg.chat), msg)

    async def sent_get(self, message_id: str, chat: str) -> SentMessage | None:
        v = self._get("sent", (message_id, chat))
        return v if isinstance(v, SentMessage) else None

    async def sent_prune(self, created_before: float) -> int:
        return self._prune("sent", lambda m: bool(m.created_at < created_before))

    async def count_sent(self) -> int:
        return len(self._keys("sent"))

    async def retry_count_bump(self, message_id: str, sender: str, now: float) -> int:
        v = self._get("retry", (message_id, sender))
        n = (v[0] if v is not None else 0) + 1
        self._put("retry", (message_id, sender), (n, float(now)))
        return int(n)

    async def retry_count_clear(self, message_id: str, sender: str) -> None:
        self._put("retry", (message_id, sender), _DELETED)

    async def retry_prune(self, before: float) -> int:
        return self._prune("retry", lambda v: bool(v[1] < before))

    async def migrate_address(self, old_name: str, new_name: str) -> int:
        check_names(old_name, new_name)
        if old_name == new_name:
            return 0
        moves: list[tuple[str, Any, Any]] = []
        for table in ("session", "identity"):
            moves += [(table, a, Address(new_name, a.device_id)) for a in self._keys(table) if a.name == old_name]
        moves += [
            ("senderkey", (g, s), (g, Address(new_name, s.device_id)))
            for g, s in self._keys("senderkey")
            if s.name == old_name
        ]
        n = 0
        for table, old, new in moves:
            if self._get(table, new) is None:
                self._put(table, new, self._get(table, old))
                n += 1
            self._put(table, old, _DELETED)
        return n

    async def set_lid_mapping(self, pn_user: str, lid_user: str) -> None:
        check_names(pn_user, lid_user)
        for pn in self._keys("lid"):
            if pn != pn_user and self._get("lid", pn) == lid_user:
                self._put("lid", pn, _DELETED)
        self._put("lid", pn_user, lid_user)

    async def get_lid_for_pn(self, pn_user: str) -> str | None:
        v = self._get("lid", pn_user)
        return v if isinstance(v, str) else None

    async def get_pn_for_lid(self, lid_user: str) -> str | None:
        return next((pn for pn in self._keys("lid") if self._get("lid", pn) == lid_user), None)


@final
class _MemoryTransactionCM:
    """``async with store.transaction()``: uncontended, the lock is taken without a scheduler
    round trip (acquire_nowait); contended, it waits like ``trio.Lock.acquire``."""

    __slots__ = ("_store", "_tx")

    def __init__(self, store: MemoryKeyStore) -> None:
        self._store = store
        self._tx: MemoryTransaction | None = None

    async def __aenter__(self) -> MemoryTransaction:
        st = self._store
        if st._busy:
            while st._busy:
                await st._waiters.park()
        st._busy = True
        self._tx = MemoryTransaction(st._data)
        return self._tx

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        st = self._store
        try:
            if exc_type is None and self._tx is not None:
                self._tx._commit()
        finally:
            st._busy = False
            if st._waiters:
                st._waiters.unpark()


@final
class MemoryKeyStore:
    """Reference store held in a dict. Transactions are serialized by one lock (memory is fast)."""

    def __init__(self) -> None:
        self._data: dict[tuple[str, Any], Any] = {}
        self._busy = False  # a transaction is open (uncontended entry takes no scheduler round trip)
        self._waiters = trio.lowlevel.ParkingLot()

    def transaction(self, *addresses: Address | str) -> _MemoryTransactionCM:
        return _MemoryTransactionCM(self)

    def snapshot(self) -> dict[tuple[str, Any], Any]:
        """A copy of everything committed (values are immutable), for tests and backups."""
        return dict(self._data)

    def restore(self, snap: dict[tuple[str, Any], Any]) -> None:
        self._data.clear()
        self._data.update(snap)

    async def wipe(self) -> None:
        """Delete everything (the account starts over)."""
        async with _MemoryTransactionCM(self):  # exclusive with transactions
            self._data.clear()

    async def dump(self) -> StoreDump:
        """Every committed row in the backend-neutral form used by backup/restore."""
        d = StoreDump()
        async with _MemoryTransactionCM(self):  # exclusive with transactions
            for (table, key), v in self._data.items():
                if table == "local":
                    d.local = v
                elif table == "identity":
                    d.identities[str(key)] = v
                elif table == "handed":
                    d.handed_out_prekeys.add(int(key))
                elif table == "session":
                    d.sessions[str(key)] = v
                elif table == "senderkey":
                    d.sender_keys[(key[0], str(key[1]))] = v
                else:
                    getattr(d, _AS_DUMPED[table])[key] = v
        return d

    async def load(self, dump: StoreDump) -> None:
        """Replace everything with ``dump``."""
        data: dict[tuple[str, Any], Any] = {}
        if dump.local is not None:
            data[("local", "identity")] = dump.local
        data.update({("identity", Address.parse(a)): v for a, v in dump.identities.items()})
        data.update({("handed", i): True for i in dump.handed_out_prekeys if i in dump.prekeys})
        data.update({("session", Address.parse(a)): v for a, v in dump.sessions.items()})
        data.update({("senderkey", (g, Address.parse(s))): v for (g, s), v in dump.sender_keys.items()})
        for table, field in _AS_DUMPED.items():
            data.update({(table, k): v for k, v in getattr(dump, field).items()})
        async with _MemoryTransactionCM(self):  # exclusive with transactions
            self._data.clear()
            self._data.update(data)

    async def info(self) -> StoreInfo:
        """Row counts of the committed data (nothing here survives the process)."""
        return StoreInfo(backend="memory", rows=(await self.dump()).counts())

    async def aclose(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"MemoryKeyStore(entries={len(self._data)})"
