//! Redis backend: shared by every instance that points at the same Redis.
//!
//! Key layout (all under a configurable prefix, `cr:` by default, so tests and several
//! deployments can share one server):
//! - `t:<id>` hash {d: record JSON, v: version, m: index member, i: index keys}
//! - `ti:<index>` sorted set of index members, all score 0, read in lexical order
//! - `kv:<key>` string, `c:<key>` integer counter, `l:<name>` lease holder
//! - `w:<key>` sorted set (score = time in ms), `wa:<key>` hash (member → amount) and
//!   `ws:<key>` (their running sum): a window; a reservation costs O(entries that aged out)
//! - `h:<id>` a reservation hold: its amount and the scopes it touched
//! - `lg:<log>` sorted set (score = sequence number, member = `<seq>|<entry>`) and
//!   `lgs:<log>` its last sequence number: an append-only log
//! - channel `ev:<channel>` for events
//!
//! Every step that touches more than one key, or reads then writes, is a Lua script, so it is
//! atomic on the server whatever the number of instances. Windows use the Redis server's clock
//! (`TIME`), so instances with skewed clocks still agree.

use async_trait::async_trait;
use futures::StreamExt;
use redis::{AsyncCommands, Script};
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use super::primary::{self, Primary, PrimaryConn, ReplicaAcks, SentinelSettings};
use super::{Created, CreateWith, UpdateWith, EventStream, LogEntry, MAX_LOG_PAGE, Refusal, ReserveOutcome, ReserveRequest, Scope, Store, StoreError, StoreResult, check};
use crate::tasks::task::{TaskCounts, TaskPage, TaskQuery, TaskRecord, TaskState, index};

/// How many index members a listing reads per round trip while filtering.
const LIST_BATCH: usize = 256;
/// Most index members one listing examines before it returns a short page with a cursor.
const LIST_SCAN_CAP: usize = 10_000;
/// Index members a one-time seed or repair at connect takes in one step.
const SEED_PAGE: usize = 500;

// The Lua scripts, one file each under `lua/` with its keys, arguments and answer described
// at its top. `lua_lib.lua` (the server clock, a window's live sum, a hold's check and claim,
// a log's append) is prepended to the scripts that use it.
const TASK_CREATE: &str = include_str!("lua/task_create.lua");
const TASK_UPDATE: &str = include_str!("lua/task_update.lua");
const TASK_DELETE: &str = include_str!("lua/task_delete.lua");
const LUA_LIB: &str = include_str!("lua/lua_lib.lua");
const RESERVE: &str = include_str!("lua/reserve.lua");
const SETTLE: &str = include_str!("lua/settle.lua");
const WINDOW_USAGE: &str = include_str!("lua/window_usage.lua");
const COUNTER_ADD: &str = include_str!("lua/counter_add.lua");
const LEASE_ACQUIRE: &str = include_str!("lua/lease_acquire.lua");
const LEASE_RELEASE: &str = include_str!("lua/lease_release.lua");
const LOG_APPEND: &str = include_str!("lua/log_append.lua");
const INDEX_NOTE: &str = include_str!("lua/index_note.lua");
const INDEX_FIX: &str = include_str!("lua/index_fix.lua");

/// The scripts, compiled once (redis-rs sends EVALSHA and loads on NOSCRIPT).
struct Scripts {
    task_create: Script,
    task_update: Script,
    task_delete: Script,
    reserve: Script,
    settle: Script,
    window_usage: Script,
    counter_add: Script,
    lease_acquire: Script,
    lease_release: Script,
    log_append: Script,
    index_note: Script,
    index_fix: Script,
}

impl Scripts {
    fn new() -> Self {
        let with_lib = |body: &str| Script::new(&format!("{LUA_LIB}\n{body}"));
        Scripts {
            task_create: with_lib(TASK_CREATE),
            task_update: with_lib(TASK_UPDATE),
            task_delete: Script::new(TASK_DELETE),
            reserve: with_lib(RESERVE),
            settle: with_lib(SETTLE),
            window_usage: with_lib(WINDOW_USAGE),
            counter_add: Script::new(COUNTER_ADD),
            lease_acquire: Script::new(LEASE_ACQUIRE),
            lease_release: Script::new(LEASE_RELEASE),
            log_append: with_lib(LOG_APPEND),
            index_note: Script::new(INDEX_NOTE),
            index_fix: Script::new(INDEX_FIX),
        }
    }
}

