"""A backend-neutral logical dump of one account: what backup/restore and import move between stores."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any, Final

from wacrypto.errors import BackupError
from wacrypto.store.protocols import LocalIdentity, OutboxEntry, SentMessage

__all__ = ["StoreDump", "DUMP_FORMAT"]

DUMP_FORMAT: Final = "wacrypto-store-dump"
DUMP_VERSION: Final = 1


def _b(x: bytes) -> str:
    return base64.b64encode(x).decode("ascii")


def _u(x: Any) -> bytes:
    if not isinstance(x, str):
        raise BackupError("dump field is not base64 text")
    return base64.b64decode(x.encode("ascii"), validate=True)


@dataclass
class StoreDump:
    """Every row of an account, decrypted (keys at rest are a property of a database, not of a dump)."""

    local: LocalIdentity | None = None
    identities: dict[str, bytes] = field(default_factory=dict)  # "name.device" -> public key
    prekeys: dict[int, bytes] = field(default_factory=dict)
    handed_out_prekeys: set[int] = field(default_factory=set)  # ids of stored prekeys given out in a bundle
    signed_prekeys: dict[int, bytes] = field(default_factory=dict)
    sessions: dict[str, bytes] = field(default_factory=dict)
    sender_keys: dict[tuple[str, str], bytes] = field(default_factory=dict)
    meta: dict[str, bytes] = field(default_factory=dict)
    received: dict[bytes, tuple[bytes, bool, float]] = field(default_factory=dict)
    outbox: dict[str, OutboxEntry] = field(default_factory=dict)
    sent: dict[tuple[str, str], SentMessage] = field(default_factory=dict)  # (message id, chat) -> message
    retry_counts: dict[tuple[str, str], tuple[int, float]] = field(default_factory=dict)  # (id, sender) -> (n, at)
    lid_mappings: dict[str, str] = field(default_factory=dict)  # phone-number user -> LID user

    def __repr__(self) -> str:
        return (
            f"StoreDump(local={self.local is not None}, sessions={len(self.sessions)}, prekeys={len(self.prekeys)},"
            f" signed_prekeys={len(self.signed_prekeys)}, identities={len(self.identities)},"
            f" sender_keys={len(self.sender_keys)}, outbox={len(self.outbox)}, received={len(self.received)},"
            f" sent={len(self.sent)}, retry_counters={len(self.retry_counts)}, lid_mappings={len(self.lid_mappings)})"
        )

    def counts(self) -> dict[str, int]:
        return {
            "local_identity": int(self.local is not None),
            "identities": len(self.identities),
            "prekeys": len(self.prekeys),
            "signed_prekeys": len(self.signed_prekeys),
            "sessions": len(self.sessions),
            "sender_keys": len(self.sender_keys),
            "meta": len(self.meta),
            "received": len(self.received),
            "outbox": len(self.outbox),
            "sent": len(self.sent),
            "retry_counters": len(self.retry_counts),
            "lid_mappings": len(self.lid_mappings),
        }

    def to_json(self) -> bytes:
        doc = {
            "format": DUMP_FORMAT,
            "version": DUMP_VERSION,
            "local": None
            if self.local is None
            else {"identity_pair": _b(self.local.identity_pair), "registration_id": self.local.registration_id},
            "identities": [[a, _b(v)] for a, v in sorted(self.identities.items())],
            "prekeys": [[i, _b(v)] for i, v in sorted(self.prekeys.items())],
            "handed_out_prekeys": sorted(i for i in self.handed_out_prekeys if i in self.prekeys),
            "signed_prekeys": [[i, _b(v)] for i, v in sorted(self.signed_prekeys.items())],
            "sessions": [[a, _b(v)] for a, v in sorted(self.sessions.items())],
            "sender_keys": [[g, s, _b(v)] for (g, s), v in sorted(self.sender_keys.items())],
            "meta": [[k, _b(v)] for k, v in sorted(self.meta.items())],
            "received": [[_b(d), _b(p), h, t] for d, (p, h, t) in sorted(self.received.items())],
            "outbox": [
                [e.message_id, e.address, e.msg_type, _b(e.body), e.created_at]
                for e in sorted(self.outbox.values(), key=lambda e: (e.created_at, e.message_id))
            ],
            "sent": [[m.message_id, m.chat, _b(m.plaintext), m.created_at] for _, m in sorted(self.sent.items())],
            "retry_counts": [[m, s, n, t] for (m, s), (n, t) in sorted(self.retry_counts.items())],
            "lid_mappings": [[p, lid] for p, lid in sorted(self.lid_mappings.items())],
        }
        return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> StoreDump:
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict) or doc.get("format") != DUMP_FORMAT:
                raise BackupError("not a wacrypto store dump")
            if doc.get("version") != DUMP_VERSION:
                raise BackupError(f"unsupported dump version {doc.get('version')!r}")
            d = cls()
            loc = doc["local"]
            if loc is not None:
                d.local = LocalIdentity(_u(loc["identity_pair"]), int(loc["registration_id"]))
            d.identities = {str(a): _u(v) for a, v in doc["identities"]}
            d.prekeys = {int(i): _u(v) for i, v in doc["prekeys"]}
            # absent from dumps written before prekeys were marked when handed out
            d.handed_out_prekeys = {int(i) for i in doc.get("handed_out_prekeys", [])} & set(d.prekeys)
            d.signed_prekeys = {int(i): _u(v) for i, v in doc["signed_prekeys"]}
            d.sessions = {str(a): _u(v) for a, v in doc["sessions"]}
            d.sender_keys = {(str(g), str(s)): _u(v) for g, s, v in doc["sender_keys"]}
            d.meta = {str(k): _u(v) for k, v in doc["meta"]}
            d.received = {_u(dg): (_u(p), bool(h), float(t)) for dg, p, h, t in doc["received"]}
            d.outbox = {
                str(m): OutboxEntry(str(m), str(a), int(ty), _u(b), float(c)) for m, a, ty, b, c in doc["outbox"]
            }
            # the three below are absent from dumps written before the store kept them
            d.sent = {
                (str(m), str(c)): SentMessage(str(m), str(c), _u(p), float(t)) for m, c, p, t in doc.get("sent", [])
            }
            d.retry_counts = {(str(m), str(s)): (int(n), float(t)) for m, s, n, t in doc.get("retry_counts", [])}
            d.lid_mappings = {str(p): str(lid) for p, lid in doc.get("lid_mappings", [])}
            return d
        except BackupError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise BackupError(f"malformed store dump: {type(exc).__name__}") from None
