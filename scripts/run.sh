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
cargo leptos build --release --precompress
export LEPTOS_SITE_ROOT="${LEPTOS_SITE_ROOT:-target/site}"
# Nobody can sign in on a new store: ask for the first admin here (at a terminal), or say how.
users="$(./target/release/control-room user list)"
if grep -q '^No users yet' <<<"$users"; then
  if [ -t 0 ]; then
    echo "No one can sign in yet. Create the first admin (the password is not echoed)."
    read -rp "Admin email: " admin_email
    read -rsp "Password (10+ characters): " admin_password; echo
    printf '%s\n' "$admin_password" | ./target/release/control-room user add "$admin_email" --role admin
    unset admin_password
  else
    echo "No one can sign in yet: run  control-room user add EMAIL --role admin  (password on standard input)." >&2
  fi
fi
exec ./target/release/control-room "$@"
