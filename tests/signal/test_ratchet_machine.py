"""Stateful model of a two-party conversation: send, drop, reorder, duplicate, tamper, snapshot/restore.

Invariant: every message delivered for the first time while its chain is still kept decrypts to its
plaintext exactly once; everything else (replays, tampered bytes, messages of discarded chains)
raises a typed wacrypto error and leaves the receiver's store byte-for-byte unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import trio
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from wacrypto.session import account
from wacrypto.address import Address
from wacrypto.session.cipher import PREKEY_TYPE, WHISPER_TYPE, SessionCipher
from wacrypto.errors import DuplicateMessageError, PeerError, WacryptoError
from wacrypto.limits import MAX_RECEIVER_CHAINS
from wacrypto.store.memory import MemoryKeyStore
from wacrypto.wire.messages import PreKeySignalMessage, SignalMessage

NAMES = ("alice", "bob")


@dataclass
class Msg:
    sender: int
    type: int
    body: bytes
    plaintext: bytes
    ratchet_key: bytes
    delivered: bool = False


@dataclass
class Side:
    store: MemoryKeyStore
    cipher: SessionCipher
    address: Address
    seen_keys: list[bytes] = field(default_factory=list)  # receiver chains in creation order
    snapshot: Any = None
    snapshot_model: Any = None
    sent_since_snapshot: bool = False


def _ratchet_key(msg_type: int, body: bytes) -> bytes:
    if msg_type == PREKEY_TYPE:
        return PreKeySignalMessage.from_bytes(body).message.ratchet_key
    return SignalMessage.from_bytes(body).ratchet_key


class Conversation(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.sides: list[Side] = []
        for name in NAMES:
            store = MemoryKeyStore()
            self.sides.append(Side(store, SessionCipher(store), Address(name, 1)))
        self.msgs: list[Msg] = []
        self.counter = 0

        async def setup() -> None:
            for s in self.sides:
                await account.create_account(s.store, prekeys=2)
            bundle = await account.get_bundle(self.sides[1].store)
            await self.sides[0].cipher.process_bundle(self.sides[1].address, bundle)
            # Alice's first receiver chain is Bob's signed prekey
            self.sides[0].seen_keys.append(bundle.signed_prekey)

        trio.run(setup)

    def peer(self, i: int) -> Side:
        return self.sides[1 - i]

    def _run(self, fn: Any, *args: Any) -> Any:
        return trio.run(fn, *args)

    @rule(sender=st.integers(0, 1), size=st.integers(0, 40))
    def send(self, sender: int, size: int) -> None:
        if not self._run(self.sides[sender].cipher.has_session, self.peer(sender).address):
            return  # Bob has no session until he received something
        self.counter += 1
        pt = self.counter.to_bytes(4, "big") + b"p" * size
        s = self.sides[sender]
        m = self._run(s.cipher.encrypt, self.peer(sender).address, pt)
        self.msgs.append(Msg(sender, m.type, m.body, pt, _ratchet_key(m.type, m.body)))
        s.sent_since_snapshot = True

    def _deliverable(self, m: Msg) -> bool:
        recv = self.peer(m.sender)
        if m.ratchet_key in recv.seen_keys:
            return recv.seen_keys.index(m.ratchet_key) >= len(recv.seen_keys) - MAX_RECEIVER_CHAINS
        return True

    @precondition(lambda self: bool(self.msgs))
    @rule(data=st.data())
    def deliver(self, data: st.DataObject) -> None:
        m = data.draw(st.sampled_from(self.msgs))
        recv = self.peer(m.sender)
        before = recv.store.snapshot()
        sender_addr = self.sides[m.sender].address
        if not m.delivered and self._deliverable(m):
            pt = self._run(recv.cipher.decrypt, sender_addr, m.type, m.body)
            assert pt == m.plaintext
            m.delivered = True
            if m.ratchet_key not in recv.seen_keys:
                recv.seen_keys.append(m.ratchet_key)
            return
        try:
            self._run(recv.cipher.decrypt, sender_addr, m.type, m.body)
        except WacryptoError as exc:
            if m.delivered and self._deliverable(m):
                assert isinstance(exc, DuplicateMessageError), exc
            else:
                assert isinstance(exc, PeerError), exc
        else:
            raise AssertionError("a replayed or undeliverable message decrypted")
        assert recv.store.snapshot() == before

    @precondition(lambda self: any(m.type == WHISPER_TYPE for m in self.msgs))
    @rule(data=st.data(), bit=st.integers(0, 7))
    def tamper(self, data: st.DataObject, bit: int) -> None:
        m = data.draw(st.sampled_from([m for m in self.msgs if m.type == WHISPER_TYPE]))
        pos = data.draw(st.integers(0, len(m.body) - 1))
        bad = bytearray(m.body)
        bad[pos] ^= 1 << bit
        recv = self.peer(m.sender)
        before = recv.store.snapshot()
        try:
            self._run(recv.cipher.decrypt, self.sides[m.sender].address, WHISPER_TYPE, bytes(bad))
        except PeerError:
            pass
        else:
            raise AssertionError("tampered message decrypted")
        assert recv.store.snapshot() == before

    @precondition(lambda self: bool(self.msgs))
    @rule(data=st.data())
    def drop(self, data: st.DataObject) -> None:
        m = data.draw(st.sampled_from(self.msgs))
        self.msgs.remove(m)

    @rule(i=st.integers(0, 1))
    def take_snapshot(self, i: int) -> None:
        s = self.sides[i]
        s.snapshot = s.store.snapshot()
        s.snapshot_model = ([m.delivered for m in self.msgs], list(self.msgs), list(s.seen_keys))
        s.sent_since_snapshot = False

    @rule(i=st.integers(0, 1))
    def restore_snapshot(self, i: int) -> None:
        """Roll a receiver back (e.g. restore from backup) when it has not sent since the snapshot:
        the messages it received since then must decrypt again."""
        s = self.sides[i]
        if s.snapshot is None or s.sent_since_snapshot:
            return
        delivered, msgs_then, seen = s.snapshot_model
        was = {id(m): d for m, d in zip(msgs_then, delivered)}
        for m in self.msgs:
            if m.sender != i and id(m) in was:
                m.delivered = was[id(m)]
            elif m.sender != i and id(m) not in was:
                m.delivered = False
        s.seen_keys = list(seen)
        s.store.restore(s.snapshot)

    @invariant()
    def stores_hold_sessions(self) -> None:
        assert self._run(self.sides[0].cipher.has_session, self.sides[1].address)


TestConversation = Conversation.TestCase
TestConversation.settings = settings(
    max_examples=int(__import__('os').environ.get('WACRYPTO_EXAMPLES', '60')), stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
