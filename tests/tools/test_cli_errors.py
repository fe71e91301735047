"""The `wacrypto` CLI as a user meets it when things go wrong: every error is one line on stderr
with a documented exit code (1 failure, 2 usage), Ctrl-C exits 130 without a word, and the demo
never deletes a folder it did not make. Each case runs the real CLI in a subprocess."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from wacrypto import __version__
from wacrypto.testing.chatd_process import ChatdProcess, cli_env, free_port, interruptible, wacrypto_cmd


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full_env = cli_env() | (env or {})
    return subprocess.run(wacrypto_cmd(*args), capture_output=True, text=True, env=full_env, cwd=cwd,
                          stdin=subprocess.DEVNULL, timeout=timeout)


def one_line_error(out: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    """Assert: exit ``code``, exactly one line on stderr naming the command, no traceback."""
    lines = out.stderr.strip().splitlines()
    assert out.returncode == code, (out.returncode, out.stderr)
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert lines[0].startswith("wacrypto") and ": error: " in lines[0], lines[0]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def test_help_documents_the_exit_codes_and_version_prints_the_version() -> None:
    helped = cli("--help")
    assert helped.returncode == 0
    for line in ("exit status:", "0    success", "1    failure", "2    usage", "130  interrupted"):
        assert line in helped.stdout
    for command in (("store", "info"), ("chatd", "run"), ("demo",), ("media", "decrypt")):
        assert "130  interrupted" in cli(*command, "--help").stdout, command
    version = cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"wacrypto {__version__}"


def test_bad_arguments_are_one_line_usage_errors() -> None:
    one_line_error(cli("store", "info"), 2, "--store")
    one_line_error(cli("connect", "--host", "h", "--trust", "t", "--ports", "x"), 2, "ports")
    one_line_error(cli("no-such-command"), 2)


# ---------------------------------------------------------------------------------- demo --dir
def test_demo_refuses_a_folder_it_did_not_make_and_deletes_nothing(tmp_path: Path) -> None:
    mine = tmp_path / "mydocs"
    mine.mkdir()
    (mine / "thesis.txt").write_text("four years of work")
    (mine / "alice.db").write_text("a user's own file that happens to share a name")
    one_line_error(cli("demo", "--dir", str(mine)), 2, str(mine), "not made by `wacrypto demo`")
    assert sorted(p.name for p in mine.iterdir()) == ["alice.db", "thesis.txt"]
    assert (mine / "alice.db").read_text().startswith("a user's own file")
    # `--dir .` in a working folder with files in it: refused, nothing touched
    one_line_error(cli("demo", "--dir", ".", cwd=mine), 2)
    assert sorted(p.name for p in mine.iterdir()) == ["alice.db", "thesis.txt"]
    (tmp_path / "afile").write_text("x")
    one_line_error(cli("demo", "--dir", str(tmp_path / "afile")), 2, "not a folder")
    assert (tmp_path / "afile").read_text() == "x"


def test_demo_reuses_its_own_folder_and_removes_only_its_own_files(tmp_path: Path) -> None:
    d = tmp_path / "demo"
    first = cli("demo", "--dir", str(d), timeout=120)
    assert first.returncode == 0, first.stderr
    assert (d / ".wacrypto-demo").exists() and (d / "alice.db").exists()
    (d / "notes.txt").write_text("kept")
    again = cli("demo", "--dir", str(d), timeout=120)
    assert again.returncode == 0, again.stderr
    assert "bob got 7 of 7 messages (0 lost, 0 duplicated)" in again.stdout  # fresh accounts again
    assert (d / "notes.txt").read_text() == "kept"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli("demo", "--dir", str(empty), timeout=120).returncode == 0  # an empty folder is fine


# ---------------------------------------------------------------------------------- chatd / connect
def test_a_port_in_use_is_a_one_line_failure(keydir: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = cli("chatd", "run", "--dir", str(keydir), "--ports", str(port))
    one_line_error(out, 1, "cannot listen", str(port), "in use")


def test_chatd_run_without_keys_says_how_to_make_them(tmp_path: Path) -> None:
    one_line_error(cli("chatd", "run", "--dir", str(tmp_path / "nokeys"), "--ports", "0"), 1, "chatd init")


def test_chatd_relays_by_default(keydir: Path) -> None:
    for extra, relay in (((), True), (("--no-relay",), False)):
        server = ChatdProcess(keydir, [free_port()], *extra)
        server.start()
        try:
            assert server.listening["relay"] is relay
        finally:
            server.stop()


def test_trust_and_key_files_of_the_wrong_kind_are_named(keydir: Path, tmp_path: Path) -> None:
    port = str(free_port())
    # the private root key (binary) where the public trust file belongs
    line = one_line_error(cli("connect", "--host", "127.0.0.1", "--ports", port, "--trust", str(keydir / "root.key")),
                          2, str(keydir / "root.key"), "root public key", "64 hex digits")
    assert "codec" not in line
    garbage = tmp_path / "client.key"
    garbage.write_text("garbage\n")
    one_line_error(cli("connect", "--host", "127.0.0.1", "--ports", port, "--trust", str(keydir / "root.pub"),
                       "--key", str(garbage)), 2, str(garbage), "private key", "64 hex digits")
    binary = tmp_path / "binary.key"
    binary.write_bytes(bytes(range(200, 232)))
    one_line_error(cli("connect", "--host", "127.0.0.1", "--ports", port, "--trust", str(keydir / "root.pub"),
                       "--key", str(binary)), 2, str(binary))
    one_line_error(cli("connect", "--host", "127.0.0.1", "--ports", port, "--trust", str(tmp_path / "missing.pub")),
                   1, "missing.pub")


# ---------------------------------------------------------------------------------- store / peer
def test_store_info_refuses_a_missing_sqlite_file_unless_create(tmp_path: Path) -> None:
    db = tmp_path / "typo.db"
    one_line_error(cli("store", "info", "--store", f"sqlite:///{db}"), 2, str(db), "--create")
    assert not db.exists()
    made = cli("store", "info", "--store", f"sqlite:///{db}", "--create")
    assert made.returncode == 0 and json.loads(made.stdout)["backend"] == "sqlite" and db.exists()
    again = cli("store", "info", "--store", f"sqlite:///{db}")
    assert again.returncode == 0, again.stderr


def test_store_backup_to_a_missing_folder_is_a_one_line_failure(tmp_path: Path) -> None:
    db = tmp_path / "k.db"
    assert cli("store", "info", "--store", f"sqlite:///{db}", "--create").returncode == 0
    out = cli("store", "backup", "--store", f"sqlite:///{db}", "--out", "/missing/dir/x",
              env={"WACRYPTO_BACKUP_PASSWORD": "pw"})
    one_line_error(out, 1, "/missing/dir/x", "does not exist")
    one_line_error(cli("store", "backup", "--store", f"sqlite:///{tmp_path / 'nope.db'}", "--out", str(tmp_path / "b"),
                       env={"WACRYPTO_BACKUP_PASSWORD": "pw"}), 1, "nope.db")
    assert not (tmp_path / "nope.db").exists() and not (tmp_path / "b").exists()


def test_a_file_name_where_a_store_url_belongs_is_a_usage_error(tmp_path: Path) -> None:
    one_line_error(cli("peer", "--store", "keys.db", cwd=tmp_path), 2, "sqlite:///keys.db")
    one_line_error(cli("store", "info", "--store", "keys.db", cwd=tmp_path), 2, "sqlite:///keys.db")
    assert not (tmp_path / "keys.db").exists()


def test_a_closed_output_pipe_ends_quietly(tmp_path: Path) -> None:
    """`wacrypto store info | head -0`: the reader is gone before the first byte is written."""
    db = tmp_path / "k.db"
    assert cli("store", "info", "--store", f"sqlite:///{db}", "--create").returncode == 0
    proc = subprocess.Popen(wacrypto_cmd("store", "info", "--store", f"sqlite:///{db}"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=cli_env())
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    code = proc.wait(60)
    err = proc.stderr.read()
    proc.stderr.close()
    assert code == 1 and err == ""


# ---------------------------------------------------------------------------------- Ctrl-C
def _interrupt(proc: subprocess.Popen[str]) -> tuple[int, str]:
    assert proc.stderr is not None
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
    return code, proc.stderr.read()


def test_ctrl_c_exits_130_quietly_on_chatd_run(keydir: Path) -> None:
    server = ChatdProcess(keydir, [free_port()])
    server.start()
    try:
        code, err = server.interrupt()
    finally:
        server.stop()
    assert (code, err) == (130, "")


def test_ctrl_c_exits_130_quietly_on_connect(keydir: Path) -> None:
    port = free_port()
    server = ChatdProcess(keydir, [port])
    server.start()
    try:
        proc = subprocess.Popen(
            wacrypto_cmd("connect", "--host", "127.0.0.1", "--ports", str(port), "--trust", str(keydir / "root.pub"),
                         "--pings", "0"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(), preexec_fn=interruptible,
        )
        assert proc.stdout is not None
        while True:  # until it is connected and pinging
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else ""
            if json.loads(line)["event"] == "pong":
                break
        code, err = _interrupt(proc)
        proc.stdout.close()
    finally:
        server.stop()
    assert (code, err) == (130, "")


@pytest.mark.parametrize("store", [None, "sqlite"])
def test_ctrl_c_exits_130_quietly_on_peer(store: str | None, tmp_path: Path) -> None:
    args = ["peer"] + (["--store", f"sqlite:///{tmp_path / 'peer.db'}"] if store else [])
    proc = subprocess.Popen(wacrypto_cmd(*args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=cli_env(), preexec_fn=interruptible)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps({"id": 1, "cmd": "no-such-command"}) + "\n")
    proc.stdin.flush()
    assert json.loads(proc.stdout.readline())["id"] == 1  # it is serving, waiting for the next line
    code, err = _interrupt(proc)
    proc.stdin.close()
    proc.stdout.close()
    assert (code, err) == (130, "")
    if store:
        assert (tmp_path / "peer.db").exists()

