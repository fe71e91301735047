"""The prekey upload policy: 812 at first, 50 below 5, one upload at a time, ids that wrap."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wacrypto.errors import InvalidArgumentError, InvalidMessageError
from wacrypto.whatsapp.prekeys import PrekeyUploader, next_prekey_ids, prekeys_to_upload


def test_counts() -> None:
    assert prekeys_to_upload(0, registered=False) == 812
    assert [prekeys_to_upload(n, registered=True) for n in (0, 4, 5, 50)] == [50, 50, 0, 0]
    with pytest.raises(InvalidMessageError):
        prekeys_to_upload(-1, registered=True)


def test_one_upload_at_a_time() -> None:
    up = PrekeyUploader(registered=False)
    assert up.begin(0) == 812 and up.running
    assert up.begin(0) == 0  # a notification while it runs
    assert up.done(ok=True) is True  # ...asks for a re-check afterwards
    assert up.begin(3) == 50
    assert up.done(ok=False) is True and not up.running  # a failed upload is retried
    assert up.begin(10) == 0 and not up.running
    with pytest.raises(InvalidArgumentError):
        up.done(ok=True)


def test_ids_wrap_and_skip_zero() -> None:
    assert next_prekey_ids(0, 3) == [1, 2, 3]
    assert next_prekey_ids(0xFFFFFE, 3) == [0xFFFFFF, 1, 2]


@given(st.integers(0, 0xFFFFFF), st.integers(0, 2000))
def test_ids_are_fresh(last: int, n: int) -> None:
    ids = next_prekey_ids(last, n)
    assert len(set(ids)) == n and all(1 <= i <= 0xFFFFFF for i in ids) and last not in ids
