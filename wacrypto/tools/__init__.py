"""Command-line tools: the ``wacrypto`` CLI and the JSON-lines ``wacrypto peer`` driver."""
