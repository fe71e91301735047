"""``wacrypto media``: encrypt, decrypt, derive keys and prune a local media folder.

::

    wacrypto media encrypt --type TYPE [--media-key HEX] --in FILE --out FILE
    wacrypto media decrypt --type TYPE --media-key HEX --in FILE --out FILE
                           [--file-sha256 HEX] [--file-enc-sha256 HEX]
    wacrypto media keys    --type TYPE --media-key HEX
    wacrypto media prune   --older-than 30d [--dry-run] DIR

``encrypt`` prints one JSON object (``media_key``, ``file_sha256``, ``file_enc_sha256``, ``file_length``
and, for video/audio classes, ``sidecar``; all hex). ``decrypt`` writes the verified plaintext and prints
nothing; a blob that fails verification exits 1 with a one-line error and leaves no output file. A
progress bar is drawn on stderr for large files when stderr is a terminal, or always with ``--progress``.

Exit status: 0 success, 1 failure (verification, I/O, too large), 2 bad arguments, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Final, TextIO

from wacrypto.errors import InvalidArgumentError, MediaIntegrityError
from wacrypto.limits import DEFAULT_MEDIA_MAX_BYTES, MEDIA_KEY_LEN
from wacrypto.media.crypto import MediaType, derive_media_keys
from wacrypto.media.files import decrypt_file, encrypt_file
from wacrypto.media.prune import parse_duration, prune
from wacrypto.tools.cli.common import CliFailure

__all__ = ["register"]

_AUTO_PROGRESS_MIN: Final = 8 * 1024 * 1024  # files this large get a bar when stderr is a terminal
_BAR_WIDTH: Final = 30
_REDRAW_INTERVAL: Final = 0.1  # seconds between redraws
_SIZE_SUFFIX: Final = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


class _ProgressBar:
    """A one-line progress bar on a text stream, redrawn at most every 100 ms."""

    def __init__(self, total: int, label: str, stream: TextIO) -> None:
        self._total = max(total, 1)
        self._label = label
        self._stream = stream
        self._last = 0.0

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if now - self._last < _REDRAW_INTERVAL and done < self._total:
            return
        self._last = now
        frac = min(done / self._total, 1.0)
        filled = int(frac * _BAR_WIDTH)
        self._stream.write(
            f"\r{self._label} [{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {frac * 100:5.1f}% "
            f"{done / 1e6:.1f}/{self._total / 1e6:.1f} MB"
        )
        self._stream.flush()

    def close(self, *, complete: bool) -> None:
        """End the bar: draw it full when the work completed, then end the line."""
        if complete:
            self._last = 0.0
            self(self._total)
        self._stream.write("\n")
        self._stream.flush()


def _progress(args: argparse.Namespace, total: int, label: str) -> _ProgressBar | None:
    want: bool | None = args.progress
    if want is None:
        want = sys.stderr.isatty() and total >= _AUTO_PROGRESS_MIN
    return _ProgressBar(total, label, sys.stderr) if want else None


def _hex(value: str | None, name: str, length: int) -> bytes | None:
    if value is None:
        return None
    try:
        raw = bytes.fromhex(value.strip())
    except ValueError:
        raise InvalidArgumentError(f"{name} is not valid hex") from None
    if len(raw) != length:
        raise InvalidArgumentError(f"{name} must be {length} bytes ({2 * length} hex digits), got {len(raw)} bytes")
    return raw


def _required_key(value: str) -> bytes:
    key = _hex(value, "--media-key", MEDIA_KEY_LEN)
    assert key is not None
    return key


def _size(text: str) -> int | None:
    value = text.strip().lower()
    if value in ("none", "unlimited"):
        return None
    unit = value[-1:] if value[-1:] in _SIZE_SUFFIX else ""
    number = value[: len(value) - len(unit)] if unit else value
    if not number.isdigit():
        raise argparse.ArgumentTypeError(f"invalid size {text!r}; use bytes, or a K/M/G suffix, or 'none'")
    return int(number) * _SIZE_SUFFIX[unit]


def _media_type(text: str) -> MediaType:
    try:
        return MediaType.parse(text)
    except InvalidArgumentError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


# ------------------------------------------------------------------------------------ commands


def _cmd_encrypt(args: argparse.Namespace) -> int:
    key = _hex(args.media_key, "--media-key", MEDIA_KEY_LEN)
    bar = _progress(args, _file_size(args.infile), "encrypt")
    complete = False
    try:
        result = encrypt_file(
            args.infile, args.outfile, args.type, key, sidecar=args.sidecar, max_bytes=args.max_bytes, progress=bar
        )
        complete = True
    finally:
        if bar is not None:
            bar.close(complete=complete)
    print(json.dumps(result.to_json()))
    return 0


def _cmd_decrypt(args: argparse.Namespace) -> int:
    key = _required_key(args.media_key)
    file_sha256 = _hex(args.file_sha256, "--file-sha256", 32)
    file_enc_sha256 = _hex(args.file_enc_sha256, "--file-enc-sha256", 32)
    bar = _progress(args, _file_size(args.infile), "decrypt")
    complete = False
    try:
        decrypt_file(
            args.infile,
            args.outfile,
            args.type,
            key,
            file_sha256=file_sha256,
            file_enc_sha256=file_enc_sha256,
            max_bytes=args.max_bytes,
            progress=bar,
        )
        complete = True
    finally:
        if bar is not None:
            bar.close(complete=complete)
    return 0


def _cmd_keys(args: argparse.Namespace) -> int:
    keys = derive_media_keys(_required_key(args.media_key), args.type)
    print(
        json.dumps(
            {
                "type": args.type.value,
                "info": args.type.info.decode("ascii"),
                "iv": keys.iv.hex(),
                "cipher_key": keys.cipher_key.hex(),
                "mac_key": keys.mac_key.hex(),
                "ref_key": keys.ref_key.hex(),
            }
        )
    )
    return 0


def _cmd_prune(args: argparse.Namespace) -> int:
    result = prune(args.directory, parse_duration(args.older_than), dry_run=args.dry_run)
    for path in result.removed:
        print(("would remove " if args.dry_run else "removed ") + str(path))
    for error in result.errors:
        print(f"wacrypto media prune: warning: {error}", file=sys.stderr)
    verb = "would free" if args.dry_run else "freed"
    print(f"{len(result.removed)} file(s), {verb} {result.bytes_freed} bytes", file=sys.stderr)
    return 1 if result.errors else 0


def _guard(name: str, func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Word a failed verification for the user (which check failed is deliberately not said);
    every other error is reported by ``wacrypto.tools.cli.main``."""

    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except MediaIntegrityError:
            raise CliFailure("media blob failed verification (wrong key/type, or corrupt)") from None

    return run