/// What a Redis server keeps on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Persistence {
    /// The append-only file is on: every write is logged (what the Control Room needs).
    pub aof: bool,
    /// RDB snapshots are on: a crash loses what came after the last snapshot.
    pub rdb: bool,
    /// `maxmemory-policy`: anything but `noeviction` lets Redis delete keys (budgets, holds,
    /// tasks) when it is full.
    pub eviction: String,
}

impl Persistence {
    /// Whether Redis may delete keys on its own when it reaches `maxmemory`.
    pub fn evicts(&self) -> bool {
        !self.eviction.eq_ignore_ascii_case("noeviction")
    }
}

/// The Redis-backed [`Store`].
#[derive(Clone)]
pub struct RedisStore {
    primary: Arc<Primary>,
    prefix: Arc<str>,
    scripts: Arc<Scripts>,
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis: {e}"))
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

/// Certificates for a `rediss://` Redis beyond the system's roots: a private CA, and a client
/// certificate for mutual TLS (PEM, as read from `REDIS_CA_FILE`, `REDIS_CLIENT_CERT_FILE` and
/// `REDIS_CLIENT_KEY_FILE`). Its `Debug` shows which are set, never their bytes.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RedisTls {
    /// Trusted instead of the system's roots.
    pub ca: Option<Vec<u8>>,
    /// The client's certificate and key.
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTls").field("ca", &self.ca.is_some()).field("client", &self.client.is_some()).finish()
    }
}

impl RedisTls {
    fn is_empty(&self) -> bool {
        self.ca.is_none() && self.client.is_none()
    }
}

/// How to reach Redis beyond its URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisOptions {
    /// Certificates for a `rediss://` URL.
    pub tls: RedisTls,
    /// Sentinels that name the primary (`REDIS_URL` then gives only the data nodes' user,
    /// password, database and TLS).
    pub sentinel: Option<SentinelSettings>,
    /// The replicas a write that decides money or a send waits for.
    pub acks: ReplicaAcks,
}

impl RedisStore {
    /// Connects and checks the server answers. `prefix` namespaces every key and channel.
    pub async fn connect(url: &str, prefix: &str) -> StoreResult<Self> {
        Self::connect_with(url, prefix, &RedisTls::default()).await
    }

    /// [`RedisStore::connect`], with certificates for a `rediss://` URL (see [`RedisTls`]).
    pub async fn connect_with(url: &str, prefix: &str, tls: &RedisTls) -> StoreResult<Self> {
        Self::connect_opts(url, prefix, &RedisOptions { tls: tls.clone(), ..RedisOptions::default() }).await
    }

    /// [`RedisStore::connect`] with every option: certificates, Sentinels, and the replicas a
    /// write that decides money or a send waits for.
    pub async fn connect_opts(url: &str, prefix: &str, opts: &RedisOptions) -> StoreResult<Self> {
        let invalid = |e: redis::RedisError| StoreError::Invalid(format!("REDIS_URL: {e}"));
        let tls = &opts.tls;
        let (client, certificates) = if tls.is_empty() {
            (redis::Client::open(url).map_err(invalid)?, None)
        } else {
            if !url.starts_with("rediss://") {
                return Err(StoreError::Invalid("REDIS_CA_FILE and REDIS_CLIENT_CERT_FILE apply to TLS only: REDIS_URL must start with rediss://".into()));
            }
            let certificates = redis::TlsCertificates {
                client_tls: tls.client.clone().map(|(client_cert, client_key)| redis::ClientTlsConfig { client_cert, client_key }),
                root_cert: tls.ca.clone(),
            };
            (redis::Client::build_with_tls(url, certificates.clone()).map_err(invalid)?, Some(certificates))
        };
        let primary = Primary::connect(client, certificates, opts.sentinel.as_ref(), opts.acks).await?;
        let store = RedisStore { primary, prefix: prefix.into(), scripts: Arc::new(Scripts::new()) };
        store.ping().await?;
        store.seed_review().await?;
        store.list_review().await?;
        store.seed_facets().await?;
        Ok(store)
    }

