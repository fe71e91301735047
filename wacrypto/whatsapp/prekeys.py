"""When and how many one-time prekeys to upload, as WhatsApp clients do (pure policy).

A new device uploads :data:`INITIAL_PREKEY_UPLOAD` (812) one-time prekeys at registration; later,
whenever the server says it holds fewer than :data:`PREKEY_LOW_WATER` (5), on connect or on an
``encrypt`` count notification, the device uploads a batch of :data:`PREKEY_UPLOAD_BATCH` (50). Only
one upload runs at a time; a second trigger while one runs is absorbed by it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, final

from wacrypto.errors import InvalidArgumentError, InvalidMessageError
from wacrypto.limits import INITIAL_PREKEY_UPLOAD, MAX_PREKEY_ID, PREKEY_LOW_WATER, PREKEY_UPLOAD_BATCH

__all__ = ["PrekeyUploader", "next_prekey_ids", "prekeys_to_upload"]

_ID_SPACE: Final = MAX_PREKEY_ID  # ids 1..0xFFFFFF; 0 is never used (some peers read it as "none")


def prekeys_to_upload(server_count: int, *, registered: bool) -> int:
    """How many one-time prekeys to upload now, given what the server says it holds."""
    if server_count < 0:
        raise InvalidMessageError("the server reported a negative prekey count")
    if not registered:
        return INITIAL_PREKEY_UPLOAD
    return PREKEY_UPLOAD_BATCH if server_count < PREKEY_LOW_WATER else 0


def next_prekey_ids(last_id: int, n: int) -> list[int]:
    """``n`` fresh ids after ``last_id``, wrapping from 0xFFFFFF back to 1."""
    if not 0 <= last_id <= MAX_PREKEY_ID or n < 0 or n > _ID_SPACE:
        raise InvalidArgumentError("prekey id or count out of range")
    return [(last_id + i - 1) % _ID_SPACE + 1 for i in range(1, n + 1)]


@final
@dataclass
class PrekeyUploader:
    """One upload at a time: ``begin(count)`` says how many to upload now (0: none, or one is running);
    ``done(ok)`` ends it. A trigger seen while an upload runs makes :meth:`done` ask for a re-check."""

    registered: bool
    running: bool = False
    _recheck: bool = field(default=False, repr=False)

    def begin(self, server_count: int) -> int:
        if self.running:
            self._recheck = True
            return 0
        n = prekeys_to_upload(server_count, registered=self.registered)
        self.running = n > 0
        return n

    def done(self, ok: bool) -> bool:
        """End the running upload; True when the caller should query the count again."""
        if not self.running:
            raise InvalidArgumentError("no prekey upload is running")
        self.running = False
        if ok:
            self.registered = True
        again, self._recheck = self._recheck or not ok, False
        return again
