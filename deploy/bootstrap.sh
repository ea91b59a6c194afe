#!/usr/bin/env bash
# Build prerequisites for the Rust workspace: a C toolchain and the headers librdkafka's bundled
# build needs, the Python venv module for the registry interop tests, Prometheus (promtool)
# for the rules and scrape tests, and Chromium for the dashboards' browser tests. Idempotent.
set -euo pipefail

say() { printf '[bootstrap] %s\n' "$*" >&2; }
die() { printf 'bootstrap: error: %s\n' "$*" >&2; exit 1; }

command -v cargo >/dev/null 2>&1 || die "cargo is not installed; install Rust (rustup) first: the toolchain is pinned in rust-toolchain.toml"

missing=()
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v perl >/dev/null 2>&1 || missing+=(perl)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v xxd >/dev/null 2>&1 || missing+=(xxd)
dpkg -s zlib1g-dev >/dev/null 2>&1 || missing+=(zlib1g-dev)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
# Prometheus and promtool: the shipped rules are checked and the services scraped in the tests.
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
# Debian's Chromium for the dashboards' browser tests (Playwright drives it; it downloads no
# browser of its own), and a font for its screenshots.
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
dpkg -s fonts-dejavu-core >/dev/null 2>&1 || missing+=(fonts-dejavu-core)

if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  say "apt-get install ${missing[*]}"
  $sudo apt-get update -qq >/dev/null || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
fi

# Python virtualenv with Confluent's client, for the interop tests.
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CT_STATE_DIR:-$REPO/.state}/venv"
REQS="$REPO/deploy/requirements-interop.txt"
if [ ! -f "$VENV/.complete" ] || [ "$REQS" -nt "$VENV/.complete" ]; then
  say "creating $VENV with $(grep -v '^#' "$REQS" | tr '\n' ' ')"
  rm -rf "$VENV"
  python3 -m venv "$VENV" || die "python3 -m venv failed"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQS" >"$VENV.log" 2>&1 \
    || die "pip install -r deploy/requirements-interop.txt failed (see $VENV.log)"
  touch "$VENV/.complete"
fi

# Node.js 20+ and npm for the TypeScript client (clients/typescript), its packages from the
# committed lockfile.
node_ok() { command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 \
  && [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ]; }
if ! node_ok; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  say "apt-get install nodejs npm"
  $sudo apt-get update -qq >/dev/null || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null \
    || die "apt-get install nodejs npm failed"
  node_ok || die "Node.js 20 or later is needed for clients/typescript (found $(node --version 2>/dev/null || echo none))"
fi
TS="$REPO/clients/typescript"
if [ ! -f "$TS/node_modules/.complete" ] || [ "$TS/package-lock.json" -nt "$TS/node_modules/.complete" ]; then
  say "npm ci in clients/typescript"
  (cd "$TS" && npm ci --no-audit --no-fund >/dev/null 2>&1) || die "npm ci in clients/typescript failed"
  touch "$TS/node_modules/.complete"
fi
