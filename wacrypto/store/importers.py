"""Import an account from a python-axolotl / yowsup SQLite database or from a whatsmeow database.

Both keep Signal records in libsignal's storage protobuf layout, so session, prekey, signed prekey and
sender-key blobs are validated and copied as they are. Only the key columns differ:

* python-axolotl / yowsup (``LiteAxolotlStore``): ``identities`` (``recipient_id`` -1 is the local
  identity: ``public_key`` 33 bytes, ``private_key`` 32 bytes, ``registration_id``, ``next_prekey_id``),
  ``sessions (recipient_id, device_id, record)``, ``prekeys (prekey_id, record)``,
  ``signed_prekeys (prekey_id, record)``, ``sender_keys (group_id, sender_id, record)``.
* whatsmeow (``store/sqlstore``): ``whatsmeow_device`` (``registration_id``, 32-byte private
  ``identity_key`` and ``signed_pre_key``, ``signed_pre_key_id``, ``signed_pre_key_sig``),
  ``whatsmeow_identity_keys (our_jid, their_id, identity)`` with 32-byte public keys,
  ``whatsmeow_pre_keys (jid, key_id, key)`` with 32-byte private keys,
  ``whatsmeow_sessions (our_jid, their_id, session)``, ``whatsmeow_sender_keys (our_jid, chat_id,
  sender_id, sender_key)``. Addresses are ``name:device``.

The result is a :class:`~wacrypto.store.dump.StoreDump`; load it into any store with ``store.load``.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from wacrypto.errors import InvalidArgumentError, InvalidMessageError, StoreError
from wacrypto.primitives.keys import KeyPair, PrivateKey, PublicKey
from wacrypto.signal.records import PreKeyRecord, SessionRecord, SignedPreKeyRecord, identity_to_bytes
from wacrypto.signal.senderkeys import SenderKeyRecord
from wacrypto.store.dump import StoreDump
from wacrypto.store.protocols import LocalIdentity

__all__ = ["import_axolotl", "import_whatsmeow", "parse_address"]

_NEXT_PREKEY = "next_prekey_id"
_SIGNED_CURRENT = "signed_prekey_current"


def parse_address(text: str, default_device: int = 1) -> str:
    """``name:device`` (libsignal-go) or ``name.device`` -> our ``name.device`` form."""
    for sep in (":", "."):
        name, s, dev = text.rpartition(sep)
        if s and name and dev.isdigit():
            return f"{name}.{int(dev)}"
    return f"{text}.{default_device}"


def _pub33(b: bytes) -> bytes:
    b = bytes(b)
    if len(b) == 32:
        b = b"\x05" + b
    PublicKey.from_bytes(b)  # validates
    return b


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {str(r[1]) for r in conn.execute(f"PRAGMA table_info({table})")}


def import_axolotl(path: str) -> StoreDump:
    """Read a python-axolotl/yowsup SQLite database (opened read-only)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        conn.execute("SELECT 1 FROM identities LIMIT 1")
    except sqlite3.Error as exc:
        raise StoreError(f"{path} is not a python-axolotl database: {exc}") from None
    d = StoreDump()
    try:
        idcols = _columns(conn, "identities")
        nxt = "next_prekey_id" if "next_prekey_id" in idcols else "NULL"
        remote_ids: dict[str, bytes] = {}
        for rid, reg, pub, priv, next_id in conn.execute(
            f"SELECT recipient_id, registration_id, public_key, private_key, {nxt} FROM identities"
        ):
            if str(rid) == "-1":
                pair = KeyPair(PrivateKey(bytes(priv)))
                if pub is not None and _pub33(pub) != pair.public.to_bytes():
                    raise InvalidMessageError("local identity: public key does not match the private key")
                d.local = LocalIdentity(identity_to_bytes(pair), int(reg or 0))
                if next_id:
                    d.meta[_NEXT_PREKEY] = int(next_id).to_bytes(4, "big")
            elif pub is not None:
                remote_ids[str(rid)] = _pub33(pub)
        for rid, dev, rec in conn.execute("SELECT recipient_id, device_id, record FROM sessions"):
            r = SessionRecord.from_bytes(bytes(rec))
            addr = f"{rid}.{int(dev if dev is not None else 1)}"
            d.sessions[addr] = r.to_bytes()
            ident = remote_ids.get(str(rid))
            if ident is None and r.has_current_state():
                ident = bytes(r.current.remote_identity_public)
            if ident:
                d.identities[addr] = ident
        for rid, ident in remote_ids.items():
            d.identities.setdefault(f"{rid}.1", ident)
        for pid, rec in conn.execute("SELECT prekey_id, record FROM prekeys"):
            d.prekeys[int(pid)] = PreKeyRecord.from_bytes(bytes(rec)).to_bytes()
        best: tuple[int, int] | None = None
        for pid, rec in conn.execute("SELECT prekey_id, record FROM signed_prekeys"):
            spk = SignedPreKeyRecord.from_bytes(bytes(rec))
            d.signed_prekeys[int(pid)] = spk.to_bytes()
            if best is None or (spk.timestamp, spk.id) > best:
                best = (spk.timestamp, spk.id)
        if best is not None:
            d.meta[_SIGNED_CURRENT] = best[1].to_bytes(4, "big")
        tables = {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "sender_keys" in tables:
            for gid, sid, rec in conn.execute("SELECT group_id, sender_id, record FROM sender_keys"):
                SenderKeyRecord.from_bytes(bytes(rec))
                d.sender_keys[(str(gid), parse_address(str(sid)))] = bytes(rec)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read python-axolotl database {path}: {exc}") from None
    finally:
        conn.close()
    return d


def _query_whatsmeow(url: str, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    from wacrypto.store.sql.dialect import dialect_for
    from wacrypto.store.sql.url import parse_store_url

    if "://" not in url:
        url = "sqlite:///" + url
    u = parse_store_url(url)
    if u.backend == "sqlite":
        conn = sqlite3.connect(f"file:{u.path}?mode=ro", uri=True)
        try:
            return [tuple(r) for r in conn.execute(sql, params)]
        finally:
            conn.close()
    c = dialect_for(u, busy_timeout_ms=10_000).connect()
    try:
        return c.query(sql, params)
    finally:
        c.close()


def import_whatsmeow(url: str, jid: str | None = None) -> StoreDump:
    """Read one device of a whatsmeow database (a path or sqlite:///, postgresql:// URL)."""

    def q(sql: str, *params: Any) -> list[tuple[Any, ...]]:
        try:
            return _query_whatsmeow(url, sql, params)
        except (sqlite3.Error, StoreError) as exc:
            raise StoreError(f"cannot read whatsmeow database: {exc}") from None
        except Exception as exc:  # driver errors of a server database
            raise StoreError(f"cannot read whatsmeow database: {type(exc).__name__}: {exc}") from None

    devices = q("SELECT jid, registration_id, identity_key, signed_pre_key, signed_pre_key_id, signed_pre_key_sig FROM whatsmeow_device")
    if jid is not None:
        devices = [r for r in devices if r[0] == jid]
    if not devices:
        raise InvalidArgumentError("no whatsmeow device found" + (f" with jid {jid}" if jid else ""))
    if len(devices) > 1:
        raise InvalidArgumentError("several whatsmeow devices: choose one with jid=" + ", ".join(str(r[0]) for r in devices))
    our, reg, ik, spk, spk_id, spk_sig = devices[0]
    ph = "?"  # translated per driver
    d = StoreDump()
    pair = KeyPair(PrivateKey(bytes(ik)))
    d.local = LocalIdentity(identity_to_bytes(pair), int(reg))
    d.signed_prekeys[int(spk_id)] = SignedPreKeyRecord(int(spk_id), KeyPair(PrivateKey(bytes(spk))), bytes(spk_sig), 0).to_bytes()
    d.meta[_SIGNED_CURRENT] = int(spk_id).to_bytes(4, "big")
    top = 0
    for kid, key in q(f"SELECT key_id, key FROM whatsmeow_pre_keys WHERE jid = {ph}", our):
        d.prekeys[int(kid)] = PreKeyRecord(int(kid), KeyPair(PrivateKey(bytes(key)))).to_bytes()
        top = max(top, int(kid))
    if top:
        d.meta[_NEXT_PREKEY] = (top + 1).to_bytes(4, "big")
    for their, ident in q(f"SELECT their_id, identity FROM whatsmeow_identity_keys WHERE our_jid = {ph}", our):
        d.identities[parse_address(str(their))] = _pub33(bytes(ident))
    for their, sess in q(f"SELECT their_id, session FROM whatsmeow_sessions WHERE our_jid = {ph}", our):
        if sess is None:
            continue
        d.sessions[parse_address(str(their))] = SessionRecord.from_bytes(bytes(sess)).to_bytes()
    for chat, sender, sk in q(f"SELECT chat_id, sender_id, sender_key FROM whatsmeow_sender_keys WHERE our_jid = {ph}", our):
        SenderKeyRecord.from_bytes(bytes(sk))
        d.sender_keys[(str(chat), parse_address(str(sender)))] = bytes(sk)
    return d
