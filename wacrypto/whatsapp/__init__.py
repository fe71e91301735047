"""WhatsApp messaging rules as pure functions: ADV device verification, plaintext padding.

No I/O: the async layers (session/, chat/) call these with bytes, keys, time and an RNG."""
