"""WhatsApp's binary stanza codec ("WABinary"): XML-like nodes as tokenised bytes.

A stanza is a :class:`Node`: a tag, string attributes and content that is nothing, bytes, a string
or a tuple of child nodes. On the wire a node is a list ``[tag, key, value, ..., content]``; strings
are written as the shortest of a dictionary token (one byte, or a dictionary byte and an index),
packed nibbles (``0-9 - .``) or hex (``0-9 A-F``), a JID (``user@server``, or ``user:device@server``
for a device of a phone-number or LID user) or raw UTF-8 with a length prefix. A whole stanza has
one leading flags byte: bit 1 (``0x02``) means the rest is zlib-compressed.

:func:`encode_node` writes exactly the bytes Baileys' encoder writes for the same node wherever
Baileys' own encoding reads back as what it was given; where it would not (a JID whose agent or
device part Baileys drops, the string ``"constructor"``, which Baileys writes as the empty string),
it writes a form that reads back exactly. :func:`decode_node` reads what Baileys, whatsmeow and
WhatsApp clients write, and is strict: bad tags, truncation, trailing bytes, invalid UTF-8, unknown
JID domains, duplicate attributes, too deep nesting and inflation past the limit all raise
:class:`~wacrypto.errors.InvalidMessageError` (a :class:`~wacrypto.errors.PeerError`), never
anything else. Pure: no I/O.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, TypeAlias, final

from wacrypto.errors import InvalidArgumentError, InvalidMessageError
from wacrypto.limits import (
    DEFAULT_MAX_STANZA_LEN,
    MAX_PACKED_LEN,
    MAX_STANZA_DEPTH,
    MAX_STANZA_LIST_LEN,
)
from wacrypto.wire.tokens import DOUBLE_BYTE_TOKENS, SINGLE_BYTE_TOKENS

__all__ = [
    "Content", "Node", "decode_node", "decode_node_body", "encode_node", "encode_node_body", "node_from_json",
    "node_to_json",
]

# --------------------------------------------------------------------------- tags
LIST_EMPTY: Final = 0
DICTIONARY_0: Final = 236  # ... DICTIONARY_3 = 239
AD_JID: Final = 247
LIST_8: Final = 248
LIST_16: Final = 249
JID_PAIR: Final = 250
HEX_8: Final = 251
BINARY_8: Final = 252
BINARY_20: Final = 253
BINARY_32: Final = 254
NIBBLE_8: Final = 255

FLAG_COMPRESSED: Final = 0x02

USER_SERVER: Final = "s.whatsapp.net"
LID_SERVER: Final = "lid"
_DOMAIN_SERVERS: Final = {0: USER_SERVER, 1: LID_SERVER}  # AD_JID domain byte -> server

Content: TypeAlias = "bytes | str | tuple[Node, ...] | None"


# --------------------------------------------------------------------------- the node
@final
@dataclass(frozen=True, slots=True)
class Node:
    """One stanza node. Immutable: ``attrs`` is a read-only mapping, child lists are tuples.

    ``content`` is ``None`` (no content), ``bytes`` (binary content, e.g. a ciphertext), ``str`` (a
    string that was written as a token, packed digits or a JID) or a tuple of child nodes.
    """

    tag: str
    attrs: Mapping[str, str] = field(default_factory=dict)
    content: Content = None

    def __post_init__(self) -> None:
        if not isinstance(self.tag, str) or not self.tag:
            raise InvalidArgumentError("a node's tag must be a non-empty string")
        attrs = dict(self.attrs)
        for k, v in attrs.items():
            if not isinstance(k, str) or not k or not isinstance(v, str):
                raise InvalidArgumentError(f"<{self.tag}>: attribute keys must be non-empty strings and values strings")
        object.__setattr__(self, "attrs", MappingProxyType(attrs))
        c = self.content
        if isinstance(c, (list, tuple)):
            kids = tuple(c)
            if not all(isinstance(k, Node) for k in kids):
                raise InvalidArgumentError(f"<{self.tag}>: a child list may hold only Node objects")
            object.__setattr__(self, "content", kids)
        elif isinstance(c, (bytearray, memoryview)):
            object.__setattr__(self, "content", bytes(c))
        elif c is not None and not isinstance(c, (bytes, str)):
            raise InvalidArgumentError(f"<{self.tag}>: content must be None, bytes, str or a list of nodes")

    @property
    def children(self) -> tuple[Node, ...]:
        """The child nodes (empty when the content is not a list)."""
        return self.content if isinstance(self.content, tuple) else ()

    def child(self, tag: str) -> Node | None:
        """The first child with that tag, or None."""
        return next((n for n in self.children if n.tag == tag), None)

    def children_named(self, tag: str) -> Iterator[Node]:
        """Every child with that tag, in order."""
        return (n for n in self.children if n.tag == tag)

    def __hash__(self) -> int:
        return hash((self.tag, frozenset(self.attrs.items()), self.content))

    def __repr__(self) -> str:
        # content may be ciphertext or plaintext: show its kind and size, never its bytes
        c = self.content
        if isinstance(c, tuple):
            shown = f"{len(c)} children"
        elif isinstance(c, (bytes, str)):
            shown = f"{len(c)} {'bytes' if isinstance(c, bytes) else 'chars'}"
        else:
            shown = "none"
        return f"Node(<{self.tag}> {len(self.attrs)} attrs, content: {shown})"


# --------------------------------------------------------------------------- encoding
def _token_index() -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for i, tok in enumerate(SINGLE_BYTE_TOKENS):
        out[tok] = bytes((i,))
    for d, table in enumerate(DOUBLE_BYTE_TOKENS):  # double tokens win, as in Baileys' TOKEN_MAP
        for i, tok in enumerate(table):
            out[tok] = bytes((DICTIONARY_0 + d, i))
    return out


_TOKENS: Final = _token_index()
_NIBBLE_RE: Final = re.compile(r"[0-9.\-]{1,%d}" % MAX_PACKED_LEN)
_HEX_RE: Final = re.compile(r"[0-9A-F]{1,%d}" % MAX_PACKED_LEN)
_DEVICE_RE: Final = re.compile(r"[1-9][0-9]{0,2}")


def _write_len(out: bytearray, n: int) -> None:
    if n >= 1 << 20:
        out.append(BINARY_32)
        out += n.to_bytes(4, "big")
    elif n >= 256:
        out.append(BINARY_20)
        out += n.to_bytes(3, "big")
    else:
        out.append(BINARY_8)
        out.append(n)


_NIBBLE_TO_HEX: Final = str.maketrans("-.", "ab")  # nibble values 10 and 11, as hex digits
_HEX_TO_NIBBLE: Final = str.maketrans("ab", "-.")


def _write_packed(out: bytearray, s: str, tag: int) -> None:
    """``s`` (all nibble or all upper-case hex characters, as the caller matched) two to a byte; an
    odd length ends with the pad nibble 15. (The nibbles are hex digits: ``bytes.fromhex`` packs them.)"""
    out.append(tag)
    n = (len(s) + 1) // 2
    out.append(n | 0x80 if len(s) % 2 else n)
    digits = s.translate(_NIBBLE_TO_HEX) if tag == NIBBLE_8 else s
    out += bytes.fromhex(digits + "f" if len(s) % 2 else digits)


def _write_jid(out: bytearray, s: str) -> bool:
    """Write ``s`` (which holds an ``@``) as a JID; False, writing nothing, if it cannot be one.

    A device of a phone-number or LID user (``user:7@lid``) is an AD_JID, as Baileys writes it;
    anything else is a JID pair of the whole user part and the server. Where Baileys would lose a
    part (an ``_agent`` suffix, device 0 or ``007``, a device on another server) the pair keeps it.
    """
    user_part, _, server = s.partition("@")
    if not server:
        return False  # a JID pair without a server does not decode
    user, colon, device = user_part.partition(":")
    if (colon and "_" not in user and server in (USER_SERVER, LID_SERVER)
            and _DEVICE_RE.fullmatch(device) and int(device) <= 255):
        out.append(AD_JID)
        out.append(1 if server == LID_SERVER else 0)
        out.append(int(device))
        _write_string(out, user)
        return True
    out.append(JID_PAIR)
    if user_part:
        _write_string(out, user_part)
    else:
        out.append(LIST_EMPTY)
    _write_string(out, server)
    return True


def _write_string(out: bytearray, s: str) -> None:
    tok = _TOKENS.get(s)
    if tok is not None:
        out += tok
    elif _NIBBLE_RE.fullmatch(s):
        _write_packed(out, s, NIBBLE_8)
    elif _HEX_RE.fullmatch(s):
        _write_packed(out, s, HEX_8)
    elif "@" in s and _write_jid(out, s):
        pass
    else:
        try:
            raw = s.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidArgumentError("a stanza string is not encodable as UTF-8 (lone surrogate)") from None
        _write_len(out, len(raw))
        out += raw


def _write_list_start(out: bytearray, n: int) -> None:
    if n == 0:
        out.append(LIST_EMPTY)
    elif n < 256:
        out.append(LIST_8)
        out.append(n)
    elif n <= MAX_STANZA_LIST_LEN:
        out.append(LIST_16)
        out += n.to_bytes(2, "big")
    else:
        raise InvalidArgumentError(f"a stanza list may hold at most {MAX_STANZA_LIST_LEN} items, not {n}")


def _write_node(out: bytearray, node: Node, depth: int) -> None:
    if depth > MAX_STANZA_DEPTH:
        raise InvalidArgumentError(f"stanza nests deeper than {MAX_STANZA_DEPTH} levels")
    c = node.content
    _write_list_start(out, 2 * len(node.attrs) + 1 + (c is not None))
    _write_string(out, node.tag)
    for k, v in node.attrs.items():
        _write_string(out, k)
        _write_string(out, v)
    if c is None:
        return
    if isinstance(c, tuple):
        _write_list_start(out, len(c))
        for kid in c:
            _write_node(out, kid, depth + 1)
    elif isinstance(c, bytes) or c == "":
        # the empty string as content: Baileys writes byte 0, which reads back as an empty child list
        raw = c if isinstance(c, bytes) else b""
        _write_len(out, len(raw))
        out += raw
    else:
        _write_string(out, c)


def encode_node_body(node: Node, *, max_len: int = DEFAULT_MAX_STANZA_LEN) -> bytes:
    """The node's bytes without the leading flags byte."""
    out = bytearray()
    _write_node(out, node, 0)
    if len(out) > max_len:
        raise InvalidArgumentError(f"stanza is {len(out)} bytes, more than the {max_len}-byte limit")
    return bytes(out)


