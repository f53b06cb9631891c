//! The Library: every result a task produced, copied before KIE deletes it (KIE keeps results
//! 14 days at most), served from here with signed links.
//!
//! One job per file:
//! - [`asset`] — what a task's record says of its copies (the archive plan, one asset per
//!   result URL, the deadline), plain data;
//! - [`archiver`] — the worker on every instance that copies results by lease, in deadline
//!   order, with backoff, through the outbound policy, and resumes after a crash;
//! - [`links`] — signed links (HMAC with a key kept in the store);
//! - [`desk`] — files a producer adds from their desk, kept like a task's result;
//! - [`inputs`] — assets used as a new task's inputs: recognised at submit, sent to KIE as a
//!   URL it can fetch (its own while it lives, else an upload of the copy);
//! - [`sniff`] — a result's content type, read from its bytes;
//! - [`midi`] — a Standard MIDI File written from KIE's notes (Suno's MIDI), and read back.
//!
//! Where the copies live is an `object_store` (`LIBRARY_URL`: a local folder, default
//! `file://<DATA_DIR>/library`, or `s3://bucket/prefix` for several instances):
//!
//! ```text
//! assets/<task>/<n>         a committed copy: complete, its size and SHA-256 checked
//! tmp/<task>/<n>.<random>   a download under way; never served, swept after an hour
//! control-room/library-id   which deployment this Library belongs to (checked at start)
//! ```
//!
//! A copy counts only when the task's record says `archived`, which is written after the
//! copy was committed under its final name; the bytes stored are a reservation in the store
//! (`library:bytes`, limited by `LIBRARY_MAX_GB`), keyed by asset, so a crash and a retry
//! count an asset once.

pub(crate) mod archiver;
pub mod asset;
pub mod desk;
pub mod inputs;
pub mod links;
pub mod midi;
pub(crate) mod sniff;

use futures::StreamExt;
use object_store::ObjectStore;
use object_store::path::Path;
use std::sync::{Arc, RwLock};
use url::Url;

use crate::store::{Scope, Store, StoreError, StoreResult};
use crate::tasks::task::{Mark, TaskQuery, TaskRecord};
use crate::team::membership::Membership;
use crate::team::accounts::{AccountError, Actor, Role};
use crate::Lifecycle;
use asset::{Asset, AssetState};

/// The store key naming this deployment's Library (its marker must say the same).
const ID_KEY: &str = "library:id";
/// The marker in the Library.
const MARKER: &str = "control-room/library-id";

/// Whether a result's source is a URL a client could load: a desk file's name and a written
/// result's KIE task (Suno's MIDI) are none, until the Library holds their copy.
pub fn is_url(source: &str) -> bool {
    ![desk::DESK_SOURCE, crate::kie::WRITTEN_SOURCE].iter().any(|p| source.starts_with(p))
}

/// The hosts KIE serves results from (`KIE-API.md`); a leading `.` admits subdomains.
pub const KIE_RESULT_HOSTS: &str = "tempfile.aiquickdraw.com,tempfile.redpandaai.co,kieai.redpandaai.co,musicfile.kie.ai,cdn1.suno.ai,cdn2.suno.ai,.r2.cloudflarestorage.com";

/// Which URLs results may be downloaded from, before the outbound policy's own checks.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// `https` hosts (exact, or `.suffix` for subdomains).
    hosts: Vec<String>,
    /// `KIE_BASE_URL`'s scheme, host and port (the simulator serves its files there).
    kie: Option<(String, String, u16)>,
}

impl Sources {
    /// `hosts`: comma-separated (see [`KIE_RESULT_HOSTS`]); `kie`: `KIE_BASE_URL`.
    pub fn new(hosts: &str, kie: Option<&Url>) -> Sources {
        Sources {
            hosts: hosts.split(',').map(|h| h.trim().to_ascii_lowercase()).filter(|h| !h.is_empty()).collect(),
            kie: kie.and_then(|u| Some((u.scheme().to_string(), u.host_str()?.to_ascii_lowercase(), u.port_or_known_default()?))),
        }
    }

