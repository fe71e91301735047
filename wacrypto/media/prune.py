"""Retention for a local media folder: delete files older than a given age.

``prune(dir, older_than=30 * 86400)`` walks ``dir`` recursively without following symbolic links and
removes every regular file whose modification time is older than ``older_than`` seconds, plus the
temporary ``*.wacrypto-part`` files that an interrupted download or encryption left behind (after
``partial_grace`` seconds, one hour by default, so a transfer in progress is not disturbed). Directories
emptied by the prune are removed too (never ``dir`` itself). Errors on single files are collected, not
raised, so one unreadable file does not stop the clean-up.
"""

from __future__ import annotations

import wacrypto.limits as _limits

import os
import re
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, final

from wacrypto.errors import InvalidArgumentError
from wacrypto.media.files import PARTIAL_SUFFIX

__all__ = ["PruneResult", "parse_duration", "prune"]

_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION: Final = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
DEFAULT_PARTIAL_GRACE: Final = _limits.DEFAULT_PARTIAL_GRACE


def parse_duration(text: str) -> float:
    """Parse ``30d``, ``12h``, ``90m``, ``45s``, ``2w`` or a sum like ``1d12h`` into seconds."""
    src = text.strip().lower()
    pos = 0
    total = 0.0
    for match in _DURATION.finditer(src):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not src or pos != len(src):
        raise InvalidArgumentError(f"invalid duration {text!r}; use e.g. 30d, 12h, 90m, 45s, 2w")
    return total


@final
@dataclass(frozen=True, slots=True)
class PruneResult:
    """What a prune did (or would do, with ``dry_run``)."""

    removed: tuple[Path, ...] = ()
    bytes_freed: int = 0
    dirs_removed: tuple[Path, ...] = ()
    errors: tuple[str, ...] = field(default=())


def prune(
    directory: str | os.PathLike[str],
    older_than: float,
    *,
    now: float | None = None,
    dry_run: bool = False,
    partial_grace: float = DEFAULT_PARTIAL_GRACE,
) -> PruneResult:
    """Delete files under ``directory`` last modified more than ``older_than`` seconds before ``now``.

    ``now`` defaults to the current time. With ``dry_run`` nothing is deleted and the result lists what
    would be. Raises :class:`~wacrypto.errors.InvalidArgumentError` if ``directory`` is not a directory,
    is the filesystem root, or ``older_than`` is negative."""
    root = Path(directory)
    if older_than < 0 or partial_grace < 0:
        raise InvalidArgumentError("ages must be non-negative")
    if not root.is_dir():
        raise InvalidArgumentError(f"not a directory: {root}")
    if root.resolve() == Path(root.resolve().anchor):
        raise InvalidArgumentError("refusing to prune the filesystem root")
    current = time.time() if now is None else now
    removed: list[Path] = []
    dirs_removed: list[Path] = []
    errors: list[str] = []
    freed = 0
    touched: set[Path] = set()  # directories where we removed something
    for dirpath, dirnames, filenames in os.walk(root, topdown=False, followlinks=False, onerror=lambda e: errors.append(str(e))):
        here = Path(dirpath)
        for name in filenames:
            path = here / name
            try:
                st = path.lstat()
            except OSError as exc:
                errors.append(str(exc))
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            age = current - st.st_mtime
            limit = min(older_than, partial_grace) if name.endswith(PARTIAL_SUFFIX) else older_than
            if age <= limit:
                continue
            if not dry_run:
                try:
                    path.unlink()
                except OSError as exc:
                    errors.append(str(exc))
                    continue
            removed.append(path)
            touched.add(here)
            freed += st.st_size
        if here != root and here in touched and not dry_run:
            try:
                if not any(here.iterdir()):
                    here.rmdir()
                    dirs_removed.append(here)
                    touched.add(here.parent)
            except OSError:
                pass  # not empty any more, or not ours to remove: leave it
        del dirnames  # walked bottom-up; nothing to prune from the list
    return PruneResult(
        removed=tuple(removed), bytes_freed=freed, dirs_removed=tuple(dirs_removed), errors=tuple(errors)
    )
