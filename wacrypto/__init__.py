"""wacrypto: Signal v3 sessions (WhatsApp flavour), key store, media crypto and chat transport."""

from __future__ import annotations

__version__ = "0.1.0"

from wacrypto.session.account import create_account, generate_prekeys, get_bundle, rotate_signed_prekey
from wacrypto.address import Address
from wacrypto.session.cipher import CiphertextMessage, ReceivedMessage, SessionCipher
from wacrypto.errors import *  # noqa: F403
from wacrypto.errors import __all__ as _errors_all
from wacrypto.session.groups import FanOutResult, GroupCipher, fan_out
from wacrypto.primitives.keys import KeyPair, PrivateKey, PublicKey
from wacrypto.signal.fingerprint import Fingerprint, create_fingerprint
from wacrypto.signal.bundle import PreKeyBundle
from wacrypto.signal.records import PreKeyRecord, SessionRecord, SignedPreKeyRecord
from wacrypto.store.memory import MemoryKeyStore
from wacrypto.store.protocols import KeyStore, Transaction

__all__ = [
    "__version__",
    "Address",
    "CiphertextMessage",
    "FanOutResult",
    "Fingerprint",
    "GroupCipher",
    "KeyPair",
    "KeyStore",
    "MemoryKeyStore",
    "PreKeyBundle",
    "PreKeyRecord",
    "PrivateKey",
    "PublicKey",
    "ReceivedMessage",
    "SessionCipher",
    "SessionRecord",
    "SignedPreKeyRecord",
    "Transaction",
    "create_account",
    "create_fingerprint",
    "fan_out",
    "generate_prekeys",
    "get_bundle",
    "rotate_signed_prekey",
    *_errors_all,
]
