"""The one exception root of wacrypto, split by who is at fault.

Every error belongs to exactly one **fault family**:

* :class:`UsageError`        -- the caller misused the API (bad argument, wrong state, bad config).
* :class:`PeerError`         -- bytes from the other side (a peer, the chat server, an untrusted
                                 file) are garbage, forged or replayed. Parsing untrusted bytes
                                 raises only this family, in every layer, the transport included.
* :class:`MissingStateError` -- local state is missing; a retry after fetching it may succeed
                                 (no session, no sender key, no prekey).
* :class:`StoreError`        -- the key store failed (database down, lease lost, schema too old).
* :class:`NetworkError`      -- the network or the server failed us without sending garbage: no
                                 port reachable, connection lost or closed, a timeout, the server
                                 ended the stream with a reason, a media transfer failed.

:class:`TransportError` is not a family but a **layer**: every error the chat connection (or a
media transfer) raises is a ``TransportError`` *and* a member of its fault family, so
``except TransportError`` means "this connection is over, whatever the reason" and
``except PeerError`` means "the other side sent bad bytes", whichever layer noticed. For example
a bad frame, a bad Noise tag or a bad server certificate is a :class:`FrameError` /
:class:`HandshakeError` / :class:`CertificateError` (``PeerError`` and ``TransportError``); a
keepalive timeout is a :class:`KeepaliveTimeoutError` (``NetworkError`` and ``TransportError``).

Messages never contain key material or plaintext.
"""

from __future__ import annotations

__all__ = [
    "WacryptoError",
    # caller misuse
    "UsageError",
    "InvalidArgumentError",
    "MediaTooLargeError",
    # peer garbage
    "PeerError",
    "InvalidMessageError",
    "InvalidKeyError",
    "InvalidSignatureError",
    "RevokedDeviceError",
    "DecryptionError",
    "DuplicateMessageError",
    "TooFarAheadError",
    "UntrustedIdentityError",
    "LegacyMessageError",
    "MediaIntegrityError",
    # missing local state
    "MissingStateError",
    "NoSessionError",
    "NoSenderKeyError",
    "NoPreKeyError",
    "NoSignedPreKeyError",
    "NoIdentityError",
    # store
    "StoreError",
    "StoreUnavailableError",
    "SchemaError",
    "UnsupportedServerError",
    "InstanceConflictError",
    "LeaseLostError",
    "BackupError",
    # network / remote failures
    "NetworkError",
    # the transport layer (each class also in one family above)
    "TransportError",
    "HandshakeError",
    "CertificateError",
    "FrameError",
    "ConnectError",
    "ConnectionClosedError",
    "KeepaliveTimeoutError",
    "HandshakeTimeoutError",
    "StreamFailure",
    "ConflictError",
    "LoggedOutError",
    "ClientOutdatedError",
    "MediaTransferError",
    "MediaExpiredError",
]


class WacryptoError(Exception):
    """Root of every error wacrypto raises on purpose."""


# --------------------------------------------------------------------------- caller misuse
class UsageError(WacryptoError):
    """The caller used the API wrongly; nothing from a peer is involved."""


class InvalidArgumentError(UsageError, ValueError):
    """An argument has the wrong type, size or range."""


class MediaTooLargeError(UsageError):
    """A media file exceeds the configured upload limit; nothing was uploaded."""


# --------------------------------------------------------------------------- peer garbage
class PeerError(WacryptoError):
    """Bytes received from a peer are malformed, forged, replayed or otherwise unacceptable."""


class InvalidMessageError(PeerError):
    """A wire message or record could not be parsed or violates a limit."""


class InvalidKeyError(PeerError):
    """A public key is malformed, of an unknown type, or gives an all-zero DH output."""


class InvalidSignatureError(PeerError):
    """A signature (signed prekey, sender key message, certificate) did not verify."""


class RevokedDeviceError(InvalidSignatureError):
    """A device's ADV identity verifies but its account no longer lists it (removed or re-registered)."""


class DecryptionError(PeerError):
    """A message could not be decrypted. Deliberately opaque: bad MAC, bad padding and a
    malformed body all look alike so there is no oracle."""


class DuplicateMessageError(PeerError):
    """The message was already decrypted once (its key is spent)."""


