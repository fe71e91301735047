"""WhatsApp stanzas as typed values: builders for what we send, strict parsers for what we receive.

Each type turns into a :class:`~wacrypto.wire.binary.Node` with ``to_node()`` and back with
``from_node()``; a parser raises :class:`~wacrypto.errors.InvalidMessageError` (a PeerError) on
anything malformed, never another error. Layouts are protocol facts (docs/protocol-notes.md
section 4, read from whatsmeow and Baileys):

- prekeys: ``<iq xmlns="encrypt" type="set">`` with ``registration``, ``type`` (05), ``identity``,
  ``list`` of ``<key><id/><value/></key>`` and ``<skey><id/><value/><signature/></skey>``; the
  count query ``<iq xmlns="encrypt" type="get"><count/></iq>`` answered by ``<count value="N"/>``;
  bundle fetch ``<iq xmlns="encrypt" type="get"><key><user jid/>...</key></iq>`` answered by
  ``<list><user jid><registration/><identity/><skey/>[<key/>][<device-identity/>]</user>...</list>``;
- messages: ``<message id to type><participants><to jid><enc v type>…</enc></to>…</participants>
  [<device-identity/>]</message>`` out, ``<message id from t type [participant]><enc/>…</message>`` in;
- ``<ack id to class [participant] [recipient] [type] [error]/>``; receipts
  ``<receipt id to [type] [participant] [t]>[<list><item id/>…</list>]</receipt>``;
- notifications: ``encrypt`` (``<count value/>`` from the server, ``<identity/>`` from a user) and
  ``devices`` (``<add>``/``<remove>`` of ``<device jid [key-index]/>`` and a ``<key-index-list>``).

Keys are raw 32-byte Curve25519 u coordinates on the wire, as WhatsApp sends them.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, final

from wacrypto.errors import InvalidArgumentError, InvalidMessageError
from wacrypto.limits import (
    KEY_TYPE_DJB,
    MAX_ADV_MESSAGE_LEN,
    MAX_PREKEY_ID,
    MAX_STANZA_LIST_LEN,
    SIGNATURE_LEN,
)
from wacrypto.signal.bundle import PreKeyBundle
from wacrypto.whatsapp.jid import Jid
from wacrypto.wire.binary import Node

__all__ = [
    "Ack", "DeviceBundle", "DevicesNotification", "Enc", "EncryptCountNotification", "IdentityChangeNotification",
    "IncomingMessage", "NackCode", "OutgoingMessage", "PrekeyUpload", "Receipt", "SignedPreKey", "ack_for",
    "bundle_query", "bundle_result", "child", "child_bytes", "child_uint", "parse_bundle_result",
    "parse_notification", "parse_prekey_count", "prekey_count_query", "prekey_count_result",
]

SERVER: Final = "s.whatsapp.net"
KEY_BUNDLE_TYPE: Final = bytes((KEY_TYPE_DJB,))
EncType = Literal["pkmsg", "msg", "skmsg"]
_ENC_TYPES: Final = ("pkmsg", "msg", "skmsg")


# --------------------------------------------------------------------------- node helpers
def child(node: Node, tag: str) -> Node:
    """The first ``<tag>`` child; InvalidMessageError if there is none."""
    c = node.child(tag)
    if c is None:
        raise InvalidMessageError(f"<{node.tag}> has no <{tag}>")
    return c


def content_bytes(node: Node, length: int | None = None, *, max_len: int | None = None) -> bytes:
    if not isinstance(node.content, bytes):
        raise InvalidMessageError(f"<{node.tag}> must hold bytes")
    if length is not None and len(node.content) != length:
        raise InvalidMessageError(f"<{node.tag}> must be {length} bytes, not {len(node.content)}")
    if max_len is not None and len(node.content) > max_len:
        raise InvalidMessageError(f"<{node.tag}> is longer than {max_len} bytes")
    return node.content


def child_bytes(node: Node, tag: str, length: int | None = None) -> bytes:
    return content_bytes(child(node, tag), length)


def child_uint(node: Node, tag: str, nbytes: int) -> int:
    """A big-endian unsigned integer of exactly ``nbytes`` bytes (registration ids: 4, key ids: 3)."""
    return int.from_bytes(child_bytes(node, tag, nbytes), "big")


def attr(node: Node, key: str) -> str:
    v = node.attrs.get(key)
    if not v:
        raise InvalidMessageError(f"<{node.tag}> has no {key}")
    return v


def _uint_attr(node: Node, key: str, limit: int) -> int:
    v = attr(node, key)
    if not v.isdigit() or len(v) > 20 or int(v) > limit:
        raise InvalidMessageError(f"<{node.tag}> {key} is not a number up to {limit}")
    return int(v)


def _jid(text: str) -> Jid:
    return Jid.parse(text)


def _key32(v: bytes, what: str) -> bytes:
    if not isinstance(v, bytes) or len(v) != 32:
        raise InvalidArgumentError(f"{what} must be a raw 32-byte key")
    return v


# --------------------------------------------------------------------------- keys
@final
@dataclass(frozen=True, slots=True)
class SignedPreKey:
    key_id: int
    public: bytes  # 32 bytes
    signature: bytes  # 64 bytes

    def to_node(self) -> Node:
        return Node("skey", {}, (Node("id", {}, self.key_id.to_bytes(3, "big")), Node("value", {}, self.public),
                                 Node("signature", {}, self.signature)))

    @classmethod
    def from_node(cls, node: Node) -> SignedPreKey:
        return cls(child_uint(node, "id", 3), child_bytes(node, "value", 32), child_bytes(node, "signature", SIGNATURE_LEN))


def prekey_node(key_id: int, public: bytes) -> Node:
    if not 0 <= key_id <= MAX_PREKEY_ID:
        raise InvalidArgumentError("prekey id must fit in 3 bytes")
    return Node("key", {}, (Node("id", {}, key_id.to_bytes(3, "big")), Node("value", {}, _key32(public, "prekey"))))


def parse_prekey_node(node: Node) -> tuple[int, bytes]:
    return child_uint(node, "id", 3), child_bytes(node, "value", 32)


# --------------------------------------------------------------------------- prekey iqs
@final
@dataclass(frozen=True, slots=True)
class PrekeyUpload:
    """A device's upload of one-time prekeys and its current signed prekey."""

    registration_id: int
    identity: bytes  # 32 bytes
    prekeys: tuple[tuple[int, bytes], ...]
    signed_prekey: SignedPreKey

    def to_node(self, iq_id: str) -> Node:
        if len(self.prekeys) > MAX_STANZA_LIST_LEN:
            raise InvalidArgumentError("too many prekeys in one upload")
        return Node("iq", {"id": iq_id, "xmlns": "encrypt", "type": "set", "to": SERVER}, (
            Node("registration", {}, self.registration_id.to_bytes(4, "big")),
            Node("type", {}, KEY_BUNDLE_TYPE),
            Node("identity", {}, _key32(self.identity, "identity")),
            Node("list", {}, tuple(prekey_node(i, k) for i, k in self.prekeys)),
            self.signed_prekey.to_node(),
        ))

    @classmethod
    def from_node(cls, node: Node) -> PrekeyUpload:
        if node.tag != "iq" or node.attrs.get("xmlns") != "encrypt" or node.attrs.get("type") != "set":
            raise InvalidMessageError("not a prekey upload")
        if child_bytes(node, "type", 1) != KEY_BUNDLE_TYPE:
            raise InvalidMessageError("prekey upload: unknown key type")
        lst = child(node, "list")
        if not isinstance(lst.content, tuple):
            raise InvalidMessageError("prekey upload: <list> must hold keys")
        keys = tuple(parse_prekey_node(k) for k in lst.children)
        if any(k.tag != "key" for k in lst.children) or len({i for i, _ in keys}) != len(keys):
            raise InvalidMessageError("prekey upload: the list holds other nodes or repeated ids")
        return cls(child_uint(node, "registration", 4), child_bytes(node, "identity", 32), keys,
                   SignedPreKey.from_node(child(node, "skey")))


