"""Stateful property test of group delivery through the store.

A sender and a receiver, each with its own memory store. Hypothesis sends, drops (never delivers),
reorders, duplicates and tampers with messages, forges signatures, sends bursts that jump far
ahead, rotates the sender key and replays distribution messages. An exact model predicts every
outcome. Invariants: a message delivered for the first time within the limits decrypts exactly
once to its plaintext; everything else raises the predicted typed error and leaves every stored
byte of the receiver unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import trio
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from wacrypto.address import Address
from wacrypto.errors import (
    DuplicateMessageError,
    InvalidMessageError,
    InvalidSignatureError,
    LegacyMessageError,
    NoSenderKeyError,
    PeerError,
    TooFarAheadError,
)
from wacrypto.session.groups import GroupCipher
from wacrypto.limits import MAX_SENDER_KEY_STATES
from wacrypto.primitives.xeddsa import xeddsa_sign
from wacrypto.signal.senderkeys import SenderKeyRecord
from wacrypto.store.memory import MemoryKeyStore
from wacrypto.wire.messages import SenderKeyDistributionMessage, SenderKeyMessage

G = "group"
SENDER = Address("alice", 1)
JUMP = 6  # receiver's forward-jump limit: small so bursts cross it
T = TypeVar("T")


def run(fn: Callable[[], Awaitable[T]]) -> T:
    return trio.run(fn)


@dataclass
class Sent:
    key_id: int
    iteration: int
    body: bytes
    plaintext: bytes


@dataclass
class KeyModel:
    next: int
    stored: set[int] = field(default_factory=set)


class GroupDelivery(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.sender = GroupCipher(MemoryKeyStore())
        self.rstore = MemoryKeyStore()
        self.receiver = GroupCipher(self.rstore, max_forward_jump=JUMP)
        self.sent: list[Sent] = []
        self.skdms: list[bytes] = []
        self.keys: dict[int, KeyModel] = {}  # receiver's model
        self.order: list[int] = []  # key ids in the receiver, newest first
        self.decrypted: set[int] = set()  # indexes into self.sent that decrypted
        self.counter = 0

    # ------------------------------------------------------------------ helpers
    def _deliver_skdm_model(self, skdm: SenderKeyDistributionMessage) -> None:
        if skdm.key_id in self.keys:
            return  # replay of a known key: nothing changes
        self.keys[skdm.key_id] = KeyModel(skdm.iteration)
        self.order.insert(0, skdm.key_id)
        while len(self.order) > MAX_SENDER_KEY_STATES:
            del self.keys[self.order.pop()]

    def _predict(self, m: Sent) -> type[Exception] | None:
        km = self.keys.get(m.key_id)
        if km is None:
            return NoSenderKeyError
        if m.iteration < km.next:
            return None if m.iteration in km.stored else DuplicateMessageError
        if m.iteration - km.next > JUMP:
            return TooFarAheadError
        return None

    def _apply(self, m: Sent) -> None:
        km = self.keys[m.key_id]
        if m.iteration < km.next:
            km.stored.discard(m.iteration)
        else:
            km.stored.update(range(km.next, m.iteration))
            km.next = m.iteration + 1

    def _expect_rejected(self, body: bytes, allowed: tuple[type[Exception], ...]) -> None:
        before = self.rstore.snapshot()

        async def go() -> None:
            await self.receiver.decrypt(G, SENDER, body)

        try:
            run(go)
        except PeerError as exc:
            assert isinstance(exc, allowed), f"{type(exc).__name__} not in {allowed}"
        except NoSenderKeyError as exc:
            assert NoSenderKeyError in allowed, repr(exc)
        else:
            raise AssertionError("rejected message decrypted")
        assert self.rstore.snapshot() == before

    async def _encrypt(self) -> Sent:
        self.counter += 1
        pt = b"m%d:" % self.counter + os.urandom(self.counter % 20)
        body = await self.sender.encrypt(G, SENDER, pt)
        m = SenderKeyMessage.from_bytes(body)
        return Sent(m.key_id, m.iteration, body, pt)

    # ------------------------------------------------------------------ rules
    @initialize()
    def setup(self) -> None:
        async def go() -> bytes:
            return await self.sender.create_distribution(G, SENDER)

        skdm = run(go)
        self.skdms.append(skdm)
        self.deliver_skdm_bytes(skdm)

    def deliver_skdm_bytes(self, skdm: bytes) -> None:
        async def go() -> None:
            await self.receiver.process_distribution(G, SENDER, skdm)

        run(go)
        self._deliver_skdm_model(SenderKeyDistributionMessage.from_bytes(skdm))

    @rule()
    def send(self) -> None:
        self.sent.append(run(self._encrypt))

    @rule(k=st.integers(min_value=2, max_value=JUMP + 4))
    def burst(self, k: int) -> None:
        """k messages; all but the last are dropped (a far jump for the receiver when k is large)."""

        async def go() -> Sent:
            last = None
            for _ in range(k):
                last = await self._encrypt()
            assert last is not None
            return last

        self.sent.append(run(go))

    @precondition(lambda self: self.sent)
    @rule(data=st.data())
    def deliver(self, data: st.DataObject) -> None:
        """Deliver any sent message: out of order, or again (a duplicate)."""
        i = data.draw(st.integers(min_value=0, max_value=len(self.sent) - 1))
        m = self.sent[i]
        expected = self._predict(m)
        event(f"deliver -> {expected.__name__ if expected else 'decrypted'}")
        if expected is None:

            async def go() -> bytes:
                return await self.receiver.decrypt(G, SENDER, m.body)

            assert run(go) == m.plaintext
            assert i not in self.decrypted, "a message decrypted twice"
            self.decrypted.add(i)
            self._apply(m)
        else:
            self._expect_rejected(m.body, (expected,))

    @precondition(lambda self: self.sent)
    @rule(data=st.data(), bit=st.integers(min_value=0, max_value=7))
    def tamper(self, data: st.DataObject, bit: int) -> None:
        m = self.sent[data.draw(st.integers(min_value=0, max_value=len(self.sent) - 1))]
        pos = data.draw(st.integers(min_value=0, max_value=1 << 16)) % len(m.body)  # lengths vary with key ids
        bad = bytearray(m.body)
        bad[pos] ^= 1 << bit
        self._expect_rejected(
            bytes(bad), (InvalidSignatureError, InvalidMessageError, LegacyMessageError, NoSenderKeyError)
        )

    @precondition(lambda self: self.sent)
    @rule(data=st.data())
    def forge(self, data: st.DataObject) -> None:
        """Re-sign a genuine message body with a key that is not the sender's."""
        m = self.sent[data.draw(st.integers(min_value=0, max_value=len(self.sent) - 1))]
        signed = m.body[:-64]
        forged = signed + xeddsa_sign(os.urandom(32), signed, os.urandom(64))
        self._expect_rejected(forged, (InvalidSignatureError, NoSenderKeyError))

    @precondition(lambda self: self.sent)
    @rule(data=st.data(), extra=st.integers(min_value=1, max_value=200))
    def far_future(self, data: st.DataObject, extra: int) -> None:
        """A genuine-looking message whose iteration field was pushed far ahead (signature breaks)."""
        m = self.sent[data.draw(st.integers(min_value=0, max_value=len(self.sent) - 1))]
        parsed = SenderKeyMessage.from_bytes(m.body)
        body = SenderKeyMessage.encode_body(parsed.key_id, parsed.iteration + JUMP + extra, parsed.ciphertext)
        self._expect_rejected(body + parsed.signature, (InvalidSignatureError, NoSenderKeyError))

    @rule(deliver=st.booleans())
    def rotate(self, deliver: bool) -> None:
        async def go() -> bytes:
            return await self.sender.rotate(G, SENDER)

        skdm = run(go)
        self.skdms.append(skdm)
        if deliver:
            self.deliver_skdm_bytes(skdm)

    @rule(data=st.data())
    def replay_skdm(self, data: st.DataObject) -> None:
        """Deliver any SKDM again (or late): a known key never rewinds."""
        skdm = self.skdms[data.draw(st.integers(min_value=0, max_value=len(self.skdms) - 1))]
        before = self.rstore.snapshot()
        known = SenderKeyDistributionMessage.from_bytes(skdm).key_id in self.keys
        self.deliver_skdm_bytes(skdm)
        if known:
            assert self.rstore.snapshot() == before

    @invariant()
    def receiver_keys_match_model(self) -> None:
        async def go() -> bytes | None:
            async with self.rstore.transaction() as tx:
                return await tx.load_sender_key(G, SENDER)

        raw = run(go)
        if raw is None:
            assert not self.order
            return
        rec = SenderKeyRecord.from_bytes(raw)
        assert rec.key_ids() == self.order
        for st_ in rec._pb.sender_key_states:
            km = self.keys[st_.sender_key_id]
            assert st_.sender_chain_key.iteration == km.next
            assert {mk.iteration for mk in st_.sender_message_keys} == km.stored


GroupDelivery.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestGroupDelivery = GroupDelivery.TestCase