    /// `Ok` if a result may be fetched from `url`; else why not.
    pub fn admit(&self, url: &str) -> Result<(), String> {
        let u = Url::parse(url).map_err(|_| "the result URL is not an absolute URL".to_string())?;
        let host = u.host_str().unwrap_or_default().to_ascii_lowercase();
        if let Some((scheme, h, port)) = &self.kie
            && u.scheme() == scheme
            && &host == h
            && u.port_or_known_default() == Some(*port)
        {
            return Ok(());
        }
        if u.scheme() != "https" {
            return Err(format!("results are fetched over https only, not {}:", u.scheme()));
        }
        let known = self.hosts.iter().any(|k| match k.strip_prefix('.') {
            Some(suffix) => host.ends_with(&format!(".{suffix}")),
            None => &host == k,
        });
        if known { Ok(()) } else { Err(format!("{host} is not one of KIE's result hosts (LIBRARY_SOURCE_HOSTS)")) }
    }
}

/// How the Library is run.
#[derive(Debug, Clone)]
pub struct LibraryConfig {
    /// `LIBRARY_URL` as shown to people (no credentials: those come from `AWS_*`).
    pub url: String,
    /// `LIBRARY_MAX_ASSET_MB`: a larger result is refused (and the task says so).
    pub max_asset_bytes: u64,
    /// `LIBRARY_MAX_GB`: past it nothing more is archived (never silently deleted).
    pub quota_bytes: Option<u64>,
    pub sources: Sources,
    /// Results downloaded at once by this instance.
    pub concurrency: usize,
    /// The first retry waits this long, doubling up to ten minutes.
    pub retry_base: std::time::Duration,
}

impl Default for LibraryConfig {
    fn default() -> Self {
        LibraryConfig {
            url: String::new(),
            max_asset_bytes: 512 << 20,
            quota_bytes: None,
            sources: Sources::new(KIE_RESULT_HOSTS, None),
            concurrency: 4,
            retry_base: std::time::Duration::from_secs(2),
        }
    }
}

/// Opens `LIBRARY_URL`: `file:///path` (created if missing) or `s3://bucket[/prefix]`, with
/// `aws` the `AWS_*` settings (`AWS_ENDPOINT`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP`…; the server passes its environment's).
pub fn open_objects<'a>(url: &Url, aws: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Arc<dyn ObjectStore>, String> {
    match url.scheme() {
        "file" => {
            let dir = url.to_file_path().map_err(|_| format!("LIBRARY_URL {url} is not a local path"))?;
            std::fs::create_dir_all(&dir).map_err(|e| format!("LIBRARY_URL {url}: cannot create {}: {e}", dir.display()))?;
            let fs = object_store::local::LocalFileSystem::new_with_prefix(&dir).map_err(|e| format!("LIBRARY_URL {url}: {e}"))?;
            Ok(Arc::new(fs))
        }
        "s3" => {
            let bucket = url.host_str().filter(|b| !b.is_empty()).ok_or_else(|| format!("LIBRARY_URL {url} names no bucket (s3://bucket/prefix)"))?;
            let mut builder = object_store::aws::AmazonS3Builder::new();
            for (k, v) in aws {
                if let Ok(key) = k.to_ascii_lowercase().parse::<object_store::aws::AmazonS3ConfigKey>() {
                    builder = builder.with_config(key, v);
                }
            }
            let s3 = builder.with_bucket_name(bucket).build().map_err(|e| format!("LIBRARY_URL {url}: {e}"))?;
            let prefix = url.path().trim_matches('/');
            if prefix.is_empty() {
                Ok(Arc::new(s3))
            } else {
                Ok(Arc::new(object_store::prefix::PrefixStore::new(s3, prefix)))
            }
        }
        other => Err(format!("LIBRARY_URL must be file:// or s3://, not {other}://")),
    }
}

