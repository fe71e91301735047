#!/usr/bin/env node
// Official libsignal (@signalapp/libsignal-client 0.23.1, Node binding) as an interop peer
// speaking the JSON-lines protocol of docs/peer-protocol.md: one local user per process,
// stores in memory (records kept serialized, as a persistent store would).
//
//   node tests/interop/drivers/libsignal_peer.js
//
// The package is installed in tests/interop/node (tests/interop/setup.sh). Its group API uses
// Signal's newer sender-key format (with a distribution UUID), not WhatsApp's, so group_*
// commands are reported as unsupported.
'use strict';

const path = require('path');
const crypto = require('crypto');
const { PeerFailure, hex, unhex, optHex, serve } = require('./jsonl_peer');

const NODE_DIR = process.env.LIBSIGNAL_NODE_DIR || path.join(__dirname, '..', 'node');
const SignalClient = require(require.resolve('@signalapp/libsignal-client', { paths: [NODE_DIR] }));
const PKG_VERSION = require(
  require.resolve('@signalapp/libsignal-client/package.json', { paths: [NODE_DIR] })
).version;

const {
  PrivateKey, PublicKey, IdentityKeyPair, PreKeyBundle, PreKeyRecord, SignedPreKeyRecord,
  SessionRecord, SignalMessage, PreKeySignalMessage, ProtocolAddress, Fingerprint, ErrorCode,
} = SignalClient;

const MAX_ID = 0xffffff;

// ------------------------------------------------------------------------- helpers
function publicKey(buf) {
  if (buf.length !== 33 || buf[0] !== 0x05) {
    throw new PeerFailure('InvalidKeyError', 'public key must be 33 bytes starting with 0x05');
  }
  return PublicKey.deserialize(buf);
}

function address(req, nameField = 'remote', deviceField = 'remote_device') {
  const name = req[nameField];
  if (typeof name !== 'string' || !name) throw new PeerFailure('InvalidArgumentError', `missing field '${nameField}'`);
  const device = req[deviceField] === undefined ? 1 : req[deviceField];
  if (!Number.isInteger(device)) throw new PeerFailure('InvalidArgumentError', `field '${deviceField}' must be an int`);
  return ProtocolAddress.new(name, device);
}

function addrKey(addr) {
  return `${addr.name()}.${addr.deviceId()}`;
}

function randomRegistrationId() {
  return crypto.randomInt(1, 16381);
}

// ------------------------------------------------------------------------- in-memory stores
class MemSessionStore extends SignalClient.SessionStore {
  constructor() {
    super();
    this.sessions = new Map();
  }
  async saveSession(name, record) {
    this.sessions.set(addrKey(name), Buffer.from(record.serialize()));
  }
  async getSession(name) {
    const raw = this.sessions.get(addrKey(name));
    return raw === undefined ? null : SessionRecord.deserialize(raw);
  }
  async getExistingSessions(addresses) {
    return addresses.map((a) => {
      const raw = this.sessions.get(addrKey(a));
      if (raw === undefined) throw new PeerFailure('NoSessionError', `no session for ${addrKey(a)}`);
      return SessionRecord.deserialize(raw);
    });
  }
}

class MemIdentityStore extends SignalClient.IdentityKeyStore {
  constructor(identity, registrationId) {
    super();
    this.identity = identity;
    this.registrationId = registrationId;
    this.known = new Map(); // remote name -> serialized public key (trust on first use)
  }
  async getIdentityKey() {
    return this.identity.privateKey;
  }
  async getLocalRegistrationId() {
    return this.registrationId;
  }
  async saveIdentity(name, key) {
    const k = name.name();
    const prev = this.known.get(k);
    const ser = Buffer.from(key.serialize());
    this.known.set(k, ser);
    return prev !== undefined && !prev.equals(ser);
  }
  async isTrustedIdentity(name, key, _direction) {
    const prev = this.known.get(name.name());
    return prev === undefined || prev.equals(Buffer.from(key.serialize()));
  }
  async getIdentity(name) {
    const prev = this.known.get(name.name());
    return prev === undefined ? null : PublicKey.deserialize(prev);
  }
}

