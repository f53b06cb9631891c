# Sourced by the scripts that start the console's processes on this machine's loopback
# (bench-relay.sh, check-relay-api.sh): ports, waiting for a listener, stopping what started.
say() { printf '\033[1;36m[%s]\033[0m %s\n' "$(basename "$0" .sh)" "$*" >&2; }
die() { printf '\033[1;31m[%s]\033[0m %s\n' "$(basename "$0" .sh)" "$*" >&2; exit 1; }

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() { # port
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  die "nothing listens on 127.0.0.1:$1"
}

# The binaries run: the release build's by default. The test command points
# CONTROL_ROOM_BIN_DIR at the binaries its one test build already made (the same code, compiled
# once), and nothing is built here then.
bin_dir="${CONTROL_ROOM_BIN_DIR:-target/release}"

# The server exactly as cargo-leptos builds it, and kie-sim. Its features and LEPTOS_OUTPUT_NAME
# (read at compile time: it names the WASM file the page loads) must be cargo-leptos's, or this
# build would replace the binary `cargo leptos build` made with one whose page cannot hydrate.
build_release() {
  if [ -n "${CONTROL_ROOM_BIN_DIR:-}" ]; then
    [ -x "$bin_dir/control-room" ] && [ -x "$bin_dir/kie-sim" ] || die "CONTROL_ROOM_BIN_DIR=$bin_dir has no control-room and kie-sim"
    return
  fi
  say "building control-room and kie-sim (release)"
  LEPTOS_OUTPUT_NAME=control-room cargo build --release -q -p server --bin control-room --no-default-features --features ssr
  cargo build --release -q -p kie-sim --bin kie-sim
}

# A private redis-server run as production should (append-only file on); sets redis_port.
start_redis() {
  redis_port="$(free_port)"
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly yes --appendfsync everysec --dir "$work" >"$work/redis.log" 2>&1 &
  pids+=($!)
  wait_port "$redis_port"
}

# A replica of that redis-server (append-only file on too), in sync before this returns: the
# `redis+replica` store's writes that decide money and sends wait for it (WAIT).
start_replica() {
  local port
  port="$(free_port)"
  mkdir -p "$work/replica"
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly yes --appendfsync everysec --dir "$work/replica" --replicaof 127.0.0.1 "$redis_port" >"$work/replica.log" 2>&1 &
  pids+=($!)
  wait_port "$port"
  for _ in $(seq 1 200); do
    redis-cli -p "$port" info replication | grep -q 'master_link_status:up' && return 0
    sleep 0.1
  done
  die "the replica on port $port did not sync with the primary"
}

# kie-sim with its limits lifted (and any further flags given); sets sim (its base URL) and
# sim_key.
start_sim() {
  local port
  port="$(free_port)"
  sim_key="loopback-upstream-key"
  "$bin_dir"/kie-sim --addr "127.0.0.1:$port" --key "$sim_key" --balance 1e12 --rate-limit 4000000000 --record-info-per-sec 4000000000 --chat-requests-per-min 4000000000 --chat-tokens-per-min 4000000000 "$@" >"$work/sim.log" 2>&1 &
  pids+=($!)
  wait_port "$port"
  sim="http://127.0.0.1:$port"
}

# A control-room on `store` (redis: on $redis_port; redis+replica: the same with a replica
# started beside it that every money and send write waits for; embedded: its own DATA_DIR) against the
# kie-sim, with a relay key for project `bench` made first (the embedded store is one
# process's at a time); sets cr_port, relay_key and cr_pid.
start_console() { # store
  # A queue quota far above what the benchmarks queue from one key: the quota's reservation is
  # on the path measured, and no answer measured is a 429.
  # The language models' rules are kept (their claims are on the path measured), far above
  # what a run sends.
  local env=(DATA_DIR="$work/data-$1" KIE_API_KEY="$sim_key" KIE_BASE_URL="$sim" RATE_GUARD="100000/10s" QUEUE_MAX_PER_OWNER=1000000 RUST_LOG=warn
    RATE_GUARD_CHAT="concurrent:100000,requests:1000000000/1m,tokens:1000000000/1m")
  cr_port="$(free_port)"
  case "$1" in
    redis) env+=(REDIS_URL="redis://127.0.0.1:$redis_port/" REDIS_PREFIX="bench:") ;;
    redis+replica)
      [ -n "${replica_started:-}" ] || { start_replica; replica_started=1; }
      env+=(REDIS_URL="redis://127.0.0.1:$redis_port/" REDIS_PREFIX="bench-replica:" REDIS_MIN_REPLICAS_ACKS=1) ;;
  esac
  relay_key="$(env "${env[@]}" "$bin_dir"/control-room key create --project bench --name loopback | awk '/^key:/ {print $2}')"
  [ -n "$relay_key" ] || die "could not create a relay key ($1 store)"
  # With COST_RULE_USD set, a total cap on project `bench` (its hold is then on the path) and
  # a per-job cap of $1 (what a language model without a known price holds and is sent under).
  if [ -n "${COST_RULE_USD:-}" ]; then
    env "${env[@]}" "$bin_dir"/control-room budget set --project bench --per-job 1 --total "$COST_RULE_USD" >/dev/null || die "could not set the cost rule ($1 store)"
  fi
  env "${env[@]}" LEPTOS_SITE_ADDR="127.0.0.1:$cr_port" "$bin_dir"/control-room >"$work/control-room-$1.log" 2>&1 &
  cr_pid=$!
  pids+=("$cr_pid")
  wait_port "$cr_port"
}
