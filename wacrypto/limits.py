"""Every buffer, counter and jump limit of wacrypto, each with the reason it exists.

``UPPER_SNAKE`` names are hard protocol limits; ``DEFAULT_...`` names are tunables that an API
parameter may override.
"""

from __future__ import annotations

from typing import Final

# --------------------------------------------------------------------------- keys and ids
KEY_TYPE_DJB: Final = 0x05  # type byte of a serialized Curve25519 public key
PUBLIC_KEY_LEN: Final = 33  # 0x05 || 32-byte u coordinate
PRIVATE_KEY_LEN: Final = 32  # raw X25519 scalar
SIGNATURE_LEN: Final = 64  # XEdDSA signature R || s
MAX_PREKEY_ID: Final = 0xFFFFFF  # prekey ids are 24-bit on the wire of every peer
MAX_REGISTRATION_ID: Final = 0xFFFFFFFF  # uint32
DEFAULT_PREKEY_BATCH: Final = 100  # one-time prekeys generated per refill
MAX_PREKEY_BATCH: Final = 10_000  # refuse absurd batch requests (each is a key generation)

# --------------------------------------------------------------------------- Signal sessions
CIPHERTEXT_VERSION: Final = 3  # version we emit (0x33)
SUPPORTED_VERSIONS: Final = (3, 4)  # high nibble accepted on parse (4: libsignal >= 0.24 on v3 sessions)
MAC_LEN: Final = 8  # truncated HMAC-SHA256 on SignalMessage
MAX_RECEIVER_CHAINS: Final = 5  # receiver chains kept per session state (libsignal)
MAX_ARCHIVED_STATES: Final = 40  # previous session states kept per record (libsignal)
MAX_SKIPPED_KEYS_PER_CHAIN: Final = 2000  # stored skipped message keys per receiver chain
DEFAULT_MAX_FORWARD_JUMP: Final = 2000  # WhatsApp clients; libsignal uses 25000
MAX_FORWARD_JUMP_CEILING: Final = 25_000  # the setting may not exceed libsignal's own bound
MAX_MESSAGE_LEN: Final = 256 * 1024  # serialized message bytes accepted on decrypt
MAX_PLAINTEXT_LEN: Final = 256 * 1024 - 64  # plaintext accepted by encrypt (fits the above)
MAX_RECORD_LEN: Final = 4 * 1024 * 1024  # serialized session record accepted on import/load
MAX_COUNTER: Final = 0xFFFFFFFF  # uint32 message counter

# --------------------------------------------------------------------------- sender keys
MAX_SENDER_KEY_STATES: Final = 5  # states per (group, sender)
MAX_SENDER_MESSAGE_KEYS: Final = 2000  # skipped group message keys stored per state
DEFAULT_MAX_GROUP_FORWARD_JUMP: Final = 2000  # iterations a group message may jump ahead
MAX_SENDER_KEY_RECORD_LEN: Final = 1024 * 1024  # serialized sender-key record
MAX_GROUP_ID_LEN: Final = 1024  # group ids are short JIDs/UUIDs; bound what we hash and store

# --------------------------------------------------------------------------- fingerprints
FINGERPRINT_ITERATIONS: Final = 5200  # libsignal's default
MAX_FINGERPRINT_ITERATIONS: Final = 100_000  # bound the work a caller may ask for
MAX_STABLE_ID_LEN: Final = 1024  # stable identifier bytes hashed into a fingerprint
MAX_SCANNABLE_FINGERPRINT_LEN: Final = 256  # a CombinedFingerprints is ~76 bytes; refuse more before parsing

# --------------------------------------------------------------------------- store
DEFAULT_PLAINTEXT_RETENTION_DAYS: Final = 14  # handled dedup entries kept this long
MAX_STRIPES: Final = 64  # worker processes serving one device's chats (scale-out), at most
DEFAULT_LEASE_SECONDS: Final = 30.0  # instance lease lifetime without heartbeat
DEFAULT_SQL_POOL_SIZE: Final = 8  # pooled connections per SQL store
DEFAULT_SQLITE_BUSY_TIMEOUT_MS: Final = 10_000  # wait this long for a locked SQLite database
DEFAULT_BACKUP_SCRYPT_LOG2_N: Final = 15  # 32 MiB of memory per derivation
MAX_BACKUP_SCRYPT_LOG2_N: Final = 20  # refuse archives asking for absurd work
MAX_BACKUP_PLAINTEXT: Final = 1 << 30  # 1 GiB decompressed

# --------------------------------------------------------------------------- media
DEFAULT_MEDIA_MAX_BYTES: Final = 64 * 1024 * 1024  # upload limit per file on the platform
MEDIA_MAC_LEN: Final = 10  # truncated HMAC-SHA256 appended to a media blob
MEDIA_KEY_LEN: Final = 32  # random media key
MEDIA_SIDECAR_CHUNK: Final = 65536  # streaming sidecar chunk size
MEDIA_IO_CHUNK: Final = 1024 * 1024  # read/write unit of the streaming pipeline
DEFAULT_PARTIAL_GRACE: Final = 3600.0  # seconds before an abandoned temporary file counts as stale
DEFAULT_MEDIA_HTTP_TIMEOUT: Final = 60.0  # seconds without progress on one read/write before httpx gives up

