"""The relay Mailbox against a plain model (hypothesis state machine): what is waiting, in which
order, and the per-sender and strangers' counts the relay's limits are checked against."""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from wacrypto.chatd.server import Mailbox
from wacrypto.transport.messages import Message

SENDERS = [bytes([i]) * 32 for i in range(3)]
TTL = 10.0


class MailboxModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.box = Mailbox()
        self.model: dict[str, tuple[bytes, bool, float]] = {}  # id -> sender, stranger, expires
        self.now = 0.0
        self.n = 0

    @rule(sender=st.sampled_from(SENDERS), stranger=st.booleans())
    def add(self, sender: bytes, stranger: bool) -> None:
        did = f"d{self.n}"
        self.n += 1
        self.box.add(did, Message(did, b"x"), sender, stranger=stranger, expires=self.now + TTL)
        self.model[did] = (sender, stranger, self.now + TTL)

    @rule(k=st.integers(min_value=0, max_value=40))
    def remove(self, k: int) -> None:
        did = f"d{k}"
        assert self.box.remove(did) == (did in self.model)
        self.model.pop(did, None)

    @rule(dt=st.floats(min_value=0, max_value=8))
    def tick_and_expire(self, dt: float) -> None:
        self.now += dt
        gone = self.box.expire(self.now)
        expired = [d for d, (_, _, t) in self.model.items() if t <= self.now]
        assert gone == len(expired)
        for d in expired:
            del self.model[d]

    @invariant()
    def agrees(self) -> None:
        assert [d for d, _ in self.box.messages()] == list(self.model)  # arrival order
        assert len(self.box) == len(self.model) and self.box.ids() == set(self.model)
        for s in SENDERS:
            assert self.box.count_from(s) == sum(1 for snd, _, _ in self.model.values() if snd == s)
        assert self.box.from_strangers == sum(1 for _, st_, _ in self.model.values() if st_)


TestMailbox = MailboxModel.TestCase
