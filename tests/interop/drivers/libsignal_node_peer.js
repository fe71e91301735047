#!/usr/bin/env node
// libsignal-node (npm `libsignal` 6.0.0, the pure-JavaScript libsignal Baileys uses:
// WhiskeySockets/libsignal-node, from ForstaLabs' port of libsignal-protocol-javascript) as an
// interop peer speaking the JSON-lines protocol of docs/peer-protocol.md: one local user per
// process, stores in memory (session records kept as JSON text, as Baileys' file store keeps them,
// so every operation loads a fresh copy and a failed one leaves nothing behind).
//
//   node tests/interop/drivers/libsignal_node_peer.js
//
// The package is installed in tests/interop/libsignal_node (tests/interop/setup.sh; another folder
// holding it: BAILEYS_LIBSIGNAL_DIR, as for bench/peers/baileys_libsignal_bench.js). Only the
// package's own API does the cryptography: ProtocolAddress, SessionBuilder, SessionCipher,
// SessionRecord, curve, crypto. This driver adds, and says so:
//   * the store. libsignal-node's storage interface has no saveIdentity: isTrustedIdentity is the
//     only place it shows the store a remote identity key, so trust on first use is recorded there
//     (the first key seen for a name is kept; any other key for that name is untrusted).
//   * a converter between libsignal's storage protobuf (RecordStructure, the export_session /
//     import_session format) and libsignal-node's JSON session record. libsignal-node keeps the
//     seed of a skipped message key, libsignal the keys derived from it, so a record whose skipped
//     keys carry no seed cannot be imported (UnsupportedError).
// Not available in the package, answered with UnsupportedError: group_* (no sender keys: Baileys
// implements those itself) and fingerprint (src/numeric_fingerprint.js is not exported, computes no
// scannable form, and its createFor cannot run: it demands ArrayBuffer keys and then hands them to
// Buffer.concat, which refuses ArrayBuffers).
// Known behaviour, not corrected here: SessionBuilder.initOutgoing calls verifySignature(...,
// isInit=true), which returns true without checking the signed-prekey signature; sign is
// deterministic (curve25519-js without a random nonce).
'use strict';

const path = require('path');
const { PeerFailure, hex, unhex, optHex, serve } = require('./jsonl_peer');

const PKG_DIR = process.env.BAILEYS_LIBSIGNAL_DIR || path.join(__dirname, '..', 'libsignal_node');
const resolveIn = (name, dir) => require.resolve(name, { paths: [dir] });
const LIB_MAIN = resolveIn('libsignal', PKG_DIR);
const L = require(LIB_MAIN);
const LIB_DIR = path.dirname(resolveIn('libsignal/package.json', PKG_DIR));
const PKG_VERSION = require(path.join(LIB_DIR, 'package.json')).version;
// The package's own protobuf dependency, for the storage protobuf of export/import only.
const protobuf = require(resolveIn('protobufjs', LIB_DIR));

const MAX_ID = 0xffffff;
const SENDING = 1; // libsignal-node src/chain_type.js
const RECEIVING = 2;
const OURS = 1; // src/base_key_type.js
const THEIRS = 2;

// ------------------------------------------------------------------------- console
// libsignal-node logs with console.*: console.info("Closing session:", session) would print whole
// session objects (private ratchet keys included) to stdout, which belongs to the protocol. Its
// output is dropped unless LIBSIGNAL_NODE_PEER_LOG=1 (then it goes to stderr). The per-session
// errors it reports while trying each session ("Session error:<Name>: <message>") are kept for the
// current request: decryptWhisperMessage throws only "No matching sessions found for message",
// these lines say why (duplicate, too far ahead, bad MAC).
const LOG = process.env.LIBSIGNAL_NODE_PEER_LOG === '1';
let sessionErrors = [];
for (const level of ['log', 'info', 'warn', 'debug', 'error', 'trace']) {
  console[level] = (...args) => {
    if (level === 'error' && typeof args[0] === 'string' && args[0].startsWith('Session error:')) {
      sessionErrors.push(args[0]);
    }
    if (LOG) process.stderr.write(`libsignal-node ${level}: ${args.map(String).join(' ')}\n`);
  };
}

