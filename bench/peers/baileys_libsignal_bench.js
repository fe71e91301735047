#!/usr/bin/env node
// Micro-benchmark of Baileys' pure-JavaScript libsignal (npm `libsignal` 6.0.0,
// WhiskeySockets/libsignal-node; curve25519-js for XEdDSA, node:crypto for X25519/HMAC/AES).
//
//   node bench/peers/baileys_libsignal_bench.js [--seconds 1.5] [--size 64] [--object-records]
//
// Needs `make bench` (npm ci in bench/peers/baileys). Prints one JSON object (µs per operation)
// on stdout. This is our own driver of the package's public API (ProtocolAddress, SessionBuilder,
// SessionCipher, SessionRecord, keyhelper); no code of the package is copied here.
//
// The storage keeps session records *serialized* to a string, as a persistent store must (Baileys'
// useMultiFileAuthState writes JSON): storeSession keeps JSON.stringify(record.serialize()) and
// loadSession returns SessionRecord.deserialize(JSON.parse(...)), so every operation pays for
// loading and storing the whole record, like the other peers' protobuf bytes. --object-records
// keeps the record.serialize() objects instead (no string step: an in-memory-only store).
// A new SessionCipher / SessionBuilder is made per operation, as Baileys does per message.
// Same figures as bench/peers/libsignal_bench.js:
//   encrypt_us           (a) SessionCipher.encrypt on an established chain (type-1 "whisper" messages)
//   decrypt_us           (b) SessionCipher.decryptWhisperMessage of the next in-order message
//   pingpong_us_per_msg  (c) messages alternate direction (a DH step at every receiver); one
//                            message = one encrypt by its sender + one decrypt by its receiver
//   setup_initiator_us   (d) SessionBuilder.initOutgoing for a fresh address (bundle with a one-time
//                            prekey). NB: libsignal 6.0.0 calls verifySignature(..., isInit=true),
//                            which returns true without checking the signed-prekey signature, so
//                            this figure contains no signature verification.
//   setup_responder_us   (d) SessionCipher.decryptPreKeyWhisperMessage of the first message from a
//                            fresh address (session stored, one-time prekey removed)
// Extra, not a table figure:
//   signature_verify_us  curve.verifySignature(..., isInit=false) of a signed prekey (what the
//                            initiator would add if it checked the signature; pure-JS curve25519-js)
// No group figures: the package has no sender keys (Baileys implements those itself).
'use strict';

const path = require('path');

const PKG_DIR = process.env.BAILEYS_LIBSIGNAL_DIR || path.join(__dirname, 'baileys');
const req = (name) => require(require.resolve(name, { paths: [PKG_DIR] }));
const L = req('libsignal');
const VERSION = req('libsignal/package.json').version;
const depVersion = (name) => {
  try {
    return req(`${name}/package.json`).version;
  } catch (e) {
    return '?';
  }
};

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}
const SECONDS = arg('--seconds', 1.5);
const SIZE = arg('--size', 64);
const JSON_RECORDS = !process.argv.includes('--object-records');
const PT = Buffer.from(Uint8Array.from({ length: SIZE }, (_, i) => i & 0xff));

// Record (de)serialization at the storage boundary.
const pack = JSON_RECORDS ? (r) => JSON.stringify(r.serialize()) : (r) => r.serialize();
const unpack = JSON_RECORDS ? (s) => L.SessionRecord.deserialize(JSON.parse(s)) : (s) => L.SessionRecord.deserialize(s);

