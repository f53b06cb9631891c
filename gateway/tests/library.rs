//! The Library and its archiver, over real HTTP (kie-sim and loopback sources), a real Redis
//! and real object stores (a local folder; an S3-compatible server, moto, for the S3 path).

use futures::StreamExt;
use gateway::kie::{ClientOptions, KieClient};
use gateway::library::asset::{Archive, AssetState, Terms};
use gateway::library::{Library, LibraryConfig, Sources};
use gateway::outbound::OutboundPolicy;
use gateway::store::now_ms;
use gateway::tasks::task::{FailClass, Mark, TaskQuery, TaskState};
use gateway::team::accounts::{Actor, Role};
use gateway::{Lifecycle, LifecycleOptions, RedisStore, Secret, Store, TaskRecord};
use kie_sim::{Schedule, Settings, Sim};
use object_store::ObjectStore;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const KEY: &str = "library-test-key";
const DAY_MS: u64 = 24 * 3600 * 1000;

async fn sim(settings: Settings) -> (Sim, String) {
    let sim = Sim::new(settings);
    sim.add_account(KEY, 1_000_000.0, None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(sim.clone().serve(listener, std::future::pending()));
    (sim, base)
}

fn fast() -> Settings {
    Settings { schedule: Schedule { waiting_ms: 100, queuing_ms: 100, generating_ms: 200 }, ..Default::default() }
}

async fn redis() -> Arc<dyn Store> {
    Arc::new(RedisStore::connect(&testkit::redis_url(), &format!("{}:", testkit::unique("lib"))).await.unwrap())
}

async fn redis_at(prefix: &str) -> Arc<dyn Store> {
    Arc::new(RedisStore::connect(&testkit::redis_url(), prefix).await.unwrap())
}

fn lifecycle(store: Arc<dyn Store>, base: &str) -> Lifecycle {
    let kie = KieClient::new(base.parse().unwrap(), Secret::new(KEY), ClientOptions { timeout: Duration::from_secs(3), ..Default::default() }).unwrap();
    let opts = LifecycleOptions { outbound: OutboundPolicy::strict(), tick: Duration::from_millis(100), archive: Some(Terms::default()), ..Default::default() };
    Lifecycle::new(store, Some(kie), Arc::new(gateway::money::catalog::Catalog::builtin()), opts)
}

fn folder(dir: &std::path::Path) -> Arc<dyn ObjectStore> {
    gateway::library::open_objects(&url::Url::from_directory_path(dir).unwrap(), []).unwrap()
}

/// A Library whose sources are `source` (the simulator, or a loopback server standing in
/// for KIE's host) and whose downloads go through the strict outbound policy plus that host.
fn library(objects: Arc<dyn ObjectStore>, lc: &Lifecycle, source: &str, tune: impl FnOnce(&mut LibraryConfig)) -> Library {
    let base: url::Url = source.parse().unwrap();
    let mut cfg = LibraryConfig { url: "test".into(), sources: Sources::new(gateway::library::KIE_RESULT_HOSTS, Some(&base)), retry_base: Duration::from_millis(10), ..Default::default() };
    tune(&mut cfg);
    Library::new(objects, cfg, lc.clone(), OutboundPolicy::strict().also_allowing(&base))
}

async fn submit(lc: &Lifecycle, project: &str) -> TaskRecord {
    let s = gateway::tasks::lifecycle::Submission { owner: "ana".into(), project: project.into(), model: "google/imagen4-fast".into(), input: json!({"prompt": "a lighthouse"}), ..Default::default() };
    lc.submit(s).await.unwrap()
}

async fn get(store: &Arc<dyn Store>, id: &str) -> TaskRecord {
    store.task_get(id).await.unwrap().unwrap()
}

/// The first asset's state.
async fn asset_state(store: &Arc<dyn Store>, id: &str) -> Option<AssetState> {
    get(store, id).await.archive.and_then(|a| a.assets.first().map(|x| x.state))
}

/// Runs the lifecycle until the task succeeded (the poller follows it; no callbacks here).
async fn until_succeeded(lc: &Lifecycle, store: &Arc<dyn Store>, id: &str) -> TaskRecord {
    let mut ps = gateway::tasks::lifecycle::poller::PollState::default();
    let start = std::time::Instant::now();
    loop {
        lc.dispatch_round().await.unwrap();
        lc.poll_round(&mut ps, false).await.unwrap();
        let t = get(store, id).await;
        if t.state == TaskState::Success {
            return t;
        }
        assert!(!t.state.is_terminal(), "the task ended {:?}: {:?}", t.state, t.fail_msg);
        assert!(start.elapsed() < Duration::from_secs(30), "the task did not succeed in 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn read_all(lib: &Library, id: &str, n: usize, range: Option<std::ops::Range<u64>>) -> Vec<u8> {
    let found = lib.find(id, n).await.unwrap_or_else(|e| panic!("asset {id}/{n}: {e}"));
    let mut s = lib.read(&found, range).await.unwrap();
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    out
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    gateway::secret::hex(&sha2::Sha256::digest(b))
}

async fn sim_file_gets(base: &str, task: &str) -> usize {
    let log: Value = reqwest::get(format!("{base}/_sim/log?limit=100000")).await.unwrap().json().await.unwrap();
    log["entries"].as_array().unwrap().iter().filter(|e| e["path"] == "/files" && e["task_id"] == task && e["code"] == 200).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_result_is_archived_at_once_byte_identical_and_outlives_kies_copy() {
    let (sim, base) = sim(fast()).await;
    let store = redis().await;
    let lc = lifecycle(store.clone(), &base);
    let dir = testkit::scratch_dir("library");
    let lib = library(folder(&dir), &lc, &base, |_| {});
    lib.check().await.expect("a fresh folder is usable");
    let t = submit(&lc, "trailer").await;
    let done = until_succeeded(&lc, &store, &t.id).await;
    let archive = done.archive.clone().expect("a task that succeeds gets an archive plan");
    assert_eq!(archive.assets.len(), done.result_urls.len());
    assert!(archive.deadline_ms <= done.finished_ms.unwrap() + 12 * DAY_MS + 1000, "deadline = end + 14 d − 2 d");
    assert!(done.archive_pending());
    let kie_bytes = reqwest::get(&done.result_urls[0]).await.unwrap().bytes().await.unwrap().to_vec();

    lib.round(&mut None).await.unwrap();
    let t = get(&store, &t.id).await;
    let a = &t.archive.as_ref().unwrap().assets[0];
    assert_eq!(a.state, AssetState::Archived, "{:?}", a.last_error);
    assert_eq!(a.bytes, Some(kie_bytes.len() as u64));
    assert_eq!(a.sha256.as_deref(), Some(sha256_hex(&kie_bytes).as_str()));
    assert_eq!(a.content_type.as_deref(), Some("image/png"), "sniffed from the bytes");
    assert!(!t.archive_pending(), "nothing left to archive");

    // KIE deletes its copy; the Library's stays, byte for byte.
    sim.world().clock.advance(15 * DAY_MS);
    assert_eq!(reqwest::get(&done.result_urls[0]).await.unwrap().status(), 404, "the simulator deleted KIE's copy");
    assert_eq!(read_all(&lib, &t.id, 0, None).await, kie_bytes);
    assert_eq!(read_all(&lib, &t.id, 0, Some(1..4)).await, kie_bytes[1..4].to_vec(), "a range");
    assert!(std::fs::read_dir(dir.join("tmp")).map_or(true, |mut d| d.all(|e| std::fs::read_dir(e.unwrap().path()).unwrap().next().is_none())), "no temporary file left");
    let status = lib.status().await.unwrap();
    assert_eq!((status.assets, status.bytes, status.pending_assets), (1, kie_bytes.len() as i64, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_one_redis_share_one_library_and_download_each_result_once() {
    let (_sim, base) = sim(fast()).await;
    let prefix = format!("{}:", testkit::unique("lib2"));
    let (a_store, b_store) = (redis_at(&prefix).await, redis_at(&prefix).await);
    let (a, b) = (lifecycle(a_store.clone(), &base), lifecycle(b_store.clone(), &base));
    let dir = testkit::scratch_dir("library-shared");
    let (la, lb) = (library(folder(&dir), &a, &base, |_| {}), library(folder(&dir), &b, &base, |_| {}));
    la.check().await.unwrap();
    lb.check().await.expect("the second instance finds the same Library");
    let mut ids = Vec::new();
    for _ in 0..12 {
        ids.push(submit(&a, "trailer").await.id);
    }
    for id in &ids {
        until_succeeded(&a, &a_store, id).await;
    }
    // Both archivers at once, twice over: each result is fetched by one of them, once.
    for _ in 0..2 {
        tokio::join!(async { la.round(&mut None).await.unwrap() }, async { lb.round(&mut None).await.unwrap() });
    }
    for id in &ids {
        assert_eq!(asset_state(&a_store, id).await, Some(AssetState::Archived));
        assert_eq!(sim_file_gets(&base, &get(&a_store, id).await.kie_task_id.unwrap()).await, 1, "task {id} downloaded once");
        // Either instance serves what either archived.
        assert_eq!(read_all(&la, id, 0, None).await, read_all(&lb, id, 0, None).await);
    }
    assert_eq!(la.status().await.unwrap().assets, 12);

    // An instance on the same store with a Library of its own is told, and archives nothing.
    let other = library(folder(&testkit::scratch_dir("library-other")), &b, &base, |_| {});
    let err = other.check().await.expect_err("a Library that is not the shared one");
    assert!(err.contains("must use the same Library"), "{err}");
    assert_eq!(other.problem().as_deref(), Some(err.as_str()));
}

/// A succeeded task written straight to the store, with these result URLs.
async fn succeeded(store: &Arc<dyn Store>, project: &str, urls: &[String]) -> TaskRecord {
    let now = now_ms();
    let mut t = TaskRecord::new(testkit::unique("task"), "ana", project, "google/imagen4-fast", now);
    t.state = TaskState::Success;
    t.result_urls = urls.to_vec();
    t.finished_ms = Some(now);
    t.archive = Some(Archive::plan(urls, now, &Terms::default()));
    assert!(store.task_insert(&t).await.unwrap());
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_download_cut_off_leaves_nothing_visible_and_the_next_instance_finishes_it() {
    let src = testkit::result_host().await;
    let store = redis().await;
    let lc = lifecycle(store.clone(), &src);
    let dir = testkit::scratch_dir("library-crash");
    let lib = library(folder(&dir), &lc, &src, |_| {});
    lib.check().await.unwrap();
    let t = succeeded(&store, "p", &[format!("{src}/slow/200000")]).await;

    // The instance dies mid-download (its round is dropped, as a crash would).
    let cut = tokio::time::timeout(Duration::from_millis(800), lib.archive_task(&t.id)).await;
    assert!(cut.is_err(), "the download was still running when it was cut off");
    assert_eq!(asset_state(&store, &t.id).await, Some(AssetState::Pending), "nothing recorded");
    assert!(lib.find(&t.id, 0).await.is_err(), "nothing half-written is visible");
    // Whatever the cut-off download left (parts still in memory, or a partial file) is under
    // tmp/, never under the final name.
    assert!(walk(&dir).iter().all(|p| !p.starts_with(dir.join("assets"))), "nothing under assets/: {:?}", walk(&dir));

    // Its lease still stands: another instance leaves the task alone until it lapses…
    let lease_holder = lc.options().instance.clone();
    assert!(!store.lease_acquire(&format!("library:archive:{}", t.id), "another", Duration::from_secs(1)).await.unwrap(), "held by {lease_holder}");
    store.lease_release(&format!("library:archive:{}", t.id), &lease_holder).await.unwrap();
    // …then takes it over and finishes it from the start.
    let lc2 = lifecycle(store.clone(), &src);
    let lib2 = library(folder(&dir), &lc2, &src, |_| {});
    lib2.check().await.unwrap();
    lib2.round(&mut None).await.unwrap();
    assert_eq!(asset_state(&store, &t.id).await, Some(AssetState::Archived));
    assert_eq!(read_all(&lib2, &t.id, 0, None).await, vec![7u8; 200_000]);
    assert_eq!(lib2.status().await.unwrap().bytes, 200_000, "counted once");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redirects_private_addresses_foreign_hosts_and_oversize_results_are_refused() {
    let src = testkit::result_host().await;
    let store = redis().await;
    let lc = lifecycle(store.clone(), &src);
    let lib = library(folder(&testkit::scratch_dir("library-refuse")), &lc, &src, |c| {
        c.max_asset_bytes = 2 << 20;
        // A name KIE might use, pointed (here) at loopback: the outbound policy must refuse it.
        c.sources = Sources::new("localhost", Some(&src.parse().unwrap()));
    });
    lib.check().await.unwrap();
    let port = src.rsplit(':').next().unwrap();
    let cases = [
        (format!("{src}/redirect"), "redirects"),
        (format!("https://localhost:{port}/png"), "loopback"),
        ("http://10.1.2.3/x.png".to_string(), "https only"),
        ("https://tempfile.aiquickdraw.com.evil.example/x.png".to_string(), "not one of KIE's result hosts"),
        (format!("{src}/big"), "LIBRARY_MAX_ASSET_MB"),
    ];
    for (url, why) in &cases {
        let t = succeeded(&store, "p", std::slice::from_ref(url)).await;
        lib.archive_task(&t.id).await.unwrap();
        let t = get(&store, &t.id).await;
        let a = &t.archive.as_ref().unwrap().assets[0];
        assert_eq!(a.state, AssetState::Failed, "{url}");
        assert!(a.last_error.as_deref().unwrap_or_default().contains(why), "{url}: {:?}", a.last_error);
        assert!(!t.archive_pending(), "a refusal is final");
    }
    assert_eq!(lib.status().await.unwrap().bytes, 0, "nothing stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lapsed_link_is_renewed_through_download_url_and_a_deleted_result_is_result_expired() {
    let mut settings = fast();
    settings.result_link_ms = Some(DAY_MS);
    let (sim, base) = sim(settings).await;
    let store = redis().await;
    let lc = lifecycle(store.clone(), &base);
    let lib = library(folder(&testkit::scratch_dir("library-lapse")), &lc, &base, |_| {});
    lib.check().await.unwrap();
    let renewed = submit(&lc, "p").await;
    let gone = submit(&lc, "p").await;
    let r = until_succeeded(&lc, &store, &renewed.id).await;
    until_succeeded(&lc, &store, &gone.id).await;

    // Two days on: the result's own link has lapsed; download-url gives a fresh one.
    sim.world().clock.advance(2 * DAY_MS);
    assert_eq!(reqwest::get(&r.result_urls[0]).await.unwrap().status(), 404, "the plain link lapsed");
    lib.archive_task(&renewed.id).await.unwrap();
    let t = get(&store, &renewed.id).await;
    let a = &t.archive.as_ref().unwrap().assets[0];
    assert_eq!((a.state, a.renewed), (AssetState::Archived, true), "{:?}", a.last_error);

    // Past KIE's retention the file is deleted and download-url cannot help.
    sim.world().clock.advance(14 * DAY_MS);
    lib.archive_task(&gone.id).await.unwrap();
    let t = get(&store, &gone.id).await;
    let a = &t.archive.as_ref().unwrap().assets[0];
    assert_eq!(a.state, AssetState::Expired, "{:?}", a.last_error);
    assert_eq!(t.state, TaskState::Success, "KIE did the work (and charged for it)");
    assert_eq!(t.fail_class, Some(FailClass::ResultExpired));
    assert!(t.fail_msg.as_deref().unwrap().contains("download-url"), "{:?}", t.fail_msg);
    let lost = store.task_list(&TaskQuery { mark: Some(Mark::ResultLost), ..Default::default() }).await.unwrap();
    assert_eq!(lost.tasks.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), vec![gone.id.as_str()], "the Error Review finds it");
    let log: Value = reqwest::get(format!("{base}/_sim/log?limit=100000")).await.unwrap().json().await.unwrap();
    let renewals = log["entries"].as_array().unwrap().iter().filter(|e| e["path"] == "/api/v1/common/download-url").count();
    assert_eq!(renewals, 2, "download-url asked once per lapsed result");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_quota_refuses_past_its_cap_and_an_admin_deletes_a_projects_copies() {
    let src = testkit::result_host().await;
    let store = redis().await;
    let lc = lifecycle(store.clone(), &src);
    let lib = library(folder(&testkit::scratch_dir("library-quota")), &lc, &src, |c| c.quota_bytes = Some(150_000));
    lib.check().await.unwrap();
    let first = succeeded(&store, "trailer", &[format!("{src}/bytes/100000")]).await;
    let second = succeeded(&store, "teaser", &[format!("{src}/bytes/100000")]).await;
    lib.archive_task(&first.id).await.unwrap();
    lib.archive_task(&second.id).await.unwrap();
    assert_eq!(asset_state(&store, &first.id).await, Some(AssetState::Archived));
    let t = get(&store, &second.id).await;
    let a = &t.archive.as_ref().unwrap().assets[0];
    assert_eq!(a.state, AssetState::Pending, "refused, not dropped: it waits for room");
    assert!(a.last_error.as_deref().unwrap().contains("Library full"), "{:?}", a.last_error);
    assert!(t.archive.as_ref().unwrap().next_attempt_ms > now_ms() + 60_000, "and waits long before trying again");
    let status = lib.status().await.unwrap();
    assert_eq!((status.bytes, status.quota_bytes, status.failing), (100_000, Some(150_000), 1));
    assert!(status.last_error.unwrap().contains("Library full"));

    let viewer = Actor { who: "v@studio.test".into(), name: "V".into(), role: Role::Viewer, from: "test".into(), membership: Default::default() };
    assert!(lib.delete_project(&viewer, "trailer").await.is_err(), "admins only");
    let admin = Actor { who: "a@studio.test".into(), name: "A".into(), role: Role::Admin, from: "test".into(), membership: Default::default() };
    assert_eq!(lib.delete_project(&admin, "trailer").await.unwrap(), 1);
    assert_eq!(asset_state(&store, &first.id).await, Some(AssetState::Deleted));
    assert!(lib.find(&first.id, 0).await.is_err(), "no longer served");
    assert_eq!(lib.status().await.unwrap().bytes, 0, "its bytes left the quota");
    let audit = gateway::team::audit::search(store.as_ref(), &Default::default(), None, 10).await.unwrap();
    assert!(audit.entries.iter().any(|e| e.action == "library.delete_project" && e.target == "trailer" && e.who == "a@studio.test"), "audited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_library_on_an_s3_compatible_server_archives_serves_ranges_and_resumes() {
    let s3 = testkit::S3Server::start();
    let bucket = s3.bucket("bucket").await;
    let aws = s3.aws();
    let objects = gateway::library::open_objects(&format!("s3://{bucket}/studio/library").parse().unwrap(), aws).unwrap();
    let src = testkit::result_host().await;
    let store = redis().await;
    let lc = lifecycle(store.clone(), &src);
    let lib = library(objects.clone(), &lc, &src, |_| {});
    lib.check().await.expect("the bucket is writable");
    // Larger than one upload part, so the multipart path is the one taken.
    let big = succeeded(&store, "p", &[format!("{src}/bytes/9000000")]).await;
    let png = succeeded(&store, "p", &[format!("{src}/png")]).await;
    lib.round(&mut None).await.unwrap();
    assert_eq!(asset_state(&store, &big.id).await, Some(AssetState::Archived));
    assert_eq!(read_all(&lib, &big.id, 0, None).await.len(), 9_000_000);
    assert_eq!(read_all(&lib, &big.id, 0, Some(8_999_990..9_000_000)).await, vec![7u8; 10]);
    let p = get(&store, &png.id).await;
    assert_eq!(p.archive.unwrap().assets[0].content_type.as_deref(), Some("image/png"));
    let listed: Vec<String> = objects.list(None).map(|m| m.unwrap().location.to_string()).collect().await;
    assert!(listed.contains(&format!("assets/{}/0", big.id)), "{listed:?}");
    assert!(listed.iter().all(|p| !p.starts_with("tmp/")), "no temporary object left: {listed:?}");
    // A second instance with the same bucket is the same Library.
    let lib2 = library(gateway::library::open_objects(&format!("s3://{bucket}/studio/library").parse().unwrap(), aws).unwrap(), &lc, &src, |_| {});
    lib2.check().await.expect("the same bucket and prefix");
}

/// A Library input that cannot be made fetchable: while KIE's upload host does not answer,
/// the task is held back (its note says why, nothing is sent, no rate slot is spent); once
/// the copy is gone for good, the task ends unsent and its hold is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_library_input_kie_cannot_get_holds_the_task_back_then_ends_it_unsent() {
    let (sim, base) = sim(fast()).await;
    let store = redis().await;
    // KIE's upload host is a closed port.
    let kie = KieClient::new(base.parse().unwrap(), Secret::new(KEY), ClientOptions { timeout: Duration::from_secs(3), ..Default::default() })
        .unwrap()
        .with_upload_base(format!("http://127.0.0.1:{}", testkit::free_port()).parse().unwrap());
    let opts = LifecycleOptions { outbound: OutboundPolicy::strict(), tick: Duration::from_millis(100), archive: Some(Terms::default()), ..Default::default() };
    let lc = Lifecycle::new(store.clone(), Some(kie), Arc::new(gateway::money::catalog::Catalog::builtin()), opts);
    let dir = testkit::scratch_dir("library-inputs");
    let lib = library(folder(&dir), &lc, &base, |_| {});
    let frame = submit(&lc, "p").await;
    until_succeeded(&lc, &store, &frame.id).await;
    lib.archive_task(&frame.id).await.unwrap();
    assert_eq!(asset_state(&store, &frame.id).await, Some(AssetState::Archived));
    // It ended long enough ago that KIE's own URL is not trusted: the copy must be uploaded.
    let mut old = get(&store, &frame.id).await;
    old.finished_ms = Some(now_ms() - 13 * 3600 * 1000);
    store.task_update(&old).await.unwrap().unwrap();

    let video = gateway::tasks::lifecycle::Submission {
        owner: "ana".into(),
        project: "p".into(),
        model: "kling-2.6/image-to-video".into(),
        input: json!({"prompt": "the light turns", "image_urls": [format!("control-room://library/{}/0", frame.id)], "duration": "5"}),
        ..Default::default()
    };
    let t = lc.submit(video.clone()).await.unwrap();
    let creates = || sim.world().tasks.len();
    let before = creates();
    lc.dispatch_round().await.unwrap();
    let held = get(&store, &t.id).await;
    assert_eq!(held.state, TaskState::Queued);
    assert!(held.kie_task_id.is_none() && held.dispatch.next_attempt_ms > now_ms(), "held back with a backoff");
    let note = held.note.clone().unwrap_or_default();
    assert!(note.starts_with("Its input is not ready for KIE yet (input.image_urls[0]: KIE's upload did not succeed"), "{note}");
    assert_eq!(creates(), before, "nothing was sent to KIE");

    // Another task names it; then the Library's copy is deleted: it can never be sent.
    let t2 = lc.submit(video).await.unwrap();
    lib.delete_project(&Actor::cli(), "p").await.unwrap();
    lc.dispatch_round().await.unwrap();
    let ended = get(&store, &t2.id).await;
    assert_eq!(ended.state, TaskState::Fail);
    assert_eq!(ended.fail_class, Some(FailClass::Policy));
    let why = ended.fail_msg.clone().unwrap_or_default();
    assert!(why.starts_with("not sent: input.image_urls[0]: ") && why.contains("no longer in the Library"), "{why}");
    assert_eq!(ended.actual_cost, Some(gateway::Credits::ZERO), "nothing charged");
    assert_eq!(creates(), before, "nothing was sent to KIE");
}