// ------------------------------------------------------------------------- helpers
function intField(req, field, dflt) {
  const v = req[field];
  if (v === undefined || v === null) {
    if (dflt === undefined) throw new PeerFailure('InvalidArgumentError', `missing field '${field}'`);
    return dflt;
  }
  if (!Number.isInteger(v)) throw new PeerFailure('InvalidArgumentError', `field '${field}' must be an int`);
  return v;
}

function address(req, nameField = 'remote', deviceField = 'remote_device') {
  const name = req[nameField];
  if (typeof name !== 'string' || !name) throw new PeerFailure('InvalidArgumentError', `missing field '${nameField}'`);
  if (name.includes('.')) throw new PeerFailure('InvalidArgumentError', `field '${nameField}' cannot contain '.' here`);
  return new L.ProtocolAddress(name, intField(req, deviceField, 1));
}

// Results of libsignal-node's pure-JavaScript curve25519 for the keys new_identity is given, kept for
// the process: a harness re-creates the same identity for each case (the conformance run: 350 times),
// and deriving three public keys and checking a signature costs about 20 ms each time.
const memo = new Map();
function remembered(key, compute) {
  if (!memo.has(key)) {
    if (memo.size >= 1024) memo.clear();
    memo.set(key, compute());
  }
  return memo.get(key);
}

// A key pair of libsignal-node's shape ({pubKey: 33 bytes, privKey: 32 bytes}); the public key of a
// given private key is libsignal-node's own getPublicFromPrivateKey.
function keyPair(priv) {
  if (priv === null) return L.curve.generateKeyPair();
  const pub = remembered(`pub:${hex(priv)}`, () => L.curve.getPublicFromPrivateKey(priv));
  return { pubKey: Buffer.from(pub), privKey: Buffer.from(priv) };
}

function randomRegistrationId() {
  let id = 0;
  while (id === 0) id = L.keyhelper.generateRegistrationId();
  return id;
}

// ------------------------------------------------------------------------- the store
// The storage interface libsignal-node 6.0.0 calls (src/session_builder.js, src/session_cipher.js).
class Storage {
  constructor(identity, registrationId) {
    this.identity = identity;
    this.registrationId = registrationId;
    this.sessions = new Map(); // "name.device" -> JSON text of SessionRecord.serialize()
    this.identities = new Map(); // name -> identity key (trust on first use)
    this.prekeys = new Map(); // id -> {pubKey, privKey}
    this.signed = new Map(); // id -> {pubKey, privKey, signature}
  }
  async loadSession(id) {
    const s = this.sessions.get(id);
    return s === undefined ? undefined : L.SessionRecord.deserialize(JSON.parse(s));
  }
  async storeSession(id, record) {
    this.sessions.set(id, JSON.stringify(record.serialize()));
  }
  // Called with the bare name (initOutgoing, encrypt, decrypt) or "name.device" (initIncoming).
  async isTrustedIdentity(id, identityKey) {
    const name = String(id).split('.')[0];
    const key = Buffer.from(identityKey);
    const known = this.identities.get(name);
    if (known === undefined) {
      this.identities.set(name, key);
      return true;
    }
    return known.equals(key);
  }
  getOurIdentity() {
    return { pubKey: this.identity.pubKey, privKey: this.identity.privKey };
  }
  getOurRegistrationId() {
    return this.registrationId;
  }
  async loadPreKey(id) {
    const k = this.prekeys.get(Number(id));
    return k === undefined ? undefined : { pubKey: Buffer.from(k.pubKey), privKey: Buffer.from(k.privKey) };
  }
  async removePreKey(id) {
    this.prekeys.delete(Number(id));
  }
  async loadSignedPreKey(id) {
    const k = this.signed.get(Number(id));
    return k === undefined ? undefined : { pubKey: Buffer.from(k.pubKey), privKey: Buffer.from(k.privKey) };
  }
}

