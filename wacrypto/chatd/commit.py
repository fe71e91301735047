"""Group commit for chatd: the service's calls run in batches, one database transaction each.

Every call chatd makes into :class:`~wacrypto.chatd.service.ChatService` (a login, a stanza, a page
of a mailbox, the expiry sweep) is queued on the :class:`Committer`. Its one task takes whatever is
queued (up to ``max_batch``), runs the calls one after another inside one database transaction
(each call's transactions are savepoints of it), commits once (one fsync for the whole batch), and
only then, in queue order, hands each call's result to its ``then`` callback and its waiter. So what
a result says (an ack, a delivery to another device) is acted on only after it is durable, and a busy
server pays one commit per batch instead of several per message. The calls' statements run on the
event loop's thread (each takes microseconds from the page cache, less than a hop to a thread and
back); the COMMIT, whose fsync may take milliseconds, runs on a worker thread, so the event loop
never waits for the disk. When another process holds the file's write lock the whole batch runs on
the worker thread (:meth:`ChatdDatabase.batch <wacrypto.chatd.db.ChatdDatabase.batch>`), which waits
for it.

A call that raises is rolled back alone (its savepoint) and its exception goes to its waiter or
callback; a batch whose commit fails raises :class:`~wacrypto.errors.StoreError` out of
:meth:`Committer.run` (nothing of it is acted on: the server stops, fail loudly, and the clients
resend what was never acked). Whenever :meth:`Committer.run` ends (that error, or cancelled), every
call not committed, queued or in that batch, gets a :class:`~wacrypto.errors.StoreError` ("did not
commit"): no waiter is left waiting; a call or submit after that raises at once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final, Generic, TypeVar, final

import trio
from trio.lowlevel import enable_ki_protection

from wacrypto.chatd.db import ChatdDatabase
from wacrypto.errors import InvalidArgumentError, StoreError
from wacrypto.threads import uncancellable_thread_call

__all__ = ["Committer", "Outcome"]

T = TypeVar("T")

MAX_BATCH: Final = 512  # calls in one database transaction, at most
QUEUE_LIMIT: Final = 8192  # queued calls before submitters wait (backpressure on the readers)


@final
class Outcome(Generic[T]):
    """What a call gave: its value, or the exception it raised."""

    __slots__ = ("value", "error")

    def __init__(self, value: T | None, error: Exception | None) -> None:
        self.value = value
        self.error = error

    def unwrap(self) -> T:
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


@final
class _Call(Generic[T]):
    __slots__ = ("fn", "then", "result", "done")

    def __init__(self, fn: Callable[[], T], then: Callable[[Outcome[T]], None] | None) -> None:
        self.fn = fn
        self.then = then
        self.result: Outcome[T] | None = None
        self.done = trio.Event()

    def run(self) -> None:
        try:
            self.result = Outcome(self.fn(), None)
        except Exception as exc:  # noqa: BLE001 - delivered to the caller, the batch goes on
            self.result = Outcome(None, exc)


@final
class Committer:
    """Batches the calls into ``db`` (see the module docstring). Start :meth:`run` in a nursery."""

    def __init__(self, db: ChatdDatabase, *, max_batch: int = MAX_BATCH, queue_limit: int = QUEUE_LIMIT) -> None:
        if max_batch < 1 or queue_limit < 1:
            raise InvalidArgumentError("max_batch and queue_limit must be at least 1")
        self.db = db
        self.max_batch = max_batch
        self.queue_limit = queue_limit
        self._queue: deque[_Call[Any]] = deque()
        self._wake = trio.Event()
        self._space = trio.Event()
        self.running = False
        self._stopped = False  # run() ended: nothing more is committed
        self.batches = 0  # committed batches
        self.calls = 0  # calls committed in them

    def __repr__(self) -> str:
        return f"Committer(queued={len(self._queue)}, batches={self.batches}, calls={self.calls})"

    async def submit(self, fn: Callable[[], T], then: Callable[[Outcome[T]], None]) -> None:
        """Queue ``fn`` (run in the worker thread, in a batch); ``then(outcome)`` runs in trio after
        the batch committed, in queue order. Waits only while the queue is full."""
        if self._stopped:
            raise StoreError("chatd's committer has stopped: nothing more is written")
        while len(self._queue) >= self.queue_limit:
            self._space = trio.Event() if self._space.is_set() else self._space
            await self._space.wait()
        self._put(_Call(fn, then))

    async def call(self, fn: Callable[[], T], then: Callable[[Outcome[T]], None] | None = None) -> T:
        """Queue ``fn``, wait until its batch committed (``then`` has run), return its result or raise."""
        if self._stopped:
            raise StoreError("chatd's committer has stopped: nothing more is written")
        if not self.running:
            raise InvalidArgumentError("the committer is not running (ChatdServer.serve starts it)")
        c = _Call(fn, then)
        self._put(c)
        with trio.CancelScope(shield=True):  # once queued it runs: wait for its outcome
            await c.done.wait()
        assert c.result is not None
        return c.result.unwrap()

    def _put(self, c: _Call[Any]) -> None:
        self._queue.append(c)
        self._wake.set()

    @enable_ki_protection  # see _run_here
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.running = True
        task_status.started()
        batch: list[_Call[Any]] = []
        try:
            while True:
                # a cancel lands here, between batches (the calls still queued fail below), never
                # inside one: a batch that started runs to its commit (or its failure)
                if self._queue:
                    await trio.lowlevel.checkpoint()
                while not self._queue:
                    self._wake = trio.Event()
                    await self._wake.wait()
                n = min(len(self._queue), self.max_batch)
                batch = [self._queue.popleft() for _ in range(n)]
                self._space.set()
                committing = self._run_here(batch)
                if committing is not None:
                    await committing  # the COMMIT on its thread (uncancellable)
                else:  # another process holds the write lock: wait for it on the thread
                    with trio.CancelScope(shield=True):
                        await trio.to_thread.run_sync(self._run_batch, batch)
                self.batches += 1
                self.calls += n
                committed, batch = deque(batch), []
                try:
                    while committed:
                        c = committed.popleft()
                        assert c.result is not None
                        _finish(c, c.result)
                finally:  # a callback raised (a bug: it ends the server): the others still get their results
                    for c in committed:
                        c.done.set()
        finally:
            self.running = False
            self._stopped = True
            lost = StoreError("chatd's committer stopped before this call committed")
            for c in [*batch, *self._queue]:
                if not c.done.is_set():
                    _finish(c, Outcome(None, lost))
            self._queue.clear()
            self._space.set()

    @enable_ki_protection  # a Ctrl-C waits until the batch is consistent (committing or rolled back)
    def _run_here(self, batch: list[_Call[Any]]) -> Awaitable[Any] | None:
        """Run the batch's statements on this (the event loop's) thread: microseconds each from the
        page cache, far less than a thread hop. Returns the wait for its COMMIT, already started on a
        worker thread before anything else runs on the loop; None (nothing run) when another process
        holds the file's write lock."""
        db = self.db
        if not db.open_batch():
            return None
        try:
            for c in batch:
                c.run()
        except BaseException:
            db.abort_batch()
            raise
        db.pause_batch()
        try:
            waiting: Awaitable[Any] = uncancellable_thread_call(db.commit_batch)
            return waiting
        except BaseException:  # no thread could start
            db.drop_paused_batch()
            raise

    def _run_batch(self, batch: list[_Call[Any]]) -> None:
        with self.db.batch():
            for c in batch:
                c.run()


def _finish(c: _Call[Any], result: Outcome[Any]) -> None:
    """Hand ``result`` to the call's callback and waiter; a callback that raises does not keep the
    waiter (or the calls after it) waiting."""
    c.result = result
    try:
        if c.then is not None:
            c.then(result)
    finally:
        c.done.set()