// The storage interface libsignal 6.0.0 calls (src/session_builder.js, src/session_cipher.js).
class Storage {
  constructor(party) {
    this.party = party;
    this.sessions = new Map(); // "name.device" -> serialized SessionRecord
    this.identities = new Map(); // name -> identity key (trust on first use)
    this.prekeys = new Map(); // id -> { pub, priv }
    this.signed = new Map(); // id -> { pub, priv }
  }
  async loadSession(id) {
    const s = this.sessions.get(id);
    return s === undefined ? undefined : unpack(s);
  }
  async storeSession(id, record) {
    this.sessions.set(id, pack(record));
  }
  // Called with the bare name (encrypt, decrypt, initOutgoing) or "name.device" (initIncoming).
  async isTrustedIdentity(id, identityKey) {
    const name = String(id).split('.')[0];
    const known = this.identities.get(name);
    if (known === undefined) {
      this.identities.set(name, Buffer.from(identityKey));
      return true;
    }
    return known.equals(identityKey);
  }
  getOurIdentity() {
    const p = this.party.identity;
    return { pubKey: p.pubKey, privKey: p.privKey };
  }
  getOurRegistrationId() {
    return this.party.reg;
  }
  async loadPreKey(id) {
    const k = this.prekeys.get(Number(id));
    return k === undefined ? undefined : { pubKey: Buffer.from(k.pub), privKey: Buffer.from(k.priv) };
  }
  async removePreKey(id) {
    this.prekeys.delete(Number(id));
  }
  async loadSignedPreKey(id) {
    const k = this.signed.get(id === undefined ? 1 : Number(id));
    return k === undefined ? undefined : { pubKey: Buffer.from(k.pub), privKey: Buffer.from(k.priv) };
  }
}

class Party {
  constructor() {
    this.identity = L.keyhelper.generateIdentityKeyPair();
    do {
      this.reg = L.keyhelper.generateRegistrationId();
    } while (this.reg === 0);
    this.spk = L.keyhelper.generateSignedPreKey(this.identity, 1);
    this.storage = new Storage(this);
    this.storage.signed.set(1, { pub: this.spk.keyPair.pubKey, priv: this.spk.keyPair.privKey });
    this.nextPk = 1;
  }
  bundle() {
    const pk = L.keyhelper.generatePreKey(this.nextPk++);
    this.storage.prekeys.set(pk.keyId, { pub: pk.keyPair.pubKey, priv: pk.keyPair.privKey });
    return {
      registrationId: this.reg,
      identityKey: this.identity.pubKey,
      signedPreKey: { keyId: this.spk.keyId, publicKey: this.spk.keyPair.pubKey, signature: this.spk.signature },
      preKey: { keyId: pk.keyId, publicKey: pk.keyPair.pubKey },
    };
  }
  async initOutgoing(to, bundle) { return new L.SessionBuilder(this.storage, to).initOutgoing(bundle); }
  async encrypt(to) { return new L.SessionCipher(this.storage, to).encrypt(PT); }
  async decrypt(from, body) { return new L.SessionCipher(this.storage, from).decryptWhisperMessage(body); }
  async decryptPreKey(from, body) { return new L.SessionCipher(this.storage, from).decryptPreKeyWhisperMessage(body); }
}

const addr = (n) => new L.ProtocolAddress(n, 1);

function check(pt) {
  if (!PT.equals(pt)) throw new Error('plaintext mismatch');
}

async function established() {
  const alice = new Party();
  const bob = new Party();
  const A = addr('alice');
  const B = addr('bob');
  await alice.initOutgoing(B, bob.bundle());
  const m = await alice.encrypt(B);
  if (m.type !== 3) throw new Error(`expected a PreKeyWhisperMessage, got type ${m.type}`);
  check(await bob.decryptPreKey(A, m.body));
  const r = await bob.encrypt(A);
  if (r.type !== 1) throw new Error(`expected a WhisperMessage, got type ${r.type}`);
  check(await alice.decrypt(B, r.body));
  const m2 = await alice.encrypt(B);
  if (m2.type !== 1) throw new Error('session should be established');
  check(await bob.decrypt(A, m2.body));
  return { alice, bob, A, B };
}

const { now, measure: measureFor, figures } = require('./harness');
const measure = (fn) => measureFor(fn, SECONDS);

