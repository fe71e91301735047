"""A transaction of the SQL store: an overlay of writes over the rows of its lane's open epoch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, final

from wacrypto.address import Address
from wacrypto.errors import NoPreKeyError, StoreError
from wacrypto.store.protocols import LocalIdentity, OutboxEntry, SentMessage, check_names
from wacrypto.store.sql.rows import DELETED, HANDED, Rows

if TYPE_CHECKING:
    from wacrypto.store.sql.lane import Lane

__all__ = ["SqlTransaction", "PrekeyClaims", "addr_key"]

_PAGE: Final = 32  # prekey ids read per page while looking for one to hand out


def addr_key(a: Address | str) -> str:
    """The lock and row name of an address."""
    return str(a)


class PrekeyClaims:
    """One-time prekeys are shared by all addresses: two transactions of this process never use one at
    once. A claim is held until the transaction ends (after its commit).

    A second transaction naming a claimed prekey fails at once (:class:`NoPreKeyError`, retry later)
    instead of waiting: the first holds its claim until its commit, which may be waiting for the
    second's epoch, so a wait could never end (a peer chooses the prekey ids it names)."""

    __slots__ = ("_holders",)

    def __init__(self) -> None:
        self._holders: dict[int, SqlTransaction] = {}

    def try_claim(self, tx: SqlTransaction, prekey_id: int) -> bool:
        holder = self._holders.get(prekey_id)
        if holder is None:
            self._holders[prekey_id] = tx
            tx.claims.append(prekey_id)
            return True
        return holder is tx

    def claim(self, tx: SqlTransaction, prekey_id: int) -> None:
        if not self.try_claim(tx, prekey_id):
            raise NoPreKeyError(f"one-time prekey {prekey_id} is in use by another message being decrypted; retry")

    def release(self, tx: SqlTransaction, prekey_id: int) -> None:
        if self._holders.get(prekey_id) is tx:
            del self._holders[prekey_id]
            tx.claims.remove(prekey_id)

    def release_all(self, tx: SqlTransaction) -> None:
        for pid in tx.claims:
            self._holders.pop(pid, None)
        tx.claims.clear()


