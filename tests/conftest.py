"""Shared fixtures: deterministic RNGs, chatd keys, a chatd subprocess."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from wacrypto.chatd.server import ServerKeys
from wacrypto.testing.chatd_process import ChatdProcess, cli_env, free_port, wacrypto_cmd
from wacrypto.testing.rng import SeededRng


@pytest.fixture
def seeded_rng() -> Callable[[bytes], SeededRng]:
    return SeededRng


@pytest.fixture(scope="session")
def server_keys() -> ServerKeys:
    keys, _, _ = ServerKeys.generate()
    return keys


@pytest.fixture(scope="session")
def keydir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A chatd key folder made by ``wacrypto chatd init``."""
    d = tmp_path_factory.mktemp("chatd")
    out = subprocess.run(wacrypto_cmd("chatd", "init", "--dir", str(d)), capture_output=True, text=True, env=cli_env(), timeout=30)
    assert out.returncode == 0, out.stderr
    return d


@pytest.fixture
def chatd_process(keydir: Path) -> Iterator[ChatdProcess]:
    proc = ChatdProcess(keydir, [free_port(), free_port()])
    yield proc
    proc.stop()