async function main() {
  const { results, medians, iters, put } = figures();

  { // (a)
    const { alice, B } = await established();
    put('encrypt_us', await measure(async (n) => {
      const t0 = now();
      for (let i = 0; i < n; i++) await alice.encrypt(B);
      return now() - t0;
    }));
  }
  { // (b)
    const { alice, bob, A, B } = await established();
    put('decrypt_us', await measure(async (n) => {
      const bodies = [];
      for (let i = 0; i < n; i++) bodies.push((await alice.encrypt(B)).body);
      const t0 = now();
      for (const b of bodies) await bob.decrypt(A, b);
      return now() - t0;
    }));
  }
  { // (c)
    const { alice, bob, A, B } = await established();
    put('pingpong_us_per_msg', await measure(async (n) => {
      const t0 = now();
      for (let i = 0; i < n; i++) {
        if (i % 2 === 0) await bob.decrypt(A, (await alice.encrypt(B)).body);
        else await alice.decrypt(B, (await bob.encrypt(A)).body);
      }
      return now() - t0;
    }));
  }
  let counter = 0;
  { // (d) initiator
    const alice = new Party();
    const bob = new Party();
    put('setup_initiator_us', await measure(async (n) => {
      const bundles = [];
      for (let i = 0; i < n; i++) bundles.push([addr(`bob${counter++}`), bob.bundle()]);
      const t0 = now();
      for (const [a, b] of bundles) await alice.initOutgoing(a, b);
      return now() - t0;
    }));
  }
  { // (d) responder
    const alice = new Party();
    const bob = new Party();
    put('setup_responder_us', await measure(async (n) => {
      const msgs = [];
      for (let i = 0; i < n; i++) {
        const c = counter++;
        const to = addr(`bob${c}`);
        await alice.initOutgoing(to, bob.bundle());
        const m = await alice.encrypt(to);
        if (m.type !== 3) throw new Error(`expected a PreKeyWhisperMessage, got type ${m.type}`);
        msgs.push([addr(`alice${c}`), m.body]);
      }
      const pending = bob.storage.prekeys.size;
      const t0 = now();
      for (const [from, body] of msgs) await bob.decryptPreKey(from, body);
      const dt = now() - t0;
      if (bob.storage.prekeys.size !== pending - n) throw new Error('one-time prekeys were not removed');
      return dt;
    }));
  }
  { // extra: the signature check initOutgoing skips
    const p = new Party();
    const pub = p.spk.keyPair.pubKey;
    const sig = p.spk.signature;
    if (!L.curve.verifySignature(p.identity.pubKey, pub, sig, false)) throw new Error('signature check failed');
    put('signature_verify_us', await measure(async (n) => {
      const t0 = now();
      for (let i = 0; i < n; i++) L.curve.verifySignature(p.identity.pubKey, pub, sig, false);
      return now() - t0;
    }));
  }

  const msgsPerS = {};
  for (const [k, v] of Object.entries(results)) msgsPerS[k.replace(/_us.*$/, '')] = Math.round(1e6 / v);
  process.stdout.write(JSON.stringify({
    implementation: 'libsignal (Baileys, pure JS)',
    package: 'libsignal',
    version: VERSION,
    curve25519_js: depVersion('curve25519-js'),
    protobufjs: depVersion('protobufjs'),
    node: process.version,
    plaintext_bytes: SIZE,
    unit: 'us/op',
    ...results,
    msgs_per_s: msgsPerS,
    median_round_us: medians,
    iterations: iters,
    method: 'best of 5 equal rounds (median in median_round_us), after warm-up',
    store: JSON_RECORDS
      ? 'JS in-memory store holding JSON.stringify(record.serialize()) (JSON.parse + SessionRecord.deserialize per load)'
      : 'JS in-memory store holding record.serialize() objects (SessionRecord.deserialize per load; --object-records)',
    notes: 'setup_initiator: initOutgoing does not verify the signed-prekey signature (verifySignature isInit=true); '
      + 'signature_verify_us is that check measured on its own',
  }) + '\n');
}

main().catch((e) => { process.stderr.write(`${e.stack || e}\n`); process.exit(1); });
