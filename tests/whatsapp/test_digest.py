"""The key digest a device uses to check the keys the server holds for it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wacrypto.errors import InvalidMessageError
from wacrypto.whatsapp.stanzas import KeyDigest, SignedPreKey, digest_result, key_digest_hash, parse_digest_result
from wacrypto.wire.binary import Node, decode_node, encode_node

_k32 = st.binary(min_size=32, max_size=32)
_spk = st.builds(SignedPreKey, st.integers(0, 0xFFFFFF), _k32, st.binary(min_size=64, max_size=64))


@given(st.integers(0, 2**32 - 1), _k32, _spk, st.lists(st.integers(1, 0xFFFFFF), max_size=40, unique=True))
def test_round_trip_through_the_codec(reg: int, identity: bytes, spk: SignedPreKey, ids: list[int]) -> None:
    d = KeyDigest(reg, identity, spk, tuple(ids), key_digest_hash(identity, spk, [bytes(32)] * len(ids)))
    assert parse_digest_result(decode_node(encode_node(digest_result("1", "1@s.whatsapp.net", d)))) == d


def test_the_hash_covers_every_key_in_order() -> None:
    spk = SignedPreKey(1, b"\x01" * 32, b"\x02" * 64)
    base = key_digest_hash(b"\x03" * 32, spk, [b"\x04" * 32, b"\x05" * 32])
    assert len(base) == 20
    assert key_digest_hash(b"\x03" * 32, spk, [b"\x05" * 32, b"\x04" * 32]) != base
    assert key_digest_hash(b"\x03" * 32, SignedPreKey(1, b"\x01" * 32, b"\x09" * 64), [b"\x04" * 32, b"\x05" * 32]) != base
    assert key_digest_hash(b"\x03" * 32, spk, [b"\x04" * 32]) != base


def test_a_malformed_digest_is_refused() -> None:
    spk = SignedPreKey(1, b"\x01" * 32, b"\x02" * 64)
    good = KeyDigest(7, b"\x03" * 32, spk, (1, 2), bytes(20)).to_node()
    assert isinstance(good.content, tuple)
    short_hash = Node("digest", {}, good.content[:-1] + (Node("hash", {}, bytes(19)),))
    with pytest.raises(InvalidMessageError):
        KeyDigest.from_node(short_hash)
    with pytest.raises(InvalidMessageError):
        KeyDigest.from_node(Node("digest", {}, good.content[1:]))
    with pytest.raises(InvalidMessageError):
        parse_digest_result(Node("iq", {"type": "result"}))