def prekey_count_query(iq_id: str) -> Node:
    return Node("iq", {"id": iq_id, "xmlns": "encrypt", "type": "get", "to": SERVER}, (Node("count"),))


def prekey_count_result(iq_id: str, to: str, count: int) -> Node:
    return Node("iq", {"id": iq_id, "type": "result", "from": SERVER, "to": to}, (Node("count", {"value": str(count)}),))


def parse_prekey_count(result: Node) -> int:
    return _uint_attr(child(result, "count"), "value", 0xFFFFFFFF)


def bundle_query(iq_id: str, devices: Sequence[Jid]) -> Node:
    if not devices or len(devices) > MAX_STANZA_LIST_LEN:
        raise InvalidArgumentError("ask for 1..65535 devices' bundles at once")
    return Node("iq", {"id": iq_id, "xmlns": "encrypt", "type": "get", "to": SERVER},
                (Node("key", {}, tuple(Node("user", {"jid": str(d)}) for d in devices)),))


@final
@dataclass(frozen=True, slots=True)
class DeviceBundle:
    """One device's bundle as the server hands it out (``device_identity``: ADV bytes of a companion)."""

    jid: Jid
    bundle: PreKeyBundle
    device_identity: bytes | None = None

    def to_node(self) -> Node:
        b = self.bundle
        kids = [Node("registration", {}, b.registration_id.to_bytes(4, "big")),
                Node("identity", {}, b.identity_key[1:]),
                SignedPreKey(b.signed_prekey_id, b.signed_prekey[1:], b.signed_prekey_signature).to_node()]
        if b.prekey_id is not None and b.prekey is not None:
            kids.append(prekey_node(b.prekey_id, b.prekey[1:]))
        if self.device_identity is not None:
            kids.append(Node("device-identity", {}, self.device_identity))
        return Node("user", {"jid": str(self.jid)}, tuple(kids))

    @classmethod
    def from_node(cls, node: Node) -> DeviceBundle:
        jid = _jid(attr(node, "jid"))
        skey = SignedPreKey.from_node(child(node, "skey"))
        pk = node.child("key")
        pre = None if pk is None else parse_prekey_node(pk)
        dev = node.child("device-identity")
        djb = KEY_BUNDLE_TYPE
        bundle = PreKeyBundle(
            registration_id=child_uint(node, "registration", 4), device_id=jid.device,
            identity_key=djb + child_bytes(node, "identity", 32), signed_prekey_id=skey.key_id,
            signed_prekey=djb + skey.public, signed_prekey_signature=skey.signature,
            prekey_id=None if pre is None else pre[0], prekey=None if pre is None else djb + pre[1],
        )
        return cls(jid, bundle, None if dev is None else content_bytes(dev, max_len=MAX_ADV_MESSAGE_LEN))


