//! The Library over HTTP: a result archived by the console, served to a signed-in person and
//! through signed links (ranges, ETag, caching), refused when a link is tampered with or
//! expired, and the relay answering Library links once a task's results are in it.

mod support;

use gateway::tasks::task::TaskQuery;
use serde_json::{Value, json};
use server::config::StoreConfig;
use std::time::Duration;
use support::*;

fn fast() -> kie_sim::Settings {
    kie_sim::Settings { schedule: kie_sim::Schedule { waiting_ms: 100, queuing_ms: 100, generating_ms: 200 }, ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_result_is_served_from_the_library_with_signed_links_and_the_relay_answers_them() {
    let (sim_base, sim) = start_sim_with(fast(), KEY, 10_000.0, None).await;
    let prefix = format!("{}:", testkit::unique("libhttp"));
    let store_cfg = StoreConfig::Redis { url: testkit::redis_url(), prefix, options: Default::default() };
    let (listener, base) = bind().await;
    let mut cfg = config(store_cfg.clone(), Some(KEY));
    cfg.kie_base_url = sim_base.parse().expect("url");
    cfg.public_url = Some(base.parse().expect("url"));
    cfg.library = Some(library("library-http"));
    let s = start_on(listener, cfg).await;
    let (_, ready) = get_anon(&format!("{base}/readyz")).await;
    assert_eq!(serde_json::from_str::<Value>(&ready).unwrap()["library"], "ready", "{ready}");

    let store = server::open_store(&store_cfg).await.expect("store");
    let key = gateway::team::relay_keys::create(store.as_ref(), &gateway::team::accounts::Actor::cli(), "trailer", "render farm").await.expect("key");
    let http = http();
    let created: Value = http
        .post(format!("{base}/kie/api/v1/jobs/createTask"))
        .bearer_auth(key.text.expose())
        .json(&json!({"model": "google/imagen4-fast", "input": {"prompt": "a lighthouse at dusk"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["data"]["taskId"].as_str().expect("taskId").to_string();
    let record = || async {
        let r: Value = http.get(format!("{base}/kie/api/v1/jobs/recordInfo?taskId={id}")).bearer_auth(key.text.expose()).send().await.unwrap().json().await.unwrap();
        serde_json::from_str::<Value>(r["data"]["resultJson"].as_str().unwrap_or("")).unwrap_or(Value::Null)
    };
    // First KIE's own URLs, then — once archived — signed Library links, KIE's kept aside.
    wait_until("the relay answers Library links", 40, || async { record().await.get("kieResultUrls").is_some() }).await;
    let result = record().await;
    let link = result["resultUrls"][0].as_str().expect("a Library link").to_string();
    let kie_url = result["kieResultUrls"][0].as_str().expect("KIE's URL").to_string();
    assert!(link.starts_with(&format!("{base}/library/{id}/0?exp=")), "{link}");
    assert!(kie_url.starts_with(&sim_base), "{kie_url}");
    let kie_bytes = http.get(&kie_url).send().await.unwrap().bytes().await.unwrap();

    // KIE deletes its copy; the signed link works with no other credential.
    sim.world().clock.advance(15 * 24 * 3600 * 1000);
    let r = http.get(&link).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "image/png");
    assert_eq!(h["content-length"], kie_bytes.len().to_string().as_str());
    assert!(h["cache-control"].to_str().unwrap().contains("immutable"));
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(h["x-content-type-options"], "nosniff");
    let etag = h["etag"].to_str().unwrap().to_string();
    assert_eq!(r.bytes().await.unwrap(), kie_bytes, "byte-identical after KIE deleted its copy");
    let part = http.get(&link).header("range", "bytes=0-7").send().await.unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.headers()["content-range"], format!("bytes 0-7/{}", kie_bytes.len()).as_str());
    assert_eq!(part.bytes().await.unwrap(), kie_bytes[..8]);
    assert_eq!(http.get(&link).header("range", "bytes=999999-").send().await.unwrap().status(), 416);
    assert_eq!(http.get(&link).header("if-none-match", &etag).send().await.unwrap().status(), 304);

    // Tampered, expired, or no credential at all: refused.
    let tampered = link.replace("/0?", "/1?");
    assert_eq!(http.get(&tampered).send().await.unwrap().status(), 403, "another asset's link");
    let bad_sig = format!("{}x", link);
    let r = http.get(&bad_sig).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("not valid"));
    let raw_key = store.kv_get("library:link-key").await.unwrap().expect("the link key is in the store");
    let old = gateway::library::links::LinkSigner::with_key(raw_key, Some(&base), Duration::from_secs(3600));
    let expired = old.link(&id, 0, gateway::store::now_ms() / 1000 - 3 * 3600);
    let r = http.get(&expired).send().await.unwrap();
    assert_eq!(r.status(), 403, "a link past its expiry");
    assert!(r.text().await.unwrap().contains("expired"));
    let plain = format!("{base}/library/{id}/0");
    assert_eq!(get_anon(&plain).await.0, 401, "no session, no link");
    // Signed in (the lowest role is enough): served, privately cached.
    let viewer = client_as(&base, VIEWER).await;
    let r = viewer.get(&plain).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["cache-control"].to_str().unwrap().starts_with("private"));
    assert_eq!(r.bytes().await.unwrap(), kie_bytes);
    assert_eq!(viewer.get(format!("{base}/library/{id}/5")).send().await.unwrap().status(), 404);
    assert_eq!(viewer.get(format!("{base}/library/no-such-task/0")).send().await.unwrap().status(), 404);

    // Deleting the project's copies: first what it deletes, then the project's name typed.
    let admin = client_as(&base, ADMIN).await;
    let delete = |pairs: Vec<(&'static str, &'static str)>| {
        let (admin, url) = (admin.clone(), format!("{base}/panel/retention"));
        async move {
            let r = admin.post(url).header("x-fragment", "1").form(&pairs).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (code, html) = delete(vec![("do", "review"), ("project", "trailer")]).await;
    assert_eq!(code, 200, "{html}");
    assert!(html.contains("Delete 1 file, ") && html.contains(" of project trailer?") && html.contains(r#"data-testid="confirm-typed""#), "{html}");
    for (typed, what) in [("trailr", "misspelt"), ("", "not typed")] {
        let (code, html) = delete(vec![("do", "delete"), ("project", "trailer"), ("confirm", typed)]).await;
        assert_eq!(code, 422, "{what}: {html}");
        assert!(html.contains("Type the project's name, trailer, to confirm"), "{html}");
    }
    let (_, html) = delete(vec![("do", "cancel"), ("project", "trailer"), ("confirm", "trailer")]).await;
    assert!(html.contains("Cancelled"), "{html}");
    assert_eq!(viewer.get(&plain).send().await.unwrap().status(), 200, "nothing deleted yet");
    let (code, html) = delete(vec![("do", "delete"), ("project", "trailer"), ("confirm", "trailer")]).await;
    assert_eq!(code, 200, "{html}");
    assert!(html.contains("1 copies deleted (audited)"), "{html}");
    assert_ne!(viewer.get(&plain).send().await.unwrap().status(), 200, "deleted");
    s.shutdown().await.expect("clean stop");
}

#[tokio::test]
async fn library_settings_are_checked_at_start() {
    use clap::Parser;
    let parse = |args: &[&str]| {
        let mut all = vec!["control-room"];
        all.extend_from_slice(args);
        server::config::Config::from_cli(server::config::Cli::try_parse_from(all).expect("flags"), &server::config::ProcessEnv)
    };
    let dir = testkit::scratch_dir("library-cfg");
    let d = dir.to_str().unwrap();
    let ok = parse(&["--data-dir", d]).expect("defaults");
    let lib = ok.library.expect("on by default");
    assert_eq!(lib.url.scheme(), "file");
    assert!(lib.url.path().ends_with("/library/"), "{}", lib.url);
    assert_eq!((lib.terms.retention_ms, lib.terms.buffer_ms), (14 * 86_400_000, 2 * 86_400_000));
    assert_eq!(lib.max_asset_bytes, 512 << 20);
    assert!(parse(&["--data-dir", d, "--library-url", "off"]).unwrap().library.is_none());
    let quota = parse(&["--data-dir", d, "--library-max-gb", "1.5"]).unwrap().library.unwrap();
    assert_eq!(quota.quota_bytes, Some(1_500_000_000));
    let s3 = parse(&["--data-dir", d, "--library-url", "s3://user:pw@bucket/prefix?x=1"]).unwrap().library.unwrap();
    assert_eq!(s3.display(), "s3://bucket/prefix", "credentials never shown");
    for (args, says) in [
        (vec!["--library-url", "ftp://x/"], "file:///path or s3://"),
        (vec!["--library-url", "not a url"], "LIBRARY_URL"),
        (vec!["--retention-days", "2", "--retention-buffer-days", "2"], "less than RETENTION_DAYS"),
        (vec!["--library-max-gb=-1"], "LIBRARY_MAX_GB"),
        (vec!["--library-max-gb", "lots"], "LIBRARY_MAX_GB"),
    ] {
        let mut all = vec!["--data-dir", d];
        all.extend(args.iter().copied());
        let err = parse(&all).expect_err(&format!("{args:?}"));
        assert!(err.to_string().contains(says), "{args:?}: {err}");
    }
}

/// A batch from panel 06 (previewed, then admitted whole), a relay task joining an open batch
/// by its header (and refused the console batch's name), the batch's progress on the panel,
/// and its Library copies downloaded as one zip with its index — to a signed-in person only.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_is_submitted_from_the_panel_followed_and_downloaded_as_one_zip() {
    let (sim_base, _sim) = start_sim_with(fast(), KEY, 10_000.0, None).await;
    let store_cfg = StoreConfig::Redis { url: testkit::redis_url(), prefix: format!("{}:", testkit::unique("batchzip")), options: Default::default() };
    seed_users(&store_cfg).await;
    let (listener, base) = bind().await;
    let mut cfg = config(store_cfg.clone(), Some(KEY));
    cfg.kie_base_url = sim_base.parse().expect("url");
    cfg.public_url = Some(base.parse().expect("url"));
    cfg.library = Some(library("library-batch"));
    let s = start_on(listener, cfg).await;
    let producer = session(&base, PRODUCER).await;
    let csv = "prompt,seed\n\"a kite, red\",1\na boat,2\na gull,3\n";
    let fields = [("do", "batch"), ("name", "stills"), ("project", "trailer"), ("model", "google/imagen4-fast"), ("format", "csv"), ("rows", csv), ("variants", "2")];
    let page = post_form(&base, "/panel/throttle", Some(&producer), &fields).await.text().await.unwrap();
    assert!(page.contains("Batch stills: 6 tasks, estimated 24 credits ($0.12) together."), "the preview: {page}");
    let viewer = session(&base, VIEWER).await;
    let refused = post_form(&base, "/panel/throttle", Some(&viewer), &[&fields[..], &[("run", "1")]].concat()).await.text().await.unwrap();
    assert!(refused.contains("needs the producer role"), "{refused}");
    let page = post_form(&base, "/panel/throttle", Some(&producer), &[&fields[..], &[("run", "1")]].concat()).await.text().await.unwrap();
    assert!(page.contains("Batch stills admitted: 6 tasks queued, estimated 24 credits ($0.12)."), "{page}");

    // The relay: a console batch's name is refused; a new name is an open batch.
    let store = server::open_store(&store_cfg).await.expect("store");
    let key = gateway::team::relay_keys::create(store.as_ref(), &gateway::team::accounts::Actor::cli(), "trailer", "farm").await.expect("key");
    let create = |batch: &'static str| {
        http().post(format!("{base}/kie/api/v1/jobs/createTask")).bearer_auth(key.text.expose()).header("x-control-room-batch", batch).json(&json!({"model": "google/imagen4-fast", "input": {"prompt": "a lighthouse"}})).send()
    };
    let r: Value = create("stills").await.unwrap().json().await.unwrap();
    assert_eq!(r["code"], 422, "{r}");
    assert!(r["msg"].as_str().unwrap_or_default().contains("names a batch submitted from the console"), "{r}");
    let r: Value = create("farm-night").await.unwrap().json().await.unwrap();
    assert_eq!(r["code"], 200, "{r}");
    let tasks = |name: &'static str| {
        let store = store.clone();
        async move { store.task_list(&TaskQuery { batch: Some(name.into()), limit: 100, ..Default::default() }).await.unwrap().tasks }
    };
    assert_eq!(tasks("farm-night").await.len(), 1);

    // Followed to the end: all six in the Library, the panel at 100 %.
    wait_until("the batch's results are in the Library", 60, || async { tasks("stills").await.iter().all(|t| t.archive.as_ref().is_some_and(|a| a.assets.iter().all(|x| x.state == gateway::library::asset::AssetState::Archived))) }).await;
    let panel = client_as(&base, VIEWER).await.get(format!("{base}/panel/throttle")).send().await.unwrap().text().await.unwrap();
    assert!(panel.contains("6/6 done") && panel.contains(r#"data-testid="batch-progress" data-percent="100""#), "{panel}");

    // One zip: every Library copy byte for byte, and the batch's index.
    let viewer_http = client_as(&base, VIEWER).await;
    let r = viewer_http.get(format!("{base}/batches/stills/zip")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/zip");
    assert!(r.headers()["content-disposition"].to_str().unwrap().contains("stills.zip"));
    let bytes = r.bytes().await.unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).expect("a readable zip");
    assert_eq!(zip.len(), 7, "six results and batch.csv");
    for t in tasks("stills").await {
        let name = format!("{}-0.png", t.id);
        let mut inside = Vec::new();
        std::io::Read::read_to_end(&mut zip.by_name(&name).unwrap_or_else(|_| panic!("{name} in the zip")), &mut inside).unwrap();
        let copy = viewer_http.get(format!("{base}/library/{}/0", t.id)).send().await.unwrap().bytes().await.unwrap();
        assert_eq!(inside, copy.to_vec(), "{name} is the Library's copy");
    }
    let mut index = String::new();
    std::io::Read::read_to_string(&mut zip.by_name("batch.csv").unwrap(), &mut index).unwrap();
    assert_eq!(index.lines().count(), 7, "a header and a line a task: {index}");
    assert!(index.contains("\"a kite, red\""), "{index}");
    assert_ne!(get_anon(&format!("{base}/batches/stills/zip")).await.0, 200, "not without a session");
    assert_eq!(viewer_http.get(format!("{base}/batches/nope/zip")).send().await.unwrap().status(), 404);
    s.shutdown().await.expect("clean stop");
}
