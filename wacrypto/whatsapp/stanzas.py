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
- group messages ``<message id to=group><participants>…</participants><enc type="skmsg"/></message>``;
- ``<ack id to class [participant] [recipient] [type] [error]/>`` from a client, ``<ack id from class t
  [phash] [error]/>`` from the server; receipts
  ``<receipt id to [type] [participant] [t]>[<list><item id/>…</list>]</receipt>``;
- notifications: ``encrypt`` (``<count value/>`` from the server, ``<identity/>`` from a user) and
  ``devices`` (``<add>``/``<remove>`` of ``<device jid [key-index]/>`` and a ``<key-index-list>``);
- device lists (``usync``), ADV uploads (``md``), groups (``w:g2``), ping (``w:p``), iq results and
  errors, ``<success>``/``<failure>`` and ``<stream:error>``: the contract of docs/chat-protocol.md,
  which chatd (:mod:`wacrypto.chatd.service`) serves with these same types.

Keys are raw 32-byte Curve25519 u coordinates on the wire, as WhatsApp sends them.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, final

from wacrypto.errors import InvalidArgumentError, InvalidMessageError
from wacrypto.limits import (
    KEY_TYPE_DJB,
    MAX_ADV_MESSAGE_LEN,
    MAX_GROUP_PARTICIPANTS,
    MAX_GROUP_SUBJECT_LEN,
    MAX_PREKEY_ID,
    MAX_STANZA_ID_LEN,
    MAX_STANZA_LIST_LEN,
    SIGNATURE_LEN,
)
from wacrypto.primitives.keys import PublicKey
from wacrypto.signal.bundle import PreKeyBundle
from wacrypto.whatsapp.jid import Jid
from wacrypto.wire.binary import Node
from wacrypto.wire.stream_error import StreamCode, conflict_type, parse_stream_error, stream_error_node

__all__ = [
    "Ack", "DeviceBundle", "DeviceIdentityUpload", "DevicesNotification", "Enc", "EncryptCountNotification",
    "Failure", "GroupCreate", "GroupInfo", "GroupMessage", "GroupQuery", "IdentityChangeNotification",
    "IncomingMessage", "IqError", "IqErrorCode", "KeyIndexListUpload", "NackCode", "OutgoingMessage", "PrekeyUpload",
    "Receipt", "SignedPreKey", "StreamCode", "StreamError", "Success", "UsyncDevices", "UsyncQuery", "ack_for",
    "bundle_query", "bundle_result", "child", "child_bytes", "child_uint", "group_result", "iq_result", "is_ping",
    "missing_bundles", "parse_bundle_query", "parse_bundle_result", "parse_group_result", "parse_notification",
    "parse_prekey_count", "parse_usync_result", "ping_query", "prekey_count_query", "prekey_count_result",
    "usync_result",
]

SERVER: Final = "s.whatsapp.net"
GROUP_SERVER: Final = "g.us"
MAX_TIMESTAMP: Final = 2**63 - 1
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


def _device_jid(text: str) -> Jid:
    """A device of a phone-number or LID account (``user[:device]@server``)."""
    j = Jid.parse(text)
    if not j.has_devices or not j.user:
        raise InvalidMessageError("not a device JID")
    return j


def _user_jid(text: str) -> Jid:
    """An account (device 0 form) of a phone-number or LID server."""
    j = _device_jid(text)
    if j.device:
        raise InvalidMessageError("a user JID, not a device's")
    return j


def _short(node: Node, key: str, limit: int = MAX_STANZA_ID_LEN) -> str:
    """A required short attribute (ids, keys): non-empty, at most ``limit`` characters."""
    v = attr(node, key)
    if len(v) > limit:
        raise InvalidMessageError(f"<{node.tag}> {key} is longer than {limit} characters")
    return v


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

    def signature_valid(self) -> bool:
        """True iff the identity key signed the signed prekey (what a server checks before storing it)."""
        djb = KEY_BUNDLE_TYPE
        return PublicKey(self.identity).verify(djb + self.signed_prekey.public, self.signed_prekey.signature)