    /// Builds the per-state indexes of each project, person and model ([`index::facet`]) once
    /// in a store written before they were kept: a page at a time of each dimension's index,
    /// each record added to the index of its state as its own list of index keys names it, and
    /// that index added to the list (so the record's next write moves it: a page is one atomic
    /// step, and a record written meanwhile by this code has it already). Marked done only once
    /// all are built: a crash midway builds them again at the next connect (each step is a
    /// no-op on what it did).
    async fn seed_facets(&self) -> StoreResult<()> {
        const SEEDED: &str = "store:seeded:facets";
        if self.kv_get(SEEDED).await?.is_some() {
            return Ok(());
        }
        let mut conn = self.conn();
        let glob: String = self.prefix.chars().flat_map(|c| if "*?[]\\".contains(c) { vec!['\\', c] } else { vec![c] }).collect();
        for dimension in index::FACETS {
            let head = self.k("ti", &format!("{dimension}:"));
            let mut keys: Vec<String> = Vec::new();
            let mut found = conn.scan_match::<_, String>(format!("{glob}ti:{dimension}:*")).await.map_err(unavailable)?;
            while let Some(key) = found.next().await {
                keys.push(key.map_err(unavailable)?);
            }
            drop(found);
            for key in keys {
                let Some(value) = key.strip_prefix(&head) else { continue };
                let mut after = "-".to_string();
                loop {
                    let mut inv = self.scripts.index_note.key(&key);
                    for s in TaskState::ALL {
                        inv.key(self.k("ti", &index::state(s))).key(self.k("ti", &index::facet(dimension, value, s)));
                    }
                    let last: String = inv.arg(&after).arg(SEED_PAGE).arg(self.k("t", "")).invoke_async(&mut conn).await.map_err(unavailable)?;
                    if last.is_empty() {
                        break;
                    }
                    after = format!("({last}");
                }
            }
        }
        self.kv_set(SEEDED, b"1", None).await
    }

    /// Makes the Error Review's index and its records' lists of index keys agree, once: the
    /// seed below added failures to the index without naming it in their lists, so resolving
    /// one left its entry (and the count) behind. Each entry a record does not name is named
    /// by it if it is still to review, else removed; a record written meanwhile is read again.
    async fn list_review(&self) -> StoreResult<()> {
        const DONE: &str = "store:seeded:review-listed";
        if self.kv_get(DONE).await?.is_some() {
            return Ok(());
        }
        let mut conn = self.conn();
        let key = self.k("ti", index::TO_REVIEW);
        let (mut after, mut left) = ("-".to_string(), false);
        loop {
            let page: Vec<String> = redis::cmd("ZRANGEBYLEX").arg(&key).arg(&after).arg("+").arg("LIMIT").arg(0).arg(SEED_PAGE).query_async(&mut conn).await.map_err(unavailable)?;
            for member in &page {
                let id = index::id_of(member);
                let mut agreed = false;
                for _ in 0..10 {
                    let (version, keep) = self.task_get(id).await?.map_or((0, false), |t| (t.version, t.to_review()));
                    let done: i64 = self.scripts.index_fix.key(&key).key(self.k("t", id)).arg(member).arg(version).arg(i32::from(keep)).invoke_async(&mut conn).await.map_err(unavailable)?;
                    if done >= 0 {
                        agreed = true;
                        break;
                    }
                }
                // A record that kept changing is left for the next connect.
                left |= !agreed;
            }
            match page.last() {
                Some(last) if page.len() == SEED_PAGE => after = format!("({last}"),
                _ => break,
            }
        }
        if left {
            return Ok(());
        }
        self.kv_set(DONE, b"1", None).await
    }

