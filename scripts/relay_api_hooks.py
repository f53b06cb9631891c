"""schemathesis hooks for scripts/check-relay-api.sh.

A callBackUrl is accepted when it is an absolute http(s) URL whose host resolves to public
addresses (or to one OUTBOUND_ALLOW lists). Whether a generated host resolves depends on the
network, not on the request's shape, so every generated callBackUrl is replaced with one this
run's console allows (RELAY_CALLBACK_URL, kie-sim on loopback): a schema-valid request is then
accepted for what it is. The relay's own checks of callback URLs are tested in
server/tests/hardening.rs and gateway's outbound tests.

A follow-up (Midjourney's upscale, vary, video extend; Veo's, Runway's and Suno's extend;
Suno's WAV, vocal separation, music video and timestamped lyrics; Suno's MIDI of a separation) acts on a task that succeeded: whether a
generated taskId names one is this run's state, not the request's shape. So its taskId is replaced with a real
parent made once through the relay (RELAY_BASE, RELAY_KEY), a video extend's index with 0,
the one video kie-sim makes, and Suno's audioId with that parent's first track (its taskId
with the parent, its model with the parent's); the relay's refusals of a wrong parent, index,
track or model are tested in server/tests/families.rs.

Veo's 1080p and 4K are asked for again until made: the first ask starts one and answers 422
"processing", as KIE does. So each is made once before the run asks (its parent and index 0,
the one video kie-sim makes) and every generated ask names that parent; the first ask's 422,
asks at once and refusals are tested in server/tests/families.rs.
"""
import json
import os
import time
import urllib.error
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
    "/kie/api/v1/veo/extend": "veo3",
    "/kie/api/v1/runway/extend": "runway",
    "/kie/api/v1/generate/extend": "suno",
    "/kie/api/v1/wav/generate": "suno",
    "/kie/api/v1/vocal-removal/generate": "suno",
    "/kie/api/v1/mp4/generate": "suno",
    "/kie/api/v1/generate/get-timestamped-lyrics": "suno",
    "/kie/api/v1/midi/generate": "stems",
}
# How each kind of parent is made and read: its create path, body and status path, and
# whether its status answer says it succeeded.
MAKE = {
    "mj_txt2img": ("/api/v1/mj/generate", {"taskType": "mj_txt2img"}, "/api/v1/mj/record-info", lambda d: d.get("successFlag") == 1),
    "mj_video": ("/api/v1/mj/generate", {"taskType": "mj_video", "fileUrls": ["https://example.com/frame.png"]}, "/api/v1/mj/record-info", lambda d: d.get("successFlag") == 1),
    "veo3": ("/api/v1/veo/generate", {"model": "veo3"}, "/api/v1/veo/record-info", lambda d: d.get("successFlag") == 1),
    "runway": ("/api/v1/runway/generate", {"duration": 5}, "/api/v1/runway/record-detail", lambda d: d.get("state") == "success"),
    "suno": ("/api/v1/generate", {"customMode": False, "instrumental": False, "model": "V4_5"}, "/api/v1/generate/record-info", lambda d: d.get("status") == "SUCCESS"),
    # A separation of the song's first track (MIDI acts on one); its body names the song.
    "stems": ("/api/v1/vocal-removal/generate", lambda: {"taskId": parent("suno"), "audioId": parent("suno") + "-0", "type": "split_stem"}, "/api/v1/vocal-removal/record-info", lambda d: d.get("successFlag") == "SUCCESS"),
}
PARENTS = {}
# Each upgrade path and its method.
UPGRADES = {"/kie/api/v1/veo/get-1080p-video": "GET", "/kie/api/v1/veo/get-4k-video": "POST"}
UPGRADED = set()


def relay(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    # A parent goes ahead of the key's own queued tasks (the run queues hundreds).
    headers = {"Authorization": "Bearer " + KEY, "Content-Type": "application/json", "X-Control-Room-Priority": "high"}
    req = urllib.request.Request(RELAY + path, data=data, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def parent(kind):
    """A task of this kind that succeeded, made once through the relay."""
    if kind not in PARENTS:
        create, body, status, done = MAKE[kind]
        body = body() if callable(body) else {**body, "prompt": "a parent for the follow-ups"}
        task = relay("POST", create, body)["data"]["taskId"]
        for _ in range(600):
            if done(relay("GET", status + "?taskId=" + task)["data"]):
                break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"the parent task {task} did not succeed in 5 minutes")
        PARENTS[kind] = task
    return PARENTS[kind]


def upgraded(path):
    """The upgrade at `path` of the Veo parent's video 0, made once (asked until it answers the file)."""
    task = parent("veo3")
    if path not in UPGRADED:
        ours = path.removeprefix("/kie")
        for _ in range(600):
            try:
                if UPGRADES[path] == "GET":
                    made = relay("GET", f"{ours}?taskId={task}&index=0")["data"].get("resultUrl")
                else:
                    # The first ask of a 4K answers 200 with no files yet.
                    made = relay("POST", ours, {"taskId": task, "index": 0})["data"].get("resultUrls")
                if made:
                    break
            except urllib.error.HTTPError as e:
                if e.code != 422:
                    raise
            time.sleep(0.5)
        else:
            raise RuntimeError(f"{path} of {task} was not made in 5 minutes")
        UPGRADED.add(path)
    return task


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    if isinstance(case.body, dict) and "callBackUrl" in case.body:
        case.body["callBackUrl"] = CALLBACK
    if isinstance(case.body, dict) and "fileUrl" in case.body:
        case.body["fileUrl"] = FILE_URL
    if case.path in UPGRADES:
        fields = case.query if UPGRADES[case.path] == "GET" else case.body
        if isinstance(fields, dict):
            fields["taskId"] = upgraded(case.path)
            if "index" in fields:
                fields["index"] = 0
    kind = FOLLOW_UPS.get(case.path)
    if kind == "suno" and isinstance(case.body, dict):
        # A track names its task: `<task>-<n>`; a taskId beside it names the same task.
        case.body["audioId"] = parent(kind) + "-0"
        if "taskId" in case.body:
            case.body["taskId"] = parent(kind)
        if "model" in case.body:
            case.body["model"] = "V4_5"
    elif kind and isinstance(case.body, dict):
        case.body["taskId"] = parent(kind)
        if kind == "mj_video" and "index" in case.body:
            case.body["index"] = 0