def prekey_count_query(iq_id: str) -> Node:
    return Node("iq", {"id": iq_id, "xmlns": "encrypt", "type": "get", "to": SERVER}, (Node("count"),))


def prekey_count_result(iq_id: str, to: str, count: int) -> Node:
    return Node("iq", {"id": iq_id, "type": "result", "from": SERVER, "to": to}, (Node("count", {"value": str(count)}),))


def parse_prekey_count(result: Node) -> int:
    return _uint_attr(child(result, "count"), "value", 0xFFFFFFFF)


def digest_query(iq_id: str) -> Node:
    """Ask the server for a digest of the keys it holds for us (to check they are ours, intact)."""
    return Node("iq", {"id": iq_id, "xmlns": "encrypt", "type": "get", "to": SERVER}, (Node("digest"),))


def key_digest_hash(identity: bytes, signed_prekey: SignedPreKey, prekeys: Sequence[bytes]) -> bytes:
    """SHA-1 over the identity key, the signed prekey and its signature, and each one-time prekey
    (raw keys, in the digest's id order). A consistency check of what the server holds, as WhatsApp
    clients do it, not a security boundary: every key in it is public and signed elsewhere."""
    h = hashlib.sha1(usedforsecurity=False)
    h.update(identity + signed_prekey.public + signed_prekey.signature)
    for p in prekeys:
        h.update(p)
    return h.digest()


@final
@dataclass(frozen=True, slots=True)
class KeyDigest:
    """The server's digest of a device's keys: ``<digest><registration/><type/><identity/><skey/>
    <list><id/>...</list><hash/></digest>`` (``hash``: :func:`key_digest_hash` over what it holds)."""

    registration_id: int
    identity: bytes
    signed_prekey: SignedPreKey
    prekey_ids: tuple[int, ...]
    hash: bytes

    def to_node(self) -> Node:
        if len(self.prekey_ids) > MAX_STANZA_LIST_LEN:
            raise InvalidArgumentError("too many prekey ids in one digest")
        return Node("digest", {}, (
            Node("registration", {}, self.registration_id.to_bytes(4, "big")),
            Node("type", {}, KEY_BUNDLE_TYPE),
            Node("identity", {}, _key32(self.identity, "identity")),
            self.signed_prekey.to_node(),
            Node("list", {}, tuple(Node("id", {}, i.to_bytes(3, "big")) for i in self.prekey_ids)),
            Node("hash", {}, self.hash),
        ))

    @classmethod
    def from_node(cls, node: Node) -> KeyDigest:
        if node.tag != "digest" or child_bytes(node, "type", 1) != KEY_BUNDLE_TYPE:
            raise InvalidMessageError("not a key digest")
        ids = tuple(int.from_bytes(content_bytes(i, 3), "big") for i in child(node, "list").children_named("id"))
        return cls(child_uint(node, "registration", 4), child_bytes(node, "identity", 32),
                   SignedPreKey.from_node(child(node, "skey")), ids, child_bytes(node, "hash", 20))


def digest_result(iq_id: str, to: str, digest: KeyDigest) -> Node:
    return Node("iq", {"id": iq_id, "type": "result", "from": SERVER, "to": to}, (digest.to_node(),))


def parse_digest_result(result: Node) -> KeyDigest:
    return KeyDigest.from_node(child(result, "digest"))


def bundle_query(iq_id: str, devices: Sequence[Jid]) -> Node:
    if not devices or len(devices) > MAX_STANZA_LIST_LEN:
        raise InvalidArgumentError("ask for 1..65535 devices' bundles at once")
    return Node("iq", {"id": iq_id, "xmlns": "encrypt", "type": "get", "to": SERVER},
                (Node("key", {}, tuple(Node("user", {"jid": str(d)}) for d in devices)),))


