"""Async recipes over a key store: :class:`SessionCipher` (1:1), :class:`GroupCipher` (sender keys,
fan-out) and the account lifecycle (identity, prekeys). One store transaction per operation."""
