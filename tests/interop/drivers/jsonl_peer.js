// The JSON-lines framing of docs/peer-protocol.md for the Node peer drivers (libsignal_peer.js,
// libsignal_node_peer.js): hex fields, the request loop, errors as "ClassName: message".
'use strict';

const readline = require('readline');

// An error reported to the harness as "<name>: <message>".
class PeerFailure extends Error {
  constructor(name, message) {
    super(message);
    this.peerName = name;
  }
}

function hex(buf) {
  return Buffer.from(buf).toString('hex');
}

function unhex(req, field, length) {
  const v = req[field];
  if (v === undefined || v === null) throw new PeerFailure('InvalidArgumentError', `missing field '${field}'`);
  if (typeof v !== 'string' || !/^([0-9a-fA-F]{2})*$/.test(v)) {
    throw new PeerFailure('InvalidArgumentError', `field '${field}' is not hex`);
  }
  const b = Buffer.from(v, 'hex');
  if (length !== undefined && b.length !== length) {
    throw new PeerFailure('InvalidArgumentError', `field '${field}' must be ${length} bytes`);
  }
  return b;
}

// An optional hex field: absent, null or "" is null.
function optHex(req, field, length) {
  return req[field] ? unhex(req, field, length) : null;
}

// serve(peer, mapError, tag): answer stdin's requests in order with peer.cmd_<name>(req) until EOF
// (exit 0). mapError(e) -> [ClassName, message]; "InternalError" also logs the stack to stderr.
// A command the peer lacks is an UnsupportedError, as in the Python drivers.
function serve(peer, mapError, tag) {
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity, terminal: false });
  let chain = Promise.resolve();
  const write = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

  const handle = async (line) => {
    if (!line.trim()) return;
    let req;
    try {
      req = JSON.parse(line);
    } catch (e) {
      write({ id: null, ok: false, error: `InvalidArgumentError: JSONDecodeError: ${e.message}` });
      return;
    }
    const isObj = req !== null && typeof req === 'object' && !Array.isArray(req);
    const id = isObj && req.id !== undefined ? req.id : null;
    try {
      if (!isObj) throw new PeerFailure('InvalidMessageError', 'request must be a JSON object');
      const fn = typeof req.cmd === 'string' && /^[a-z_]+$/.test(req.cmd) ? peer[`cmd_${req.cmd}`] : undefined;
      if (typeof fn !== 'function') throw new PeerFailure('UnsupportedError', `unknown command ${JSON.stringify(req.cmd)}`);
      write({ id, ok: true, result: await fn.call(peer, req) });
    } catch (e) {
      const [name, msg] = e instanceof PeerFailure ? [e.peerName, e.message] : mapError(e);
      if (name === 'InternalError') process.stderr.write(`${tag}: ${(e && e.stack) || e}\n`);
      write({ id, ok: false, error: `${name}: ${msg}` });
    }
  };

  rl.on('line', (line) => {
    chain = chain.then(() => handle(line));
  });
  rl.on('close', () => {
    chain.then(() => process.exit(0));
  });
  process.on('unhandledRejection', (e) => {
    process.stderr.write(`${tag}: unhandled rejection: ${(e && e.stack) || e}\n`);
  });
}

module.exports = { PeerFailure, hex, unhex, optHex, serve };
