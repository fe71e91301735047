"""`wacrypto vectors check --peer` against the independent implementations: every Signal-family vector
(XEdDSA, X3DH, ratchet transcripts, invalid messages, sender keys, safety numbers) is replayed through
the JSON-lines peer protocol by python-axolotl, the official libsignal 0.23.1 and `wacrypto peer`, and
the binary stanza vectors by Baileys' codec. A vector that an independent implementation contradicts
fails here."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
from peerproc import DRIVERS_DIR, axolotl_argv, libsignal_argv, wacrypto_argv

from wacrypto.testing.stanzas import node_from_json, same_node
from wacrypto.tools.vectors import generate

SIGNAL = ("xeddsa", "x3dh", "ratchet", "invalid_messages", "sender_keys", "fingerprint")
LOCAL_ONLY = ("media", "noise", "binary")  # not in the peer protocol
PEERS = {
    "wacrypto": (wacrypto_argv, set()),
    "axolotl": (axolotl_argv, {"fingerprint"}),  # python-axolotl 0.2.3 has no safety numbers
    "libsignal": (libsignal_argv, {"sender_keys"}),  # the Node binding's sender keys carry a distribution UUID
}
ROW = re.compile(r"^\| (\w+) +\| +(\d+) \| +(\d+) \| +(\d+) \| +(\d+) \|$")


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("vectors")
    generate(d)
    return d


def _table(out: str) -> dict[str, tuple[int, int, int, int]]:
    rows = {}
    for line in out.splitlines():
        m = ROW.match(line)
        if m:
            rows[m.group(1)] = (int(m.group(2)), int(m.group(3)), int(m.group(4)), int(m.group(5)))
    return rows


@pytest.mark.parametrize("peer", sorted(PEERS))
def test_peer_conforms_to_every_signal_vector(suite: Path, peer: str) -> None:
    argv, unsupported = PEERS[peer]
    cmd = [sys.executable, "-m", "wacrypto", "vectors", "check", "-v", "--peer", shlex.join(argv()), str(suite)]
    out = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600)
    print(out.stdout)
    assert out.returncode == 0, out.stdout + out.stderr
    rows = _table(out.stdout)
    assert set(rows) == set(SIGNAL) | set(LOCAL_ONLY) | {"total"}
    for fam, (cases, passed, failed, unsup) in rows.items():
        if fam == "total":
            continue
        assert cases > 0 and failed == 0, (fam, rows[fam])
        if fam in LOCAL_ONLY or fam in unsupported:
            assert (passed, unsup) == (0, cases), (fam, rows[fam])
        else:
            assert (passed, unsup) == (cases, 0), (fam, rows[fam])


class _Baileys:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(["node", str(DRIVERS_DIR / "baileys_binary.js")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def __call__(self, **req: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"the Baileys driver died (exit {self.proc.poll()})"
        return json.loads(line)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def baileys() -> Iterator[_Baileys]:
    b = _Baileys()
    yield b
    assert b.proc.stdin is not None
    b.proc.stdin.close()
    assert b.proc.wait(10) == 0


def test_baileys_agrees_with_the_binary_stanza_vectors(suite: Path, baileys: _Baileys) -> None:
    data = json.loads((suite / "binary.json").read_text())
    enc = next(g for g in data["testGroups"] if g["type"] == "StanzaEncode")["tests"]
    dec = next(g for g in data["testGroups"] if g["type"] == "StanzaDecode")["tests"]
    got = baileys(encode=[t["node"] for t in enc], decode=[t["stanza"] for t in enc])
    for t, e, d in zip(enc, got["encoded"], got["decoded"]):
        assert e == t["stanza"], (t["tcId"], t["comment"])
        assert same_node(node_from_json(t["node"]), node_from_json(d)), (t["tcId"], t["comment"])
    got = baileys(decode=[t["stanza"] for t in dec])
    wrong = []
    for t, d in zip(dec, got["decoded"]):
        if t["result"] == "valid" or t["result"] == "acceptable" and "error" not in d:
            assert "error" not in d and same_node(node_from_json(t["decoded"]), node_from_json(d)), t["comment"]
        elif t["result"] == "invalid" and "error" not in d:
            wrong.append((t["tcId"], t["comment"]))
    assert not wrong, wrong
