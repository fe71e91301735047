"""atheris harness: chatd's media endpoint (``wacrypto.chatd.media``) fed arbitrary HTTP bytes.

``MediaServer.handle_stream`` runs on one end of an in-memory stream pair
(``trio.testing.memory_stream_pair``, virtual clock); the fuzzer's bytes go in at the other end, whole
or in fuzzer-chosen pieces, then EOF. Three targets, picked by the first input byte:

* raw bytes (mostly garbage for h11 and the router);
* a fuzzer-built sequence of requests: GET / HEAD / POST / others, a stored blob's path, a fresh
  token, a malformed one, query tokens, ``Range``, ``Content-Length`` (right, short, long, huge),
  chunked bodies, ``Expect: 100-continue``, ``Connection: close``, bodies that match their token or
  not, the whole maybe truncated;
* ``parse_range`` on fuzzed header values and sizes.

Invariants: ``handle_stream`` returns (nothing the peer sends escapes as an exception, and the
virtual clock bounds every wait); the server writes only HTTP/1.1 responses with a documented status,
never a 500; the folder afterwards holds only complete blobs, each named by its own SHA-256 and
within the size limit, and no temporary file; a well-formed upload of a matching body, sent first and
not truncated, is answered 201/200 and stored; a range lies within the blob.
Run: python fuzz/fuzz_media_http.py -runs=2000   (longer: -max_total_time=600)
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

import atheris

# Import the dependencies uninstrumented (trio, and the chatd package whose __init__ pulls in the
# chat stack), then instrument only h11 and the media endpoint.
import trio
import trio.testing
import wacrypto  # noqa: F401
import wacrypto.chatd  # noqa: F401

with atheris.instrument_imports(include=["wacrypto.chatd.media", "h11"]):
    from wacrypto.chatd.media import PARTIAL_DIR, MediaServer, parse_range

MAX_BLOB = 4096
MAX_HEAD = 2048
STATUSES = {100, 200, 201, 206, 400, 404, 405, 408, 413, 416, 431, 501, 505}

def _scratch() -> Path:
    """This process's blob folder; those of earlier runs are removed (libFuzzer exits without
    running Python's clean-ups)."""
    parent = Path(tempfile.gettempdir()) / "wacrypto-fuzz-media-http"
    parent.mkdir(exist_ok=True)
    for old in parent.iterdir():
        try:
            os.kill(int(old.name), 0)
        except (ValueError, ProcessLookupError):
            shutil.rmtree(old, ignore_errors=True)
        except PermissionError:
            pass  # another user's live process
    return parent / str(os.getpid())


ROOT = _scratch()
# a stored blob for GET / HEAD / Range; no byte of it is b"H", so the response parser below never
# mistakes a body for the start of the next response
KNOWN = bytes(b for b in range(256) if b != ord("H")) * 3
METHODS = [b"GET", b"HEAD", b"POST", b"PUT", b"OPTIONS", b"G\x00T", b""]
KINDS = [b"image", b"document", b"app-state", b"IMAGE", b"a" * 40, b""]


def _token(digest: bytes) -> bytes:
    return base64.urlsafe_b64encode(digest).rstrip(b"=")


KNOWN_TOKEN = _token(hashlib.sha256(KNOWN).digest())


def _fresh_server() -> MediaServer:
    if ROOT.exists():
        shutil.rmtree(ROOT)
    server = MediaServer(ROOT, max_blob_bytes=MAX_BLOB, max_head_bytes=MAX_HEAD, timeout=5.0)
    server.path_of(hashlib.sha256(KNOWN).digest()).write_bytes(KNOWN)
    return server


# --------------------------------------------------------------------------- building requests
def _body(fdp: atheris.FuzzedDataProvider) -> bytes:
    body = bytearray(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, MAX_BLOB + 64)))
    return bytes(body).replace(b"H", b"h")  # see KNOWN


