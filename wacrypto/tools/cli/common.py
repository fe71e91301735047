"""What every ``wacrypto`` sub-command shares: exit codes, the two CLI error kinds, and the one place
(:func:`report`) that turns an exception into a one-line message and an exit code.

Exit codes (documented in ``wacrypto --help``):

* ``0`` success;
* ``1`` failure: the command ran and failed (a file or folder that is missing or cannot be read or
  written, a port in use, the network or the server, the key store, a blob that fails verification);
* ``2`` usage: the command cannot run as given (a malformed option value, a file holding the wrong
  kind of content for its option, a missing or wrong backup password, an action that needs an
  explicit ``--force`` or ``--create``); argparse's own errors use 2 as well;
* ``130`` interrupted (Ctrl-C), without a message.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from pathlib import Path
from typing import Final, TextIO

from wacrypto.errors import BackupError, InvalidArgumentError, WacryptoError

__all__ = [
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "EXIT_CODES_HELP",
    "CliFailure",
    "CliUsageError",
    "leaves",
    "report",
    "sqlite_path",
    "store_url",
]

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130

EXIT_CODES_HELP: Final = """\
exit status:
  0    success
  1    failure: a missing or unwritable file or folder, a port in use, the network or the
       server, the key store, a blob or connection that fails verification
  2    usage: a malformed option value, a file of the wrong kind for its option, a missing or
       wrong backup password, an action that needs --force or --create
  130  interrupted (Ctrl-C)
Errors are one line on stderr: "wacrypto COMMAND: error: ..."."""


class CliUsageError(InvalidArgumentError):
    """The command line cannot be acted on as given (exit 2); the message says what to change."""


class CliFailure(WacryptoError):
    """The command ran and failed (exit 1); the message says what failed and where."""


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside ``exc``, exception groups (trio nurseries) flattened."""
    if isinstance(exc, BaseExceptionGroup):
        out: list[BaseException] = []
        for e in exc.exceptions:
            out.extend(leaves(e))
        return out
    return [exc]


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _os_error_text(exc: OSError) -> str:
    reason = exc.strerror or (errno.errorcode.get(exc.errno, "") if exc.errno else "") or str(exc)
    names = [str(f) for f in (exc.filename, exc.filename2) if f is not None]
    return f"{reason}: {' -> '.join(names)}" if names else reason


def _classify(exc: BaseException) -> tuple[int, str | None] | None:
    """(exit code, message or None for silence) for an exception the CLI expects, else None."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED, None
    if isinstance(exc, BrokenPipeError):
        return EXIT_FAILURE, None  # the reader went away (``| head``): nothing to say to anybody
    if isinstance(exc, (CliUsageError, CliFailure)):
        return (EXIT_USAGE if isinstance(exc, CliUsageError) else EXIT_FAILURE), str(exc)
    if isinstance(exc, WacryptoError):
        # a wrong or missing backup password is the caller's to fix, like a bad argument
        # (a file too large for a limit is a failure: the command ran and the content did not fit)
        code = EXIT_USAGE if isinstance(exc, (InvalidArgumentError, BackupError)) else EXIT_FAILURE
        return code, f"{type(exc).__name__}: {exc}"
    if isinstance(exc, OSError):
        return EXIT_FAILURE, _os_error_text(exc)
    return None


def report(exc: BaseException, command: str, stderr: TextIO | None = None) -> int | None:
    """Print ``exc`` as one line on stderr and return its exit code; None if it is not an error
    the CLI expects (a bug: the caller re-raises it, so it keeps its traceback)."""
    found = [(_classify(e), e) for e in leaves(exc)]
    if any(c is None for c, _ in found):
        return None
    codes = [c for c, _ in found if c is not None]
    if any(isinstance(e, KeyboardInterrupt) for _, e in found):
        return EXIT_INTERRUPTED  # Ctrl-C wins over whatever it interrupted, quietly
    if any(isinstance(e, BrokenPipeError) for _, e in found):
        _silence_stdout()
        return EXIT_FAILURE
    code, msg = codes[0]
    err = stderr if stderr is not None else sys.stderr
    try:
        err.write(f"wacrypto {command}: error: {_one_line(msg or '')}\n")
        err.flush()
    except OSError:
        pass
    return code


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter's final flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def store_url(text: str) -> str:
    """An argparse ``type=`` for ``--store``: ``text`` if it looks like a store URL, else a usage
    error that names the fix (a bare file name such as ``keys.db`` is the common mistake)."""
    if text in ("memory:", "memory://", "memory:///") or "://" in text:
        return text
    hint = f"; for a SQLite file use sqlite:///{text}" if text else ""
    raise argparse.ArgumentTypeError(
        f"{text!r} is not a store URL (sqlite:///path, postgresql://..., mysql://..., memory:){hint}"
    )


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite://`` store URL, None for any other backend."""
    from wacrypto.store.sql.url import parse_store_url

    if "://" not in url:
        return None
    u = parse_store_url(url)
    return Path(u.path) if u.backend == "sqlite" else None
