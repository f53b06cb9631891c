#!/usr/bin/env bash
# Sets up whatever is missing and runs every test: unit, integration (real Redis, real HTTP on
# loopback) in one build, then the end-to-end suite in Debian's Chromium against the release build.
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
# below): each dependency is compiled once, with the features all of them need.
step "gateway core (store conformance on Redis and embedded, KIE client against kie-sim, parser properties), kie-sim, app (ssr), server (HTTP on loopback)"
bounded 40m cargo test -p gateway -p kie-sim -p app -p server --features app/ssr
step "deploy: alert rules (promtool check and unit tests) and the dashboard's queries"
bounded 5m scripts/check-deploy.sh
step "release build (server + WASM bundle) for the end-to-end suite"
# Built with a canary KIE key in its environment: the end-to-end suite scans the bundle for it,
# so a key compiled in (env!, option_env!, a build script) would be caught.
export LEAK_CANARY="kie-LEAKCANARY-5e1f0c9a7b3d2e4f6a8b"
KIE_API_KEY="$LEAK_CANARY" cargo leptos build --release --precompress
step "relay API: its OpenAPI description validated, and schemathesis against the relay on loopback"
bounded 10m scripts/check-relay-api.sh
step "end-to-end (Playwright + /usr/bin/chromium)"
(cd end2end && bounded 15m node --test tests/)
# Benchmarks are not run in full here, but each must still build and run: a few iterations
# each (BENCH_SMOKE=1), checking that it completes and its figures are sane. The in-process
# ones are built with the test profile (their figures are not the point here, and it reuses
# the test build); the wrk one uses the release binaries built above.
step "benchmarks: each one compiled and run briefly (BENCH_SMOKE=1)"
export BENCH_SMOKE=1
cargo bench --profile dev --no-run --benches -p gateway -p kie-sim -p server
# Every bench target the crates declare runs; a failure stops the script, so the count says
# how many ran to the end.
ran=0
for pkg in gateway kie-sim server; do
  for bench in $(sed -n '/^\[\[bench\]\]/,/^name/ s/^name = "\(.*\)"/\1/p' "$pkg/Cargo.toml"); do
    bounded 10m cargo bench --profile dev -q -p "$pkg" --bench "$bench"
    ran=$((ran + 1))
  done
done
bounded 15m scripts/bench-relay.sh
ran=$((ran + 1))
(cd end2end && bounded 10m node bench/load.mjs)
ran=$((ran + 1))
echo "benchmarks: $ran ran to the end"
step "done"
