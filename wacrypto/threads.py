"""Worker-thread calls for the layers that run blocking work off trio's thread (the SQL store's
COMMITs, chatd's batches): started at once, waited for without cancellation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import outcome
import trio
from trio.lowlevel import Abort, current_task, current_trio_token, reschedule, wait_task_rescheduled

__all__ = ["uncancellable_thread_call"]

T = TypeVar("T")


def uncancellable_thread_call(fn: Callable[[], T]) -> Any:
    """Run ``fn`` on a cached worker thread; the awaiting task cannot be cancelled meanwhile.

    The thread is started here, before the caller awaits (nothing else runs on the event loop in
    between: a caller that left state only that thread resolves can rely on it); await the result.
    """
    task = current_task()
    token = current_trio_token()

    def deliver(result: outcome.Outcome[T]) -> None:
        try:
            token.run_sync_soon(reschedule, task, result)
        except trio.RunFinishedError:  # pragma: no cover - the run ended under us
            pass

    # no thread name: trio would rename the OS thread twice per hop (two system calls a transaction)
    trio.lowlevel.start_thread_soon(fn, deliver)
    return wait_task_rescheduled(lambda _: Abort.FAILED)
