"""dissononce (PyPI, MIT licence), an independent Noise implementation, configured for WhatsApp's
variant of Noise_XX_25519_AESGCM_SHA256. The WhatsApp configuration is only this (everything else
is stock Noise):

* ``initialize(XX, prologue=b"WA\\x06\\x03")`` -- the name ``Noise_XX_25519_AESGCM_SHA256`` is
  28 bytes, so stock dissononce already NUL-pads it to 32 and uses it as ``h`` and ``ck``;
* the empty payload of the first message is not hashed (:class:`WASymmetricState`);
* stock AESGCM nonces ``4 zero bytes || uint64_be(n)`` equal ``8 zero bytes || uint32_be(n)``.

Shared by the handshake interop tests and the Noise vector cross-check.
"""

from __future__ import annotations

from typing import Any

from dissononce.cipher.aesgcm import AESGCMCipher
from dissononce.dh.private import PrivateKey as DPrivateKey
from dissononce.dh.x25519.x25519 import X25519DH
from dissononce.hash.sha256 import SHA256Hash
from dissononce.processing.handshakepatterns.interactive.XX import XXHandshakePattern
from dissononce.processing.impl.cipherstate import CipherState as DCipherState
from dissononce.processing.impl.handshakestate import HandshakeState as DHandshakeState
from dissononce.processing.impl.symmetricstate import SymmetricState as DSymmetricState

HEADER = b"WA\x06\x03"


class WASymmetricState(DSymmetricState):  # type: ignore[misc]
    """WhatsApp quirk: an empty payload encrypted before any key exists is not hashed."""

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        if not self.cipherstate_has_key() and plaintext == b"":
            return b""
        return super().encrypt_and_hash(plaintext)  # type: ignore[no-any-return]

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        if not self.cipherstate_has_key() and ciphertext == b"":
            return b""
        return super().decrypt_and_hash(ciphertext)  # type: ignore[no-any-return]


class FixedDH(X25519DH):  # type: ignore[misc]
    """dissononce generates ephemerals itself; hand it fixed ones for known-answer runs."""

    def __init__(self, ephemerals: list[bytes] | None = None) -> None:
        super().__init__()
        self._fixed = list(ephemerals or [])

    def generate_keypair(self, privatekey: Any = None) -> Any:
        if privatekey is None and self._fixed:
            return super().generate_keypair(DPrivateKey(self._fixed.pop(0)))
        return super().generate_keypair(privatekey)


def d_keypair(priv: bytes) -> Any:
    return X25519DH().generate_keypair(DPrivateKey(priv))


def d_state(initiator: bool, static_priv: bytes, ephemeral: bytes | None = None, prologue: bytes = HEADER) -> Any:
    """A dissononce handshake state in WhatsApp's configuration (fixed ephemeral if given)."""
    dh = FixedDH([ephemeral] if ephemeral else None)
    hs = DHandshakeState(WASymmetricState(DCipherState(AESGCMCipher()), SHA256Hash()), dh)
    hs.initialize(XXHandshakePattern(), initiator, prologue, s=d_keypair(static_priv))
    return hs