# --------------------------------------------------------------------------- transport
FRAME_LEN_BYTES: Final = 3  # big-endian length prefix
MAX_FRAME_LEN: Final = (1 << 24) - 1  # what a 3-byte prefix can express
DEFAULT_MAX_FRAME_LEN: Final = 4 * 1024 * 1024  # accept less than the wire maximum by default
MAX_ROUTING_INFO_LEN: Final = (1 << 24) - 1  # ED pre-intro routing info length (3 bytes)
NOISE_TAG_LEN: Final = 16  # AES-GCM tag
MAX_NOISE_COUNTER: Final = 0xFFFFFFFF  # 4-byte nonce counter: rekey/close before wrap
DEFAULT_CONNECT_TIMEOUT: Final = 5.0  # seconds per port before falling back
DEFAULT_HANDSHAKE_TIMEOUT: Final = 10.0  # seconds for the whole Noise handshake
DEFAULT_PING_INTERVAL: Final = 20.0  # seconds between keepalive pings (jittered)
DEFAULT_PING_JITTER: Final = 5.0  # +/- seconds of jitter on the ping interval
DEFAULT_PING_DEADLINE: Final = 15.0  # seconds to wait for a pong
DEFAULT_DEAD_SOCKET: Final = 20.0  # no inbound bytes this long after an unanswered send -> dead
DEFAULT_BACKOFF_CAP: Final = 60.0  # seconds, longest reconnect wait
DEFAULT_STABLE_PERIOD: Final = 60.0  # connected this long resets the backoff
DEFAULT_SEND_QUEUE: Final = 256  # bounded outgoing channel
DEFAULT_RECV_QUEUE: Final = 256  # bounded incoming channel
MAX_DETERMINISTIC_RETRIES: Final = 5  # e.g. certificate failures: stop retrying after this many
MAX_CERT_CHAIN_LEN: Final = 4096  # a chain is ~300 bytes; refuse anything absurd before parsing
MAX_STANZA_ID_LEN: Final = 128  # message/ack ids are short opaque strings; bound what we store per id
MAX_USER_AGENT_LEN: Final = 256  # client payload user agent
MAX_ERROR_TEXT_LEN: Final = 1024  # stream error text shown to operators
MAX_PROXY_RESPONSE: Final = 8192  # bytes of HTTP CONNECT response headers accepted

# --------------------------------------------------------------------------- binary stanzas (WABinary)
DEFAULT_MAX_STANZA_LEN: Final = 4 * 1024 * 1024  # decoded (inflated) stanza bytes; a frame's default bound
MAX_STANZA_DEPTH: Final = 32  # nesting of child lists; real stanzas nest fewer than 8 deep
MAX_PACKED_LEN: Final = 127  # characters in one nibble/hex packed string (7-bit length)
MAX_STANZA_LIST_LEN: Final = 0xFFFF  # items in one list (LIST_16)

# --------------------------------------------------------------------------- chatd relay mailboxes
MAILBOX_LIMIT: Final = 100_000  # messages waiting per recipient; beyond it senders keep theirs and retry
DEFAULT_MAILBOX_SENDER_LIMIT: Final = 1_000  # per (recipient, sender): one client cannot fill a mailbox
DEFAULT_MAILBOX_STRANGER_LIMIT: Final = 10_000  # per recipient, from senders it never wrote to: keeps room for the rest
DEFAULT_MAILBOX_TTL: Final = 30 * 86400.0  # seconds a message may wait unacknowledged (WhatsApp's servers: 30 days)
MAX_CORRESPONDENTS: Final = 10_000  # recipients remembered per client (most recent) to tell correspondents apart
MAX_DELIVERED_REMEMBERED: Final = 100_000  # acknowledged ids kept per recipient, so a late resend is not delivered twice

# --------------------------------------------------------------------------- chatd media endpoint
DEFAULT_MEDIA_SERVER_MAX_BLOB: Final = DEFAULT_MEDIA_MAX_BYTES + 16 + MEDIA_MAC_LEN  # the blob of a file at the upload limit
MEDIA_SERVER_MAX_HEAD: Final = 16 * 1024  # request line + headers; MediaClient's are ~300 bytes
DEFAULT_MEDIA_SERVER_TIMEOUT: Final = 30.0  # seconds a connection may make no progress (also: to send a request head)
DEFAULT_MEDIA_RETENTION: Final = 30 * 86400.0  # seconds a blob is served after its (last) upload (WhatsApp's media: 30 days)
DEFAULT_MEDIA_PRUNE_INTERVAL: Final = 3600.0  # seconds between sweeps for expired blobs and abandoned uploads
MEDIA_SERVER_LINGER: Final = 2.0  # seconds the unread rest of a request is drained after an early answer, so it arrives

# --------------------------------------------------------------------------- WhatsApp groups
MAX_GROUP_SUBJECT_LEN: Final = 100  # characters of a group's subject (WhatsApp's limit)
MAX_GROUP_PARTICIPANTS: Final = 1024  # members of one group (WhatsApp's largest groups)

# --------------------------------------------------------------------------- WhatsApp device verification (ADV)
MAX_ADV_MESSAGE_LEN: Final = 4096  # a signed device identity or key-index list is ~200 bytes
MAX_KEY_INDEXES: Final = 1024  # valid key indexes in one account's list (WhatsApp allows a handful of devices)

# --------------------------------------------------------------------------- retry receipts
MAX_RETRY_COUNT: Final = 5  # retry receipts we send for one message before giving up (whatsmeow, Baileys)
MAX_RETRY_COUNT_SEEN: Final = 255  # a count we still parse from another client (its own limit may differ)
MAX_RETRY_REQUESTS: Final = 10  # retry receipts per (device, message) we answer; more is a flood
RETRY_REBUILD_INTERVAL: Final = 3600.0  # seconds between session rebuilds for one address on count >= 2

# --------------------------------------------------------------------------- WhatsApp prekey lifecycle
INITIAL_PREKEY_UPLOAD: Final = 812  # one-time prekeys a new device uploads (WhatsApp clients)
PREKEY_LOW_WATER: Final = 5  # upload more when the server holds fewer than this
PREKEY_UPLOAD_BATCH: Final = 50  # one-time prekeys per later upload