def parse_bundle_query(node: Node) -> list[Jid]:
    """The devices a bundle fetch asks for (the server's side of :func:`bundle_query`), in order."""
    if node.tag != "iq" or node.attrs.get("xmlns") != "encrypt" or node.attrs.get("type") != "get":
        raise InvalidMessageError("not a bundle fetch")
    key = child(node, "key")
    if not isinstance(key.content, tuple) or not key.content or any(u.tag != "user" for u in key.children):
        raise InvalidMessageError("bundle fetch: <key> must hold <user> nodes")
    devices = [_device_jid(attr(u, "jid")) for u in key.children]
    return devices


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
    def from_keys(cls, jid: Jid, registration_id: int, identity: bytes, signed_prekey: SignedPreKey,
                  prekey: tuple[int, bytes] | None = None, device_identity: bytes | None = None) -> DeviceBundle:
        """A bundle from raw 32-byte keys as stored (what a server hands out)."""
        djb = KEY_BUNDLE_TYPE
        try:
            bundle = PreKeyBundle(
                registration_id=registration_id, device_id=jid.device, identity_key=djb + _key32(identity, "identity"),
                signed_prekey_id=signed_prekey.key_id, signed_prekey=djb + _key32(signed_prekey.public, "signed prekey"),
                signed_prekey_signature=signed_prekey.signature,
                prekey_id=None if prekey is None else prekey[0],
                prekey=None if prekey is None else djb + _key32(prekey[1], "prekey"))
        except InvalidMessageError as exc:
            raise InvalidArgumentError(f"not a bundle: {exc}") from None
        return cls(jid, bundle, device_identity)

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


def bundle_result(iq_id: str, to: str, bundles: Sequence[DeviceBundle], missing: Sequence[Jid] = ()) -> Node:
    """The fetch result: each bundle, then ``<user jid><error code="404"/></user>`` for each ``missing`` device."""
    kids = [b.to_node() for b in bundles]
    kids += [Node("user", {"jid": str(j)}, (Node("error", {"code": "404"}),)) for j in missing]
    return Node("iq", {"id": iq_id, "type": "result", "from": SERVER, "to": to}, (Node("list", {}, tuple(kids)),))


def parse_bundle_result(result: Node) -> list[DeviceBundle]:
    """The bundles in a fetch result (a ``<user>`` holding ``<error>`` is left out: that device has none)."""
    return [DeviceBundle.from_node(u) for u in child(result, "list").children_named("user") if u.child("error") is None]


def missing_bundles(result: Node) -> list[Jid]:
    """The devices a fetch result says have no keys (``<user jid><error/></user>``)."""
    return [_jid(attr(u, "jid")) for u in child(result, "list").children_named("user") if u.child("error") is not None]


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
            encs = [(_device_jid(attr(t, "jid")), Enc.from_node(child(t, "enc"))) for t in parts.children_named("to")]
            if len({j for j, _ in encs}) != len(encs):
                raise InvalidMessageError("message: a device listed twice")
        else:
            encs = [(None, Enc.from_node(e)) for e in node.children_named("enc")]
            if len(encs) > 1:
                raise InvalidMessageError("message: several encs without their devices")
        if not encs:
            raise InvalidMessageError("message without ciphertext")
        dev = node.child("device-identity")
        return cls(_short(node, "id"), attr(node, "to"), tuple(encs), node.attrs.get("type", "text"),
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
        return cls(attr(node, "id"), attr(node, "from"), _uint_attr(node, "t", MAX_TIMESTAMP), encs,
                   node.attrs.get("type", "text"), node.attrs.get("participant"), node.attrs.get("recipient"),
                   None if dev is None else content_bytes(dev, max_len=MAX_ADV_MESSAGE_LEN))

    @property
    def sending_device(self) -> Jid:
        """The device that encrypted it: the participant in a group, else the sender."""
        return _jid(self.participant or self.sender)


# --------------------------------------------------------------------------- acks and receipts
class NackCode(enum.IntEnum):
    """Error codes of a negative ack: the sender keeps the stanza for a later retry or gives up."""

    RATE_LIMITED = 429  # (chatd) a recipient's mailbox share is full: nothing kept, send it again later
    PARSE_ERROR = 487
    UNRECOGNIZED_STANZA = 488
    PROTOBUF_ERROR = 491
    MISSING_MESSAGE_SECRET = 495
    OLD_COUNTER = 496
    UNHANDLED_ERROR = 500


@final
@dataclass(frozen=True, slots=True)
class Ack:
    """An ack (``error`` set: a nack). A client's ack names the acknowledged stanza's sender in ``to``;
    the server's (``incoming``: as received from the server) names it in ``from`` and may carry the
    server's ``t`` and participant hash ``phash``."""

    id: str
    to: str
    stanza_class: str  # the tag of the acknowledged stanza
    participant: str | None = None
    recipient: str | None = None
    type: str | None = None
    error: int | None = None  # set: a nack
    phash: str | None = None
    timestamp: int | None = None
    incoming: bool = False  # ``from`` rather than ``to``: the server's ack

    def to_node(self) -> Node:
        attrs = {"id": self.id, "from" if self.incoming else "to": self.to, "class": self.stanza_class}
        for k, v in (("participant", self.participant), ("recipient", self.recipient), ("type", self.type),
                     ("phash", self.phash)):
            if v is not None:
                attrs[k] = v
        if self.timestamp is not None:
            attrs["t"] = str(self.timestamp)
        if self.error is not None:
            attrs["error"] = str(self.error)
        return Node("ack", attrs)

    @classmethod
    def from_node(cls, node: Node) -> Ack:
        if node.tag != "ack":
            raise InvalidMessageError("not an ack")
        err, t = node.attrs.get("error"), node.attrs.get("t")
        incoming = "from" in node.attrs
        return cls(attr(node, "id"), attr(node, "from") if incoming else attr(node, "to"), attr(node, "class"),
                   node.attrs.get("participant"), node.attrs.get("recipient"), node.attrs.get("type"),
                   None if err is None else _uint_attr(node, "error", 999), node.attrs.get("phash"),
                   None if t is None else _uint_attr(node, "t", MAX_TIMESTAMP), incoming)

    @property
    def origin(self) -> str:
        """Who sent the acknowledged stanza: the participant (a group's member device), else ``to``."""
        return self.participant or self.to


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
                   None if t is None else _uint_attr(node, "t", MAX_TIMESTAMP))


