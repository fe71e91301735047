"""Trio-side synchronization of the SQL store: parked gates and address locks.

These are cheaper than ``trio.Event``/``trio.Lock`` on the store's hot path (a fan-out to hundreds of
devices takes hundreds of address locks at once; a lane hop runs on a cached worker thread).
"""

from __future__ import annotations

from typing import Any

import trio
from trio.lowlevel import Abort, Task, current_task, reschedule, wait_task_rescheduled

__all__ = ["Gate", "AddrLock", "AddressLocks"]

class Gate:
    """A one-shot event whose waiters are parked directly on the scheduler.

    ``wait()`` cannot be cancelled (like an ``Event.wait`` inside a shielded cancel scope, without the cost
    of a cancel scope per wait); ``wait(cancellable=True)`` can.
    """

    __slots__ = ("is_set", "_tasks")

    def __init__(self) -> None:
        self.is_set = False
        self._tasks: list[Task] = []

    def set(self) -> None:
        self.is_set = True
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            reschedule(t)

    async def wait(self, *, cancellable: bool = False) -> None:
        if self.is_set:
            return
        task = current_task()
        self._tasks.append(task)
        if not cancellable:
            await wait_task_rescheduled(lambda _: Abort.FAILED)
            return

        def abort(_: Any) -> Abort:
            self._tasks.remove(task)
            return Abort.SUCCEEDED

        await wait_task_rescheduled(abort)


class AddrLock:
    """The in-process lock of one address: created held, dropped when its last user leaves.

    Cheaper than a ``trio.Lock`` per address (a fan-out takes hundreds at once); waiters park on a
    lot made only under contention, and a release hands the lock to the first waiter (FIFO, no barging).
    """

    __slots__ = ("busy", "refs", "lot")

    def __init__(self) -> None:
        self.busy = True
        self.refs = 1  # holder + waiters
        self.lot: trio.lowlevel.ParkingLot | None = None

    async def acquire(self) -> None:
        if not self.busy:  # (not reached in practice: an idle lock is dropped by its last user)
            self.busy = True
            return
        if self.lot is None:
            self.lot = trio.lowlevel.ParkingLot()
        await self.lot.park()  # woken by release() with the lock already ours

    def release(self) -> None:
        if self.lot:
            self.lot.unpark()  # hand over: busy stays True
        else:
            self.busy = False


class AddressLocks:
    """The in-process locks of a store's addresses, taken in sorted order (no deadlock between tasks)."""

    __slots__ = ("_locks",)

    def __init__(self) -> None:
        self._locks: dict[str, AddrLock] = {}

    async def lock(self, keys: list[str]) -> None:
        """Take the locks of ``keys`` (sorted, distinct); on cancellation none is held."""
        locks = self._locks
        for i, k in enumerate(keys):
            ent = locks.get(k)
            if ent is None:
                # uncontended (the common case): no wait, no checkpoint
                locks[k] = AddrLock()
                continue
            ent.refs += 1
            try:
                await ent.acquire()
            except BaseException:
                self._unref(k, ent)
                self.unlock(keys[:i])  # the ones already held
                raise

    def _unref(self, k: str, ent: AddrLock) -> None:
        ent.refs -= 1
        if ent.refs == 0:
            del self._locks[k]

    def unlock(self, keys: list[str]) -> None:
        locks = self._locks
        for k in reversed(keys):
            ent = locks[k]
            ent.release()
            self._unref(k, ent)
