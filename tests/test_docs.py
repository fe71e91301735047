"""The documentation works as written: the README's and docs/'s Python blocks and the examples run,
the links and paths they name exist, and the reference tables list what the code has."""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
PAGES = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _python_blocks(page: Path) -> list[str]:
    return _BLOCK.findall(page.read_text())


def _run(code_or_file: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    if isinstance(code_or_file, str):
        script = cwd / "block.py"
        script.write_text(code_or_file)
    else:
        script = code_or_file
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(script)], cwd=cwd, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, env=env, timeout=120)


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def test_readme_example_runs_and_runs_again_on_its_stores(tmp_path: Path) -> None:
    blocks = _python_blocks(REPO / "README.md")
    assert blocks, "the README shows how to use the library"
    first = _ok(_run(blocks[0], tmp_path))
    assert "alice sent a type 3 message, bob answered with type 2" in first
    assert (tmp_path / "alice.db").exists() and (tmp_path / "bob.db").exists()
    # the stores are SQLite files: a second run continues the same session
    again = _ok(_run(blocks[0], tmp_path))
    assert "alice sent a type 2 message, bob answered with type 2" in again


@pytest.mark.parametrize("page", [p for p in PAGES if _python_blocks(p)], ids=lambda p: p.name)
def test_every_python_block_runs(page: Path, tmp_path: Path) -> None:
    for i, block in enumerate(_python_blocks(page)):
        cwd = tmp_path / f"block{i}"
        cwd.mkdir()
        _ok(_run(block, cwd))


def test_chat_doc_example_falls_back_and_pings(tmp_path: Path) -> None:
    (block,) = _python_blocks(DOCS / "chat.md")
    out = _ok(_run(block, tmp_path))
    assert re.search(r"^port \d+ failed: .*refused", out, re.M | re.I), out
    assert re.search(r"^connected on port \d+; ping answered in [\d.]+ ms$", out, re.M), out


def test_messenger_example_delivers_both_ways(tmp_path: Path) -> None:
    out = _ok(_run(DOCS / "examples" / "messenger.py", tmp_path)).splitlines()
    received = [line for line in out if " <- " in line]
    assert received.count("bob <- alice: 'Hello Bob'") == 1
    assert received.count("bob <- alice: 'Order #1042 is ready'") == 1
    assert received.count("alice <- bob: 'Thanks, picking it up at 5'") == 1
    assert len(received) == 3, out
    assert received.index("bob <- alice: 'Hello Bob'") < received.index("bob <- alice: 'Order #1042 is ready'")
    assert sum(line.startswith("[alice connected") for line in out) >= 1
    assert sum(line.startswith("[bob connected") for line in out) >= 1
    assert out[-1] == "done: alice's 2 and bob's 1 message(s) acknowledged by chatd, both outboxes empty"


# --------------------------------------------------------------------------- what the pages name exists
_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
_PATH = re.compile(r"`((?:wacrypto|tests|bench|fuzz|proto|docs)/[\w./-]*)`")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_and_named_paths_exist(page: Path) -> None:
    text = page.read_text()
    for target in _LINK.findall(text):
        if "://" in target:
            continue
        assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"
    for path in _PATH.findall(text):
        assert (REPO / path).exists(), f"{page.name} names {path}, which does not exist"


# --------------------------------------------------------------------------- reference tables = the code
def _table_first_column(text: str) -> set[str]:
    return set(re.findall(r"^\| `([^`]+)` \|", text, re.M))


def test_peer_protocol_lists_every_command() -> None:
    from wacrypto.tools import peer

    peer._load_extensions()
    text = (DOCS / "peer-protocol.md").read_text()
    commands = text[text.index("## Commands"):]
    assert _table_first_column(commands) == set(peer.COMMANDS)


def test_chat_doc_lists_every_config_field_and_server_parameter() -> None:
    from wacrypto.chat import ChatClientConfig
    from wacrypto.chatd import ChatdServer

    text = (DOCS / "chat.md").read_text()
    fields = {f.name for f in dataclasses.fields(ChatClientConfig)}
    config_table = text[text.index("### `ChatClientConfig`"):text.index("## `ChatdServer`")]
    assert _table_first_column(config_table) == fields
    server = text[text.index("## `ChatdServer`"):text.index("## `Messenger`")]
    params = set(inspect.signature(ChatdServer.__init__).parameters) - {"self"}
    assert _table_first_column(server) == params
    shown = server[server.index("ChatdServer(keys"):]
    shown = shown[:shown.index("```")]
    assert all(f"{name}=" in shown or name == "keys" for name in params), shown

def _allowed_imports() -> dict[str, set[str]]:
    spec = importlib.util.spec_from_file_location("_architecture", REPO / "tests" / "test_architecture.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    allowed: dict[str, set[str]] = mod.ALLOWED
    return allowed


def test_architecture_doc_lists_every_folder_and_its_imports() -> None:
    text = (DOCS / "architecture.md").read_text()
    table = text[text.index("## The folders"):text.index("## Error families")]
    documented: dict[str, set[str]] = {}
    for folder, imports in re.findall(r"^\| `(\w+)` \|[^|]*\| ([^|]*) \|$", table, re.M):
        names = {n.strip() for n in imports.split(",")} - {"-", ""}
        if "base" in names:
            names = (names - {"base"}) | {"errors", "limits"}
        documented[folder] = names
    assert documented == _allowed_imports()


def test_architecture_doc_places_every_error_in_its_family() -> None:
    from wacrypto import errors

    text = (DOCS / "architecture.md").read_text()
    section = text[text.index("## Error families"):]
    placed = {"WacryptoError"}
    for base, members in re.findall(r"^\| `(\w+)` \|(?:[^|]*\|)? ([^|]*`[^|]*) \|$", section, re.M):
        cls = getattr(errors, base)
        placed.add(base)
        for name in re.findall(r"`(\w+)`", members):
            if name == "ValueError":
                continue
            assert issubclass(getattr(errors, name), cls), f"docs/architecture.md puts {name} under {base}"
            placed.add(name)
    assert placed == set(errors.__all__)


_SHELL_PEER = re.compile(r"^\$ (printf .*\| \.venv/bin/wacrypto peer)$", re.M)


@pytest.mark.parametrize("page", [REPO / "README.md", DOCS / "peer-protocol.md"], ids=lambda p: p.name)
def test_peer_command_lines_answer_ok(page: Path, tmp_path: Path) -> None:
    import json
    import shlex

    lines = _SHELL_PEER.findall(page.read_text())
    assert lines, f"{page.name} shows how to drive wacrypto peer"
    for line in lines:
        cmd = line.replace(".venv/bin/wacrypto", f"{shlex.quote(sys.executable)} -m wacrypto")
        proc = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
        replies = [json.loads(r) for r in _ok(proc).splitlines()]
        requests = [json.loads(r) for r in shlex.split(line.split("|")[0])[2:]]
        assert [r["id"] for r in replies] == [r["id"] for r in requests]
        assert all(r["ok"] for r in replies), replies
