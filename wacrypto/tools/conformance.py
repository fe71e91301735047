"""``wacrypto conformance [--peer CMD]``: state safety of an implementation under adversarial input.

For each adversarial input the peer is set up (keys, session or sender key), fed the valid messages
that come first, then the bad input, then a *probe*: a genuine message that must still decrypt. A
peer whose probe fails after it rejected the bad input corrupted its state on a failed decryption.

The inputs are every ``StateSafety`` case of the vector suite (tampered MAC, ciphertext and header,
truncations, bad versions and key types, wrong types, replays, far-future counters, unknown prekeys,
prekey reuse, identity changes, bad sender-key signatures) plus a sweep that flips each byte of a
SignalMessage, a PreKeySignalMessage and a SenderKeyMessage in turn. An input the peer *accepts* (the
low nibble of a PreKeySignalMessage's version byte, its registration id: nothing authenticates them)
is counted as accepted and its probe is skipped (the genuine message would be a duplicate).
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from wacrypto.tools.cli.common import CliFailure, CliUsageError
from wacrypto.tools.vectors.check import Caller, LocalPeer, _setup
from wacrypto.tools.vectors.peerclient import PeerBroken, PeerClient, PeerFailure

__all__ = ["Input", "Row", "adversarial_inputs", "run_conformance", "format_rows", "register"]


@dataclass
class Input:
    category: str
    label: str
    setup: dict[str, Any]
    before: list[dict[str, Any]]
    bad: dict[str, Any]
    probe: dict[str, Any]


@dataclass
class Row:
    category: str
    inputs: int = 0
    rejected: int = 0
    kept: int = 0
    lost: int = 0
    accepted: int = 0
    unsupported: int = 0
    lost_labels: list[str] = field(default_factory=list)


def _flip(body_hex: str, i: int) -> str:
    b = bytearray(bytes.fromhex(body_hex))
    b[i] ^= 0x01
    return b.hex()


def adversarial_inputs(suite: dict[str, dict[str, Any]]) -> list[Input]:
    out: list[Input] = []
    sweeps: dict[str, dict[str, Any]] = {}
    for fam, data in suite.items():
        for g in data["testGroups"]:
            for tc in g["tests"]:
                if "StateSafety" not in tc["flags"] or "steps" not in tc:
                    continue
                steps = tc["steps"]
                probe = steps[-1]
                bad_i = max(i for i, s in enumerate(steps) if s["expect"] == "reject")
                cat = next(f for f in tc["flags"] if f != "StateSafety")
                out.append(Input(f"{fam}/{cat}", f"{fam} tcId {tc['tcId']}: {tc['comment']}", tc["setup"],
                                 [s for s in steps[:bad_i] if s["expect"] != "reject"], steps[bad_i], probe))
                sweeps.setdefault(g["type"], tc)
    for kind, name in (("InvalidSignalMessage", "SignalMessage"), ("InvalidPreKeySignalMessage", "PreKeySignalMessage"),
                       ("InvalidSenderKeyMessage", "SenderKeyMessage")):
        tc = sweeps.get(kind)
        if tc is None:
            continue
        steps = tc["steps"]
        probe = {k: v for k, v in steps[-1].items() if k != "probe"}
        before = [s for s in steps[:-1] if s["expect"] != "reject" and s["body"] != probe["body"]]
        n = len(bytes.fromhex(probe["body"]))
        for i in range(n):
            bad = {**probe, "body": _flip(probe["body"], i), "expect": "reject"}
            bad.pop("plaintext", None)
            out.append(Input(f"sweep/{name}", f"{name} byte {i} of {n} flipped", tc["setup"], before, bad, probe))
    return out


def _call(peer: Caller, s: dict[str, Any]) -> dict[str, Any]:
    args = {k: s[k] for k in s if k not in ("op", "expect", "plaintext", "error", "probe", "comment")}
    return peer.call(s.get("op", "decrypt"), **args)


def run_conformance(suite: dict[str, dict[str, Any]], peer_argv: Sequence[str] | None = None) -> list[Row]:
    rows: dict[str, Row] = {}
    proc: PeerClient | None = None
    peer: Caller = LocalPeer() if peer_argv is None else PeerClient(peer_argv)
    if isinstance(peer, PeerClient):
        proc = peer
    try:
        for inp in adversarial_inputs(suite):
            row = rows.setdefault(inp.category, Row(inp.category))
            row.inputs += 1
            try:
                _setup(peer, inp.setup)
                for s in inp.before:
                    _call(peer, s)
                try:
                    _call(peer, inp.bad)
                    row.accepted += 1
                    continue
                except PeerFailure as exc:
                    if exc.unsupported:
                        raise
                row.rejected += 1
                why = "wrong plaintext"
                try:
                    got = _call(peer, inp.probe)
                    ok = got.get("plaintext") == inp.probe["plaintext"]
                except PeerFailure as exc:
                    if exc.unsupported:
                        raise
                    ok, why = False, exc.name
                if ok:
                    row.kept += 1
                else:
                    row.lost += 1
                    row.lost_labels.append(f"{inp.label}: the genuine message then fails ({why})")
            except PeerFailure as exc:
                if not exc.unsupported:
                    row.lost += 1
                    row.lost_labels.append(f"{inp.label} (setup failed: {exc.name})")
                else:
                    row.unsupported += 1
            except PeerBroken as exc:
                row.lost += 1
                row.lost_labels.append(f"{inp.label} (peer broke: {exc})")
                if peer_argv is not None:
                    if proc is not None:
                        proc.close()
                    proc = PeerClient(peer_argv)
                    peer = proc
    finally:
        if proc is not None:
            proc.close()
    return list(rows.values())


def format_rows(rows: Sequence[Row], title: str = "") -> str:
    head = ("input class", "inputs", "rejected", "state kept", "state lost", "accepted", "unsupported")
    body = [(r.category, str(r.inputs), str(r.rejected), str(r.kept), str(r.lost), str(r.accepted), str(r.unsupported))
            for r in rows]
    total = ("total", *(str(sum(int(b[i]) for b in body)) for i in range(1, 7)))
    widths = [max(len(x[i]) for x in [head, total, *body]) for i in range(7)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))) + " |"

    out = [title] if title else []
    out += [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(line(b) for b in body), line(total)]
    return "\n".join(out)


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from wacrypto.tools.vectors import build_all
    from wacrypto.tools.vectors.check import load_suite

    if args.dir is not None:
        if not Path(args.dir).is_dir():
            raise CliFailure(f"{args.dir}: no such folder")
        suite = load_suite(Path(args.dir))
        if not suite:
            raise CliUsageError(f"{args.dir} holds no vector files")
    else:
        suite = build_all(families=("x3dh", "invalid_messages", "sender_keys"))
    argv = shlex.split(args.peer) if args.peer is not None else None
    if argv == []:
        raise CliUsageError("--peer needs a command")
    try:
        rows = run_conformance(suite, argv)
    except PeerBroken as exc:
        raise CliFailure(str(exc)) from None
    print(format_rows(rows, f"peer: {args.peer}" if args.peer else "peer: wacrypto (in process)"))
    if args.verbose:
        for r in rows:
            for label in r.lost_labels:
                print(f"STATE LOST {r.category}: {label}")
    return 1 if any(r.lost for r in rows) else 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("conformance", help="state safety: does a valid message still decrypt after each bad input?")
    p.add_argument("dir", metavar="DIR", nargs="?", help="vector suite folder (default: generate one in memory)")
    p.add_argument("--peer", metavar="CMD", help="command line of a JSON-lines peer (default: wacrypto in this process)")
    p.add_argument("--verbose", "-v", action="store_true", help="list each input after which the state was lost")
    p.set_defaults(func=_run)
