"""WhatsApp messaging rules as pure functions and small state machines: ADV device verification,
plaintext padding, retry receipts, JIDs and their Signal addresses, the prekey upload policy.

No I/O: the async layers (session/, chat/) call these with bytes, keys, time and an RNG."""