/// Why a Library request could not be served.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    #[error("no such asset in the Library")]
    NotFound,
    #[error("{0}")]
    Forbidden(#[from] AccountError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("the Library cannot be read: {0}")]
    Objects(String),
}

/// A project's copies in the Library: what deleting them deletes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProjectCopies {
    pub files: usize,
    pub bytes: u64,
}

/// An asset found for serving.
pub struct Found {
    pub task: TaskRecord,
    pub index: usize,
    pub asset: Asset,
}

/// The Library's state for panel 07.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LibraryStatus {
    pub url: String,
    /// Why this instance cannot use its Library, if it cannot.
    pub problem: Option<String>,
    /// Tasks with results still to copy (at most [`STATUS_SCAN`] counted).
    pub pending_tasks: usize,
    pub pending_assets: usize,
    /// Assets waiting past their deadline.
    pub overdue: usize,
    /// The nearest deadline among pending assets (Unix ms).
    pub nearest_deadline_ms: Option<u64>,
    /// Tasks with a result that was gone before it was copied (at most [`STATUS_SCAN`]).
    pub lost_tasks: usize,
    /// Failed or refused downloads among the pending ones, with the latest reason.
    pub failing: usize,
    pub last_error: Option<String>,
    pub assets: i64,
    pub bytes: i64,
    pub quota_bytes: Option<u64>,
    /// The scans hit [`STATUS_SCAN`]: the counts are lower bounds.
    pub capped: bool,
    /// Files from desks on their way in (at most [`ARRIVING_LISTED`], oldest first).
    pub arriving: Vec<OnItsWay>,
}

/// A file from a desk on its way into the Library, with how much of it has arrived.
#[derive(Debug, Clone, PartialEq)]
pub struct OnItsWay {
    pub task: String,
    pub project: String,
    pub by: String,
    pub file: String,
    pub arrival: asset::Arrival,
}

/// How many files on their way in a status lists.
pub const ARRIVING_LISTED: usize = 32;

/// How many tasks a status scan reads at most per index.
pub const STATUS_SCAN: usize = 2000;

/// The running total of bytes in the Library (a reservation per asset).
pub fn bytes_scope(quota: Option<u64>) -> Scope {
    Scope { key: "library:bytes".into(), limit: quota.map_or(crate::store::MAX_AMOUNT, |q| q.min(crate::store::MAX_AMOUNT as u64) as i64), window: None }
}

/// The running count of assets in the Library (a reservation of 1 per asset).
pub fn count_scope() -> Scope {
    Scope { key: "library:assets".into(), limit: crate::store::MAX_AMOUNT, window: None }
}

fn bytes_hold(task: &str, n: usize) -> String {
    format!("library:{task}:{n}")
}

fn count_hold(task: &str, n: usize) -> String {
    format!("library-n:{task}:{n}")
}

/// Where asset `n` of `task` is kept once committed.
pub fn asset_path(task: &str, n: usize) -> Path {
    Path::from(format!("assets/{task}/{n}"))
}

struct Inner {
    objects: Arc<dyn ObjectStore>,
    cfg: LibraryConfig,
    lifecycle: Lifecycle,
    outbound: crate::outbound::Outbound,
    problem: RwLock<Option<String>>,
}

/// The Library of one instance; cheap to clone.
#[derive(Clone)]
pub struct Library(Arc<Inner>);

impl Library {
    /// `outbound`: the policy downloads go through (with `KIE_BASE_URL`'s host admitted).
    pub fn new(objects: Arc<dyn ObjectStore>, cfg: LibraryConfig, lifecycle: Lifecycle, outbound: crate::outbound::OutboundPolicy) -> Library {
        let opts = crate::outbound::OutboundOptions { connect_timeout: std::time::Duration::from_secs(10), timeout: std::time::Duration::from_secs(30 * 60), max_body: 0 };
        lifecycle.attach_library(objects.clone());
        Library(Arc::new(Inner { objects, cfg, lifecycle, outbound: crate::outbound::Outbound::new(outbound, opts), problem: RwLock::new(Some("not checked yet".into())) }))
    }

