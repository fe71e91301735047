"""Binary stanzas for tests: a JSON form of :class:`~wacrypto.wire.binary.Node` and hypothesis
strategies that generate realistic stanzas (tokens, JIDs of users, devices, LIDs and groups, packed
digits and hex, raw text and binary content, nested children). Needs ``hypothesis``.

The strategies generate only strings that every encoder writes the same way (so they can prove
byte-compatibility with Baileys); a JavaScript object's own property names (``constructor``,
``__proto__``, ...) and integer-like attribute names (which JavaScript reorders) are left out.
"""

from __future__ import annotations

import re

from hypothesis import strategies as st

from wacrypto.wire.binary import Content, Node, node_from_json, node_to_json
from wacrypto.wire.tokens import DOUBLE_BYTE_TOKENS, SINGLE_BYTE_TOKENS

__all__ = ["node_from_json", "node_to_json", "same_node", "stanzas"]

# names a plain JavaScript object already answers to: Baileys' token lookup misreads them
JS_OBJECT_NAMES = frozenset(
    "constructor __proto__ __defineGetter__ __defineSetter__ __lookupGetter__ __lookupSetter__ "
    "hasOwnProperty isPrototypeOf propertyIsEnumerable toString valueOf toLocaleString".split()
)
_INT_KEY = re.compile(r"0|[1-9][0-9]*")

_TOKEN_LIST = tuple(t for t in SINGLE_BYTE_TOKENS[1:] + sum(DOUBLE_BYTE_TOKENS, ()) if t not in JS_OBJECT_NAMES)
# an index into the table rather than sampled_from(table): same draws, without a 60 kB strategy repr
_tokens = st.integers(0, len(_TOKEN_LIST) - 1).map(_TOKEN_LIST.__getitem__)
_digits = st.text("0123456789", min_size=1, max_size=20)
_nibbles = st.text("0123456789-.", min_size=1, max_size=140)
_hex = st.text("0123456789ABCDEF", min_size=1, max_size=140)
_raw = st.text(st.characters(codec="utf-8", exclude_characters="@"), max_size=300).filter(
    lambda s: s not in JS_OBJECT_NAMES
)
_user_jid = st.builds(lambda u, s: f"{u}@{s}", _digits, st.sampled_from(["s.whatsapp.net", "lid", "c.us"]))
_device_jid = st.builds(
    lambda u, d, s: f"{u}:{d}@{s}", _digits, st.integers(1, 255), st.sampled_from(["s.whatsapp.net", "lid"])
)
_group_jid = st.builds(lambda a, b: f"{a}-{b}@g.us", _digits, _digits) | st.builds(lambda a: f"{a}@g.us", _digits)
_server_jid = st.sampled_from(["@s.whatsapp.net", "status@broadcast", "server@c.us", "0@c.us", "123@newsletter"])
_jids = _user_jid | _device_jid | _group_jid | _server_jid
strings = _tokens | _nibbles | _hex | _jids | _raw | st.just("")

_keys = (_tokens | st.from_regex(r"[a-z][a-z_\-]{0,12}", fullmatch=True)).filter(
    lambda k: not _INT_KEY.fullmatch(k) and k not in JS_OBJECT_NAMES
)
_attrs = st.dictionaries(_keys, strings, max_size=6)
_tags = _tokens.filter(lambda t: not _INT_KEY.fullmatch(t)) | st.from_regex(r"[a-z][a-z_]{0,10}", fullmatch=True).filter(
    lambda t: t not in JS_OBJECT_NAMES
)
_leaf_content: st.SearchStrategy[Content] = (
    st.none() | st.binary(max_size=300) | (_tokens | _nibbles | _hex | _jids | _raw).filter(bool)
)


def _node(children: st.SearchStrategy[Content]) -> st.SearchStrategy[Node]:
    return st.builds(Node, _tags, _attrs, children)


stanzas: st.SearchStrategy[Node] = st.recursive(
    _node(_leaf_content),
    lambda kids: _node(st.lists(kids, max_size=4).map(tuple)),
    max_leaves=12,
)


def same_node(sent: Node, got: Node) -> bool:
    """``got`` is ``sent`` read back: equal, except that string content written raw reads back as bytes."""
    if sent.tag != got.tag or dict(sent.attrs) != dict(got.attrs):
        return False
    a, b = sent.content, got.content
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(same_node(x, y) for x, y in zip(a, b))
    if isinstance(a, str) and isinstance(b, bytes):
        return a.encode("utf-8") == b
    return a == b
