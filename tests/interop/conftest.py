"""Fixtures for the interop tests: the third-party peers are installed once per session by
``setup.sh``; a failed setup fails the run loudly (never a skip)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Iterator, Sequence

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peerproc import PeerFactory, PeerProcess  # noqa: E402

SETUP = Path(__file__).resolve().parent / "setup.sh"


@pytest.fixture(scope="session", autouse=True)
def interop_peers_installed() -> None:
    """Run setup.sh once per test session (idempotent and fast when already installed)."""
    proc = subprocess.run(["bash", str(SETUP)], stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(
            f"tests/interop/setup.sh failed with exit code {proc.returncode}:\n{proc.stderr}\n{proc.stdout}",
            pytrace=False,
        )


@pytest.fixture
def spawn() -> Iterator[PeerFactory]:
    """spawn(argv, env=None, **kw) -> PeerProcess, closed (and checked for exit code 0) at teardown."""
    procs: list[PeerProcess] = []

    def make(argv: Sequence[str], env: dict[str, str] | None = None, **kw: object) -> PeerProcess:
        p = PeerProcess(argv, env, **kw)  # type: ignore[arg-type]
        procs.append(p)
        return p

    yield make
    codes = [(p.name, p.close(), p.stderr) for p in procs]
    bad = [c for c in codes if c[1] != 0]
    assert not bad, f"peer(s) did not exit cleanly on EOF: {bad}"

