#!/usr/bin/env node
// Micro-benchmark of official libsignal (@signalapp/libsignal-client 0.23.1, Node binding).
//
//   node bench/peers/libsignal_bench.js [--seconds 1.5] [--size 64]
//
// Needs tests/interop/setup.sh (installs the package in tests/interop/node). Prints one JSON
// object (µs per operation) on stdout. The stores keep session records *serialized*
// (SessionRecord.serialize / deserialize on every save / load), as a persistent store would, so
// each operation pays for loading and storing the whole record. Same figures as
// bench/peers/axolotl_bench.py:
//   encrypt_us           (a) signalEncrypt on an established chain (type-2 messages)
//   decrypt_us           (b) SignalMessage.deserialize + signalDecrypt of the next in-order message
//   pingpong_us_per_msg  (c) messages alternate direction (a DH step at every receiver); one
//                            message = one encrypt by its sender + one decrypt by its receiver
//   setup_initiator_us   (d) processPreKeyBundle for a fresh address (bundle with a one-time prekey)
//   setup_responder_us   (d) PreKeySignalMessage.deserialize + signalDecryptPreKey of the first
//                            message from a fresh address (session stored, prekey removed)
// No group figures: the binding's sender keys are Signal's format, not WhatsApp's.
'use strict';

const path = require('path');

const NODE_DIR = process.env.LIBSIGNAL_NODE_DIR || path.join(__dirname, '..', '..', 'tests', 'interop', 'node');
const S = require(require.resolve('@signalapp/libsignal-client', { paths: [NODE_DIR] }));
const VERSION = require(require.resolve('@signalapp/libsignal-client/package.json', { paths: [NODE_DIR] })).version;

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}
const SECONDS = arg('--seconds', 1.5);
const SIZE = arg('--size', 64);
const PT = Buffer.alloc(SIZE).map((_, i) => i & 0xff);

const key = (a) => `${a.name()}.${a.deviceId()}`;

class Sessions extends S.SessionStore {
  constructor() { super(); this.m = new Map(); }
  async saveSession(a, r) { this.m.set(key(a), r.serialize()); }
  async getSession(a) { const r = this.m.get(key(a)); return r === undefined ? null : S.SessionRecord.deserialize(r); }
  async getExistingSessions(as) { return as.map((a) => S.SessionRecord.deserialize(this.m.get(key(a)))); }
}
class Identities extends S.IdentityKeyStore {
  constructor(pair, reg) { super(); this.pair = pair; this.reg = reg; this.m = new Map(); }
  async getIdentityKey() { return this.pair.privateKey; }
  async getLocalRegistrationId() { return this.reg; }
  async saveIdentity(a, k) { const p = this.m.get(a.name()); this.m.set(a.name(), k.serialize()); return p !== undefined && !p.equals(k.serialize()); }
  async isTrustedIdentity(a, k) { const p = this.m.get(a.name()); return p === undefined || p.equals(k.serialize()); }
  async getIdentity(a) { const p = this.m.get(a.name()); return p === undefined ? null : S.PublicKey.deserialize(p); }
}
class PreKeys extends S.PreKeyStore {
  constructor() { super(); this.m = new Map(); }
  async savePreKey(id, r) { this.m.set(id, r.serialize()); }
  async getPreKey(id) { return S.PreKeyRecord.deserialize(this.m.get(id)); }
  async removePreKey(id) { this.m.delete(id); }
}
class SignedPreKeys extends S.SignedPreKeyStore {
  constructor() { super(); this.m = new Map(); }
  async saveSignedPreKey(id, r) { this.m.set(id, r.serialize()); }
  async getSignedPreKey(id) { return S.SignedPreKeyRecord.deserialize(this.m.get(id)); }
}

