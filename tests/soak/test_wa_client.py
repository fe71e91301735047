"""``wacrypto wa-client`` and ``wacrypto chatd run --database`` as processes: the JSON-lines contract
the soak and the end-to-end bench rely on (docs/soak.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from procs import Child, Line, chatd_argv, init_chatd_keys, wa_client_argv  # noqa: E402

from wacrypto.testing.chatd_process import cli_env, free_port, wacrypto_cmd  # noqa: E402

A, B = "15550000001@s.whatsapp.net", "15550000002@s.whatsapp.net"


def test_each_jid_needs_its_store_and_key(tmp_path: Path) -> None:
    out = subprocess.run(wacrypto_cmd("wa-client", "--trust", str(tmp_path / "root.pub"), "--jid", A, "--store",
                                      f"sqlite:///{tmp_path / 'a.db'}", "--key", str(tmp_path / "a.key"), "--jid", B),
                         capture_output=True, text=True, env=cli_env(), timeout=60)
    assert out.returncode == 2 and "one --store and one --key for each --jid" in out.stderr


async def test_send_burst_receive_handled_pending_and_a_restart(tmp_path: Path) -> None:
    trust = init_chatd_keys(tmp_path / "keys")
    port = free_port()
    lines: dict[str, list[tuple[int, Line]]] = {"chatd": [], "A": [], "B": []}
    changed = trio.Event()

    def on_line(child: Child, lifetime: int, obj: Line) -> None:
        nonlocal changed
        lines[child.name].append((lifetime, obj))
        changed.set()

    async def until(name: str, pred: object, n: int = 1, lifetime: int = 1) -> list[Line]:
        nonlocal changed
        assert callable(pred)
        with trio.fail_after(30):
            while True:
                got = [o for lt, o in lines[name] if lt == lifetime and pred(o)]
                if len(got) >= n:
                    return got
                changed = trio.Event()
                await changed.wait()

    chatd = Child("chatd", chatd_argv(tmp_path / "keys", tmp_path / "chatd.db", port), tmp_path / "chatd.log", on_line)
    a = Child("A", wa_client_argv([(A, f"sqlite:///{tmp_path / 'a.db'}", tmp_path / "a.key")], trust, port),
              tmp_path / "a.log", on_line)
    b = Child("B", wa_client_argv([(B, f"sqlite:///{tmp_path / 'b.db'}", tmp_path / "b.key")], trust, port),
              tmp_path / "b.log", on_line)
    async with trio.open_nursery() as nursery:
        try:
            await chatd.start(nursery)
            (listening,) = await until("chatd", lambda o: o.get("event") == "listening")
            assert listening["database"].endswith("chatd.db")
            for c in (a, b):
                await c.start(nursery)
            for name, jid in (("A", A), ("B", B)):
                (started,) = await until(name, lambda o: "started" in o)
                assert started == {"started": jid, "created": True, "pid": started["pid"]}
                await until(name, lambda o: o.get("ready") == jid)
            await a.send({"cmd": "send", "to": B, "text": "k0|hello", "key": "k0"})
            await a.send({"cmd": "burst", "to": B, "key": "b", "count": 3, "size": 40, "window": 2, "rate": 10})
            await a.send({"cmd": "burst", "to": B, "key": "x", "count": 3, "rate": -1})
            await a.send({"cmd": "bogus"})
            sent_lines = await until("A", lambda o: "sent" in o, 4)
            sent = {o["sent"]: o["id"] for o in sent_lines}
            assert set(sent) == {"k0", "b.0", "b.1", "b.2"}
            t0 = {o["sent"]: o["t0"] for o in sent_lines}
            assert t0["b.2"] - t0["b.0"] >= 0.19  # paced: 10 a second
            assert await until("A", lambda o: "error" in o and "rate" in o["error"])
            assert await until("A", lambda o: o.get("burst_done") == "b")
            assert await until("A", lambda o: "error" in o and "bogus" in o["error"])
            received = await until("B", lambda o: "received" in o, 4)
            assert {o["received"]: o["text"] for o in received} == {
                sent["k0"]: "k0|hello", **{sent[f"b.{i}"]: f"b.{i}|".ljust(40, "x") for i in range(3)}}
            assert all(o["from"] == A and not o["redelivered"] for o in received)
            handled = await until("B", lambda o: "handled" in o, 4)
            assert {o["handled"] for o in handled} == set(sent.values())
            with trio.fail_after(30):
                while True:
                    await a.send({"cmd": "pending"})
                    last = (await until("A", lambda o: "pending" in o))[-1]
                    if last["pending"] == 0:
                        break
                    await trio.sleep(0.1)
            assert last["devices"] == {A: 0}
            await b.quit()
            assert await b.wait() == 0
            await b.start(nursery)  # handled before: nothing is handed out again
            await until("B", lambda o: "started" in o and not o["created"], lifetime=2)
            await until("B", lambda o: o.get("ready") == B, lifetime=2)
            await trio.sleep(0.5)
            assert not [o for lt, o in lines["B"] if lt == 2 and "received" in o]
        finally:
            for c in (a, b, chatd):
                c.kill_now()
        nursery.cancel_scope.cancel()


async def test_stripe_workers(tmp_path: Path) -> None:
    """``--stripe``: stripe 1 refuses to start on a store without an account; a second worker for a
    live stripe, or a process for the whole account, is refused by the lease; the two workers each
    serve their own chats only."""
    from wacrypto.whatsapp.stripes import stripe_of

    trust = init_chatd_keys(tmp_path / "keys")
    port = free_port()
    store, key = f"sqlite:///{tmp_path / 'a.db'}", tmp_path / "a.key"
    lines: dict[str, list[Line]] = {}
    changed = trio.Event()

    def on_line(child: Child, lifetime: int, obj: Line) -> None:
        nonlocal changed
        lines.setdefault(child.name, []).append(obj)
        changed.set()

    async def until(name: str, pred: object) -> Line:
        nonlocal changed
        assert callable(pred)
        with trio.fail_after(30):
            while True:
                for o in lines.get(name, []):
                    if pred(o):
                        return o
                changed = trio.Event()
                await changed.wait()

    def worker(stripe: str) -> list[str]:
        return wa_client_argv([(A, store, key)], trust, port, "--stripe", stripe)

    early = subprocess.run(worker("1/2"), capture_output=True, text=True, env=cli_env(), timeout=60, stdin=subprocess.DEVNULL)
    assert early.returncode != 0 and "start the worker of stripe 0/2 first" in early.stderr
    chatd = Child("chatd", chatd_argv(tmp_path / "keys", tmp_path / "chatd.db", port), tmp_path / "chatd.log", on_line)
    a0 = Child("A0", worker("0/2"), tmp_path / "a0.log", on_line)
    a1 = Child("A1", worker("1/2"), tmp_path / "a1.log", on_line)
    b = Child("B", wa_client_argv([(B, f"sqlite:///{tmp_path / 'b.db'}", tmp_path / "b.key")], trust, port),
              tmp_path / "b.log", on_line)
    owner, other = ("A1", "A0") if stripe_of(B, 2) else ("A0", "A1")
    async with trio.open_nursery() as nursery:
        try:
            await chatd.start(nursery)
            await until("chatd", lambda o: o.get("event") == "listening")
            await a0.start(nursery)
            await until("A0", lambda o: o.get("ready") == A)
            twin = subprocess.run(worker("0/2"), capture_output=True, text=True, env=cli_env(), timeout=60,
                                  stdin=subprocess.DEVNULL)
            assert twin.returncode != 0 and "stripe 0/2 is in use" in twin.stderr
            whole = subprocess.run(wa_client_argv([(A, store, key)], trust, port), capture_output=True, text=True,
                                   env=cli_env(), timeout=60, stdin=subprocess.DEVNULL)
            assert whole.returncode != 0 and "the account cannot be leased" in whole.stderr  # no --stripe: refused too
            for c in (a1, b):
                await c.start(nursery)
            await until("A1", lambda o: o.get("ready") == A and True)
            assert (await until("A1", lambda o: "started" in o))["stripe"] == "1/2"
            await until("B", lambda o: o.get("ready") == B)
            await {"A0": a0, "A1": a1}[other].send({"cmd": "send", "to": B, "text": "n|no", "key": "n"})
            failed = await until(other, lambda o: o.get("failed") == "n")
            assert failed["error"] == "InvalidArgumentError"
            await {"A0": a0, "A1": a1}[owner].send({"cmd": "send", "to": B, "text": "y|yes", "key": "y"})
            await until("B", lambda o: o.get("text") == "y|yes")
            await b.send({"cmd": "send", "to": A, "text": "r|reply", "key": "r"})
            await until(owner, lambda o: "handled" in o)
            assert not any("received" in o for o in lines.get(other, []))
            for c in (a0, a1, b):
                await c.quit()
        finally:
            for c in (a0, a1, b, chatd):
                c.kill_now()
        nursery.cancel_scope.cancel()
