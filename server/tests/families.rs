//! KIE's model-specific families through the relay and the lifecycle, against kie-sim over
//! real HTTP: a third-party-shaped client of each family at KIE's own paths under `/kie`,
//! answered in the family's own shape with the Control Room's task id, called back in the
//! family's shape, results in the Library; what the family refuses is refused here (422) and
//! never sent; a model with no known price needs a per-job cap; a mixed burst stays inside
//! KIE's one account window; callbacks dropped, duplicated and forged resolve once.

mod support;

use futures::FutureExt;

use serde_json::{Value, json};
use std::time::Duration;
use support::*;

const HMAC: &str = "family-hook-key";

fn fast() -> kie_sim::Settings {
    kie_sim::Settings { schedule: kie_sim::Schedule { waiting_ms: 100, queuing_ms: 100, generating_ms: 200 }, ..Default::default() }
}

struct Harness {
    s: Running,
    sim: kie_sim::Sim,
    store: std::sync::Arc<dyn gateway::store::Store>,
    key: String,
    webhook_secret: String,
}

async fn harness(label: &str, library_on: bool) -> Harness {
    let (sim_base, sim) = start_sim_with(fast(), KEY, 100_000.0, Some(HMAC)).await;
    let store_cfg = redis_store(&format!("{}:", testkit::unique(label)));
    let (listener, base) = bind().await;
    let mut cfg = config(store_cfg.clone(), Some(KEY));
    cfg.kie_base_url = sim_base.parse().unwrap();
    cfg.public_url = Some(base.parse().unwrap());
    cfg.webhook_hmac_key = Some(gateway::Secret::new(HMAC));
    if library_on {
        cfg.library = Some(library(label));
    }
    let s = start_on(listener, cfg).await;
    let store = server::open_store(&store_cfg).await.unwrap();
    let key = gateway::team::relay_keys::create(store.as_ref(), &gateway::team::accounts::Actor::cli(), "trailer", "family client").await.unwrap();
    Harness { s, sim, store, key: key.text.expose().to_string(), webhook_secret: key.key.webhook_secret.clone() }
}

/// A family as its own client sees it: create path, body, status path, and where its
/// finished answer keeps the result URLs.
struct Client {
    name: &'static str,
    create: &'static str,
    status: &'static str,
    body: Value,
    done: fn(&Value) -> bool,
    urls: fn(&Value) -> Vec<String>,
    callback_urls: fn(&Value) -> Vec<String>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|u| u.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

fn clients() -> Vec<Client> {
    vec![
        Client {
            name: "veo",
            create: "/kie/api/v1/veo/generate",
            status: "/kie/api/v1/veo/record-info",
            body: json!({"prompt": "a lighthouse at dusk", "model": "veo3", "aspectRatio": "16:9"}),
            done: |d| d["successFlag"] == 1,
            urls: |d| strings(&d["response"]["resultUrls"]),
            callback_urls: |d| strings(&d["info"]["resultUrls"]),
        },
        Client {
            name: "suno",
            create: "/kie/api/v1/generate",
            status: "/kie/api/v1/generate/record-info",
            body: json!({"prompt": "a calm ambient bed", "customMode": false, "instrumental": true, "model": "V4"}),
            done: |d| d["status"] == "SUCCESS",
            urls: |d| d["response"]["sunoData"].as_array().map(|a| a.iter().filter_map(|t| t["audioUrl"].as_str().map(str::to_string)).collect()).unwrap_or_default(),
            callback_urls: |d| d["data"].as_array().map(|a| a.iter().filter_map(|t| t["audio_url"].as_str().map(str::to_string)).collect()).unwrap_or_default(),
        },
        Client {
            name: "runway",
            create: "/kie/api/v1/runway/generate",
            status: "/kie/api/v1/runway/record-detail",
            body: json!({"prompt": "harbour b-roll", "duration": 5, "quality": "720p", "aspectRatio": "16:9"}),
            done: |d| d["state"] == "success",
            urls: |d| d["videoInfo"]["videoUrl"].as_str().map(str::to_string).into_iter().collect(),
            callback_urls: |d| d["video_url"].as_str().map(str::to_string).into_iter().collect(),
        },
        Client {
            name: "gpt4o_image",
            create: "/kie/api/v1/gpt4o-image/generate",
            status: "/kie/api/v1/gpt4o-image/record-info",
            body: json!({"prompt": "a festival poster", "size": "2:3", "nVariants": 2}),
            done: |d| d["status"] == "SUCCESS" && d["successFlag"] == 1,
            urls: |d| strings(&d["response"]["resultUrls"]),
            callback_urls: |d| strings(&d["info"]["result_urls"]),
        },
        Client {
            name: "flux_kontext",
            create: "/kie/api/v1/flux/kontext/generate",
            status: "/kie/api/v1/flux/kontext/record-info",
            body: json!({"prompt": "make it night", "model": "flux-kontext-max", "aspectRatio": "16:9"}),
            done: |d| d["successFlag"] == 1,
            urls: |d| d["response"]["resultImageUrl"].as_str().map(str::to_string).into_iter().collect(),
            callback_urls: |d| d["info"]["resultImageUrl"].as_str().map(str::to_string).into_iter().collect(),
        },
        Client {
            name: "midjourney",
            create: "/kie/api/v1/mj/generate",
            status: "/kie/api/v1/mj/record-info",
            body: json!({"taskType": "mj_txt2img", "prompt": "a harbour at night, cinematic", "aspectRatio": "16:9", "version": "7", "speed": "fast"}),
            done: |d| d["successFlag"] == 1,
            urls: |d| d["resultInfoJson"]["resultUrls"].as_array().map(|a| a.iter().filter_map(|u| u["resultUrl"].as_str().map(str::to_string)).collect()).unwrap_or_default(),
            callback_urls: |d| strings(&d["resultUrls"]),
        },
        Client {
            name: "aleph",
            create: "/kie/api/v1/aleph/generate",
            status: "/kie/api/v1/aleph/record-info",
            body: json!({"prompt": "relight it as a winter night", "videoUrl": "https://example.com/harbour.mp4", "aspectRatio": "16:9", "uploadCn": false}),
            done: |d| d["successFlag"] == 1,
            urls: |d| d["response"]["resultVideoUrl"].as_str().map(str::to_string).into_iter().collect(),
            callback_urls: |d| d["result_video_url"].as_str().map(str::to_string).into_iter().collect(),
        },
        Client {
            name: "luma",
            create: "/kie/api/v1/modify/generate",
            status: "/kie/api/v1/modify/record-info",
            body: json!({"prompt": "the harbour at night, neon", "videoUrl": "https://example.com/harbour.mp4", "watermark": ""}),
            done: |d| d["successFlag"] == 1,
            urls: |d| strings(&d["response"]["resultUrls"]),
            callback_urls: |d| strings(&d["resultUrls"]),
        },
    ]
}

/// A relay POST of `body` to `path` with `key`: its status and answer.
async fn post_as(h: &Harness, path: &str, key: String, body: Value) -> (u16, Value) {
    let r = http().post(format!("{}{path}", h.s.base)).bearer_auth(key).json(&body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json::<Value>().await.unwrap_or(Value::Null))
}

/// A per-job cap on the project the key works in, so models with no known price run.
async fn per_job_cap(h: &Harness, credits: &str) {
    let (code, body) = server_fn(&h.s.base, "set_cost_rule", &form(&[("project", "trailer"), ("per_job", credits)])).await;
    assert_eq!(code, 200, "{body}");
}

/// A task created through the relay at `path` and run to success: its id.
async fn made(h: &Harness, path: &str, body: Value) -> String {
    let (code, made) = post_as(h, path, h.key.clone(), body).await;
    assert_eq!(code, 200, "{path}: {made}");
    let id = made["data"]["taskId"].as_str().unwrap().to_string();
    wait_until(&format!("{path} done"), 30, || async { h.store.task_get(&id).await.unwrap().is_some_and(|t| t.state == gateway::TaskState::Success) }).await;
    id
}

async fn status_of(h: &Harness, path: &str, id: &str) -> (u16, Value) {
    let r = http().get(format!("{}{path}", h.s.base)).query(&[("taskId", id)]).bearer_auth(&h.key).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_familys_own_client_is_relayed_called_back_and_archived() {
    let h = harness("families-relay", true).await;
    let (hook, mut calls) = callback_sink().await;
    // 4o Image, Flux Kontext, Midjourney, Aleph and Luma have no known price: a per-job cap lets them run.
    per_job_cap(&h, "1").await;
    for c in clients() {
        let mut body = c.body.clone();
        body["callBackUrl"] = json!(hook);
        let r = http().post(format!("{}{}", h.s.base, c.create)).bearer_auth(&h.key).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200, "{}", c.name);
        let created: Value = r.json().await.unwrap();
        let id = created["data"]["taskId"].as_str().expect("taskId").to_string();
        assert!(id.starts_with("cr_"), "{}: the Control Room's task id: {created}", c.name);
        let task = h.store.task_get(&id).await.unwrap().expect("recorded");
        assert_eq!(task.family.name(), c.name);

        // Followed to the end; then, once archived, the family's own result fields carry
        // signed Library links.
        wait_until(&format!("{} archived", c.name), 60, || async {
            let (_, s) = status_of(&h, c.status, &id).await;
            (c.done)(&s["data"]) && h.store.task_get(&id).await.unwrap().is_some_and(|t| t.archive.as_ref().is_some_and(|a| a.complete()))
        })
        .await;
        let (code, answer) = status_of(&h, c.status, &id).await;
        assert_eq!((code, answer["code"].clone()), (200, json!(200)), "{}: {answer}", c.name);
        assert_eq!(answer["data"]["taskId"], id.as_str());
        let urls = (c.urls)(&answer["data"]);
        assert!(!urls.is_empty() && urls.iter().all(|u| u.starts_with(&format!("{}/library/{id}/", h.s.base))), "{}: {answer}", c.name);
        let ended = h.store.task_get(&id).await.unwrap().unwrap();
        // These families do not say what KIE charged: counted at the estimate, and said so.
        assert_eq!(ended.charge_basis, Some(gateway::tasks::task::ChargeBasis::Estimate), "{}", c.name);
        let kie = ended.result_urls;
        for (ours, theirs) in urls.iter().zip(&kie) {
            let a = http().get(ours).send().await.unwrap().bytes().await.unwrap();
            let b = reqwest::get(theirs).await.unwrap().bytes().await.unwrap();
            assert!(!a.is_empty() && a == b, "{}: the Library's copy is KIE's file, byte for byte", c.name);
        }
        // Another family's path does not know it.
        let other = if c.name == "veo" { "/kie/api/v1/generate/record-info" } else { "/kie/api/v1/veo/record-info" };
        assert_eq!(status_of(&h, other, &id).await.0, 404, "{}", c.name);

        // The callback, in the family's shape, signed with the key's secret.
        let (headers, cb) = loop {
            let (headers, cb) = tokio::time::timeout(Duration::from_secs(30), calls.recv()).await.expect("callback in time").expect("callback");
            // Aleph names its task beside `data`.
            if cb["data"]["taskId"] == id.as_str() || cb["data"]["task_id"] == id.as_str() || cb["taskId"] == id.as_str() {
                break (headers, cb);
            }
        };
        assert_eq!(cb["code"], 200, "{}: {cb}", c.name);
        assert!(!(c.callback_urls)(&cb["data"]).is_empty(), "{}: {cb}", c.name);
        if c.name == "suno" {
            assert_eq!(cb["data"]["callbackType"], "complete");
        }
        let (ts, sig) = (headers["x-webhook-timestamp"].to_str().unwrap(), headers["x-webhook-signature"].to_str().unwrap());
        gateway::kie::signature::verify(h.webhook_secret.as_bytes(), &id, Some(ts), Some(sig), gateway::store::now_ms() / 1000, Duration::from_secs(300)).expect("signed");
    }
    // The Ledger says how much of the spend rests on estimates.
    wait_until("the charges folded, at the estimate", 20, || async {
        let (_, ledger) = server_fn(&h.s.base, "ledger_report", "").await;
        ledger["at_estimate"].as_str().is_some_and(|c| c != "0" && c == ledger["total"]["charged"].as_str().unwrap_or(""))
    })
    .await;
    h.s.shutdown().await.unwrap();
}

fn creates(sim: &kie_sim::Sim) -> Vec<(u64, &'static str, i64)> {
    let w = sim.world();
    w.log
        .iter()
        .filter(|e| e.method == "POST")
        .filter_map(|e| {
            let family = ["/api/v1/jobs/createTask", "/api/v1/veo/generate", "/api/v1/generate", "/api/v1/runway/generate", "/api/v1/gpt4o-image/generate", "/api/v1/flux/kontext/generate", "/api/v1/mj/generate", "/api/v1/aleph/generate", "/api/v1/modify/generate"].into_iter().find(|p| *p == e.path)?;
            Some((e.at_ms, family, e.code))
        })
        .collect()
}

/// Midjourney's follow-ups through the relay, as KIE's clients call them: the grid's task id
/// they were given (the relay's) names the parent, KIE is sent its own id for it, and the new
/// task is linked to its parent and result. A parent that is not the key's, not done, of
/// another kind, or an index past the grid is refused here and never sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_midjourney_follow_up_names_the_relays_task_and_kie_is_sent_its_own() {
    let h = harness("families-follow-up", false).await;
    per_job_cap(&h, "1").await;
    let post = |path: &'static str, key: String, body: Value| post_as(&h, path, key, body);
    let (status, made) = post("/kie/api/v1/mj/generate", h.key.clone(), json!({"taskType": "mj_txt2img", "prompt": "four lighthouses"})).await;
    assert_eq!(status, 200, "{made}");
    let grid = made["data"]["taskId"].as_str().unwrap().to_string();
    // Not done yet: nothing to act on.
    let (status, early) = post("/kie/api/v1/mj/generateUpscale", h.key.clone(), json!({"taskId": grid, "imageIndex": 1})).await;
    assert_eq!(status, 422, "{early}");
    assert!(early["msg"].as_str().unwrap().contains("has not succeeded"), "{early}");
    wait_until("the grid done", 30, || async { status_of(&h, "/kie/api/v1/mj/record-info", &grid).await.1["data"]["successFlag"] == 1 }).await;
    let grid_kie = h.store.task_get(&grid).await.unwrap().unwrap().kie_task_id.unwrap();
    let recorded = h.store.task_counts().await.unwrap().total;