# --------------------------------------------------------------------------- notifications
def _notification(nid: str, kind: str, sender: str, t: int, kids: tuple[Node, ...]) -> Node:
    return Node("notification", {"id": nid, "type": kind, "from": sender, "t": str(t)}, kids)


@final
@dataclass(frozen=True, slots=True)
class EncryptCountNotification:
    """The server holds only ``count`` of our one-time prekeys."""

    count: int

    def to_node(self, nid: str, t: int) -> Node:
        return _notification(nid, "encrypt", SERVER, t, (Node("count", {"value": str(self.count)}),))


@final
@dataclass(frozen=True, slots=True)
class IdentityChangeNotification:
    """``jid`` has a new identity key (reinstalled or a new phone): its sessions must be rebuilt.
    ``jid`` is the device whose key changed (the user JID for a primary)."""

    jid: Jid

    def to_node(self, nid: str, t: int) -> Node:
        return _notification(nid, "encrypt", str(self.jid), t, (Node("identity"),))


@final
@dataclass(frozen=True, slots=True)
class DevicesNotification:
    """``jid``'s device list changed; ``key_index_list``: the account's new signed list (ADV bytes)."""

    jid: Jid
    added: tuple[Jid, ...] = ()
    removed: tuple[Jid, ...] = ()
    key_index_list: bytes | None = None

    def to_node(self, nid: str, t: int) -> Node:
        """``<add>`` and/or ``<remove>``; the key-index list rides in the last of them."""
        ops = [(tag, devs) for tag, devs in (("add", self.added), ("remove", self.removed)) if devs]
        if not ops:
            raise InvalidArgumentError("a devices notification adds or removes at least one device")
        kids = []
        for i, (tag, devs) in enumerate(ops):
            inner = [Node("device", {"jid": str(d)}) for d in devs]
            if self.key_index_list is not None and i == len(ops) - 1:
                inner.append(Node("key-index-list", {}, self.key_index_list))
            kids.append(Node(tag, {}, tuple(inner)))
        return _notification(nid, "devices", str(self.jid), t, tuple(kids))


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


