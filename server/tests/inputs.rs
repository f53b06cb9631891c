//! Inputs from the Library and KIE's upload calls, over HTTP against kie-sim (issue 31 §1):
//! an image one task made, named as the input of an image-to-video task through the relay,
//! reaches KIE as KIE's own URL while it lives and as an upload of the Library's copy after
//! (reused while the upload lives); a signed link works across projects, a reference only in
//! the key's own; the relay's three upload calls answer as KIE does, bounded and through the
//! outbound policy.

mod support;

use serde_json::{Value, json};
use support::*;

fn fast() -> kie_sim::Settings {
    kie_sim::Settings { schedule: kie_sim::Schedule { waiting_ms: 100, queuing_ms: 100, generating_ms: 200 }, ..Default::default() }
}

/// POSTs a createTask through the relay; (HTTP status, body).
async fn create(base: &str, key: &str, body: Value) -> (u16, Value) {
    let r = http().post(format!("{base}/kie/api/v1/jobs/createTask")).bearer_auth(key).json(&body).send().await.expect("POST");
    (r.status().as_u16(), r.json().await.expect("JSON"))
}

/// The task's record once KIE took it (the dispatcher sent it) or it ended.
async fn sent(store: &dyn gateway::Store, id: &str) -> gateway::TaskRecord {
    for _ in 0..300 {
        if let Some(t) = store.task_get(id).await.expect("read").filter(|t| t.kie_task_id.is_some() || t.state.is_terminal()) {
            return t;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("task {id} did not reach KIE within 30 s");
}

/// What kie-sim was asked to make for KIE task `kie_id`: its `input`.
fn sent_input(sim: &kie_sim::Sim, kie_id: &str) -> Value {
    let param = sim.world().tasks.get(kie_id).expect("kie-sim has the task").param.clone();
    serde_json::from_str::<Value>(&param).expect("param is JSON")["input"].clone()
}

fn uploads_made(sim: &kie_sim::Sim) -> usize {
    sim.world().log.iter().filter(|l| l.path == "/api/file-stream-upload" && l.code == 200).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_library_asset_is_sent_as_kies_own_url_while_it_lives_then_as_an_upload_of_the_copy() {
    let (s, store, sim) = start_with_library("inputs", fast()).await;
    let base = s.base.clone();
    let cli = gateway::team::accounts::Actor::cli();
    let trailer = gateway::team::relay_keys::create(store.as_ref(), &cli, "trailer", "farm").await.expect("key");
    let teaser = gateway::team::relay_keys::create(store.as_ref(), &cli, "teaser", "other farm").await.expect("key");
    let key = trailer.text.expose().to_string();

    // A frame, made and copied into the Library.
    let (code, made) = create(&base, &key, json!({"model": "google/imagen4-fast", "input": {"prompt": "a lighthouse at dusk"}})).await;
    assert_eq!(code, 200, "{made}");
    let frame = made["data"]["taskId"].as_str().expect("taskId").to_string();
    let mut link = String::new();
    for _ in 0..400 {
        let r: Value = http().get(format!("{base}/kie/api/v1/jobs/recordInfo?taskId={frame}")).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
        let result: Value = serde_json::from_str(r["data"]["resultJson"].as_str().unwrap_or("null")).unwrap_or(Value::Null);
        if result.get("kieResultUrls").is_some() {
            link = result["resultUrls"][0].as_str().unwrap_or_default().to_string();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(link.starts_with(&format!("{base}/library/{frame}/0?exp=")), "{link}");
    let source = store.task_get(&frame).await.unwrap().expect("the frame");
    let kie_url = source.result_urls[0].clone();

    // Named by reference, while KIE's own copy lives: KIE is sent its own URL.
    let video = |image: &str| json!({"model": "kling-2.6/image-to-video", "input": {"prompt": "the light turns", "image_urls": [image], "duration": "5"}});
    let reference = format!("control-room://library/{frame}/0");
    let (code, made) = create(&base, &key, video(&reference)).await;
    assert_eq!(code, 200, "{made}");
    let first = sent(store.as_ref(), made["data"]["taskId"].as_str().unwrap()).await;
    let kie_id = first.kie_task_id.clone().expect("sent");
    assert_eq!(sent_input(&sim, &kie_id)["image_urls"], json!([kie_url]), "KIE's own live URL");
    assert_eq!(first.input["image_urls"], json!([reference]), "the record keeps the reference");
    assert_eq!(first.inputs.len(), 1);
    assert_eq!((first.inputs[0].field.as_str(), first.inputs[0].task.as_str(), first.inputs[0].n), ("image_urls[0]", frame.as_str(), 0));
    let story: Vec<&str> = first.story.beats.iter().map(|b| b.text.as_str()).collect();
    assert!(story.iter().any(|b| b.contains(&format!("made from {frame} result 0 in the Library"))), "{story:?}");
    assert!(story.iter().any(|b| b.contains("sent to KIE as KIE's own result URL")), "{story:?}");
    assert_eq!(uploads_made(&sim), 0, "nothing uploaded while KIE's copy lives");
    let line = gateway::money::receipts::line(&first, None);
    assert_eq!(line.inputs, vec![reference.clone()], "the receipt says what it was made from");
    assert!(gateway::money::receipts::csv_rows(std::slice::from_ref(&line)).trim_end().ends_with(&format!(",\"{reference}\"")), "and its CSV");

    // The frame ended 13 hours ago: KIE's copy may have lapsed, so the Library's is uploaded.
    let mut old = store.task_get(&frame).await.unwrap().expect("the frame");
    old.finished_ms = Some(gateway::store::now_ms() - 13 * 3600 * 1000);
    store.task_update(&old).await.unwrap().expect("rewritten");
    // Given as the console's signed link this time: never sent to KIE as such.
    let (code, made) = create(&base, &key, video(&link)).await;
    assert_eq!(code, 200, "{made}");
    let second = sent(store.as_ref(), made["data"]["taskId"].as_str().unwrap()).await;
    assert_eq!(second.input["image_urls"], json!([reference]), "a Library link is recorded as its reference");
    assert!(second.inputs[0].signed);
    let sent_url = sent_input(&sim, second.kie_task_id.as_deref().expect("sent"))["image_urls"][0].as_str().expect("a URL").to_string();
    assert!(sent_url.contains("/uploads/") && !sent_url.contains("/library/"), "{sent_url}");
    let uploaded = http().get(&sent_url).send().await.unwrap();
    assert_eq!(uploaded.status(), 200);
    let library_copy = http().get(&link).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(uploaded.bytes().await.unwrap(), library_copy, "KIE gets the Library's bytes");
    assert_eq!(uploads_made(&sim), 1);
    assert!(second.story.beats.iter().any(|b| b.text.contains("sent to KIE as an upload of the Library's copy")), "{:?}", second.story.beats);

    // Again: the upload is reused while it lives.
    let (_, made) = create(&base, &key, video(&reference)).await;
    let third = sent(store.as_ref(), made["data"]["taskId"].as_str().unwrap()).await;
    assert_eq!(sent_input(&sim, third.kie_task_id.as_deref().expect("sent"))["image_urls"], json!([sent_url]));
    assert_eq!(uploads_made(&sim), 1, "not uploaded twice");

    // Another project's key: a reference is not theirs to use; the signed link is a capability.
    let other = teaser.text.expose().to_string();
    let (code, refused) = create(&base, &other, video(&reference)).await;
    assert_eq!(code, 422, "{refused}");
    assert!(refused["msg"].as_str().unwrap().contains(&format!("input.image_urls[0]: there is no task {frame} in the Library that you can use")), "{refused}");
    let (code, taken) = create(&base, &other, video(&link)).await;
    assert_eq!(code, 200, "{taken}");

    // Malformed or missing: refused, naming the field and what to write; nothing recorded.
    let before = store.task_counts().await.unwrap().total;
    for (image, says) in [
        (format!("control-room://library/{frame}"), "<task>/<n>".to_string()),
        (format!("control-room://library/{frame}/3"), format!("{frame} made no result 3")),
        ("control-room://library/cr_nothing/0".to_string(), "there is no task cr_nothing".to_string()),
    ] {
        let (code, refused) = create(&base, &key, video(&image)).await;
        assert_eq!(code, 422, "{image}: {refused}");
        assert!(refused["msg"].as_str().unwrap().contains(&says), "{image}: {refused}");
    }
    assert_eq!(store.task_counts().await.unwrap().total, before, "a refusal writes nothing");
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_relays_upload_calls_answer_as_kie_does_bounded_and_through_the_outbound_policy() {
    let (sim_base, sim) = start_sim_with(fast(), KEY, 1_000.0, None).await;
    let store_cfg = redis_store(&format!("{}:", testkit::unique("uploads")));
    let mut cfg = config(store_cfg.clone(), Some(KEY));
    cfg.kie_base_url = sim_base.parse().expect("url");
    cfg.upload_max_bytes = 1 << 20;
    let sim_host = sim_base.trim_start_matches("http://").to_string();
    cfg.outbound = gateway::outbound::OutboundPolicy::parse(&sim_host).expect("policy");
    let s = start(cfg).await;
    let base = s.base.clone();
    let store = server::open_store(&store_cfg).await.expect("store");
    let key = gateway::team::relay_keys::create(store.as_ref(), &gateway::team::accounts::Actor::cli(), "trailer", "farm").await.expect("key");
    let key = key.text.expose().to_string();
    let png = kie_sim::media::png(8, 8, [200, 40, 40]);

    // Multipart, as KIE's SDKs send it.
    let form = reqwest::multipart::Form::new()
        .text("uploadPath", "frames")
        .text("fileName", "red.png")
        .part("file", reqwest::multipart::Part::bytes(png.clone()).file_name("red.png").mime_str("image/png").unwrap());
    let r = http().post(format!("{base}/kie/api/file-stream-upload")).bearer_auth(&key).multipart(form).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["code"], 200, "{answer}");
    let url = answer["data"]["downloadUrl"].as_str().expect("downloadUrl").to_string();
    assert!(url.starts_with(&sim_base) && url.ends_with("/red.png"), "{url}");
    assert_eq!(http().get(&url).send().await.unwrap().bytes().await.unwrap(), png, "KIE serves what was sent");

    // Base64 (a data: URL).
    use base64::Engine;
    let data = format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(&png));
    let r = http().post(format!("{base}/kie/api/file-base64-upload")).bearer_auth(&key).json(&json!({"base64Data": data, "uploadPath": "frames", "fileName": "b.png"})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let url64 = r.json::<Value>().await.unwrap()["data"]["downloadUrl"].as_str().expect("downloadUrl").to_string();
    assert_eq!(http().get(&url64).send().await.unwrap().bytes().await.unwrap(), png);

    // A URL KIE fetches: one the outbound policy admits (kie-sim's host, listed), not the
    // console's own loopback address or a private network.
    let r = http().post(format!("{base}/kie/api/file-url-upload")).bearer_auth(&key).json(&json!({"fileUrl": url, "uploadPath": "frames", "fileName": "c.png"})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let url_c = r.json::<Value>().await.unwrap()["data"]["downloadUrl"].as_str().expect("downloadUrl").to_string();
    assert_eq!(http().get(&url_c).send().await.unwrap().bytes().await.unwrap(), png);
    let fetched_before = sim.world().log.iter().filter(|l| l.path == "/api/file-url-upload").count();
    for target in [format!("{base}/metrics"), "http://10.1.2.3/secret.png".to_string(), "http://169.254.169.254/latest/meta-data/".to_string()] {
        let r = http().post(format!("{base}/kie/api/file-url-upload")).bearer_auth(&key).json(&json!({"fileUrl": target, "uploadPath": "frames"})).send().await.unwrap();
        assert_eq!(r.status(), 422, "{target}");
        let refused: Value = r.json().await.unwrap();
        assert!(refused["msg"].as_str().unwrap().starts_with("fileUrl refused: "), "{target}: {refused}");
    }
    assert_eq!(sim.world().log.iter().filter(|l| l.path == "/api/file-url-upload").count(), fetched_before, "nothing refused reached KIE");

    // Bounds, shape and who asks. A file sent without a declared length is cut off at the
    // limit (one that declares more is refused before it is read).
    let big: Vec<Result<Vec<u8>, std::io::Error>> = (0..11).map(|_| Ok(vec![7u8; 100 * 1024])).collect();
    let part = reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(futures::stream::iter(big))).file_name("big.bin");
    let form = reqwest::multipart::Form::new().text("uploadPath", "frames").part("file", part);
    let r = http().post(format!("{base}/kie/api/file-stream-upload")).bearer_auth(&key).multipart(form).send().await.unwrap();
    assert_eq!(r.status(), 413);
    assert!(r.json::<Value>().await.unwrap()["msg"].as_str().unwrap().contains("UPLOAD_MAX_MB = 1 MiB"));
    let r = http().post(format!("{base}/kie/api/file-base64-upload")).bearer_auth(&key).body("base64Data=x").header("content-type", "application/x-www-form-urlencoded").send().await.unwrap();
    assert_eq!(r.status(), 415);
    let r = http().post(format!("{base}/kie/api/file-base64-upload")).json(&json!({"base64Data": "AAAA", "uploadPath": "x"})).send().await.unwrap();
    assert_eq!(r.status(), 401, "no relay key, no upload");
    assert_eq!(r.json::<Value>().await.unwrap()["code"], 401);
    s.shutdown().await.unwrap();
}

/// `RELAY_UPLOAD_GB_PER_DAY`: a key's uploads are counted in bytes over 24 hours across the
/// house; past its allowance the next is refused (429, saying how much and when) before
/// anything reaches KIE, and another key is not held by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_keys_uploads_are_bounded_per_day_and_a_refusal_sends_nothing() {
    let (sim_base, sim) = start_sim_with(fast(), KEY, 1_000.0, None).await;
    let store_cfg = redis_store(&format!("{}:", testkit::unique("upload-day")));
    let mut cfg = config(store_cfg.clone(), Some(KEY));
    cfg.kie_base_url = sim_base.parse().expect("url");
    cfg.relay_upload_bytes_per_day = Some(2_000);
    let s = start(cfg).await;
    let store = server::open_store(&store_cfg).await.expect("store");
    let new_key = |label: &'static str| {
        let store = store.clone();
        async move { gateway::team::relay_keys::create(store.as_ref(), &gateway::team::accounts::Actor::cli(), "trailer", label).await.expect("key").text.expose().to_string() }
    };
    let (farm, edit) = (new_key("farm").await, new_key("edit").await);
    use base64::Engine;
    // About 900 bytes a body.
    let body = json!({"base64Data": base64::engine::general_purpose::STANDARD.encode(vec![9u8; 600]), "uploadPath": "frames", "fileName": "a.bin"});
    let upload = |key: String| {
        let (base, body) = (s.base.clone(), body.clone());
        async move { http().post(format!("{base}/kie/api/file-base64-upload")).bearer_auth(key).json(&body).send().await.unwrap() }
    };
    let uploads = || sim.world().log.iter().filter(|l| l.path == "/api/file-base64-upload").count();
    for _ in 0..2 {
        assert_eq!(upload(farm.clone()).await.status(), 200);
    }
    let r = upload(farm.clone()).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"), "says when");
    let msg = r.json::<Value>().await.unwrap()["msg"].as_str().unwrap().to_string();
    assert!(msg.contains("of the 2000 bytes it may in 24 hours (RELAY_UPLOAD_GB_PER_DAY)"), "{msg}");
    assert_eq!(uploads(), 2, "the refused upload never reached KIE");
    assert_eq!(upload(edit).await.status(), 200, "another key has its own day");
    assert_eq!(uploads(), 3);
    s.shutdown().await.unwrap();
}

/// A multipart form as a browser sends panel 07's "Add from your desk".
fn desk_form(project: &str, name: &str, bytes: Vec<u8>) -> reqwest::multipart::Form {
    reqwest::multipart::Form::new().text("project", project.to_string()).part("file", reqwest::multipart::Part::bytes(bytes).file_name(name.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_file_from_the_desk_is_kept_in_the_library_and_reaches_kie_as_an_upload_of_the_copy() {
    let (sim_base, sim) = start_sim_with(fast(), KEY, 10_000.0, None).await;
    let store_cfg = redis_store(&format!("{}:", testkit::unique("desk")));
    seed_users(&store_cfg).await;
    let (listener, base) = bind().await;
    let mut cfg = config(store_cfg.clone(), Some(KEY));
    cfg.kie_base_url = sim_base.parse().expect("url");
    cfg.public_url = Some(base.parse().expect("url"));
    cfg.library = Some(library("desk"));
    cfg.upload_max_bytes = 1 << 20;
    let s = start_on(listener, cfg).await;
    let store = server::open_store(&store_cfg).await.expect("store");
    let producer = client_as(&base, PRODUCER).await;
    let png = kie_sim::media::png(16, 9, [20, 90, 200]);

    // Kept, then the composer opens with it as the input.
    let r = producer.post(format!("{base}/library/upload")).multipart(desk_form("trailer", "storyboard frame.png", png.clone())).send().await.unwrap();
    assert_eq!(r.status(), 303, "{:?}", r.text().await);
    let to = r.headers()["location"].to_str().unwrap().to_string();
    let id = to.strip_prefix("/?input=").and_then(|t| t.strip_suffix("/0#composer")).unwrap_or_else(|| panic!("{to}")).to_string();
    let kept = store.task_get(&id).await.unwrap().expect("its record");
    assert_eq!((kept.model.as_str(), kept.project.as_str(), kept.owner.as_str(), kept.state), (gateway::library::desk::DESK_MODEL, "trailer", PRODUCER, gateway::TaskState::Success));
    assert_eq!(kept.actual_cost, Some(gateway::Credits::ZERO));
    let asset = &kept.archive.as_ref().expect("archive").assets[0];
    assert_eq!((asset.state, asset.content_type.as_deref(), asset.bytes), (gateway::library::asset::AssetState::Archived, Some("image/png"), Some(png.len() as u64)));
    let served = producer.get(format!("{base}/library/{id}/0")).send().await.unwrap();
    assert_eq!(served.bytes().await.unwrap(), png, "the Library serves what was sent");
    // The page the composer opens on carries the reference.
    let page = producer.get(format!("{base}{}", to.trim_end_matches("#composer"))).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(&format!("control-room://library/{id}/0")), "the composer is given the input");
    // A track from the desk opens the composer on a model whose URL field takes audio, with it there.
    let r = producer.post(format!("{base}/library/upload")).multipart(desk_form("trailer", "guide vocal.wav", kie_sim::media::wav(440, 8000, 800))).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let to = r.headers()["location"].to_str().unwrap().to_string();
    let track = to.strip_prefix("/?input=").and_then(|t| t.strip_suffix("/0&media=audio#composer")).unwrap_or_else(|| panic!("{to}")).to_string();
    let page = producer.get(format!("{base}{}", to.trim_end_matches("#composer"))).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(&format!("control-room://library/{track}/0")) && page.contains("&quot;input_field&quot;:&quot;uploadUrl&quot;"), "the composer is given the track and the field it fills");
    assert!(page.contains(r#"data-field="uploadUrl""#), "the composer opens on a model whose URL field takes audio");
    assert!(page.contains(r#"list="library-inputs" name="uploadUrl""#), "its URL field takes the picker's suggestions");
    // The composer's picker, inside the composer: both files with their previews, each a Use
    // that opens the composer with it, and their references the URL fields' suggestions.
    let page = producer.get(format!("{base}/")).send().await.unwrap().text().await.unwrap();
    let compose = page.split(r#"class="compose""#).nth(1).and_then(|c| c.split(r#"class="filters""#).next()).expect("the composer");
    let picker = compose.split(r#"data-testid="library-picker""#).nth(1).expect("the picker is in the composer");
    for (task, to) in [(&id, format!("/?input={id}/0#composer")), (&track, format!("/?input={track}/0&amp;media=audio#composer"))] {
        assert!(picker.contains(&format!(r#"href="{to}""#)), "{task}'s Use: {picker}");
        assert!(picker.contains(&format!(r#"src="/library/{task}/0""#)), "{task}'s preview");
        assert!(picker.contains(&format!(r#"value="control-room://library/{task}/0""#)), "{task} suggested");
    }

    // As an input: a desk file never was KIE's, so its copy is uploaded to KIE.
    let key = gateway::team::relay_keys::create(store.as_ref(), &gateway::team::accounts::Actor::cli(), "trailer", "farm").await.expect("key");
    let input = json!({"model": "kling-2.6/image-to-video", "input": {"prompt": "the board comes alive", "image_urls": [format!("control-room://library/{id}/0")], "duration": "5"}});
    let (code, made) = create(&base, key.text.expose(), input).await;
    assert_eq!(code, 200, "{made}");
    let t = sent(store.as_ref(), made["data"]["taskId"].as_str().unwrap()).await;
    let url = sent_input(&sim, t.kie_task_id.as_deref().expect("sent"))["image_urls"][0].as_str().expect("url").to_string();
    assert!(url.contains("/uploads/"), "{url}");
    assert_eq!(http().get(&url).send().await.unwrap().bytes().await.unwrap(), png);

    // Refused, with nothing kept: not media, too large, a viewer, no session, another site.
    let before = store.task_counts().await.unwrap().total;
    let r = producer.post(format!("{base}/library/upload")).multipart(desk_form("trailer", "notes.png", b"just some text, named like an image".to_vec())).send().await.unwrap();
    assert_eq!(r.status(), 415);
    assert!(r.text().await.unwrap().contains("not an image, a video or an audio file"));
    // A MIDI file is notes, not sound: no model takes it as an input.
    let midi = gateway::library::midi::file(&kie_sim::families::midi_data(1)).unwrap();
    let r = producer.post(format!("{base}/library/upload")).multipart(desk_form("trailer", "bassline.mid", midi)).send().await.unwrap();
    assert_eq!(r.status(), 415);
    let r = producer.post(format!("{base}/library/upload")).multipart(desk_form("trailer", "huge.png", [png.clone(), vec![0u8; 1 << 20]].concat())).send().await;
    if let Ok(r) = r {
        assert_eq!(r.status(), 413, "larger than UPLOAD_MAX_MB");
    }
    let viewer = client_as(&base, VIEWER).await;
    assert_eq!(viewer.post(format!("{base}/library/upload")).multipart(desk_form("trailer", "a.png", png.clone())).send().await.unwrap().status(), 403);
    assert_eq!(no_redirects().post(format!("{base}/library/upload")).header("origin", &base).multipart(desk_form("trailer", "a.png", png.clone())).send().await.unwrap().status(), 401);
    let token = session(&base, PRODUCER).await;
    let cross = no_redirects().post(format!("{base}/library/upload")).header("origin", "https://evil.example").header("cookie", cookie(&token)).multipart(desk_form("trailer", "a.png", png.clone())).send().await.unwrap();
    assert_eq!(cross.status(), 403, "another site's form");
    assert_eq!(store.task_counts().await.unwrap().total, before, "nothing of a refused file stays");
    s.shutdown().await.unwrap();
}

/// A file from the desk on its way in: how much has arrived is written on its record about once
/// a second and shown in panel 07 ("From desks") to everyone who sees the project, and one
/// announced as larger than the console takes is refused before a byte of it is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_file_from_the_desk_shows_how_much_has_arrived_while_it_comes_in() {
    use gateway::library::asset::{Arrival, AssetState};
    use gateway::tasks::task::{Mark, TaskQuery};
    let store_cfg = redis_store(&format!("{}:", testkit::unique("arrive")));
    seed_users(&store_cfg).await;
    let (listener, base) = bind().await;
    let mut cfg = config(store_cfg.clone(), Some(KEY));
    cfg.library = Some(library("arrive"));
    cfg.upload_max_bytes = 1 << 20;
    let s = start_on(listener, cfg).await;
    let store = server::open_store(&store_cfg).await.expect("store");
    let token = session(&base, PRODUCER).await;
    let producer = client_as(&base, PRODUCER).await;

    // The form as a browser sends it, written by hand so its file can be sent in two halves.
    let wav = kie_sim::media::wav(440, 8000, 600_000);
    let boundary = "----desk-progress-boundary";
    let head = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"project\"\r\n\r\ntrailer\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"room tone.wav\"\r\nContent-Type: audio/wav\r\n\r\n");
    let tail = format!("\r\n--{boundary}--\r\n");
    let length = (head.len() + wav.len() + tail.len()) as u64;
    let (send, body) = futures::channel::mpsc::unbounded::<Result<axum::body::Bytes, std::io::Error>>();
    let half = wav.len() / 2;
    send.unbounded_send(Ok(axum::body::Bytes::from([head.as_bytes(), &wav[..half]].concat()))).unwrap();
    let posted = tokio::spawn(
        no_redirects()
            .post(format!("{base}/library/upload"))
            .header("cookie", cookie(&token))
            .header("origin", &base)
            .header("content-type", format!("multipart/form-data; boundary={boundary}"))
            .header("content-length", length.to_string())
            .body(reqwest::Body::wrap_stream(body))
            .send(),
    );

    // Half of it in: its record says so (the form parser may still hold back a boundary's
    // length), against the length the request announced.
    let mut on_its_way = None;
    for _ in 0..100 {
        let page = store.task_list(&TaskQuery { mark: Some(Mark::ArchivePending), ..Default::default() }).await.unwrap();
        if let Some(t) = page.tasks.into_iter().find(|t| t.archive.as_ref().is_some_and(|a| a.assets[0].arriving.is_some())) {
            on_its_way = Some(t);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let t = on_its_way.expect("a record of the file on its way, written within 10 s");
    let Some(Arrival { received, expected, .. }) = t.archive.as_ref().unwrap().assets[0].arriving else { unreachable!() };
    assert_eq!(expected, Some(length), "against the announced length");
    assert!(received <= half as u64 && received + 256 >= half as u64, "{received} of the {half} bytes sent so far");
    let words = format!("Arriving {} of {} ({} %)", app::view::size(received), app::view::size(length), received * 100 / length);
    let panel = producer.get(format!("{base}/panel/retention")).send().await.unwrap().text().await.unwrap();
    let arriving = panel.split(r#"data-testid="library-arriving""#).nth(1).expect("panel 07 lists the file on its way in");
    assert!(arriving.contains(&format!("room tone.wav (trailer, {PRODUCER}): {words}")), "{arriving}");
    let viewer = client_as(&base, VIEWER).await;
    assert!(viewer.get(format!("{base}/panel/retention")).send().await.unwrap().text().await.unwrap().contains(&words), "a viewer of the project sees it too");

    // The rest: kept, and the progress gone from its record and the panel.
    send.unbounded_send(Ok(axum::body::Bytes::from([&wav[half..], tail.as_bytes()].concat()))).unwrap();
    drop(send);
    let r = posted.await.unwrap().unwrap();
    assert_eq!(r.status(), 303, "{:?}", r.text().await);
    let kept = store.task_get(&t.id).await.unwrap().expect("its record");
    let asset = &kept.archive.as_ref().unwrap().assets[0];
    assert_eq!((asset.state, asset.bytes, asset.arriving), (AssetState::Archived, Some(wav.len() as u64), None));
    assert!(!producer.get(format!("{base}/panel/retention")).send().await.unwrap().text().await.unwrap().contains("library-arriving"));

    // Announced as larger than UPLOAD_MAX_MB: refused before its body is read (this one's
    // never ends), with nothing recorded.
    let before = store.task_counts().await.unwrap().total;
    use futures::StreamExt;
    let endless = futures::stream::once(std::future::ready(Ok::<_, std::io::Error>(axum::body::Bytes::from(head.clone())))).chain(futures::stream::pending());
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        no_redirects()
            .post(format!("{base}/library/upload"))
            .header("cookie", cookie(&token))
            .header("origin", &base)
            .header("content-type", format!("multipart/form-data; boundary={boundary}"))
            .header("content-length", (2u64 << 20).to_string())
            .body(reqwest::Body::wrap_stream(endless))
            .send(),
    )
    .await
    .expect("answered without waiting for the body")
    .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.text().await.unwrap(), "The file is larger than this console takes (1 MiB). Nothing was kept.");
    assert_eq!(store.task_counts().await.unwrap().total, before, "nothing recorded");
    s.shutdown().await.unwrap();
}
