#!/usr/bin/env bash
# Fetch Baileys' binary-node codec (npm `baileys`, MIT) for the interop tests: `npm pack` of the pinned
# version, its sha512 checked against the pin, and only lib/WABinary/*.js and LICENSE kept, in
# tests/interop/baileys/vendor/ (git-ignored). Baileys cannot be `npm install`ed here: it depends on a
# git repository. The WABinary modules need nothing but node's own util and zlib.
# Idempotent: a no-op when vendor/ already holds the pinned version.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VERSION=6.17.16
INTEGRITY='sha512-5dLjZ6+yRR4K7u56xKGCOsLPu5o7PrfLpAW0wV3WELpQQ6m33xwFK+Jd6hu+xDSVfMr7SqP2Dn0jqj+zH8ymdw=='
VENDOR=$HERE/vendor
log() { echo "interop-setup: baileys: $*" >&2; }
if [ "$(cat "$VENDOR/.version" 2>/dev/null)" = "$VERSION" ] && [ -f "$VENDOR/WABinary/encode.js" ]; then
    log "$VENDOR is up to date ($VERSION)"
    exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
log "npm pack baileys@$VERSION"
(cd "$tmp" && npm pack --silent "baileys@$VERSION" >/dev/null)
tgz=$tmp/baileys-$VERSION.tgz
got="sha512-$(python3 -c 'import base64, hashlib, sys; print(base64.b64encode(hashlib.sha512(open(sys.argv[1], "rb").read()).digest()).decode())' "$tgz")"
[ "$got" = "$INTEGRITY" ] || { log "ERROR: integrity mismatch for baileys@$VERSION: $got"; exit 1; }
tar xzf "$tgz" -C "$tmp" package/lib/WABinary package/LICENSE
rm -rf "$VENDOR"
mkdir -p "$VENDOR"
cp -r "$tmp/package/lib/WABinary" "$VENDOR/WABinary"
cp "$tmp/package/LICENSE" "$VENDOR/LICENSE"
echo "$VERSION" > "$VENDOR/.version"
log "installed WABinary of baileys@$VERSION in $VENDOR"