    pub fn config(&self) -> &LibraryConfig {
        &self.0.cfg
    }

    fn store(&self) -> &dyn Store {
        self.0.lifecycle.store().as_ref()
    }

    /// Why this instance cannot use its Library (`None`: it can).
    pub fn problem(&self) -> Option<String> {
        self.0.problem.read().map_or_else(|p| p.into_inner().clone(), |p| p.clone())
    }

    fn set_problem(&self, p: Option<String>) {
        if let Ok(mut g) = self.0.problem.write() {
            *g = p;
        }
    }

    /// Checks, at start, that the Library can be written and read back, and that it is the
    /// one every instance on this store uses (its marker names the deployment's Library id).
    /// On failure the reason is kept for panel 07 and `/readyz`, and this instance archives
    /// nothing (others still do).
    pub async fn check(&self) -> Result<(), String> {
        let outcome = self.check_inner().await;
        match &outcome {
            Ok(()) => tracing::info!(library = %self.0.cfg.url, "Library ready"),
            Err(e) => tracing::error!(library = %self.0.cfg.url, "Library not usable: {e}"),
        }
        self.set_problem(outcome.clone().err());
        outcome
    }

    async fn check_inner(&self) -> Result<(), String> {
        let url = &self.0.cfg.url;
        let probe = Path::from(format!("control-room/probe-{}", crate::secret::random_hex(6)));
        let nonce = crate::secret::random_hex(8);
        let cannot = |what: &str, e: object_store::Error| format!("the Library at {url} cannot be {what}: {e}");
        self.0.objects.put(&probe, nonce.clone().into_bytes().into()).await.map_err(|e| cannot("written", e))?;
        let back = self.0.objects.get(&probe).await.map_err(|e| cannot("read", e))?.bytes().await.map_err(|e| cannot("read", e))?;
        let _ = self.0.objects.delete(&probe).await;
        if back.as_ref() != nonce.as_bytes() {
            return Err(format!("the Library at {url} did not give back what was written to it"));
        }
        let store_err = |e: StoreError| format!("cannot read the Library's id from the store: {e}");
        let fresh = self.store().kv_set_nx(ID_KEY, crate::secret::random_hex(8).as_bytes(), None).await.map_err(store_err)?;
        let id = self.store().kv_get(ID_KEY).await.map_err(store_err)?.unwrap_or_default();
        let marker = Path::from(MARKER);
        match self.0.objects.get(&marker).await {
            Ok(got) => {
                let got = got.bytes().await.map_err(|e| cannot("read", e))?;
                if got.as_ref() == id.as_slice() {
                    Ok(())
                } else {
                    Err(format!(
                        "the Library at {url} belongs to another deployment (its marker does not match this store's): every instance on one store must use the same Library"
                    ))
                }
            }
            Err(object_store::Error::NotFound { .. }) => {
                // A new Library: adopted when the deployment is new, or when no task holds a
                // copy yet (an upgrade, or a first start stopped before the marker was written).
                let holding = TaskQuery { mark: Some(Mark::InLibrary), limit: 1, ..Default::default() };
                let empty = self.store().task_list(&holding).await.map_err(store_err)?.tasks.is_empty();
                if fresh || empty {
                    self.0.objects.put(&marker, id.into()).await.map_err(|e| cannot("written", e))?;
                    Ok(())
                } else {
                    Err(format!(
                        "the Library at {url} holds none of this deployment's copies (no marker): every instance on one store must use the same Library — a shared folder or one bucket"
                    ))
                }
            }
            Err(e) => Err(cannot("read", e)),
        }
    }

    /// Asset `n` of task `id`, if it is in the Library.
    pub async fn find(&self, id: &str, n: usize) -> Result<Found, LibraryError> {
        let task = self.0.lifecycle.find(id).await?.ok_or(LibraryError::NotFound)?;
        let asset = task.archive.as_ref().and_then(|a| a.assets.get(n)).filter(|a| a.state == AssetState::Archived).cloned().ok_or(LibraryError::NotFound)?;
        Ok(Found { task, index: n, asset })
    }

