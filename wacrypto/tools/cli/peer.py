"""`wacrypto peer`: drive the library over JSON lines (interop tests, vectors)."""

from __future__ import annotations

import argparse


def _run(args: argparse.Namespace) -> int:
    from wacrypto.tools.peer import run_peer

    return run_peer(args.store)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("peer", help="JSON-lines interop peer on stdin/stdout")
    p.add_argument("--store", metavar="URL", help="key store URL (sqlite:///path, postgresql://..., mysql://...)")
    p.set_defaults(func=_run)
