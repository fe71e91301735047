// JSON-lines driver for Baileys' binary-node codec (lib/WABinary of npm `baileys`, fetched by
// tests/interop/baileys/fetch.sh). Each stdin line is a request, each stdout line its answer:
//   {"encode": [node, ...], "decode": ["hex", ...], "deflate": ["hex", ...], "tables": true}
//   -> {"encoded": ["hex" | {"error": msg}, ...], "decoded": [node | {"error": msg}, ...],
//       "deflated": ["hex", ...], "tables": [single, double]}
// A node in JSON: {"tag": s, "attrs": [[k, v], ...], "content": null | {"bytes": hex} |
// {"str": s} | {"nodes": [node, ...]}}. Attributes are given as pairs and put into a plain object in
// that order (JavaScript moves integer-like keys first: the test avoids them).
'use strict';
const path = require('path');
const zlib = require('zlib');
const W = path.join(__dirname, '..', 'baileys', 'vendor', 'WABinary');
const { encodeBinaryNode } = require(path.join(W, 'encode.js'));
const { decodeDecompressedBinaryNode } = require(path.join(W, 'decode.js'));
const constants = require(path.join(W, 'constants.js'));

function fromJson(n) {
    const attrs = {};
    for (const [k, v] of n.attrs) attrs[k] = v;
    let content;
    if (n.content === null) content = undefined;
    else if ('bytes' in n.content) content = Buffer.from(n.content.bytes, 'hex');
    else if ('str' in n.content) content = n.content.str;
    else content = n.content.nodes.map(fromJson);
    return { tag: n.tag, attrs, content };
}

function toJson(n) {
    let content = null;
    if (Array.isArray(n.content)) content = { nodes: n.content.map(toJson) };
    else if (Buffer.isBuffer(n.content) || n.content instanceof Uint8Array) content = { bytes: Buffer.from(n.content).toString('hex') };
    else if (typeof n.content === 'string') content = { str: n.content };
    return { tag: n.tag, attrs: Object.entries(n.attrs), content };
}

// decodeBinaryNode (the exported whole-stanza decoder) is async only for zlib; the same steps here,
// synchronously: flags byte, inflate when bit 1 is set, then the node.
function decodeStanza(buf) {
    const body = (buf[0] & 2) ? zlib.inflateSync(buf.subarray(1)) : buf.subarray(1);
    return decodeDecompressedBinaryNode(body, constants);
}

function answer(req) {
    const out = { encoded: [], decoded: [] };
    for (const n of req.encode || []) {
        try { out.encoded.push(encodeBinaryNode(fromJson(n)).toString('hex')); }
        catch (e) { out.encoded.push({ error: String(e.message || e) }); }
    }
    for (const h of req.decode || []) {
        try { out.decoded.push(toJson(decodeStanza(Buffer.from(h, 'hex')))); }
        catch (e) { out.decoded.push({ error: String(e.message || e) }); }
    }
    if (req.tables) out.tables = [constants.SINGLE_BYTE_TOKENS, constants.DOUBLE_BYTE_TOKENS];
    // the stanza body zlib-compressed behind flags byte 0x02, as a server may send it
    if (req.deflate) out.deflated = req.deflate.map((h) => Buffer.concat([Buffer.from([2]), zlib.deflateSync(Buffer.from(h, 'hex'))]).toString('hex'));
    return out;
}

require('readline').createInterface({ input: process.stdin }).on('line', (line) => {
    if (line.trim()) process.stdout.write(JSON.stringify(answer(JSON.parse(line))) + '\n');
});
