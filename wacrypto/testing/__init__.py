"""Test doubles and harnesses shipped for users of wacrypto (and used by our own suite).

- :class:`SeededRng`: a deterministic RNG for reproducible tests and vectors.
- :func:`chat_pair`, :func:`pump`, :func:`handshake`: connected sans-I/O chat connections.
- :class:`ChatdProcess`: the reference chatd in a subprocess, to SIGKILL and restart.
- :func:`check_key_store`: the key-store contract suite, runnable against any ``KeyStore``.
- :func:`~wacrypto.testing.stripes.chats_by_stripe`: chats picked so that each stripe of a device has its share.

Nothing here is needed in production; it is imported only by tests.
"""

from __future__ import annotations

from wacrypto.testing.rng import SeededRng
from wacrypto.testing.store_contract import STORE_CHECKS, StoreCheck, check_key_store

__all__ = ["SeededRng", "check_key_store", "STORE_CHECKS", "StoreCheck"]  # the rest: import from wacrypto.testing.<module>