# ------------------------------------------------------------------------------------ parser


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``media`` command with ``encrypt``, ``decrypt``, ``keys`` and ``prune`` to ``sub``."""
    types = ", ".join(m.value for m in MediaType)
    media = sub.add_parser("media", help="encrypt/decrypt WhatsApp media, derive keys, prune a media folder")
    msub = media.add_subparsers(dest="media_command", required=True, metavar="ACTION")

    def common(p: argparse.ArgumentParser, *, files: bool) -> None:
        p.add_argument(
            "--type", required=True, type=_media_type, metavar="TYPE", help=f"message class: {types}"
        )
        if files:
            p.add_argument("--in", dest="infile", required=True, metavar="FILE", help="input file")
            p.add_argument("--out", dest="outfile", required=True, metavar="FILE", help="output file")
            p.add_argument(
                "--max-bytes",
                type=_size,
                default=DEFAULT_MEDIA_MAX_BYTES,
                metavar="SIZE",
                help="plaintext size limit (bytes, or K/M/G suffix, or 'none'; default 64M)",
            )
            p.add_argument(
                "--progress",
                action=argparse.BooleanOptionalAction,
                default=None,
                help="progress bar on stderr (default: for large files when stderr is a terminal)",
            )

    enc = msub.add_parser("encrypt", help="encrypt a file; print media_key and hashes as JSON")
    common(enc, files=True)
    enc.add_argument("--media-key", metavar="HEX", help="32-byte media key (default: random)")
    enc.add_argument(
        "--sidecar",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="compute the streaming sidecar (default: for video and audio classes)",
    )
    enc.set_defaults(func=_guard("encrypt", _cmd_encrypt))

    dec = msub.add_parser("decrypt", help="verify and decrypt a blob; output appears only if verified")
    common(dec, files=True)
    dec.add_argument("--media-key", required=True, metavar="HEX", help="32-byte media key")
    dec.add_argument("--file-sha256", metavar="HEX", help="expected SHA-256 of the plaintext")
    dec.add_argument("--file-enc-sha256", metavar="HEX", help="expected SHA-256 of the blob")
    dec.set_defaults(func=_guard("decrypt", _cmd_decrypt))

    keys = msub.add_parser("keys", help="print the iv/cipher/mac/ref keys derived from a media key")
    common(keys, files=False)
    keys.add_argument("--media-key", required=True, metavar="HEX", help="32-byte media key")
    keys.set_defaults(func=_guard("keys", _cmd_keys))

    pr = msub.add_parser("prune", help="delete media files older than a given age")
    pr.add_argument("--older-than", required=True, metavar="AGE", help="age such as 30d, 12h, 2w")
    pr.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    pr.add_argument("directory", metavar="DIR", help="media folder")
    pr.set_defaults(func=_guard("prune", _cmd_prune))
