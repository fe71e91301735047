"""v=2 plaintext padding: what we add, what we accept, what we refuse."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wacrypto.errors import InvalidMessageError
from wacrypto.testing import SeededRng
from wacrypto.whatsapp.padding import pad, unpad


@given(st.binary(max_size=300), st.binary(min_size=1, max_size=1))
def test_round_trip_and_pad_range(pt: bytes, r: bytes) -> None:
    padded = pad(pt, lambda n: r)
    n = len(padded) - len(pt)
    assert 1 <= n <= 15 and padded[len(pt):] == bytes([n]) * n
    assert unpad(padded) == pt


def test_every_pad_count_is_drawn() -> None:
    rng = SeededRng(b"pad")
    assert {len(pad(b"x", rng)) - 1 for _ in range(400)} == set(range(1, 16))


@given(st.binary(max_size=64), st.integers(1, 16))
def test_other_senders_padding_is_accepted(pt: bytes, n: int) -> None:
    assert unpad(pt + bytes([n]) * n) == pt  # Baileys pads up to 16


def test_malformed_padding_is_refused() -> None:
    for bad in (b"", b"\x00", b"abc\x00", b"\x05\x05", b"ab\x02\x03\x03", b"ab\x01\x03\x03"):
        with pytest.raises(InvalidMessageError):
            unpad(bad)