// ------------------------------------------------------------------------- record conversion
// libsignal's storage protobuf (the fields export_session / import_session carry), written out here
// rather than read from the repository's proto/storage.proto: nothing of wacrypto's in this peer.
const STORAGE = protobuf.parse(`
syntax = "proto2";
message SessionStructure {
  message Chain {
    message ChainKey { optional uint32 index = 1; optional bytes key = 2; }
    message MessageKey {
      optional uint32 index = 1; optional bytes cipher_key = 2; optional bytes mac_key = 3;
      optional bytes iv = 4; optional bytes seed = 5;
    }
    optional bytes sender_ratchet_key = 1;
    optional bytes sender_ratchet_key_private = 2;
    optional ChainKey chain_key = 3;
    repeated MessageKey message_keys = 4;
  }
  message PendingPreKey {
    optional uint32 pre_key_id = 1; optional bytes base_key = 2; optional int32 signed_pre_key_id = 3;
  }
  optional uint32 session_version = 1;
  optional bytes local_identity_public = 2;
  optional bytes remote_identity_public = 3;
  optional bytes root_key = 4;
  optional uint32 previous_counter = 5;
  optional Chain sender_chain = 6;
  repeated Chain receiver_chains = 7;
  optional PendingPreKey pending_pre_key = 9;
  optional uint32 remote_registration_id = 10;
  optional uint32 local_registration_id = 11;
  optional bytes alice_base_key = 13;
}
message RecordStructure {
  optional SessionStructure current_session = 1;
  repeated bytes previous_sessions = 2;
}
`).root;
const SessionStructure = STORAGE.lookupType('SessionStructure');
const RecordStructure = STORAGE.lookupType('RecordStructure');

const has = (msg, field) => Object.prototype.hasOwnProperty.call(msg, field) && msg[field] !== null;
const b64 = (buf) => Buffer.from(buf).toString('base64');

function needBytes(msg, field, length, what) {
  if (!has(msg, field) || (length !== undefined && msg[field].length !== length)) {
    throw new PeerFailure('InvalidMessageError', `session record: ${what} missing or not ${length} bytes`);
  }
  return Buffer.from(msg[field]);
}

function seedsOf(chain, what) {
  const out = {};
  for (const mk of chain.messageKeys || []) {
    if (!has(mk, 'seed')) {
      throw new PeerFailure('UnsupportedError',
        `session record: a skipped message key of the ${what} has no seed (libsignal-node keeps seeds only)`);
    }
    out[mk.index] = b64(mk.seed);
  }
  return out;
}

// SessionStructure -> the object SessionEntry.deserialize reads (src/session_record.js).
function entryFromStructure(s, closed, used) {
  if (has(s, 'sessionVersion') && s.sessionVersion !== 3) {
    throw new PeerFailure('InvalidMessageError', `session record: version ${s.sessionVersion} (libsignal-node: 3 only)`);
  }
  if (!has(s, 'senderChain') || !has(s.senderChain, 'chainKey')) {
    throw new PeerFailure('InvalidMessageError', 'session record: no sender chain');
  }
  const sc = s.senderChain;
  const senderPub = needBytes(sc, 'senderRatchetKey', 33, 'sender ratchet key');
  const chains = {};
  chains[b64(senderPub)] = {
    chainKey: { counter: sc.chainKey.index - 1, key: b64(needBytes(sc.chainKey, 'key', 32, 'sender chain key')) },
    chainType: SENDING,
    messageKeys: {},
  };
  let lastRemote = Buffer.alloc(33); // no receiver chain: a key that names no chain
  (s.receiverChains || []).forEach((rc, i) => {
    const pub = needBytes(rc, 'senderRatchetKey', 33, 'receiver ratchet key');
    const ck = has(rc, 'chainKey') ? rc.chainKey : { index: 0 };
    chains[b64(pub)] = {
      chainKey: { counter: (ck.index || 0) - 1, key: has(ck, 'key') ? b64(ck.key) : undefined },
      chainType: RECEIVING,
      messageKeys: seedsOf(rc, `receiver chain ${i}`),
    };
    lastRemote = pub; // libsignal appends receiver chains: the last one is the newest
  });
  const entry = {
    registrationId: has(s, 'remoteRegistrationId') ? s.remoteRegistrationId : 0,
    currentRatchet: {
      ephemeralKeyPair: { pubKey: b64(senderPub), privKey: b64(needBytes(sc, 'senderRatchetKeyPrivate', 32, 'sender ratchet private key')) },
      lastRemoteEphemeralKey: b64(lastRemote),
      previousCounter: s.previousCounter || 0,
      rootKey: b64(needBytes(s, 'rootKey', 32, 'root key')),
    },
    indexInfo: {
      baseKey: b64(needBytes(s, 'aliceBaseKey', 33, 'alice base key')),
      // Who was Alice is not in the record; a pending prekey means we were (we started it).
      baseKeyType: has(s, 'pendingPreKey') ? OURS : THEIRS,
      closed,
      used,
      created: used,
      remoteIdentityKey: b64(needBytes(s, 'remoteIdentityPublic', 33, 'remote identity')),
    },
    _chains: chains,
  };
  if (has(s, 'pendingPreKey')) {
    const p = s.pendingPreKey;
    entry.pendingPreKey = { signedKeyId: p.signedPreKeyId, baseKey: b64(needBytes(p, 'baseKey', 33, 'pending base key')) };
    if (has(p, 'preKeyId')) entry.pendingPreKey.preKeyId = p.preKeyId;
  }
  return entry;
}