@final
class SqlTransaction:
    """Reads see committed data plus this transaction's own writes; nothing is written before commit."""

    __slots__ = ("_lane", "_rows", "_prekeys", "keys", "overlay", "prefetched", "wiped", "commit_error", "claims")

    def __init__(self, lane: Lane, rows: Rows, prekeys: PrekeyClaims, keys: list[str]) -> None:
        self._lane = lane
        self._rows = rows
        self._prekeys = prekeys
        self.keys = keys
        self.overlay: dict[tuple[str, Any], Any] = {}
        self.prefetched: dict[tuple[str, Any], Any] = {}
        self.wiped = False
        self.commit_error: StoreError | None = None
        self.claims: list[int] = []  # one-time prekeys this transaction holds (see PrekeyClaims)

    def __repr__(self) -> str:
        return f"SqlTransaction(keys={self.keys!r}, writes={len(self.overlay)})"

    def has_writes(self) -> bool:
        return bool(self.overlay) or self.wiped

    async def _get(self, table: str, key: Any) -> Any:
        k = (table, key)
        if k in self.overlay:
            v = self.overlay[k]
            return None if v is DELETED else v
        if self.wiped:
            return None
        if k in self.prefetched:
            return self.prefetched[k]
        rows = self._rows
        lane = self._lane
        return await lane.read(lambda c: rows.read(c, table, key))

    def _put(self, table: str, key: Any, value: Any) -> None:
        self.overlay[(table, key)] = value

    async def _keys(self, table: str) -> list[Any]:
        if self.wiped:
            keys: set[Any] = set()
        else:
            rows = self._rows
            lane = self._lane
            keys = set(await lane.read(lambda c: rows.keys(c, table)))
        for (t, k), v in self.overlay.items():
            if t == table:
                if v is DELETED:
                    keys.discard(k)
                else:
                    keys.add(k)
        return sorted(keys)

    # identity
    async def get_local_identity(self) -> LocalIdentity | None:
        v = await self._get("local", 1)
        return v if isinstance(v, LocalIdentity) else None

    async def set_local_identity(self, identity: LocalIdentity) -> None:
        self._put("local", 1, identity)

    async def get_remote_identity(self, address: Address) -> bytes | None:
        v = await self._get("identity", addr_key(address))
        return v if isinstance(v, bytes) else None

    async def save_remote_identity(self, address: Address, identity_key: bytes) -> None:
        self._put("identity", addr_key(address), bytes(identity_key))

    # prekeys
    async def load_prekey(self, prekey_id: int) -> bytes | None:
        self._prekeys.claim(self, int(prekey_id))
        v = await self._get("prekey", int(prekey_id))
        return v if isinstance(v, bytes) else None

    async def store_prekey(self, prekey_id: int, record: bytes) -> None:
        self._put("prekey", int(prekey_id), bytes(record))
        self._put(HANDED, int(prekey_id), DELETED)

    async def remove_prekey(self, prekey_id: int) -> None:
        self._put("prekey", int(prekey_id), DELETED)
        self._put(HANDED, int(prekey_id), DELETED)

    async def hand_out_prekey(self, prekey_id: int | None = None) -> tuple[int, bytes] | None:
        if prekey_id is not None:
            pid = int(prekey_id)
            self._prekeys.claim(self, pid)
            rec = await self._prekey_to_hand_out(pid, any_state=True)
            if rec is not None:
                self._put(HANDED, pid, True)
                return pid, rec
            return None
        # lowest id first, over the stored ones (page by page) and the ones this transaction stored
        mine = {k for (t, k), v in self.overlay.items() if t == "prekey" and v is not DELETED
                and self.overlay.get((HANDED, k)) is not True}
        rows, lane = self._rows, self._lane
        after: int | None = None
        while True:
            page: list[int] = []
            if not self.wiped:
                page = await lane.read(lambda c: rows.prekeys_not_handed_out(c, after, _PAGE))
            last = len(page) < _PAGE
            cands = {p for p in page if ("prekey", p) not in self.overlay and (HANDED, p) not in self.overlay}
            cands.update(m for m in mine if (after is None or m > after) and (last or m <= page[-1]))
            for pid in sorted(cands):
                held_before = pid in self.claims
                if not self._prekeys.try_claim(self, pid):
                    continue  # a concurrent transaction of this process is using or handing it out
                rec = await self._prekey_to_hand_out(pid, any_state=False)
                if rec is not None:
                    self._put(HANDED, pid, True)
                    return pid, rec
                if not held_before:
                    self._prekeys.release(self, pid)
            if last:
                return None
            after = page[-1]

    async def _prekey_to_hand_out(self, pid: int, *, any_state: bool) -> bytes | None:
        k = ("prekey", pid)
        if k in self.overlay:
            v = self.overlay[k]
            return None if v is DELETED else v
        if self.wiped:
            return None
        rows, lane = self._rows, self._lane
        return await lane.read(lambda c: rows.prekey_to_hand_out(c, pid, any_state=any_state))

    async def count_prekeys(self) -> int:
        return await self._count("prekey")

    async def count_available_prekeys(self) -> int:
        if self.wiped or any(t in ("prekey", HANDED) for t, _ in self.overlay):
            handed = set(await self._keys(HANDED))
            return sum(1 for k in await self._keys("prekey") if k not in handed)
        rows, lane = self._rows, self._lane
        return await lane.read(lambda c: rows.count(c, "available"))

    async def _count(self, table: str) -> int:
        """Rows of ``table`` as this transaction sees them: a COUNT unless it wrote some."""
        if self.wiped or any(t == table for t, _ in self.overlay):
            return len(await self._keys(table))
        rows, lane = self._rows, self._lane
        return await lane.read(lambda c: rows.count(c, table))

    async def load_signed_prekey(self, signed_prekey_id: int) -> bytes | None:
        v = await self._get("signed", int(signed_prekey_id))
        return v if isinstance(v, bytes) else None

    async def store_signed_prekey(self, signed_prekey_id: int, record: bytes) -> None:
        self._put("signed", int(signed_prekey_id), bytes(record))

    async def remove_signed_prekey(self, signed_prekey_id: int) -> None:
        self._put("signed", int(signed_prekey_id), DELETED)

    async def list_signed_prekeys(self) -> list[int]:
        return [int(k) for k in await self._keys("signed")]

    # sessions
    async def load_session(self, address: Address) -> bytes | None:
        v = await self._get("session", addr_key(address))
        return v if isinstance(v, bytes) else None

    async def load_sessions(self, addresses: Sequence[Address]) -> dict[Address, bytes]:
        out: dict[Address, bytes] = {}
        missing: dict[str, Address] = {}
        for a in addresses:
            k = ("session", addr_key(a))
            if k in self.overlay:
                v = self.overlay[k]
            elif self.wiped:
                v = None
            elif k in self.prefetched:
                v = self.prefetched[k]
            else:
                missing[k[1]] = a
                continue
            if isinstance(v, bytes):
                out[a] = v
        if missing:
            rows = self._rows
            lane = self._lane
            keys = list(missing)
            found = await lane.read(lambda c: rows.read_many(c, "session", keys))
            for ak, rec in found.items():
                out[missing[ak]] = rec
        return out

    async def store_session(self, address: Address, record: bytes) -> None:
        self._put("session", addr_key(address), bytes(record))

    async def store_sessions(self, records: dict[Address, bytes]) -> None:
        for a, r in records.items():
            self._put("session", addr_key(a), bytes(r))

    async def delete_session(self, address: Address) -> None:
        self._put("session", addr_key(address), DELETED)

    async def list_sessions(self) -> list[Address]:
        return sorted(Address.parse(k) for k in await self._keys("session"))

    async def count_sessions(self) -> int:
        return await self._count("session")

    # sender keys
    async def load_sender_key(self, group_id: str, sender: Address) -> bytes | None:
        v = await self._get("senderkey", (group_id, addr_key(sender)))
        return v if isinstance(v, bytes) else None

    async def store_sender_key(self, group_id: str, sender: Address, record: bytes) -> None:
        self._put("senderkey", (group_id, addr_key(sender)), bytes(record))

    async def delete_sender_key(self, group_id: str, sender: Address) -> None:
        self._put("senderkey", (group_id, addr_key(sender)), DELETED)

    # meta
    async def get_meta(self, key: str) -> bytes | None:
        v = await self._get("meta", key)
        return v if isinstance(v, bytes) else None

    async def set_meta(self, key: str, value: bytes) -> None:
        self._put("meta", key, bytes(value))

    # caller rows
    async def get_received(self, digest: bytes) -> tuple[bytes, bool] | None:
        v = await self._get("received", bytes(digest))
        if v is None:
            return None
        pt, handled, _t = v
        return pt, handled

    async def put_received(self, digest: bytes, plaintext: bytes, now: float) -> None:
        self._put("received", bytes(digest), (bytes(plaintext), False, float(now)))

    async def mark_handled(self, digest: bytes, now: float) -> None:
        if await self._get("received", bytes(digest)) is not None:
            self._put("received", bytes(digest), (b"", True, float(now)))

    async def prune_received(self, handled_before: float) -> int:
        return await self._prune("received", handled_before, lambda v: bool(v[1]) and v[2] < handled_before)

    async def _prune(self, table: str, before: float, older: Callable[[Any], bool]) -> int:
        """Delete the stored rows the database finds older than ``before`` unless this transaction wrote
        them, and the rows this transaction wrote for which ``older(value)``; how many."""
        n = 0
        if not self.wiped:
            rows = self._rows
            lane = self._lane
            found = await lane.read(lambda c: rows.prunable(c, table, before))
            for k in found:
                if (table, k) not in self.overlay:
                    self._put(table, k, DELETED)
                    n += 1
        for (t, k), v in list(self.overlay.items()):
            if t == table and v is not DELETED and older(v):
                self._put(table, k, DELETED)
                n += 1
        return n

    async def outbox_put(self, entry: OutboxEntry) -> None:
        self._put("outbox", entry.message_id, entry)

    async def outbox_remove(self, message_id: str) -> bool:
        if await self._get("outbox", message_id) is None:
            return False
        self._put("outbox", message_id, DELETED)
        return True

    async def outbox_discard(self, message_ids: Sequence[str]) -> None:
        for mid in message_ids:
            self._put("outbox", mid, DELETED)

    async def outbox_list(self, limit: int = 1000, *, chats: Callable[[str], bool] | None = None) -> list[OutboxEntry]:
        pending = {k: v for (t, k), v in self.overlay.items() if t == "outbox"
                   and (chats is None or v is DELETED or chats(v.address))}
        base: list[OutboxEntry] = []
        if not self.wiped:
            rows = self._rows
            lane = self._lane
            n = limit + sum(1 for v in pending.values() if v is DELETED)
            base = await lane.read(lambda c: rows.outbox_first(c, n, chats))
        entries = {e.message_id: e for e in base if e.message_id not in pending}
        entries.update({k: v for k, v in pending.items() if v is not DELETED})
        out = sorted(entries.values(), key=lambda e: (e.created_at, e.message_id))
        return out[:limit]

    async def count_outbox(self, *, chats: Callable[[str], bool] | None = None) -> int:
        if chats is None:
            return await self._count("outbox")
        rows, lane = self._rows, self._lane
        chat_of: dict[str, str] = {} if self.wiped else await lane.read(rows.outbox_chats)
        for (t, k), v in self.overlay.items():
            if t == "outbox":
                if v is DELETED:
                    chat_of.pop(k, None)
                else:
                    chat_of[k] = v.address
        return sum(1 for chat in chat_of.values() if chats(chat))

    # session health: sent plaintexts, retry counters, PN -> LID
    async def sent_put(self, msg: SentMessage) -> None:
        self._put("sent", (msg.message_id, msg.chat), msg)

    async def sent_get(self, message_id: str, chat: str) -> SentMessage | None:
        v = await self._get("sent", (message_id, chat))
        return v if isinstance(v, SentMessage) else None

    async def sent_prune(self, created_before: float) -> int:
        return await self._prune("sent", created_before, lambda m: bool(m.created_at < created_before))

    async def count_sent(self) -> int:
        return await self._count("sent")

    async def retry_count_bump(self, message_id: str, sender: str, now: float) -> int:
        v = await self._get("retry", (message_id, sender))
        n = (int(v[0]) if v is not None else 0) + 1
        self._put("retry", (message_id, sender), (n, float(now)))
        return n

    async def retry_count_clear(self, message_id: str, sender: str) -> None:
        self._put("retry", (message_id, sender), DELETED)

    async def retry_prune(self, before: float) -> int:
        return await self._prune("retry", before, lambda v: bool(v[1] < before))

    async def migrate_address(self, old_name: str, new_name: str) -> int:
        check_names(old_name, new_name)
        if old_name == new_name:
            return 0
        n = 0
        for table in ("session", "identity", "senderkey"):
            for old, value in (await self._of_name(table, old_name)).items():
                new = (old[0], _renamed(old[1], new_name)) if table == "senderkey" else _renamed(old, new_name)
                if await self._get(table, new) is None:  # an existing row of the new name is kept
                    self._put(table, new, value)
                    n += 1
                self._put(table, old, DELETED)
        return n

    async def _of_name(self, table: str, name: str) -> dict[Any, bytes]:
        """The rows of ``table`` under address name ``name`` as this transaction sees them."""
        found: dict[Any, bytes] = {}
        if not self.wiped:
            rows, lane = self._rows, self._lane
            found = await lane.read(lambda c: rows.of_name(c, table, name))
        out = {k: v for k, v in found.items() if (table, k) not in self.overlay}
        for (t, k), v in self.overlay.items():
            if t == table and v is not DELETED and (k[1] if table == "senderkey" else k).rpartition(".")[0] == name:
                out[k] = v
        return out

    async def set_lid_mapping(self, pn_user: str, lid_user: str) -> None:
        check_names(pn_user, lid_user)
        for pn in await self._pns_for_lid(lid_user):
            if pn != pn_user:
                self._put("lid", pn, DELETED)
        self._put("lid", pn_user, lid_user)

    async def get_lid_for_pn(self, pn_user: str) -> str | None:
        v = await self._get("lid", pn_user)
        return v if isinstance(v, str) else None

    async def get_pn_for_lid(self, lid_user: str) -> str | None:
        pns = await self._pns_for_lid(lid_user)
        return pns[0] if pns else None

    async def _pns_for_lid(self, lid_user: str) -> list[str]:
        mine = sorted(k for (t, k), v in self.overlay.items() if t == "lid" and v is not DELETED and v == lid_user)
        if self.wiped:
            return mine
        rows, lane = self._rows, self._lane
        found = await lane.read(lambda c: rows.pns_for_lid(c, lid_user))
        return mine + [p for p in found if ("lid", p) not in self.overlay]

    def _wipe(self) -> None:
        self.overlay.clear()
        self.prefetched.clear()
        self.wiped = True


def _renamed(addr: str, name: str) -> str:
    """``addr`` (``old.device``) under address name ``name``, same device id."""
    return addr_key(Address(name, Address.parse(addr).device_id))