    // Refused, naming what to fix; nothing recorded, nothing sent.
    let other = gateway::team::relay_keys::create(h.store.as_ref(), &gateway::team::accounts::Actor::cli(), "kestrel-9", "another project").await.unwrap();
    let other = other.text.expose().to_string();
    for (path, key, body, says) in [
        ("/kie/api/v1/mj/generateUpscale", h.key.clone(), json!({"taskId": grid, "imageIndex": 4}), "must be from 0 to 3"),
        ("/kie/api/v1/mj/generateUpscale", h.key.clone(), json!({"taskId": grid}), "needs input.imageIndex"),
        ("/kie/api/v1/mj/generateUpscale", h.key.clone(), json!({"taskId": grid, "imageIndex": "second"}), "must be a whole number from 0 to 3"),
        ("/kie/api/v1/mj/generateVary", h.key.clone(), json!({"taskId": grid, "imageIndex": 0}), "must be from 1 to 4"),
        ("/kie/api/v1/mj/generateVideoExtend", h.key.clone(), json!({"taskId": grid, "index": 0}), "acts on a task of midjourney/image-to-video"),
        ("/kie/api/v1/mj/generateUpscale", h.key.clone(), json!({"imageIndex": 1}), "needs input.taskId"),
        ("/kie/api/v1/mj/generateUpscale", h.key.clone(), json!({"taskId": "cr_nosuchtask", "imageIndex": 1}), "no task cr_nosuchtask"),
        ("/kie/api/v1/mj/generateUpscale", other, json!({"taskId": grid, "imageIndex": 1}), "that you can use"),
    ] {
        let (status, answer) = post(path, key, body.clone()).await;
        assert_eq!((status, answer["code"].as_i64()), (422, Some(422)), "{path} {body}: {answer}");
        assert!(answer["msg"].as_str().unwrap_or("").contains(says), "{path} {body}: {answer}");
    }
    assert_eq!(h.store.task_counts().await.unwrap().total, recorded, "nothing was recorded");

