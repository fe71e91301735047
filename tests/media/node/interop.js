'use strict'
// Drives Baileys' own media code (an independent implementation) for tests/media/test_interop.py.
// Reads one JSON request on stdin, writes one JSON answer on stdout. Requests:
//   {"op": "keys",    "items": [{"type": BAILEYS_TYPE | null, "info": STRING | null, "media_key": HEX}]}
//        -> {"items": [{"iv": HEX, "cipher_key": HEX, "mac_key": HEX}]}
//        (type: Baileys' getMediaKeys and its own type->info table; info: Baileys' hkdf() with that info)
//   {"op": "encrypt", "type": BAILEYS_TYPE, "media_key": HEX, "in": PATH, "out": PATH}
//        -> {"file_sha256": HEX, "file_enc_sha256": HEX, "file_length": N, "mac": HEX}
//        (Baileys' encryptedStream, with crypto.randomBytes made to return the given media key once)
//   {"op": "decrypt", "type": BAILEYS_TYPE, "media_key": HEX, "in": PATH, "out": PATH}
//        -> {"ok": true} or {"ok": false, "error": MESSAGE}
//        (Baileys' downloadContentFromMessage, fetching the blob from a local HTTP server on 127.0.0.1)
//   {"op": "batch", "requests": [REQUEST...]} -> {"answers": [ANSWER...]}   (one node start for many)
const crypto = require('crypto')
const fs = require('fs')
const http = require('http')
const media = require('@whiskeysockets/baileys/lib/Utils/messages-media')
const bcrypto = require('@whiskeysockets/baileys/lib/Utils/crypto')

const hex = (b) => Buffer.from(b).toString('hex')

async function keys (req) {
  const items = []
  for (const item of req.items) {
    const mediaKey = Buffer.from(item.media_key, 'hex')
    if (item.type) {
      const k = await media.getMediaKeys(mediaKey, item.type)
      items.push({ iv: hex(k.iv), cipher_key: hex(k.cipherKey), mac_key: hex(k.macKey) })
    } else {
      const x = Buffer.from(await bcrypto.hkdf(mediaKey, 112, { info: item.info }))
      items.push({ iv: hex(x.subarray(0, 16)), cipher_key: hex(x.subarray(16, 48)), mac_key: hex(x.subarray(48, 80)) })
    }
  }
  return { items }
}

async function encrypt (req) {
  const mediaKey = Buffer.from(req.media_key, 'hex')
  const original = crypto.randomBytes
  crypto.randomBytes = (n, ...rest) => {
    if (n === 32 && rest.length === 0) {
      crypto.randomBytes = original
      return Buffer.from(mediaKey)
    }
    return original(n, ...rest)
  }
  try {
    const r = await media.encryptedStream(fs.readFileSync(req.in), req.type, {})
    if (!Buffer.from(r.mediaKey).equals(mediaKey)) throw new Error('media key injection failed')
    const parts = []
    for await (const chunk of r.encWriteStream) parts.push(chunk)
    fs.writeFileSync(req.out, Buffer.concat(parts))
    return { file_sha256: hex(r.fileSha256), file_enc_sha256: hex(r.fileEncSha256), file_length: r.fileLength, mac: hex(r.mac) }
  } finally {
    crypto.randomBytes = original
  }
}

async function decrypt (req) {
  const blob = fs.readFileSync(req.in)
  const server = http.createServer((_, res) => { res.writeHead(200, { 'Content-Length': blob.length }); res.end(blob) })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  try {
    const url = `http://127.0.0.1:${server.address().port}/blob`
    const stream = await media.downloadContentFromMessage({ mediaKey: Buffer.from(req.media_key, 'hex'), url }, req.type)
    const parts = []
    for await (const chunk of stream) parts.push(chunk)
    fs.writeFileSync(req.out, Buffer.concat(parts))
    return { ok: true }
  } catch (e) {
    return { ok: false, error: String(e && e.message) }
  } finally {
    server.close()
  }
}

async function main () {
  const chunks = []
  for await (const c of process.stdin) chunks.push(c)
  const req = JSON.parse(Buffer.concat(chunks).toString('utf8'))
  const ops = { keys, encrypt, decrypt }
  const run = async (r) => {
    if (!ops[r.op]) throw new Error(`unknown op ${r.op}`)
    return ops[r.op](r)
  }
  if (req.op === 'batch') {
    const answers = []
    for (const r of req.requests) answers.push(await run(r))
    process.stdout.write(JSON.stringify({ answers }))
  } else {
    process.stdout.write(JSON.stringify(await run(req)))
  }
}

main().catch((e) => { process.stderr.write(String(e && e.stack) + '\n'); process.exit(1) })