def _request(fdp: atheris.FuzzedDataProvider) -> tuple[bytes, bool, bytes | None]:
    """One request; returns its bytes, whether it is well-formed, and the blob it should store (a
    well-formed POST whose body matches its token and fits the limit)."""
    clean = True
    method = METHODS[fdp.ConsumeIntInRange(0, len(METHODS) - 1)]
    clean = clean and method in (b"GET", b"HEAD", b"POST")
    body = _body(fdp) if method == b"POST" or fdp.ConsumeIntInRange(0, 7) == 0 else b""
    pick = fdp.ConsumeIntInRange(0, 5)
    if pick == 0:
        token = KNOWN_TOKEN
    elif pick <= 3:
        token = _token(hashlib.sha256(body).digest())  # matches the body
    elif pick == 4:
        token = _token(fdp.ConsumeBytes(32).ljust(32, b"\0"))
    else:
        token = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 50))
        clean = False
    kind = KINDS[fdp.ConsumeIntInRange(0, len(KINDS) - 1)]
    target = b"/mms/" + kind + b"/" + token
    query = fdp.ConsumeIntInRange(0, 3)
    if query == 1:
        target += b"?token=" + token
    elif query == 2:
        target += b"?token=" + token + b"&auth=" + fdp.ConsumeBytes(8).hex().encode()
    elif query == 3:
        target += b"?" + fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 40))
        clean = False
    if fdp.ConsumeIntInRange(0, 15) == 0:
        target = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 80))
        clean = False
    head = [method + b" " + target + b" HTTP/1.1", b"Host: media"]
    chunked = method == b"POST" and fdp.ConsumeIntInRange(0, 3) == 0
    length = len(body)
    framing = fdp.ConsumeIntInRange(0, 7)
    if chunked:
        head.append(b"Transfer-Encoding: chunked")
    elif framing == 0:
        length = fdp.ConsumeIntInRange(0, 1 << 40)  # wrong: short, long or huge
        clean = False
    if not chunked and (body or method == b"POST"):
        head.append(b"Content-Length: " + str(length).encode())
    if fdp.ConsumeIntInRange(0, 3) == 0:
        if fdp.ConsumeBool():
            first, last = fdp.ConsumeIntInRange(0, 1000), fdp.ConsumeIntInRange(0, 1000)
            spec = [f"{first}-{last}", f"{first}-", f"-{last}", f"{first}-{last},{last}-"][fdp.ConsumeIntInRange(0, 3)]
            head.append(b"Range: bytes=" + spec.encode())
        else:
            head.append(b"Range: " + fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 30)))
    if fdp.ConsumeIntInRange(0, 7) == 0:
        head.append(b"Expect: 100-continue")
    if fdp.ConsumeIntInRange(0, 7) == 0:
        head.append(b"Connection: close")
    if fdp.ConsumeIntInRange(0, 7) == 0:
        head.append(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 60)))
        clean = False
    if fdp.ConsumeIntInRange(0, 31) == 0:
        head.append(b"X-Pad: " + b"p" * fdp.ConsumeIntInRange(0, 3 * MAX_HEAD))
        clean = False
    wire = b"\r\n".join(head) + b"\r\n\r\n"
    if chunked:
        pos = 0
        while pos < len(body):
            n = fdp.ConsumeIntInRange(1, max(1, len(body) - pos))
            wire += f"{n:x}\r\n".encode() + body[pos : pos + n] + b"\r\n"
            pos += n
        wire += b"0\r\n\r\n"
    else:
        wire += body
    stores = None
    if clean and method == b"POST" and 1 <= pick <= 3 and len(body) <= MAX_BLOB and kind in KINDS[:3]:
        stores = body
    return wire, clean, stores


# --------------------------------------------------------------------------- running the server
def _pieces(fdp: atheris.FuzzedDataProvider, data: bytes) -> list[bytes]:
    n = fdp.ConsumeIntInRange(0, 16)
    cuts = sorted({fdp.ConsumeIntInRange(0, len(data)) for _ in range(n)}) if data else []
    out, prev = [], 0
    for c in [*cuts, len(data)]:
        if c > prev:
            out.append(data[prev:c])
        prev = c
    return out