class TooFarAheadError(PeerError):
    """The message counter/iteration is further ahead than the forward-jump limit allows."""


class UntrustedIdentityError(PeerError):
    """The peer's identity key differs from the one we trust for that address.

    ``address`` names the peer; call the store's trust API to accept the new key."""

    def __init__(self, address: str, message: str | None = None) -> None:
        super().__init__(message or f"identity key of {address} changed; accept it explicitly to continue")
        self.address = address


class LegacyMessageError(PeerError):
    """The message uses a protocol version we do not speak."""


class MediaIntegrityError(PeerError):
    """A media blob failed verification (length, hash, MAC, padding or plaintext hash).
    Deliberately opaque."""


# --------------------------------------------------------------------------- missing local state
class MissingStateError(WacryptoError):
    """Local state needed for the operation is missing; recoverable by fetching it and retrying."""


class NoSessionError(MissingStateError):
    """No session exists with that address."""


class NoSenderKeyError(MissingStateError):
    """No sender key for that (group, sender) or for that key id."""


class NoPreKeyError(MissingStateError):
    """The one-time prekey named by a message is not (or no longer) in the store."""


class NoSignedPreKeyError(MissingStateError):
    """The signed prekey named by a message is not in the store."""


class NoIdentityError(MissingStateError):
    """The local identity has not been created yet."""


# --------------------------------------------------------------------------- store
class StoreError(WacryptoError):
    """The key store failed; the operation was rolled back."""


class StoreUnavailableError(StoreError):
    """The database could not be reached or refused the credentials."""


class SchemaError(StoreError):
    """The database schema is newer than this code or otherwise unusable."""


class UnsupportedServerError(StoreError):
    """The database server is older than the oldest version we support."""


class InstanceConflictError(StoreError):
    """Another live instance holds the lease on this account."""

    def __init__(self, message: str, holder: str = "") -> None:
        super().__init__(message)
        self.holder = holder


class LeaseLostError(StoreError):
    """This instance's lease expired or was taken over; it may no longer write."""


class BackupError(StoreError):
    """A backup archive is corrupt, truncated, of the wrong format or the password is wrong."""


# --------------------------------------------------------------------------- network failures
class NetworkError(WacryptoError):
    """The network or the remote end failed without sending garbage: unreachable, lost, closed,
    timed out, or ended by the server with a reason. Nothing received was malformed (that would
    be a :class:`PeerError`) and the caller did nothing wrong; a later retry may succeed."""


# --------------------------------------------------------------------------- transport layer
class TransportError(WacryptoError):
    """Raised by the chat connection (or a media transfer): the connection is over.

    A layer, not a fault family: each subclass is also a :class:`PeerError` (bad bytes from the
    server or the client) or a :class:`NetworkError` (lost, closed, timed out, refused)."""


# bytes from the other side
class HandshakeError(PeerError, TransportError):
    """The other side's Noise handshake messages are malformed or fail authentication."""


class CertificateError(HandshakeError):
    """The server's certificate chain is malformed or did not verify. Fail closed."""


class FrameError(PeerError, TransportError):
    """A frame from the other side is malformed, larger than the limit or fails authentication."""


# local conditions and network failures
class ConnectError(NetworkError, TransportError):
    """No port of the server could be reached (refused, unreachable, proxy refused, timed out)."""


class ConnectionClosedError(NetworkError, TransportError):
    """The connection is closed: by us, by the other side, or lost."""


class KeepaliveTimeoutError(NetworkError, TransportError):
    """The other side stopped answering (keepalive deadline or dead-socket rule)."""


class HandshakeTimeoutError(NetworkError, TransportError):
    """The handshake did not finish within the handshake timeout."""


class StreamFailure(NetworkError, TransportError):
    """The server ended the stream with an error code."""


class ConflictError(StreamFailure):
    """Replaced by another instance of the same account: never auto-reconnect."""


class LoggedOutError(StreamFailure):
    """The device was logged out or removed: never auto-reconnect."""


class ClientOutdatedError(StreamFailure):
    """The server rejects this client version: never auto-reconnect."""


class MediaTransferError(NetworkError, TransportError):
    """Upload or download of a media blob failed after all retries."""


class MediaExpiredError(MediaTransferError):
    """The media server says the blob is gone (HTTP 403/404/410)."""
