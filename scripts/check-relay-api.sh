#!/usr/bin/env bash
# The relay's OpenAPI description, checked two ways: it is a valid OpenAPI 3.1 document
# (openapi-spec-validator), and the relay answers as it says (schemathesis, a bounded number of
# generated requests per operation against a control-room and kie-sim on loopback): no 5xx,
# every status, content type and body as described — KIE's envelope throughout.
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
start_console embedded
say "schemathesis against http://127.0.0.1:$cr_port/kie/openapi.json (${EXAMPLES:-40} examples per operation)"
"$venv/bin/schemathesis" run "http://127.0.0.1:$cr_port/kie/openapi.json" \
  -H "Authorization: Bearer $relay_key" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --max-examples "${EXAMPLES:-40}" --seed 20261201 --workers 1 \
  || { tail -20 "$work/control-room-embedded.log" >&2; die "the relay does not answer as its description says"; }