    // The upscale of the grid's second image (KIE counts it 1), by the relay's id; a variation
    // of its fourth (KIE counts from 1 there), by KIE's own id of the grid.
    let (status, up) = post("/kie/api/v1/mj/generateUpscale", h.key.clone(), json!({"taskId": grid, "imageIndex": 1})).await;
    assert_eq!(status, 200, "{up}");
    let (status, vary) = post("/kie/api/v1/mj/generateVary", h.key.clone(), json!({"taskId": grid_kie, "imageIndex": 4})).await;
    assert_eq!(status, 200, "{vary}");
    for (answer, upstream, n, results) in [(&up, "mj_upscale", 1, 1), (&vary, "mj_vary", 3, 4)] {
        let id = answer["data"]["taskId"].as_str().unwrap().to_string();
        let t = h.store.task_get(&id).await.unwrap().unwrap();
        assert_eq!(t.follows, Some(gateway::tasks::task::Follows { task: grid.clone(), n: Some(n) }), "{upstream}: linked to the grid and its result");
        assert_eq!(t.input["taskId"], grid.as_str(), "{upstream}: the record names the parent by the console's id");
        assert_eq!(gateway::money::receipts::line(&t, None).inputs, [format!("control-room://library/{grid}/{n}")], "{upstream}: its receipt says what it was made from");
        wait_until(&format!("{upstream} done"), 30, || async { status_of(&h, "/kie/api/v1/mj/record-info", &id).await.1["data"]["successFlag"] == 1 }).await;
        let (_, st) = status_of(&h, "/kie/api/v1/mj/record-info", &id).await;
        assert_eq!(st["data"]["taskType"], upstream, "{st}");
        assert_eq!(st["data"]["resultInfoJson"]["resultUrls"].as_array().map(Vec::len), Some(results), "{st}");
        // KIE was sent its own id of the grid, at the follow-up's own path.
        let kie_id = h.store.task_get(&id).await.unwrap().unwrap().kie_task_id.unwrap();
        let sent: Value = serde_json::from_str(&h.sim.world().tasks.get(&kie_id).map(|t| t.param.clone()).unwrap()).unwrap();
        assert_eq!(sent["taskId"], grid_kie.as_str(), "{upstream}: {sent}");
        assert!(sent.get("taskType").is_none(), "{upstream}: {sent}");
        let story = h.store.task_get(&id).await.unwrap().unwrap().story;
        assert!(story.beats.iter().any(|b| b.text.contains(&format!("a follow-up on {grid} result {n}"))), "{upstream}: {story:?}");
        assert!(story.beats.iter().any(|b| b.text.contains(&format!("sent to KIE as its id there, {grid_kie}"))), "{upstream}: {story:?}");
    }
    let sent: Vec<String> = h.sim.world().log.iter().filter(|e| e.method == "POST" && e.path.starts_with("/api/v1/mj/generate") && e.code == 200).map(|e| e.path.clone()).collect();
    assert_eq!(sent, ["/api/v1/mj/generate", "/api/v1/mj/generateUpscale", "/api/v1/mj/generateVary"], "each at its own path, once");
    h.s.shutdown().await.unwrap();
}

/// Veo's and Runway's extend: a video made longer, the relay's id of it given, KIE's sent, the
/// prompt required; a task of another family is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_video_is_extended_through_its_familys_own_extend_path() {
    let h = harness("families-extend", false).await;
    per_job_cap(&h, "1").await;
    let post = |path: &'static str, body: Value| post_as(&h, path, h.key.clone(), body);
    let families = [
        ("/kie/api/v1/veo/generate", json!({"model": "veo3", "prompt": "a harbour at dawn"}), "/kie/api/v1/veo/record-info", "/kie/api/v1/veo/extend", "/api/v1/veo/extend"),
        ("/kie/api/v1/runway/generate", json!({"prompt": "a harbour at dawn", "duration": 5}), "/kie/api/v1/runway/record-detail", "/kie/api/v1/runway/extend", "/api/v1/runway/extend"),
    ];
    let mut parents = Vec::new();
    for (create, body, status, _, _) in &families {
        let (code, made) = post(create, body.clone()).await;
        assert_eq!(code, 200, "{made}");
        let id = made["data"]["taskId"].as_str().unwrap().to_string();
        wait_until(&format!("{create} done"), 30, || async { h.store.task_get(&id).await.unwrap().is_some_and(|t| t.state == gateway::TaskState::Success) }).await;
        assert_eq!(status_of(&h, status, &id).await.0, 200);
        parents.push(id);
    }
    for (n, (_, _, status, extend, kie_path)) in families.iter().enumerate() {
        let (parent, other) = (&parents[n], &parents[1 - n]);
        for (body, says) in [(json!({"taskId": parent}), "needs input.prompt"), (json!({"taskId": other, "prompt": "on"}), "acts on a task of")] {
            let (code, answer) = post(extend, body.clone()).await;
            assert_eq!(code, 422, "{extend} {body}: {answer}");
            assert!(answer["msg"].as_str().unwrap_or("").contains(says), "{extend} {body}: {answer}");
        }
        let (code, made) = post(extend, json!({"taskId": parent, "prompt": "the boats sail out"})).await;
        assert_eq!(code, 200, "{made}");
        let id = made["data"]["taskId"].as_str().unwrap().to_string();
        wait_until(&format!("{extend} done"), 30, || async { h.store.task_get(&id).await.unwrap().is_some_and(|t| t.state == gateway::TaskState::Success) }).await;
        let t = h.store.task_get(&id).await.unwrap().unwrap();
        assert_eq!(t.follows, Some(gateway::tasks::task::Follows { task: parent.clone(), n: None }));
        assert_eq!(status_of(&h, status, &id).await.0, 200, "answered at its family's status path");
        let kie_parent = h.store.task_get(parent).await.unwrap().unwrap().kie_task_id.unwrap();
        let sent: Value = serde_json::from_str(&h.sim.world().tasks.get(t.kie_task_id.as_ref().unwrap()).map(|t| t.param.clone()).unwrap()).unwrap();
        assert_eq!((sent["taskId"].as_str(), sent["prompt"].as_str()), (Some(kie_parent.as_str()), Some("the boats sail out")), "{sent}");
        assert!(h.sim.world().log.iter().any(|e| e.path == *kie_path && e.code == 200), "sent to {kie_path}");
    }
    h.s.shutdown().await.unwrap();
}

