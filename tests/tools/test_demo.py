"""`wacrypto demo` (what `make demo` runs) completes on SQLite and in memory, and says so."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("mode", ["sqlite", "memory"])
def test_demo_runs_end_to_end(mode: str, tmp_path: Path) -> None:
    args = ["--dir", str(tmp_path / "demo")] if mode == "sqlite" else ["--memory"]
    proc = subprocess.run([sys.executable, "-m", "wacrypto", "demo", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = proc.stdout
    assert "part 1 done: every message decrypted exactly once" in out
    assert "rejected: DuplicateMessageError" in out and "rejected: DecryptionError" in out
    assert "bob got 7 of 7 messages (0 lost, 0 duplicated), alice got 1 of 1; 0 left in alice's outbox" in out
    if mode == "sqlite":
        assert (tmp_path / "demo" / "alice.db").exists() and (tmp_path / "demo" / "bob.db").exists()