def encode_node(node: Node, *, max_len: int = DEFAULT_MAX_STANZA_LEN) -> bytes:
    """A whole stanza: flags byte 0 (uncompressed) and the node, as Baileys' ``encodeBinaryNode``."""
    return b"\x00" + encode_node_body(node, max_len=max_len - 1)


# --------------------------------------------------------------------------- decoding
_BAD_NIBBLE: Final = re.compile("[c-f]")  # nibbles 12-14 are invalid, 15 only pads an odd length


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.buf):
            raise InvalidMessageError("stanza truncated")
        b = self.buf[self.pos]
        self.pos += 1
        return b

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.buf):
            raise InvalidMessageError("stanza truncated")
        out = self.buf[self.pos:end]
        self.pos = end
        return out

    def length(self, tag: int) -> int:
        if tag == BINARY_8:
            return self.byte()
        if tag == BINARY_20:
            b = self.take(3)
            if b[0] & 0xF0:
                raise InvalidMessageError("BINARY_20 length has its top nibble set")
            return int.from_bytes(b, "big")
        return int.from_bytes(self.take(4), "big")

    def list_size(self, tag: int) -> int:
        if tag == LIST_EMPTY:
            return 0
        if tag == LIST_8:
            return self.byte()
        if tag == LIST_16:
            return int.from_bytes(self.take(2), "big")
        raise InvalidMessageError(f"expected a list, found tag {tag}")

    def packed(self, tag: int) -> str:
        head = self.byte()
        n, odd = head & 0x7F, head >> 7
        if 2 * n - odd > MAX_PACKED_LEN:
            raise InvalidMessageError(f"packed string longer than {MAX_PACKED_LEN} characters")
        digits = self.take(n).hex()  # one hex digit per nibble, lower case
        if odd:
            if not digits or digits[-1] != "f":
                raise InvalidMessageError("odd packed string without its pad nibble")
            digits = digits[:-1]
        if not digits:
            raise InvalidMessageError("empty packed string")  # no encoder writes one ("" is token 0)
        if tag == HEX_8:
            return digits.upper()
        if _BAD_NIBBLE.search(digits):
            raise InvalidMessageError("invalid nibble in packed string")  # 12-15 stand for no character
        return digits.translate(_HEX_TO_NIBBLE)

    def string(self, tag: int) -> str:
        if 0 < tag < len(SINGLE_BYTE_TOKENS):
            return SINGLE_BYTE_TOKENS[tag]
        if tag == LIST_EMPTY:
            return ""
        if DICTIONARY_0 <= tag < DICTIONARY_0 + len(DOUBLE_BYTE_TOKENS):
            table = DOUBLE_BYTE_TOKENS[tag - DICTIONARY_0]
            i = self.byte()
            if i >= len(table):
                raise InvalidMessageError("double-byte token out of range")
            return table[i]
        if tag in (BINARY_8, BINARY_20, BINARY_32):
            try:
                return self.take(self.length(tag)).decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidMessageError("stanza string is not valid UTF-8") from None
        if tag == JID_PAIR:
            user = self.string(self.byte())
            server = self.string(self.byte())
            if not server:
                raise InvalidMessageError("JID without a server")
            return f"{user}@{server}"
        if tag == AD_JID:
            domain, device = self.byte(), self.byte()
            ad_server = _DOMAIN_SERVERS.get(domain)
            if ad_server is None:
                raise InvalidMessageError(f"unknown JID domain type {domain}")
            user = self.string(self.byte())
            return f"{user}:{device}@{ad_server}" if device else f"{user}@{ad_server}"
        if tag in (NIBBLE_8, HEX_8):
            return self.packed(tag)
        raise InvalidMessageError(f"invalid string tag {tag}")

    def node(self, depth: int) -> Node:
        if depth > MAX_STANZA_DEPTH:
            raise InvalidMessageError(f"stanza nests deeper than {MAX_STANZA_DEPTH} levels")
        size = self.list_size(self.byte())
        if size == 0:
            raise InvalidMessageError("empty node")
        tag = self.string(self.byte())
        if not tag:
            raise InvalidMessageError("node without a tag")
        attrs: dict[str, str] = {}
        for _ in range((size - 1) >> 1):
            key = self.string(self.byte())
            value = self.string(self.byte())
            if not key or key in attrs:
                raise InvalidMessageError(f"<{tag}>: empty or repeated attribute name")
            attrs[key] = value
        content: Content = None
        if size % 2 == 0:
            t = self.byte()
            if t in (LIST_EMPTY, LIST_8, LIST_16):
                content = tuple(self.node(depth + 1) for _ in range(self.list_size(t)))
            elif t in (BINARY_8, BINARY_20, BINARY_32):
                content = self.take(self.length(t))
            else:
                content = self.string(t)
        return _decoded(tag, attrs, content)


