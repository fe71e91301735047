"""Fixtures for the loopback integration tests (helpers live in chat_helpers.py)."""

from __future__ import annotations

from chat_helpers import chatd_process, keydir, server_keys

__all__ = ["chatd_process", "keydir", "server_keys"]
