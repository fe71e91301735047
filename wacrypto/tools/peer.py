"""`wacrypto peer`: the library as a JSON-lines subprocess (see the peer protocol document).

One JSON request per stdin line, one response per stdout line, strictly in order. Logs go to stderr.
State lives in memory, or in a key store given by URL, where it survives restarts.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, Final

import trio

import wacrypto
from wacrypto.session import account
from wacrypto.address import Address
from wacrypto.session.cipher import SessionCipher
from wacrypto.errors import InvalidArgumentError, InvalidMessageError, WacryptoError
from wacrypto.primitives.keys import KeyPair, PrivateKey, PublicKey, x25519
from wacrypto.primitives.xeddsa import xeddsa_verify
from wacrypto.signal.bundle import PreKeyBundle
from wacrypto.signal.records import PreKeyRecord, SignedPreKeyRecord
from wacrypto.store.memory import MemoryKeyStore
from wacrypto.store.protocols import KeyStore

__all__ = ["Peer", "run_peer"]

_META_PEER: Final = "peer_profile"

Handler = Callable[["Peer", dict[str, Any]], Awaitable[dict[str, Any]]]
COMMANDS: dict[str, Handler] = {}


def command(name: str) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        COMMANDS[name] = fn
        return fn

    return deco


def _hex(req: dict[str, Any], name: str, *, optional: bool = False) -> bytes | None:
    v = req.get(name)
    if v is None:
        if optional:
            return None
        raise InvalidArgumentError(f"missing field {name!r}")
    if not isinstance(v, str):
        raise InvalidArgumentError(f"{name} must be a hex string")
    try:
        return bytes.fromhex(v)
    except ValueError:
        raise InvalidArgumentError(f"{name} is not valid hex") from None


def _req_hex(req: dict[str, Any], name: str) -> bytes:
    v = _hex(req, name)
    assert v is not None
    return v


def _int(req: dict[str, Any], name: str, default: int | None = None) -> int:
    v = req.get(name, default)
    if not isinstance(v, int) or isinstance(v, bool):
        raise InvalidArgumentError(f"{name} must be an integer")
    return v


def _str(req: dict[str, Any], name: str) -> str:
    v = req.get(name)
    if not isinstance(v, str) or not v:
        raise InvalidArgumentError(f"{name} must be a non-empty string")
    return v


def _address(req: dict[str, Any], name: str = "remote", device: str = "remote_device") -> Address:
    return Address(_str(req, name), _int(req, device, 1))


class Peer:
    """State of one local user driven through the peer protocol."""

    def __init__(self, store: KeyStore | None = None, *, store_factory: Callable[[], Awaitable[KeyStore]] | None = None) -> None:
        self.store: KeyStore = store if store is not None else MemoryKeyStore()
        self._store_factory = store_factory
        self.cipher = SessionCipher(self.store)
        self.profile: dict[str, Any] = {}
        self.extra: dict[str, Any] = {}

    async def load_profile(self) -> None:
        async with self.store.transaction() as tx:
            raw = await tx.get_meta(_META_PEER)
        self.profile = json.loads(raw) if raw else {}

    async def save_profile(self) -> None:
        async with self.store.transaction() as tx:
            await tx.set_meta(_META_PEER, json.dumps(self.profile).encode())

    async def reset(self) -> None:
        if self._store_factory is not None:
            await self.store.wipe()
        else:
            self.store = MemoryKeyStore()
        self.cipher = SessionCipher(self.store)
        self.profile = {}
        self.extra = {}

    @property
    def name(self) -> str:
        return str(self.profile.get("name", "local"))

    @property
    def device_id(self) -> int:
        return int(self.profile.get("device_id", 1))

    def require_identity(self) -> None:
        if not self.profile:
            raise InvalidArgumentError("call new_identity first")

    async def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        cmd = req.get("cmd")
        if not isinstance(cmd, str) or cmd not in COMMANDS:
            raise InvalidArgumentError(f"unknown command {cmd!r}")
        return await COMMANDS[cmd](self, req)


@command("info")
async def _info(peer: Peer, req: dict[str, Any]) -> dict[str, Any]:
    caps = ["session", "primitives", "export_import"]
    if "group_create" in COMMANDS:
        caps.append("group")
    if "fingerprint" in COMMANDS:
        caps.append("fingerprint")
    return {"implementation": "wacrypto", "version": wacrypto.__version__, "capabilities": caps}


@command("new_identity")
async def _new_identity(peer: Peer, req: dict[str, Any]) -> dict[str, Any]:
    name = req.get("name", "local")
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError("name must be a non-empty string")
    device_id = _int(req, "device_id", 1)
    reg = req.get("registration_id")
    if reg is not None and (not isinstance(reg, int) or not 0 <= reg <= 0xFFFFFFFF):
        raise InvalidArgumentError("registration_id must be a uint32")
    ik = _hex(req, "identity_private", optional=True)
    spk_id = _int(req, "signed_prekey_id", 1)
    spk_priv = _hex(req, "signed_prekey_private", optional=True)
    spk_sig = _hex(req, "signed_prekey_signature", optional=True)
    pk_id = _int(req, "prekey_id", 1)
    pk_priv = _hex(req, "prekey_private", optional=True)
    identity = KeyPair(PrivateKey(ik)) if ik is not None else KeyPair.generate()
    spk = account.make_signed_prekey(identity, spk_id, 0, private=spk_priv)
    if spk_sig is not None:
        if not xeddsa_verify(identity.public.to_bytes(), spk.key_pair.public.to_bytes(), spk_sig):
            raise InvalidArgumentError("signed_prekey_signature does not verify with the identity key")
        spk = SignedPreKeyRecord(spk.id, spk.key_pair, spk_sig, spk.timestamp)
    pk = PreKeyRecord(pk_id, KeyPair(PrivateKey(pk_priv)) if pk_priv is not None else KeyPair.generate())
    await peer.reset()
    local = await account.create_account(
        peer.store, identity=identity, registration_id=reg, signed_prekey_id=spk_id, prekeys=0
    )
    async with peer.store.transaction() as tx:
        await tx.store_signed_prekey(spk.id, spk.to_bytes())
        await tx.store_prekey(pk.id, pk.to_bytes())
    peer.profile = {"name": name, "device_id": device_id, "bundle_prekey": pk.id}
    await peer.save_profile()
    return {
        "name": name,
        "device_id": device_id,
        "registration_id": local.registration_id,
        "identity_public": identity.public.to_bytes().hex(),
        "identity_private": identity.private.to_bytes().hex(),
        "signed_prekey_id": spk.id,
        "signed_prekey_public": spk.key_pair.public.to_bytes().hex(),
        "signed_prekey_private": spk.key_pair.private.to_bytes().hex(),
        "signed_prekey_signature": spk.signature.hex(),
        "prekey_id": pk.id,
        "prekey_public": pk.key_pair.public.to_bytes().hex(),
        "prekey_private": pk.key_pair.private.to_bytes().hex(),
    }


@command("new_prekey")
async def _new_prekey(peer: Peer, req: dict[str, Any]) -> dict[str, Any]:
    peer.require_identity()
    priv = _hex(req, "prekey_private", optional=True)
    if "prekey_id" in req:
        pid = _int(req, "prekey_id")
    else:
        pid = account.next_prekey_id(int(peer.profile.get("bundle_prekey", 0)))
    rec = PreKeyRecord(pid, KeyPair(PrivateKey(priv)) if priv is not None else KeyPair.generate())
    async with peer.store.transaction() as tx:
        await tx.store_prekey(pid, rec.to_bytes())
    peer.profile["bundle_prekey"] = pid
    await peer.save_profile()
    return {
        "prekey_id": pid,
        "prekey_public": rec.key_pair.public.to_bytes().hex(),
        "prekey_private": rec.key_pair.private.to_bytes().hex(),
    }


@command("bundle")
async def _bundle(peer: Peer, req: dict[str, Any]) -> dict[str, Any]:
    peer.require_identity()
    with_prekey = req.get("with_prekey", True)
    if not isinstance(with_prekey, bool):
        raise InvalidArgumentError("with_prekey must be a boolean")
    b = await account.get_bundle(
        peer.store, peer.device_id, with_prekey=with_prekey, prekey_id=peer.profile.get("bundle_prekey")
    )
    return b.to_dict()


@command("process_bundle")
async def _process_bundle(peer: Peer, req: dict[str, Any]) -> dict[str, Any]:
    peer.require_identity()
    bundle = req.get("bundle")
    if not isinstance(bundle, dict):
        raise InvalidArgumentError("bundle must be an object")
    await peer.cipher.process_bundle(_address(req), PreKeyBundle.from_dict(bundle))
    return {}


@command("encrypt")
async def _encrypt(peer: Peer, req: dict[str, Any]) -> dict[str, Any]:
    msg = await peer.cipher.encrypt(_address(req), _req_hex(req, "plaintext"))
    return {"type": msg.type, "body": msg.body.hex()}


@command("decrypt")
async def _decrypt(peer: Peer, req: dict[str, Any]) -> dict[str, Any]:
    pt = await peer.cipher.decrypt(_address(req), _int(req, "type"), _req_hex(req, "body"))
    return {"plaintext": pt.hex()}


@command("has_session")
async def _has_session(peer: Peer, req: dict[str, Any]) -> dict[str, Any]:
    return {"has_session": await peer.cipher.has_session(_address(req))}


@command("export_session")
async def _export(peer: Peer, req: dict[str, Any]) -> dict[str, Any]:
    return {"record": (await peer.cipher.export_session(_address(req))).hex()}


@command("import_session")
async def _import(peer: Peer, req: dict[str, Any]) -> dict[str, Any]:
    ident = _hex(req, "remote_identity", optional=True)
    if ident is not None:
        PublicKey.from_bytes(ident)
    await peer.cipher.import_session(_address(req), _req_hex(req, "record"), ident)
    return {}


@command("sign")
async def _sign(peer: Peer, req: dict[str, Any]) -> dict[str, Any]:
    priv = PrivateKey(_req_hex(req, "private"))
    return {"signature": priv.sign(_req_hex(req, "message")).hex()}


@command("verify")
async def _verify(peer: Peer, req: dict[str, Any]) -> dict[str, Any]:
    return {"valid": xeddsa_verify(_req_hex(req, "public"), _req_hex(req, "message"), _req_hex(req, "signature"))}


@command("agree")
async def _agree(peer: Peer, req: dict[str, Any]) -> dict[str, Any]:
    priv = PrivateKey(_req_hex(req, "private"))
    pub_raw = _req_hex(req, "public")
    pub = PublicKey.from_bytes(pub_raw) if len(pub_raw) == 33 else PublicKey(pub_raw)
    return {"shared": x25519(priv.to_bytes(), pub.u).hex()}


@command("public_key")
async def _public_key(peer: Peer, req: dict[str, Any]) -> dict[str, Any]:
    return {"public": PrivateKey(_req_hex(req, "private")).public_key().to_bytes().hex()}


def _load_extensions() -> None:
    """Commands that live with their features (groups, fingerprints)."""
    import importlib

    for mod in ("wacrypto.tools.peer_groups",):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, WacryptoError):
        return f"{type(exc).__name__}: {exc}"
    return f"InvalidArgumentError: {type(exc).__name__}: {exc}"


async def serve(peer: Peer, readline: Callable[[], bytes], write: Callable[[str], None]) -> None:
    while True:
        line = await trio.to_thread.run_sync(readline, abandon_on_cancel=True)  # Ctrl-C is not held up
        if not line:
            return
        if not line.strip():
            continue
        rid: Any = None
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise InvalidMessageError("request must be a JSON object")
            rid = req.get("id")
            result = await peer.handle(req)
            resp = {"id": rid, "ok": True, "result": result}
        except (WacryptoError, ValueError, TypeError, KeyError) as exc:
            resp = {"id": rid, "ok": False, "error": _error_text(exc)}
        write(json.dumps(resp, separators=(",", ":")) + "\n")


async def _amain(store_url: str | None) -> None:
    _load_extensions()
    if store_url:
        from wacrypto.store import open_store

        store = await open_store(store_url)
        peer = Peer(store, store_factory=lambda: open_store(store_url))
        await peer.load_profile()
    else:
        peer = Peer()
    out = sys.stdout

    def write(s: str) -> None:
        out.write(s)
        out.flush()

    try:
        await serve(peer, sys.stdin.buffer.readline, write)
    finally:
        await peer.store.aclose()


def run_peer(store_url: str | None = None) -> int:
    trio.run(_amain, store_url)
    return 0
