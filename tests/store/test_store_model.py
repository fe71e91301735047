"""Property test: random transactions on each backend behave exactly as on the memory reference store.

Hypothesis draws transactions of reads and writes of every kind of state (sessions, identities, one-time
prekeys with hand-outs, sender keys, meta, received rows, the outbox, sent plaintexts, retry counters,
PN -> LID mappings and address migrations), some of which fail at the end,
with an occasional wipe. Each is run on the memory store and on the store under test; every read, count
and hand-out must give the same answer, and after each transaction both stores must dump the same rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wacrypto.address import Address
from wacrypto.store import open_store
from wacrypto.store.memory import MemoryKeyStore
from wacrypto.store.protocols import KeyStore, OutboxEntry, SentMessage, Transaction

ADDRS = [Address("bob", 1), Address("bob", 2), Address("carol", 1)]
blob = st.binary(min_size=0, max_size=40)
addr = st.sampled_from(ADDRS)
pid = st.integers(1, 40)
digest = st.sampled_from([bytes([i]) * 32 for i in range(4)])
mid = st.sampled_from([f"m{i}" for i in range(5)])
at = st.floats(0, 100, allow_nan=False)
chat = st.sampled_from(["c1", "c2"])
name = st.sampled_from(["bob", "carol", "dave"])
user = st.sampled_from(["pn1", "pn2", "lid1", "lid2"])

OPS = st.one_of(
    st.tuples(st.just("store_session"), addr, blob),
    st.tuples(st.just("delete_session"), addr),
    st.tuples(st.just("load_session"), addr),
    st.tuples(st.just("load_sessions")),
    st.tuples(st.just("list_sessions")),
    st.tuples(st.just("save_remote_identity"), addr, blob),
    st.tuples(st.just("get_remote_identity"), addr),
    st.tuples(st.just("store_prekey"), pid, blob),
    st.tuples(st.just("store_prekeys"), pid, st.integers(1, 40)),
    st.tuples(st.just("remove_prekey"), pid),
    st.tuples(st.just("load_prekey"), pid),
    st.tuples(st.just("hand_out_prekey")),
    st.tuples(st.just("hand_out_named"), pid),
    st.tuples(st.just("counts")),
    st.tuples(st.just("store_sender_key"), st.sampled_from(["g", "G"]), addr, blob),
    st.tuples(st.just("delete_sender_key"), st.sampled_from(["g", "G"]), addr),
    st.tuples(st.just("set_meta"), st.sampled_from(["a", "b"]), blob),
    st.tuples(st.just("get_meta"), st.sampled_from(["a", "b"])),
    st.tuples(st.just("put_received"), digest, blob, at),
    st.tuples(st.just("mark_handled"), digest, at),
    st.tuples(st.just("get_received"), digest),
    st.tuples(st.just("prune_received"), at),
    st.tuples(st.just("outbox_put"), mid, blob, at),
    st.tuples(st.just("outbox_remove"), mid),
    st.tuples(st.just("outbox_list"), st.integers(1, 6)),
    st.tuples(st.just("sent_put"), mid, chat, blob, at),
    st.tuples(st.just("sent_get"), mid, chat),
    st.tuples(st.just("sent_prune"), at),
    st.tuples(st.just("count_sent")),
    st.tuples(st.just("retry_count_bump"), mid, name, at),
    st.tuples(st.just("retry_count_clear"), mid, name),
    st.tuples(st.just("retry_prune"), at),
    st.tuples(st.just("migrate_address"), name, name),
    st.tuples(st.just("set_lid_mapping"), user, user),
    st.tuples(st.just("get_lid_for_pn"), user),
    st.tuples(st.just("get_pn_for_lid"), user),
)
TXS = st.lists(
    st.one_of(st.tuples(st.just("tx"), st.lists(OPS, max_size=8), st.booleans()), st.tuples(st.just("wipe"))),
    min_size=1,
    max_size=12,
)


async def _op(tx: Transaction, op: tuple[Any, ...]) -> object:
    name, *a = op
    if name == "load_sessions":
        return await tx.load_sessions(ADDRS)
    if name == "store_prekeys":
        for i in range(a[0], a[0] + a[1] // 4 + 1):
            await tx.store_prekey(i, b"k%d" % i)
        return None
    if name == "hand_out_named":
        return await tx.hand_out_prekey(a[0])
    if name == "counts":
        return (await tx.count_prekeys(), await tx.count_available_prekeys(), await tx.count_sessions(),
                await tx.count_outbox())
    if name == "list_sessions":
        return sorted(await tx.list_sessions())
    if name == "outbox_put":
        return await tx.outbox_put(OutboxEntry(a[0], "bob.1", 2, a[1], a[2]))
    if name == "outbox_list":
        return await tx.outbox_list(limit=a[0])
    if name == "sent_put":
        return await tx.sent_put(SentMessage(*a))
    result: object = await getattr(tx, name)(*a)
    return result


class _Fail(Exception):
    pass


async def _apply(store: KeyStore, step: tuple[Any, ...]) -> list[object]:
    if step[0] == "wipe":
        await store.wipe()
        return []
    _, ops, fail = step
    out: list[object] = []
    try:
        async with store.transaction(*ADDRS) as tx:
            for op in ops:
                out.append(await _op(tx, op))
            if fail:
                raise _Fail
    except _Fail:
        out.append("failed")
    return out


def _run(backend: str, url: str, steps: list[tuple[Any, ...]]) -> None:
    async def main() -> None:
        model = MemoryKeyStore()
        store = await open_store(url)
        try:
            await store.wipe()  # the database outlives one example
            for i, step in enumerate(steps):
                want = await _apply(model, step)
                got = await _apply(store, step)
                assert got == want, f"step {i} {step!r} on {backend}"
                assert (await store.dump()).to_json() == (await model.dump()).to_json(), f"rows after step {i} {step!r}"
        finally:
            await store.aclose()

    trio.run(main)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "mariadb"])
def test_every_backend_behaves_as_the_memory_store(backend: str, make_url: Callable[[str], str]) -> None:
    url = make_url(backend)

    @settings(max_examples=40 if backend == "sqlite" else 20, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(steps=TXS)
    def check(steps: list[tuple[Any, ...]]) -> None:
        _run(backend, url, steps)

    check()
