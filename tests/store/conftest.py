from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from store_dbs import BACKENDS, SQL_BACKENDS, database_url
from wacrypto.store import open_store
from wacrypto.store.protocols import KeyStore


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=SQL_BACKENDS)
def sql_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_url(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """make_url(backend) -> URL of a new empty database, dropped at teardown."""
    with ExitStack() as stack:
        yield lambda b: stack.enter_context(database_url(b, tmp_path))


@pytest.fixture
def url(backend: str, make_url: Callable[[str], str]) -> str:
    return make_url(backend)


@pytest.fixture
def sql_url(sql_backend: str, make_url: Callable[[str], str]) -> str:
    return make_url(sql_backend)


@pytest.fixture
async def store(url: str) -> AsyncIterator[KeyStore]:
    s = await open_store(url)
    try:
        yield s
    finally:
        await s.aclose()
