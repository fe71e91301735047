"""The store contract (wacrypto.testing.check_key_store): every check, every backend (memory, SQLite,
PostgreSQL, MariaDB), each check reported on its own; and proof that the suite catches a broken store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest

from wacrypto.address import Address
from wacrypto.store import open_store
from wacrypto.store.dump import StoreDump
from wacrypto.store.memory import MemoryKeyStore
from wacrypto.store.protocols import KeyStore, StoreInfo, Transaction
from wacrypto.testing import STORE_CHECKS, StoreCheck, check_key_store


@pytest.mark.parametrize("check", STORE_CHECKS, ids=lambda c: c.name)
async def test_contract(check: StoreCheck, backend: str, make_url: Callable[[str], str]) -> None:
    async def factory() -> KeyStore:
        return await open_store(make_url(backend))

    await check_key_store(factory, checks=[check])


@pytest.mark.parametrize("server", ["postgresql", "mariadb"])
@pytest.mark.parametrize(
    "name", ["same_address_is_serialized", "failed_transaction_changes_nothing", "concurrent_bundles_get_distinct_prekeys",
             "cipher_roundtrip_and_failed_decrypt_changes_nothing"],
)
async def test_striped_lanes_keep_the_contract(server: str, name: str, make_url: Callable[[str], str]) -> None:
    """With several connections (lanes) addresses are striped over them; each address stays serialized."""

    async def factory() -> KeyStore:
        return await open_store(make_url(server) + "?lanes=4")

    await check_key_store(factory, checks=[c for c in STORE_CHECKS if c.name == name])


async def test_the_whole_suite_in_one_call() -> None:
    await check_key_store(lambda: _memory())


async def _memory() -> KeyStore:
    return MemoryKeyStore()


# ------------------------------------------------------------------ the suite catches broken stores
class _Tx:
    """A transaction passing everything through, except what a broken store gets wrong."""

    def __init__(self, inner: Transaction, broken: str) -> None:
        self._inner = inner
        self._broken = broken

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def hand_out_prekey(self, prekey_id: int | None = None) -> tuple[int, bytes] | None:
        if self._broken == "hand_out_newest" and prekey_id is None:
            # the old get_bundle: always the newest prekey, never marked
            pid = (await self._inner.get_meta("next_prekey_id") or b"\x00\x00\x00\x01")
            n = int.from_bytes(pid, "big") - 1
            rec = await self._inner.load_prekey(n)
            return (n, rec) if rec is not None else None
        return await self._inner.hand_out_prekey(prekey_id)

    async def count_outbox(self, *, chats: Callable[[str], bool] | None = None) -> int:
        if self._broken == "count_outbox_unfiltered":
            return await self._inner.count_outbox()
        n = await self._inner.count_outbox(chats=chats)
        return n + 1 if self._broken == "count_outbox" and n else n

    async def sent_prune(self, created_before: float) -> int:
        if self._broken == "sent_prune_all":
            return await self._inner.sent_prune(float("inf"))
        return await self._inner.sent_prune(created_before)

    async def migrate_address(self, old_name: str, new_name: str) -> int:
        if self._broken != "migrate_sessions_only":
            return await self._inner.migrate_address(old_name, new_name)
        n = 0
        for a in await self._inner.list_sessions():
            rec = await self._inner.load_session(a)
            if a.name == old_name and rec is not None:
                await self._inner.store_session(Address(new_name, a.device_id), rec)
                await self._inner.delete_session(a)
                n += 1
        return n


class _Broken:
    def __init__(self, broken: str) -> None:
        self._inner = MemoryKeyStore()
        self._broken = broken

    def transaction(self, *addresses: Address | str) -> AbstractAsyncContextManager[Transaction]:
        @asynccontextmanager
        async def cm() -> AsyncIterator[Transaction]:
            async with self._inner.transaction(*addresses) as tx:
                yield _Tx(tx, self._broken)  # type: ignore[misc]

        return cm()

    async def wipe(self) -> None:
        if self._broken != "wipe":
            await self._inner.wipe()

    async def dump(self) -> StoreDump:
        d = await self._inner.dump()
        if self._broken == "dump_without_retry_counters":
            d.retry_counts.clear()
        return d

    async def load(self, dump: StoreDump) -> None:
        await self._inner.load(dump)

    async def info(self) -> StoreInfo:
        return await self._inner.info()

    async def aclose(self) -> None:
        await self._inner.aclose()


@pytest.mark.parametrize(
    "broken, check, message",
    [
        ("hand_out_newest", "prekeys_are_handed_out_once_while_any_remain", "has no one-time prekey though unused ones remain"),
        ("count_outbox", "counts", "count_outbox"),
        ("count_outbox_unfiltered", "outbox_of_some_chats", r"count_outbox\(chats=\)"),
        ("wipe", "wipe_resets_the_account", "local identity after wipe"),
        ("sent_prune_all", "sent_messages", "sent_prune before the oldest"),
        ("dump_without_retry_counters", "retry_counters_survive_a_restart", "continues the count"),
        ("migrate_sessions_only", "migrate_address_moves_a_name_atomically", "rows moved by a migration"),
    ],
)
async def test_a_broken_store_fails_with_a_clear_message(broken: str, check: str, message: str) -> None:
    async def factory() -> KeyStore:
        return _Broken(broken)

    await check_key_store(factory, checks=[c for c in STORE_CHECKS if c.name == "commit_makes_writes_visible"])
    with pytest.raises(AssertionError, match=f"store contract {check}: .*{message}"):
        await check_key_store(factory, checks=[c for c in STORE_CHECKS if c.name == check])
    with pytest.raises(AssertionError):
        await check_key_store(factory)  # and so does the whole suite