# --------------------------------------------------------------------------- iqs: ping, results, errors
def _iq(node: Node, xmlns: str, kind: str) -> Node:
    if node.tag != "iq" or node.attrs.get("xmlns") != xmlns or node.attrs.get("type") != kind:
        raise InvalidMessageError(f"not an {xmlns} {kind} iq")
    return node


def ping_query(iq_id: str, to: str = SERVER) -> Node:
    """``<iq id type="get" xmlns="w:p" to><ping/></iq>``: answered by :func:`iq_result`."""
    return Node("iq", {"id": iq_id, "type": "get", "xmlns": "w:p", "to": to}, (Node("ping"),))


def is_ping(node: Node) -> bool:
    return (node.tag == "iq" and node.attrs.get("xmlns") == "w:p" and node.attrs.get("type") == "get"
            and node.child("ping") is not None)


def iq_result(iq_id: str, to: str | None = None, content: Node | None = None, *, sender: str = SERVER) -> Node:
    """``<iq id type="result" from [to]>[content]</iq>``: the answer to a get or set."""
    attrs = {"id": iq_id, "type": "result", "from": sender}
    if to is not None:
        attrs["to"] = to
    return Node("iq", attrs, None if content is None else (content,))


class IqErrorCode(enum.IntEnum):
    """Codes of ``<iq type="error"><error code/></iq>``."""

    BAD_REQUEST = 400
    FORBIDDEN = 403
    NOT_FOUND = 404
    NOT_ACCEPTABLE = 406
    INTERNAL = 500


@final
@dataclass(frozen=True, slots=True)
class IqError:
    """A failed iq: ``<iq id type="error" from [to]><error code text/></iq>``."""

    id: str
    code: int
    text: str = ""
    to: str | None = None
    sender: str = SERVER

    def to_node(self) -> Node:
        attrs = {"id": self.id, "type": "error", "from": self.sender}
        if self.to is not None:
            attrs["to"] = self.to
        err = {"code": str(self.code)} | ({"text": self.text} if self.text else {})
        return Node("iq", attrs, (Node("error", err),))

    @classmethod
    def from_node(cls, node: Node) -> IqError:
        if node.tag != "iq" or node.attrs.get("type") != "error":
            raise InvalidMessageError("not an iq error")
        err = child(node, "error")
        return cls(attr(node, "id"), _uint_attr(err, "code", 999), err.attrs.get("text", ""), node.attrs.get("to"),
                   attr(node, "from"))


# --------------------------------------------------------------------------- login and stream errors
@final
@dataclass(frozen=True, slots=True)
class Success:
    """``<success t [lid]/>``: the server accepted the login."""

    timestamp: int
    lid: Jid | None = None

    def to_node(self) -> Node:
        attrs = {"t": str(self.timestamp)} | ({"lid": str(self.lid)} if self.lid is not None else {})
        return Node("success", attrs)

    @classmethod
    def from_node(cls, node: Node) -> Success:
        if node.tag != "success":
            raise InvalidMessageError("not a success")
        lid = node.attrs.get("lid")
        return cls(_uint_attr(node, "t", MAX_TIMESTAMP), None if lid is None else _user_jid(lid))


@final
@dataclass(frozen=True, slots=True)
class Failure:
    """``<failure reason/>``: the server refused the login (401: another key holds that device)."""

    reason: int

    def to_node(self) -> Node:
        return Node("failure", {"reason": str(self.reason)})

    @classmethod
    def from_node(cls, node: Node) -> Failure:
        if node.tag != "failure":
            raise InvalidMessageError("not a failure")
        return cls(_uint_attr(node, "reason", 999))