def bundle_result(iq_id: str, to: str, bundles: Sequence[DeviceBundle]) -> Node:
    return Node("iq", {"id": iq_id, "type": "result", "from": SERVER, "to": to},
                (Node("list", {}, tuple(b.to_node() for b in bundles)),))


def parse_bundle_result(result: Node) -> list[DeviceBundle]:
    """The bundles in a fetch result (a ``<user>`` holding ``<error>`` is left out: that device has none)."""
    return [DeviceBundle.from_node(u) for u in child(result, "list").children_named("user") if u.child("error") is None]


# --------------------------------------------------------------------------- messages
@final
@dataclass(frozen=True, slots=True)
class Enc:
    """One ciphertext: ``pkmsg`` (PreKeySignalMessage), ``msg`` (SignalMessage), ``skmsg`` (SenderKeyMessage).

    ``v=2`` plaintexts are padded (see :mod:`wacrypto.whatsapp.padding`); ``count`` marks a resend
    answering a retry receipt.
    """

    type: EncType
    ciphertext: bytes
    v: int = 2
    count: int | None = None

    def __post_init__(self) -> None:
        if self.type not in _ENC_TYPES or self.v not in (2, 3) or not isinstance(self.ciphertext, bytes):
            raise InvalidArgumentError("enc: type must be pkmsg/msg/skmsg, v 2 or 3, ciphertext bytes")

    def to_node(self) -> Node:
        attrs = {"v": str(self.v), "type": self.type}
        if self.count is not None:
            attrs["count"] = str(self.count)
        return Node("enc", attrs, self.ciphertext)

    @classmethod
    def from_node(cls, node: Node) -> Enc:
        t, v = node.attrs.get("type"), node.attrs.get("v")
        if t not in _ENC_TYPES or v not in ("2", "3"):
            raise InvalidMessageError("enc: unknown type or version")
        count = node.attrs.get("count")
        if count is not None and (not count.isdigit() or len(count) > 3):
            raise InvalidMessageError("enc: count is not a small number")
        return cls(t, content_bytes(node), int(v), None if count is None else int(count))  # type: ignore[arg-type]


