"""The Double Ratchet on libsignal-layout session states. Pure: bytes and an RNG in, bytes out.

Every function here mutates only the state object it is given; callers work on a freshly parsed
copy and persist it only after success, so a failed decrypt changes no stored byte.
"""

from __future__ import annotations

from typing import Final

from wacrypto._proto import storage_pb2 as _pb
from wacrypto.errors import DecryptionError, DuplicateMessageError, InvalidKeyError, TooFarAheadError
from wacrypto.limits import (
    DEFAULT_MAX_FORWARD_JUMP,
    MAC_LEN,
    MAX_COUNTER,
    MAX_RECEIVER_CHAINS,
    MAX_SKIPPED_KEYS_PER_CHAIN,
)
from wacrypto.primitives.aes import cbc_decrypt, cbc_encrypt
from wacrypto.primitives.kdf import chain_step, hkdf_info, hkdf_sha256_blocks, hmac_sha256
from wacrypto.primitives.keys import Rng, clamp, system_rng, x25519, x25519_base
from wacrypto.wire.messages import VERSION_BYTE, SignalMessage, encode_signal_body

_DJB: Final = b"\x05"
_INFO_RATCHET: Final = hkdf_info(b"WhisperRatchet", 64)
_INFO_KEYS: Final = hkdf_info(b"WhisperMessageKeys", 80)
_INFO_TEXT: Final = hkdf_info(b"WhisperText", 64)
_X3DH_PAD: Final = b"\xff" * 32  # the discontinuity bytes that precede the X3DH secrets


def message_keys(seed: bytes) -> tuple[bytes, bytes, bytes]:
    """(cipher_key, mac_key, iv) from a 32-byte message-key seed (HKDF "WhisperMessageKeys", 80 bytes)."""
    cipher_key, mac_key, t3 = hkdf_sha256_blocks(seed, None, _INFO_KEYS)
    return cipher_key, mac_key, t3[:16]


def root_step(root_key: bytes, dh: bytes) -> tuple[bytes, bytes]:
    """(new_root_key, chain_key) = HKDF(salt=root_key, ikm=dh, "WhisperRatchet", 64)."""
    root, chain = hkdf_sha256_blocks(dh, root_key, _INFO_RATCHET)
    return root, chain


def _x3dh(*pairs: tuple[bytes | None, bytes | None]) -> tuple[bytes, bytes]:
    """(root_key, chain_key) = HKDF(0xff*32 || DH1 || DH2 || DH3 [|| DH4], "WhisperText", 64).

    ``pairs`` are the (private, 33-byte public) of each DH in order; a pair with a None (no
    one-time prekey) is left out.
    """
    secret = b"".join(_dh(priv, pub) for priv, pub in pairs if priv is not None and pub is not None)
    root, chain = hkdf_sha256_blocks(_X3DH_PAD + secret, None, _INFO_TEXT)
    return root, chain


def _dh(priv: bytes, pub33: bytes) -> bytes:
    return x25519(priv, pub33[1:])


def encrypt(state: _pb.SessionStructure, plaintext: bytes) -> bytes:
    """Encrypt on the sending chain; advance it. Returns the serialized SignalMessage."""
    chain = state.sender_chain
    ck = chain.chain_key
    key = ck.key
    index = ck.index
    seed, next_key = chain_step(key)
    cipher_key, mac_key, iv = message_keys(seed)
    ct = cbc_encrypt(cipher_key, iv, plaintext)
    body = VERSION_BYTE + encode_signal_body(chain.sender_ratchet_key, index, state.previous_counter, ct)
    mac = hmac_sha256(mac_key, state.local_identity_public + state.remote_identity_public + body)[:MAC_LEN]
    ck.key = next_key
    ck.index = index + 1
    return body + mac


def _find_receiver_chain(state: _pb.SessionStructure, ratchet_key: bytes) -> _pb.SessionStructure.Chain | None:
    chains = state.receiver_chains
    for i in range(len(chains) - 1, -1, -1):  # newest (most likely) first
        c = chains[i]
        if c.sender_ratchet_key == ratchet_key:
            return c
    return None


def _dh_step(state: _pb.SessionStructure, their_ratchet: bytes, rng: Rng) -> _pb.SessionStructure.Chain:
    """Receive a new ratchet key: new receiver chain, new sending chain."""
    sender = state.sender_chain
    our_priv = sender.sender_ratchet_key_private
    root, recv_ck = root_step(state.root_key, _dh(our_priv, their_ratchet))
    new_priv = clamp(rng(32))
    new_pub_u = x25519_base(new_priv)
    root2, send_ck = root_step(root, x25519(new_priv, their_ratchet[1:]))
    chain = state.receiver_chains.add()
    chain.sender_ratchet_key = their_ratchet
    chain.chain_key.index = 0
    chain.chain_key.key = recv_ck
    if len(state.receiver_chains) > MAX_RECEIVER_CHAINS:
        del state.receiver_chains[0]
    state.root_key = root2
    current_index = sender.chain_key.index
    state.previous_counter = max(current_index, 1) - 1
    sender.sender_ratchet_key = _DJB + new_pub_u
    sender.sender_ratchet_key_private = new_priv
    sender.chain_key.index = 0
    sender.chain_key.key = send_ck
    return state.receiver_chains[len(state.receiver_chains) - 1]