/// Veo's 1080p and 4K as KIE's clients ask for them, by the relay's task id: the first ask
/// starts a follow-up task (linked to its parent, known at KIE by the parent's id), each ask
/// after answers it — 422 "processing" until the file is in, then KIE's answer with the
/// Library's copy; asks at once start one task; the 4K calls the client back in KIE's 4K shape;
/// the parent is still found by its KIE id. The console's story offers both on the video.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_veo_video_is_upgraded_to_1080p_and_4k_by_asking_again() {
    let h = harness("families-upgrade", true).await;
    let (hook, mut calls) = callback_sink().await;
    per_job_cap(&h, "200").await;
    let (code, made) = post_as(&h, "/kie/api/v1/veo/generate", h.key.clone(), json!({"model": "veo3_fast", "prompt": "a harbour at dawn"})).await;
    assert_eq!(code, 200, "{made}");
    let parent = made["data"]["taskId"].as_str().unwrap().to_string();
    wait_until("the video made", 30, || async { h.store.task_get(&parent).await.unwrap().is_some_and(|t| t.state == gateway::TaskState::Success) }).await;
    let parent_kie = h.store.task_get(&parent).await.unwrap().unwrap().kie_task_id.unwrap();

    // 1080p: a GET asked again until the file is in.
    let base = h.s.base.clone();
    let ask_1080 = |task: String, key: String| {
        let base = base.clone();
        async move {
            let r = http().get(format!("{base}/kie/api/v1/veo/get-1080p-video")).query(&[("taskId", task.as_str()), ("index", "0")]).bearer_auth(key).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (code, first) = ask_1080(parent.clone(), h.key.clone()).await;
    assert_eq!(code, 422, "started, not made yet: {first}");
    assert!(first["msg"].as_str().unwrap().contains("processing"), "{first}");
    let mut answer = Value::Null;
    for _ in 0..300 {
        let (code, a) = ask_1080(parent.clone(), h.key.clone()).await;
        answer = a;
        if code == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answer["data"]["resultUrl"].as_str().is_some_and(|u| u.contains("_1080p_0/") || u.contains("/library/")), "KIE's file, or its copy once kept: {answer}");
    let named = h.store.kv_get(&format!("upgrade:veo_1080p:{parent}:0")).await.unwrap().expect("the upgrade's task named");
    let id = String::from_utf8(named).unwrap();
    wait_until("the 1080p kept", 30, || async { h.store.task_get(&id).await.unwrap().is_some_and(|t| t.archive.as_ref().is_some_and(|a| a.complete())) }).await;
    let (code, answer) = ask_1080(parent.clone(), h.key.clone()).await;
    assert_eq!(code, 200, "{answer}");
    let url = answer["data"]["resultUrl"].as_str().unwrap_or_default().to_string();
    assert!(url.starts_with(&format!("{}/library/{id}/", h.s.base)), "then the Library's copy: {answer}");
    let t = h.store.task_get(&id).await.unwrap().unwrap();
    assert_eq!((t.model.as_str(), t.kie_task_id.as_deref()), ("veo3/1080p", Some(parent_kie.as_str())), "known at KIE by its parent's id");
    assert_eq!(t.follows, Some(gateway::tasks::task::Follows { task: parent.clone(), n: Some(0) }));
    assert!(h.sim.world().log.iter().any(|e| e.path == "/api/v1/veo/get-1080p-video" && e.task_id.as_deref() == Some(&format!("{parent_kie}_1080p_0"))));
    // The parent is still the task its KIE id names.
    assert_eq!(status_of(&h, "/kie/api/v1/veo/record-info", &parent_kie).await.1["data"]["taskId"], parent.as_str());
    assert_eq!(ask_1080(parent.clone(), h.key.clone()).await.1, answer, "asked again: the same file, nothing new started");

    // 4K: asked four times at once, started once.
    let ask_4k = |body: Value| post_as(&h, "/kie/api/v1/veo/get-4k-video", h.key.clone(), body);
    let body = json!({"taskId": parent, "index": 0, "callBackUrl": hook});
    let answers = futures::future::join_all((0..4).map(|_| ask_4k(body.clone()))).await;
    let started: Vec<&Value> = answers.iter().filter(|(code, _)| *code == 200).map(|(_, a)| a).collect();
    assert_eq!(started.len(), 1, "{answers:?}");
    assert_eq!(started[0]["data"], json!({"taskId": parent, "resultUrls": null, "imageUrls": null}), "KIE's answer: the parent's id, no files yet");
    assert!(answers.iter().filter(|(code, _)| *code == 422).all(|(_, a)| a["msg"].as_str().unwrap().contains("processing")), "{answers:?}");
    let (headers, cb) = loop {
        let (headers, cb) = tokio::time::timeout(Duration::from_secs(30), calls.recv()).await.expect("callback in time").expect("callback");
        if cb["data"]["taskId"] == parent.as_str() {
            break (headers, cb);
        }
    };
    assert_eq!(cb["code"], 200, "{cb}");
    assert_eq!(strings(&cb["data"]["info"]["resultUrls"]).len(), 1, "{cb}");
    assert!(headers.contains_key("x-webhook-signature"));
    let (code, done) = ask_4k(json!({"taskId": parent, "index": 0})).await;
    let files = strings(&done["data"]["resultUrls"]);
    assert_eq!((code, files.len(), done["data"]["taskId"].as_str()), (200, 1, Some(parent.as_str())), "asked again once made: {done}");
    assert_eq!(h.sim.world().log.iter().filter(|e| e.method == "POST" && e.path == "/api/v1/veo/get-4k-video" && e.code == 200).count(), 1, "KIE asked to make it once");

    // Refused, nothing started: no taskId, a video the task did not make, another project's
    // task, a task that is not a Veo video.
    let other = gateway::team::relay_keys::create(h.store.as_ref(), &gateway::team::accounts::Actor::cli(), "kestrel-9", "another project").await.unwrap();
    let (code, a) = ask_4k(json!({"index": 0})).await;
    assert_eq!(code, 400, "{a}");
    let (code, a) = ask_4k(json!({"taskId": parent, "index": 2})).await;
    assert_eq!(code, 422, "{a}");
    assert!(a["msg"].as_str().unwrap().contains("must be from 0 to 0"), "{a}");
    let (code, a) = ask_1080(parent.clone(), other.text.expose().to_string()).await;
    assert_eq!(code, 404, "{a}");
    let (code, a) = ask_1080(id.clone(), h.key.clone()).await;
    assert_eq!(code, 422, "{a}");
    assert!(a["msg"].as_str().unwrap().contains("acts on a task of"), "{a}");

    // The console's story of the video offers both on its one video.
    let (code, story) = server_fn(&h.s.base, "task_story", &form(&[("id", &parent)])).await;
    assert_eq!(code, 200, "{story}");
    let offers: Vec<&str> = story["follow_ups"].as_array().unwrap().iter().filter_map(|f| f["action"].as_str()).collect();
    assert_eq!(offers, ["Extend", "1080p", "4K"], "{story}");
    h.s.shutdown().await.unwrap();
}

/// Suno's extend, as its clients call it: the track named by the id the relay's record-info
/// gave it (`<task>-<n>`), KIE sent its own id of that track and the track's model; the new
/// task linked to the track. A track past the task's, another model, a missing setting or
/// another project's track is refused here and never sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_suno_track_is_extended_by_the_track_id_the_relay_gave() {
    let h = harness("families-suno-extend", false).await;
    per_job_cap(&h, "100").await;
    let post = |key: String, body: Value| post_as(&h, "/kie/api/v1/generate/extend", key, body);
    let (code, made) = post_as(&h, "/kie/api/v1/generate", h.key.clone(), json!({"prompt": "a sea shanty", "customMode": false, "instrumental": false, "model": "V4_5"})).await;
    assert_eq!(code, 200, "{made}");
    let song = made["data"]["taskId"].as_str().unwrap().to_string();
    wait_until("the song done", 30, || async { h.store.task_get(&song).await.unwrap().is_some_and(|t| t.state == gateway::TaskState::Success) }).await;
    let (_, st) = status_of(&h, "/kie/api/v1/generate/record-info", &song).await;
    let tracks: Vec<&str> = st["data"]["response"]["sunoData"].as_array().unwrap().iter().filter_map(|t| t["id"].as_str()).collect();
    assert_eq!(tracks, [format!("{song}-0"), format!("{song}-1")], "{st}");
    let song_kie = h.store.task_get(&song).await.unwrap().unwrap().kie_task_id.unwrap();
    let kept = h.store.task_get(&song).await.unwrap().unwrap().kie_result_ids;
    assert_eq!(kept, [kie_sim::families::track_id(&song_kie, 0), kie_sim::families::track_id(&song_kie, 1)], "KIE's own track ids are kept");
    let recorded = h.store.task_counts().await.unwrap().total;

    let other = gateway::team::relay_keys::create(h.store.as_ref(), &gateway::team::accounts::Actor::cli(), "kestrel-9", "another project").await.unwrap();
    let other = other.text.expose().to_string();
    let second = format!("{song}-1");
    for (key, body, says) in [
        (h.key.clone(), json!({"defaultParamFlag": false}), "needs input.audioId"),
        (h.key.clone(), json!({"audioId": song, "defaultParamFlag": false}), "input.audioId must name a track"),
        (h.key.clone(), json!({"audioId": format!("{song}-2"), "defaultParamFlag": false}), "made 2 tracks"),
        (h.key.clone(), json!({"audioId": second, "defaultParamFlag": false, "model": "V4"}), "input.model must be V4_5"),
        (h.key.clone(), json!({"audioId": second}), "needs input.defaultParamFlag"),
        (h.key.clone(), json!({"audioId": second, "defaultParamFlag": true, "prompt": "more", "style": "folk", "title": "Again"}), "continueAt is required"),
        (h.key.clone(), json!({"audioId": "cr_nosuchtask-0", "defaultParamFlag": false}), "no task cr_nosuchtask"),
        (other.clone(), json!({"audioId": second, "defaultParamFlag": false}), "that you can use"),
    ] {
        let (code, answer) = post(key, body.clone()).await;
        assert_eq!((code, answer["code"].as_i64()), (422, Some(422)), "{body}: {answer}");
        assert!(answer["msg"].as_str().unwrap_or("").contains(says), "{body}: {answer}");
    }
    assert_eq!(h.store.task_counts().await.unwrap().total, recorded, "nothing was recorded");

    // In the track's own style (its model filled in), and from second 30 with new words.
    let (code, plain) = post(h.key.clone(), json!({"audioId": second, "defaultParamFlag": false})).await;
    assert_eq!(code, 200, "{plain}");
    let (code, custom) = post(h.key.clone(), json!({"audioId": format!("{song}-0"), "defaultParamFlag": true, "model": "V4_5", "prompt": "and home again", "style": "folk", "title": "Homeward", "continueAt": 30})).await;
    assert_eq!(code, 200, "{custom}");
    for (answer, n) in [(&plain, 1), (&custom, 0)] {
        let id = answer["data"]["taskId"].as_str().unwrap().to_string();
        wait_until("the extension done", 30, || async { h.store.task_get(&id).await.unwrap().is_some_and(|t| t.state == gateway::TaskState::Success) }).await;
        let t = h.store.task_get(&id).await.unwrap().unwrap();
        assert_eq!(t.follows, Some(gateway::tasks::task::Follows { task: song.clone(), n: Some(n) }));
        assert_eq!((t.input["audioId"].as_str(), t.input["model"].as_str()), (Some(format!("{song}-{n}").as_str()), Some("V4_5")), "the record names the track by the console's id");
        let sent: Value = serde_json::from_str(&h.sim.world().tasks.get(t.kie_task_id.as_ref().unwrap()).map(|t| t.param.clone()).unwrap()).unwrap();
        let kie_track = kie_sim::families::track_id(&song_kie, n);
        assert_eq!((sent["audioId"].as_str(), sent["model"].as_str()), (Some(kie_track.as_str()), Some("V4_5")), "{sent}");
        assert!(sent.get("taskId").is_none(), "{sent}");
        assert!(t.story.beats.iter().any(|b| b.text.contains(&format!("sent to KIE as its id there, {kie_track}"))), "{:?}", t.story);
        assert_eq!(gateway::money::receipts::line(&t, None).inputs, [format!("control-room://library/{song}/{n}")]);
        let (_, st) = status_of(&h, "/kie/api/v1/generate/record-info", &id).await;
        assert_eq!((st["data"]["status"].as_str(), st["data"]["type"].as_str()), (Some("SUCCESS"), Some("EXTEND")), "{st}");
        assert_eq!(st["data"]["response"]["sunoData"].as_array().map(Vec::len), Some(2), "{st}");
    }
    // An extension's track is extended in the song's model, which it names.
    let first_extension = plain["data"]["taskId"].as_str().unwrap().to_string();
    let (code, again) = post(h.key.clone(), json!({"audioId": format!("{first_extension}-0"), "defaultParamFlag": false})).await;
    assert_eq!(code, 200, "{again}");
    let again = h.store.task_get(again["data"]["taskId"].as_str().unwrap()).await.unwrap().unwrap();
    assert_eq!(again.input["model"], "V4_5", "{:?}", again.input);
    wait_until("the extension of the extension sent", 30, || async { h.store.task_get(&again.id).await.unwrap().is_some_and(|t| t.kie_task_id.is_some()) }).await;
    let kie_id = h.store.task_get(&again.id).await.unwrap().unwrap().kie_task_id.unwrap();
    let sent: Value = serde_json::from_str(&h.sim.world().tasks.get(&kie_id).map(|t| t.param.clone()).unwrap()).unwrap();
    let extension_kie = h.store.task_get(&first_extension).await.unwrap().unwrap().kie_task_id.unwrap();
    assert_eq!((sent["audioId"].as_str(), sent["model"].as_str()), (Some(kie_sim::families::track_id(&extension_kie, 0).as_str()), Some("V4_5")), "{sent}");

    // The console's story of the song offers Extend, WAV, Stems and Video on each track; a button
    // starts one.
    let (code, story) = server_fn(&h.s.base, "task_story", &form(&[("id", &song)])).await;
    assert_eq!(code, 200, "{story}");
    let offers = |action: &str, model: &str| json!({"model": model, "action": action, "results": [0, 1], "needs_prompt": false});
    assert_eq!(story["follow_ups"], json!([offers("Extend", "suno/extend"), offers("WAV", "suno/wav"), offers("Stems", "suno/stems"), offers("Video", "suno/video")]), "{story}");
    let (code, started) = server_fn(&h.s.base, "follow_up", &form(&[("id", &song), ("model", "suno/extend"), ("n", "0")])).await;
    assert_eq!(code, 200, "{started}");
    let t = h.store.task_get(started["id"].as_str().unwrap()).await.unwrap().unwrap();
    assert_eq!(t.input, json!({"audioId": format!("{song}-0"), "defaultParamFlag": false, "model": "V4_5"}), "in the track's own style");
    assert_eq!(t.follows, Some(gateway::tasks::task::Follows { task: song.clone(), n: Some(0) }));
    wait_until("the console's extension sent", 30, || async { h.sim.world().log.iter().filter(|e| e.path == "/api/v1/generate/extend" && e.code == 200).count() == 4 }).await;

    // Its timestamped lyrics: through the relay by its ids (KIE asked once, by its own), and in
    // the story, a button a track until read.
    assert_eq!(story["lyrics_offered"], json!([0, 1]), "{story}");
    let lyrics = |key: String, body: Value| post_as(&h, "/kie/api/v1/generate/get-timestamped-lyrics", key, body);
    for (key, body, code, says) in [
        (h.key.clone(), json!({"taskId": song, "audioId": format!("{song}-5")}), 422, "has no track 5"),
        (h.key.clone(), json!({"taskId": "cr_other", "audioId": second}), 422, "taskId is not the task of audioId"),
        (h.key.clone(), json!({"audioId": song}), 422, "must name a track"),
        (other.clone(), json!({"taskId": song, "audioId": second}), 404, "No task with this audioId"),
    ] {
        let (got, answer) = lyrics(key, body.clone()).await;
        assert_eq!(got, code, "{body}: {answer}");
        assert!(answer["msg"].as_str().unwrap_or("").contains(says), "{body}: {answer}");
    }
    let asked = || h.sim.world().log.iter().filter(|e| e.path == "/api/v1/generate/get-timestamped-lyrics" && e.code == 200).count();
    for _ in 0..2 {
        let (code, answer) = lyrics(h.key.clone(), json!({"taskId": song, "audioId": second})).await;
        assert_eq!(code, 200, "{answer}");
        let words: Vec<(&str, f64)> = answer["data"]["alignedWords"].as_array().unwrap().iter().map(|w| (w["word"].as_str().unwrap().trim(), w["startS"].as_f64().unwrap())).collect();
        assert_eq!(words, [("a", 0.5), ("sea", 1.0), ("shanty", 1.5)], "{answer}");
    }
    assert_eq!(asked(), 1, "KIE is asked once; then they are kept");
    let (code, read) = server_fn(&h.s.base, "track_lyrics", &form(&[("id", &song), ("n", "0")])).await;
    assert_eq!((code, read.as_u64()), (200, Some(1)), "one line: {read}");
    assert_eq!(asked(), 2);
    let (_, story) = server_fn(&h.s.base, "task_story", &form(&[("id", &song)])).await;
    let line = json!([["0:00.5", "a sea shanty"]]);
    assert_eq!((story["lyrics"].clone(), story["lyrics_offered"].clone()), (json!([[0, line], [1, line]]), json!([])), "{story}");
    h.s.shutdown().await.unwrap();
}

