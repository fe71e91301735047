"""`wacrypto` command line. Each sub-command lives in its own module with a ``register`` function;
errors are turned into one-line messages and exit codes in one place, :func:`main`."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from wacrypto import __version__
from wacrypto.tools.cli.common import EXIT_CODES_HELP, EXIT_INTERRUPTED, EXIT_USAGE, report

# module name -> registers one or more sub-commands
_COMMAND_MODULES = (
    "wacrypto.tools.cli.demo",
    "wacrypto.tools.cli.peer",
    "wacrypto.tools.cli.media",
    "wacrypto.tools.cli.store",
    "wacrypto.tools.cli.chatd",
    "wacrypto.tools.cli.wa_client",
    "wacrypto.tools.vectors.cli",
)


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line, like every other error of the CLI (exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {' '.join(message.split())} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="wacrypto",
        description="Signal/WhatsApp end-to-end crypto: demo, interop peer, media, key stores, chat server.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"wacrypto {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # command not built yet
            raise
        module.register(sub)
    _document_exit_codes(parser)
    return parser


def _document_exit_codes(parser: argparse.ArgumentParser) -> None:
    """Every command's --help ends with the exit codes."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                child.epilog = child.epilog or EXIT_CODES_HELP
                child.formatter_class = argparse.RawDescriptionHelpFormatter
                _document_exit_codes(child)


def _command_name(args: argparse.Namespace) -> str:
    """``store info``, ``chatd run``, ``demo``: the words that named the command."""
    words = [str(args.command)]
    action = getattr(args, f"{args.command}_command", None)
    if action:
        words.append(str(action))
    return " ".join(words)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every error it expects ends as one line on stderr and an exit code
    (see ``wacrypto --help``), Ctrl-C as a quiet 130. Anything else is a bug and keeps its traceback."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    command = _command_name(args)
    try:
        rc = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not as a warning at interpreter exit
        return rc
    except BaseException as exc:  # noqa: BLE001 - classified below, re-raised if unexpected
        if isinstance(exc, SystemExit):
            raise
        code = report(exc, command)
        if code is None:
            raise
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