function decodeRecord(raw) {
  let rec;
  try {
    rec = RecordStructure.decode(raw);
  } catch (e) {
    throw new PeerFailure('InvalidMessageError', `bad session record: ${e.message}`);
  }
  if (!has(rec, 'currentSession')) throw new PeerFailure('InvalidMessageError', 'session record has no current session');
  const now = Date.now();
  const current = entryFromStructure(rec.currentSession, -1, now);
  const sessions = { [current.indexInfo.baseKey]: current };
  (rec.previousSessions || []).forEach((bytes, i) => {
    let s;
    try {
      s = SessionStructure.decode(bytes);
    } catch (e) {
      throw new PeerFailure('InvalidMessageError', `bad previous session ${i}: ${e.message}`);
    }
    const e = entryFromStructure(s, now - 1 - i, now - 1 - i); // previous_sessions: most recent first
    if (!(e.indexInfo.baseKey in sessions)) sessions[e.indexInfo.baseKey] = e;
  });
  return { record: L.SessionRecord.deserialize({ _sessions: sessions, version: 'v1' }), remoteIdentity: current.indexInfo.remoteIdentityKey };
}

// SessionEntry -> SessionStructure (skipped keys: libsignal-node's own HKDF derives what libsignal stores).
function structureFromEntry(e, ourIdentity, ourRegistrationId) {
  const d = e.serialize();
  const chainOut = (pubB64, c, withPrivate) => {
    const out = { senderRatchetKey: Buffer.from(pubB64, 'base64'), chainKey: { index: c.chainKey.counter + 1 } };
    if (withPrivate) out.senderRatchetKeyPrivate = Buffer.from(d.currentRatchet.ephemeralKeyPair.privKey, 'base64');
    if (c.chainKey.key) out.chainKey.key = Buffer.from(c.chainKey.key, 'base64');
    out.messageKeys = Object.entries(c.messageKeys).map(([idx, seedB64]) => {
      const seed = Buffer.from(seedB64, 'base64');
      const [cipherKey, macKey, ivs] = L.crypto.deriveSecrets(seed, Buffer.alloc(32), Buffer.from('WhisperMessageKeys'));
      return { index: Number(idx), cipherKey, macKey, iv: ivs.slice(0, 16), seed };
    });
    return out;
  };
  const senderId = d.currentRatchet.ephemeralKeyPair.pubKey;
  const receivers = [];
  let newest = null;
  for (const [id, c] of Object.entries(d._chains)) {
    if (c.chainType !== RECEIVING) continue;
    if (!c.chainKey.key && Object.keys(c.messageKeys).length === 0) continue; // closed and empty: nothing left
    const out = chainOut(id, c, false);
    if (id === d.currentRatchet.lastRemoteEphemeralKey) newest = out;
    else receivers.push(out);
  }
  if (newest !== null) receivers.push(newest); // newest last, as libsignal keeps them
  const s = {
    sessionVersion: 3,
    localIdentityPublic: ourIdentity,
    remoteIdentityPublic: Buffer.from(d.indexInfo.remoteIdentityKey, 'base64'),
    rootKey: Buffer.from(d.currentRatchet.rootKey, 'base64'),
    previousCounter: d.currentRatchet.previousCounter,
    receiverChains: receivers,
    remoteRegistrationId: d.registrationId,
    localRegistrationId: ourRegistrationId,
    aliceBaseKey: Buffer.from(d.indexInfo.baseKey, 'base64'),
  };
  if (d._chains[senderId] !== undefined) s.senderChain = chainOut(senderId, d._chains[senderId], true);
  if (d.pendingPreKey) {
    s.pendingPreKey = { baseKey: Buffer.from(d.pendingPreKey.baseKey, 'base64'), signedPreKeyId: d.pendingPreKey.signedKeyId };
    if (d.pendingPreKey.preKeyId) s.pendingPreKey.preKeyId = d.pendingPreKey.preKeyId;
  }
  return s;
}

