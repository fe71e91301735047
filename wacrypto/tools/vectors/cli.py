"""``wacrypto vectors generate DIR`` and ``wacrypto vectors check [--peer CMD] [DIR]``.

::

    wacrypto vectors generate DIR [--seed TEXT]
    wacrypto vectors check [--peer "CMD ARGS"] [--family NAME ...] [--verbose] [--json FILE] [DIR]

``generate`` writes one ``<family>.json`` per family and ``schema.json``; the same seed gives the same
bytes. ``check`` replays a suite (DIR, or a freshly generated one) against the peer started by CMD
(a JSON-lines peer such as ``wacrypto peer`` or a shipped driver), or against wacrypto itself in
this process without ``--peer``, and prints a conformance table. Exit 1 if any case fails.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from wacrypto.tools.cli.common import CliFailure, CliUsageError

__all__ = ["register"]


def _generate(args: argparse.Namespace) -> int:
    from wacrypto.tools.vectors import generate

    out = Path(args.dir)
    if out.exists() and not out.is_dir():
        raise CliUsageError(f"{out} exists and is not a folder")
    written = generate(out, args.seed)
    total = sum(json.loads(p.read_text())["numberOfTests"] for p in written if p.suffix == ".json" and p.name != "schema.json")
    print(f"wrote {len(written)} files, {total} test cases, to {out}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from wacrypto.tools.vectors import FAMILIES, SUITE_VERSION, build_all
    from wacrypto.tools.vectors.check import check_suite, format_table, load_suite
    from wacrypto.tools.vectors.peerclient import PeerBroken

    if args.dir is not None:
        d = Path(args.dir)
        if not d.is_dir():
            raise CliFailure(f"{d}: no such folder")
        try:
            suite = load_suite(d)
        except (OSError, ValueError) as exc:
            raise CliFailure(f"{d}: cannot read the vector files ({exc})") from None
        if not suite:
            raise CliUsageError(f"{d} holds no vector files (make them with `wacrypto vectors generate {d}`)")
        old = sorted(f for f, v in suite.items() if v.get("suiteVersion") != SUITE_VERSION)
        if old:
            raise CliUsageError(f"suite version of {', '.join(old)} is not {SUITE_VERSION}")
    else:
        suite = build_all()
    if args.family:
        unknown = sorted(set(args.family) - set(FAMILIES))
        if unknown:
            raise CliUsageError(f"unknown family {', '.join(unknown)}; families: {', '.join(FAMILIES)}")
    argv = shlex.split(args.peer) if args.peer is not None else None
    if argv == []:
        raise CliUsageError("--peer needs a command")
    try:
        rows = check_suite(suite, argv, args.family)
    except PeerBroken as exc:
        raise CliFailure(str(exc)) from None
    title = f"peer: {args.peer}" if args.peer else "peer: wacrypto (in process)"
    print(format_table(rows, title))
    if args.verbose:
        for r in rows:
            for f in r.failures:
                print(f"FAIL {f.family} tcId {f.tc_id}: {f.detail}")
    if args.json is not None:
        report = {"peer": args.peer or "wacrypto (in process)",
                  "families": [{"family": r.family, "cases": r.cases, "pass": r.passed, "fail": r.failed,
                                "unsupported": r.unsupported,
                                "failures": [{"tcId": f.tc_id, "detail": f.detail} for f in r.failures]} for r in rows]}
        try:
            Path(args.json).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        except OSError as exc:
            raise CliFailure(f"cannot write {args.json}: {exc.strerror or exc}") from None
    sys.stdout.flush()
    return 1 if any(r.failed for r in rows) else 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from wacrypto.tools.vectors.common import DEFAULT_SEED

    p = sub.add_parser("vectors", help="interoperability test vectors: generate a suite, check an implementation")
    vsub = p.add_subparsers(dest="vectors_command", required=True, metavar="ACTION")
    g = vsub.add_parser("generate", help="write the JSON vector suite (one file per family + schema.json)")
    g.add_argument("dir", metavar="DIR", help="output folder (created if missing)")
    g.add_argument("--seed", default=DEFAULT_SEED, help=f"seed of the deterministic RNG (default {DEFAULT_SEED!r})")
    g.set_defaults(func=_generate)
    c = vsub.add_parser("check", help="run a suite against an implementation and print a conformance table")
    c.add_argument("dir", metavar="DIR", nargs="?", help="suite folder (default: generate one in memory)")
    c.add_argument("--peer", metavar="CMD", help='command line of a JSON-lines peer, e.g. "wacrypto peer" '
                                                 "(default: wacrypto in this process)")
    c.add_argument("--family", action="append", metavar="NAME", help="check only this family (repeatable)")
    c.add_argument("--verbose", "-v", action="store_true", help="list each failing case")
    c.add_argument("--json", metavar="FILE", help="also write the results as JSON (per family, with each failure)")
    c.set_defaults(func=_check)

    from wacrypto.tools.conformance import register as register_conformance

    register_conformance(sub)  # `wacrypto conformance`: state safety, built on the same suite
