"""Device lists and the participant hash."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wacrypto.errors import InvalidMessageError
from wacrypto.whatsapp.devices import DeviceList, participant_hash
from wacrypto.whatsapp.jid import Jid
from wacrypto.whatsapp.stanzas import DevicesNotification

U = Jid.parse("111@s.whatsapp.net")


def test_hash_known_answer() -> None:
    devs = [Jid.parse("222:3@lid"), Jid.parse("111@s.whatsapp.net"), Jid.parse("111:2@s.whatsapp.net")]
    text = "111:2@s.whatsapp.net111@s.whatsapp.net222:3@lid"  # sorted as strings, joined
    want = "2:" + base64.b64encode(hashlib.sha256(text.encode()).digest()[:6]).decode()
    assert participant_hash(devs) == want and len(want) == 10 and "=" not in want


@given(st.lists(st.integers(0, 99), unique=True, min_size=1, max_size=10), st.randoms())
def test_hash_ignores_order(ids: list[int], rnd: object) -> None:
    jids = [U.with_device(i) for i in ids]
    shuffled = list(jids)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert participant_hash(jids) == participant_hash(shuffled)
    if len(ids) > 1:
        assert participant_hash(jids[1:]) != participant_hash(jids)


def test_notifications_update_the_list() -> None:
    lst = DeviceList(U, frozenset({0, 2}))
    lst = lst.apply(DevicesNotification(U, added=(U.with_device(5), Jid.parse("9:1@lid")), removed=(U.with_device(2),)))
    assert lst.jids() == [U, U.with_device(5)]
    assert lst.apply(DevicesNotification(U, removed=(U,))).devices == frozenset({0, 5})  # the primary stays
    with pytest.raises(InvalidMessageError):
        lst.apply(DevicesNotification(Jid.parse("9@lid")))
    with pytest.raises(InvalidMessageError):
        DeviceList(U.with_device(3))
