"""``wacrypto chatd init|run`` (the reference chat server) and ``wacrypto connect`` (a client that
connects like coreapp does and reports what happens as JSON lines)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import trio

from wacrypto.errors import InvalidArgumentError, TransportError, WacryptoError
from wacrypto.limits import DEFAULT_MAILBOX_SENDER_LIMIT, DEFAULT_MAILBOX_STRANGER_LIMIT, DEFAULT_MAILBOX_TTL, MAILBOX_LIMIT
from wacrypto.tools.cli.common import CliFailure, CliUsageError, leaves
from wacrypto.primitives.keys import KeyPair, PrivateKey
from wacrypto.transport.chat_connection import AckReceived, KeepaliveSettings, MessageReceived, PongReceived
from wacrypto.chat.client import ChatClientConfig, open_chat_client
from wacrypto.chat.events import ClientState, PortFailed, StateChanged
from wacrypto.chatd.media import MediaServer
from wacrypto.chatd.server import ROOT_PUB_FILE, SERVER_KEY_FILE, ChatdServer, ServerKeys, load_trust_file

__all__ = ["register"]


def _ports(text: str) -> list[int]:
    try:
        ports = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("ports are comma-separated numbers, e.g. 5222,443") from None
    if not ports or any(not 0 <= p < 65536 for p in ports):
        raise argparse.ArgumentTypeError("ports are comma-separated numbers 0..65535")
    return ports


def _port(text: str) -> int:
    ports = _ports(text)
    if len(ports) != 1:
        raise argparse.ArgumentTypeError("one port number is needed")
    return ports[0]


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("a number is needed") from None
    if not v > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return v


def _count(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("a whole number is needed") from None
    if v < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return v


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, sort_keys=False) + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------- chatd init / run
def _cmd_chatd_init(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    if (directory / SERVER_KEY_FILE).exists() and not args.force:
        raise CliUsageError(f"{directory} already holds server keys (use --force to replace them)")
    keys, root, inter = ServerKeys.generate(leaf_days=args.leaf_days)
    keys.save(directory, root, inter)
    _emit(
        {
            "event": "initialized",
            "dir": str(directory),
            "root_public_key": keys.root_public.u.hex(),
            "trust_file": str(directory / ROOT_PUB_FILE),
            "server_static_key": keys.static.public.u.hex(),
        }
    )
    return 0


def _load_server_keys(directory: Path) -> ServerKeys:
    hint = f"(run `wacrypto chatd init --dir {directory}` first)"
    try:
        return ServerKeys.load(directory)
    except FileNotFoundError as exc:
        raise CliFailure(f"no server keys in {directory}: {exc.filename} is missing {hint}") from None
    except OSError as exc:
        raise CliFailure(f"cannot read server keys in {directory}: {exc.strerror or exc}: {exc.filename}") from None
    except InvalidArgumentError as exc:
        raise CliUsageError(f"{exc} {hint}") from None
    except WacryptoError as exc:
        raise CliFailure(f"the server keys in {directory} cannot be served: {type(exc).__name__}: {exc}") from None


def _cmd_chatd_run(args: argparse.Namespace) -> int:
    keys = _load_server_keys(Path(args.dir))
    keepalive = KeepaliveSettings(
        interval=args.ping_interval,
        jitter=min(args.ping_interval / 4, 5.0),
        deadline=args.ping_deadline,
        dead_socket=args.ping_interval + args.ping_deadline,
    )

    async def main() -> None:
        server = ChatdServer(
            keys, keepalive=keepalive, min_client_version=args.min_version, relay=args.relay,
            mailbox_limit=args.mailbox_limit, mailbox_sender_limit=args.mailbox_sender_limit,
            mailbox_stranger_limit=args.mailbox_stranger_limit, mailbox_ttl=args.mailbox_days * 86400.0,
            database=args.database,
        )
        media = MediaServer(Path(args.dir) / "media") if args.media_port is not None else None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_close_at_exit, server)
            try:
                bound = await nursery.start(server.serve, args.host, args.ports)
                if media is not None:
                    await nursery.start(media.serve, args.host, args.media_port)
            except (OSError, BaseExceptionGroup) as exc:
                os_errors = [e for e in leaves(exc) if isinstance(e, OSError)]
                if not os_errors or len(os_errors) != len(leaves(exc)):
                    raise
                ports = ",".join(map(str, args.ports + ([args.media_port] if media is not None else [])))
                why = os_errors[0].strerror or os_errors[0]
                raise CliFailure(f"cannot listen on {args.host} port(s) {ports}: {why}") from None
            for port in args.refuse_port or []:
                await server.refuse_port(port)
            for port in args.stall_port or []:
                server.stall_port(port)
            _emit({"event": "listening", "host": args.host, "ports": bound, "pid": os.getpid(), "relay": args.relay}
                  | ({"media_url": media.url} if media is not None else {})
                  | ({"database": str(args.database)} if args.database is not None else {}))

    trio.run(main)  # until Ctrl-C (exit 130, see main())
    return 0


async def _close_at_exit(server: ChatdServer) -> None:
    """Close the server's database when serving ends (Ctrl-C); a SIGKILL loses nothing committed."""
    try:
        await trio.sleep_forever()
    finally:
        server.close()