class MemPreKeyStore extends SignalClient.PreKeyStore {
  constructor() {
    super();
    this.keys = new Map();
  }
  async savePreKey(id, record) {
    this.keys.set(id, Buffer.from(record.serialize()));
  }
  async getPreKey(id) {
    const raw = this.keys.get(id);
    if (raw === undefined) throw new PeerFailure('NoPreKeyError', `no prekey with id ${id}`);
    return PreKeyRecord.deserialize(raw);
  }
  async removePreKey(id) {
    this.keys.delete(id);
  }
}

class MemSignedPreKeyStore extends SignalClient.SignedPreKeyStore {
  constructor() {
    super();
    this.keys = new Map();
  }
  async saveSignedPreKey(id, record) {
    this.keys.set(id, Buffer.from(record.serialize()));
  }
  async getSignedPreKey(id) {
    const raw = this.keys.get(id);
    if (raw === undefined) throw new PeerFailure('NoSignedPreKeyError', `no signed prekey with id ${id}`);
    return SignedPreKeyRecord.deserialize(raw);
  }
}

// ------------------------------------------------------------------------- the peer
class LibsignalPeer {
  constructor() {
    this.newIdentity({});
  }

  newIdentity(req) {
    this.name = req.name || 'peer';
    this.deviceId = req.device_id === undefined ? 1 : req.device_id;
    const regId = req.registration_id === undefined || req.registration_id === null
      ? randomRegistrationId() : req.registration_id;
    const identPriv = optHex(req, 'identity_private', 32);
    const identKey = identPriv ? PrivateKey.deserialize(identPriv) : PrivateKey.generate();
    this.identity = new IdentityKeyPair(identKey.getPublicKey(), identKey);
    this.sessions = new MemSessionStore();
    this.identities = new MemIdentityStore(this.identity, regId);
    this.prekeys = new MemPreKeyStore();
    this.signedPrekeys = new MemSignedPreKeyStore();
    this.currentPrekeyId = null;

    const spkId = req.signed_prekey_id === undefined ? 1 : req.signed_prekey_id;
    const spkPriv = optHex(req, 'signed_prekey_private', 32);
    const spk = spkPriv ? PrivateKey.deserialize(spkPriv) : PrivateKey.generate();
    const spkPub = spk.getPublicKey();
    const sig = optHex(req, 'signed_prekey_signature', 64) || identKey.sign(spkPub.serialize());
    this.signedPrekeys.keys.set(
      spkId, Buffer.from(SignedPreKeyRecord.new(spkId, Date.now(), spkPub, spk, sig).serialize()));
    this.signedPrekeyId = spkId;

    const pk = this.makePrekey(req.prekey_id === undefined ? 1 : req.prekey_id, optHex(req, 'prekey_private', 32));
    return {
      name: this.name,
      device_id: this.deviceId,
      registration_id: regId,
      identity_public: hex(this.identity.publicKey.serialize()),
      identity_private: hex(identPriv || identKey.serialize()),
      signed_prekey_id: spkId,
      signed_prekey_public: hex(spkPub.serialize()),
      signed_prekey_private: hex(spkPriv || spk.serialize()),
      signed_prekey_signature: hex(sig),
      ...pk,
    };
  }

  makePrekey(id, priv) {
    if (!Number.isInteger(id) || id <= 0 || id > MAX_ID) {
      throw new PeerFailure('InvalidArgumentError', 'prekey_id must be in 1..2^24-1');
    }
    const key = priv ? PrivateKey.deserialize(priv) : PrivateKey.generate();
    this.prekeys.keys.set(id, Buffer.from(PreKeyRecord.new(id, key.getPublicKey(), key).serialize()));
    this.currentPrekeyId = id;
    return {
      prekey_id: id,
      prekey_public: hex(key.getPublicKey().serialize()),
      prekey_private: hex(priv || key.serialize()),
    };
  }

  nextPrekeyId() {
    return ((this.currentPrekeyId || 0) % MAX_ID) + 1;
  }

  async hasSession(addr) {
    const rec = await this.sessions.getSession(addr);
    return rec !== null && rec.hasCurrentState();
  }

  // ----------------------------------------------------------------------- commands
  async cmd_info() {
    return {
      implementation: 'libsignal-client (node)',
      version: PKG_VERSION,
      capabilities: ['session', 'primitives', 'fingerprint'],
    };
  }

  async cmd_new_identity(req) {
    return this.newIdentity(req);
  }

  async cmd_new_prekey(req) {
    const id = req.prekey_id === undefined || req.prekey_id === null ? this.nextPrekeyId() : req.prekey_id;
    return this.makePrekey(id, optHex(req, 'prekey_private', 32));
  }