@final
@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """What a sender hands the server: one ``<enc>`` per recipient device (``None``: a single-device 1:1)."""

    id: str
    to: str
    encs: tuple[tuple[Jid | None, Enc], ...]
    type: str = "text"
    device_identity: bytes | None = None  # our ADV identity, sent with pkmsg from a companion device
    phash: str | None = None

    def to_node(self) -> Node:
        attrs = {"id": self.id, "to": self.to, "type": self.type}
        if self.phash is not None:
            attrs["phash"] = self.phash
        kids: list[Node] = []
        if len(self.encs) == 1 and self.encs[0][0] is None:
            kids.append(self.encs[0][1].to_node())
        else:
            if any(j is None for j, _ in self.encs):
                raise InvalidArgumentError("with several encs every one needs its device")
            kids.append(Node("participants", {}, tuple(Node("to", {"jid": str(j)}, (e.to_node(),)) for j, e in self.encs)))
        if self.device_identity is not None:
            kids.append(Node("device-identity", {}, self.device_identity))
        return Node("message", attrs, tuple(kids))

    @classmethod
    def from_node(cls, node: Node) -> OutgoingMessage:
        """The server's view of a sent message (chatd parses what clients send)."""
        if node.tag != "message":
            raise InvalidMessageError("not a message stanza")
        parts = node.child("participants")
        encs: list[tuple[Jid | None, Enc]]
        if parts is not None:
            encs = [(_jid(attr(t, "jid")), Enc.from_node(child(t, "enc"))) for t in parts.children_named("to")]
        else:
            encs = [(None, Enc.from_node(e)) for e in node.children_named("enc")]
        if not encs:
            raise InvalidMessageError("message without ciphertext")
        dev = node.child("device-identity")
        return cls(attr(node, "id"), attr(node, "to"), tuple(encs), node.attrs.get("type", "text"),
                   None if dev is None else content_bytes(dev, max_len=MAX_ADV_MESSAGE_LEN), node.attrs.get("phash"))


@final
@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """A message as the server delivers it to one device."""

    id: str
    sender: str  # ``from``: the user (1:1) or the group
    timestamp: int
    encs: tuple[Enc, ...]
    type: str = "text"
    participant: str | None = None  # the sending device in a group
    recipient: str | None = None  # set on our own other devices' sent messages
    device_identity: bytes | None = None

    def to_node(self) -> Node:
        attrs = {"id": self.id, "from": self.sender, "t": str(self.timestamp), "type": self.type}
        if self.participant is not None:
            attrs["participant"] = self.participant
        if self.recipient is not None:
            attrs["recipient"] = self.recipient
        kids = [e.to_node() for e in self.encs]
        if self.device_identity is not None:
            kids.append(Node("device-identity", {}, self.device_identity))
        return Node("message", attrs, tuple(kids))

    @classmethod
    def from_node(cls, node: Node) -> IncomingMessage:
        if node.tag != "message":
            raise InvalidMessageError("not a message stanza")
        encs = tuple(Enc.from_node(e) for e in node.children_named("enc"))
        if not encs:
            raise InvalidMessageError("message without ciphertext")
        dev = node.child("device-identity")
        return cls(attr(node, "id"), attr(node, "from"), _uint_attr(node, "t", 2**63 - 1), encs,
                   node.attrs.get("type", "text"), node.attrs.get("participant"), node.attrs.get("recipient"),
                   None if dev is None else content_bytes(dev, max_len=MAX_ADV_MESSAGE_LEN))

    @property
    def sending_device(self) -> Jid:
        """The device that encrypted it: the participant in a group, else the sender."""
        return _jid(self.participant or self.sender)


# --------------------------------------------------------------------------- acks and receipts
class NackCode(enum.IntEnum):
    """Error codes of a negative ack: the sender keeps the stanza for a later retry or gives up."""

    PARSE_ERROR = 487
    UNRECOGNIZED_STANZA = 488
    PROTOBUF_ERROR = 491
    MISSING_MESSAGE_SECRET = 495
    OLD_COUNTER = 496
    UNHANDLED_ERROR = 500


@final
@dataclass(frozen=True, slots=True)
class Ack:
    id: str
    to: str
    stanza_class: str  # the tag of the acknowledged stanza
    participant: str | None = None
    recipient: str | None = None
    type: str | None = None
    error: int | None = None  # set: a nack

    def to_node(self) -> Node:
        attrs = {"id": self.id, "to": self.to, "class": self.stanza_class}
        for k, v in (("participant", self.participant), ("recipient", self.recipient), ("type", self.type)):
            if v is not None:
                attrs[k] = v
        if self.error is not None:
            attrs["error"] = str(self.error)
        return Node("ack", attrs)

    @classmethod
    def from_node(cls, node: Node) -> Ack:
        if node.tag != "ack":
            raise InvalidMessageError("not an ack")
        err = node.attrs.get("error")
        return cls(attr(node, "id"), node.attrs.get("from") or attr(node, "to"), attr(node, "class"),
                   node.attrs.get("participant"), node.attrs.get("recipient"), node.attrs.get("type"),
                   None if err is None else _uint_attr(node, "error", 999))


