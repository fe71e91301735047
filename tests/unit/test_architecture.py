"""The layering of the design guide, enforced: the sans-I/O core imports no I/O, no clock, no trio."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import wacrypto

PKG = Path(wacrypto.__file__).parent

# layer -> wacrypto sub-packages/modules it may import
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "limits": set(),
    "address": {"errors"},
    "primitives": {"errors", "limits", "primitives"},
    "wire": {"errors", "limits", "wire", "_proto", "primitives"},
    "signal": {"errors", "limits", "wire", "_proto", "primitives", "signal"},
    "transport": {"errors", "limits", "wire", "_proto", "primitives", "transport"},
}
# nothing in these layers may touch I/O, threads, clocks or the event loop
FORBIDDEN_STDLIB = {"trio", "socket", "threading", "time", "asyncio", "selectors", "sqlite3", "psycopg", "pymysql", "httpx"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def _layer_files(layer: str) -> list[Path]:
    p = PKG / layer
    return sorted(p.rglob("*.py")) if p.is_dir() else [PKG / f"{layer}.py"]


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports(layer: str) -> None:
    files = _layer_files(layer)
    assert files and all(f.exists() for f in files)
    for f in files:
        for mod in _imports(f):
            top = mod.split(".")[0]
            if top == "wacrypto":
                parts = mod.split(".")
                assert len(parts) > 1 and parts[1] in ALLOWED[layer], f"{f.name} imports {mod}"
            assert top not in FORBIDDEN_STDLIB, f"{f.relative_to(PKG)} imports {mod}: the core must stay sans-I/O"


def test_media_crypto_depends_on_primitives_only() -> None:
    f = PKG / "media" / "crypto.py"
    for mod in _imports(f):
        assert mod.split(".")[0] not in FORBIDDEN_STDLIB, mod
        if mod.startswith("wacrypto."):
            assert mod.split(".")[1] in {"errors", "limits", "primitives", "media"}, mod


def test_public_api_is_curated() -> None:
    expected = {
        "__version__", "Address", "CiphertextMessage", "KeyPair", "KeyStore", "MemoryKeyStore",
        "PreKeyBundle", "PreKeyRecord", "PrivateKey", "PublicKey", "ReceivedMessage", "SessionCipher",
        "SessionRecord", "SignedPreKeyRecord", "Transaction", "create_account", "generate_prekeys",
        "get_bundle", "rotate_signed_prekey", "FanOutResult", "Fingerprint", "GroupCipher", "create_fingerprint",
        "fan_out",
    } | set(wacrypto.errors.__all__)
    assert set(wacrypto.__all__) == expected
    for name in wacrypto.__all__:
        assert hasattr(wacrypto, name), name


def test_errors_form_one_tree_split_by_fault() -> None:
    from wacrypto import errors as e

    families = (e.UsageError, e.PeerError, e.MissingStateError, e.StoreError, e.TransportError)
    for name in e.__all__:
        cls = getattr(e, name)
        assert issubclass(cls, e.WacryptoError)
        if cls is not e.WacryptoError and cls not in families:
            assert sum(issubclass(cls, f) for f in families) == 1, name
