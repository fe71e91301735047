"""Retry receipts: how a device that could not decrypt a message asks for it again, and how the
sender decides what to do. Pure: stanzas in and out, counts and times as parameters.

Receiver (:func:`next_retry`): the first failure sends ``count=1`` with the registration id; from
``count=2`` on the receipt also carries a fresh key bundle (``<keys>``) so the sender can build a new
session at once; after :data:`MAX_RETRY_COUNT` the receiver gives up (the count is kept by the
caller across restarts).

Sender (:func:`decide_resend`): ignore a flood (more than :data:`MAX_RETRY_REQUESTS` requests for
one message from one device); a different registration id means the peer reinstalled: drop the
session; keys in the receipt: rebuild from them; no session: fetch a bundle and rebuild; a second or
later retry when the last rebuild for that address was over an hour ago: rebuild; otherwise re-encrypt
the stored plaintext on the current session. A group message is re-sent with a fresh sender key
distribution message.

Stanza layout (facts from whatsmeow and Baileys, see docs/protocol-notes.md section 4)::

    <receipt id=… type="retry" to=… [participant=…] [recipient=…]>
      <retry count="N" id=… t=… v="1"/>
      <registration>4-byte big-endian registration id</registration>
      <keys>                                   (count >= 2)
        <type>05</type> <identity>32 bytes</identity>
        <key><id>3 bytes</id><value>32 bytes</value></key>
        <skey><id>3 bytes</id><value>32 bytes</value><signature>64 bytes</signature></skey>
        <device-identity>ADV bytes</device-identity>
      </keys>
    </receipt>
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import final

from wacrypto.errors import InvalidArgumentError, InvalidMessageError
from wacrypto.limits import (
    MAX_ADV_MESSAGE_LEN,
    MAX_PREKEY_ID,
    MAX_REGISTRATION_ID,
    MAX_RETRY_COUNT,
    MAX_RETRY_COUNT_SEEN,
    MAX_RETRY_REQUESTS,
    RETRY_REBUILD_INTERVAL,
    SIGNATURE_LEN,
)
from wacrypto.signal.bundle import PreKeyBundle
from wacrypto.whatsapp.stanzas import (
    KEY_BUNDLE_TYPE,
    SignedPreKey,
    child,
    child_bytes,
    child_uint,
    content_bytes,
    parse_prekey_node,
    prekey_node,
)
from wacrypto.wire.binary import Node

__all__ = ["ResendAction", "ResendDecision", "RetryKeys", "RetryReceipt", "decide_resend", "next_retry"]

@final
@dataclass(frozen=True, slots=True)
class RetryKeys:
    """The key bundle a retry receipt carries from ``count=2`` on (raw 32-byte keys, as on the wire)."""

    identity: bytes
    signed_prekey_id: int
    signed_prekey: bytes
    signed_prekey_signature: bytes
    prekey_id: int | None = None
    prekey: bytes | None = None
    device_identity: bytes | None = None  # ADV SignedDeviceIdentity of a companion device

    def __post_init__(self) -> None:
        for name in ("identity", "signed_prekey") + (("prekey",) if self.prekey is not None else ()):
            v = getattr(self, name)
            if not isinstance(v, bytes) or len(v) != 32:
                raise InvalidMessageError(f"retry keys: {name} must be 32 bytes")
        if len(self.signed_prekey_signature) != SIGNATURE_LEN:
            raise InvalidMessageError(f"retry keys: the signature must be {SIGNATURE_LEN} bytes")
        if (self.prekey is None) != (self.prekey_id is None):
            raise InvalidMessageError("retry keys: prekey id and prekey must come together")
        for v in (self.signed_prekey_id, self.prekey_id):
            if v is not None and not 0 <= v <= MAX_PREKEY_ID:
                raise InvalidMessageError("retry keys: a prekey id must fit in 3 bytes")
        if self.device_identity is not None and len(self.device_identity) > MAX_ADV_MESSAGE_LEN:
            raise InvalidMessageError("retry keys: device identity too long")

    def bundle(self, registration_id: int, device_id: int) -> PreKeyBundle:
        """The bundle to build a new session from (its signed-prekey signature is checked when used)."""
        djb = KEY_BUNDLE_TYPE
        return PreKeyBundle(
            registration_id=registration_id, device_id=device_id, identity_key=djb + self.identity,
            signed_prekey_id=self.signed_prekey_id, signed_prekey=djb + self.signed_prekey,
            signed_prekey_signature=self.signed_prekey_signature, prekey_id=self.prekey_id,
            prekey=None if self.prekey is None else djb + self.prekey,
        )

    def to_node(self) -> Node:
        kids = [Node("type", {}, KEY_BUNDLE_TYPE), Node("identity", {}, self.identity)]
        if self.prekey is not None and self.prekey_id is not None:
            kids.append(prekey_node(self.prekey_id, self.prekey))
        kids.append(SignedPreKey(self.signed_prekey_id, self.signed_prekey, self.signed_prekey_signature).to_node())
        if self.device_identity is not None:
            kids.append(Node("device-identity", {}, self.device_identity))
        return Node("keys", {}, tuple(kids))

    @classmethod
    def from_node(cls, keys: Node) -> RetryKeys:
        if child_bytes(keys, "type", 1) != KEY_BUNDLE_TYPE:
            raise InvalidMessageError("retry keys: unknown key type")
        skey = SignedPreKey.from_node(child(keys, "skey"))
        pk = keys.child("key")
        pre = None if pk is None else parse_prekey_node(pk)
        dev = keys.child("device-identity")
        return cls(
            identity=child_bytes(keys, "identity", 32),
            signed_prekey_id=skey.key_id, signed_prekey=skey.public, signed_prekey_signature=skey.signature,
            prekey_id=None if pre is None else pre[0], prekey=None if pre is None else pre[1],
            device_identity=None if dev is None else content_bytes(dev, max_len=MAX_ADV_MESSAGE_LEN),
        )


@final
@dataclass(frozen=True, slots=True)
class RetryReceipt:
    """A ``receipt type="retry"`` asking the sender of ``message_id`` to send it again."""

    message_id: str
    to: str  # the chat the failed message came from (user or group JID)
    count: int
    timestamp: str  # the failed message's ``t``
    registration_id: int
    participant: str | None = None  # the sending device, for a group message
    recipient: str | None = None
    keys: RetryKeys | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_RETRY_COUNT_SEEN:
            raise InvalidArgumentError(f"retry count must be 1..{MAX_RETRY_COUNT_SEEN}")
        if not 0 <= self.registration_id <= MAX_REGISTRATION_ID:
            raise InvalidArgumentError("registration id out of range")

    def to_node(self) -> Node:
        attrs = {"id": self.message_id, "type": "retry", "to": self.to}
        if self.participant is not None:
            attrs["participant"] = self.participant
        if self.recipient is not None:
            attrs["recipient"] = self.recipient
        kids = [
            Node("retry", {"count": str(self.count), "id": self.message_id, "t": self.timestamp, "v": "1"}),
            Node("registration", {}, self.registration_id.to_bytes(4, "big")),
        ]
        if self.keys is not None:
            kids.append(self.keys.to_node())
        return Node("receipt", attrs, tuple(kids))

    @classmethod
    def from_node(cls, node: Node, *, sender: str | None = None) -> RetryReceipt:
        """Parse a received retry receipt (``sender`` replaces ``to``: received receipts carry ``from``)."""
        if node.tag != "receipt" or node.attrs.get("type") != "retry":
            raise InvalidMessageError("not a retry receipt")
        retry = child(node, "retry")
        try:
            count = int(retry.attrs.get("count", ""))
        except ValueError:
            raise InvalidMessageError("retry receipt: count is not a number") from None
        if not 1 <= count <= MAX_RETRY_COUNT_SEEN:
            raise InvalidMessageError("retry receipt: count out of range")
        mid = node.attrs.get("id") or retry.attrs.get("id")
        chat = sender or node.attrs.get("from") or node.attrs.get("to")
        if not mid or not chat:
            raise InvalidMessageError("retry receipt: id or sender missing")
        keys = node.child("keys")
        return cls(
            message_id=mid, to=chat, count=count, timestamp=retry.attrs.get("t", ""),
            registration_id=child_uint(node, "registration", 4),
            participant=node.attrs.get("participant"), recipient=node.attrs.get("recipient"),
            keys=None if keys is None else RetryKeys.from_node(keys),
        )


# --------------------------------------------------------------------------- receiver
def next_retry(
    previous_count: int, *, message_id: str, chat: str, timestamp: str, registration_id: int,
    keys: RetryKeys | None, participant: str | None = None, recipient: str | None = None,
) -> RetryReceipt | None:
    """The next retry receipt after ``previous_count`` sent ones, or None: give up (the limit is reached).

    ``keys`` (a fresh one-time prekey and the current signed prekey) are included from the second
    retry on; pass them whenever available.
    """
    count = previous_count + 1
    if previous_count < 0:
        raise InvalidArgumentError("previous retry count cannot be negative")
    if count > MAX_RETRY_COUNT:
        return None
    return RetryReceipt(message_id, chat, count, timestamp, registration_id, participant, recipient,
                        keys if count >= 2 else None)


# --------------------------------------------------------------------------- sender
class ResendAction(enum.Enum):
    IGNORE = "ignore"  # too many requests for this message: do nothing
    RESEND = "resend"  # re-encrypt the stored plaintext on the current session
    REBUILD_FROM_KEYS = "rebuild-from-keys"  # new session from the receipt's bundle, then resend
    REBUILD_FETCH = "rebuild-fetch"  # fetch the device's bundle, new session, then resend


@final
@dataclass(frozen=True, slots=True)
class ResendDecision:
    action: ResendAction
    drop_session: bool = False  # the registration id changed: the old session is useless
    resend_sender_key: bool = False  # group: prepend a fresh sender key distribution message


def decide_resend(
    receipt: RetryReceipt, *, has_session: bool, session_registration_id: int | None,
    last_rebuild_at: float | None, now: float, requests_seen: int, is_group: bool,
) -> ResendDecision:
    """What the sender of ``receipt.message_id`` does with this retry receipt.

    ``requests_seen`` counts earlier retry receipts for this (device, message), ``last_rebuild_at``
    is when we last rebuilt the session with that address (None: never).
    """
    if requests_seen >= MAX_RETRY_REQUESTS:
        return ResendDecision(ResendAction.IGNORE)
    drop = has_session and session_registration_id is not None and session_registration_id != receipt.registration_id
    if receipt.keys is not None:
        action = ResendAction.REBUILD_FROM_KEYS
    elif not has_session or drop:
        action = ResendAction.REBUILD_FETCH
    elif receipt.count >= 2 and (last_rebuild_at is None or now - last_rebuild_at > RETRY_REBUILD_INTERVAL):
        action = ResendAction.REBUILD_FETCH
    else:
        action = ResendAction.RESEND
    return ResendDecision(action, drop_session=drop, resend_sender_key=is_group)
