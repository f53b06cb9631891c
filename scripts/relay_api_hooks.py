"""schemathesis hooks for scripts/check-relay-api.sh.

A callBackUrl is accepted when it is an absolute http(s) URL whose host resolves to public
addresses (or to one OUTBOUND_ALLOW lists). Whether a generated host resolves depends on the
network, not on the request's shape, so every generated callBackUrl is replaced with one this
run's console allows (RELAY_CALLBACK_URL, kie-sim on loopback): a schema-valid request is then
accepted for what it is. The relay's own checks of callback URLs are tested in
server/tests/hardening.rs and gateway's outbound tests.

A follow-up (Midjourney's upscale, vary, video extend) acts on a task that succeeded: whether
a generated taskId names one is this run's state, not the request's shape. So its taskId is
replaced with a real parent made once through the relay (RELAY_BASE, RELAY_KEY), and a video
extend's index with 0, the one video kie-sim makes (the relay's refusals of a wrong parent or
index are tested in server/tests/families.rs).
"""
import json
import os
import time
import urllib.request

import schemathesis

CALLBACK = os.environ["RELAY_CALLBACK_URL"]
# What KIE is asked to fetch on file-url-upload: a file kie-sim serves on loopback, for the
# same reason (the outbound policy's own checks are tested in server/tests/inputs.rs).
FILE_URL = os.environ["RELAY_FILE_URL"]



RELAY = os.environ["RELAY_BASE"]
KEY = os.environ["RELAY_KEY"]
# Each follow-up path and the kind of task it acts on.
FOLLOW_UPS = {
    "/kie/api/v1/mj/generateUpscale": "mj_txt2img",
    "/kie/api/v1/mj/generateVary": "mj_txt2img",
    "/kie/api/v1/mj/generateVideoExtend": "mj_video",
}
PARENTS = {}


def relay(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(RELAY + path, data=data, method=method, headers={"Authorization": "Bearer " + KEY, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def parent(task_type):
    """A Midjourney task of task_type that succeeded, made once through the relay."""
    if task_type not in PARENTS:
        body = {"taskType": task_type, "prompt": "a parent for the follow-ups"}
        if task_type != "mj_txt2img":
            body["fileUrls"] = ["https://example.com/frame.png"]
        task = relay("POST", "/api/v1/mj/generate", body)["data"]["taskId"]
        for _ in range(240):
            if relay("GET", "/api/v1/mj/record-info?taskId=" + task)["data"].get("successFlag") == 1:
                break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"the parent task {task} did not succeed in 2 minutes")
        PARENTS[task_type] = task
    return PARENTS[task_type]


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    if isinstance(case.body, dict) and "callBackUrl" in case.body:
        case.body["callBackUrl"] = CALLBACK
    if isinstance(case.body, dict) and "fileUrl" in case.body:
        case.body["fileUrl"] = FILE_URL
    kind = FOLLOW_UPS.get(case.path)
    if kind and isinstance(case.body, dict):
        case.body["taskId"] = parent(kind)
        if kind == "mj_video" and "index" in case.body:
            case.body["index"] = 0
