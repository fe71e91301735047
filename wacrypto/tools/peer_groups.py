"""`wacrypto peer` commands for groups (sender keys) and safety numbers.

Imported by :func:`wacrypto.tools.peer._load_extensions`; each ``@command`` registers itself. Our own
sender-key name is ``(group_id, Address(peer.name, peer.device_id))``.
"""

from __future__ import annotations

from typing import Any

from wacrypto.address import Address
from wacrypto.errors import InvalidArgumentError
from wacrypto.session.groups import SENDER_KEY_TYPE, GroupCipher
from wacrypto.limits import FINGERPRINT_ITERATIONS
from wacrypto.tools.peer import Peer, _address, _int, _req_hex, _str, command
from wacrypto.signal.fingerprint import create_fingerprint

__all__: list[str] = []

_EXTRA_KEY = "group_cipher"


def _groups(peer: Peer) -> GroupCipher:
    """The peer's GroupCipher, rebuilt when the peer's store changed (``new_identity`` resets it)."""
    gc = peer.extra.get(_EXTRA_KEY)
    if not isinstance(gc, GroupCipher) or gc.store is not peer.store:
        gc = GroupCipher(peer.store)
        peer.extra[_EXTRA_KEY] = gc
    return gc


def _own(peer: Peer) -> Address:
    peer.require_identity()
    return Address(peer.name, peer.device_id)


@command("group_create")
async def _group_create(peer: Peer, req: dict[str, Any]) -> dict[str, Any]:
    skdm = await _groups(peer).create_distribution(_str(req, "group_id"), _own(peer))
    return {"distribution": skdm.hex()}


@command("group_process")
async def _group_process(peer: Peer, req: dict[str, Any]) -> dict[str, Any]:
    sender = _address(req, "sender", "sender_device")
    await _groups(peer).process_distribution(_str(req, "group_id"), sender, _req_hex(req, "distribution"))
    return {}


@command("group_encrypt")
async def _group_encrypt(peer: Peer, req: dict[str, Any]) -> dict[str, Any]:
    body = await _groups(peer).encrypt(_str(req, "group_id"), _own(peer), _req_hex(req, "plaintext"))
    return {"type": SENDER_KEY_TYPE, "body": body.hex()}


@command("group_decrypt")
async def _group_decrypt(peer: Peer, req: dict[str, Any]) -> dict[str, Any]:
    sender = _address(req, "sender", "sender_device")
    pt = await _groups(peer).decrypt(_str(req, "group_id"), sender, _req_hex(req, "body"))
    return {"plaintext": pt.hex()}


@command("fingerprint")
async def _fingerprint(peer: Peer, req: dict[str, Any]) -> dict[str, Any]:
    local_id, remote_id = req.get("local_id"), req.get("remote_id")
    if not isinstance(local_id, str) or not isinstance(remote_id, str):
        raise InvalidArgumentError("local_id and remote_id must be strings")
    fp = create_fingerprint(
        local_id,
        _req_hex(req, "local_identity"),
        remote_id,
        _req_hex(req, "remote_identity"),
        iterations=_int(req, "iterations", FINGERPRINT_ITERATIONS),
    )
    return {"display": fp.display, "scannable": fp.scannable.hex()}
