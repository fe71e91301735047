"""Validated wire message types. Raw protobuf never leaves this package."""

from wacrypto.wire.messages import (
    PreKeySignalMessage,
    SenderKeyDistributionMessage,
    SenderKeyMessage,
    SignalMessage,
)

__all__ = [
    "PreKeySignalMessage",
    "SenderKeyDistributionMessage",
    "SenderKeyMessage",
    "SignalMessage",
]