@final
@dataclass(frozen=True, slots=True)
class StreamError:
    """``<stream:error code>[<conflict type/>]</stream:error>``, the server's last stanza on a stream
    (codes and layout: :mod:`wacrypto.wire.stream_error`)."""

    code: StreamCode
    conflict: str | None = None  # "replaced" with 440, "device_removed" with 401

    @classmethod
    def replaced(cls) -> StreamError:
        """What the first connection of a device gets when a second one logs in."""
        return cls(StreamCode.REPLACED, conflict_type(StreamCode.REPLACED))

    @classmethod
    def device_removed(cls) -> StreamError:
        """What the live connection of a device gets when its account removes it."""
        return cls(StreamCode.LOGGED_OUT, conflict_type(StreamCode.LOGGED_OUT))

    def to_node(self) -> Node:
        return stream_error_node(self.code, conflict=self.conflict)

    @classmethod
    def from_node(cls, node: Node) -> StreamError:
        end = parse_stream_error(node, strict=True)
        return cls(end.code, end.conflict)


# --------------------------------------------------------------------------- device lists (usync)
@final
@dataclass(frozen=True, slots=True)
class UsyncQuery:
    """Ask for the device lists of ``users`` (user JIDs)."""

    users: tuple[Jid, ...]
    context: str = "message"

    def to_node(self, iq_id: str) -> Node:
        if not self.users or len(self.users) > MAX_STANZA_LIST_LEN:
            raise InvalidArgumentError("ask for 1..65535 users' devices at once")
        return Node("iq", {"id": iq_id, "xmlns": "usync", "type": "get", "to": SERVER}, (
            Node("usync", {"mode": "query", "context": self.context}, (
                Node("query", {}, (Node("devices", {"version": "2"}),)),
                Node("list", {}, tuple(Node("user", {"jid": str(u)}) for u in self.users)),
            )),
        ))

    @classmethod
    def from_node(cls, node: Node) -> UsyncQuery:
        usync = child(_iq(node, "usync", "get"), "usync")
        if child(usync, "query").child("devices") is None:
            raise InvalidMessageError("usync: only device queries are served")
        lst = child(usync, "list")
        if not lst.children or any(u.tag != "user" for u in lst.children):
            raise InvalidMessageError("usync: <list> must hold <user> nodes")
        return cls(tuple(_user_jid(attr(u, "jid")) for u in lst.children), _short(usync, "context"))


@final
@dataclass(frozen=True, slots=True)
class UsyncDevices:
    """One user's devices: (device id, key index or None for the primary), and the account's signed
    key-index list (ADV bytes) with its time ``ts``; ``lid``: the account's LID (``<lid val>``) when
    the user was named by phone number and has one."""

    user: Jid
    devices: tuple[tuple[int, int | None], ...]
    key_index_list: bytes | None = None
    key_index_ts: int | None = None
    lid: Jid | None = None

    def jids(self) -> list[Jid]:
        return [self.user.with_device(d) for d, _ in self.devices]

    def to_node(self) -> Node:
        devs = tuple(Node("device", {"id": str(d)} | ({} if k is None else {"key-index": str(k)}))
                     for d, k in self.devices)
        kids = [Node("device-list", {}, devs)]
        if self.key_index_list is not None:
            ts = {} if self.key_index_ts is None else {"ts": str(self.key_index_ts)}
            kids.append(Node("key-index-list", ts, self.key_index_list))
        extra = () if self.lid is None else (Node("lid", {"val": str(self.lid)}),)
        return Node("user", {"jid": str(self.user)}, (Node("devices", {}, tuple(kids)),) + extra)

    @classmethod
    def from_node(cls, node: Node) -> UsyncDevices:
        devices = child(node, "devices")
        out: list[tuple[int, int | None]] = []
        for d in child(devices, "device-list").children_named("device"):
            k = d.attrs.get("key-index")
            out.append((_uint_attr(d, "id", 255), None if k is None else _uint_attr(d, "key-index", 0xFFFFFFFF)))
        if len({d for d, _ in out}) != len(out):
            raise InvalidMessageError("usync: a device listed twice")
        kil = devices.child("key-index-list")
        ts = None if kil is None or "ts" not in kil.attrs else _uint_attr(kil, "ts", MAX_TIMESTAMP)
        lid_node = node.child("lid")
        lid = None
        if lid_node is not None:
            lid = _user_jid(attr(lid_node, "val"))
            if not lid.is_lid:
                raise InvalidMessageError("usync: <lid> is not a LID")
        return cls(_user_jid(attr(node, "jid")), tuple(out),
                   None if kil is None else content_bytes(kil, max_len=MAX_ADV_MESSAGE_LEN), ts, lid)