def _serve(server: MediaServer, pieces: list[bytes]) -> bytes:
    out = bytearray()

    async def main() -> None:
        client, peer = trio.testing.memory_stream_pair()

        async def feed() -> None:
            try:
                for piece in pieces:
                    await client.send_all(piece)
                    await trio.sleep(0)
                await client.send_eof()
            except trio.BrokenResourceError:
                pass  # the server closed the connection before the rest came: as a socket would

        async def read() -> None:
            while data := await client.receive_some(65536):
                out.extend(data)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.handle_stream, peer)
            nursery.start_soon(feed)
            nursery.start_soon(read)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return bytes(out)


def _statuses(out: bytes) -> list[int]:
    """The status of each response in ``out`` (which must be nothing but responses)."""
    statuses, pos = [], 0
    while pos < len(out):
        if not out.startswith(b"HTTP/1.1 ", pos):
            raise AssertionError(f"not a response at {pos}: {out[pos:pos + 40]!r}")
        end = out.index(b"\r\n\r\n", pos)
        status = int(out[pos + 9 : pos + 12])
        length = 0
        for line in out[pos:end].split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        pos = end + 4
        statuses.append(status)
        if status != 100 and length and not out.startswith(b"HTTP/1.1 ", pos):  # a HEAD answer has no body
            pos += length
    return statuses


def _check_folder(server: MediaServer) -> None:
    if list((ROOT / PARTIAL_DIR).iterdir()):
        raise AssertionError("a temporary file outlived its connection")
    for path in ROOT.iterdir():
        if path.is_file():
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() != path.name or len(data) > server.max_blob_bytes:
                raise AssertionError(f"{path.name} is not a complete blob under its own hash")


def fuzz_server(fdp: atheris.FuzzedDataProvider, structured: bool) -> None:
    server = _fresh_server()
    stores: bytes | None = None
    if structured:
        wire = b""
        for i in range(fdp.ConsumeIntInRange(1, 4)):
            request, _clean, blob = _request(fdp)
            if i == 0:
                stores = blob
            wire += request
        if fdp.ConsumeIntInRange(0, 3) == 0:
            cut = fdp.ConsumeIntInRange(0, len(wire))
            if stores is not None and cut < len(wire):
                stores = None
            wire = wire[:cut]
    else:
        wire = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 8192))
    out = _serve(server, _pieces(fdp, wire))
    statuses = _statuses(out)
    unexpected = set(statuses) - STATUSES
    if unexpected:
        raise AssertionError(f"unexpected statuses {unexpected}")
    if server.connections:
        raise AssertionError("the connection count did not return to 0")
    _check_folder(server)
    if stores is not None:
        final = [s for s in statuses if s != 100]
        if not final or final[0] not in (200, 201):
            raise AssertionError(f"a well-formed upload was answered {final[:1]}")
        if not server.path_of(hashlib.sha256(stores).digest()).exists():
            raise AssertionError("a well-formed upload was not stored")


def fuzz_range(fdp: atheris.FuzzedDataProvider) -> None:
    size = fdp.ConsumeIntInRange(0, 1 << 20)
    value = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 60)) if fdp.ConsumeBool() else None
    got = parse_range(value, size)
    if got is not None and len(got) and not (0 <= got.start < got.stop <= size and got.step == 1):
        raise AssertionError(f"range {got} outside a blob of {size} bytes")


def TestOneInput(data: bytes) -> None:  # noqa: N802 - atheris' name
    fdp = atheris.FuzzedDataProvider(data)
    target = fdp.ConsumeIntInRange(0, 7)
    if target == 0:
        fuzz_range(fdp)
    else:
        fuzz_server(fdp, structured=target >= 3)


def main() -> None:
    argv = list(sys.argv)
    if not any(a.startswith("-len_control") for a in argv):
        argv.append("-len_control=0")  # structured inputs: use long inputs from the first run
    atheris.Setup(argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
