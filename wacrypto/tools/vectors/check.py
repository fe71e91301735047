"""``wacrypto vectors check``: run a vector suite against an implementation and tabulate the result.

The Signal families (XEdDSA, X3DH, ratchet transcripts, invalid messages, sender keys, fingerprints)
run through the JSON-lines peer protocol, so any implementation with a peer driver can be checked;
with no ``--peer`` they run against wacrypto in this process (the same commands, without a pipe).
The families outside the peer protocol (media, Noise, binary stanzas) are checked in process against
wacrypto only; for an external peer they count as unsupported.

A case passes when every step behaves as its ``expect`` says: ``plaintext`` (accepted, exact bytes),
``reject`` (any error; ``error`` names the class we raise, informational), ``either`` (an accepted
message must give the expected bytes). ``probe`` steps are skipped here: they belong to
``wacrypto conformance`` (state safety).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import trio

from wacrypto.errors import WacryptoError
from wacrypto.tools.vectors.common import Mismatch
from wacrypto.tools.vectors.peerclient import PeerBroken, PeerClient, PeerFailure

__all__ = ["CaseResult", "FamilyRow", "Caller", "LocalPeer", "check_suite", "format_table", "load_suite"]

PASS, FAIL, UNSUPPORTED = "pass", "fail", "unsupported"


class Caller(Protocol):
    def call(self, cmd: str, **fields: Any) -> dict[str, Any]: ...


@dataclass
class CaseResult:
    family: str
    tc_id: int
    outcome: str
    detail: str = ""


@dataclass
class FamilyRow:
    family: str
    cases: int = 0
    passed: int = 0
    failed: int = 0
    unsupported: int = 0
    failures: list[CaseResult] = field(default_factory=list)


class LocalPeer:
    """wacrypto's own peer commands, in this process (the same handler ``wacrypto peer`` runs)."""

    def __init__(self) -> None:
        from wacrypto.tools.peer import Peer, _load_extensions

        _load_extensions()
        self._peer = Peer()

    def call(self, cmd: str, **fields: Any) -> dict[str, Any]:
        from wacrypto.errors import WacryptoError
        from wacrypto.tools.peer import _error_text

        req = {"cmd": cmd, **json.loads(json.dumps(fields))}
        try:
            return trio.run(self._peer.handle, req)
        except (WacryptoError, ValueError, TypeError, KeyError) as exc:
            raise PeerFailure(_error_text(exc)) from None


def _expect_steps(peer: Caller, steps: Sequence[dict[str, Any]], *, probes: bool) -> None:
    for i, s in enumerate(steps):
        if s.get("probe") and not probes:
            continue
        cmd = s.get("op", "decrypt")
        args = {k: s[k] for k in s if k not in ("op", "expect", "plaintext", "error", "probe", "comment")}
        expect = s["expect"]
        try:
            got = peer.call(cmd, **args)
        except PeerFailure as exc:
            if exc.unsupported:
                raise
            if expect == "plaintext":
                raise Mismatch(f"step {i + 1}: rejected ({exc.name}), expected plaintext") from None
            continue
        if expect == "reject":
            raise Mismatch(f"step {i + 1}: accepted, expected a rejection ({s.get('error', 'any error')})")
        if got.get("plaintext") != s["plaintext"]:
            raise Mismatch(f"step {i + 1}: wrong plaintext")


def _setup(peer: Caller, setup: dict[str, Any] | None) -> None:
    setup = setup or {}
    ident = {k: v for k, v in setup.get("new_identity", {}).items() if k != "identity_public"}
    peer.call("new_identity", **ident)
    for imp in setup.get("import_session", []):
        peer.call("import_session", **imp)
    for pg in setup.get("group_process", []):
        peer.call("group_process", **pg)


def run_signal_case(peer: Caller, group: dict[str, Any], tc: dict[str, Any], *, probes: bool = False) -> None:
    """Run one Signal-family case against ``peer``; raise :class:`Mismatch` if it does not conform."""
    kind = group["type"]
    result = tc["result"]
    if kind in ("XEdDSASign", "XEdDSAVerify"):
        try:
            ok = peer.call("verify", public=tc["public"], message=tc["message"], signature=tc["signature"])["valid"]
        except PeerFailure as exc:  # the protocol says false; a refused key is a rejection all the same
            if exc.unsupported or result == "valid":
                raise
            ok = False
        if result == "valid" and ok is not True or result == "invalid" and ok is not False:
            raise Mismatch(f"verify returned {ok}")
    elif kind == "X3DHInitiator":
        peer.call("new_identity")
        try:
            peer.call("process_bundle", remote="bob", remote_device=1, bundle=tc["bundle"])
        except PeerFailure as exc:
            if exc.unsupported:
                raise
            if result == "valid":
                raise Mismatch(f"bundle refused ({exc.name})") from None
            return
        if result == "invalid":
            raise Mismatch("bundle accepted")
    elif kind == "Fingerprint":
        got = peer.call("fingerprint", local_id=tc["local_id"], local_identity=tc["local_identity"],
                        remote_id=tc["remote_id"], remote_identity=tc["remote_identity"], iterations=tc["iterations"])
        if got.get("display") != tc["display"] or got.get("scannable") != tc["scannable"]:
            raise Mismatch("different safety number")
    elif "steps" in tc:
        _setup(peer, tc.get("setup"))
        _expect_steps(peer, tc["steps"], probes=probes)
    else:
        raise Mismatch(f"no peer procedure for group type {kind}")


