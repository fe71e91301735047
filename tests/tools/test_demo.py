"""`wacrypto demo` (what `make demo` runs): it completes on SQLite stores, its transcript shows every
step of issue 11's messaging layer with real figures and no key material, and a step that does not
happen ends it with exit status 1 and a message naming the step."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

from wacrypto.tools.cli.common import CliFailure
from wacrypto.tools.cli.demo import _Steps

STEPS = (
    "registration",
    "bundle fetch",
    "a conversation both ways",
    "a decrypt failure healed by a retry receipt",
    "an identity change",
    "a second device",
    "an image",
    "a group of three",
    "a chatd restart mid-conversation",
    "receipts",
)


def test_demo_runs_end_to_end_and_shows_every_step(tmp_path: Path) -> None:
    d = tmp_path / "demo"
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "wacrypto", "demo", "--dir", str(d)], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=120)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert elapsed < 60, elapsed
    out = proc.stdout
    # part 1: X3DH and a conversation, the replay and the forgery rejected
    assert "part 1 done: every message decrypted exactly once (10 of 10)" in out
    assert "rejected: DuplicateMessageError" in out and "rejected: DecryptionError" in out
    # part 2: the ten steps in order, each finished
    at = 0
    for n, title in enumerate(STEPS, 1):
        header = f"[{n}/10] {title}"
        assert header in out[at:], header
        at = out.index(header, at)
    assert out.count("      ok, ") == 10
    assert re.search(r"alice \(15550000001@s\.whatsapp\.net, device 0\): registration id \d+, uploaded 812 one-time "
                     r"prekeys and signed prekey #1; chatd gives the account the LID \d+@lid", out)
    assert re.search(r"one-time prekey #\d+, which it gives nobody else \(812 -> 811 left\)", out)
    assert "bob gets a read receipt for id" in out and "delivery receipts so far: alice got" in out
    assert re.search(r"\(NoSessionError\): he sends retry receipt #1", out)
    assert "healed: alice answered" in out and "bob has the message once" in out
    numbers = re.findall(r"safety number (?:alice sees for bob: )?((?:\d{5} ){11}\d{5})", out)
    assert len(numbers) == 2 and numbers[0] != numbers[1]
    assert "\"bob's security code changed\"" in out
    assert "chatd lists alice's devices as [0, 1]" in out
    assert re.search(r"alice's laptop <- bob +'Hello to both of your devices'", out)
    assert "(a DeviceSentMessage)" in out
    assert re.search(r"photo\.jpg, 102,406 bytes.*\n.*encrypted blob \(102,4\d\d bytes\)", out)
    assert "decrypts 102,406 bytes: MAC and SHA-256 checked, identical to alice's file" in out
    assert out.count("in the group, ") == 9  # three senders, three readers each
    assert "chatd acknowledged them to alice (one tick) and keeps 3 for bob in its database" in out
    assert "alice's outbox: 4 messages, on disk" in out and "chatd now keeps 7 for bob" in out
    assert "bob got 7 of 7 messages (0 lost, 0 duplicated)" in out
    assert "read receipts for all 7" in out and "nothing waiting in chatd's database" in out
    assert re.search(r"== demo done in \d+\.\d s: every step happened", out)
    # never key material: no long hex (message ids are 20 upper-case hex digits)
    assert not re.search(r"[0-9a-f]{32,}", out), re.search(r"[0-9a-f]{32,}", out)
    assert proc.stderr == "", proc.stderr
    names = {p.name for p in d.iterdir()}
    assert {"alice.db", "alice-laptop.db", "bob.db", "carol.db", "chatd.db", "signal-alice.db", "signal-bob.db",
            ".wacrypto-demo"} <= names
    assert not [n for n in names if n.endswith(".jpg")]  # the photos and blobs went with the temporary folder


async def test_a_step_that_does_not_happen_fails_naming_it() -> None:
    steps = _Steps(2, timeout=0.05)
    with pytest.raises(CliFailure, match=r"step 1 \(waiting\) did not happen within 0\.05 s: still waiting for "
                                         r"bob to receive 'hi'"):
        with steps.step("waiting"):
            steps.waiting = "bob to receive 'hi'"
            await trio.sleep_forever()
    with pytest.raises(CliFailure, match=r"step 2 \(checking\) went wrong: 3 lost"):
        with steps.step("checking"):
            steps.check(False, "3 lost")
