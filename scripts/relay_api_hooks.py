"""schemathesis hooks for scripts/check-relay-api.sh.

A callBackUrl is accepted when it is an absolute http(s) URL whose host resolves to public
addresses (or to one OUTBOUND_ALLOW lists). Whether a generated host resolves depends on the
network, not on the request's shape, so every generated callBackUrl is replaced with one this
run's console allows (RELAY_CALLBACK_URL, kie-sim on loopback): a schema-valid request is then
accepted for what it is. The relay's own checks of callback URLs are tested in
server/tests/hardening.rs and gateway's outbound tests.
"""
import os

import schemathesis

CALLBACK = os.environ["RELAY_CALLBACK_URL"]
# What KIE is asked to fetch on file-url-upload: a file kie-sim serves on loopback, for the
# same reason (the outbound policy's own checks are tested in server/tests/inputs.rs).
FILE_URL = os.environ["RELAY_FILE_URL"]


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    if isinstance(case.body, dict) and "callBackUrl" in case.body:
        case.body["callBackUrl"] = CALLBACK
    if isinstance(case.body, dict) and "fileUrl" in case.body:
        case.body["fileUrl"] = FILE_URL
