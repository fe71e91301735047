"""Retry receipts: the receiver's sequence, the stanza both ways, and the sender's decision rules."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wacrypto.errors import InvalidMessageError, PeerError
from wacrypto.limits import MAX_RETRY_COUNT, MAX_RETRY_REQUESTS, RETRY_REBUILD_INTERVAL
from wacrypto.primitives.keys import KeyPair
from wacrypto.testing import SeededRng
from wacrypto.testing.stanzas import stanzas
from wacrypto.whatsapp.retry import ResendAction, RetryKeys, RetryReceipt, decide_resend, next_retry
from wacrypto.wire.binary import Node, decode_node, encode_node

RNG = SeededRng(b"retry")
IDENTITY = KeyPair.generate(RNG)
SIGNED = KeyPair.generate(RNG)
ONE_TIME = KeyPair.generate(RNG)
KEYS = RetryKeys(
    identity=IDENTITY.public.u, signed_prekey_id=7, signed_prekey=SIGNED.public.u,
    signed_prekey_signature=IDENTITY.private.sign(SIGNED.public.to_bytes(), RNG),
    prekey_id=0x123456, prekey=ONE_TIME.public.u, device_identity=b"\x0a\x02adv",
)


def receipt(prev: int, keys: RetryKeys | None = KEYS) -> RetryReceipt | None:
    return next_retry(prev, message_id="3EB0AA", chat="123@s.whatsapp.net", timestamp="1700000000",
                      registration_id=0x01020304, keys=keys)


def test_receiver_sends_five_then_gives_up() -> None:
    sent = [receipt(i) for i in range(MAX_RETRY_COUNT + 2)]
    assert [r.count if r else None for r in sent] == [1, 2, 3, 4, 5, None, None]
    assert [r.keys is not None for r in sent if r] == [False, True, True, True, True]  # keys from count 2


def test_stanza_round_trip_through_the_binary_codec() -> None:
    for r in (receipt(0), receipt(1), receipt(3, keys=RetryKeys(KEYS.identity, 1, KEYS.signed_prekey,
                                                                 KEYS.signed_prekey_signature))):
        assert r is not None
        node = decode_node(encode_node(r.to_node()))
        assert RetryReceipt.from_node(node) == r


def test_stanza_layout() -> None:
    r = receipt(1)
    assert r is not None
    n = r.to_node()
    assert n.tag == "receipt" and dict(n.attrs) == {"id": "3EB0AA", "type": "retry", "to": "123@s.whatsapp.net"}
    assert [c.tag for c in n.children] == ["retry", "registration", "keys"]
    assert dict(n.children[0].attrs) == {"count": "2", "id": "3EB0AA", "t": "1700000000", "v": "1"}
    assert n.children[1].content == bytes.fromhex("01020304")
    keys = n.children[2]
    assert [c.tag for c in keys.children] == ["type", "identity", "key", "skey", "device-identity"]
    assert keys.child("type").content == b"\x05"  # type: ignore[union-attr]
    assert keys.child("key").child("id").content == bytes.fromhex("123456")  # type: ignore[union-attr]


def test_the_bundle_from_the_keys_verifies() -> None:
    b = KEYS.bundle(registration_id=99, device_id=2)
    assert b.signature_valid() and b.identity_key == IDENTITY.public.to_bytes() and b.prekey_id == 0x123456
    forged = RetryKeys(KEYS.identity, 7, ONE_TIME.public.u, KEYS.signed_prekey_signature)  # another signed prekey
    assert not forged.bundle(99, 2).signature_valid()


def test_received_receipts_are_checked() -> None:
    good = receipt(1)
    assert good is not None
    n = good.to_node()

    def without(tag: str) -> Node:
        return Node(n.tag, n.attrs, tuple(c for c in n.children if c.tag != tag))

    def replace(child: Node) -> Node:
        return Node(n.tag, n.attrs, tuple(child if c.tag == child.tag else c for c in n.children))

    bad = [
        Node("receipt", {"type": "read", "id": "x"}),
        without("retry"), without("registration"),
        replace(Node("registration", {}, b"\x01\x02")),
        replace(Node("retry", {"count": "x", "id": "3EB0AA"})),
        replace(Node("retry", {"count": "0", "id": "3EB0AA"})),
        replace(Node("keys", {}, (Node("type", {}, b"\x06"),))),
        replace(Node("keys", {}, (Node("type", {}, b"\x05"), Node("identity", {}, b"\x01" * 31)))),
    ]
    for node in bad:
        with pytest.raises(InvalidMessageError):
            RetryReceipt.from_node(node)
    # a received receipt names its sender in "from"
    got = RetryReceipt.from_node(Node(n.tag, {"id": "3EB0AA", "type": "retry", "from": "9@lid"}, n.content))
    assert got.to == "9@lid"


@settings(max_examples=300, deadline=None)
@given(stanzas)
def test_any_stanza_parses_or_raises_a_peer_error(n: Node) -> None:
    for node in (n, Node("receipt", {"type": "retry", "id": "1"}, (n,)),
                 Node("receipt", {"type": "retry", "id": "1"}, (Node("retry", {"count": "2"}), n))):
        try:
            RetryReceipt.from_node(node, sender="1@s.whatsapp.net")
        except PeerError:
            pass


# --------------------------------------------------------------------------- sender rules
def decide(count: int = 1, keys: RetryKeys | None = None, **kw: object) -> ResendAction:
    r = RetryReceipt("id", "1@s.whatsapp.net", count, "0", 42, keys=keys)
    args: dict[str, object] = dict(has_session=True, session_registration_id=42, last_rebuild_at=None, now=10_000.0,
                                   requests_seen=0, is_group=False)
    args.update(kw)
    return decide_resend(r, **args).action  # type: ignore[arg-type]


def test_sender_rules() -> None:
    assert decide() is ResendAction.RESEND
    assert decide(keys=KEYS) is ResendAction.REBUILD_FROM_KEYS
    assert decide(has_session=False, session_registration_id=None) is ResendAction.REBUILD_FETCH
    assert decide(session_registration_id=41) is ResendAction.REBUILD_FETCH  # reinstalled
    assert decide(count=2) is ResendAction.REBUILD_FETCH  # never rebuilt
    assert decide(count=2, last_rebuild_at=10_000.0 - RETRY_REBUILD_INTERVAL + 1) is ResendAction.RESEND
    assert decide(count=2, last_rebuild_at=10_000.0 - RETRY_REBUILD_INTERVAL - 1) is ResendAction.REBUILD_FETCH
    assert decide(requests_seen=MAX_RETRY_REQUESTS) is ResendAction.IGNORE
    assert decide(requests_seen=MAX_RETRY_REQUESTS - 1) is ResendAction.RESEND
    r = RetryReceipt("id", "g@g.us", 1, "0", 42, participant="1:2@s.whatsapp.net")
    d = decide_resend(r, has_session=True, session_registration_id=7, last_rebuild_at=None, now=0.0,
                      requests_seen=0, is_group=True)
    assert d.drop_session and d.resend_sender_key and d.action is ResendAction.REBUILD_FETCH


@given(count=st.integers(1, 255), has_keys=st.booleans(), has_session=st.booleans(),
       reg=st.one_of(st.none(), st.integers(0, 100)), last=st.one_of(st.none(), st.floats(0, 20_000)),
       seen=st.integers(0, 20), group=st.booleans())
def test_sender_decision_properties(count: int, has_keys: bool, has_session: bool, reg: int | None,
                                    last: float | None, seen: int, group: bool) -> None:
    r = RetryReceipt("id", "1@s.whatsapp.net", count, "0", 42, keys=KEYS if has_keys else None)
    d = decide_resend(r, has_session=has_session, session_registration_id=reg if has_session else None,
                      last_rebuild_at=last, now=20_000.0, requests_seen=seen, is_group=group)
    if seen >= MAX_RETRY_REQUESTS:
        assert d.action is ResendAction.IGNORE
        return
    assert d.action is not ResendAction.IGNORE
    assert d.resend_sender_key == group
    assert d.drop_session == (has_session and reg is not None and reg != 42)
    if has_keys:
        assert d.action is ResendAction.REBUILD_FROM_KEYS
    if d.action is ResendAction.RESEND:  # only on a live session of the same install
        assert has_session and not d.drop_session and not has_keys
    if count == 1 and has_session and not d.drop_session and not has_keys:
        assert d.action is ResendAction.RESEND
