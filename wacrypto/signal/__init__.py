"""Pure Signal state machines: X3DH bundles, the Double Ratchet, session records, sender keys, fingerprints."""
