#!/usr/bin/env bash
# Sets up whatever is missing, builds the Control Room (release) and runs it.
# Configuration comes from the environment (see .env.example); a .env file is read if present.
# Extra arguments go to the server, e.g. `scripts/run.sh --help`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh run
. scripts/env.sh
if [ -f .env ]; then
  set -a
  # shellcheck disable=SC1091
  . ./.env
  set +a
fi
cargo leptos build --release
export LEPTOS_SITE_ROOT="${LEPTOS_SITE_ROOT:-target/site}"
exec ./target/release/control-room "$@"
