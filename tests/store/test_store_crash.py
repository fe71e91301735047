"""Kill -9 a worker at random moments while it sends and receives through a real database.

Afterwards: no message lost, none delivered twice, every session still decrypts. The default run does
a few kills per backend; ``WACRYPTO_FULL=1`` does 200 per backend. Also: two processes racing on one
account in one database never reuse a message key.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

WORKER = str(Path(__file__).with_name("store_worker.py"))
FULL = os.environ.get("WACRYPTO_FULL") == "1"
KILLS = int(os.environ.get("WACRYPTO_CRASH_KILLS", "200" if FULL else "20"))


def _worker(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, WORKER, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _check(p: subprocess.Popen[str], timeout: float = 120) -> str:
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, f"worker failed ({p.returncode}): {err[-3000:]}"
    return out


def _parse_log(path: Path) -> list[tuple[str, str, str]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        mid, flag, text = line.split(" ", 2)
        rows.append((mid, flag, text))
    return rows


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_kill_minus_nine_loses_and_duplicates_nothing(backend: str, make_url: Callable[[str], str], tmp_path: Path) -> None:
    au, bu = make_url(backend), make_url(backend)
    _check(_worker("setup", au, bu))
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    kills = 0
    for _ in range(KILLS):
        p = _worker("run", au, bu, str(tmp_path), "1000000")
        assert p.stdout is not None
        line = p.stdout.readline()
        assert line.strip() == "READY", (line, p.stderr.read() if p.stderr else "")
        try:
            p.wait(timeout=rng.uniform(0.0, 0.4))
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGKILL)
            kills += 1
        p.wait()
        assert p.returncode == -signal.SIGKILL, p.stderr.read() if p.stderr else ""
        p.stdout.close()
        if p.stderr:
            p.stderr.close()
    assert kills == KILLS
    out = _check(_worker("run", au, bu, str(tmp_path), "3"))
    done = [ln for ln in out.splitlines() if ln.startswith("DONE ")]
    assert done, out
    sent: dict[str, int] = json.loads(done[0][5:])
    assert sent["alice"] > KILLS // 4 and sent["bob"] > KILLS // 4  # real traffic happened between kills
    for sender, receiver in (("alice", "bob"), ("bob", "alice")):
        rows = _parse_log(tmp_path / f"{receiver}.log")
        expected = {f"{sender}-{i}" for i in range(sent[sender])}
        mine = [r for r in rows if r[0].startswith(sender + "-")]
        seen = {mid for mid, flag, _ in mine if flag != "dup"}
        assert seen == expected, f"lost: {sorted(expected - seen)[:10]} unexpected: {sorted(seen - expected)[:10]}"
        firsts = Counter(mid for mid, flag, _ in mine if flag == "0")
        assert all(n == 1 for n in firsts.values()), [m for m, n in firsts.items() if n > 1]
        for mid, flag, text in mine:
            if flag != "dup":
                assert text == f"msg {mid}"
        delivered_before: set[str] = set()
        for mid, flag, _ in mine:  # "already handled" only for messages the application did get
            if flag == "dup":
                assert mid in delivered_before
            else:
                delivered_before.add(mid)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "mariadb"])
def test_two_processes_race_on_one_account(backend: str, make_url: Callable[[str], str]) -> None:
    au, bu = make_url(backend), make_url(backend)
    _check(_worker("setup", au, bu))
    n = 60
    procs = [_worker("race", au, bu, f"p{k}", str(n)) for k in range(2)]
    for p in procs:
        _check(p)
    out = json.loads(_check(_worker("drain", au, bu)))
    assert out["errors"] == []
    assert sorted(out["plaintexts"]) == sorted(f"p{k}-{i}" for k in range(2) for i in range(n))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "mariadb"])
def test_two_processes_hand_out_each_prekey_once(backend: str, make_url: Callable[[str], str]) -> None:
    """Two processes making bundles of one account at once never hand out one prekey twice, and hand
    out every one before giving bundles without."""
    import trio

    from wacrypto.session import account
    from wacrypto.store import open_store

    url = make_url(backend)

    async def setup() -> None:
        s = await open_store(url)
        await account.create_account(s, prekeys=40)
        await s.aclose()

    trio.run(setup)
    procs = [_worker("bundles", url, "-", "25") for _ in range(2)]
    ids = [i for p in procs for i in json.loads(_check(p))]
    handed = [i for i in ids if i is not None]
    assert len(handed) == len(set(handed)) == 40
    assert ids.count(None) == 10