// ------------------------------------------------------------------------- the peer
class LibsignalNodePeer {
  constructor() {
    this.newIdentity({});
  }

  newIdentity(req) {
    if (req.name !== undefined && (typeof req.name !== 'string' || !req.name)) {
      throw new PeerFailure('InvalidArgumentError', "field 'name' must be a non-empty string");
    }
    const name = req.name || 'local';
    const deviceId = intField(req, 'device_id', 1);
    const regId = intField(req, 'registration_id', null);
    const identPriv = optHex(req, 'identity_private', 32);
    const identity = keyPair(identPriv);
    const spkId = intField(req, 'signed_prekey_id', 1);
    const spkPriv = optHex(req, 'signed_prekey_private', 32);
    const spk = keyPair(spkPriv);
    let sig = optHex(req, 'signed_prekey_signature', 64);
    if (sig === null) {
      sig = L.curve.calculateSignature(identity.privKey, spk.pubKey);
    } else if (!remembered(`sig:${hex(identity.pubKey)}:${hex(spk.pubKey)}:${hex(sig)}`,
      () => L.curve.verifySignature(identity.pubKey, spk.pubKey, sig, false))) {
      throw new PeerFailure('InvalidArgumentError', 'signed_prekey_signature does not verify with the identity key');
    }
    const prekeyId = intField(req, 'prekey_id', 1);
    const prekeyPriv = optHex(req, 'prekey_private', 32);
    checkPrekeyId(prekeyId);

    this.name = name;
    this.deviceId = deviceId;
    this.storage = new Storage(identity, regId === null ? randomRegistrationId() : regId);
    this.storage.signed.set(spkId, { ...spk, signature: sig });
    this.signedPrekeyId = spkId;
    this.currentPrekeyId = null;
    const pk = this.makePrekey(prekeyId, prekeyPriv);
    return {
      name,
      device_id: deviceId,
      registration_id: this.storage.registrationId,
      identity_public: hex(identity.pubKey),
      identity_private: hex(identity.privKey),
      signed_prekey_id: spkId,
      signed_prekey_public: hex(spk.pubKey),
      signed_prekey_private: hex(spk.privKey),
      signed_prekey_signature: hex(sig),
      ...pk,
    };
  }

  makePrekey(id, priv) {
    checkPrekeyId(id);
    const kp = keyPair(priv);
    this.storage.prekeys.set(id, kp);
    this.currentPrekeyId = id;
    return { prekey_id: id, prekey_public: hex(kp.pubKey), prekey_private: hex(kp.privKey) };
  }

  nextPrekeyId() {
    return ((this.currentPrekeyId || 0) % MAX_ID) + 1;
  }

  async record(addr) {
    return this.storage.loadSession(addr.toString());
  }

  // ----------------------------------------------------------------------- commands
  async cmd_info() {
    return {
      implementation: 'libsignal-node',
      version: PKG_VERSION,
      capabilities: ['session', 'primitives', 'export_import'],
    };
  }

  async cmd_new_identity(req) {
    const out = this.newIdentity(req);
    this.identityGiven = true;
    return out;
  }

  requireIdentity() {
    if (!this.identityGiven) throw new PeerFailure('InvalidArgumentError', 'call new_identity first');
  }

  async cmd_new_prekey(req) {
    this.requireIdentity();
    return this.makePrekey(intField(req, 'prekey_id', this.nextPrekeyId()), optHex(req, 'prekey_private', 32));
  }