class Party {
  constructor(name) {
    this.name = name;
    const priv = S.PrivateKey.generate();
    this.pair = new S.IdentityKeyPair(priv.getPublicKey(), priv);
    this.reg = 1 + Math.floor(Math.random() * 16380);
    this.sessions = new Sessions();
    this.ids = new Identities(this.pair, this.reg);
    this.prekeys = new PreKeys();
    this.signed = new SignedPreKeys();
    const spk = S.PrivateKey.generate();
    this.spkSig = priv.sign(spk.getPublicKey().serialize());
    this.spk = spk;
    this.signed.m.set(1, S.SignedPreKeyRecord.new(1, Date.now(), spk.getPublicKey(), spk, this.spkSig).serialize());
    this.nextPk = 1;
  }
  bundle() {
    const id = this.nextPk++;
    const pk = S.PrivateKey.generate();
    this.prekeys.m.set(id, S.PreKeyRecord.new(id, pk.getPublicKey(), pk).serialize());
    return S.PreKeyBundle.new(this.reg, 1, id, pk.getPublicKey(), 1, this.spk.getPublicKey(), this.spkSig,
      this.pair.publicKey);
  }
  async encrypt(to) { return S.signalEncrypt(PT, to, this.sessions, this.ids); }
  async decrypt(from, body) {
    return S.signalDecrypt(S.SignalMessage.deserialize(body), from, this.sessions, this.ids);
  }
  async decryptPreKey(from, body) {
    return S.signalDecryptPreKey(S.PreKeySignalMessage.deserialize(body), from, this.sessions, this.ids,
      this.prekeys, this.signed);
  }
}

const addr = (n) => S.ProtocolAddress.new(n, 1);

async function established() {
  const alice = new Party('alice');
  const bob = new Party('bob');
  const A = addr('alice');
  const B = addr('bob');
  await S.processPreKeyBundle(bob.bundle(), B, alice.sessions, alice.ids);
  await bob.decryptPreKey(A, (await alice.encrypt(B)).serialize());
  await alice.decrypt(B, (await bob.encrypt(A)).serialize());
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
      for (let i = 0; i < n; i++) bodies.push((await alice.encrypt(B)).serialize());
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
        if (i % 2 === 0) await bob.decrypt(A, (await alice.encrypt(B)).serialize());
        else await alice.decrypt(B, (await bob.encrypt(A)).serialize());
      }
      return now() - t0;
    }));
  }
  let counter = 0;
  { // (d) initiator
    const alice = new Party('alice');
    const bob = new Party('bob');
    put('setup_initiator_us', await measure(async (n) => {
      const bundles = [];
      for (let i = 0; i < n; i++) bundles.push([addr(`bob${counter++}`), bob.bundle()]);
      const t0 = now();
      for (const [a, b] of bundles) await S.processPreKeyBundle(b, a, alice.sessions, alice.ids);
      return now() - t0;
    }));
  }
  { // (d) responder
    const alice = new Party('alice');
    const bob = new Party('bob');
    put('setup_responder_us', await measure(async (n) => {
      const msgs = [];
      for (let i = 0; i < n; i++) {
        const c = counter++;
        const to = addr(`bob${c}`);
        await S.processPreKeyBundle(bob.bundle(), to, alice.sessions, alice.ids);
        msgs.push([addr(`alice${c}`), (await alice.encrypt(to)).serialize()]);
      }
      const t0 = now();
      for (const [from, body] of msgs) await bob.decryptPreKey(from, body);
      return now() - t0;
    }));
  }

  const msgsPerS = {};
  for (const [k, v] of Object.entries(results)) msgsPerS[k.replace(/_us.*$/, '')] = Math.round(1e6 / v);
  process.stdout.write(JSON.stringify({
    implementation: 'libsignal-client (node)',
    version: VERSION,
    node: process.version,
    plaintext_bytes: SIZE,
    unit: 'us/op',
    ...results,
    msgs_per_s: msgsPerS,
    median_round_us: medians,
    iterations: iters,
    method: 'best of 5 equal rounds (median in median_round_us), after warm-up',
    store: 'JS in-memory stores holding serialized records (serialize/deserialize per operation)',
  }) + '\n');
}

main().catch((e) => { process.stderr.write(`${e.stack || e}\n`); process.exit(1); });
