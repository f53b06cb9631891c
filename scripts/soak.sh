#!/usr/bin/env bash
# The soak (on demand, not in CI): two Control Rooms on one Redis in front of kie-sim, fed at
# KIE's full rate (2 new tasks a second, alternately to each instance) for SOAK_MINUTES,
# with one instance restarted (SIGTERM, then started again on its port) every
# RESTART_MINUTES. Every SAMPLE_SECONDS it writes each instance's resident memory and open
# file descriptors (its connections among them), Redis's memory and the tasks on record; at
# the end it waits for the queue to drain and checks that every task the relay accepted ended
# in success exactly once (nothing lost, nothing doubled). Flat is the goal. Prints Markdown
# for docs/benchmarks.md. Everything runs on this machine's loopback.
#
#   scripts/soak.sh                                   # 30 minutes, a restart every 5
#   SOAK_MINUTES=3 RESTART_MINUTES=1 scripts/soak.sh  # a short look
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

minutes="${SOAK_MINUTES:-30}"
restart_every="${RESTART_MINUTES:-5}"
sample_secs="${SAMPLE_SECONDS:-30}"

. scripts/loopback.sh
command -v redis-server >/dev/null || die "redis-server is missing (scripts/setup.sh test installs it)"
command -v redis-cli >/dev/null || die "redis-cli is missing (scripts/setup.sh test installs it)"

build_release

start_redis

# kie-sim as KIE is: 20 new tasks per 10 s, results after its usual schedule, callbacks.
port="$(free_port)"
sim_key="soak-upstream-key"
./target/release/kie-sim --addr "127.0.0.1:$port" --key "$sim_key" --balance 1e12 >"$work/sim.log" 2>&1 &
pids+=($!)
wait_port "$port"
sim="http://127.0.0.1:$port"

env_common=(REDIS_URL="redis://127.0.0.1:$redis_port/" REDIS_PREFIX="soak:" KIE_API_KEY="$sim_key" KIE_BASE_URL="$sim" METRICS_TOKEN=open RUST_LOG=warn OUTBOUND_ALLOW=127.0.0.1)
relay_key="$(env "${env_common[@]}" ./target/release/control-room key create --project soak --name soak | awk '/^key:/ {print $2}')"
[ -n "$relay_key" ] || die "could not create a relay key"

ports=("$(free_port)" "$(free_port)")
cr_pids=(0 0)
start_instance() { # n
  local p="${ports[$1]}"
  env "${env_common[@]}" PUBLIC_URL="http://127.0.0.1:$p" LEPTOS_SITE_ADDR="127.0.0.1:$p" ./target/release/control-room >>"$work/control-room-$1.log" 2>&1 &
  cr_pids[$1]=$!
  pids+=("${cr_pids[$1]}")
  wait_port "$p"
}
start_instance 0
start_instance 1

# The load: one createTask every 0.5 s (KIE's 20 per 10 s), alternately to each instance;
# each accepted task id is kept. A refusal (an instance restarting) is counted, not retried.
body='{"model":"google/imagen4-fast","input":{"prompt":"a lighthouse at dusk"}}'
: >"$work/accepted"
: >"$work/refused"
load() {
  local n=0 end=$((SECONDS + minutes * 60)) started_ms
  started_ms=$(date +%s%3N)
  while [ "$SECONDS" -lt "$end" ]; do
    local p="${ports[$((n % 2))]}"
    local answer id
    answer="$(curl -sS -m 5 -H "Authorization: Bearer $relay_key" -H 'content-type: application/json' -d "$body" "http://127.0.0.1:$p/kie/api/v1/jobs/createTask" 2>/dev/null || true)"
    # KIE's envelope: {"code":200,"msg":"success","data":{"taskId":"..."}}.
    id="$(printf '%s' "$answer" | grep -o '"taskId":"[^"]*"' | head -1 | cut -d'"' -f4 || true)"
    if [ -n "$id" ] && printf '%s' "$answer" | grep -q '"code":200'; then echo "$id" >>"$work/accepted"; else echo "$n" >>"$work/refused"; fi
    n=$((n + 1))
    # Paced to KIE's rate: task n leaves at start + n × 500 ms, whatever each call took.
    local wait_ms=$((started_ms + n * 500 - $(date +%s%3N)))
    if [ "$wait_ms" -gt 0 ]; then sleep "$(awk -v ms="$wait_ms" 'BEGIN {print ms / 1000}')"; fi
  done
}
load &
load_pid=$!
pids+=("$load_pid")

kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
fds() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
redis_mib() { redis-cli -p "$redis_port" INFO memory | awk -F: '/^used_memory:/ {printf "%.1f", $2/1048576}'; }
on_record() { curl -fsS -m 5 "http://127.0.0.1:${ports[0]}/metrics" 2>/dev/null | awk '/^control_room_tasks\{/ {s += $2} END {print s + 0}'; }

say "soak: $minutes min, a restart every $restart_every min, a sample every $sample_secs s"
rows=()
started=$SECONDS
next_restart=$((restart_every * 60))
restarts=0
while kill -0 "$load_pid" 2>/dev/null; do
  sleep "$sample_secs"
  t=$((SECONDS - started))
  if [ "$t" -ge "$next_restart" ]; then
    n=$((restarts % 2))
    kill -TERM "${cr_pids[$n]}" 2>/dev/null || true
    wait "${cr_pids[$n]}" 2>/dev/null || true
    start_instance "$n"
    restarts=$((restarts + 1))
    next_restart=$((next_restart + restart_every * 60))
  fi
  row="| $((t / 60)):$(printf '%02d' $((t % 60))) | $(( $(kib "${cr_pids[0]}") / 1024 )) | $(fds "${cr_pids[0]}") | $(( $(kib "${cr_pids[1]}") / 1024 )) | $(fds "${cr_pids[1]}") | $(redis_mib) | $(on_record) | $(wc -l <"$work/accepted") |"
  rows+=("$row")
  say "$row"
done

# Drain: every accepted task must end in success, once.
say "load over; waiting for the queue to drain"
accepted=$(wc -l <"$work/accepted")
succeeded=0
for _ in $(seq 1 600); do
  succeeded="$(curl -fsS -m 5 "http://127.0.0.1:${ports[0]}/metrics" | awk '/^control_room_tasks\{state="success"\}/ {print $2 + 0}')"
  [ "${succeeded:-0}" -ge "$accepted" ] && break
  sleep 1
done
dupes=$(sort "$work/accepted" | uniq -d | wc -l)

echo
echo "## Soak: two instances, KIE's full rate, a restart every $restart_every min ($(date -u +%Y-%m-%d))"
echo
echo "- **Command:** \`SOAK_MINUTES=$minutes RESTART_MINUTES=$restart_every scripts/soak.sh\` (release build, Redis with AOF on, kie-sim at 20 tasks / 10 s, all on loopback)."
echo "- **Machine:** $(nproc) vCPU, $(free -g | awk '/^Mem:/ {print $2}') GiB, $(. /etc/os-release && echo "$PRETTY_NAME"), $(rustc --version | cut -d' ' -f1-2)."
echo "- **Outcome:** $accepted tasks accepted, $(wc -l <"$work/refused") refused while an instance restarted, $succeeded ended in success, $dupes task ids given twice; $restarts restarts."
echo
echo "| time | A RSS MiB | A fds | B RSS MiB | B fds | Redis MiB | tasks on record | accepted |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
[ "$succeeded" -eq "$accepted" ] && [ "$dupes" -eq 0 ] || die "not every accepted task ended in success exactly once ($succeeded of $accepted, $dupes doubled)"
