#!/usr/bin/env bash
# The relay's OpenAPI description, checked two ways: it is a valid OpenAPI 3.1 document
# (openapi-spec-validator), and the relay answers as it says (schemathesis, a bounded number of
# generated requests per operation against a control-room and kie-sim on loopback): no 5xx,
# every status, content type and body as described — KIE's envelope throughout — and every
# request the description says is valid accepted (positive_data_acceptance: the schema is as
# strict as the relay's checks; the Market jobs API's body is written per catalog model at
# runtime, and each create links to its status call, so the stateful phase reads real tasks).
#
#   scripts/check-relay-api.sh                  # 40 examples per operation
#   EXAMPLES=200 scripts/check-relay-api.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
. scripts/loopback.sh
venv=tools/venv
[ -x "$venv/bin/schemathesis" ] || die "schemathesis is missing: scripts/setup.sh test installs it in $venv"

"$venv/bin/openapi-spec-validator" server/src/openapi.json
build_release
start_sim
# A per-job cap, so models without a known price (4o Image, Flux Kontext, Veo fast) run, and
# a total far above what the run spends. Relay callbacks go to kie-sim on loopback, which
# OUTBOUND_ALLOW lets through (see scripts/relay_api_hooks.py).
export OUTBOUND_ALLOW="127.0.0.1:${sim##*:}"
export RELAY_CALLBACK_URL="$sim/relay-callback"
export RELAY_FILE_URL="$sim/_sim/settings"
COST_RULE_USD=1000000 start_console embedded
# Follow-ups need a parent task (see scripts/relay_api_hooks.py), made through the relay.
export RELAY_BASE="http://127.0.0.1:$cr_port/kie" RELAY_KEY="$relay_key"
say "schemathesis against http://127.0.0.1:$cr_port/kie/openapi.json (${EXAMPLES:-40} examples per operation)"
SCHEMATHESIS_HOOKS=relay_api_hooks PYTHONPATH=scripts "$venv/bin/schemathesis" run "http://127.0.0.1:$cr_port/kie/openapi.json" \
  -H "Authorization: Bearer $relay_key" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,positive_data_acceptance \
  --max-examples "${EXAMPLES:-40}" --seed 20261201 --workers 1 \
  || { tail -20 "$work/control-room-embedded.log" >&2; die "the relay does not answer as its description says"; }
