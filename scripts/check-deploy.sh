#!/usr/bin/env bash
# Checks what deploy/ gives operators: Prometheus' configuration and alert rules parse, the
# rules fire as their unit tests say
# (promtool), and every query of the Grafana dashboard is valid PromQL (each is checked by
# promtool as a recording rule). Which metric names they read is checked against a live
# /metrics by server/tests/metrics.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
command -v promtool >/dev/null || { echo "promtool is missing: scripts/setup.sh test unpacks it" >&2; exit 1; }
promtool check config deploy/prometheus/prometheus.yml   # also checks alerts.yml
(cd deploy/prometheus && promtool test rules alerts.test.yml)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 - deploy/grafana/control-room.json >"$work/dashboard-rules.yml" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
exprs = [t["expr"] for p in d["panels"] for t in p.get("targets", [])]
assert exprs, "the dashboard has no queries"
print("groups:\n  - name: dashboard\n    rules:")
for i, e in enumerate(exprs):
    print(f"      - record: dashboard:query_{i}\n        expr: {json.dumps(e)}")
PY
promtool check rules "$work/dashboard-rules.yml" >/dev/null
echo "deploy: alert rules and $(grep -c 'record:' "$work/dashboard-rules.yml") dashboard queries check out"