def _version(text: str) -> tuple[int, int, int]:
    parts = text.split(".")
    try:
        nums = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError("version is X.Y.Z") from None
    if len(nums) != 3:
        raise argparse.ArgumentTypeError("version is X.Y.Z")
    return nums[0], nums[1], nums[2]


# --------------------------------------------------------------------------- connect
def _load_or_create_key(path: Path | None) -> KeyPair:
    """The client's static key from ``path`` (64 hex digits, as this command writes it), or a new
    one written there (mode 0600) if the file does not exist yet."""
    if path is None:
        return KeyPair.generate()
    expected = "a client static private key as 64 hex digits (the file `connect --key` creates when it is missing)"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        pass
    else:
        try:
            raw = bytes.fromhex(data.decode("ascii").strip()) if len(data) <= 1024 else b""
        except (UnicodeDecodeError, ValueError):
            raw = b""
        if len(raw) != 32:
            raise CliUsageError(f"--key {path}: expected {expected}; this file holds something else")
        return KeyPair(PrivateKey(raw))
    kp = KeyPair.generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(kp.private.to_bytes().hex() + "\n")
    return kp


def _event_json(ev: object, t0: float) -> dict[str, Any]:
    t = round(time.monotonic() - t0, 4)
    if isinstance(ev, StateChanged):
        out: dict[str, Any] = {"event": "state", "t": t, "state": ev.state.value}
        if ev.port is not None:
            out["port"] = ev.port
            out["via_proxy"] = ev.via_proxy
        if ev.delay is not None:
            out["retry_in"] = round(ev.delay, 3)
        if ev.error is not None:
            out["error"] = str(ev.error)
            out["error_type"] = type(ev.error).__name__
        return out
    if isinstance(ev, PortFailed):
        return {"event": "port_failed", "t": t, "port": ev.port, "reason": ev.reason}
    if isinstance(ev, PongReceived):
        return {"event": "pong", "t": t, "id": ev.id, "rtt_ms": round(ev.rtt * 1000, 3)}
    if isinstance(ev, MessageReceived):
        return {"event": "message", "t": t, "id": ev.id, "bytes": len(ev.payload)}
    if isinstance(ev, AckReceived):
        return {"event": "ack", "t": t, "id": ev.id}
    return {"event": type(ev).__name__, "t": t}  # pragma: no cover


def _cmd_connect(args: argparse.Namespace) -> int:
    try:
        root = load_trust_file(Path(args.trust))
    except InvalidArgumentError as exc:
        raise CliUsageError(f"--trust {exc}") from None
    key = _load_or_create_key(Path(args.key) if args.key else None)
    config = ChatClientConfig(
        host=args.host,
        trusted_root=root,
        static_key=key,
        ports=tuple(args.ports),
        proxy=args.proxy,
        connect_timeout=args.connect_timeout,
        max_attempts=args.attempts,
    )
    t0 = time.monotonic()

    async def main() -> int:
        async with open_chat_client(config) as client:

            async def pinger() -> None:
                try:
                    while True:
                        await client.wait_connected()
                        await client.ping()
                        await trio.sleep(args.ping_every)
                except TransportError:
                    return

            pongs = 0
            with trio.move_on_after(args.timeout):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(pinger)
                    async for ev in client.events():
                        _emit(_event_json(ev, t0))
                        if isinstance(ev, PongReceived):
                            pongs += 1
                            if args.pings and pongs >= args.pings:
                                nursery.cancel_scope.cancel()
                                return 0
                        if isinstance(ev, StateChanged) and ev.state is ClientState.CLOSED:
                            nursery.cancel_scope.cancel()
                            err = ev.error
                            raise CliFailure(f"{type(err).__name__}: {err}" if err else "connection closed")
            _emit({"event": "error", "t": round(time.monotonic() - t0, 4), "error": "timeout", "state": client.state.value})
            raise CliFailure(f"timed out after {args.timeout:g}s with {pongs} of {args.pings} pongs (state: {client.state.value})")

    return trio.run(main)  # Ctrl-C: exit 130, see main()


