"""Fixtures for the transport tests."""

from __future__ import annotations

import pytest

from wacrypto.chat.server import ServerKeys


@pytest.fixture(scope="session")
def server_keys() -> ServerKeys:
    keys, _, _ = ServerKeys.generate()
    return keys