_new_node = object.__new__
_set_field = object.__setattr__


def _decoded(tag: str, attrs: dict[str, str], content: Content) -> Node:
    """A :class:`Node` from the decoder, whose fields are of the right types by construction: built
    without ``__post_init__``'s checks (the decoder's share of the CPU on a busy connection)."""
    node = _new_node(Node)
    _set_field(node, "tag", tag)
    _set_field(node, "attrs", MappingProxyType(attrs))
    _set_field(node, "content", content)
    return node


def decode_node_body(body: bytes, *, max_len: int = DEFAULT_MAX_STANZA_LEN) -> Node:
    """Decode a node that has no flags byte; the whole input must be exactly one node."""
    if len(body) > max_len:
        raise InvalidMessageError(f"stanza longer than the {max_len}-byte limit")
    r = _Reader(bytes(body))
    try:
        node = r.node(0)
    except RecursionError:  # pragma: no cover - MAX_STANZA_DEPTH stops well before
        raise InvalidMessageError("stanza nests too deep") from None
    if r.pos != len(r.buf):
        raise InvalidMessageError(f"{len(r.buf) - r.pos} bytes after the stanza")
    return node


def decode_node(data: bytes, *, max_len: int = DEFAULT_MAX_STANZA_LEN) -> Node:
    """Decode a whole stanza (flags byte first; zlib-inflated when flagged, at most ``max_len`` bytes)."""
    if not data:
        raise InvalidMessageError("empty stanza")
    flags = data[0]
    if flags & ~FLAG_COMPRESSED:
        raise InvalidMessageError(f"unknown stanza flags {flags:#04x}")
    body = bytes(data[1:])
    if flags & FLAG_COMPRESSED:
        d = zlib.decompressobj()
        try:
            body = d.decompress(body, max_len + 1)
        except zlib.error:
            raise InvalidMessageError("compressed stanza does not inflate") from None
        if len(body) > max_len or d.unconsumed_tail:
            raise InvalidMessageError(f"compressed stanza inflates past the {max_len}-byte limit")
        if not d.eof or d.unused_data:
            raise InvalidMessageError("compressed stanza is truncated or has trailing bytes")
    return decode_node_body(body, max_len=max_len)



# --------------------------------------------------------------------------- JSON form (vectors, drivers)
def node_to_json(n: Node) -> dict[str, Any]:
    """``{"tag", "attrs": [[k, v], ...], "content": null | {"bytes": hex} | {"str": s} | {"nodes": [...]}}``:
    the form the test vectors and the interop drivers use (attribute order kept)."""
    c = n.content
    content: Any
    if c is None:
        content = None
    elif isinstance(c, bytes):
        content = {"bytes": c.hex()}
    elif isinstance(c, str):
        content = {"str": c}
    else:
        content = {"nodes": [node_to_json(k) for k in c]}
    return {"tag": n.tag, "attrs": [[k, v] for k, v in n.attrs.items()], "content": content}


def node_from_json(d: Any) -> Node:
    """The node of :func:`node_to_json`'s form; :class:`InvalidArgumentError` if ``d`` is not one."""
    try:
        c = d["content"]
        content: Content
        if c is None:
            content = None
        elif "bytes" in c:
            content = bytes.fromhex(c["bytes"])
        elif "str" in c:
            content = c["str"]
        else:
            content = tuple(node_from_json(k) for k in c["nodes"])
        return Node(d["tag"], dict(d["attrs"]), content)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"not a node in JSON form: {exc}") from None
