"""`wacrypto conformance` on wacrypto itself: every adversarial input of the suite and of the byte
sweeps is rejected or (for unauthenticated fields) accepted, and after every rejection the genuine
message still decrypts: no input costs wacrypto its session, prekeys or trust."""

from __future__ import annotations

import re

import pytest

from wacrypto.tools.cli import main
from wacrypto.tools.conformance import adversarial_inputs, run_conformance
from wacrypto.tools.vectors import build_all


@pytest.fixture(scope="module")
def suite() -> dict[str, dict[str, object]]:
    return build_all(families=("x3dh", "invalid_messages", "sender_keys"))


def test_inputs_cover_the_adversarial_classes(suite: dict[str, dict[str, object]]) -> None:
    inputs = adversarial_inputs(suite)  # type: ignore[arg-type]
    cats = {i.category for i in inputs}
    for c in ("invalid_messages/BadMac", "invalid_messages/TamperedHeader", "invalid_messages/Duplicate",
              "invalid_messages/TooFarAhead", "x3dh/IdentityChange", "x3dh/UnknownPreKey", "sender_keys/BadSignature",
              "sweep/SignalMessage", "sweep/PreKeySignalMessage", "sweep/SenderKeyMessage"):
        assert c in cats, c
    for i in inputs:
        assert i.bad["expect"] == "reject" and i.probe["expect"] == "plaintext"
        request = {k: v for k, v in i.bad.items() if k not in ("expect", "error")}
        genuine = {k: v for k, v in i.probe.items() if k not in ("expect", "plaintext", "probe")}
        # the bad input is not the genuine message, except a replay of an earlier one
        assert request != genuine or i.category.endswith(("Duplicate", "SkippedKeyReplay")), i.label
    sweep = [i for i in inputs if i.category == "sweep/SignalMessage"]
    assert len(sweep) == len(bytes.fromhex(sweep[0].probe["body"]))  # every byte of the message


def test_wacrypto_keeps_its_state_after_every_input(suite: dict[str, dict[str, object]]) -> None:
    rows = run_conformance(suite)  # type: ignore[arg-type]
    assert rows and all(r.lost == 0 and r.unsupported == 0 for r in rows), [(r.category, r.lost_labels) for r in rows]
    assert all(r.kept == r.rejected and r.rejected + r.accepted == r.inputs for r in rows)
    # only the PreKeySignalMessage sweep finds bytes nothing authenticates: the low nibble of its version
    # byte (0x33 -> 0x32) and its registration id
    assert {r.category for r in rows if r.accepted} == {"sweep/PreKeySignalMessage"}


def test_cli_prints_the_table_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["conformance"]) == 0
    out = capsys.readouterr().out
    m = re.search(r"^\| total +\| +(\d+) \| +(\d+) \| +(\d+) \| +(\d+) \| +(\d+) \| +(\d+) \|$", out, re.M)
    assert m, out
    inputs, rejected, kept, lost, accepted, unsupported = map(int, m.groups())
    assert inputs > 300 and lost == 0 and unsupported == 0 and kept == rejected and rejected + accepted == inputs
