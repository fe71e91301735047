"""The layering of the design guide, enforced: the sans-I/O core imports no I/O, no clock, no trio."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import wacrypto

PKG = Path(wacrypto.__file__).parent

# The package's folders (and top-level modules) and what each may import from wacrypto. A layer
# imports only layers listed above it in the design guide; every folder of the package is listed.
_BASE = {"errors", "limits"}
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "limits": set(),
    "address": {"errors"},
    "stripe": _BASE,
    "threads": _BASE,  # worker-thread calls (trio), for the store and chatd
    "primitives": _BASE,
    "wire": _BASE | {"_proto", "primitives"},
    "signal": _BASE | {"_proto", "primitives", "wire"},
    "transport": _BASE | {"_proto", "primitives", "wire"},
    "whatsapp": _BASE | {"_proto", "address", "stripe", "primitives", "wire", "signal"},
    "store": _BASE | {"_proto", "address", "stripe", "primitives", "signal", "threads"},
    "session": _BASE | {"whatsapp", "address", "primitives", "wire", "signal", "store"},
    "media": _BASE | {"primitives"},
    "chat": _BASE | {"whatsapp", "_proto", "address", "primitives", "wire", "signal", "media", "transport", "store", "session"},
    "chatd": _BASE | {"_proto", "primitives", "wire", "transport", "chat", "whatsapp", "threads"},
    "testing": _BASE | {"whatsapp", "wire", "primitives", "transport", "store", "session", "chat", "chatd", "signal", "address"},
    "tools": _BASE | {"whatsapp", "_proto", "address", "primitives", "wire", "signal", "transport", "store", "session",
                      "media", "chat", "chatd", "testing", "wacrypto"},  # testing: seeded RNG for vectors
}
# the sans-I/O core: nothing in these layers may touch I/O, threads, clocks or the event loop
PURE = ("stripe", "primitives", "wire", "signal", "transport", "whatsapp")
FORBIDDEN_STDLIB = {"trio", "socket", "threading", "time", "asyncio", "selectors", "sqlite3", "psycopg", "pymysql", "httpx"}
# the entry points that tie the package together
ROOT_MODULES = {"__init__", "__main__", "_proto"}


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


def test_every_folder_is_a_listed_layer() -> None:
    found = {p.stem if p.is_file() else p.name for p in PKG.iterdir()
             if (p.is_dir() and (p / "__init__.py").exists()) or p.suffix == ".py"}
    assert found - ROOT_MODULES == set(ALLOWED), "add the new folder to ALLOWED with the layers it may import"


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports(layer: str) -> None:
    files = _layer_files(layer)
    assert files and all(f.exists() for f in files)
    for f in files:
        for mod in _imports(f):
            top = mod.split(".")[0]
            if top == "wacrypto":
                parts = mod.split(".")
                target = parts[1] if len(parts) > 1 else "wacrypto"  # the package root: the public API
                assert target in ALLOWED[layer] | {layer}, f"{f.relative_to(PKG)} imports {mod}"
            if layer in PURE:
                assert top not in FORBIDDEN_STDLIB, f"{f.relative_to(PKG)} imports {mod}: the core must stay sans-I/O"


# the pure media crypto (sans-I/O), one module per part; the rest of media/ does the I/O
MEDIA_CORE = ("crypto", "keys", "blob", "sidecar", "encryptor", "decryptor")
MEDIA_IO = ("__init__", "files", "streams", "client", "prune")


def test_media_crypto_depends_on_primitives_only() -> None:
    media = PKG / "media"
    assert {p.stem for p in media.glob("*.py")} == set(MEDIA_CORE) | set(MEDIA_IO), "list the new media module"
    for f in [media / f"{name}.py" for name in MEDIA_CORE]:
        for mod in _imports(f):
            assert mod.split(".")[0] not in FORBIDDEN_STDLIB, mod
            if mod.startswith("wacrypto."):
                assert mod.split(".")[1] in {"errors", "limits", "primitives", "media"}, mod
                if mod.split(".")[1] == "media":
                    assert mod.split(".")[2] in MEDIA_CORE, f"{f.name} imports {mod}: the core does no I/O"


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

    # who is at fault: every error is in exactly one family
    families = (e.UsageError, e.PeerError, e.MissingStateError, e.StoreError, e.NetworkError)
    # where it was raised: a layer cuts across the families and is not one of them
    layers = (e.TransportError,)
    for base in families + layers:
        assert base.__bases__ == (e.WacryptoError,), base.__name__
    for layer in layers:
        assert not any(issubclass(layer, f) for f in families), layer.__name__
    declared = {n for n, v in vars(e).items() if isinstance(v, type) and issubclass(v, e.WacryptoError)}
    assert declared == set(e.__all__), "every error class is exported"
    for name in e.__all__:
        cls = getattr(e, name)
        assert issubclass(cls, e.WacryptoError)
        if cls is not e.WacryptoError and cls not in families + layers:
            assert sum(issubclass(cls, f) for f in families) == 1, name
