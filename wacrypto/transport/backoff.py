"""Reconnect backoff policy (pure: time and randomness are parameters).

Delays, in units of ``base``: 0 (the first retry is immediate), then ``1`` for the first
``initial_steps`` retries (a restarting server is found again within one step), then a Fibonacci
growth 2, 3, 5, 8, ... capped at ``cap``. Each delay is multiplied by a uniform
factor in ``[1 - jitter, 1 + jitter]`` so that many clients cut off together do not reconnect in
lock-step. The sequence restarts only after a connection stayed up for ``stable_period``
(a connection that dies right after the handshake keeps backing off). A "rate limited" stream
error adds ``rate_limit_penalty`` seconds.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import final

from wacrypto.errors import InvalidArgumentError
from wacrypto.limits import DEFAULT_BACKOFF_CAP, DEFAULT_STABLE_PERIOD

__all__ = ["Backoff"]


@final
class Backoff:
    __slots__ = (
        "_base",
        "_cap",
        "_stable",
        "_jitter",
        "_penalty",
        "_rng",
        "_attempt",
        "_fib",
        "_connected_at",
        "_initial",
    )

    def __init__(
        self,
        *,
        base: float = 1.0,
        cap: float = DEFAULT_BACKOFF_CAP,
        stable_period: float = DEFAULT_STABLE_PERIOD,
        jitter: float = 0.2,
        rate_limit_penalty: float = 30.0,
        initial_steps: int = 5,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if base <= 0 or cap < base or stable_period < 0 or not 0 <= jitter < 1 or rate_limit_penalty < 0 or initial_steps < 1:
            raise InvalidArgumentError("invalid backoff parameters")
        self._base = base
        self._cap = cap
        self._stable = stable_period
        self._jitter = jitter
        self._penalty = rate_limit_penalty
        self._rng = rng
        self._attempt = 0
        self._fib = (0, 1)  # (current, next) in units of base
        self._connected_at: float | None = None
        self._initial = initial_steps

    @property
    def attempt(self) -> int:
        """Retries since the last reset."""
        return self._attempt

    def reset(self) -> None:
        self._attempt = 0
        self._fib = (0, 1)

    def next_delay(self, *, rate_limited: bool = False) -> float:
        """Seconds to wait before the next attempt; advances the sequence."""
        cur, nxt = self._fib
        if 1 <= self._attempt < self._initial - 1:  # Fibonacci itself starts 1, 1
            pass  # hold at one step for the first retries
        elif cur * self._base < self._cap:
            self._fib = (nxt, cur + nxt)
        self._attempt += 1
        delay = min(self._cap, cur * self._base)
        if rate_limited:
            delay += self._penalty
        if delay == 0:
            return 0.0
        factor = 1.0 + self._jitter * (2.0 * self._rng() - 1.0)
        return delay * factor

    def connected(self, now: float) -> None:
        """A connection was established at ``now``."""
        self._connected_at = now

    def disconnected(self, now: float) -> None:
        """The connection ended at ``now``; resets the sequence if it had been stable."""
        if self._connected_at is not None and now - self._connected_at >= self._stable:
            self.reset()
        self._connected_at = None

    def __repr__(self) -> str:
        return f"Backoff(attempt={self._attempt})"