  async cmd_bundle(req) {
    const spk = SignedPreKeyRecord.deserialize(this.signedPrekeys.keys.get(this.signedPrekeyId));
    const out = {
      registration_id: this.identities.registrationId,
      device_id: this.deviceId,
      identity_key: hex(this.identity.publicKey.serialize()),
      signed_prekey_id: spk.id(),
      signed_prekey: hex(spk.publicKey().serialize()),
      signed_prekey_signature: hex(spk.signature()),
    };
    if (req.with_prekey === undefined || req.with_prekey) {
      if (this.currentPrekeyId === null || !this.prekeys.keys.has(this.currentPrekeyId)) {
        this.makePrekey(this.nextPrekeyId(), null); // the last one was consumed
      }
      const pk = PreKeyRecord.deserialize(this.prekeys.keys.get(this.currentPrekeyId));
      out.prekey_id = pk.id();
      out.prekey = hex(pk.publicKey().serialize());
    }
    return out;
  }

  async cmd_process_bundle(req) {
    const addr = address(req);
    const b = req.bundle;
    if (!b || typeof b !== 'object') throw new PeerFailure('InvalidArgumentError', "missing field 'bundle'");
    const hasPk = b.prekey !== undefined && b.prekey !== null;
    const bundle = PreKeyBundle.new(
      b.registration_id,
      b.device_id === undefined ? addr.deviceId() : b.device_id,
      hasPk ? b.prekey_id : null,
      hasPk ? publicKey(unhex(b, 'prekey')) : null,
      b.signed_prekey_id,
      publicKey(unhex(b, 'signed_prekey')),
      unhex(b, 'signed_prekey_signature', 64),
      publicKey(unhex(b, 'identity_key')),
    );
    await SignalClient.processPreKeyBundle(bundle, addr, this.sessions, this.identities);
    return {};
  }

  async cmd_encrypt(req) {
    const addr = address(req);
    if (!(await this.hasSession(addr))) throw new PeerFailure('NoSessionError', `no session with ${addrKey(addr)}`);
    const msg = await SignalClient.signalEncrypt(unhex(req, 'plaintext'), addr, this.sessions, this.identities);
    return { type: msg.type(), body: hex(msg.serialize()) };
  }

  async cmd_decrypt(req) {
    const addr = address(req);
    const type = req.type === undefined ? 2 : req.type;
    const body = unhex(req, 'body');
    let plaintext;
    if (type === 3) {
      let msg;
      try {
        msg = PreKeySignalMessage.deserialize(body);
      } catch (e) {
        throw new PeerFailure(parseErrorName(e), `bad PreKeySignalMessage: ${e.message}`);
      }
      plaintext = await SignalClient.signalDecryptPreKey(
        msg, addr, this.sessions, this.identities, this.prekeys, this.signedPrekeys);
    } else if (type === 1 || type === 2) {
      let msg;
      try {
        msg = SignalMessage.deserialize(body);
      } catch (e) {
        throw new PeerFailure(parseErrorName(e), `bad SignalMessage: ${e.message}`);
      }
      plaintext = await SignalClient.signalDecrypt(msg, addr, this.sessions, this.identities);
    } else {
      throw new PeerFailure('InvalidArgumentError', `unknown message type ${type}`);
    }
    return { plaintext: hex(plaintext) };
  }

  async cmd_has_session(req) {
    return { has_session: await this.hasSession(address(req)) };
  }

  async cmd_export_session(req) {
    const addr = address(req);
    const raw = this.sessions.sessions.get(addrKey(addr));
    if (raw === undefined) throw new PeerFailure('NoSessionError', `no session with ${addrKey(addr)}`);
    return { record: hex(raw) };
  }

  async cmd_import_session(req) {
    const addr = address(req);
    let rec;
    try {
      rec = SessionRecord.deserialize(unhex(req, 'record'));
    } catch (e) {
      throw new PeerFailure('InvalidMessageError', `bad session record: ${e.message}`);
    }
    await this.sessions.saveSession(addr, rec);
    if (req.remote_identity) await this.identities.saveIdentity(addr, publicKey(unhex(req, 'remote_identity')));
    return {};
  }

  async groupUnsupported() {
    throw new PeerFailure('UnsupportedError',
      'libsignal-client sender keys carry a distribution UUID (Signal format), not the WhatsApp format');
  }