  async cmd_bundle(req) {
    this.requireIdentity();
    const spk = this.storage.signed.get(this.signedPrekeyId);
    const out = {
      registration_id: this.storage.registrationId,
      device_id: this.deviceId,
      identity_key: hex(this.storage.identity.pubKey),
      signed_prekey_id: this.signedPrekeyId,
      signed_prekey: hex(spk.pubKey),
      signed_prekey_signature: hex(spk.signature),
    };
    if (req.with_prekey !== undefined && typeof req.with_prekey !== 'boolean') {
      throw new PeerFailure('InvalidArgumentError', "field 'with_prekey' must be a boolean");
    }
    if (req.with_prekey !== false) {
      if (this.currentPrekeyId === null || !this.storage.prekeys.has(this.currentPrekeyId)) {
        this.makePrekey(this.nextPrekeyId(), null); // the last one was consumed
      }
      out.prekey_id = this.currentPrekeyId;
      out.prekey = hex(this.storage.prekeys.get(this.currentPrekeyId).pubKey);
    }
    return out;
  }

  async cmd_process_bundle(req) {
    this.requireIdentity();
    const addr = address(req);
    const b = req.bundle;
    if (!b || typeof b !== 'object' || Array.isArray(b)) throw new PeerFailure('InvalidArgumentError', "missing field 'bundle'");
    const device = {
      registrationId: intField(b, 'registration_id'),
      identityKey: unhex(b, 'identity_key'),
      signedPreKey: {
        keyId: intField(b, 'signed_prekey_id'),
        publicKey: unhex(b, 'signed_prekey'),
        signature: unhex(b, 'signed_prekey_signature'),
      },
    };
    if (b.prekey !== undefined && b.prekey !== null) {
      device.preKey = { keyId: intField(b, 'prekey_id'), publicKey: unhex(b, 'prekey') };
    }
    // Passed as they are: libsignal-node checks the key formats itself (and not the signature).
    await new L.SessionBuilder(this.storage, addr).initOutgoing(device);
    return {};
  }

  async cmd_encrypt(req) {
    const addr = address(req);
    const msg = await new L.SessionCipher(this.storage, addr).encrypt(unhex(req, 'plaintext'));
    return { type: msg.type === 3 ? 3 : 2, body: hex(msg.body) }; // libsignal-node calls a SignalMessage type 1
  }

  async cmd_decrypt(req) {
    sessionErrors = [];
    const addr = address(req);
    const type = intField(req, 'type');
    const body = unhex(req, 'body');
    const cipher = new L.SessionCipher(this.storage, addr);
    let plaintext;
    if (type === 3) {
      plaintext = await cipher.decryptPreKeyWhisperMessage(body);
    } else if (type === 1 || type === 2) {
      plaintext = await cipher.decryptWhisperMessage(body);
    } else {
      throw new PeerFailure('InvalidMessageError', `unknown message type ${type}`);
    }
    return { plaintext: hex(plaintext) };
  }

  async cmd_has_session(req) {
    const rec = await this.record(address(req));
    return { has_session: rec !== undefined && rec.haveOpenSession() };
  }

  async cmd_export_session(req) {
    const addr = address(req);
    const rec = await this.record(addr);
    const open = rec === undefined ? undefined : rec.getOpenSession();
    if (open === undefined) throw new PeerFailure('NoSessionError', `no session with ${addr}`);
    const ours = this.storage.identity.pubKey;
    const closed = Object.values(rec.sessions).filter((s) => s !== open)
      .sort((a, b) => b.indexInfo.closed - a.indexInfo.closed);
    const out = RecordStructure.encode(RecordStructure.fromObject({
      currentSession: structureFromEntry(open, ours, this.storage.registrationId),
      previousSessions: closed.map((s) => SessionStructure.encode(SessionStructure.fromObject(
        structureFromEntry(s, ours, this.storage.registrationId))).finish()),
    })).finish();
    return { record: hex(out) };
  }

  async cmd_import_session(req) {
    const addr = address(req);
    const { record, remoteIdentity } = decodeRecord(unhex(req, 'record'));
    const recordIdentity = Buffer.from(remoteIdentity, 'base64');
    const given = optHex(req, 'remote_identity', 33);
    if (given !== null && !given.equals(recordIdentity)) {
      throw new PeerFailure('InvalidArgumentError', 'remote_identity does not match the record');
    }
    await this.storage.storeSession(addr.toString(), record);
    this.storage.identities.set(addr.id, recordIdentity); // trusted from now on
    return {};
  }

  async groupUnsupported() {
    throw new PeerFailure('UnsupportedError', 'libsignal-node has no sender keys (Baileys implements groups itself)');
  }