# --------------------------------------------------------------------------- registration
def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    chatd = sub.add_parser("chatd", help="reference chat server (init keys, run)")
    chatd_sub = chatd.add_subparsers(dest="chatd_command", required=True, metavar="ACTION")

    init = chatd_sub.add_parser("init", help="create the server's root key, certificates and static key")
    init.add_argument("--dir", required=True, help="directory for the key material")
    init.add_argument("--force", action="store_true", help="replace existing keys")
    init.add_argument("--leaf-days", type=int, default=365, help="leaf certificate validity (days)")
    init.set_defaults(func=_cmd_chatd_init)

    run = chatd_sub.add_parser("run", help="serve clients")
    run.add_argument("--dir", required=True, help="directory made by `chatd init`")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--ports", type=_ports, default=[5222, 443], help="comma-separated, e.g. 5222,443")
    run.add_argument("--ping-interval", type=_positive, default=30.0, help="ping clients idle this long (s)")
    run.add_argument("--ping-deadline", type=_positive, default=20.0, help="pong deadline (s)")
    run.add_argument("--min-version", type=_version, default=(0, 0, 0), help="oldest client version served")
    run.add_argument("--relay", action=argparse.BooleanOptionalAction, default=True,
                     help="carry envelopes between clients (wacrypto.chat.messenger), mailboxes kept in memory "
                          "(default); --no-relay only answers pings and acknowledges raw messages, and leaves "
                          "envelopes unacknowledged so the senders keep them")
    run.add_argument("--mailbox-limit", type=_count, default=MAILBOX_LIMIT, metavar="N",
                     help=f"relay: messages waiting for one recipient, at most (default {MAILBOX_LIMIT})")
    run.add_argument("--mailbox-sender-limit", type=_count, default=DEFAULT_MAILBOX_SENDER_LIMIT, metavar="N",
                     help=f"relay: of those, from one sender (default {DEFAULT_MAILBOX_SENDER_LIMIT})")
    run.add_argument("--mailbox-stranger-limit", type=_count, default=DEFAULT_MAILBOX_STRANGER_LIMIT, metavar="N",
                     help="relay: of those, from senders the recipient never wrote to, together "
                          f"(default {DEFAULT_MAILBOX_STRANGER_LIMIT})")
    run.add_argument("--mailbox-days", type=_positive, default=DEFAULT_MAILBOX_TTL / 86400, metavar="DAYS",
                     help=f"relay: days a message waits unacknowledged before it is dropped "
                          f"(default {DEFAULT_MAILBOX_TTL / 86400:g})")
    run.add_argument("--database", type=Path, metavar="PATH",
                     help="serve the WhatsApp stanzas of docs/chat-protocol.md to clients whose handshake names a "
                          "device (wacrypto.chat.wa_messenger), keeping logins, keys, devices and mailboxes in "
                          "this SQLite file (created if missing; default: not served)")
    run.add_argument("--media-port", type=_port, metavar="N",
                     help="also serve media uploads and downloads (wacrypto.chatd.media) on this port, blobs kept "
                          "in DIR/media (0: a free port; default: no media endpoint)")
    run.add_argument("--refuse-port", type=int, action="append", help="fault: close this port's listener")
    run.add_argument("--stall-port", type=int, action="append", help="fault: accept on this port, never answer")
    run.set_defaults(func=_cmd_chatd_run)

    connect = sub.add_parser("connect", help="connect to a chat server like coreapp; JSON line per event")
    connect.add_argument("--host", required=True)
    connect.add_argument("--ports", type=_ports, default=[5222, 443], help="tried in order, e.g. 5222,443")
    connect.add_argument("--trust", required=True, help="file with the server root public key (hex)")
    connect.add_argument("--pings", type=int, default=3, help="exit 0 after this many pongs (0: run forever)")
    connect.add_argument("--ping-every", type=_positive, default=1.0, help="seconds between pings")
    connect.add_argument("--proxy", help="http://host:port CONNECT proxy for the fallback ports")
    connect.add_argument("--key", help="client static key file (hex; created if missing)")
    connect.add_argument("--connect-timeout", type=_positive, default=5.0, help="per port (s)")
    connect.add_argument("--attempts", type=int, default=3, help="give up after this many failed attempts")
    connect.add_argument("--timeout", type=_positive, default=60.0, help="overall limit (s)")
    connect.set_defaults(func=_cmd_connect)