    /// The bytes of a found asset, whole or a range (`start..end`, end exclusive).
    pub async fn read(&self, found: &Found, range: Option<std::ops::Range<u64>>) -> Result<futures::stream::BoxStream<'static, Result<bytes::Bytes, std::io::Error>>, LibraryError> {
        let opts = object_store::GetOptions { range: range.map(object_store::GetRange::Bounded), ..Default::default() };
        let got = match self.0.objects.get_opts(&asset_path(&found.task.id, found.index), opts).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => {
                let why = format!("task {} asset {} is archived but missing from the Library at {}: instances on one store must share one Library", found.task.id, found.index, self.0.cfg.url);
                tracing::error!("{why}");
                self.set_problem(Some(why));
                return Err(LibraryError::NotFound);
            }
            Err(e) => return Err(LibraryError::Objects(e.to_string())),
        };
        Ok(got.into_stream().map(|r| r.map_err(std::io::Error::other)).boxed())
    }

    /// Panel 07's figures: from the store's indexes (bounded scans) and reservations.
    pub async fn status(&self) -> StoreResult<LibraryStatus> {
        let now = crate::store::now_ms();
        let mut s = LibraryStatus { url: self.0.cfg.url.clone(), problem: self.problem(), quota_bytes: self.0.cfg.quota_bytes, ..Default::default() };
        let (pending, capped_p) = self.scan(Mark::ArchivePending, STATUS_SCAN).await?;
        for t in &pending {
            let Some(a) = &t.archive else { continue };
            for x in a.assets.iter().filter(|x| x.state == AssetState::Pending) {
                s.pending_assets += 1;
                s.failing += usize::from(x.last_error.is_some());
                s.overdue += usize::from(a.deadline_ms < now);
            }
            s.nearest_deadline_ms = Some(s.nearest_deadline_ms.map_or(a.deadline_ms, |d| d.min(a.deadline_ms)));
            if let Some(e) = a.assets.iter().filter_map(|x| x.last_error.clone()).next() {
                s.last_error = Some(e);
            }
            if let Some(arrival) = a.arriving()
                && s.arriving.len() < ARRIVING_LISTED
            {
                let file = t.input.get("file").and_then(|f| f.as_str()).unwrap_or_default().to_string();
                s.arriving.push(OnItsWay { task: t.id.clone(), project: t.project.clone(), by: t.owner.clone(), file, arrival });
            }
        }
        s.pending_tasks = pending.len();
        let (lost, capped_l) = self.scan(Mark::ResultLost, STATUS_SCAN).await?;
        s.lost_tasks = lost.len();
        s.capped = capped_p || capped_l;
        s.bytes = self.store().usage(&bytes_scope(None)).await?;
        s.assets = self.store().usage(&count_scope()).await?;
        Ok(s)
    }

    /// Tasks in one Library index, oldest first, up to `cap`; and whether there were more.
    pub(crate) async fn scan(&self, filter: Mark, cap: usize) -> StoreResult<(Vec<TaskRecord>, bool)> {
        let mut out = Vec::new();
        let mut q = TaskQuery { mark: Some(filter), oldest_first: true, limit: crate::tasks::task::MAX_PAGE, ..Default::default() };
        loop {
            let page = self.store().task_list(&q).await?;
            out.extend(page.tasks);
            match page.next {
                Some(next) if out.len() < cap => q.after = Some(next),
                Some(_) => return Ok((out, true)),
                None => return Ok((out, false)),
            }
        }
    }

    /// The Library's listing: tasks holding copies, newest first, optionally of one project.
    pub async fn list(&self, membership: &Membership, project: Option<&str>, after: Option<String>, limit: usize) -> StoreResult<crate::tasks::task::TaskPage> {
        let q = TaskQuery { mark: Some(Mark::InLibrary), project: project.map(str::to_string), after, limit, ..Default::default() };
        crate::tasks::visible::list(self.store(), membership, &q).await
    }

    /// What deleting `project`'s copies would delete: how many files and their bytes (read
    /// page by page from the Library's index, as the deletion itself reads it).
    pub async fn project_copies(&self, project: &str) -> StoreResult<ProjectCopies> {
        let mut copies = ProjectCopies::default();
        let mut after = None;
        loop {
            let page = self.list(&Membership::All, Some(project), after.take(), crate::tasks::task::MAX_PAGE).await?;
            for a in page.tasks.iter().flat_map(|t| t.archive.iter().flat_map(|a| a.assets.iter())).filter(|a| a.state == AssetState::Archived) {
                copies.files += 1;
                copies.bytes += a.bytes.unwrap_or(0);
            }
            match page.next {
                Some(n) => after = Some(n),
                None => return Ok(copies),
            }
        }
    }

    /// Deletes every Library copy of `project`'s tasks (admin; audited). Returns how many
    /// assets were deleted. Their records say `deleted`; their bytes leave the quota.
    pub async fn delete_project(&self, actor: &Actor, project: &str) -> Result<usize, LibraryError> {
        actor.require(Role::Admin)?;
        let mut deleted = 0;
        let mut after = None;
        loop {
            let page = self.list(&Membership::All, Some(project), after.take(), crate::tasks::task::MAX_PAGE).await?;
            for t in &page.tasks {
                deleted += self.delete_task_assets(&t.id).await?;
            }
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        crate::team::audit::record(self.store(), actor, "library.delete_project", project, None, Some(format!("{deleted} assets deleted"))).await?;
        tracing::info!(project, deleted, by = %actor.log_id(), "Library copies of a project deleted");
        Ok(deleted)
    }

    async fn delete_task_assets(&self, id: &str) -> Result<usize, LibraryError> {
        let Some(t) = self.store().task_get(id).await? else { return Ok(0) };
        let held: Vec<usize> = t.archive.iter().flat_map(|a| a.assets.iter().enumerate()).filter(|(_, a)| a.state == AssetState::Archived).map(|(i, _)| i).collect();
        // The record first (nothing is served once it says deleted), then the objects and the
        // quota: a crash in between leaves an orphan file, never a link to a missing one.
        self.0
            .lifecycle
            .modify(id, |t| {
                let Some(a) = t.archive.as_mut() else { return false };
                let mut changed = false;
                for i in &held {
                    if let Some(x) = a.assets.get_mut(*i).filter(|x| x.state == AssetState::Archived) {
                        x.state = AssetState::Deleted;
                        changed = true;
                    }
                }
                changed
            })
            .await?;
        for i in &held {
            match self.0.objects.delete(&asset_path(id, *i)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(LibraryError::Objects(e.to_string())),
            }
            self.store().settle(&bytes_hold(id, *i), 0).await?;
            self.store().settle(&count_hold(id, *i), 0).await?;
        }
        Ok(held.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_admit_kie_hosts_over_https_and_the_simulator_as_configured() {
        let sim = Url::parse("http://127.0.0.1:7070").unwrap();
        let s = Sources::new(KIE_RESULT_HOSTS, Some(&sim));
        assert!(s.admit("https://tempfile.aiquickdraw.com/a.png").is_ok());
        assert!(s.admit("https://acct.r2.cloudflarestorage.com/x?X-Amz-Expires=1200").is_ok());
        assert!(s.admit("http://127.0.0.1:7070/files/t/0.png").is_ok());
        for bad in ["http://tempfile.aiquickdraw.com/a.png", "https://evil.example/a.png", "https://r2.cloudflarestorage.com.evil.example/", "http://127.0.0.1:7071/files/x", "https://127.0.0.1:7070/files/x", "not a url"] {
            assert!(s.admit(bad).is_err(), "{bad}");
        }
    }
}
