#!/usr/bin/env bash
# Install the third-party Signal implementations driven by tests/interop (idempotent,
# non-interactive; a no-op taking about a second when everything is already in place):
#   * python-axolotl 0.2.3 in its own venv <repo>/.venv-axolotl (python3.11; pins in
#     requirements-axolotl.txt; protobuf runs pure Python there), with yowsup 3.3.0 beside it for its
#     SQLite key store (requirements-yowsup.txt, --no-deps)
#   * @signalapp/libsignal-client 0.23.1 in tests/interop/node (pins in package-lock.json)
#   * libsignal-node (npm `libsignal` 6.0.0, Baileys' pure-JavaScript libsignal; the pin of
#     bench/peers/baileys) in tests/interop/libsignal_node (pins in package-lock.json)
#   * the binary-node codec (lib/WABinary) of npm baileys 6.17.16, sha512-pinned, in
#     tests/interop/baileys/vendor (baileys/fetch.sh)
# Optional, for benchmarks only: `setup.sh --axolotl-cpp` also builds <repo>/.venv-axolotl-cpp,
# the same pins on CPython 3.10, where protobuf 3.20.3's C++ runtime exists (axolotl's fastest
# configuration, about 2-3x faster than pure Python).
# Only pip and npm, by package name, with exact pins. Progress goes to stderr.
# Environment: AXOLOTL_VENV (default <repo>/.venv-axolotl), AXOLOTL_PYTHON_BIN (default python3.11),
#              AXOLOTL_CPP_PYTHON_BIN (default: python3.10, else pyenv's 3.10).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
REQ=$HERE/requirements-axolotl.txt
REQ_YOWSUP=$HERE/requirements-yowsup.txt
NODE_DIR=$HERE/node

log() { echo "interop-setup: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

WITH_CPP=0
for arg in "$@"; do
    case "$arg" in
        --axolotl-cpp) WITH_CPP=1 ;;
        -h|--help) sed -n '2,17p' "$0" >&2; exit 0 ;;
        *) die "unknown argument $arg" ;;
    esac
done

# ---------------------------------------------------------------- python-axolotl
# install_axolotl VENV PYTHON: create/refresh VENV with the pinned requirements.
install_axolotl() {
    local venv=$1 pybin=$2
    local want stamp=$1/.interop-setup-stamp
    want=$(cat "$REQ" "$REQ_YOWSUP" <("$pybin" -c 'import sys; print(sys.version)') | sha256sum | cut -d' ' -f1)
    check() {
        "$venv/bin/python" -c 'import os, importlib.util
if importlib.util.find_spec("google.protobuf.pyext._message") is None:
    os.environ["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = "python"
import axolotl.sessioncipher, axolotl.groups.groupcipher, axolotl_curve25519
import yowsup.axolotl.store.sqlite.liteaxolotlstore' 2>/dev/null
    }
    if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && check; then
        log "python-axolotl: $venv is up to date"
        return 0
    fi
    if [ -e "$venv" ] && ! { [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import sys' 2>/dev/null \
            && [ "$("$venv/bin/python" -c 'import sys; print(sys.version)')" = "$("$pybin" -c 'import sys; print(sys.version)')" ]; }; then
        log "python-axolotl: $venv is broken or on another Python, recreating it"
        rm -rf "$venv"
    fi
    if [ ! -x "$venv/bin/python" ]; then
        log "python-axolotl: creating venv $venv with $pybin"
        "$pybin" -m venv "$venv"
    fi
    log "python-axolotl: pip install -r $REQ into $venv (builds python-axolotl-curve25519 from source)"
    "$venv/bin/python" -m pip install --no-input --disable-pip-version-check -q -r "$REQ" >&2
    # yowsup only for its SQLite key store (LiteAxolotlStore); its own pins (python-axolotl 0.2.2,
    # six 1.10, readline) are not wanted: the store modules need nothing but python-axolotl
    "$venv/bin/python" -m pip install --no-input --disable-pip-version-check -q --no-deps -r "$REQ_YOWSUP" >&2
    check || die "python-axolotl does not import in $venv after installation"
    echo "$want" > "$stamp"
    log "python-axolotl: installed in $venv"
}

PYBIN=${AXOLOTL_PYTHON_BIN:-python3.11}
command -v "$PYBIN" >/dev/null || die "$PYBIN not found (needed for the python-axolotl venv)"
install_axolotl "${AXOLOTL_VENV:-$ROOT/.venv-axolotl}" "$PYBIN"

if [ "$WITH_CPP" = 1 ]; then
    CPP_PY=${AXOLOTL_CPP_PYTHON_BIN:-}
    if [ -z "$CPP_PY" ]; then
        for cand in python3.10 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.10.*/bin/python; do
            if "$cand" -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1; then
                CPP_PY=$cand
                break
            fi
        done
    fi
    [ -n "$CPP_PY" ] && "$CPP_PY" -c 'import sys' >/dev/null 2>&1 \
        || die "--axolotl-cpp needs CPython 3.10 (set AXOLOTL_CPP_PYTHON_BIN)"
    install_axolotl "$ROOT/.venv-axolotl-cpp" "$CPP_PY"
    "$ROOT/.venv-axolotl-cpp/bin/python" -c 'import importlib.util, sys
sys.exit(importlib.util.find_spec("google.protobuf.pyext._message") is None)' \
        || die ".venv-axolotl-cpp has no protobuf C++ runtime"
fi

# ---------------------------------------------------------------- npm packages (node)
command -v node >/dev/null || die "node not found (needed for the Node peers)"
command -v npm >/dev/null || die "npm not found"
# npm_install LABEL DIR CHECK_JS HINT: npm ci in DIR (pins in its package-lock.json) unless the stamp
# matches and CHECK_JS runs there. --ignore-scripts throughout, see the callers.
npm_install() {
    local label=$1 dir=$2 check=$3 hint=$4 want stamp=$2/node_modules/.interop-setup-stamp
    want=$(cat "$dir/package.json" "$dir/package-lock.json" <(node --version) | sha256sum | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && (cd "$dir" && node -e "$check" 2>/dev/null); then
        log "$label: $dir/node_modules is up to date"
        return 0
    fi
    log "$label: npm ci in $dir"
    (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
    (cd "$dir" && node -e "$check" 2>/dev/null) || die "$label does not load from $dir ($hint)"
    echo "$want" > "$stamp"
    log "$label: installed"
}

# libsignal-client ships its prebuilt native binary (prebuilds/<platform>); its install script
# would only try to compile from source when no prebuild matches.
npm_install libsignal-client "$NODE_DIR" \
    "const S=require('@signalapp/libsignal-client'); S.PrivateKey.generate().getPublicKey();" \
    "no prebuilt binary for $(node -p 'process.platform+"-"+process.arch')?"
# libsignal-node: the only install script (protobufjs postinstall) is a version-scheme warning.
npm_install libsignal-node "$HERE/libsignal_node" \
    "const L=require('libsignal'); require('protobufjs'); L.curve.generateKeyPair();" \
    "npm libsignal 6.0.0 with its protobufjs"

# ---------------------------------------------------------------- Baileys' binary-node codec (node)
bash "$HERE/baileys/fetch.sh"
