"""Retention: prune old files, stale partial files and the directories they leave empty."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wacrypto.errors import InvalidArgumentError
from wacrypto.media.files import PARTIAL_SUFFIX
from wacrypto.media.prune import parse_duration, prune

NOW = 1_800_000_000.0
DAY = 86400.0


def make(path: Path, age: float, size: int = 10) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    os.utime(path, (NOW - age, NOW - age))
    return path


def test_parse_duration() -> None:
    assert parse_duration("30d") == 30 * DAY
    assert parse_duration("12h") == 12 * 3600
    assert parse_duration("2w") == 14 * DAY
    assert parse_duration("1d12h") == 1.5 * DAY
    assert parse_duration(" 90m ") == 5400
    for bad in ("", "30", "d", "30x", "-1d", "1d 2h", "30d!"):
        with pytest.raises(InvalidArgumentError):
            parse_duration(bad)


def test_prune_removes_only_old_files(tmp_path: Path) -> None:
    old = make(tmp_path / "a" / "old.jpg", 31 * DAY, 100)
    young = make(tmp_path / "a" / "young.jpg", 29 * DAY)
    old_dir_file = make(tmp_path / "b" / "c" / "old.mp4", 40 * DAY, 50)
    stale_part = make(tmp_path / f".x.jpg.abc{PARTIAL_SUFFIX}", 2 * 3600, 7)
    fresh_part = make(tmp_path / f".y.jpg.abc{PARTIAL_SUFFIX}", 60)
    (tmp_path / "empty-on-purpose").mkdir()
    target = make(tmp_path / "target.bin", 0)
    os.symlink(target, tmp_path / "link")
    os.utime(tmp_path / "link", (NOW - 90 * DAY, NOW - 90 * DAY), follow_symlinks=False)

    dry = prune(tmp_path, 30 * DAY, now=NOW, dry_run=True)
    assert set(dry.removed) == {old, old_dir_file, stale_part}
    assert old.exists() and stale_part.exists()

    result = prune(tmp_path, 30 * DAY, now=NOW)
    assert set(result.removed) == {old, old_dir_file, stale_part}
    assert result.bytes_freed == 157
    assert not old.exists() and not old_dir_file.exists() and not stale_part.exists()
    assert young.exists() and fresh_part.exists() and target.exists() and (tmp_path / "link").is_symlink()
    assert not (tmp_path / "b").exists()  # emptied by the prune
    assert (tmp_path / "empty-on-purpose").is_dir()  # already empty: not ours to remove
    assert (tmp_path / "a").is_dir() and tmp_path.is_dir()


def test_prune_refuses_non_directories(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError):
        prune(tmp_path / "missing", DAY)
    with pytest.raises(InvalidArgumentError):
        prune(make(tmp_path / "f", 0), DAY)
    with pytest.raises(InvalidArgumentError):
        prune("/", DAY)
