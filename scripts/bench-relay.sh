#!/usr/bin/env bash
# The relay's overhead, measured side by side by a load generator in its own process: wrk
# (Debian's, installed when missing) against kie-sim directly and through the Control Room's
# relay, 1 and 32 connections, createTask, recordInfo (of a task in flight and of one that
# has ended) and a plain chat completion, on each store; and a streamed chat call's first
# byte, one client (scripts/first-byte.py) that reads each answer to its end, and one that
# hangs up at the first event. Everything runs on this machine's
# loopback: a private redis-server (append-only file on, as production), kie-sim with its limits lifted, a
# control-room with RATE_GUARD=100000/10s and a total cost rule on that Redis, then one on the
# embedded store.
#
#   scripts/bench-relay.sh            # 8 s per row; prints a Markdown table for docs/benchmarks.md
#   SECONDS_PER_ROW=3 scripts/bench-relay.sh
#   BENCH_SMOKE=1 scripts/bench-relay.sh   # 1 s per row: does it run, are the figures sane?
#   BENCH_STORES=redis BENCH_CALLS=chat scripts/bench-relay.sh   # only the rows whose store
#                                     # is listed and whose call's name contains a listed word
#   BENCH_STORES="redis redis+replica" BENCH_CALLS=createTask scripts/bench-relay.sh
#                                     # what waiting for a replica (WAIT) adds to a create
#                                     # (list redis first: once the replica runs, it waits too)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

row_secs="${SECONDS_PER_ROW:-8}"
if [ -n "${BENCH_SMOKE:-}" ] && [ "${BENCH_SMOKE}" != 0 ]; then row_secs=1; fi

. scripts/loopback.sh
# A studio runs with caps: a total cost rule on the bench project, far above what a run spends.
export COST_RULE_USD=10000000

if ! command -v wrk >/dev/null; then
  command -v apt-get >/dev/null || die "wrk is missing; install it with your package manager"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  say "installing wrk (Debian)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wrk >/dev/null
fi
command -v redis-server >/dev/null || die "redis-server is missing (scripts/setup.sh test installs it)"

build_release

start_redis

# Streamed answers a chunk a millisecond: a whole answer in ~15 ms, so a row reads hundreds.
start_sim --chat-chunk-ms 1

body='{"model":"google/imagen4-fast","input":{"prompt":"a lighthouse at dusk"}}'
task_id() { # base key
  curl -fsS -H "Authorization: Bearer $2" -H 'content-type: application/json' -d "$body" "$1/api/v1/jobs/createTask" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["taskId"])'
}
state_of() { # base key task
  curl -fsS -H "Authorization: Bearer $2" "$1/api/v1/jobs/recordInfo?taskId=$3" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["state"])'
}
# A task that has ended (its record settled), for the "ended" rows.
ended_task() { # base key
  local id
  id="$(task_id "$1" "$2")"
  for _ in $(seq 1 300); do
    [ "$(state_of "$1" "$2" "$id")" = success ] && { echo "$id"; return; }
    sleep 0.2
  done
  die "task $id did not end within 60 s at $1"
}

cat >"$work/create.lua" <<EOF
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
EOF
# A plain chat completion: the relay admits it (catalog, the answer's limit, the rate guard's
# chat rules, the cost rules, the write-ahead record) in one store step and ends it after the
# answer is handed over.
chat_model="gemini-3-flash"
cat >"$work/chat.lua" <<EOF
wrk.method = "POST"
wrk.body = '{"messages":[{"role":"user","content":"a lighthouse at dusk, slow push in"}],"max_tokens":64}'
wrk.headers["Content-Type"] = "application/json"
EOF

# µs from wrk's "50%  103.00us" style figures.
to_us() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000; else if (v ~ /[0-9]s$/) print n * 1000000; else print n }'; }
run() { # connections url key [script]
  local threads=1
  [ "$1" -gt 1 ] && threads=2
  local args=(-t "$threads" -c "$1" -d "${row_secs}s" --latency -H "Authorization: Bearer $3")
  [ -n "${4:-}" ] && args+=(-s "$4")
  local out
  out="$(wrk "${args[@]}" "$2")"
  grep -q 'Non-2xx' <<<"$out" && die "non-2xx answers from $2: $(grep 'Non-2xx' <<<"$out")"
  local p50 p99 rps
  p50="$(awk '$1 == "50%" {print $2}' <<<"$out")"
  p99="$(awk '$1 == "99%" {print $2}' <<<"$out")"
  rps="$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' <<<"$out")"
  echo "$(to_us "$p50") $(to_us "$p99") $rps"
}