def ack_for(stanza: Node, *, error: NackCode | None = None) -> Ack:
    """The ack (or, with ``error``, the nack) a client sends for a received stanza, as Baileys does:
    ``type`` is echoed except on a successfully handled message."""
    t = stanza.attrs.get("type")
    echo_type = t is not None and (stanza.tag != "message" or error is not None)
    return Ack(attr(stanza, "id"), attr(stanza, "from"), stanza.tag, stanza.attrs.get("participant"),
               stanza.attrs.get("recipient"), t if echo_type else None, None if error is None else int(error))


@final
@dataclass(frozen=True, slots=True)
class Receipt:
    """Delivery (``type`` None) or ``read``/``read-self``/``played``/``sender`` receipts for one or more ids."""

    ids: tuple[str, ...]
    chat: str  # ``to`` when sent, ``from`` when received
    type: str | None = None
    participant: str | None = None
    recipient: str | None = None
    timestamp: int | None = None

    def __post_init__(self) -> None:
        if not self.ids or len(self.ids) > MAX_STANZA_LIST_LEN:
            raise InvalidArgumentError("a receipt names 1..65535 message ids")
        if self.type == "retry":
            raise InvalidArgumentError("retry receipts are RetryReceipt")

    def to_node(self) -> Node:
        attrs = {"id": self.ids[0], "to": self.chat}
        for k, v in (("type", self.type), ("participant", self.participant), ("recipient", self.recipient)):
            if v is not None:
                attrs[k] = v
        if self.timestamp is not None:
            attrs["t"] = str(self.timestamp)
        rest = self.ids[1:]
        content = (Node("list", {}, tuple(Node("item", {"id": i}) for i in rest)),) if rest else None
        return Node("receipt", attrs, content)

    @classmethod
    def from_node(cls, node: Node) -> Receipt:
        if node.tag != "receipt":
            raise InvalidMessageError("not a receipt")
        if node.attrs.get("type") == "retry":
            raise InvalidMessageError("a retry receipt: parse it with RetryReceipt")
        lst = node.child("list")
        ids = (attr(node, "id"),) + (() if lst is None else tuple(attr(i, "id") for i in lst.children_named("item")))
        if len(ids) > MAX_STANZA_LIST_LEN:
            raise InvalidMessageError("a receipt for more than 65535 messages")
        t = node.attrs.get("t")
        return cls(ids, node.attrs.get("from") or attr(node, "to"), node.attrs.get("type"),
                   node.attrs.get("participant"), node.attrs.get("recipient"),
                   None if t is None else _uint_attr(node, "t", 2**63 - 1))


# --------------------------------------------------------------------------- notifications
@final
@dataclass(frozen=True, slots=True)
class EncryptCountNotification:
    """The server holds only ``count`` of our one-time prekeys."""

    count: int


@final
@dataclass(frozen=True, slots=True)
class IdentityChangeNotification:
    """``jid`` has a new identity key (reinstalled or a new phone): its sessions must be rebuilt."""

    jid: Jid


@final
@dataclass(frozen=True, slots=True)
class DevicesNotification:
    """``jid``'s device list changed; ``key_index_list``: the account's new signed list (ADV bytes)."""

    jid: Jid
    added: tuple[Jid, ...] = ()
    removed: tuple[Jid, ...] = ()
    key_index_list: bytes | None = None


Notification = EncryptCountNotification | IdentityChangeNotification | DevicesNotification


def parse_notification(node: Node) -> Notification | None:
    """The session-health notifications; None for every other kind (the caller acks and ignores it)."""
    if node.tag != "notification":
        raise InvalidMessageError("not a notification")
    kind = node.attrs.get("type")
    sender = attr(node, "from")
    if kind == "encrypt":
        count = node.child("count")
        if count is not None and sender == SERVER:
            return EncryptCountNotification(_uint_attr(count, "value", 0xFFFFFFFF))
        if node.child("identity") is not None:
            return IdentityChangeNotification(_jid(sender))
        return None
    if kind == "devices":
        added: list[Jid] = []
        removed: list[Jid] = []
        kil: bytes | None = None
        for op in node.children:
            target = added if op.tag == "add" else removed if op.tag == "remove" else None
            if target is None:
                continue
            target.extend(_jid(attr(d, "jid")) for d in op.children_named("device"))
            k = op.child("key-index-list")
            if k is not None:
                kil = content_bytes(k, max_len=MAX_ADV_MESSAGE_LEN)
        return DevicesNotification(_jid(sender), tuple(added), tuple(removed), kil)
    return None