  async cmd_group_create() { return this.groupUnsupported(); }
  async cmd_group_process() { return this.groupUnsupported(); }
  async cmd_group_encrypt() { return this.groupUnsupported(); }
  async cmd_group_decrypt() { return this.groupUnsupported(); }

  async cmd_sign(req) {
    return { signature: hex(PrivateKey.deserialize(unhex(req, 'private', 32)).sign(unhex(req, 'message'))) };
  }

  async cmd_verify(req) {
    const pub = publicKey(unhex(req, 'public'));
    const sig = unhex(req, 'signature');
    if (sig.length !== 64) return { valid: false };
    return { valid: Boolean(pub.verify(unhex(req, 'message'), sig)) };
  }

  async cmd_agree(req) {
    const priv = PrivateKey.deserialize(unhex(req, 'private', 32));
    return { shared: hex(priv.agree(publicKey(unhex(req, 'public')))) };
  }

  async cmd_public_key(req) {
    return { public: hex(PrivateKey.deserialize(unhex(req, 'private', 32)).getPublicKey().serialize()) };
  }

  async cmd_fingerprint(req) {
    for (const f of ['local_id', 'remote_id']) {
      if (typeof req[f] !== 'string') throw new PeerFailure('InvalidArgumentError', `missing field '${f}'`);
    }
    const iterations = req.iterations === undefined ? 5200 : req.iterations;
    const version = req.version === undefined ? 1 : req.version;
    const fp = Fingerprint.new(
      iterations, version,
      Buffer.from(req.local_id, 'utf8'), publicKey(unhex(req, 'local_identity')),
      Buffer.from(req.remote_id, 'utf8'), publicKey(unhex(req, 'remote_identity')),
    );
    return {
      display: fp.displayableFingerprint().toString(),
      scannable: hex(fp.scannableFingerprint().toBuffer()),
    };
  }
}

// ------------------------------------------------------------------------- error mapping
function parseErrorName(e) {
  const m = String(e && e.message).toLowerCase();
  if (m.includes('version')) return 'LegacyMessageError';
  if (m.includes('key type') || m.includes('bad key') || m.includes('invalid key')) return 'InvalidKeyError';
  return 'InvalidMessageError';
}

function mapError(e) {
  const msg = String((e && e.message) || e);
  const low = msg.toLowerCase();
  if (e && e.code !== undefined && e instanceof SignalClient.LibSignalErrorBase) {
    switch (e.code) {
      case ErrorCode.DuplicatedMessage: return ['DuplicateMessageError', msg];
      case ErrorCode.UntrustedIdentity: return ['UntrustedIdentityError', msg];
      case ErrorCode.VerificationFailed: return ['InvalidSignatureError', msg];
      case ErrorCode.InvalidSession: return ['NoSessionError', msg];
      case ErrorCode.InvalidSenderKeySession: return ['NoSenderKeyError', msg];
      default: break;
    }
  }
  // Errors thrown by our own store callbacks come back through the native layer as text.
  if (low.includes('no signed prekey with id') || low.includes('invalid signed prekey identifier')) {
    return ['NoSignedPreKeyError', msg];
  }
  if (low.includes('no prekey with id') || low.includes('invalid prekey identifier')) return ['NoPreKeyError', msg];
  if (low.includes('decryption failed') || low.includes('mac')) return ['DecryptionError', msg];
  if (low.includes('no session') || (low.includes('session') && low.includes('not found'))) {
    return ['NoSessionError', msg];
  }
  if (low.includes('signature')) return ['InvalidSignatureError', msg];
  if (low.includes('too far into the future') || low.includes('too far')) return ['TooFarAheadError', msg];
  if (low.includes('duplicate')) return ['DuplicateMessageError', msg];
  if (low.includes('unrecognized message version') || low.includes('legacy')) return ['LegacyMessageError', msg];
  if (low.includes('mac') || low.includes('decrypt') || low.includes('invalid message') || low.includes('invalid ciphertext')) {
    return ['DecryptionError', msg];
  }
  if (low.includes('protobuf') || low.includes('too short') || low.includes('invalid')) return ['InvalidMessageError', msg];
  return ['InternalError', `${(e && e.name) || 'Error'}: ${msg}`];
}

serve(new LibsignalPeer(), mapError, 'libsignal_peer');