say "measuring: ${row_secs} s per row, wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}')"
echo "| store | call | connections | direct p50 µs | relay p50 µs | added p50 µs | direct p99 µs | relay p99 µs | added p99 µs | direct req/s | relay req/s |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for store in ${BENCH_STORES:-redis embedded}; do
  start_console "$store"
  relay="http://127.0.0.1:$cr_port/kie"
  direct_ended="$(ended_task "$sim" "$sim_key")"
  relay_ended="$(ended_task "$relay" "$relay_key")"
  # Creates last: the tasks they queue keep the dispatcher, the poller and the folder busy
  # long after their rows, which would weigh on any row measured after them.
  for call in "chat (plain)" "chat (stream) first byte" "chat (stream) first byte, client leaves" "recordInfo (running)" "recordInfo (ended)" createTask; do
    if [ -n "${BENCH_CALLS:-}" ]; then
      wanted=""
      for w in $BENCH_CALLS; do [[ "$call" == *"$w"* ]] && wanted=1; done
      [ -n "$wanted" ] || continue
    fi
    for conns in 1 32; do
      case "$call" in
        "chat (stream) first byte"*)
          # One client (scripts/first-byte.py): the same way direct and through the relay;
          # it reads each answer to its end, or hangs up at the first event.
          [ "$conns" -eq 1 ] || continue
          mode=read; [[ "$call" == *leaves ]] && mode=leave
          read -r dp50 dp99 drps <<<"$(python3 scripts/first-byte.py "$sim/$chat_model/v1/chat/completions" "$sim_key" "$row_secs" "$mode")"
          read -r rp50 rp99 rrps <<<"$(python3 scripts/first-byte.py "$relay/$chat_model/v1/chat/completions" "$relay_key" "$row_secs" "$mode")" ;;
        "chat (plain)")
          read -r dp50 dp99 drps <<<"$(run "$conns" "$sim/$chat_model/v1/chat/completions" "$sim_key" "$work/chat.lua")"
          read -r rp50 rp99 rrps <<<"$(run "$conns" "$relay/$chat_model/v1/chat/completions" "$relay_key" "$work/chat.lua")" ;;
        createTask)
          read -r dp50 dp99 drps <<<"$(run "$conns" "$sim/api/v1/jobs/createTask" "$sim_key" "$work/create.lua")"
          read -r rp50 rp99 rrps <<<"$(run "$conns" "$relay/api/v1/jobs/createTask" "$relay_key" "$work/create.lua")" ;;
        "recordInfo (running)")
          # Fresh tasks: kie-sim's schedule (9 s) outlasts the row, so both stay in flight.
          direct_task="$(task_id "$sim" "$sim_key")"
          read -r dp50 dp99 drps <<<"$(run "$conns" "$sim/api/v1/jobs/recordInfo?taskId=$direct_task" "$sim_key")"
          relay_task="$(task_id "$relay" "$relay_key")"
          read -r rp50 rp99 rrps <<<"$(run "$conns" "$relay/api/v1/jobs/recordInfo?taskId=$relay_task" "$relay_key")"
          [ "$(state_of "$relay" "$relay_key" "$relay_task")" != success ] || say "note: the running task ended during its row" ;;
        *)
          read -r dp50 dp99 drps <<<"$(run "$conns" "$sim/api/v1/jobs/recordInfo?taskId=$direct_ended" "$sim_key")"
          read -r rp50 rp99 rrps <<<"$(run "$conns" "$relay/api/v1/jobs/recordInfo?taskId=$relay_ended" "$relay_key")" ;;
      esac
      awk -v s="$store" -v c="$call" -v n="$conns" -v a="$dp50" -v b="$rp50" -v d="$dp99" -v e="$rp99" -v f="$drps" -v g="$rrps" \
        'BEGIN { if (a <= 0 || b <= 0 || f <= 0 || g <= 0) exit 1;
                 printf "| %s | %s | %d | %.0f | %.0f | %+.0f | %.0f | %.0f | %+.0f | %d | %d |\n", s, c, n, a, b, b - a, d, e, e - d, f, g }' \
        || die "$store $call x$conns: no figures"
    done
  done
  kill "$cr_pid"; wait "$cr_pid" 2>/dev/null || true
done
say "machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB; $(date -u +%Y-%m-%d)"