/// Suno's WAV conversion, vocal separation and music video of a track, through the relay at KIE's own paths
/// and followed at their own status paths: the song and the track named by the relay's ids,
/// KIE sent its own; refused when the track is not the song's, or the song not the key's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_suno_track_is_converted_and_separated_at_its_own_apis() {
    let h = harness("families-suno-jobs", true).await;
    per_job_cap(&h, "100").await;
    let song = made(&h, "/kie/api/v1/generate", json!({"prompt": "a sea shanty", "customMode": false, "instrumental": false, "model": "V4"})).await;
    let song_kie = h.store.task_get(&song).await.unwrap().unwrap().kie_task_id.unwrap();
    let (code, other_song) = post_as(&h, "/kie/api/v1/generate", h.key.clone(), json!({"prompt": "a lullaby", "customMode": false, "instrumental": true, "model": "V4"})).await;
    assert_eq!(code, 200, "{other_song}");
    let other_song = other_song["data"]["taskId"].as_str().unwrap().to_string();
    let recorded = h.store.task_counts().await.unwrap().total;
    for (path, body, says) in [
        ("/kie/api/v1/wav/generate", json!({"taskId": other_song, "audioId": format!("{song}-0")}), "is not the task input.audioId names"),
        ("/kie/api/v1/wav/generate", json!({"audioId": format!("{song}-0")}), "needs input.taskId"),
        ("/kie/api/v1/wav/generate", json!({"taskId": song, "audioId": format!("{song}-5")}), "made 2 tracks"),
        ("/kie/api/v1/vocal-removal/generate", json!({"taskId": song, "audioId": format!("{song}-0"), "type": "karaoke"}), "must be separate_vocal or split_stem"),
        ("/kie/api/v1/mp4/generate", json!({"taskId": song, "audioId": format!("{song}-0"), "author": "x".repeat(51)}), "at most 50 characters"),
    ] {
        let (code, answer) = post_as(&h, path, h.key.clone(), body.clone()).await;
        assert_eq!(code, 422, "{path} {body}: {answer}");
        assert!(answer["msg"].as_str().unwrap_or("").contains(says), "{path} {body}: {answer}");
    }
    assert_eq!(h.store.task_counts().await.unwrap().total, recorded, "nothing was recorded");

    for (path, status, body, files, upstream) in [
        ("/kie/api/v1/wav/generate", "/kie/api/v1/wav/record-info", json!({"taskId": song, "audioId": format!("{song}-1")}), vec!["audioWavUrl"], "/api/v1/wav/generate"),
        ("/kie/api/v1/vocal-removal/generate", "/kie/api/v1/vocal-removal/record-info", json!({"taskId": song, "audioId": format!("{song}-0"), "type": "separate_vocal"}), vec!["vocalUrl", "instrumentalUrl"], "/api/v1/vocal-removal/generate"),
        // Split into stems: each under its own field, in the record-info and the callback.
        ("/kie/api/v1/vocal-removal/generate", "/kie/api/v1/vocal-removal/record-info", json!({"taskId": song, "audioId": format!("{song}-1"), "type": "split_stem"}), vec!["vocalUrl", "drumsUrl", "bassUrl", "guitarUrl"], "/api/v1/vocal-removal/generate"),
        ("/kie/api/v1/mp4/generate", "/kie/api/v1/mp4/record-info", json!({"taskId": song, "audioId": format!("{song}-1"), "author": "The Harbour Band"}), vec!["videoUrl"], "/api/v1/mp4/generate"),
    ] {
        let (code, made) = post_as(&h, path, h.key.clone(), body.clone()).await;
        assert_eq!(code, 200, "{path}: {made}");
        let id = made["data"]["taskId"].as_str().unwrap().to_string();
        wait_until(&format!("{path} done"), 30, || async { status_of(&h, status, &id).await.1["data"]["successFlag"] == "SUCCESS" }).await;
        let (_, st) = status_of(&h, status, &id).await;
        for f in &files {
            assert!(st["data"]["response"][f].as_str().is_some_and(|u| u.starts_with("http")), "{path}: {f}: {st}");
        }
        assert_eq!(st["data"]["response"].as_object().map(|r| r.len()), Some(files.len()), "{path}: no other field: {st}");
        assert_eq!(st["data"]["musicId"], body["audioId"], "{st}");
        // Its status is its own family's: the song's status call does not know it.
        assert_eq!(status_of(&h, "/kie/api/v1/generate/record-info", &id).await.0, 404, "{path}");
        let t = h.store.task_get(&id).await.unwrap().unwrap();
        let n: usize = body["audioId"].as_str().unwrap().rsplit_once('-').unwrap().1.parse().unwrap();
        assert_eq!(t.follows, Some(gateway::tasks::task::Follows { task: song.clone(), n: Some(n) }));
        let sent: Value = serde_json::from_str(&h.sim.world().tasks.get(t.kie_task_id.as_ref().unwrap()).map(|t| t.param.clone()).unwrap()).unwrap();
        assert_eq!((sent["taskId"].as_str(), sent["audioId"].as_str()), (Some(song_kie.as_str()), Some(kie_sim::families::track_id(&song_kie, n).as_str())), "{sent}");
        assert!(h.sim.world().log.iter().any(|e| e.path == upstream && e.code == 200), "sent to {upstream}");
        // Its files are the team's: archived in the Library.
        wait_until(&format!("{path} archived"), 30, || async { h.store.task_get(&id).await.unwrap().is_some_and(|t| t.archive.as_ref().is_some_and(|a| a.complete())) }).await;
        let t = h.store.task_get(&id).await.unwrap().unwrap();
        assert_eq!(t.result_urls.len(), files.len());
        assert_eq!(t.result_names.iter().map(|n| format!("{n}Url")).collect::<Vec<_>>(), files, "{path}: each result named");
        // Once kept, the same fields carry the Library's copies.
        let (_, st) = status_of(&h, status, &id).await;
        assert!(files.iter().all(|f| st["data"]["response"][f].as_str().is_some_and(|u| u.contains("/library/"))), "{path}: {st}");
    }
    h.s.shutdown().await.unwrap();
}

