#!/usr/bin/env bash
# Installs whatever the KIE Control Room needs and is missing, then stops. Idempotent: on a
# machine that has everything it only checks versions (a few seconds).
#
#   scripts/setup.sh run    # what `scripts/run.sh` needs: Rust WASM target, cargo-leptos,
#                           # wasm-bindgen-cli, Node.js/npm and binaryen's wasm-opt (npm, tools/)
#   scripts/setup.sh test   # the above plus redis-server, Chromium and the end-to-end
#                           # suite's npm packages
#
# Callers put tools/node_modules/.bin first on PATH (see scripts/env.sh) so cargo-leptos uses
# that wasm-opt: Debian 12's binaryen 108 corrupts the module (reference types).
set -euo pipefail
mode="${1:-run}"
cd "$(dirname "$0")/.."

# Versions the build depends on (see README "Building").
CARGO_LEPTOS_VERSION=0.3.0
WASM_BINDGEN_VERSION=0.2.130   # must equal the wasm-bindgen pinned in Cargo.toml

say() { printf '\033[1;36m[setup]\033[0m %s\n' "$*"; }
die() { printf '\033[1;31m[setup]\033[0m %s\n' "$*" >&2; exit 1; }

export PATH="$HOME/.cargo/bin:$PATH"
command -v cargo >/dev/null || die "Rust is not installed. Install it with rustup (https://rustup.rs), then run this again."

# --- Debian packages -------------------------------------------------------------------------
apt_missing=()
command -v node >/dev/null || apt_missing+=(nodejs)
command -v npm >/dev/null || apt_missing+=(npm)
if [ "$mode" = test ]; then
  command -v redis-server >/dev/null || apt_missing+=(redis-server)
  [ -x /usr/bin/chromium ] || apt_missing+=(chromium)
  command -v python3 >/dev/null || apt_missing+=(python3)
  python3 -m venv --help >/dev/null 2>&1 || apt_missing+=(python3-venv)
fi
if [ "${#apt_missing[@]}" -gt 0 ]; then
  command -v apt-get >/dev/null || die "missing: ${apt_missing[*]} — install them with your package manager."
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  say "installing Debian packages: ${apt_missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${apt_missing[@]}" >/dev/null
fi

# --- Rust target and tools -------------------------------------------------------------------
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

if ! cargo leptos --version 2>/dev/null | grep -q " ${CARGO_LEPTOS_VERSION}\$"; then
  say "installing cargo-leptos ${CARGO_LEPTOS_VERSION} (first time only; ~14 min on 2 cores)"
  # no_downloads: use the wasm-bindgen / wasm-opt installed here instead of fetching binaries.
  cargo install cargo-leptos --version "${CARGO_LEPTOS_VERSION}" --locked --features no_downloads
fi

if ! wasm-bindgen --version 2>/dev/null | grep -q " ${WASM_BINDGEN_VERSION}\$"; then
  say "installing wasm-bindgen-cli ${WASM_BINDGEN_VERSION} (first time only; ~5 min)"
  # Not --locked: its lockfile names a crate version some registries no longer serve.
  cargo install wasm-bindgen-cli --version "=${WASM_BINDGEN_VERSION}" --force
fi

# --- wasm-opt (binaryen from npm, pinned in tools/package.json) -------------------------------
npm_install() { # dir
  if [ ! -d "$1/node_modules" ] || [ "$1/package-lock.json" -nt "$1/node_modules/.package-lock.json" ]; then
    say "installing npm packages in $1"
    (cd "$1" && npm ci --no-audit --no-fund --loglevel=error)
  fi
}
npm_install tools

# --- End-to-end suite and the alert rules' checker ------------------------------------------
if [ "$mode" = test ]; then
  npm_install end2end   # playwright-core only: it drives /usr/bin/chromium, downloads no browser
  # The relay API's checkers and the S3-compatible test server (PyPI, pinned in
  # tools/requirements-test.txt), in their own venv.
  # (Any pinned line missing from the venv's `pip freeze`, which lists no extras, means: install.)
  installed="$(tools/venv/bin/python -m pip freeze 2>/dev/null || true)"
  if sed 's/\[[^]]*\]//' tools/requirements-test.txt | grep -vxF -f <(printf '%s\n' "$installed") >/dev/null; then
    say "installing schemathesis, openapi-spec-validator, moto, openai, anthropic and mcp (PyPI) in tools/venv"
    python3 -m venv tools/venv
    tools/venv/bin/python -m pip install -q --disable-pip-version-check -r tools/requirements-test.txt
  fi
  # promtool, from Debian's prometheus package, unpacked under tools/ (installing the package
  # would also start a Prometheus server the tests do not need).
  if [ ! -x tools/promtool/usr/bin/promtool ] && ! command -v promtool >/dev/null; then
    command -v apt-get >/dev/null || die "promtool is missing; install Prometheus' promtool with your package manager."
    say "unpacking promtool (Debian's prometheus package) into tools/promtool"
    tmp="$(mktemp -d)"
    (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1) \
      || { apt-get update -qq && (cd "$tmp" && apt-get download prometheus >/dev/null); } \
      || die "cannot download Debian's prometheus package (for promtool)"
    dpkg -x "$tmp"/prometheus_*.deb tools/promtool
    rm -rf "$tmp"
  fi
fi
say "ready ($mode)"