    /// Builds the Error Review's index once in a store written before it was kept: every
    /// failure on record then is still to review. The first instance to connect does it.
    async fn seed_review(&self) -> StoreResult<()> {
        if !self.set_if("store:seeded:review", b"1", None, "NX").await? {
            return Ok(());
        }
        let mut cmd = redis::cmd("ZUNIONSTORE");
        cmd.arg(self.k("ti", index::TO_REVIEW)).arg(index::TO_REVIEW_SEEDS.len() + 1).arg(self.k("ti", index::TO_REVIEW));
        for seed in index::TO_REVIEW_SEEDS {
            cmd.arg(self.k("ti", seed));
        }
        cmd.arg("AGGREGATE").arg("MAX");
        cmd.query_async::<u64>(&mut self.conn()).await.map_err(unavailable)?;
        Ok(())
    }

    /// What the server keeps on disk (`CONFIG GET appendonly` and `save`) and whether it
    /// deletes keys when full (`maxmemory-policy`). `None` when the
    /// server does not say (managed services often disable `CONFIG`).
    pub async fn persistence(&self) -> Option<Persistence> {
        let mut conn = self.conn();
        let get = |name: &'static str| redis::cmd("CONFIG").arg("GET").arg(name).to_owned();
        let aof: Vec<String> = get("appendonly").query_async(&mut conn).await.ok()?;
        let save: Vec<String> = get("save").query_async(&mut conn).await.ok()?;
        let policy: Vec<String> = get("maxmemory-policy").query_async(&mut conn).await.ok()?;
        Some(Persistence {
            aof: aof.get(1).is_some_and(|v| v.eq_ignore_ascii_case("yes")),
            rdb: save.get(1).is_some_and(|v| !v.trim().is_empty()),
            eviction: policy.get(1).cloned().unwrap_or_else(|| "noeviction".into()),
        })
    }

    /// `SET key value NX|XX [PX ttl]`: `true` if it was set.
    async fn set_if(&self, key: &str, value: &[u8], ttl: Option<Duration>, condition: &str) -> StoreResult<bool> {
        check::key(key)?;
        check::value(value)?;
        check::ttl(ttl)?;
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.k("kv", key)).arg(value).arg(condition);
        if let Some(t) = ttl {
            cmd.arg("PX").arg(ms(t));
        }
        let set: Option<String> = cmd.query_async(&mut self.conn()).await.map_err(unavailable)?;
        Ok(set.is_some())
    }

    fn k(&self, kind: &str, key: &str) -> String {
        format!("{}{kind}:{key}", self.prefix)
    }

    fn conn(&self) -> PrimaryConn {
        self.primary.conn()
    }

    /// A write that decides money or a send: acknowledged by the replicas (see
    /// [`primary::durable`]).
    async fn durable<T: redis::FromRedisValue>(&self, inv: &redis::ScriptInvocation<'_>) -> StoreResult<T> {
        primary::durable(&self.primary, inv).await
    }

    /// Counts up each time another node becomes the primary (after a Sentinel failover).
    pub fn failovers(&self) -> tokio::sync::watch::Receiver<u64> {
        self.primary.generations()
    }

    /// The primary's `host:port`.
    pub fn primary_addr(&self) -> String {
        self.primary.node().addr.clone()
    }

    /// A scope's keys: (main, aux, sum) for a window; a counter uses only the first.
    fn scope_keys(&self, s: &Scope) -> [String; 3] {
        match s.window {
            Some(_) => [self.k("w", &s.key), self.k("wa", &s.key), self.k("ws", &s.key)],
            None => {
                let c = self.k("c", &s.key);
                [c.clone(), c.clone(), c]
            }
        }
    }

    /// An [`Announcement`]'s arguments to a script: announce (0/1), before, after, keep ms,
    /// the log's key prefix, the channel.
    fn announce_args(&self, inv: &mut redis::ScriptInvocation<'_>, announce: Option<&super::Announcement>) {
        match announce {
            Some(a) => inv.arg(1).arg(&a.before).arg(&a.after).arg(ms(a.keep)).arg(self.k("kv", &a.log_prefix)).arg(self.k("ev", &a.channel)),
            None => inv.arg(0).arg("").arg("").arg(0).arg("").arg(""),
        };
    }

    /// A hold's keys for the Lua library's `hold_fit`/`hold_take`: its own, then each scope's
    /// (a window's three, a counter's one).
    fn hold_keys(&self, inv: &mut redis::ScriptInvocation<'_>, req: &ReserveRequest) {
        inv.key(self.k("h", &req.id));
        for s in &req.scopes {
            if s.window.is_some() {
                let [main, aux, sum] = self.scope_keys(s);
                inv.key(main).key(aux).key(sum);
            } else {
                inv.key(self.k("c", &s.key));
            }
        }
    }

    fn decode(raw: &str) -> StoreResult<TaskRecord> {
        serde_json::from_str(raw).map_err(|e| StoreError::Corrupt(format!("task record: {e}")))
    }
}