def usync_result(iq_id: str, to: str, users: Sequence[UsyncDevices]) -> Node:
    return iq_result(iq_id, to, Node("usync", {}, (Node("list", {}, tuple(u.to_node() for u in users)),)))


def parse_usync_result(result: Node) -> list[UsyncDevices]:
    return [UsyncDevices.from_node(u) for u in child(child(result, "usync"), "list").children_named("user")]


# --------------------------------------------------------------------------- md iqs: ADV identities
def _md_set(iq_id: str, tag: str, blob: bytes) -> Node:
    return Node("iq", {"id": iq_id, "xmlns": "md", "type": "set", "to": SERVER}, (Node(tag, {}, blob),))


def _md_blob(node: Node, tag: str) -> bytes:
    return content_bytes(child(_iq(node, "md", "set"), tag), max_len=MAX_ADV_MESSAGE_LEN)


@final
@dataclass(frozen=True, slots=True)
class DeviceIdentityUpload:
    """A companion registers its ADV identity (``ADVSignedDeviceIdentity`` bytes, stored as given)."""

    identity: bytes

    def to_node(self, iq_id: str) -> Node:
        return _md_set(iq_id, "device-identity", self.identity)

    @classmethod
    def from_node(cls, node: Node) -> DeviceIdentityUpload:
        return cls(_md_blob(node, "device-identity"))


@final
@dataclass(frozen=True, slots=True)
class KeyIndexListUpload:
    """The primary publishes the account's signed key-index list (ADV bytes, stored as given)."""

    signed: bytes

    def to_node(self, iq_id: str) -> Node:
        return _md_set(iq_id, "key-index-list", self.signed)

    @classmethod
    def from_node(cls, node: Node) -> KeyIndexListUpload:
        return cls(_md_blob(node, "key-index-list"))


# --------------------------------------------------------------------------- groups (w:g2)
def _participants(node: Node) -> tuple[Jid, ...]:
    users = tuple(_user_jid(attr(p, "jid")) for p in node.children_named("participant"))
    if len(set(users)) != len(users) or len(users) > MAX_GROUP_PARTICIPANTS:
        raise InvalidMessageError(f"a participant listed twice, or more than {MAX_GROUP_PARTICIPANTS}")
    return users


def _group_jid(text: str) -> Jid:
    j = Jid.parse(text)
    if not j.is_group or not j.user:
        raise InvalidMessageError("not a group JID")
    return j


def _subject(subject: str) -> str:
    if len(subject) > MAX_GROUP_SUBJECT_LEN:
        raise InvalidArgumentError(f"a group subject is at most {MAX_GROUP_SUBJECT_LEN} characters")
    return subject


@final
@dataclass(frozen=True, slots=True)
class GroupCreate:
    """Create a group of the sender and ``participants`` (user JIDs); ``key`` is the client's own id for
    this request, so a resend creates nothing new."""

    subject: str
    key: str
    participants: tuple[Jid, ...]

    def to_node(self, iq_id: str) -> Node:
        kids = tuple(Node("participant", {"jid": str(p)}) for p in self.participants)
        return Node("iq", {"id": iq_id, "xmlns": "w:g2", "type": "set", "to": GROUP_SERVER},
                    (Node("create", {"subject": _subject(self.subject), "key": self.key}, kids),))

    @classmethod
    def from_node(cls, node: Node) -> GroupCreate:
        create = child(_iq(node, "w:g2", "set"), "create")
        subject = create.attrs.get("subject", "")
        if len(subject) > MAX_GROUP_SUBJECT_LEN:
            raise InvalidMessageError("group subject too long")
        return cls(subject, _short(create, "key"), _participants(create))


@final
@dataclass(frozen=True, slots=True)
class GroupQuery:
    """Ask for a group's subject and participants."""

    group: Jid

    def to_node(self, iq_id: str) -> Node:
        return Node("iq", {"id": iq_id, "xmlns": "w:g2", "type": "get", "to": str(self.group)}, (Node("query"),))

    @classmethod
    def from_node(cls, node: Node) -> GroupQuery:
        child(_iq(node, "w:g2", "get"), "query")
        return cls(_group_jid(attr(node, "to")))


