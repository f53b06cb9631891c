#!/usr/bin/env bash
# Sets up whatever is missing and runs every test: unit, integration (real Redis, real HTTP on
# loopback) in one build, then the end-to-end suite in Debian's Chromium against that build's
# server and the release WASM bundle.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
. scripts/env.sh

# `ssr` and `hydrate` must never be on together in one build: `frontend` (hydrate) is left out
# of the tests' build.
# Each step says how long the run has taken so far (minutes:seconds), to see where time goes.
step() { printf '\n\033[1;36m[test]\033[0m (%d:%02d) %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*"; }
# Every suite has a time limit far above what it takes (a few minutes), so a test that hangs
# fails the run with its suite named instead of holding it until CI gives up. The whole
# process group goes (cargo and the test binary it runs).
bounded() {
  local limit="$1"; shift
  local rc=0
  timeout --kill-after=30s "$limit" "$@" || rc=$?
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    printf '\033[1;31m[test]\033[0m still running after %s, stopped: %s\n' "$limit" "$*" >&2
  fi
  return "$rc"
}
# One build for every crate's tests (`app` with `ssr`; the WASM, with `hydrate`, is built apart
# below): each dependency is compiled once, with the features all of them need. Every target
# is built in it, the benchmarks too: they are not run in full here, but each must still build
# and run, a few iterations each (BENCH_SMOKE=1), checking that it completes and its figures
# are sane (their figures are not the point here).
step "gateway core (store conformance on Redis and embedded, KIE client against kie-sim, parser properties), kie-sim, app (ssr), server (HTTP on loopback); every benchmark briefly"
export BENCH_SMOKE=1
rm -f target/debug/hash.txt   # an earlier run's copy (below): the tests' servers name assets unhashed
bounded 40m cargo test -p gateway -p kie-sim -p app -p server --features app/ssr --all-targets
step "deploy: alert rules (promtool check and unit tests) and the dashboard's queries"
bounded 5m scripts/check-deploy.sh
step "release build of the WASM bundle (the site the end-to-end suite loads)"
# Built with a canary KIE key in its environment: the end-to-end suite scans the bundle for it,
# so a key compiled in (env!, option_env!, a build script) would be caught.
export LEAK_CANARY="kie-LEAKCANARY-5e1f0c9a7b3d2e4f6a8b"
KIE_API_KEY="$LEAK_CANARY" cargo leptos build --release --precompress --frontend-only
# The server and kie-sim the rest of the run starts are the ones the test build above made
# (the same code; a second, optimised build of every dependency took a quarter of a run on
# 2 cores). `scripts/run.sh` and the benchmarks on demand use the release build. The server
# reads the bundle's hash file beside its binary.
export CONTROL_ROOM_BIN_DIR="$PWD/target/debug"
for bin in control-room kie-sim; do
  [ -x "$CONTROL_ROOM_BIN_DIR/$bin" ] || { echo "the test build made no $bin" >&2; exit 1; }
done
cp target/release/hash.txt "$CONTROL_ROOM_BIN_DIR/hash.txt"
step "relay API: its OpenAPI description validated, and schemathesis against the relay on loopback"
bounded 15m scripts/check-relay-api.sh
step "end-to-end (Playwright + /usr/bin/chromium)"
(cd end2end && bounded 15m node --test tests/)
# The benchmarks that need the server as a process, briefly too (BENCH_SMOKE=1): wrk against
# the relay, and the console's load in Chromium.
step "benchmarks: the relay under wrk and the console's load, each run briefly (BENCH_SMOKE=1)"
bounded 15m scripts/bench-relay.sh
(cd end2end && bounded 10m node bench/load.mjs)
step "done"