/// A hold's arguments for the Lua library's `hold_fit`/`hold_take`.
fn hold_args(inv: &mut redis::ScriptInvocation<'_>, req: &ReserveRequest) {
    inv.arg(&req.id).arg(req.amount).arg(req.hold_ttl.map_or(0, ms)).arg(req.scopes.len());
    for s in &req.scopes {
        inv.arg(s.limit).arg(s.window.map_or(0, ms));
    }
}

/// A refusal as `hold_fit` reports it: scope index, used, limit, retry ms or -1.
fn refusal(req: &ReserveRequest, answer: &[i64]) -> StoreResult<Refusal> {
    let [i, used, limit, retry] = answer else { return Err(StoreError::Corrupt(format!("a refusal reads {answer:?}"))) };
    let scope = usize::try_from(*i).ok().filter(|i| *i < req.scopes.len()).ok_or_else(|| StoreError::Corrupt("a refusal's scope index".into()))?;
    let retry_after = (*retry >= 0).then(|| Duration::from_millis(*retry as u64));
    Ok(Refusal { scope, key: req.scopes[scope].key.clone(), used: *used, limit: *limit, retry_after })
}

#[async_trait]
impl Store for RedisStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    fn failing_over(&self) -> bool {
        self.primary.failing_over()
    }

    async fn ping(&self) -> StoreResult<()> {
        if self.failing_over() {
            return Err(StoreError::Unavailable("store failing over: no Redis primary yet".into()));
        }
        let pong: String = redis::cmd("PING").query_async(&mut self.conn()).await.map_err(unavailable)?;
        if pong == "PONG" { Ok(()) } else { Err(StoreError::Unavailable(format!("redis answered {pong:?} to PING"))) }
    }

    async fn task_create(&self, task: &TaskRecord, with: &CreateWith<'_>) -> StoreResult<Created> {
        check::create(task, with)?;
        let CreateWith { lookups, announce, unchanged, holds, log } = *with;
        let json = serde_json::to_string(task).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let index_keys = task.index_keys();
        let mut inv = self.scripts.task_create.key(self.k("t", &task.id));
        for i in &index_keys {
            inv.key(self.k("ti", i));
        }
        for l in lookups {
            inv.key(self.k("kv", &l.key));
        }
        inv.key(self.k("c", announce.map_or("-", |a| a.seq_key.as_str())));
        inv.key(self.k("kv", unchanged.map_or("-", |u| u.key.as_str())));
        for h in holds {
            self.hold_keys(&mut inv, h);
        }
        inv.key(self.k("lg", log.map_or("-", |l| l.log))).key(self.k("lgs", log.map_or("-", |l| l.log)));
        inv.arg(json).arg(task.index_member()).arg(task.version).arg(index_keys.len()).arg(lookups.len());
        for l in lookups {
            inv.arg(l.value.as_slice()).arg(l.ttl.map_or(0, ms));
        }
        self.announce_args(&mut inv, announce);
        inv.arg(unchanged.map_or("", |u| u.sha1.as_deref().unwrap_or("-")));
        inv.arg(holds.len());
        for h in holds {
            hold_args(&mut inv, h);
        }
        match log {
            Some(l) => inv.arg(1).arg(l.entry).arg(l.keep),
            None => inv.arg(0).arg("").arg(0),
        };
        let r: Vec<i64> = self.durable(&inv).await?;
        Ok(match r.as_slice() {
            [-2] => Created::Changed,
            [-1] => Created::Exists,
            [-3, hold, rest @ ..] => {
                let hold = usize::try_from(*hold).ok().filter(|h| *h < holds.len()).ok_or_else(|| StoreError::Corrupt("task_create: hold index".into()))?;
                Created::Refused(hold, refusal(&holds[hold], rest)?)
            }
            [n] => Created::Inserted(u64::try_from(*n).unwrap_or(0)),
            other => return Err(StoreError::Corrupt(format!("task_create script answered {other:?}"))),
        })
    }

    async fn task_get(&self, id: &str) -> StoreResult<Option<TaskRecord>> {
        check::key(id)?;
        let raw: Option<String> = self.conn().hget(self.k("t", id), "d").await.map_err(unavailable)?;
        raw.map(|r| Self::decode(&r)).transpose()
    }

    async fn task_update_with(&self, task: &TaskRecord, with: &UpdateWith<'_>) -> StoreResult<Option<u64>> {
        check::update(task, with)?;
        let mut next = task.clone();
        next.version = task.version + 1;
        let json = serde_json::to_string(&next).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let index_keys = next.index_keys();
        let mut inv = self.scripts.task_update.key(self.k("t", &task.id));
        for i in &index_keys {
            inv.key(self.k("ti", i));
        }
        for (id, _) in with.settles {
            inv.key(self.k("h", id));
        }
        for c in with.charges {
            self.hold_keys(&mut inv, c);
        }
        inv.key(self.k("c", with.announce.map_or("-", |a| a.seq_key.as_str())));
        inv.arg(json).arg(next.index_member()).arg(task.version).arg(index_keys.len()).arg(with.settles.len());
        for (id, actual) in with.settles {
            inv.arg(*id).arg(*actual);
        }
        inv.arg(with.charges.len());
        for c in with.charges {
            hold_args(&mut inv, c);
        }
        self.announce_args(&mut inv, with.announce);
        let v: i64 = self.durable(&inv).await?;
        Ok((v > 0).then_some(v as u64))
    }

    async fn task_delete(&self, id: &str, version: u64) -> StoreResult<bool> {
        check::key(id)?;
        let n: i64 = self.durable(self.scripts.task_delete.key(self.k("t", id)).arg(version)).await?;
        Ok(n == 1)
    }

    async fn task_list(&self, query: &TaskQuery) -> StoreResult<TaskPage> {
        let want = query.page_size();
        let zkey = self.k("ti", &query.driving_index());
        let mut conn = self.conn();
        let mut page = TaskPage::default();
        let Some((low, high)) = query.member_range() else { return Ok(page) };
        // Newest first reads down from the high end, oldest first up from the low one.
        let lex = |b: Bound<String>, open: &str| match b {
            Bound::Included(m) => format!("[{m}"),
            Bound::Excluded(m) => format!("({m}"),
            Bound::Unbounded => open.to_string(),
        };
        let (command, mut from, to) = if query.oldest_first { ("ZRANGEBYLEX", lex(low, "-"), lex(high, "+")) } else { ("ZREVRANGEBYLEX", lex(high, "+"), lex(low, "-")) };
        let mut scanned = 0;
        loop {
            let members: Vec<String> = redis::cmd(command)
                .arg(&zkey)
                .arg(&from)
                .arg(&to)
                .arg("LIMIT")
                .arg(0)
                .arg(LIST_BATCH)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            if members.is_empty() {
                return Ok(page);
            }
            let mut pipe = redis::pipe();
            for m in &members {
                let id = index::id_of(m);
                pipe.hget(self.k("t", id), "d");
            }
            let raws: Vec<Option<String>> = pipe.query_async(&mut conn).await.map_err(unavailable)?;
            for (m, raw) in members.iter().zip(raws) {
                scanned += 1;
                // A member whose record is gone is skipped (never half-written: insert is atomic).
                if let Some(raw) = raw {
                    let t = Self::decode(&raw)?;
                    if query.matches(&t) {
                        page.tasks.push(t);
                    }
                }
                if page.tasks.len() == want || scanned >= LIST_SCAN_CAP {
                    page.next = Some(m.clone());
                    return Ok(page);
                }
            }
            if members.len() < LIST_BATCH {
                return Ok(page);
            }
            from = format!("({}", members[members.len() - 1]);
        }
    }

    async fn task_counts(&self) -> StoreResult<TaskCounts> {
        let mut pipe = redis::pipe();
        pipe.zcard(self.k("ti", index::ALL));
        for s in TaskState::ALL {
            pipe.zcard(self.k("ti", &index::state(s)));
        }
        pipe.zcard(self.k("ti", index::TO_REVIEW));
        let n: Vec<u64> = pipe.query_async(&mut self.conn()).await.map_err(unavailable)?;
        let states = TaskState::ALL.len();
        Ok(TaskCounts { total: n[0], by_state: TaskState::ALL.iter().copied().zip(n[1..=states].iter().copied()).collect(), to_review: n[states + 1] })
    }

    async fn index_counts(&self, keys: &[String]) -> StoreResult<Vec<u64>> {
        check::index_counts(keys)?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for k in keys {
            pipe.zcard(self.k("ti", k));
        }
        pipe.query_async(&mut self.conn()).await.map_err(unavailable)
    }

    async fn kv_get(&self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        check::key(key)?;
        self.conn().get(self.k("kv", key)).await.map_err(unavailable)
    }

    async fn kv_set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> StoreResult<()> {
        check::key(key)?;
        check::value(value)?;
        check::ttl(ttl)?;
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.k("kv", key)).arg(value);
        if let Some(t) = ttl {
            cmd.arg("PX").arg(ms(t));
        }
        cmd.query_async::<()>(&mut self.conn()).await.map_err(unavailable)
    }

    async fn kv_set_nx(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> StoreResult<bool> {
        self.set_if(key, value, ttl, "NX").await
    }

    async fn kv_replace(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> StoreResult<bool> {
        self.set_if(key, value, ttl, "XX").await
    }

    async fn kv_delete(&self, key: &str) -> StoreResult<bool> {
        check::key(key)?;
        let n: u64 = self.conn().del(self.k("kv", key)).await.map_err(unavailable)?;
        Ok(n > 0)
    }

    async fn counter_add(&self, key: &str, delta: i64, ttl: Option<Duration>) -> StoreResult<i64> {
        check::key(key)?;
        check::ttl(ttl)?;
        self.scripts
            .counter_add
            .key(self.k("c", key))
            .arg(delta)
            .arg(ttl.map_or(0, ms))
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)
    }

    async fn counter_get(&self, key: &str) -> StoreResult<i64> {
        check::key(key)?;
        let v: Option<i64> = self.conn().get(self.k("c", key)).await.map_err(unavailable)?;
        Ok(v.unwrap_or(0))
    }

    async fn log_append(&self, log: &str, entry: &[u8], keep: usize) -> StoreResult<u64> {
        check::log(log, keep)?;
        check::value(entry)?;
        self.scripts
            .log_append
            .key(self.k("lg", log))
            .key(self.k("lgs", log))
            .arg(entry)
            .arg(keep)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)
    }

    async fn log_read(&self, log: &str, before: Option<u64>, limit: usize) -> StoreResult<Vec<LogEntry>> {
        check::log(log, limit)?;
        let max = before.map_or("+inf".to_string(), |b| format!("({b}"));
        let members: Vec<Vec<u8>> = redis::cmd("ZRANGE")
            .arg(self.k("lg", log))
            .arg(max)
            .arg("-inf")
            .arg("BYSCORE")
            .arg("REV")
            .arg("LIMIT")
            .arg(0)
            .arg(limit.min(MAX_LOG_PAGE))
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        members
            .into_iter()
            .map(|m| {
                let bar = m.iter().position(|b| *b == b'|').ok_or_else(|| StoreError::Corrupt(format!("log {log}: entry without a number")))?;
                let seq = std::str::from_utf8(&m[..bar]).ok().and_then(|s| s.parse().ok()).ok_or_else(|| StoreError::Corrupt(format!("log {log}: bad number")))?;
                Ok(LogEntry { seq, data: m[bar + 1..].to_vec() })
            })
            .collect()
    }

    async fn reserve(&self, req: &ReserveRequest) -> StoreResult<ReserveOutcome> {
        check::reserve(req)?;
        let mut inv = self.scripts.reserve.prepare_invoke();
        self.hold_keys(&mut inv, req);
        hold_args(&mut inv, req);
        let r: Vec<i64> = self.durable(&inv).await?;
        match r.as_slice() {
            [0] => Ok(ReserveOutcome::Reserved),
            [1] => Ok(ReserveOutcome::AlreadyHeld),
            [2, rest @ ..] => Ok(ReserveOutcome::Refused(refusal(req, rest)?)),
            other => Err(StoreError::Corrupt(format!("reserve script answered {other:?}"))),
        }
    }

    async fn settle(&self, id: &str, actual: i64) -> StoreResult<bool> {
        check::key(id)?;
        check::amount("settled amount", actual)?;
        let n: i64 = self.durable(self.scripts.settle.key(self.k("h", id)).arg(id).arg(actual)).await?;
        Ok(n == 1)
    }

    async fn usage(&self, scope: &Scope) -> StoreResult<i64> {
        check::key(&scope.key)?;
        let [main, aux, sum] = self.scope_keys(scope);
        match scope.window {
            Some(w) => self
                .scripts
                .window_usage
                .key(main)
                .key(aux)
                .key(sum)
                .arg(ms(w).max(1))
                .invoke_async(&mut self.conn())
                .await
                .map_err(unavailable),
            None => {
                let v: Option<i64> = self.conn().get(main).await.map_err(unavailable)?;
                Ok(v.unwrap_or(0))
            }
        }
    }

    async fn usage_many(&self, scopes: &[Scope]) -> StoreResult<Vec<i64>> {
        check::usage_batch(scopes)?;
        if scopes.is_empty() {
            return Ok(Vec::new());
        }
        // One pipeline: a running total is a plain read, a window its script (loaded first in
        // the same pipeline: a pipelined script is not loaded on demand).
        let mut pipe = redis::pipe();
        if scopes.iter().any(|s| s.window.is_some()) {
            pipe.load_script(&self.scripts.window_usage).ignore();
        }
        for s in scopes {
            let [main, aux, sum] = self.scope_keys(s);
            match s.window {
                None => {
                    pipe.get(main);
                }
                Some(w) => {
                    pipe.invoke_script(self.scripts.window_usage.key(main).key(aux).key(sum).arg(ms(w).max(1)));
                }
            }
        }
        let got: Vec<Option<i64>> = pipe.query_async(&mut self.conn()).await.map_err(unavailable)?;
        Ok(got.into_iter().map(|v| v.unwrap_or(0)).collect())
    }

    async fn lease_acquire(&self, name: &str, holder: &str, ttl: Duration) -> StoreResult<bool> {
        check::key(name)?;
        check::key(holder)?;
        check::ttl(Some(ttl))?;
        let n: i64 = self
            .scripts
            .lease_acquire
            .key(self.k("l", name))
            .arg(holder)
            .arg(ms(ttl))
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(n == 1)
    }

    async fn lease_release(&self, name: &str, holder: &str) -> StoreResult<bool> {
        check::key(name)?;
        let n: i64 = self
            .scripts
            .lease_release
            .key(self.k("l", name))
            .arg(holder)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(n == 1)
    }

    async fn publish(&self, channel: &str, payload: &[u8]) -> StoreResult<()> {
        check::key(channel)?;
        check::value(payload)?;
        let _receivers: i64 = self.conn().publish(self.k("ev", channel), payload).await.map_err(unavailable)?;
        Ok(())
    }

    async fn subscribe(&self, channel: &str) -> StoreResult<EventStream> {
        check::key(channel)?;
        let node = self.primary.node();
        let mut pubsub = match node.client.get_async_pubsub().await {
            Ok(p) => p,
            Err(e) => {
                self.primary.failed(&node, &e).await;
                return Err(unavailable(e));
            }
        };
        pubsub.subscribe(self.k("ev", channel)).await.map_err(unavailable)?;
        Ok(pubsub.into_on_message().map(|m| m.get_payload_bytes().to_vec()).boxed())
    }
}
