"""The media core stays sans-I/O: its modules import only crypto libraries, wacrypto's errors/limits/
primitives and each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import wacrypto.media.blob
import wacrypto.media.crypto
import wacrypto.media.decryptor
import wacrypto.media.encryptor
import wacrypto.media.keys
import wacrypto.media.sidecar

CORE = [
    wacrypto.media.crypto,
    wacrypto.media.keys,
    wacrypto.media.blob,
    wacrypto.media.sidecar,
    wacrypto.media.encryptor,
    wacrypto.media.decryptor,
]
CORE_MODULES = {m.__name__ for m in CORE}
ALLOWED = {
    "__future__", "base64", "enum", "hashlib", "hmac", "os", "collections.abc", "dataclasses", "typing",
    "cryptography.hazmat.primitives.ciphers", "wacrypto.errors", "wacrypto.limits",
    "wacrypto.primitives.kdf", "wacrypto.primitives.aes",
} | CORE_MODULES


def _tree(module: object) -> ast.Module:
    return ast.parse(Path(module.__file__).read_text())  # type: ignore[attr-defined]


def _imported(tree: ast.Module) -> set[str]:
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.module is not None
            imported.add(node.module)
    return imported


@pytest.mark.parametrize("module", CORE, ids=lambda m: m.__name__)
def test_core_imports_nothing_that_does_io(module: object) -> None:
    tree = _tree(module)
    imported = _imported(tree)
    assert imported <= ALLOWED, imported - ALLOWED
    uses_of_os = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "os"}
    assert uses_of_os <= {"urandom"}  # only for the os.urandom default of the rng parameter
    assert ("os" in imported) == bool(uses_of_os)


def test_the_check_sees_the_os_import() -> None:
    assert any("os" in _imported(_tree(m)) for m in CORE)


def test_every_media_module_is_core_or_io() -> None:
    io = {"__init__", "files", "streams", "client", "prune"}
    found = {p.stem for p in Path(wacrypto.media.crypto.__file__).parent.glob("*.py")}
    assert found - io == {name.rsplit(".", 1)[1] for name in CORE_MODULES}


def test_the_names_of_the_core_stay_where_they_were() -> None:
    # wacrypto.media.crypto was one module; its public names are still importable from it
    before = {
        "MediaType", "MediaKeys", "EncryptedMedia", "DecryptedMedia", "StagingSink", "MediaEncryptor",
        "MediaDecryptor", "generate_media_key", "derive_media_keys", "encrypt", "decrypt", "blob_overhead",
        "sidecar_window", "verify_sidecar_chunk", "decrypt_sidecar_chunk", "upload_token",
    }
    assert before <= set(wacrypto.media.crypto.__all__)
    for module in (wacrypto.media.crypto, wacrypto.media):
        for name in module.__all__:
            assert getattr(module, name) is not None, name