def _message_seed_or_keys(
    chain: _pb.SessionStructure.Chain, counter: int, max_jump: int
) -> tuple[bytes, bytes, bytes]:
    ck = chain.chain_key
    index = ck.index
    if index > counter:
        for i, mk in enumerate(chain.message_keys):
            if mk.index == counter:
                if mk.seed:
                    keys = message_keys(mk.seed)
                else:
                    keys = (mk.cipher_key, mk.mac_key, mk.iv)
                del chain.message_keys[i]
                return keys
        raise DuplicateMessageError(f"message counter {counter} already received")
    if counter - index > max_jump:
        raise TooFarAheadError(f"message counter jumps {counter - index} ahead (limit {max_jump})")
    key = ck.key
    if counter > index:
        mks = chain.message_keys
        while index < counter:
            mk = mks.add()
            mk.index = index
            mk.seed, key = chain_step(key)
            index += 1
        excess = len(mks) - MAX_SKIPPED_KEYS_PER_CHAIN
        if excess > 0:
            del mks[:excess]
    seed, ck.key = chain_step(key)
    ck.index = counter + 1
    return message_keys(seed)


def decrypt(
    state: _pb.SessionStructure,
    message: SignalMessage,
    *,
    max_forward_jump: int = DEFAULT_MAX_FORWARD_JUMP,
    rng: Rng = system_rng,
) -> bytes:
    """Decrypt ``message`` with ``state`` (mutated on success; garbage on failure: discard it).

    Raises DuplicateMessageError, TooFarAheadError, or DecryptionError (opaque).
    """
    if not state.HasField("sender_chain"):
        raise DecryptionError("session state has no sending chain")
    if message.counter > MAX_COUNTER:
        raise DecryptionError("counter out of range")
    chain = _find_receiver_chain(state, message.ratchet_key)
    if chain is None:
        try:
            chain = _dh_step(state, message.ratchet_key, rng)
        except InvalidKeyError:
            raise DecryptionError("unusable ratchet key") from None
    cipher_key, mac_key, iv = _message_seed_or_keys(chain, message.counter, max_forward_jump)
    expected = hmac_sha256(mac_key, state.remote_identity_public + state.local_identity_public + message.mac_input)
    if not message.verify_mac(expected):
        raise DecryptionError("message could not be decrypted")
    pt = cbc_decrypt(cipher_key, iv, message.ciphertext)
    if pt is None:
        raise DecryptionError("message could not be decrypted")
    if state.HasField("pending_pre_key"):
        state.ClearField("pending_pre_key")
    return pt


def _new_state(
    local_identity_pub: bytes,
    remote_identity: bytes,
    root_key: bytes,
    alice_base_key: bytes,
    send_pub: bytes,
    send_priv: bytes,
    send_chain_key: bytes,
) -> _pb.SessionStructure:
    s = _pb.SessionStructure()
    s.session_version = 3
    s.local_identity_public = local_identity_pub
    s.remote_identity_public = remote_identity
    s.root_key = root_key
    s.previous_counter = 0
    s.sender_chain.sender_ratchet_key = send_pub
    s.sender_chain.sender_ratchet_key_private = send_priv
    s.sender_chain.chain_key.index = 0
    s.sender_chain.chain_key.key = send_chain_key
    s.alice_base_key = alice_base_key
    return s


def new_state_alice(
    *,
    local_identity_pub: bytes,
    local_identity_priv: bytes,
    remote_identity: bytes,
    their_signed_prekey: bytes,
    their_one_time_prekey: bytes | None,
    base_priv: bytes,
    rng: Rng,
) -> _pb.SessionStructure:
    """X3DH as initiator. Returns a fresh state (pending prekey fields are set by the caller)."""
    base_pub = _DJB + x25519_base(base_priv)
    root_key, chain_key = _x3dh(
        (local_identity_priv, their_signed_prekey),
        (base_priv, remote_identity),
        (base_priv, their_signed_prekey),
        (base_priv, their_one_time_prekey),
    )
    send_priv = clamp(rng(32))
    send_pub = _DJB + x25519_base(send_priv)
    root2, send_ck = root_step(root_key, x25519(send_priv, their_signed_prekey[1:]))
    s = _new_state(local_identity_pub, remote_identity, root2, base_pub, send_pub, send_priv, send_ck)
    rc = s.receiver_chains.add()
    rc.sender_ratchet_key = their_signed_prekey
    rc.chain_key.index = 0
    rc.chain_key.key = chain_key
    return s


def new_state_bob(
    *,
    local_identity_pub: bytes,
    local_identity_priv: bytes,
    remote_identity: bytes,
    signed_prekey_pub: bytes,
    signed_prekey_priv: bytes,
    one_time_prekey_priv: bytes | None,
    their_base_key: bytes,
) -> _pb.SessionStructure:
    """X3DH as responder (on a PreKeySignalMessage)."""
    root_key, chain_key = _x3dh(
        (signed_prekey_priv, remote_identity),
        (local_identity_priv, their_base_key),
        (signed_prekey_priv, their_base_key),
        (one_time_prekey_priv, their_base_key),
    )
    return _new_state(
        local_identity_pub, remote_identity, root_key, their_base_key, signed_prekey_pub, signed_prekey_priv, chain_key
    )
