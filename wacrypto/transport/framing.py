"""Chat transport framing (sans-I/O).

Wire layout, client to server::

    [ "ED" 00 01 || len3 || routing_info ]   optional edge-routing pre-intro, once
    "WA" major minor                          intro header, once, glued before the first frame
    len3 || payload                           every frame; len3 is big-endian, payload only

Server to client there is no header: frames only. A :class:`FrameDecoder` parses exactly the
same frames whatever split the bytes arrive in, and refuses a length above its limit as soon as
the 3-byte prefix is seen (before buffering the body).
"""

from __future__ import annotations

from typing import Final, final

from wacrypto.errors import FrameError, InvalidArgumentError
from wacrypto.limits import (
    DEFAULT_MAX_FRAME_LEN,
    FRAME_LEN_BYTES,
    MAX_FRAME_LEN,
    MAX_ROUTING_INFO_LEN,
)

__all__ = [
    "DEFAULT_HEADER",
    "ROUTING_MAGIC",
    "FrameDecoder",
    "FrameEncoder",
    "encode_frame",
    "make_intro",
]

DEFAULT_HEADER: Final = b"WA\x06\x03"  # web clients' header; native clients use b"WA\x04\x00"
ROUTING_MAGIC: Final = b"ED\x00\x01"
_HEADER_MAGIC: Final = b"WA"
_HEADER_LEN: Final = 4


def _check_header(header: bytes) -> None:
    if len(header) != _HEADER_LEN or header[:2] != _HEADER_MAGIC:
        raise InvalidArgumentError("intro header must be b'WA' + [major, minor]")


def make_intro(header: bytes = DEFAULT_HEADER, routing_info: bytes | None = None) -> bytes:
    """The bytes sent once before the first frame: optional ED pre-intro, then the WA header."""
    _check_header(header)
    if routing_info is None:
        return bytes(header)
    if len(routing_info) > MAX_ROUTING_INFO_LEN:
        raise InvalidArgumentError("routing info longer than a 3-byte length can express")
    return ROUTING_MAGIC + len(routing_info).to_bytes(3, "big") + routing_info + header


def encode_frame(payload: bytes, max_frame_len: int = MAX_FRAME_LEN) -> bytes:
    """``len3 || payload``. Raises :class:`InvalidArgumentError` if ``payload`` is too long."""
    n = len(payload)
    if n > max_frame_len or n > MAX_FRAME_LEN:
        raise InvalidArgumentError(f"frame payload of {n} bytes exceeds the limit")
    return n.to_bytes(FRAME_LEN_BYTES, "big") + payload


@final
class FrameEncoder:
    """Frames outgoing payloads; the intro (if any) is glued before the first frame only."""

    __slots__ = ("_intro", "_max")

    def __init__(self, intro: bytes = b"", max_frame_len: int = MAX_FRAME_LEN) -> None:
        if not 0 < max_frame_len <= MAX_FRAME_LEN:
            raise InvalidArgumentError("max_frame_len out of range")
        self._intro = intro
        self._max = max_frame_len

    def encode(self, payload: bytes) -> bytes:
        n = len(payload)
        if n > self._max:
            raise InvalidArgumentError(f"frame payload of {n} bytes exceeds the limit of {self._max}")
        out = n.to_bytes(FRAME_LEN_BYTES, "big") + payload
        if self._intro:
            out = self._intro + out
            self._intro = b""
        return out

    @property
    def intro_pending(self) -> bool:
        return bool(self._intro)


@final
class FrameDecoder:
    """Reassembles frames from arbitrary splits of a byte stream.

    With ``expect_intro=True`` (the server side) the stream must begin with the optional ED
    pre-intro and the 4-byte WA header; :attr:`header` and :attr:`routing_info` expose them.
    """

    __slots__ = ("_buf", "_max", "_need_intro", "header", "routing_info")

    def __init__(self, max_frame_len: int = DEFAULT_MAX_FRAME_LEN, *, expect_intro: bool = False) -> None:
        if not 0 < max_frame_len <= MAX_FRAME_LEN:
            raise InvalidArgumentError("max_frame_len out of range")
        self._buf = bytearray()
        self._max = max_frame_len
        self._need_intro = expect_intro
        self.header: bytes | None = None
        self.routing_info: bytes | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._buf += data

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a frame."""
        return len(self._buf)

    def _parse_intro(self) -> bool:
        buf = self._buf
        if len(buf) < 2:
            return False
        if buf[:2] == b"ED":
            if len(buf) < 7:
                k = min(len(buf), 4)
                if buf[:k] != ROUTING_MAGIC[:k]:
                    raise FrameError("bad edge-routing pre-intro")
                return False
            if buf[:4] != ROUTING_MAGIC:
                raise FrameError("bad edge-routing pre-intro")
            n = int.from_bytes(buf[4:7], "big")
            if n > self._max:
                raise FrameError("edge-routing info longer than the frame limit")
            if len(buf) < 7 + n:
                return False
            self.routing_info = bytes(buf[7 : 7 + n])
            del buf[: 7 + n]
            if len(buf) < 2:
                return False
        if buf[:2] != _HEADER_MAGIC:
            raise FrameError("stream does not start with the WA intro header")
        if len(buf) < _HEADER_LEN:
            return False
        self.header = bytes(buf[:_HEADER_LEN])
        del buf[:_HEADER_LEN]
        self._need_intro = False
        return True

    def next_frame(self) -> bytes | None:
        """The next complete frame payload, or None if more bytes are needed.

        Raises :class:`FrameError` on a bad intro or a length prefix above the limit.
        """
        if self._need_intro and not self._parse_intro():
            return None
        buf = self._buf
        if len(buf) < FRAME_LEN_BYTES:
            return None
        n = (buf[0] << 16) | (buf[1] << 8) | buf[2]
        if n > self._max:
            raise FrameError(f"frame length {n} exceeds the limit of {self._max}")
        end = FRAME_LEN_BYTES + n
        if len(buf) < end:
            return None
        frame = bytes(buf[FRAME_LEN_BYTES:end])
        del buf[:end]
        return frame
