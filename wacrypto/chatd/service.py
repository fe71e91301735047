"""chatd's stanza logic as a sans-I/O service: WABinary nodes in, nodes out, state in a
:class:`~wacrypto.chatd.db.ChatdDatabase`. No sockets, no trio, no clock: ``now`` is a parameter.

The contract is docs/chat-protocol.md; the stanzas are the typed ones of
:mod:`wacrypto.whatsapp.stanzas`, the same the client uses. How a transport drives it:

1. After the Noise handshake, :meth:`ChatService.login` with the account, device and static key of
   the connection. Refused: send ``result.failure`` and close. Accepted: send ``result.success``; if
   ``result.replaced``, end the device's older connection with :func:`replaced_error` (its
   :meth:`~ChatService.disconnected` call, with its own ``session``, is then ignored).
2. Push :meth:`ChatService.pending_for` pages until one comes back shorter than ``limit`` (the
   device has caught up), as fast as the connection takes them; a connection of one stripe of a
   device (``login(..., stripe=, stripes=)``, :mod:`wacrypto.whatsapp.stripes`) pages with
   :meth:`ChatService.pending_page` until it says ``done``, and passes its ``stripe`` to
   :meth:`~ChatService.handle`; send each ``Out`` to the connection of its ``stripe``.
3. Every stanza the client sends goes to :meth:`ChatService.handle`; send each returned
   ``Out(target, node)`` to the target's live connection. ``handle`` returns stanzas only for the
   sender and for online devices that have caught up; everything meant for a device is first kept
   in its mailbox (committed before ``handle`` returns, so before the sender's ack leaves), and
   delivered by ``pending_for`` on its next login until the device acks it.
4. When the connection ends, :meth:`ChatService.disconnected`; call :meth:`ChatService.expire`
   now and then (every minute, say) to drop what waited longer than ``mailbox_ttl``.

Client input never raises: a malformed or unacceptable stanza gets an ``<iq type="error">`` or a
nack (``<ack error>``) and changes nothing (one database transaction per stanza, rolled back on any
failure). A failing database raises :class:`~wacrypto.errors.StoreError`: nothing was acked, the
caller closes the connection. One service per database; its methods may be called from any thread
(one lock).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple, final

from wacrypto.chatd.db import ChatdDatabase, ChatdTx, DeviceRecord, GroupRecord, Shares
from wacrypto.errors import InvalidArgumentError, InvalidMessageError
from wacrypto.limits import (
    DEFAULT_MAILBOX_SENDER_LIMIT,
    DEFAULT_MAILBOX_STRANGER_LIMIT,
    DEFAULT_MAILBOX_TTL,
    MAILBOX_LIMIT,
    MAX_STANZA_ID_LEN,
    PREKEY_LOW_WATER,
)
from wacrypto.whatsapp.adv import device_identity_details
from wacrypto.whatsapp.devices import participant_hash
from wacrypto.whatsapp.jid import GROUP_SERVER, Jid
from wacrypto.whatsapp.retry import RetryReceipt
from wacrypto.whatsapp.stripes import Stripe, owns_stanza, stanza_stripe
from wacrypto.whatsapp.stanzas import (
    SERVER,
    Ack,
    DeviceBundle,
    DeviceIdentityUpload,
    DevicesNotification,
    Enc,
    EncryptCountNotification,
    Failure,
    GroupCreate,
    GroupInfo,
    GroupMessage,
    GroupQuery,
    IdentityChangeNotification,
    IncomingMessage,
    IqError,
    IqErrorCode,
    KeyDigest,
    KeyIndexListUpload,
    NackCode,
    OutgoingMessage,
    PrekeyUpload,
    Receipt,
    SignedPreKey,
    StreamError,
    Success,
    UsyncDevices,
    UsyncQuery,
    bundle_result,
    digest_result,
    key_digest_hash,
    group_result,
    iq_result,
    is_ping,
    parse_bundle_query,
    prekey_count_result,
    usync_result,
)
from wacrypto.wire.binary import Node, decode_node, encode_node

__all__ = ["ChatService", "LoginResult", "Out", "replaced_error"]

LOGIN_REFUSED: Final = 401


class Out(NamedTuple):
    """A stanza for a live connection of ``target``: the connection of its ``stripe`` (a device served
    by several workers, :mod:`wacrypto.whatsapp.stripes`), or with ``stripe`` -1 outside
    :meth:`ChatService.handle` every connection of the device (:meth:`~ChatService.handle` gives its
    replies the stripe of the connection that sent the stanza)."""

    target: Jid
    node: Node
    stripe: int = -1


@final
@dataclass(frozen=True, slots=True)
class LoginResult:
    """``ok``: send ``success``; else send ``failure`` and close. ``session`` names this connection
    in :meth:`ChatService.disconnected`."""

    ok: bool
    success: Node | None = None
    failure: Node | None = None
    replaced: bool = False  # the device had another live connection: end it with replaced_error()
    session: int = 0
    device: Jid | None = None  # the device JID to pass to handle(), pending_for() and disconnected()


def replaced_error() -> Node:
    """``<stream:error code="440"><conflict type="replaced"/></stream:error>`` for a replaced connection."""
    return StreamError.replaced().to_node()


@dataclass(slots=True)
class _Conn:
    session: int
    stripes: int = 1  # the device's connections serve stripes of this count (1: one serves all)
    cursor: int = 0  # the highest mailbox seq this connection was given
    drained: bool = False  # pending_for came back short: new deliveries are pushed at once


@dataclass(slots=True)
class _Push:
    target: Jid
    seq: int
    node: Node


class _Refused(Exception):
    """A mailbox share is full (internal: rolls the stanza's transaction back)."""


@final
class ChatService:
    """The reference chat server's rules (see the module docstring for how to drive it)."""

    def __init__(self, db: ChatdDatabase, *, mailbox_ttl: float = DEFAULT_MAILBOX_TTL,
                 mailbox_limit: int = MAILBOX_LIMIT, mailbox_sender_limit: int = DEFAULT_MAILBOX_SENDER_LIMIT,
                 mailbox_stranger_limit: int = DEFAULT_MAILBOX_STRANGER_LIMIT,
                 prekey_low_water: int = PREKEY_LOW_WATER) -> None:
        if mailbox_ttl <= 0 or min(mailbox_limit, mailbox_sender_limit, mailbox_stranger_limit) < 1:
            raise InvalidArgumentError("mailbox_ttl must be positive and every mailbox limit at least 1")
        self.db = db
        self.mailbox_ttl = mailbox_ttl
        self.shares = Shares(mailbox_sender_limit, mailbox_stranger_limit, mailbox_limit)
        self.prekey_low_water = prekey_low_water
        self._online: dict[Jid, dict[int, _Conn]] = {}  # device -> stripe -> its live connection
        self._sessions = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ChatService({self.db!r}, online={len(self._online)})"

    # ------------------------------------------------------------------ connections
    def login(self, user: str, server: str, device: int, static_key: bytes, now: float, *,
              stripe: int = 0, stripes: int = 1) -> LoginResult:
        """Register on first login: bind (account, device) to ``static_key``, or check it against the
        bound key. ``user``/``server``/``device`` come from the client's payload, and for a device
        served by several workers, the ``stripe`` of ``stripes`` this connection serves (the device's
        connections of another count are replaced: ``replaced``)."""
        if not isinstance(static_key, bytes) or len(static_key) != 32:
            raise InvalidArgumentError("the static key is the connection's 32-byte Noise key")
        Stripe(stripe, stripes)  # (InvalidArgumentError if it is not one)
        refused = LoginResult(False, failure=Failure(LOGIN_REFUSED).to_node())
        try:
            jid = Jid(user, server, device)
        except (InvalidMessageError, TypeError):
            return refused
        if not jid.has_devices or not jid.user:
            return refused
        with self._lock:
            with self.db.transaction() as tx:
                if not tx.bind_login(str(jid.user_jid()), jid.device, static_key, now=now):
                    return refused
                lid = tx.assign_lid(str(jid.user_jid())) if jid.is_phone_number else None
            conns = self._online.setdefault(jid, {})
            if any(c.stripes != stripes for c in conns.values()):
                conns.clear()  # the device is served another way now: all of those are replaced
                replaced = True
            else:
                replaced = stripe in conns
            self._sessions += 1
            conns[stripe] = _Conn(self._sessions, stripes)
            success = Success(int(now), None if lid is None else Jid.parse(lid)).to_node()
            return LoginResult(True, success=success, replaced=replaced, session=self._sessions, device=jid)

    def disconnected(self, device: Jid, session: int | None = None) -> None:
        """The device's connection ended (``session``: of that login; a replaced connection's is ignored)."""
        with self._lock:
            conns = self._online.get(device)
            if conns is None:
                return
            for stripe, conn in list(conns.items()):
                if session is None or session == conn.session:
                    del conns[stripe]
            if not conns:
                del self._online[device]

    def is_online(self, device: Jid, stripe: int | None = None) -> bool:
        """The device has a live connection (``stripe``: one serving that stripe)."""
        conns = self._online.get(device)
        return conns is not None and bool(conns) and (stripe is None or stripe in conns)

    def pending_for(self, device: Jid, now: float, limit: int = 1000) -> list[Node]:
        """The oldest waiting deliveries (messages, receipts, notifications) the device's (unstriped)
        connection has not been given yet; a page shorter than ``limit`` means the device has caught
        up. For a device that is not online: the oldest waiting ones (nothing is marked). A connection
        of a striped device pages with :meth:`pending_page`."""
        return self.pending_page(device, now, limit)[0]

    def pending_page(self, device: Jid, now: float, limit: int = 1000, *,
                     stripe: int | None = None) -> tuple[list[Node], bool]:
        """The next page for the device's connection of ``stripe``: of ``limit`` mailbox rows read, its
        stripe's (the others' left for their own connections), and whether it has caught up (new
        deliveries are pushed to it at once from then on). No such connection (replaced meanwhile):
        nothing, caught up. ``stripe`` None: :meth:`pending_for`'s page (an offline device's too)."""
        if limit < 1:
            raise InvalidArgumentError("limit must be at least 1")
        with self._lock:
            conn = self._online.get(device, {}).get(0 if stripe is None else stripe)
            if conn is None and stripe is not None:
                return [], True
            with self.db.transaction() as tx:
                rows = tx.pending(str(device), now=now, after_seq=0 if conn is None else conn.cursor, limit=limit)
            nodes = [decode_node(r.payload) for r in rows]
            done = len(rows) < limit
            if conn is not None:
                if rows:
                    conn.cursor = rows[-1].seq
                conn.drained = done
                if conn.stripes > 1:  # the others' rows stay for their own connections' cursors
                    mine = Stripe(stripe or 0, conn.stripes)
                    nodes = [n for n in nodes if owns_stanza(mine, n, device)]
            return nodes, done

    # ------------------------------------------------------------------ administration
    def remove_device(self, device: Jid, now: float) -> list[Out]:
        """Remove a device: its keys, prekeys, mailbox and login (its key is refused from now on);
        its account's other devices and correspondents get a ``devices`` notification, and its live
        connection (if any) ``<stream:error code="401"/>``: close it after sending."""
        if not device.has_devices or not device.user:
            raise InvalidArgumentError("remove a device of a phone-number or LID account")
        account = device.user_jid()
        with self._lock:
            pushes: list[_Push] = []
            with self.db.transaction() as tx:
                existed = tx.remove_device(str(account), device.device)
                tx.revoke_login(str(account), device.device)
                tx.clear_mailbox(str(device))
                if existed:
                    kil = tx.key_index_list(str(account))
                    note = DevicesNotification(account, removed=(device,), key_index_list=None if kil is None else kil[0])
                    pushes = self._notify(tx, self._audience(tx, account, device), note, now)
            outs = []
            if self._online.pop(device, None):
                outs.append(Out(device, StreamError.device_removed().to_node()))  # to each of its connections
            return outs + self._pushed(pushes)

    def expire(self, now: float) -> int:
        """Drop what waited longer than ``mailbox_ttl`` (and ids remembered past theirs); returns how
        many undelivered entries were dropped."""
        with self._lock, self.db.transaction() as tx:
            return tx.expire(now=now)

    # ------------------------------------------------------------------ stanzas
    def handle(self, device: Jid, node: Node, now: float, *, stripe: int = 0) -> list[Out]:
        """Handle one stanza from ``device``'s connection of ``stripe`` (logged in): replies to it (to
        that connection) and stanzas for other online devices, everything committed first. Never
        raises on a bad stanza (see the module docstring)."""
        with self._lock:
            if not self.is_online(device, stripe):
                raise InvalidArgumentError(f"{device} is not logged in (stripe {stripe})")
            handler = self._HANDLERS.get(node.tag, ChatService._unknown)
            try:
                outs = handler(self, device, node, now)
            except InvalidMessageError as exc:
                outs = self._bad_stanza(device, node, exc)
            return [o._replace(stripe=stripe) if o.stripe < 0 else o for o in outs]

    def _bad_stanza(self, device: Jid, node: Node, exc: InvalidMessageError) -> list[Out]:
        sid = node.attrs.get("id")
        if not sid or len(sid) > MAX_STANZA_ID_LEN or node.tag == "ack":
            return []  # nothing to answer it with (an ack is never acked)
        if node.tag == "iq":
            return [Out(device, IqError(sid, IqErrorCode.BAD_REQUEST, str(exc)[:200], str(device)).to_node())]
        return [self._nack(device, node, NackCode.PARSE_ERROR)]

    @staticmethod
    def _nack(device: Jid, node: Node, code: int) -> Out:
        return Out(device, Ack(node.attrs["id"], node.attrs.get("to") or SERVER, node.tag, error=int(code),
                               incoming=True).to_node())

    def _unknown(self, device: Jid, node: Node, now: float) -> list[Out]:
        sid = node.attrs.get("id")
        if not sid or len(sid) > MAX_STANZA_ID_LEN:
            return []
        return [self._nack(device, node, NackCode.UNRECOGNIZED_STANZA)]

    # ------------------------------------------------------------------ iqs
    def _iq(self, device: Jid, node: Node, now: float) -> list[Out]:
        iq_id = node.attrs.get("id", "")
        kind, xmlns = node.attrs.get("type"), node.attrs.get("xmlns")
        if not iq_id or len(iq_id) > MAX_STANZA_ID_LEN:
            raise InvalidMessageError("iq without a usable id")
        if kind in ("result", "error"):
            return []  # an answer to one of the server's own iqs
        if is_ping(node):
            return [Out(device, iq_result(iq_id))]
        if (xmlns, kind) == ("encrypt", "get"):
            if node.child("count") is not None:
                return self._prekey_count(device, iq_id, node, now)
            if node.child("digest") is not None:
                return self._digest(device, iq_id, node, now)
            return self._fetch(device, iq_id, node, now)
        handler = self._IQS.get((xmlns or "", kind or ""))
        if handler is None:
            raise InvalidMessageError("an iq this server does not serve")
        return handler(self, device, iq_id, node, now)

    def _error(self, device: Jid, iq_id: str, code: IqErrorCode, text: str) -> list[Out]:
        return [Out(device, IqError(iq_id, code, text, str(device)).to_node())]

    def _prekey_upload(self, device: Jid, iq_id: str, node: Node, now: float) -> list[Out]:
        up = PrekeyUpload.from_node(node)
        if not up.signature_valid():
            return self._error(device, iq_id, IqErrorCode.NOT_ACCEPTABLE, "the signed prekey's signature does not verify")
        account = device.user_jid()
        spk = up.signed_prekey
        rec = DeviceRecord(str(account), device.device, up.registration_id, up.identity, spk.key_id, spk.public,
                           spk.signature)
        with self.db.transaction() as tx:
            old = tx.device(str(account), device.device)
            pushes: list[_Push] = []
            if old is None:  # a new device: its account and correspondents hear of it
                tx.register_device(rec, now=now)
                kil = tx.key_index_list(str(account))
                added = DevicesNotification(account, added=(device,), key_index_list=None if kil is None else kil[0])
                pushes = self._notify(tx, self._audience(tx, account, device), added, now)
            elif old.identity != up.identity:  # a new identity key: old prekeys and ADV identity are void
                tx.register_device(rec, now=now)
                pushes = self._notify(tx, self._audience(tx, account, device), IdentityChangeNotification(device), now)
            elif old.registration_id != up.registration_id:  # reinstalled with the same identity
                tx.register_device(dataclasses.replace(rec, device_identity=old.device_identity), now=now)
            else:
                tx.set_signed_prekey(str(account), device.device, spk.key_id, spk.public, spk.signature)
            tx.add_prekeys(str(account), device.device, up.prekeys)
        return [Out(device, iq_result(iq_id, str(device)))] + self._pushed(pushes)

    def _prekey_count(self, device: Jid, iq_id: str, node: Node, now: float) -> list[Out]:
        with self.db.transaction() as tx:
            n = tx.unused_prekeys(str(device.user_jid()), device.device)
        return [Out(device, prekey_count_result(iq_id, str(device), n))]

    def _digest(self, device: Jid, iq_id: str, node: Node, now: float) -> list[Out]:
        with self.db.transaction() as tx:
            rec = tx.device(str(device.user_jid()), device.device)
            keys = tx.unused_prekey_list(str(device.user_jid()), device.device)
        if rec is None:
            return self._error(device, iq_id, IqErrorCode.NOT_FOUND, "no keys registered for this device")
        spk = SignedPreKey(rec.signed_prekey_id, rec.signed_prekey, rec.signed_prekey_signature)
        digest = KeyDigest(rec.registration_id, rec.identity, spk, tuple(i for i, _ in keys),
                           key_digest_hash(rec.identity, spk, [k for _, k in keys]))
        return [Out(device, digest_result(iq_id, str(device), digest))]

    def _fetch(self, device: Jid, iq_id: str, node: Node, now: float) -> list[Out]:
        wanted = list(dict.fromkeys(parse_bundle_query(node)))
        bundles: list[DeviceBundle] = []
        missing: list[Jid] = []
        pushes: list[_Push] = []
        with self.db.transaction() as tx:
            for jid in wanted:
                got = tx.take_bundle(str(jid.user_jid()), jid.device, now=now)
                if got is None:
                    missing.append(jid)
                    continue
                rec, prekey = got
                spk = SignedPreKey(rec.signed_prekey_id, rec.signed_prekey, rec.signed_prekey_signature)
                bundles.append(DeviceBundle.from_keys(jid, rec.registration_id, rec.identity, spk, prekey,
                                                      rec.device_identity))
                if prekey is not None:
                    left = tx.unused_prekeys(rec.user, rec.device)
                    if left < self.prekey_low_water:
                        pushes += self._notify(tx, [jid], EncryptCountNotification(left), now)
        return [Out(device, bundle_result(iq_id, str(device), bundles, missing))] + self._pushed(pushes)

    def _usync(self, device: Jid, iq_id: str, node: Node, now: float) -> list[Out]:
        query = UsyncQuery.from_node(node)
        users = []
        with self.db.transaction() as tx:
            for named in dict.fromkeys(query.users):
                user = _account(tx, named)  # a LID names the same account as its phone number
                devices = []
                for d in tx.devices(str(user)):
                    rec = tx.device(str(user), d)
                    devices.append((d, None if rec is None else _key_index(rec)))
                kil = tx.key_index_list(str(user))
                lid = tx.lid_of(str(user)) if named.is_phone_number else None
                users.append(UsyncDevices(named, tuple(devices), None if kil is None else kil[0],
                                          None if kil is None else int(kil[1]), None if lid is None else Jid.parse(lid)))
        return [Out(device, usync_result(iq_id, str(device), users))]

    def _md(self, device: Jid, iq_id: str, node: Node, now: float) -> list[Out]:
        account = str(device.user_jid())
        if node.child("key-index-list") is not None:
            kil = KeyIndexListUpload.from_node(node)
            if device.device != 0:
                return self._error(device, iq_id, IqErrorCode.NOT_ACCEPTABLE, "only the primary signs the key-index list")
            with self.db.transaction() as tx:
                tx.set_key_index_list(account, kil.signed, now=now)
            return [Out(device, iq_result(iq_id, str(device)))]
        up = DeviceIdentityUpload.from_node(node)
        device_identity_details(up.identity)  # must at least be one (it is stored as given, not verified)
        if device.device == 0:
            return self._error(device, iq_id, IqErrorCode.NOT_ACCEPTABLE, "a primary has no ADV identity")
        with self.db.transaction() as tx:
            if tx.device(account, device.device) is None:
                return self._error(device, iq_id, IqErrorCode.NOT_FOUND, "upload prekeys first")
            tx.set_device_identity(account, device.device, up.identity)
        return [Out(device, iq_result(iq_id, str(device)))]

    def _group_create(self, device: Jid, iq_id: str, node: Node, now: float) -> list[Out]:
        req = GroupCreate.from_node(node)
        creator = device.user_jid()
        with self.db.transaction() as tx:
            group = tx.group_by_key(str(creator), req.key)
            if group is None:  # (else a resend of a create already done: the same group)
                gid = f"{creator.user}-{tx.next_number('group')}"
                members = {str(creator)} | {str(p) for p in req.participants}
                tx.create_group(gid, req.subject, str(creator), req.key, sorted(members), now=now)
                group = tx.group(gid)
                assert group is not None
        return [Out(device, group_result(iq_id, str(device), _group_info(group)))]

    def _group_query(self, device: Jid, iq_id: str, node: Node, now: float) -> list[Out]:
        query = GroupQuery.from_node(node)
        with self.db.transaction() as tx:
            group = tx.group(query.group.user)
        if group is None:
            return self._error(device, iq_id, IqErrorCode.NOT_FOUND, "no such group")
        if str(device.user_jid()) not in group.members:
            return self._error(device, iq_id, IqErrorCode.FORBIDDEN, "not a participant")
        return [Out(device, group_result(iq_id, str(device), _group_info(group)))]

    # ------------------------------------------------------------------ messages
    def _message(self, device: Jid, node: Node, now: float) -> list[Out]:
        to = Jid.parse(node.attrs.get("to", ""))
        if to.is_group:
            return self._group_message(device, node, now)
        msg = OutgoingMessage.from_node(node)
        if not to.has_devices or not to.user:
            return [self._nack(device, node, NackCode.UNRECOGNIZED_STANZA)]
        with self.db.transaction() as tx:  # LIDs name the same accounts as their phone numbers
            to = _account(tx, to)
            targets: Sequence[tuple[Jid | None, Enc]] = [(None if j is None else _account(tx, j), e) for j, e in msg.encs]
        sender, peer = device.user_jid(), to.user_jid()
        if targets[0][0] is None:  # one enc without participants: for the device ``to`` names
            targets = [(to, targets[0][1])]
        if any(j is None or j.user_jid() not in (sender, peer) or j == device for j, _ in targets):
            return [self._nack(device, node, NackCode.UNRECOGNIZED_STANZA)]  # others' devices, or itself
        with self.db.transaction() as tx:
            stranger = self._stranger(tx, sender, peer)

            def deliveries(t: int) -> Iterable[tuple[Jid, Node, bool]]:
                for jid, enc in targets:
                    assert jid is not None
                    own = jid.user_jid() == sender
                    if tx.device(str(jid.user_jid()), jid.device) is None:
                        continue  # not (or no longer) registered: the phash tells the sender
                    inc = IncomingMessage(msg.id, str(device), t, (enc,), msg.type, None,
                                          str(peer) if own else None, msg.device_identity)
                    yield jid, inc.to_node(), stranger and not own

            outcome = self._accept(tx, device, "message", msg.id, _enc_variant(e for _, e in targets), now, deliveries)
            if outcome is not None and peer != sender:
                tx.note_correspondent(str(sender), str(peer), now=now)
            heard = [peer.with_device(d) for d in tx.devices(str(peer))]
            heard += [sender.with_device(d) for d in tx.devices(str(sender))] if peer != sender else []
        if outcome is None:
            return [self._nack(device, node, NackCode.RATE_LIMITED)]
        t, pushes = outcome
        phash = participant_hash(j for j in heard if j != device)
        ack = Ack(msg.id, msg.to, "message", phash=phash, timestamp=t, incoming=True)
        return [Out(device, ack.to_node())] + self._pushed(pushes)

    def _group_message(self, device: Jid, node: Node, now: float) -> list[Out]:
        msg = GroupMessage.from_node(node)
        with self.db.transaction() as tx:
            group = tx.group(msg.group.user)
            if group is None or str(device.user_jid()) not in group.members:
                return [self._nack(device, node, NackCode.UNRECOGNIZED_STANZA)]
            members = [Jid.parse(u) for u in group.members]
            member_devices = [u.with_device(d) for u in members for d in tx.devices(str(u))]
            listed = dict(msg.encs)
            if any(j.user_jid() not in members or j == device for j in listed):
                return [self._nack(device, node, NackCode.UNRECOGNIZED_STANZA)]

            def deliveries(t: int) -> Iterable[tuple[Jid, Node, bool]]:
                for jid in member_devices:
                    encs = ((listed[jid],) if jid in listed else ()) + ((msg.skmsg,) if msg.skmsg else ())
                    if jid == device or not encs:
                        continue
                    inc = IncomingMessage(msg.id, str(msg.group), t, encs, msg.type, str(device), None,
                                          msg.device_identity)
                    yield jid, inc.to_node(), False

            encs = list(listed.values()) + ([msg.skmsg] if msg.skmsg else [])
            outcome = self._accept(tx, device, "message", msg.id, _enc_variant(encs), now, deliveries)
        if outcome is None:
            return [self._nack(device, node, NackCode.RATE_LIMITED)]
        t, pushes = outcome
        phash = participant_hash(j for j in member_devices if j != device)
        ack = Ack(msg.id, str(msg.group), "message", phash=phash, timestamp=t, incoming=True)
        return [Out(device, ack.to_node())] + self._pushed(pushes)

    # ------------------------------------------------------------------ receipts
    def _receipt(self, device: Jid, node: Node, now: float) -> list[Out]:
        kind = node.attrs.get("type")
        to_text = node.attrs.get("to", "")
        canonical: Node
        if kind == "retry":
            retry = RetryReceipt.from_node(node)
            canonical, variant, count = retry.to_node(), f"retry/{retry.count}", str(retry.count)
            rid = retry.message_id
        else:
            receipt = Receipt.from_node(node)
            canonical, variant, count = receipt.to_node(), kind or "", ""
            rid = receipt.ids[0]
        if len(rid) > MAX_STANZA_ID_LEN or "from" in node.attrs:
            raise InvalidMessageError("receipt: id too long, or a from")
        chat = Jid.parse(to_text)
        sender = device.user_jid()
        attrs = {k: v for k, v in canonical.attrs.items() if k != "to"}
        with self.db.transaction() as tx:
            if chat.is_group:  # for the devices of the message's sender (participant), from the group
                author = Jid.parse(attrs.get("participant", ""))
                group = tx.group(chat.user)
                if group is None or str(sender) not in group.members or not author.has_devices:
                    return [self._nack(device, node, NackCode.UNRECOGNIZED_STANZA)]
                attrs |= {"from": str(chat), "participant": str(device)}
                stranger = False
            else:
                if not chat.has_devices or not chat.user:
                    return [self._nack(device, node, NackCode.UNRECOGNIZED_STANZA)]
                author = chat
                attrs["from"] = str(device)
                stranger = self._stranger(tx, sender, author.user_jid())
            if kind == "retry" and author.device:
                targets = [author]
            else:
                account = author.user_jid()
                targets = [account.with_device(d) for d in tx.devices(str(account))]

            def deliveries(t: int) -> Iterable[tuple[Jid, Node, bool]]:
                relayed = Node("receipt", attrs | {"t": str(t)}, canonical.content)
                for jid in targets:
                    if jid != device:
                        yield jid, relayed, stranger

            outcome = self._accept(tx, device, "receipt", rid, variant, now, deliveries, subtype=kind or "",
                                   mailbox_variant=count)
        if outcome is None:
            return [self._nack(device, node, NackCode.RATE_LIMITED)]
        t, pushes = outcome
        ack = Ack(rid, to_text, "receipt", type=kind, timestamp=t, incoming=True)
        return [Out(device, ack.to_node())] + self._pushed(pushes)

    # ------------------------------------------------------------------ acks from recipients
    def _ack(self, device: Jid, node: Node, now: float) -> list[Out]:
        ack = Ack.from_node(node)
        if ack.stanza_class in ("message", "receipt", "notification"):
            subtype = (ack.type or "") if ack.stanza_class == "receipt" else None
            with self.db.transaction() as tx:
                tx.acknowledge(str(device), ack.origin, ack.id, now=now, ttl=self.mailbox_ttl,
                               kind=ack.stanza_class, subtype=subtype)
        return []  # a nack (error set) also ends the delivery: the device gave up on it

    _HANDLERS: Final[dict[str, Callable[[ChatService, Jid, Node, float], list[Out]]]] = {
        "iq": _iq, "message": _message, "receipt": _receipt, "ack": _ack,
    }
    _IQS: Final[dict[tuple[str, str], Callable[[ChatService, Jid, str, Node, float], list[Out]]]] = {
        ("encrypt", "set"): _prekey_upload, ("usync", "get"): _usync, ("md", "set"): _md,
        ("w:g2", "set"): _group_create, ("w:g2", "get"): _group_query,
    }

    # ------------------------------------------------------------------ storage and fan-out
    def _accept(self, tx: ChatdTx, device: Jid, kind: str, sid: str, variant: str, now: float,
                deliveries: Callable[[int], Iterable[tuple[Jid, Node, bool]]], *, subtype: str = "",
                mailbox_variant: str | None = None) -> tuple[int, list[_Push]] | None:
        """Keep one copy per delivery (in ``tx``), or nothing if this stanza was accepted before (a
        resend: acked again under its first ``t``). None: a share is full, ``tx`` is rolled back."""
        seen = tx.received(str(device), kind, sid, variant, now=now)
        if seen is not None:
            return seen, []
        t = int(now)
        pushes = []
        for jid, out, stranger in deliveries(t):
            seq = self._store(tx, jid, out, origin=str(device), kind=kind, subtype=subtype,
                              variant=variant if mailbox_variant is None else mailbox_variant, now=now,
                              shares=self.shares, stranger=stranger)
            if seq is None:
                tx.abort()
                return None
            if seq:
                pushes.append(_Push(jid, seq, out))
        tx.mark_received(str(device), kind, sid, variant, acked_t=t, expires_at=now + self.mailbox_ttl)
        return t, pushes

    def _store(self, tx: ChatdTx, target: Jid, node: Node, *, origin: str, kind: str, subtype: str, variant: str,
               now: float, shares: Shares | None, stranger: bool) -> int | None:
        """Keep ``node`` for ``target``: its seq, 0 if it was there already, None if a share refuses it."""
        try:
            payload = encode_node(node)
        except InvalidArgumentError:
            raise InvalidMessageError("the stanza to deliver is too large") from None
        got = tx.enqueue(str(target), origin, node.attrs["id"], payload, now=now, ttl=self.mailbox_ttl, shares=shares,
                         stranger=stranger, kind=kind, subtype=subtype, variant=variant)
        return None if got is None else int(got)

    def _notify(self, tx: ChatdTx, targets: Iterable[Jid], note: DevicesNotification | IdentityChangeNotification
                | EncryptCountNotification, now: float) -> list[_Push]:
        """Keep one server notification (one new id) for each target; no share applies."""
        node = note.to_node(f"n{tx.next_number('notification')}", int(now))
        pushes = []
        for jid in targets:
            seq = self._store(tx, jid, node, origin=node.attrs["from"], kind="notification",
                              subtype=node.attrs["type"], variant="", now=now, shares=None, stranger=False)
            if seq:
                pushes.append(_Push(jid, seq, node))
        return pushes

    def _pushed(self, pushes: list[_Push]) -> list[Out]:
        """After the commit: what goes out at once, to online devices that have caught up."""
        outs = []
        for p in pushes:
            conns = self._online.get(p.target)
            if not conns:
                continue
            stripe = stanza_stripe(p.node, next(iter(conns.values())).stripes, p.target)
            for i in sorted(conns) if stripe is None else [stripe]:
                conn = conns.get(i)
                if conn is not None and conn.drained:
                    conn.cursor = max(conn.cursor, p.seq)
                    outs.append(Out(p.target, p.node, i))
        return outs

    @staticmethod
    def _audience(tx: ChatdTx, account: Jid, exclude: Jid) -> list[Jid]:
        """Who hears of a change to ``account``'s devices or keys: its other devices, and every device of
        its correspondents and of those who share a group with it."""
        users = {str(account)} | tx.correspondents(str(account)) | tx.co_members(str(account))
        out = []
        for user in sorted(users):
            jid = Jid.parse(user)
            out += [jid.with_device(d) for d in tx.devices(user)]
        return [j for j in out if j != exclude]

    @staticmethod
    def _stranger(tx: ChatdTx, sender: Jid, recipient: Jid) -> bool:
        """``sender`` counts in ``recipient``'s strangers' share: another account it never wrote to and
        shares no group with."""
        if sender == recipient or tx.wrote_to(str(recipient), str(sender)):
            return False
        return str(sender) not in tx.co_members(str(recipient))


def _account(tx: ChatdTx, user: Jid) -> Jid:
    """The phone-number account a LID names (the server keeps accounts under their numbers); any
    other JID as it is."""
    if user.is_lid:
        pn = tx.pn_of(str(user.user_jid()))
        if pn is not None:
            return Jid.parse(pn).with_device(user.device)
    return user


def _enc_variant(encs: Iterable[Enc]) -> str:
    """A resend answering a retry receipt (``enc count``) is a new stanza under the same id."""
    counts = [e.count for e in encs if e.count is not None]
    return str(max(counts)) if counts else ""


def _key_index(rec: DeviceRecord) -> int | None:
    if rec.device == 0 or rec.device_identity is None:
        return None
    try:
        return device_identity_details(rec.device_identity).key_index
    except InvalidMessageError:  # pragma: no cover - checked when it was stored
        return None


def _group_info(group: GroupRecord) -> GroupInfo:
    return GroupInfo(Jid(group.id, GROUP_SERVER), group.subject, Jid.parse(group.creator),
                     tuple(Jid.parse(m) for m in group.members))
