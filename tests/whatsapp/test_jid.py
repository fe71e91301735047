"""JIDs: parsing, printing and the Signal address of each device."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wacrypto.address import Address
from wacrypto.errors import InvalidMessageError
from wacrypto.whatsapp.jid import Jid


def test_parse_and_print() -> None:
    for text in ("123456789@s.whatsapp.net", "123:7@s.whatsapp.net", "98765:255@lid", "120363-1690000000@g.us",
                 "status@broadcast", "1@hosted", "5:3@hosted.lid", "@s.whatsapp.net"):
        assert str(Jid.parse(text)) == text
    j = Jid.parse("123:7@s.whatsapp.net")
    assert (j.user, j.server, j.device) == ("123", "s.whatsapp.net", 7)
    assert j.user_jid() == Jid("123", "s.whatsapp.net") and j.user_jid().with_device(7) == j


def test_signal_addresses() -> None:
    assert Jid.parse("123:7@s.whatsapp.net").signal_address() == Address("123", 7)
    assert Jid.parse("98765:2@lid").signal_address() == Address("98765_1", 2)
    assert Jid.parse("5@hosted").signal_address() == Address("5_128", 0)
    assert Jid.parse("5:3@hosted.lid").signal_address() == Address("5_129", 3)
    for no_sessions in ("1-2@g.us", "@s.whatsapp.net"):
        with pytest.raises(InvalidMessageError):
            Jid.parse(no_sessions).signal_address()
    with pytest.raises(InvalidMessageError):
        Jid.from_signal_address(Address("123_9", 1))


@given(st.from_regex(r"[0-9]{1,20}", fullmatch=True), st.sampled_from(["s.whatsapp.net", "lid", "hosted", "hosted.lid"]),
       st.integers(0, 255))
def test_round_trips(user: str, server: str, device: int) -> None:
    j = Jid(user, server, device)
    assert Jid.parse(str(j)) == j
    assert Jid.from_signal_address(j.signal_address()) == j
    assert j.is_lid == server.endswith("lid") and j.is_phone_number == (not j.is_lid)


def test_malformed_jids_are_refused() -> None:
    for bad in ("123", "abc@s.whatsapp.net", "1:256@lid", "1:07@lid", "1:x@lid", "1:2@g.us", "1@", "1@S.WHATSAPP.NET",
                "1@" + "a" * 65, "1" * 33 + "@lid", "a b@g.us", ":1@lid"):
        with pytest.raises(InvalidMessageError):
            Jid.parse(bad)


@given(st.text(max_size=40))
def test_any_text_parses_or_raises_invalid_message(text: str) -> None:
    try:
        j = Jid.parse(text)
    except InvalidMessageError:
        return
    assert Jid.parse(str(j)) == j