  async cmd_group_create() { return this.groupUnsupported(); }
  async cmd_group_process() { return this.groupUnsupported(); }
  async cmd_group_encrypt() { return this.groupUnsupported(); }
  async cmd_group_decrypt() { return this.groupUnsupported(); }

  async cmd_fingerprint() {
    throw new PeerFailure('UnsupportedError',
      'libsignal-node exports no safety numbers (its unexported numeric_fingerprint.js cannot run)');
  }

  async cmd_sign(req) {
    return { signature: hex(L.curve.calculateSignature(unhex(req, 'private', 32), unhex(req, 'message'))) };
  }

  async cmd_verify(req) {
    const pub = unhex(req, 'public');
    const msg = unhex(req, 'message');
    const sig = unhex(req, 'signature');
    try {
      return { valid: L.curve.verifySignature(pub, msg, sig, false) === true };
    } catch (e) {
      return { valid: false }; // libsignal-node throws on a malformed key or signature length
    }
  }

  async cmd_agree(req) {
    const priv = unhex(req, 'private', 32);
    const pub = unhex(req, 'public');
    let shared;
    try {
      shared = L.curve.calculateAgreement(pub, priv);
    } catch (e) {
      throw new PeerFailure('InvalidKeyError', `agreement refused: ${e.message}`);
    }
    if (Buffer.from(shared).equals(Buffer.alloc(32))) throw new PeerFailure('InvalidKeyError', 'all-zero shared secret');
    return { shared: hex(shared) };
  }

  async cmd_public_key(req) {
    return { public: hex(L.curve.getPublicFromPrivateKey(unhex(req, 'private', 32))) };
  }
}

function checkPrekeyId(id) {
  if (!Number.isInteger(id) || id <= 0 || id > MAX_ID) {
    throw new PeerFailure('InvalidArgumentError', 'prekey_id must be in 1..2^24-1');
  }
}

// ------------------------------------------------------------------------- error mapping
function mapError(e) {
  const errs = sessionErrors;
  sessionErrors = [];
  const msg = String((e && e.message) || e);
  if (e instanceof L.UntrustedIdentityKeyError) return ['UntrustedIdentityError', `untrusted identity key for ${e.addr}`];
  if (e instanceof L.MessageCounterError) return ['DuplicateMessageError', msg];
  if (e instanceof L.PreKeyError) {
    return [msg.includes('SignedPreKey') ? 'NoSignedPreKeyError' : 'NoPreKeyError', msg];
  }
  if (msg === 'No matching sessions found for message') {
    // What libsignal-node reported for each session it tried (see "console" above).
    if (errs.some((s) => s.includes('MessageCounterError'))) return ['DuplicateMessageError', `${msg} (key used already)`];
    if (errs.some((s) => s.includes('Over 2000 messages'))) return ['TooFarAheadError', `${msg} (over 2000 messages ahead)`];
    if (errs.length && errs.every((s) => s.includes('Incompatible version'))) return ['LegacyMessageError', msg];
    return ['DecryptionError', msg];
  }
  if (e instanceof L.SessionError) {
    if (/^No (sessions|open session|session record|sessions available)/.test(msg)) return ['NoSessionError', msg];
    if (msg.includes('Over 2000 messages')) return ['TooFarAheadError', msg];
    return ['DecryptionError', msg];
  }
  if (msg.includes('Incompatible version')) return ['LegacyMessageError', msg];
  if (msg === 'Bad MAC' || msg === 'Bad MAC length' || /bad decrypt|wrong final block/i.test(msg)) return ['DecryptionError', msg];
  if (/public key|private key|derivation/i.test(msg)) return ['InvalidKeyError', msg];
  if (msg === 'Invalid signature') return ['InvalidSignatureError', msg];
  if (/index out of range|invalid wire type|illegal|No registrationId/i.test(msg)) return ['InvalidMessageError', msg];
  // Anything else the package throws on a malformed message (TypeError on a missing field, ...).
  if (e instanceof TypeError || e instanceof RangeError) return ['InvalidMessageError', `${e.name}: ${msg}`];
  return ['InternalError', `${(e && e.name) || 'Error'}: ${msg}`];
}

serve(new LibsignalNodePeer(), mapError, 'libsignal_node_peer');
