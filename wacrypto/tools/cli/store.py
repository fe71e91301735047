"""`wacrypto store ...`: backup, restore, migrate, import and inspect a key store."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from wacrypto.errors import BackupError
from wacrypto.tools.cli.common import CliFailure, CliUsageError, sqlite_path, store_url

if TYPE_CHECKING:
    from wacrypto.store.dump import StoreDump

ENV_PASSWORD = "WACRYPTO_BACKUP_PASSWORD"


def _password(confirm: bool) -> str:
    pw = os.environ.get(ENV_PASSWORD)
    if pw:
        return pw
    if not sys.stdin.isatty():
        raise BackupError(f"no backup password: set {ENV_PASSWORD} or run on a terminal to be prompted")
    pw = getpass.getpass("backup password: ")
    if not pw:
        raise BackupError("empty backup password")
    if confirm and getpass.getpass("repeat password: ") != pw:
        raise BackupError("passwords do not match")
    return pw


def _store_kw(args: argparse.Namespace) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    if getattr(args, "key_file", None):
        kw["key_file"] = args.key_file
    return kw


def _run(fn: Callable[[argparse.Namespace], Awaitable[int]]) -> Callable[[argparse.Namespace], int]:
    """Run ``fn`` under trio; its errors are reported by ``wacrypto.tools.cli.main``."""

    def go(args: argparse.Namespace) -> int:
        return trio.run(fn, args)

    return go


def _existing_store(args: argparse.Namespace, *, create: bool | None = None) -> None:
    """Refuse a SQLite store file that does not exist: opening it would create an empty store, so a
    typo in the path would look like an empty account. ``create`` is the command's ``--create``
    (None: the command has no such option)."""
    path = sqlite_path(args.store)
    if path is None or create or path.exists():
        return
    if create is None:
        raise CliFailure(f"no SQLite store at {path} (check the path)")
    raise CliUsageError(f"no SQLite store at {path} (check the path; give --create to make a new, empty store)")


async def _backup(args: argparse.Namespace) -> int:
    from wacrypto.store import open_store
    from wacrypto.store.backup import write_archive

    _existing_store(args)
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        raise CliFailure(f"cannot write --out {args.out}: folder {out_dir} does not exist")
    pw = _password(confirm=sys.stdin.isatty() and not os.environ.get(ENV_PASSWORD))
    store = await open_store(args.store, **_store_kw(args))
    try:
        dump = await store.dump()
    finally:
        await store.aclose()
    data = write_archive(dump, pw)
    tmp = args.out + ".tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, args.out)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise CliFailure(f"cannot write --out {args.out}: {exc.strerror or exc}") from None
    print(json.dumps({"out": args.out, "bytes": len(data), "rows": dump.counts()}))
    return 0


async def _restore(args: argparse.Namespace) -> int:
    from wacrypto.store.backup import read_archive

    try:
        with open(args.inp, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise CliFailure(f"cannot read --in {args.inp}: {exc.strerror or exc}") from None
    dump = read_archive(data, _password(confirm=False))
    await _load_into(args, dump)
    print(json.dumps({"restored": dump.counts()}))
    return 0


async def _load_into(args: argparse.Namespace, dump: StoreDump) -> None:
    """Replace the account in ``args.store`` with ``dump``; refuse a non-empty store without --force."""
    from wacrypto.store import open_store

    store = await open_store(args.store, **_store_kw(args))
    try:
        if not args.force:
            existing = await store.dump()
            if existing.local is not None or existing.sessions:
                raise CliUsageError("the target store already holds an account; use --force to replace it")
        await store.load(dump)
    finally:
        await store.aclose()


async def _migrate(args: argparse.Namespace) -> int:
    from wacrypto.store import open_store

    s = await open_store(args.store, migrate=True, **_store_kw(args))
    try:
        version = (await s.info()).schema_version or 0
    finally:
        await s.aclose()
    print(json.dumps({"schema_version": version}))
    return 0


async def _import(args: argparse.Namespace) -> int:
    from wacrypto.store.importers import import_axolotl, import_whatsmeow

    dump = import_axolotl(args.source) if args.kind == "axolotl" else import_whatsmeow(args.source, args.jid)
    await _load_into(args, dump)
    print(json.dumps({"imported": dump.counts()}))
    return 0


async def _info(args: argparse.Namespace) -> int:
    from wacrypto.store import open_store

    _existing_store(args, create=args.create)
    s = await open_store(args.store, **_store_kw(args))
    try:
        info = (await s.info()).to_dict()
    finally:
        await s.aclose()
    print(json.dumps(info, indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("store", help="back up, restore, migrate, import and inspect a key store")
    ss = p.add_subparsers(dest="store_command", required=True, metavar="ACTION")

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--store", required=True, metavar="URL", type=store_url,
                       help="sqlite:///path, postgresql://..., mysql://...")
        q.add_argument("--key-file", metavar="FILE", help="at-rest key (else WACRYPTO_STORE_KEY[_FILE])")

    b = ss.add_parser("backup", help=f"write an encrypted archive (password from {ENV_PASSWORD} or a prompt)")
    common(b)
    b.add_argument("--out", required=True, metavar="FILE")
    b.set_defaults(func=_run(_backup))

    r = ss.add_parser("restore", help="restore an archive into a store (any backend)")
    common(r)
    r.add_argument("--in", dest="inp", required=True, metavar="FILE")
    r.add_argument("--force", action="store_true", help="replace an existing account")
    r.set_defaults(func=_run(_restore))

    m = ss.add_parser("migrate", help="create or upgrade the schema")
    common(m)
    m.set_defaults(func=_run(_migrate))

    for kind, helptext in (("axolotl", "python-axolotl / yowsup SQLite database"), ("whatsmeow", "whatsmeow database")):
        i = ss.add_parser(f"import-{kind}", help=f"import an account from a {helptext}")
        common(i)
        i.add_argument("source", metavar="DB", help="path or URL of the database to import from")
        if kind == "whatsmeow":
            i.add_argument("--jid", help="device JID when the database holds several")
        i.add_argument("--force", action="store_true", help="replace an existing account")
        i.set_defaults(func=_run(_import), kind=kind, jid=None)

    n = ss.add_parser("info", help="schema version, row counts, lease holder")
    common(n)
    n.add_argument("--create", action="store_true", help="create the SQLite store if the file does not exist")
    n.set_defaults(func=_run(_info))
