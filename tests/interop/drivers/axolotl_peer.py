#!/usr/bin/env python3
"""python-axolotl 0.2.3 as an interop peer speaking the JSON-lines protocol of
``docs/peer-protocol.md`` (one local user per process, in-memory stores).

Run it with the interpreter of ``.venv-axolotl`` (see ``tests/interop/setup.sh``)::

    .venv-axolotl/bin/python tests/interop/drivers/axolotl_peer.py

Known quirk worked around here (not in the library): axolotl reads the absent
``pre_key_id`` of a PreKeySignalMessage as 0 (proto2 default) and then fails to
load prekey 0, so it cannot receive a session started from a bundle without a
one-time prekey. The driver re-reads the field presence and passes ``None``.
"""

from __future__ import annotations

import os

if "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION" not in os.environ:
    # axolotl's generated *_pb2 modules predate protobuf 3.19: they load with the C++ runtime of
    # protobuf <= 3.20.x (fastest; wheels exist for CPython <= 3.10) or the pure-Python runtime,
    # never with upb (protobuf >= 4.21). Pick the fastest one present. Must precede any protobuf import.
    import importlib.util

    try:
        _has_cpp = importlib.util.find_spec("google.protobuf.pyext._message") is not None
    except ImportError:
        _has_cpp = False
    os.environ["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = "cpp" if _has_cpp else "python"

import json  # noqa: E402
import logging  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from importlib import metadata  # noqa: E402
from typing import Any, Callable  # noqa: E402

import axolotl_curve25519 as _curve  # noqa: E402
from axolotl.axolotladdress import AxolotlAddress  # noqa: E402
from axolotl.duplicatemessagexception import DuplicateMessageException  # noqa: E402
from axolotl.ecc.curve import Curve  # noqa: E402
from axolotl.ecc.djbec import DjbECPrivateKey, DjbECPublicKey  # noqa: E402
from axolotl.ecc.eckeypair import ECKeyPair  # noqa: E402
from axolotl.groups.groupcipher import GroupCipher  # noqa: E402
from axolotl.groups.groupsessionbuilder import GroupSessionBuilder  # noqa: E402
from axolotl.groups.senderkeyname import SenderKeyName  # noqa: E402
from axolotl.identitykey import IdentityKey  # noqa: E402
from axolotl.identitykeypair import IdentityKeyPair  # noqa: E402
from axolotl.invalidkeyexception import InvalidKeyException  # noqa: E402
from axolotl.invalidkeyidexception import InvalidKeyIdException  # noqa: E402
from axolotl.invalidmessageexception import InvalidMessageException  # noqa: E402
from axolotl.invalidversionexception import InvalidVersionException  # noqa: E402
from axolotl.legacymessageexception import LegacyMessageException  # noqa: E402
from axolotl.nosessionexception import NoSessionException  # noqa: E402
from axolotl.protocol import whisperprotos_pb2  # noqa: E402
from axolotl.protocol.prekeywhispermessage import PreKeyWhisperMessage  # noqa: E402
from axolotl.protocol.senderkeydistributionmessage import SenderKeyDistributionMessage  # noqa: E402
from axolotl.protocol.whispermessage import WhisperMessage  # noqa: E402
from axolotl.sessionbuilder import SessionBuilder  # noqa: E402
from axolotl.sessioncipher import SessionCipher  # noqa: E402
from axolotl.state.prekeybundle import PreKeyBundle  # noqa: E402
from axolotl.state.prekeyrecord import PreKeyRecord  # noqa: E402
from axolotl.state.sessionrecord import SessionRecord  # noqa: E402
from axolotl.state.signedprekeyrecord import SignedPreKeyRecord  # noqa: E402
from axolotl.tests.groups.inmemorysenderkeystore import InMemorySenderKeyStore  # noqa: E402
from axolotl.tests.inmemoryaxolotlstore import InMemoryAxolotlStore  # noqa: E402
from axolotl.untrustedidentityexception import UntrustedIdentityException  # noqa: E402
from axolotl.util.keyhelper import KeyHelper  # noqa: E402
from google.protobuf.internal import api_implementation  # noqa: E402
from google.protobuf.message import DecodeError  # noqa: E402

log = logging.getLogger("axolotl_peer")

MAX_ID = 0xFFFFFF


class PeerFailure(Exception):
    """An error reported to the harness as ``"<name>: <message>"``."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


# --------------------------------------------------------------------------- helpers
def _hex(b: bytes | bytearray) -> str:
    return bytes(b).hex()


def _unhex(req: dict[str, Any], field: str, length: int | None = None) -> bytes:
    if field not in req or req[field] is None:
        raise PeerFailure("InvalidArgumentError", f"missing field {field!r}")
    try:
        value = bytes.fromhex(req[field])
    except (TypeError, ValueError):
        raise PeerFailure("InvalidArgumentError", f"field {field!r} is not hex") from None
    if length is not None and len(value) != length:
        raise PeerFailure("InvalidArgumentError", f"field {field!r} must be {length} bytes")
    return value


def _clamp(priv: bytes) -> bytes:
    b = bytearray(priv)
    b[0] &= 248
    b[31] &= 127
    b[31] |= 64
    return bytes(b)


def _private(raw: bytes) -> DjbECPrivateKey:
    # X25519 and XEdDSA both use clamp(priv): clamping first gives the same public key
    # and the same (verifiable) signatures as every other implementation.
    return DjbECPrivateKey(_clamp(raw))


def _public(raw: bytes) -> DjbECPublicKey:
    if len(raw) != 33 or raw[0] != 0x05:
        raise PeerFailure("InvalidKeyError", "public key must be 33 bytes starting with 0x05")
    return DjbECPublicKey(bytes(raw[1:]))


def _keypair(priv: bytes | None) -> ECKeyPair:
    if priv is None:
        return Curve.generateKeyPair()
    p = _private(priv)
    return ECKeyPair(DjbECPublicKey(Curve.generatePublicKey(p.getPrivateKey())), p)


def _address(req: dict[str, Any], name_field: str = "remote", device_field: str = "remote_device") -> tuple[str, int]:
    name = req.get(name_field)
    if not isinstance(name, str) or not name:
        raise PeerFailure("InvalidArgumentError", f"missing field {name_field!r}")
    device = req.get(device_field, 1)
    if not isinstance(device, int):
        raise PeerFailure("InvalidArgumentError", f"field {device_field!r} must be an int")
    return name, device


def _parse_prekey_message(body: bytes) -> PreKeyWhisperMessage:
    msg = PreKeyWhisperMessage(serialized=body)
    # Workaround: axolotl takes the proto2 default 0 for an absent pre_key_id.
    inner = whisperprotos_pb2.PreKeyWhisperMessage()
    inner.ParseFromString(body[1:])
    if not inner.HasField("preKeyId"):
        msg.preKeyId = None
    return msg


# --------------------------------------------------------------------------- the peer
class AxolotlPeer:
    def __init__(self) -> None:
        self._reset(name="peer", device_id=1, registration_id=KeyHelper.generateRegistrationId())
        self._fresh_identity({})

    def _reset(self, name: str, device_id: int, registration_id: int) -> None:
        self.name = name
        self.device_id = device_id
        self.store = InMemoryAxolotlStore()
        self.store.identityKeyStore.localRegistrationId = registration_id
        self.sender_keys = InMemorySenderKeyStore()
        self.current_prekey_id: int | None = None
        self.signed_prekey_id = 1

    # ----------------------------------------------------------------- account
    def _fresh_identity(self, req: dict[str, Any]) -> dict[str, Any]:
        name = req.get("name") or "peer"
        device_id = int(req.get("device_id", 1))
        reg_id = req.get("registration_id")
        if reg_id is None:
            reg_id = KeyHelper.generateRegistrationId()
        self._reset(str(name), device_id, int(reg_id))

        ident_priv = _unhex(req, "identity_private", 32) if req.get("identity_private") else None
        ident = _keypair(ident_priv)
        self.store.identityKeyStore.identityKeyPair = IdentityKeyPair(
            IdentityKey(ident.getPublicKey()), ident.getPrivateKey()
        )

        spk_id = int(req.get("signed_prekey_id", 1))
        spk_priv = _unhex(req, "signed_prekey_private", 32) if req.get("signed_prekey_private") else None
        spk = _keypair(spk_priv)
        if req.get("signed_prekey_signature"):
            sig = _unhex(req, "signed_prekey_signature", 64)
        else:
            sig = Curve.calculateSignature(ident.getPrivateKey(), spk.getPublicKey().serialize())
        self.store.storeSignedPreKey(
            spk_id, SignedPreKeyRecord(spk_id, int(time.time() * 1000), spk, bytes(sig))
        )
        self.signed_prekey_id = spk_id

        pk = self._new_prekey(
            int(req.get("prekey_id", 1)),
            _unhex(req, "prekey_private", 32) if req.get("prekey_private") else None,
        )
        return {
            "name": self.name,
            "device_id": self.device_id,
            "registration_id": self.store.getLocalRegistrationId(),
            "identity_public": _hex(ident.getPublicKey().serialize()),
            "identity_private": _hex(ident_priv if ident_priv is not None else ident.getPrivateKey().serialize()),
            "signed_prekey_id": spk_id,
            "signed_prekey_public": _hex(spk.getPublicKey().serialize()),
            "signed_prekey_private": _hex(spk_priv if spk_priv is not None else spk.getPrivateKey().serialize()),
            "signed_prekey_signature": _hex(sig),
            **pk,
        }

    def _new_prekey(self, prekey_id: int, priv: bytes | None) -> dict[str, Any]:
        if not 0 < prekey_id <= MAX_ID:
            raise PeerFailure("InvalidArgumentError", "prekey_id must be in 1..2^24-1")
        kp = _keypair(priv)
        self.store.storePreKey(prekey_id, PreKeyRecord(prekey_id, kp))
        self.current_prekey_id = prekey_id
        return {
            "prekey_id": prekey_id,
            "prekey_public": _hex(kp.getPublicKey().serialize()),
            "prekey_private": _hex(priv if priv is not None else kp.getPrivateKey().serialize()),
        }

    def _next_prekey_id(self) -> int:
        cur = self.current_prekey_id or 0
        return cur % MAX_ID + 1

    # ----------------------------------------------------------------- commands
    def cmd_info(self, req: dict[str, Any]) -> dict[str, Any]:
        return {
            "implementation": "python-axolotl",
            "version": metadata.version("python-axolotl"),
            "capabilities": ["session", "group", "primitives"],
            "protobuf": metadata.version("protobuf"),
            "protobuf_implementation": api_implementation.Type(),
        }

    def cmd_new_identity(self, req: dict[str, Any]) -> dict[str, Any]:
        return self._fresh_identity(req)

    def cmd_new_prekey(self, req: dict[str, Any]) -> dict[str, Any]:
        prekey_id = req.get("prekey_id")
        prekey_id = self._next_prekey_id() if prekey_id is None else int(prekey_id)
        return self._new_prekey(prekey_id, _unhex(req, "prekey_private", 32) if req.get("prekey_private") else None)

    def cmd_bundle(self, req: dict[str, Any]) -> dict[str, Any]:
        spk = self.store.loadSignedPreKey(self.signed_prekey_id)
        out: dict[str, Any] = {
            "registration_id": self.store.getLocalRegistrationId(),
            "device_id": self.device_id,
            "identity_key": _hex(self.store.getIdentityKeyPair().getPublicKey().serialize()),
            "signed_prekey_id": spk.getId(),
            "signed_prekey": _hex(spk.getKeyPair().getPublicKey().serialize()),
            "signed_prekey_signature": _hex(spk.getSignature()),
        }
        if req.get("with_prekey", True):
            if self.current_prekey_id is None or not self.store.containsPreKey(self.current_prekey_id):
                # The last one was consumed: hand out a fresh one, like a server would.
                self._new_prekey(self._next_prekey_id(), None)
            rec = self.store.loadPreKey(self.current_prekey_id)
            out["prekey_id"] = rec.getId()
            out["prekey"] = _hex(rec.getKeyPair().getPublicKey().serialize())
        return out

    def cmd_process_bundle(self, req: dict[str, Any]) -> dict[str, Any]:
        name, device = _address(req)
        b = req.get("bundle")
        if not isinstance(b, dict):
            raise PeerFailure("InvalidArgumentError", "missing field 'bundle'")
        has_pk = b.get("prekey") is not None
        bundle = PreKeyBundle(
            int(b["registration_id"]),
            int(b.get("device_id", device)),
            int(b["prekey_id"]) if has_pk else None,
            _public(_unhex(b, "prekey")) if has_pk else None,
            int(b["signed_prekey_id"]),
            _public(_unhex(b, "signed_prekey")),
            _unhex(b, "signed_prekey_signature", 64),
            IdentityKey(_public(_unhex(b, "identity_key"))),
        )
        SessionBuilder(self.store, self.store, self.store, self.store, name, device).processPreKeyBundle(bundle)
        return {}

    def _cipher(self, name: str, device: int) -> SessionCipher:
        return SessionCipher(self.store, self.store, self.store, self.store, name, device)

    def cmd_encrypt(self, req: dict[str, Any]) -> dict[str, Any]:
        name, device = _address(req)
        if not self._has_session(name, device):
            raise PeerFailure("NoSessionError", f"no session with {name}.{device}")
        msg = self._cipher(name, device).encrypt(_unhex(req, "plaintext"))
        return {"type": msg.getType(), "body": _hex(msg.serialize())}

    def cmd_decrypt(self, req: dict[str, Any]) -> dict[str, Any]:
        name, device = _address(req)
        mtype = int(req.get("type", 2))
        body = _unhex(req, "body")
        if len(body) < 2:
            raise PeerFailure("InvalidMessageError", "message too short")
        cipher = self._cipher(name, device)
        if mtype == 3:
            try:
                msg = _parse_prekey_message(body)
            except (InvalidMessageException, InvalidKeyException, DecodeError, InvalidVersionException,
                    LegacyMessageException, IndexError, ValueError) as e:
                raise PeerFailure(_parse_error_name(e), f"bad PreKeySignalMessage: {e}") from None
            plaintext = cipher.decryptPkmsg(msg)
        elif mtype in (1, 2):
            if len(body) < 1 + 8 + 2:
                raise PeerFailure("InvalidMessageError", "message too short")
            try:
                msg = WhisperMessage(serialized=body)
            except (InvalidMessageException, InvalidKeyException, DecodeError, LegacyMessageException,
                    IndexError, ValueError) as e:
                raise PeerFailure(_parse_error_name(e), f"bad SignalMessage: {e}") from None
            plaintext = cipher.decryptMsg(msg)
        else:
            raise PeerFailure("InvalidArgumentError", f"unknown message type {mtype}")
        return {"plaintext": _hex(plaintext)}

    def _has_session(self, name: str, device: int) -> bool:
        if not self.store.containsSession(name, device):
            return False
        return self.store.loadSession(name, device).getSessionState().hasSenderChain()

    def cmd_has_session(self, req: dict[str, Any]) -> dict[str, Any]:
        name, device = _address(req)
        return {"has_session": self._has_session(name, device)}

    def cmd_export_session(self, req: dict[str, Any]) -> dict[str, Any]:
        name, device = _address(req)
        if not self.store.containsSession(name, device):
            raise PeerFailure("NoSessionError", f"no session with {name}.{device}")
        return {"record": _hex(self.store.sessionStore.sessions[(name, device)])}

    def cmd_import_session(self, req: dict[str, Any]) -> dict[str, Any]:
        name, device = _address(req)
        raw = _unhex(req, "record")
        try:
            record = SessionRecord(serialized=raw)
            record.serialize()
        except Exception as e:  # noqa: BLE001 - any parse failure is a bad record
            raise PeerFailure("InvalidMessageError", f"bad session record: {e}") from None
        self.store.storeSession(name, device, record)
        if req.get("remote_identity"):
            self.store.saveIdentity(name, IdentityKey(_public(_unhex(req, "remote_identity"))))
        return {}

    # ----------------------------------------------------------------- groups
    def _own_sender_key_name(self, group_id: str) -> SenderKeyName:
        return SenderKeyName(group_id, AxolotlAddress(self.name, self.device_id))

    def _group_id(self, req: dict[str, Any]) -> str:
        gid = req.get("group_id")
        if not isinstance(gid, str) or not gid:
            raise PeerFailure("InvalidArgumentError", "missing field 'group_id'")
        return gid

    def cmd_group_create(self, req: dict[str, Any]) -> dict[str, Any]:
        skdm = GroupSessionBuilder(self.sender_keys).create(self._own_sender_key_name(self._group_id(req)))
        return {"distribution": _hex(skdm.serialize())}

    def cmd_group_process(self, req: dict[str, Any]) -> dict[str, Any]:
        gid = self._group_id(req)
        sender, device = _address(req, "sender", "sender_device")
        try:
            skdm = SenderKeyDistributionMessage(serialized=_unhex(req, "distribution"))
        except InvalidMessageException as e:
            raise PeerFailure("InvalidMessageError", f"bad SenderKeyDistributionMessage: {e}") from None
        GroupSessionBuilder(self.sender_keys).process(SenderKeyName(gid, AxolotlAddress(sender, device)), skdm)
        return {}

    def cmd_group_encrypt(self, req: dict[str, Any]) -> dict[str, Any]:
        name = self._own_sender_key_name(self._group_id(req))
        if self.sender_keys.loadSenderKey(name).isEmpty():
            raise PeerFailure("NoSenderKeyError", "no own sender key for this group: call group_create first")
        body = GroupCipher(self.sender_keys, name).encrypt(_unhex(req, "plaintext"))
        return {"type": 7, "body": _hex(body)}

    def cmd_group_decrypt(self, req: dict[str, Any]) -> dict[str, Any]:
        gid = self._group_id(req)
        sender, device = _address(req, "sender", "sender_device")
        name = SenderKeyName(gid, AxolotlAddress(sender, device))
        body = _unhex(req, "body")
        if len(body) < 1 + 64 + 2:
            raise PeerFailure("InvalidMessageError", "message too short")
        try:
            plaintext = GroupCipher(self.sender_keys, name).decrypt(body)
        except NoSessionException as e:
            raise PeerFailure("NoSenderKeyError", str(e)) from None
        except InvalidMessageException as e:
            text = str(e)
            if "signature" in text.lower():
                raise PeerFailure("InvalidSignatureError", text) from None
            if "No keys for" in text or "No key state" in text:
                raise PeerFailure("NoSenderKeyError", text) from None
            if "Incomplete" in text or "Error parsing" in text or "version" in text.lower():
                raise PeerFailure("InvalidMessageError", text) from None
            raise PeerFailure("DecryptionError", text) from None
        return {"plaintext": _hex(plaintext)}

    # ----------------------------------------------------------------- primitives
    def cmd_sign(self, req: dict[str, Any]) -> dict[str, Any]:
        priv = _private(_unhex(req, "private", 32))
        return {"signature": _hex(Curve.calculateSignature(priv, _unhex(req, "message")))}

    def cmd_verify(self, req: dict[str, Any]) -> dict[str, Any]:
        pub = _public(_unhex(req, "public"))
        sig = _unhex(req, "signature")
        if len(sig) != 64:
            return {"valid": False}
        return {"valid": bool(Curve.verifySignature(pub, _unhex(req, "message"), sig))}

    def cmd_agree(self, req: dict[str, Any]) -> dict[str, Any]:
        priv = _private(_unhex(req, "private", 32))
        pub = _public(_unhex(req, "public"))
        shared = Curve.calculateAgreement(pub, priv)
        return {"shared": _hex(shared)}

    def cmd_public_key(self, req: dict[str, Any]) -> dict[str, Any]:
        priv = _private(_unhex(req, "private", 32))
        return {"public": _hex(DjbECPublicKey(_curve.generatePublicKey(priv.getPrivateKey())).serialize())}

    def cmd_fingerprint(self, req: dict[str, Any]) -> dict[str, Any]:
        raise PeerFailure("UnsupportedError", "python-axolotl 0.2.3 has no fingerprint (safety number) code")


def _parse_error_name(e: BaseException) -> str:
    if isinstance(e, (LegacyMessageException, InvalidVersionException)):
        return "LegacyMessageError"
    if isinstance(e, InvalidKeyException):
        return "InvalidKeyError"
    if isinstance(e, InvalidMessageException) and "version" in str(e).lower():
        return "LegacyMessageError"
    return "InvalidMessageError"


def _map_exception(e: BaseException) -> tuple[str, str]:
    """axolotl exception -> (protocol error name, message)."""
    text = str(e) or type(e).__name__
    if isinstance(e, PeerFailure):
        return e.name, text
    if isinstance(e, DuplicateMessageException):
        return "DuplicateMessageError", text
    if isinstance(e, UntrustedIdentityException):
        return "UntrustedIdentityError", f"untrusted identity key for {e.getName()}"
    if isinstance(e, NoSessionException):
        return "NoSessionError", text
    if isinstance(e, InvalidKeyIdException):
        if "signed" in text.lower():
            return "NoSignedPreKeyError", text
        return "NoPreKeyError", text
    if isinstance(e, InvalidKeyException):
        if "signature" in text.lower():
            return "InvalidSignatureError", text
        return "InvalidKeyError", text
    if isinstance(e, (LegacyMessageException, InvalidVersionException)):
        return "LegacyMessageError", text
    if isinstance(e, InvalidMessageException):
        if "Over 2000 messages" in text:
            return "TooFarAheadError", text
        if "version" in text.lower():
            return "LegacyMessageError", text
        if "Incomplete" in text:
            return "InvalidMessageError", text
        return "DecryptionError", text  # bad MAC, uninitialized session, ...
    if isinstance(e, ValueError) and "padding" in text.lower():
        return "DecryptionError", text
    if isinstance(e, DecodeError):
        return "InvalidMessageError", text
    if isinstance(e, (KeyError, TypeError, ValueError)):
        return "InvalidArgumentError", f"{type(e).__name__}: {text}"
    return "InternalError", f"{type(e).__name__}: {text}"


def main() -> int:
    logging.basicConfig(stream=sys.stderr, level=os.environ.get("PEER_LOG", "WARNING"))
    random.seed()
    peer = AxolotlPeer()
    handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
        n[4:]: getattr(peer, n) for n in dir(peer) if n.startswith("cmd_")
    }
    out = sys.stdout
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        rid: Any = None
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise PeerFailure("InvalidArgumentError", "request must be a JSON object")
            rid = req.get("id")
            cmd = req.get("cmd")
            handler = handlers.get(cmd) if isinstance(cmd, str) else None
            if handler is None:
                raise PeerFailure("UnsupportedError", f"unknown command {cmd!r}")
            resp: dict[str, Any] = {"id": rid, "ok": True, "result": handler(req)}
        except json.JSONDecodeError as e:
            resp = {"id": None, "ok": False, "error": f"InvalidArgumentError: bad JSON: {e}"}
        except Exception as e:  # noqa: BLE001 - errors never kill the peer
            name, text = _map_exception(e)
            if name == "InternalError":
                log.error("internal error: %s", traceback.format_exc())
            resp = {"id": rid, "ok": False, "error": f"{name}: {text}"}
        out.write(json.dumps(resp) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