@final
@dataclass(frozen=True, slots=True)
class GroupInfo:
    """``<group id subject creator><participant jid/>...</group>`` (``id``: the group JID's user part)."""

    group: Jid
    subject: str
    creator: Jid
    participants: tuple[Jid, ...]

    def to_node(self) -> Node:
        kids = tuple(Node("participant", {"jid": str(p)}) for p in self.participants)
        return Node("group", {"id": self.group.user, "subject": _subject(self.subject), "creator": str(self.creator)},
                    kids)

    @classmethod
    def from_node(cls, node: Node) -> GroupInfo:
        if node.tag != "group":
            raise InvalidMessageError("not a group")
        subject = node.attrs.get("subject", "")
        if len(subject) > MAX_GROUP_SUBJECT_LEN:
            raise InvalidMessageError("group subject too long")
        return cls(_group_jid(attr(node, "id") + "@" + GROUP_SERVER), subject, _user_jid(attr(node, "creator")),
                   _participants(node))


def group_result(iq_id: str, to: str, info: GroupInfo) -> Node:
    return iq_result(iq_id, to, info.to_node(), sender=GROUP_SERVER)


def parse_group_result(result: Node) -> GroupInfo:
    return GroupInfo.from_node(child(result, "group"))


@final
@dataclass(frozen=True, slots=True)
class GroupMessage:
    """A message to a group: the ``skmsg`` for every participant device, and ``encs`` (pkmsg/msg, each
    carrying a sender-key distribution message or, on a resend after a retry receipt, the message)
    for the devices listed. At least one of the two."""

    id: str
    group: Jid
    encs: tuple[tuple[Jid, Enc], ...] = ()
    skmsg: Enc | None = None
    type: str = "text"
    device_identity: bytes | None = None
    phash: str | None = None

    def __post_init__(self) -> None:
        if not self.encs and self.skmsg is None:
            raise InvalidArgumentError("a group message needs an skmsg or per-device encs")
        if (self.skmsg is not None and self.skmsg.type != "skmsg") or any(e.type == "skmsg" for _, e in self.encs):
            raise InvalidArgumentError("the group-wide enc is the skmsg; per-device encs are pkmsg/msg")

    def to_node(self) -> Node:
        attrs = {"id": self.id, "to": str(self.group), "type": self.type}
        if self.phash is not None:
            attrs["phash"] = self.phash
        kids: list[Node] = []
        if self.encs:
            kids.append(Node("participants", {}, tuple(Node("to", {"jid": str(j)}, (e.to_node(),)) for j, e in self.encs)))
        if self.skmsg is not None:
            kids.append(self.skmsg.to_node())
        if self.device_identity is not None:
            kids.append(Node("device-identity", {}, self.device_identity))
        return Node("message", attrs, tuple(kids))

    @classmethod
    def from_node(cls, node: Node) -> GroupMessage:
        if node.tag != "message":
            raise InvalidMessageError("not a message stanza")
        group = _group_jid(attr(node, "to"))
        parts = node.child("participants")
        encs = () if parts is None else tuple((_device_jid(attr(t, "jid")), Enc.from_node(child(t, "enc")))
                                              for t in parts.children_named("to"))
        tops = [Enc.from_node(e) for e in node.children_named("enc")]
        if len(tops) > 1 or any(e.type != "skmsg" for e in tops) or any(e.type == "skmsg" for _, e in encs):
            raise InvalidMessageError("group message: one skmsg for all, pkmsg/msg per device")
        if not encs and not tops:
            raise InvalidMessageError("message without ciphertext")
        if len({j for j, _ in encs}) != len(encs):
            raise InvalidMessageError("group message: a device listed twice")
        dev = node.child("device-identity")
        return cls(_short(node, "id"), group, encs, tops[0] if tops else None, node.attrs.get("type", "text"),
                   None if dev is None else content_bytes(dev, max_len=MAX_ADV_MESSAGE_LEN), node.attrs.get("phash"))
