"""Reconnect backoff: jittered Fibonacci, capped, reset only after a stable period."""

from __future__ import annotations

import itertools

from wacrypto.transport.backoff import Backoff


def test_sequence_without_jitter_is_fibonacci_and_capped() -> None:
    b = Backoff(base=1.0, cap=10.0, jitter=0.0)
    assert [b.next_delay() for _ in range(12)] == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 3.0, 5.0, 8.0, 10.0, 10.0]
    b = Backoff(base=1.0, cap=10.0, jitter=0.0, initial_steps=1)
    assert [b.next_delay() for _ in range(9)] == [0.0, 1.0, 1.0, 2.0, 3.0, 5.0, 8.0, 10.0, 10.0]


def test_jitter_stays_within_bounds() -> None:
    values = itertools.cycle([0.0, 1.0, 0.5, 0.999])
    b = Backoff(base=1.0, cap=60.0, jitter=0.2, initial_steps=1, rng=lambda: next(values))
    delays = [b.next_delay() for _ in range(8)]
    nominal = [0, 1, 1, 2, 3, 5, 8, 13]
    for d, n in zip(delays, nominal):
        assert 0.8 * n <= d <= 1.2 * n
    assert delays[1] == 0.8 and delays[2] == 1.2  # rng 0.0 -> -20 %, 1.0 -> +20 %


def test_reset_only_after_a_stable_period() -> None:
    b = Backoff(base=1.0, cap=60.0, stable_period=60.0, jitter=0.0, initial_steps=1)
    for _ in range(4):
        b.next_delay()
    b.connected(100.0)
    b.disconnected(105.0)  # flapping: died 5 s after connecting
    assert b.next_delay() == 3.0
    b.connected(200.0)
    b.disconnected(260.0)  # stable for 60 s
    assert b.next_delay() == 0.0
    assert b.next_delay() == 1.0


def test_rate_limit_penalty() -> None:
    b = Backoff(base=1.0, jitter=0.0, rate_limit_penalty=30.0, initial_steps=1)
    assert b.next_delay(rate_limited=True) == 30.0
    assert b.next_delay(rate_limited=True) == 31.0
