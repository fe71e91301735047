"""Safety numbers (fingerprints): the 60-digit display form, the scannable form, and comparison.

Per side: ``h = SHA512(0x0000 || identity33 || stable_id)``, then ``iterations`` times
``h = SHA512(h || identity33)``. Display: the first 30 bytes of ``h`` as six big-endian 5-byte
chunks, each ``mod 100000`` as five digits; the two 30-digit strings sorted and concatenated.
Scannable: ``CombinedFingerprints {version, local {first 32 bytes}, remote {first 32 bytes}}``.

Pure: bytes in, bytes out.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final, final

from wacrypto._proto import fingerprint_pb2 as _pb
from wacrypto.errors import InvalidArgumentError, InvalidMessageError, LegacyMessageError
from wacrypto.limits import (
    FINGERPRINT_ITERATIONS,
    KEY_TYPE_DJB,
    MAX_FINGERPRINT_ITERATIONS,
    MAX_SCANNABLE_FINGERPRINT_LEN,
    MAX_STABLE_ID_LEN,
    PUBLIC_KEY_LEN,
)
from wacrypto.primitives.immutable import Immutable, slot_setters
from wacrypto.primitives.protobuf import parse_message

__all__ = [
    "Fingerprint",
    "SCANNABLE_VERSION",
    "compare_scannable",
    "create_fingerprint",
    "displayable_digits",
    "fingerprint_hash",
]

SCANNABLE_VERSION: Final = 1  # stable ids are phone numbers (2: account UUIDs)
_HASH_VERSION: Final = b"\x00\x00"  # fingerprint hash format version
_SCANNABLE_LEN: Final = 32  # bytes of each side's hash in the scannable form
_MAX_SCANNABLE_LEN: Final = MAX_SCANNABLE_FINGERPRINT_LEN


def _identity(key: bytes, what: str) -> bytes:
    if not isinstance(key, (bytes, bytearray)) or len(key) != PUBLIC_KEY_LEN or key[0] != KEY_TYPE_DJB:
        raise InvalidArgumentError(f"{what} must be a 33-byte 0x05-prefixed public key")
    return bytes(key)


def _stable_id(stable_id: str | bytes, what: str) -> bytes:
    raw = stable_id.encode() if isinstance(stable_id, str) else bytes(stable_id)
    if len(raw) > MAX_STABLE_ID_LEN:
        raise InvalidArgumentError(f"{what} is longer than {MAX_STABLE_ID_LEN} bytes")
    return raw


def fingerprint_hash(identity_key: bytes, stable_id: str | bytes, iterations: int = FINGERPRINT_ITERATIONS) -> bytes:
    """The 64-byte iterated SHA-512 of one side."""
    if not isinstance(iterations, int) or isinstance(iterations, bool) or not 1 <= iterations <= MAX_FINGERPRINT_ITERATIONS:
        raise InvalidArgumentError(f"iterations must be in 1..{MAX_FINGERPRINT_ITERATIONS}")
    key = _identity(identity_key, "identity key")
    h = _HASH_VERSION + key + _stable_id(stable_id, "stable id")
    sha512 = hashlib.sha512
    for _ in range(iterations):
        h = sha512(h + key).digest()
    return h


def displayable_digits(hash64: bytes) -> str:
    """30 digits of one side: six 5-byte big-endian chunks, each mod 100000."""
    if len(hash64) < 30:
        raise InvalidArgumentError("fingerprint hash must have at least 30 bytes")
    return "".join(f"{int.from_bytes(hash64[i:i + 5], 'big') % 100000:05d}" for i in range(0, 30, 5))


def _encode_scannable(version: int, local: bytes, remote: bytes) -> bytes:
    m = _pb.CombinedFingerprints()
    m.version = version
    m.local_fingerprint.content = local
    m.remote_fingerprint.content = remote
    out: bytes = m.SerializeToString()
    return out


@final
class Fingerprint(Immutable):
    """A safety number between a local and a remote identity (immutable).

    ``display`` is the 60-digit string both users see (identical on both sides); ``scannable``
    is the QR-code payload of the local side (the remote side's payload has the halves swapped).
    Both are computed from the two hashes in the constructor, so they always agree.
    """

    __slots__ = ("display", "scannable", "version", "_local", "_remote")
    display: str
    scannable: bytes
    version: int
    _local: bytes
    _remote: bytes

    def __init__(self, version: int, local_hash: bytes, remote_hash: bytes) -> None:
        local, remote = bytes(local_hash[:_SCANNABLE_LEN]), bytes(remote_hash[:_SCANNABLE_LEN])
        a, b = displayable_digits(local_hash), displayable_digits(remote_hash)
        _FP_VERSION(self, version)
        _FP_LOCAL(self, local)
        _FP_REMOTE(self, remote)
        _FP_DISPLAY(self, a + b if a <= b else b + a)
        _FP_SCANNABLE(self, _encode_scannable(version, local, remote))

    def __reduce__(self) -> tuple[object, ...]:
        return (Fingerprint, (self.version, self._local, self._remote))  # 32 bytes of each hash: all it shows

    def compare(self, scanned: bytes) -> bool:
        """True iff ``scanned`` (the other side's scannable bytes) matches this fingerprint.

        Malformed bytes raise :class:`InvalidMessageError`; another version raises
        :class:`LegacyMessageError` (one side must update). A mismatch returns False.
        """
        return compare_scannable(self.version, self._local, self._remote, scanned)

    def display_groups(self) -> list[str]:
        """The display string in the customary 12 groups of 5 digits."""
        return [self.display[i : i + 5] for i in range(0, 60, 5)]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Fingerprint):
            return NotImplemented
        return self.version == other.version and hmac.compare_digest(self.scannable, other.scannable)

    def __hash__(self) -> int:
        return hash(self.scannable)

    def __repr__(self) -> str:
        return f"Fingerprint(version={self.version}, display={self.display})"


_FP_DISPLAY, _FP_SCANNABLE, _FP_VERSION, _FP_LOCAL, _FP_REMOTE = slot_setters(Fingerprint, *Fingerprint.__slots__)



def create_fingerprint(
    local_id: str | bytes,
    local_identity: bytes,
    remote_id: str | bytes,
    remote_identity: bytes,
    *,
    iterations: int = FINGERPRINT_ITERATIONS,
    version: int = SCANNABLE_VERSION,
) -> Fingerprint:
    """Compute the safety number of (local stable id, identity key) and (remote stable id, identity key)."""
    if version not in (1, 2):
        raise InvalidArgumentError("fingerprint version must be 1 or 2")
    local = fingerprint_hash(local_identity, local_id, iterations)
    remote = fingerprint_hash(remote_identity, remote_id, iterations)
    return Fingerprint(version, local, remote)


def compare_scannable(version: int, local32: bytes, remote32: bytes, scanned: bytes) -> bool:
    """Compare our (local, remote) halves with a scanned ``CombinedFingerprints`` (constant time)."""
    if not isinstance(scanned, (bytes, bytearray)) or len(scanned) > _MAX_SCANNABLE_LEN:
        raise InvalidMessageError("scanned fingerprint: too long")
    m = parse_message(_pb.CombinedFingerprints, bytes(scanned), "scanned fingerprint")
    if not (m.HasField("version") and m.HasField("local_fingerprint") and m.HasField("remote_fingerprint")):
        raise InvalidMessageError("scanned fingerprint: missing field")
    if m.version != version:
        raise LegacyMessageError(f"scanned fingerprint has version {m.version}, ours is {version}")
    theirs_local = m.local_fingerprint.content
    theirs_remote = m.remote_fingerprint.content
    if len(theirs_local) != _SCANNABLE_LEN or len(theirs_remote) != _SCANNABLE_LEN:
        raise InvalidMessageError("scanned fingerprint: bad content length")
    # Their local half is our remote half and vice versa; evaluate both comparisons always.
    same_a = hmac.compare_digest(theirs_local, remote32)
    same_b = hmac.compare_digest(theirs_remote, local32)
    return same_a & same_b