/// Suno's MIDI of a separation at KIE's own paths, as its clients call it: the separation named
/// by the relay's id, KIE sent its own; KIE answers notes, which the Library keeps as a Standard
/// MIDI File; the relay's record-info and the client's callback answer KIE's `midiData`, read
/// back from that file, once it is kept. A song (not a separation), a stem by `audioId`, and a
/// console without a Library are refused, nothing recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_separations_midi_is_kept_as_a_midi_file_and_answered_as_kies_notes() {
    let h = harness("families-suno-midi", true).await;
    let (hook, mut calls) = callback_sink().await;
    per_job_cap(&h, "100").await;
    let song = made(&h, "/kie/api/v1/generate", json!({"prompt": "a sea shanty", "customMode": false, "instrumental": false, "model": "V4"})).await;
    let split = made(&h, "/kie/api/v1/vocal-removal/generate", json!({"taskId": song, "audioId": format!("{song}-0"), "type": "split_stem"})).await;
    let split_kie = h.store.task_get(&split).await.unwrap().unwrap().kie_task_id.unwrap();

    let recorded = h.store.task_counts().await.unwrap().total;
    for (body, says) in [
        (json!({"taskId": song}), "suno/stems"),
        (json!({"taskId": split, "audioId": format!("{split}-0")}), "audioId is not relayed"),
        (json!({}), "needs input.taskId"),
    ] {
        let (code, answer) = post_as(&h, "/kie/api/v1/midi/generate", h.key.clone(), body.clone()).await;
        assert_eq!(code, 422, "{body}: {answer}");
        assert!(answer["msg"].as_str().unwrap_or("").contains(says), "{body}: {answer}");
    }
    assert_eq!(h.store.task_counts().await.unwrap().total, recorded, "nothing was recorded");

    let (code, made) = post_as(&h, "/kie/api/v1/midi/generate", h.key.clone(), json!({"taskId": split, "callBackUrl": hook})).await;
    assert_eq!(code, 200, "{made}");
    let id = made["data"]["taskId"].as_str().unwrap().to_string();
    // Made once its file is kept: KIE's notes, read back from the Library's copy.
    wait_until("the MIDI answered", 30, || async { status_of(&h, "/kie/api/v1/midi/record-info", &id).await.1["data"]["successFlag"] == 1 }).await;
    let t = h.store.task_get(&id).await.unwrap().unwrap();
    assert_eq!(t.follows, Some(gateway::tasks::task::Follows { task: split.clone(), n: None }));
    let kie_id = t.kie_task_id.clone().unwrap();
    let sent: Value = serde_json::from_str(&h.sim.world().tasks.get(&kie_id).map(|t| t.param.clone()).unwrap()).unwrap();
    assert_eq!(sent["taskId"], split_kie.as_str(), "KIE is sent its own id of the separation: {sent}");
    let asset = &t.archive.as_ref().unwrap().assets[0];
    assert_eq!((asset.state, asset.content_type.as_deref()), (gateway::library::asset::AssetState::Archived, Some("audio/midi")), "{asset:?}");
    let kies = h.sim.world().family_json(&kie_id).unwrap()["midiData"].clone();
    let (_, st) = status_of(&h, "/kie/api/v1/midi/record-info", &id).await;
    let same_notes = |ours: &Value| {
        let (a, b) = (ours["instruments"].as_array().unwrap(), kies["instruments"].as_array().unwrap());
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| {
                let time = |v: &Value| v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok())).unwrap();
                x["name"] == y["name"]
                    && x["notes"].as_array().unwrap().iter().zip(y["notes"].as_array().unwrap()).all(|(m, k)| {
                        m["pitch"] == k["pitch"] && (time(&m["start"]) - time(&k["start"])).abs() < 1e-6 && (time(&m["end"]) - time(&k["end"])).abs() < 1e-6 && (m["velocity"].as_f64().unwrap() - k["velocity"].as_f64().unwrap()).abs() < 0.005
                    })
            })
    };
    assert!(same_notes(&st["data"]["midiData"]), "KIE's notes, read back from the kept file: {st} vs {kies}");
    // The file itself: a Standard MIDI File, served from the Library.
    let file_url = st["data"]["midiFileUrl"].as_str().unwrap().to_string();
    assert!(file_url.starts_with(&format!("{}/library/{id}/", h.s.base)), "{st}");
    let file = http().get(&file_url).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(&file[..4], b"MThd");
    assert!(same_notes(&gateway::library::midi::notes(&file).unwrap()));
    // The client's callback waited for the file and carries the notes, beside task_id.
    let (headers, cb) = loop {
        let (headers, cb) = tokio::time::timeout(Duration::from_secs(30), calls.recv()).await.expect("callback in time").expect("callback");
        if cb["task_id"] == id.as_str() {
            break (headers, cb);
        }
    };
    assert_eq!(cb["code"], 200, "{cb}");
    assert!(same_notes(&cb["data"]), "{cb}");
    assert!(headers.contains_key("x-webhook-signature"));
    // The separation's story offers it.
    let (code, story) = server_fn(&h.s.base, "task_story", &form(&[("id", &split)])).await;
    assert_eq!(code, 200, "{story}");
    assert!(story["follow_ups"].as_array().unwrap().iter().any(|f| f["action"] == "MIDI"), "{story}");
    // Panel 07 offers the file as a download (a browser cannot play notes), not as an input.
    let panel = client_as(&h.s.base, ADMIN).await.get(format!("{}/panel/retention", h.s.base)).send().await.unwrap().text().await.unwrap();
    let item = panel.split(r#"data-testid="library-item""#).find(|i| i.contains(&format!(r#"href="/library/{id}/0""#))).unwrap_or_else(|| panic!("the MIDI file is listed: {panel}"));
    assert!(item.contains(r#"data-testid="library-midi""#) && !item.contains("<audio") && !item.contains("Use as input"), "{item}");

    // A dense score (~5 MB of KIE's notes, past the 4 MiB of any other answer) is kept whole;
    // one of more notes than a MIDI holds ends failed with the reason, not asked for again.
    for (notes, flag) in [(80_000, 1), (210_000, 3)] {
        h.sim.world().faults.midi_notes = Some(notes);
        let (code, made) = post_as(&h, "/kie/api/v1/midi/generate", h.key.clone(), json!({"taskId": split})).await;
        assert_eq!(code, 200, "{made}");
        let id = made["data"]["taskId"].as_str().unwrap().to_string();
        wait_until("the dense MIDI settled", 60, || async { status_of(&h, "/kie/api/v1/midi/record-info", &id).await.1["data"]["successFlag"] == flag }).await;
        let (_, st) = status_of(&h, "/kie/api/v1/midi/record-info", &id).await;
        if flag == 1 {
            let kept: usize = st["data"]["midiData"]["instruments"].as_array().unwrap().iter().map(|i| i["notes"].as_array().unwrap().len()).sum();
            assert_eq!(kept, notes as usize);
        } else {
            assert!(st["data"]["errorMessage"].as_str().unwrap_or("").contains("200000"), "the reason is told: {}", st["data"]);
        }
    }
    h.sim.world().faults.midi_notes = None;
    h.s.shutdown().await.unwrap();

    // Without a Library there is nowhere to keep it: refused before anything is recorded.
    let bare = harness("families-suno-midi-bare", false).await;
    let (code, answer) = post_as(&bare, "/kie/api/v1/midi/generate", bare.key.clone(), json!({"taskId": "cr_nothing"})).await;
    assert_eq!(code, 422, "{answer}");
    assert!(answer["msg"].as_str().unwrap().contains("Library, which is off here"), "{answer}");
    bare.s.shutdown().await.unwrap();
}

/// Suno's music from an uploaded track at KIE's own paths: vocals over an instrumental the
/// team made (named from the Library, sent to KIE as a URL it can fetch), an instrumental under
/// it, and a cover of a file's URL; followed at Suno's record-info. Each path's own fields are
/// checked first; its model sent to Suno's main path is pointed at its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn suno_makes_music_from_an_uploaded_track_or_a_library_result() {
    let h = harness("families-suno-upload", true).await;
    per_job_cap(&h, "100").await;
    let (code, made) = post_as(&h, "/kie/api/v1/generate", h.key.clone(), json!({"prompt": "a harbour at dawn, strings", "customMode": false, "instrumental": true, "model": "V4_5PLUS"})).await;
    assert_eq!(code, 200, "{made}");
    let bed = made["data"]["taskId"].as_str().unwrap().to_string();
    wait_until("the bed archived", 30, || async { h.store.task_get(&bed).await.unwrap().is_some_and(|t| t.archive.as_ref().is_some_and(|a| a.complete())) }).await;
    let from_library = format!("control-room://library/{bed}/0");
    let recorded = h.store.task_counts().await.unwrap().total;
    for (path, body, code, says) in [
        ("/kie/api/v1/generate/add-vocals", json!({"uploadUrl": from_library, "prompt": "la la", "title": "Dawn", "style": "folk"}), 422, "needs input.negativeTags"),
        ("/kie/api/v1/generate/add-vocals", json!({"uploadUrl": from_library, "prompt": "la la", "title": "Dawn", "style": "folk", "negativeTags": "metal", "model": "V4"}), 422, "layering takes V4_5PLUS or V5"),
        ("/kie/api/v1/generate/add-vocals", json!({"uploadUrl": format!("control-room://library/{bed}/7"), "prompt": "la la", "title": "Dawn", "style": "folk", "negativeTags": "metal"}), 422, "made no result 7"),
        ("/kie/api/v1/generate/upload-cover", json!({"uploadUrl": "https://example.com/song.mp3", "customMode": false, "instrumental": true, "model": "V5"}), 422, "prompt is required"),
        ("/kie/api/v1/generate/upload-extend", json!({"uploadUrl": from_library, "defaultParamFlag": true, "prompt": "on", "style": "folk", "title": "Dawn", "model": "V5"}), 422, "continueAt is required"),
        ("/kie/api/v1/generate/upload-extend", json!({"uploadUrl": from_library, "model": "V5"}), 422, "needs input.defaultParamFlag"),
        ("/kie/api/v1/generate", json!({"model": "suno_add_vocals", "customMode": false, "instrumental": false, "prompt": "x"}), 404, "has a path of its own: POST /kie/api/v1/generate/add-vocals"),
    ] {
        let (got, answer) = post_as(&h, path, h.key.clone(), body.clone()).await;
        assert_eq!(got, code, "{path} {body}: {answer}");
        assert!(answer["msg"].as_str().unwrap_or("").contains(says), "{path} {body}: {answer}");
    }
    assert_eq!(h.store.task_counts().await.unwrap().total, recorded, "nothing was recorded");

    let bed_kie_url = h.store.task_get(&bed).await.unwrap().unwrap().result_urls[0].clone();
    for (path, body, upstream, sent_url) in [
        ("/kie/api/v1/generate/add-vocals", json!({"uploadUrl": from_library, "prompt": "the boats come home", "title": "Dawn", "style": "folk", "negativeTags": "metal"}), "/api/v1/generate/add-vocals", bed_kie_url.as_str()),
        ("/kie/api/v1/generate/add-instrumental", json!({"uploadUrl": from_library, "title": "Dawn", "tags": "strings", "negativeTags": "drums", "model": "V5"}), "/api/v1/generate/add-instrumental", bed_kie_url.as_str()),
        ("/kie/api/v1/generate/upload-cover", json!({"uploadUrl": "https://example.com/song.mp3", "customMode": false, "instrumental": true, "prompt": "as a sea shanty", "model": "V4_5"}), "/api/v1/generate/upload-cover", "https://example.com/song.mp3"),
        ("/kie/api/v1/generate/upload-extend", json!({"uploadUrl": from_library, "defaultParamFlag": true, "prompt": "and home again", "style": "folk", "title": "Dawn, longer", "continueAt": 1.5, "model": "V4_5PLUS"}), "/api/v1/generate/upload-extend", bed_kie_url.as_str()),
    ] {
        let (code, made) = post_as(&h, path, h.key.clone(), body.clone()).await;
        assert_eq!(code, 200, "{path}: {made}");
        let id = made["data"]["taskId"].as_str().unwrap().to_string();
        wait_until(&format!("{path} done"), 30, || async { status_of(&h, "/kie/api/v1/generate/record-info", &id).await.1["data"]["status"] == "SUCCESS" }).await;
        let t = h.store.task_get(&id).await.unwrap().unwrap();
        assert_eq!(t.result_urls.len(), 2, "{path}");
        let sent: Value = serde_json::from_str(&h.sim.world().tasks.get(t.kie_task_id.as_ref().unwrap()).map(|t| t.param.clone()).unwrap()).unwrap();
        assert_eq!(sent["uploadUrl"], sent_url, "{path}: KIE is sent a URL it can fetch: {sent}");
        if body["uploadUrl"] == from_library.as_str() {
            assert_eq!(t.input["uploadUrl"], from_library.as_str(), "the record keeps the Library reference");
            assert_eq!(gateway::money::receipts::line(&t, None).inputs, [format!("control-room://library/{bed}/0")], "its receipt names what it was made from");
        }
        assert_eq!(sent.get("model").and_then(Value::as_str), body.get("model").and_then(Value::as_str), "{path}: the model as given, no other: {sent}");
        assert!(h.sim.world().log.iter().any(|e| e.path == upstream && e.code == 200), "sent to {upstream}");
    }
    h.s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn what_a_family_refuses_is_refused_here_and_never_sent() {
    let h = harness("families-refuse", false).await;
    let post = |path: &'static str, body: Value| post_as(&h, path, h.key.clone(), body);
    let cases = [
        ("/kie/api/v1/veo/generate", json!({"model": "veo3", "aspectRatio": "16:9"}), 422, "prompt"),
        ("/kie/api/v1/veo/generate", json!({"model": "veo4", "prompt": "x"}), 404, "not supported"),
        ("/kie/api/v1/veo/generate", json!({"model": "google/imagen4", "prompt": "x"}), 404, "not supported"),
        ("/kie/api/v1/generate", json!({"model": "V4", "prompt": "x"}), 422, "customMode"),
        ("/kie/api/v1/generate", json!({"model": "V4", "prompt": "x", "customMode": false}), 422, "instrumental"),
        ("/kie/api/v1/generate", json!({"prompt": "x", "customMode": false, "instrumental": true}), 422, "model is required"),
        ("/kie/api/v1/generate", json!({"model": "V4", "customMode": true, "instrumental": true}), 422, "style and a title"),
        ("/kie/api/v1/runway/generate", json!({"prompt": "x", "duration": 10, "quality": "1080p"}), 422, "1080p"),
        ("/kie/api/v1/gpt4o-image/generate", json!({"prompt": "x"}), 422, "needs input.size"),
        ("/kie/api/v1/mj/generate", json!({"prompt": "x"}), 422, "taskType is required"),
        ("/kie/api/v1/mj/generate", json!({"taskType": "mj_img2img", "prompt": "x"}), 422, "needs input.fileUrls"),
        ("/kie/api/v1/mj/generate", json!({"taskType": "mj_txt2img", "prompt": "x", "speed": "warp"}), 422, "speed must be one of"),
        ("/kie/api/v1/mj/generate", json!({"taskType": "mj_upscale", "prompt": "x"}), 404, "POST /kie/api/v1/mj/generateUpscale"),
        ("/kie/api/v1/mj/generate", json!({"taskType": "mj_zoom", "prompt": "x"}), 404, "not supported"),
        ("/kie/api/v1/aleph/generate", json!({"prompt": "x"}), 422, "needs input.videoUrl"),
        ("/kie/api/v1/modify/generate", json!({"videoUrl": "https://example.com/a.mp4"}), 422, "needs input.prompt"),
        ("/kie/api/v1/aleph/generate", json!({"prompt": "x", "videoUrl": "https://example.com/a.mp4", "uploadCn": "no"}), 422, "uploadCn must be true or false"),
        ("/kie/api/v1/jobs/createTask", json!({"model": "veo3", "input": {"prompt": "x"}}), 404, "POST /kie/api/v1/veo/generate"),
        // More results than the price counts: never sent unpriced.
        ("/kie/api/v1/jobs/createTask", json!({"model": "google/imagen4", "input": {"prompt": "x", "num_images": 4}}), 422, "input.num_images changes what KIE charges"),
        ("/kie/api/v1/jobs/createTask", json!({"model": "bytedance/seedance-2", "input": {"prompt": "x", "duration": 10}}), 422, "input.duration"),
        // No price is known for Veo fast: without a per-job cap it cannot be held to a budget.
        ("/kie/api/v1/veo/generate", json!({"model": "veo3_fast", "prompt": "x"}), 422, "per-job cap"),
    ];
    for (path, body, code, says) in cases {
        let (status, answer) = post(path, body.clone()).await;
        assert_eq!((status, answer["code"].as_i64()), (code, Some(i64::from(code))), "{path} {body}: {answer}");
        assert!(answer["msg"].as_str().unwrap_or("").contains(says), "{path} {body}: {answer}");
    }
    assert_eq!(h.store.task_counts().await.unwrap().total, 0, "nothing was recorded");
    assert!(creates(&h.sim).is_empty(), "nothing was sent");

    // With a per-job cap, Veo fast may run, and that cap is what it holds.
    per_job_cap(&h, "0.5").await;
    let (status, answer) = post("/kie/api/v1/veo/generate", json!({"model": "veo3_fast", "prompt": "x"})).await;
    assert_eq!(status, 200, "{answer}");
    let t = h.store.task_get(answer["data"]["taskId"].as_str().unwrap()).await.unwrap().unwrap();
    assert_eq!((t.model.as_str(), t.estimated_cost), ("veo3_fast", gateway::Credits::from_credits(100)), "$0.50 = 100 credits held");
    // A family that takes no model name ignores one, whatever it is (found by schemathesis).
    let (status, answer) = post("/kie/api/v1/gpt4o-image/generate", json!({"prompt": "x", "size": "1:1", "model": false})).await;
    assert_eq!(status, 200, "{answer}");
    let t = h.store.task_get(answer["data"]["taskId"].as_str().unwrap()).await.unwrap().unwrap();
    assert!(t.input.get("model").is_none(), "{:?}", t.input);
    wait_until("sent to Veo's API", 20, || async { creates(&h.sim).iter().any(|c| c.1 == "/api/v1/veo/generate" && c.2 == 200) }).await;
    h.s.shutdown().await.unwrap();
}

async fn metric(base: &str, name: &str) -> f64 {
    let (_, text) = get_anon(&format!("{base}/metrics")).await;
    text.lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mixed_burst_stays_inside_one_account_window_and_callback_faults_resolve_once() {
    let h = harness("families-burst", false).await;
    // Callbacks: some duplicated, some dropped, some forged — every task still ends once.
    {
        let mut w = h.sim.world();
        w.faults.duplicate_callback_percent = 40;
        w.faults.drop_callback_percent = 30;
    }
    let bodies = [
        ("/kie/api/v1/jobs/createTask", json!({"model": "google/imagen4-fast", "input": {"prompt": "still"}})),
        ("/kie/api/v1/veo/generate", json!({"model": "veo3", "prompt": "shot"})),
        ("/kie/api/v1/generate", json!({"model": "V4", "prompt": "bed", "customMode": false, "instrumental": true})),
    ];
    let mut ids = Vec::new();
    for n in 0..30 {
        let (path, body) = &bodies[n % 3];
        let answer = post_kie(&format!("{}{path}", h.s.base), &h.key, body).await;
        assert_eq!(answer["code"], 200, "{answer}");
        ids.push(answer["data"]["taskId"].as_str().unwrap().to_string());
        if n == 20 {
            // Forged from here on, but only once a genuine callback has been applied: the
            // first tasks take ~0.4 s to end, less than these posts can take on a fast machine.
            wait_until("a genuine callback applied", 30, || metric(&h.s.base, "control_room_callbacks_received_total{outcome=\"applied\"}").map(|n| n >= 1.0)).await;
            h.sim.world().faults.wrong_signature = true;
        }
    }
    wait_until("every task ended", 90, || async {
        let mut all = true;
        for id in &ids {
            all &= h.store.task_get(id).await.unwrap().is_some_and(|t| t.state.is_terminal());
        }
        all
    })
    .await;
    let mut total = 0i64;
    for id in &ids {
        let t = h.store.task_get(id).await.unwrap().unwrap();
        assert_eq!(t.state, gateway::TaskState::Success, "{id}: {:?}", t.fail_msg);
        total += t.actual_cost.unwrap().milli();
    }
    let sent = creates(&h.sim);
    assert_eq!(sent.iter().filter(|c| c.2 == 429).count(), 0, "no upstream 429: {sent:?}");
    assert_eq!(sent.iter().filter(|c| c.2 == 200).count(), 30, "each task sent once");
    for (at, _, _) in &sent {
        let in_window = sent.iter().filter(|(t, _, code)| *code == 200 && *t >= *at && *t < at + 10_000).count();
        assert!(in_window <= 20, "{in_window} new tasks within 10 s of {at}");
    }
    let families: std::collections::HashSet<&str> = sent.iter().map(|c| c.1).collect();
    assert_eq!(families.len(), 3, "{families:?}");
    // The ledger counted each task once, whatever the callbacks did.
    let (_, status) = server_fn(&h.s.base, "console_status", "").await;
    assert_eq!(status["ledger"]["credits_consumed"], gateway::Credits(total).to_string(), "{status}");
    assert!(metric(&h.s.base, "control_room_callbacks_received_total{outcome=\"forged\"}").await >= 1.0, "forged callbacks were refused");
    assert!(metric(&h.s.base, "control_room_callbacks_received_total{outcome=\"applied\"}").await >= 1.0);
    h.s.shutdown().await.unwrap();
}
