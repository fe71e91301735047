"""`wacrypto peer`: drive the library over JSON lines (interop tests, vectors)."""

from __future__ import annotations

import argparse
import os
import sys

from wacrypto.tools.cli.common import EXIT_INTERRUPTED, leaves, store_url


def _run(args: argparse.Namespace) -> int:
    from wacrypto.tools.peer import run_peer

    try:
        return run_peer(args.store)
    except BaseException as exc:
        if not any(isinstance(e, KeyboardInterrupt) for e in leaves(exc)):
            raise
    # Ctrl-C: the peer has closed its store. Its stdin reader thread may still be blocked in a read
    # holding stdin's lock, and a normal interpreter shutdown aborts on that lock: leave at once.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(EXIT_INTERRUPTED)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("peer", help="JSON-lines interop peer on stdin/stdout")
    p.add_argument("--store", metavar="URL", type=store_url,
                   help="key store URL (sqlite:///path, postgresql://..., mysql://..., memory:)")
    p.set_defaults(func=_run)
