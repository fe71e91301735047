"""Chats picked by stripe, for tests and benchmarks of a striped device (wacrypto/whatsapp/stripes.py)."""

from __future__ import annotations

from wacrypto.whatsapp.stripes import stripe_of

__all__ = ["chats_by_stripe"]


def chats_by_stripe(count: int, per: int, pattern: str = "1555100{:04d}@s.whatsapp.net") -> dict[int, list[str]]:
    """``per`` chats for each stripe of ``count``: the first of ``pattern.format(0)``, ``pattern.format(1)``,
    ... that fall in each stripe (so each stripe of a divisor of ``count`` gets ``per * count / divisor``)."""
    out: dict[int, list[str]] = {i: [] for i in range(count)}
    n = 0
    while any(len(v) < per for v in out.values()):
        chat = pattern.format(n)
        i = stripe_of(chat, count)
        if len(out[i]) < per:
            out[i].append(chat)
        n += 1
    return out
