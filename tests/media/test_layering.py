"""The media core stays sans-I/O: crypto.py imports only crypto libraries and wacrypto's errors/limits."""

from __future__ import annotations

import ast
from pathlib import Path

import wacrypto.media.crypto as core

ALLOWED = {
    "__future__", "base64", "enum", "hashlib", "hmac", "os", "collections.abc", "dataclasses", "typing",
    "cryptography.hazmat.primitives", "cryptography.hazmat.primitives.ciphers",
    "cryptography.hazmat.primitives.kdf.hkdf", "wacrypto.errors", "wacrypto.limits",
}


def test_core_imports_nothing_that_does_io() -> None:
    tree = ast.parse(Path(core.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.module is not None
            imported.add(node.module)
    assert imported <= ALLOWED, imported - ALLOWED
    assert "os" in imported  # only for the os.urandom default of the rng parameter
    uses_of_os = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "os"}
    assert uses_of_os == {"urandom"}