LocalCheck = Callable[[dict[str, Any], dict[str, Any], dict[str, Any]], None]  # (file, group, case)


def _local_checks() -> dict[str, LocalCheck]:
    from wacrypto.tools.vectors import binary, media, noise

    return {**media.LOCAL_CHECKS, **noise.LOCAL_CHECKS, **binary.LOCAL_CHECKS}


def load_suite(directory: Path) -> dict[str, dict[str, Any]]:
    """The vector files of ``directory`` by family (``schema.json`` left out)."""
    out: dict[str, dict[str, Any]] = {}
    for p in sorted(directory.glob("*.json")):
        if p.name == "schema.json":
            continue
        data = json.loads(p.read_text())
        if isinstance(data, dict) and "family" in data:
            out[str(data["family"])] = data
    from wacrypto.tools.vectors import FAMILIES

    order = {f: i for i, f in enumerate(FAMILIES)}
    return dict(sorted(out.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


def check_suite(suite: dict[str, dict[str, Any]], peer_argv: Sequence[str] | None = None,
                families: Iterable[str] | None = None) -> list[FamilyRow]:
    """Check every case; ``peer_argv`` None means wacrypto in process."""
    wanted = set(families) if families is not None else None
    local_checks = _local_checks()
    rows: list[FamilyRow] = []
    client: Caller | None = None
    proc: PeerClient | None = None

    def fresh() -> Caller:
        nonlocal proc
        if peer_argv is None:
            return LocalPeer()
        if proc is not None:
            proc.close()
        proc = PeerClient(peer_argv)
        return proc

    try:
        for fam, data in suite.items():
            if wanted is not None and fam not in wanted:
                continue
            row = FamilyRow(fam)
            rows.append(row)
            for group in data["testGroups"]:
                for tc in group["tests"]:
                    row.cases += 1
                    res = CaseResult(fam, tc["tcId"], PASS)
                    if client is None and group["type"] not in local_checks:
                        client = fresh()  # a peer that cannot start at all ends the run (PeerBroken)
                    try:
                        if group["type"] in local_checks:
                            if peer_argv is not None:
                                res.outcome = UNSUPPORTED
                                res.detail = "not in the peer protocol"
                            else:
                                local_checks[group["type"]](data, group, tc)
                        elif client is not None:
                            run_signal_case(client, group, tc)
                    except Mismatch as exc:
                        res.outcome, res.detail = FAIL, str(exc)
                    except PeerFailure as exc:
                        if exc.unsupported:
                            res.outcome, res.detail = UNSUPPORTED, exc.name
                        else:
                            res.outcome, res.detail = FAIL, f"setup failed: {exc.error[:200]}"
                    except PeerBroken as exc:
                        res.outcome, res.detail = FAIL, f"peer broke: {exc}"
                        client = None
                    except (WacryptoError, KeyError, ValueError, TypeError) as exc:  # wacrypto refused a valid case,
                        res.outcome, res.detail = FAIL, f"{type(exc).__name__}: {exc}"  # or the case is malformed
                    if res.outcome == PASS:
                        row.passed += 1
                    elif res.outcome == FAIL:
                        row.failed += 1
                        row.failures.append(res)
                    else:
                        row.unsupported += 1
    finally:
        if proc is not None:
            proc.close()
    return rows


def format_table(rows: Sequence[FamilyRow], title: str = "") -> str:
    head = ("family", "cases", "pass", "fail", "unsupported")
    body = [(r.family, str(r.cases), str(r.passed), str(r.failed), str(r.unsupported)) for r in rows]
    total = ("total", *(str(sum(int(b[i]) for b in body)) for i in range(1, 5)))
    widths = [max(len(x[i]) for x in [head, total, *body]) for i in range(5)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))) + " |"

    out = [title] if title else []
    out += [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(b) for b in body] + [line(total)]
    return "\n".join(out)
