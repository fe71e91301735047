"""The chaos soak, short: chatd and four client processes (two accounts each), 1:1 conversations,
a group of four and images, SIGKILLs of both, cut and stalled connections; every confirmed message
delivered once (tests/soak/soak_harness.py has the contract); and a variant with one device served
by two stripe workers (scale-out). ``make soak`` runs the long ones."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from soak_harness import Ledger, SoakConfig, ok, render, run_soak  # noqa: E402

SHORT = dict(seed=12, clients=4, devices=2, seconds=20.0, rate=15.0, window=4, chatd_kills=3, client_kills=5,
             drops=3, stalls=2, media_share=0.15)


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_short_soak(store: str) -> None:
    cfg = SoakConfig(**SHORT, store=store) if store == "sqlite" else \
        SoakConfig(**{**SHORT, "seconds": 12.0, "chatd_kills": 2, "client_kills": 3, "drops": 2, "stalls": 1},
                   store=store)
    report = run_soak(cfg)
    print(render(report))
    assert report["chatd_kills"] == cfg.chatd_kills and report["client_kills"] == cfg.client_kills
    assert report["sent"] > 0
    assert report["group"]["messages"] > 0 and report["media_ok"] > 0  # the group and images were in it
    assert ok(report), render(report) + "\n" + report.get("logs", "")


def test_short_soak_with_a_striped_device() -> None:
    """Scale-out under chaos: one more account whose device is served by two --stripe workers sharing
    one PostgreSQL store (each its stripe's lease), in 1:1 chats with every other account and in the
    group; the workers are SIGKILLed too. Each worker sees only its own chats (misrouted counts any
    other), every confirmed message is delivered once."""
    cfg = SoakConfig(seed=5, clients=3, devices=1, seconds=15.0, rate=15.0, window=4, chatd_kills=2, client_kills=5,
                     drops=2, stalls=1, media_share=0.1, store="postgresql", stripes=2)
    report = run_soak(cfg)
    print(render(report))
    workers = report["stripe_workers"]
    assert all(w["sent"] > 0 and w["received"] > 0 for w in workers.values())  # both stripes carried traffic
    assert sum(w["kills"] for w in workers.values()) > 0 and report["group"]["messages"] > 0
    assert ok(report), render(report) + "\n" + report.get("logs", "")


def test_ledger_tells_duplicates_losses_and_inventions_apart() -> None:
    """The ledger itself: a soak that cannot see a duplicate proves nothing."""
    lg = Ledger()
    a, b = "1@s.whatsapp.net", "2@s.whatsapp.net"
    for k in ("k1", "k2", "k3", "k4"):
        lg.issue(k, a, b, f"{k}|x", 1)
    for k, mid in (("k1", "I1"), ("k2", "I2"), ("k3", "I3")):
        lg.on_sent(k, mid, a)
    lg.on_received("c", 1, b, "I1", a, "k1|x", False)
    lg.on_handled(b, "I1")
    lg.on_received("c", 1, b, "I2", a, "k2|x", False)  # killed before its handled line ...
    lg.on_received("c", 2, b, "I2", a, "k2|x", True)  # ... so handed out again: allowed
    lg.on_handled(b, "I2")
    s = lg.summary()
    assert (s["lost"], s["duplicates"], s["redeliveries"], s["unconfirmed"]) == (1, 0, 1, 1)  # k3 lost, k4 unconfirmed
    lg.on_received("c", 2, b, "I1", a, "k1|x", False)  # after its handled line: a duplicate
    lg.on_received("c", 2, b, "I9", a, "k9|nobody sent this", False)
    lg.on_received("c", 2, a, "I3", a, "k3|x", False)  # to the wrong device
    s = lg.summary()
    assert (s["duplicates"], s["invented"], s["misrouted"]) == (1, 1, 1)


def test_ledger_follows_a_group_message_to_each_member() -> None:
    """A group message is an entry per other member: each must arrive once; one missing is lost,
    one at a device outside the group is misrouted."""
    lg = Ledger()
    a, b, c, d = (f"{i}@s.whatsapp.net" for i in range(1, 5))
    lg.issue_group("g1", a, [b, c], "g1|x", 1)
    lg.on_sent("g1", "G1", a)
    assert lg.under_way[a] == set()
    lg.on_received("cb", 1, b, "G1", a, "g1|x", False)
    lg.on_handled(b, "G1")
    s = lg.summary()
    assert (s["sent"], s["delivered"], s["lost"]) == (2, 1, 1)  # c never got it
    lg.on_received("cc", 1, c, "G1", a, "g1|x", False)
    lg.on_received("cd", 1, d, "G1", a, "g1|x", False)  # d is not a member
    lg.on_received("cb", 2, b, "G1", a, "g1|x", False)  # after b's handled line
    s = lg.summary()
    assert (s["lost"], s["misrouted"], s["duplicates"]) == (0, 1, 1)


def test_ledger_checks_each_image_against_the_file_sent() -> None:
    lg = Ledger()
    a, b = "1@s.whatsapp.net", "2@s.whatsapp.net"
    lg.issue("i1", a, b, "i1|x", 1, media_sha256="aa" * 32)
    lg.issue("i2", a, b, "i2|x", 1, media_sha256="bb" * 32)
    lg.on_sent("i1", "I1", a)
    lg.on_sent("i2", "I2", a)
    lg.on_received("c", 1, b, "I1", a, "i1|x", False, {"sha256": "aa" * 32, "size": 5})
    lg.on_received("c", 1, b, "I2", a, "i2|x", False, {"sha256": "cc" * 32, "size": 5})  # other bytes
    s = lg.summary()
    assert (s["media_ok"], s["media_bad"], s["lost"]) == (1, 1, 0)
