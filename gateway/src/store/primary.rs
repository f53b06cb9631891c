//! The Redis node the store writes to: the one `REDIS_URL` names, or the primary that a set of
//! Sentinels names for a service (`REDIS_SENTINELS`, `REDIS_SENTINEL_SERVICE`), found again
//! on a connection error, a `READONLY` or `MASTERDOWN` answer, or a `+switch-master` message
//! (Redis's rules for Sentinel clients; the discovery itself, with its check that the node named
//! answers `ROLE` as a master, is the `redis` crate's).
//!
//! Every store call goes through a [`PrimaryConn`]: a call refused because the node it reached
//! is no longer the primary, or that could not reach it at all, was not carried out, and is
//! sent again to the primary found anew (within [`FAILOVER_PATIENCE`]). A call whose
//! connection dropped after it was sent is not: whether it was carried out is unknown, and the
//! caller is told the store failed, as on a Redis crash (the lifecycle's steps are written for
//! that).
//!
//! Redis replicates asynchronously: a write the primary acknowledged may be missing on the
//! replica that takes over. The writes that decide money and sends ([`durable`]) are followed
//! by `WAIT` for replicas on their own connection; a write no replica acknowledged in time is
//! reported as [`StoreError::Unreplicated`] (treated as not done by its caller).

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{Cmd, ConnectionAddr, ErrorKind, FromRedisValue, Pipeline, RedisError, RedisFuture, ScriptInvocation, ServerErrorKind, Value};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};
use tokio::sync::watch;

use super::{StoreError, StoreResult};

/// How long a call keeps looking for a primary before it reports the store failing over.
pub const FAILOVER_PATIENCE: Duration = Duration::from_secs(6);
/// How often the replicas a primary reports are counted again (for `WAIT`'s automatic setting).
const REPLICAS_EVERY: Duration = Duration::from_secs(2);
/// Longest one lookup through the Sentinels may take (a Sentinel whose host does not answer
/// would otherwise hold it for the system's TCP timeout).
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

/// The primary the Sentinels name now, checked to answer `ROLE` as a master.
async fn look_up(sentinel: &tokio::sync::Mutex<SentinelClient>) -> Result<redis::Client, String> {
    match tokio::time::timeout(LOOKUP_TIMEOUT, async { sentinel.lock().await.async_get_client().await }).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} s", LOOKUP_TIMEOUT.as_secs())),
    }
}

/// Where the Sentinels are and which service they watch.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SentinelSettings {
    /// `host:port` of each Sentinel (`REDIS_SENTINELS`).
    pub sentinels: Vec<(String, u16)>,
    /// The master's name the Sentinels know it by (`REDIS_SENTINEL_SERVICE`).
    pub service: String,
    /// The Sentinels' own password (`REDIS_SENTINEL_PASSWORD`), if they ask for one.
    pub password: Option<String>,
}

impl std::fmt::Debug for SentinelSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelSettings").field("sentinels", &self.sentinels).field("service", &self.service).field("password", &self.password.is_some()).finish()
    }
}

/// How many replicas must acknowledge a write that decides money or a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaAcks {
    /// `None`: one when the primary reports a replica, else none (`REDIS_MIN_REPLICAS_ACKS`
    /// unset). `Some(n)`: always `n` (0 turns the wait off).
    pub min: Option<u32>,
    /// How long a write waits for them (`REDIS_REPLICA_ACK_TIMEOUT_MS`).
    pub timeout: Duration,
}

impl Default for ReplicaAcks {
    fn default() -> Self {
        ReplicaAcks { min: None, timeout: Duration::from_millis(1000) }
    }
}

/// Connections for the writes followed by `WAIT`: a `WAIT` holds the connection it is sent on
/// until the replicas answer, so several let writes wait side by side.
const DURABLE_CONNECTIONS: usize = 4;

/// One primary, as found: its client (for pub/sub), a shared connection for everything, and
/// a few for the writes followed by `WAIT`, taken in turn.
pub(super) struct Node {
    pub client: redis::Client,
    conn: ConnectionManager,
    durable: Vec<ConnectionManager>,
    next_durable: std::sync::atomic::AtomicUsize,
    /// `host:port`, for messages.
    pub addr: String,
    /// Which node this is, counting from 0 at connect: a call that failed on node `n` asks
    /// for a new one only if the current one is still `n`.
    pub generation: u64,
}

enum Source {
    /// `REDIS_URL`'s node, always.
    Fixed,
    /// Whichever node the Sentinels name (asked one lookup at a time).
    Sentinel(tokio::sync::Mutex<SentinelClient>),
}

pub(super) struct Primary {
    source: Source,
    node: RwLock<Arc<Node>>,
    /// Set from a call that could not reach a primary until one is found again.
    failing_over: AtomicBool,
    /// One lookup at a time.
    finding: tokio::sync::Mutex<()>,
    acks: ReplicaAcks,
    /// Replicas the current primary reports (for the automatic setting).
    replicas: AtomicU32,
    generation: watch::Sender<u64>,
}

fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(3)))
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_number_of_retries(2)
}

fn addr_of(client: &redis::Client) -> String {
    match client.get_connection_info().addr() {
        ConnectionAddr::Tcp(h, p) | ConnectionAddr::TcpTls { host: h, port: p, .. } => format!("{h}:{p}"),
        ConnectionAddr::Unix(p) => p.display().to_string(),
        other => format!("{other:?}"),
    }
}

/// A call refused or failed because the node is not (or no longer) a reachable primary.
fn moved(e: &RedisError) -> bool {
    matches!(e.kind(), ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown | ServerErrorKind::BusyLoading))
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_io_error()
        || e.is_timeout()
}

/// A call that was certainly not carried out (refused before running, or never sent), so
/// sending it again cannot do it twice.
fn not_carried_out(e: &RedisError) -> bool {
    matches!(e.kind(), ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown | ServerErrorKind::BusyLoading)) || e.is_connection_refusal()
}

impl Primary {
    /// Connects to `REDIS_URL`'s node (`sentinel: None`) or to the primary the Sentinels name,
    /// with `client` giving the data nodes' user, password, database and TLS.
    pub(super) async fn connect(client: redis::Client, certificates: Option<redis::TlsCertificates>, sentinel: Option<&SentinelSettings>, acks: ReplicaAcks) -> StoreResult<Arc<Self>> {
        let (source, client) = match sentinel {
            None => (Source::Fixed, client),
            Some(s) => {
                let sentinel = tokio::sync::Mutex::new(sentinel_client(&client, certificates, s)?);
                let found = look_up(&sentinel).await.map_err(|e| StoreError::Unavailable(format!("no primary for {:?} from the Sentinels: {e}", s.service)))?;
                (Source::Sentinel(sentinel), found)
            }
        };
        let node = Arc::new(open_node(client, 0).await?);
        let (generation, _) = watch::channel(0);
        let primary = Arc::new(Primary {
            source,
            node: RwLock::new(node.clone()),
            failing_over: AtomicBool::new(false),
            finding: tokio::sync::Mutex::new(()),
            acks,
            replicas: AtomicU32::new(0),
            generation,
        });
        primary.count_replicas(&node).await;
        tokio::spawn(watch_primary(Arc::downgrade(&primary)));
        if let Source::Sentinel(_) = &primary.source {
            tokio::spawn(watch_switches(Arc::downgrade(&primary)));
        }
        Ok(primary)
    }

    pub(super) fn node(&self) -> Arc<Node> {
        self.node.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A connection for any call.
    pub(super) fn conn(self: &Arc<Self>) -> PrimaryConn {
        PrimaryConn { primary: self.clone(), node: self.node(), durable: None }
    }

    /// Whether a call found no primary and none has been found since.
    pub(super) fn failing_over(&self) -> bool {
        self.failing_over.load(Ordering::Relaxed)
    }

    /// Counts up each time another node becomes the primary.
    pub(super) fn generations(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// How many replicas a write that decides money or a send waits for.
    fn acks_wanted(&self) -> u32 {
        self.acks.min.unwrap_or_else(|| self.replicas.load(Ordering::Relaxed).min(1))
    }

    async fn count_replicas(&self, node: &Node) {
        let mut conn = node.conn.clone();
        if let Ok(info) = redis::cmd("INFO").arg("replication").query_async::<String>(&mut conn).await {
            let n = info.lines().find_map(|l| l.strip_prefix("connected_slaves:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
            self.replicas.store(n, Ordering::Relaxed);
        }
    }

    /// The primary after a call on node `seen` failed: the same node if another call already
    /// found a new one or there are no Sentinels to ask, else whichever the Sentinels name now.
    async fn find_again(&self, seen: u64, why: &RedisError) -> StoreResult<Arc<Node>> {
        let Source::Sentinel(sentinel) = &self.source else { return Ok(self.node()) };
        let _one = self.finding.lock().await;
        let current = self.node();
        if current.generation != seen {
            return Ok(current);
        }
        self.failing_over.store(true, Ordering::Relaxed);
        let found = look_up(sentinel).await.map_err(|e| StoreError::Unavailable(format!("store failing over: no primary yet ({e})")))?;
        let addr = addr_of(&found);
        if addr == current.addr {
            // The same node still answers as the primary: the error was its own (a restart).
            if ping(&current).await {
                self.failing_over.store(false, Ordering::Relaxed);
            }
            return Ok(current);
        }
        let node = Arc::new(open_node(found, seen + 1).await?);
        tracing::warn!(old = %current.addr, new = %node.addr, error = %why, "the Redis primary moved: using the one the Sentinels name now");
        self.count_replicas(&node).await;
        *self.node.write().unwrap_or_else(|p| p.into_inner()) = node.clone();
        self.failing_over.store(false, Ordering::Relaxed);
        self.generation.send_replace(node.generation);
        Ok(node)
    }

    /// After a call failed on `node` with `e`: look for the primary again when it may have
    /// moved, so the next call goes to the right one.
    pub(super) async fn failed(&self, node: &Node, e: &RedisError) {
        if moved(e) {
            let _ = self.find_again(node.generation, e).await;
        }
    }
}

async fn ping(node: &Node) -> bool {
    let mut conn = node.conn.clone();
    redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok()
}

async fn open_node(client: redis::Client, generation: u64) -> StoreResult<Node> {
    let unavailable = |e: RedisError| StoreError::Unavailable(format!("redis: {e}"));
    let conn = client.get_connection_manager_with_config(manager_config()).await.map_err(unavailable)?;
    let mut durable = Vec::with_capacity(DURABLE_CONNECTIONS);
    for _ in 0..DURABLE_CONNECTIONS {
        durable.push(client.get_connection_manager_with_config(manager_config()).await.map_err(unavailable)?);
    }
    Ok(Node { addr: addr_of(&client), client, conn, durable, next_durable: Default::default(), generation })
}

/// A Sentinel client whose data-node connections carry `REDIS_URL`'s user, password,
/// database and TLS.
fn sentinel_client(client: &redis::Client, certificates: Option<redis::TlsCertificates>, s: &SentinelSettings) -> StoreResult<SentinelClient> {
    let invalid = |e: RedisError| StoreError::Invalid(format!("REDIS_SENTINELS: {e}"));
    if s.sentinels.is_empty() || s.service.is_empty() {
        return Err(StoreError::Invalid("REDIS_SENTINELS needs at least one host:port and REDIS_SENTINEL_SERVICE the master's name".into()));
    }
    let info = client.get_connection_info();
    let settings = info.redis_settings();
    let mut b = SentinelClientBuilder::new(s.sentinels.iter().map(|(h, p)| ConnectionAddr::Tcp(h.clone(), *p)), &s.service, SentinelServerType::Master).map_err(invalid)?;
    b = b.set_client_to_redis_db(settings.db());
    if let Some(u) = settings.username() {
        b = b.set_client_to_redis_username(u);
    }
    if let Some(p) = settings.password() {
        b = b.set_client_to_redis_password(p);
    }
    if let ConnectionAddr::TcpTls { .. } = info.addr() {
        b = b.set_client_to_redis_tls_mode(redis::TlsMode::Secure);
        if let Some(c) = certificates {
            b = b.set_client_to_redis_certificates(c);
        }
    }
    if let Some(p) = &s.password {
        b = b.set_client_to_sentinel_password(p);
    }
    b.build().map_err(invalid)
}

/// Every few seconds: is the node still a primary that answers (a failover without any call
/// failing: a primary demoted in place), and how many replicas does it report.
async fn watch_primary(primary: Weak<Primary>) {
    loop {
        tokio::time::sleep(REPLICAS_EVERY).await;
        let Some(p) = primary.upgrade() else { return };
        let node = p.node();
        let mut conn = node.conn.clone();
        match redis::cmd("ROLE").query_async::<Vec<Value>>(&mut conn).await {
            Ok(role) if matches!(role.first(), Some(Value::BulkString(b)) if b.as_slice() == b"master") => p.count_replicas(&node).await,
            Ok(_) => {
                let e = RedisError::from((ErrorKind::Server(ServerErrorKind::ReadOnly), "the node is no longer a primary"));
                let _ = p.find_again(node.generation, &e).await;
            }
            Err(e) => p.failed(&node, &e).await,
        }
    }
}

/// Listens to the Sentinels' `+switch-master` messages (one Sentinel at a time, the next
/// when it goes away) and looks for the primary again on each.
async fn watch_switches(primary: Weak<Primary>) {
    use futures::StreamExt;
    loop {
        let client = {
            let Some(p) = primary.upgrade() else { return };
            let Source::Sentinel(s) = &p.source else { return };
            tokio::time::timeout(LOOKUP_TIMEOUT, async { s.lock().await.async_get_sentinel_client().await }).await.ok()
        };
        if let Some(Ok(client)) = client
            && let Ok(mut pubsub) = client.get_async_pubsub().await
            && pubsub.subscribe("+switch-master").await.is_ok()
        {
            let mut messages = pubsub.into_on_message();
            while let Some(m) = messages.next().await {
                let Some(p) = primary.upgrade() else { return };
                let payload: String = m.get_payload().unwrap_or_default();
                tracing::info!(message = %payload, "Sentinel: +switch-master");
                let node = p.node();
                let e = RedisError::from((ErrorKind::Server(ServerErrorKind::ReadOnly), "+switch-master"));
                let _ = p.find_again(node.generation, &e).await;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

impl Node {
    /// The next of the connections for writes followed by `WAIT`.
    fn durable(&self) -> usize {
        self.next_durable.fetch_add(1, Ordering::Relaxed) % self.durable.len()
    }
}

/// A connection to the current primary that follows it (see the module's docs); `durable`:
/// one of the node's connections for writes followed by `WAIT` (by its index).
pub(super) struct PrimaryConn {
    primary: Arc<Primary>,
    node: Arc<Node>,
    durable: Option<usize>,
}

impl PrimaryConn {
    fn manager(&self) -> ConnectionManager {
        match self.durable {
            Some(i) => self.node.durable[i % self.node.durable.len()].clone(),
            None => self.node.conn.clone(),
        }
    }

    /// After `e` on the current node: the next node to try, if the call may be sent again.
    async fn again(&mut self, e: &RedisError, started: Instant) -> bool {
        if !moved(e) {
            return false;
        }
        match self.primary.find_again(self.node.generation, e).await {
            Ok(node) => self.node = node,
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
        not_carried_out(e) && started.elapsed() < FAILOVER_PATIENCE && matches!(self.primary.source, Source::Sentinel(_))
    }
}

impl ConnectionLike for PrimaryConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let started = Instant::now();
            loop {
                match self.manager().req_packed_command(cmd).await {
                    Err(e) if self.again(&e, started).await => continue,
                    answer => return answer,
                }
            }
        })
    }

    fn req_packed_commands<'a>(&'a mut self, pipeline: &'a Pipeline, offset: usize, count: usize) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let started = Instant::now();
            loop {
                match self.manager().req_packed_commands(pipeline, offset, count).await {
                    Err(e) if self.again(&e, started).await => continue,
                    answer => return answer,
                }
            }
        })
    }

    fn get_db(&self) -> i64 {
        self.node.conn.get_db()
    }
}

/// Runs a script that decides money or a send, then waits for the replicas to acknowledge
/// it: `WAIT` on the connection the script ran on (it covers every write sent on it before).
pub(super) async fn durable<T: FromRedisValue>(primary: &Arc<Primary>, inv: &ScriptInvocation<'_>) -> StoreResult<T> {
    let unavailable = |e: RedisError| StoreError::Unavailable(format!("redis: {e}"));
    let wanted = primary.acks_wanted();
    if wanted == 0 {
        return inv.invoke_async(&mut primary.conn()).await.map_err(unavailable);
    }
    let node = primary.node();
    let slot = node.durable();
    let mut conn = PrimaryConn { primary: primary.clone(), node, durable: Some(slot) };
    let answer: T = inv.invoke_async(&mut conn).await.map_err(unavailable)?;
    // The WAIT goes on the very connection the write went on (after a failover mid-call, the
    // new node's).
    let mut written_on = conn.manager();
    let addr = conn.node.addr.clone();
    let timeout = primary.acks.timeout;
    let acked: u32 = redis::cmd("WAIT").arg(wanted).arg(timeout.as_millis() as u64).query_async(&mut written_on).await.map_err(|e| {
        StoreError::Unreplicated(format!("the primary at {addr} did not say whether a replica has the write ({e})"))
    })?;
    if acked < wanted {
        return Err(StoreError::Unreplicated(format!("{acked} of {wanted} replica(s) acknowledged the write within {} ms", timeout.as_millis())));
    }
    Ok(answer)
}

/// Parses `REDIS_SENTINELS` (`host:port,host:port,…`).
pub fn parse_sentinels(list: &str) -> Result<Vec<(String, u16)>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (host, port) = s.rsplit_once(':').ok_or_else(|| format!("{s:?} is not host:port"))?;
            let port: u16 = port.parse().map_err(|_| format!("{s:?}: the port must be a number from 1 to 65535"))?;
            if host.is_empty() || port == 0 {
                return Err(format!("{s:?} is not host:port"));
            }
            Ok((host.trim_matches(|c| c == '[' || c == ']').to_string(), port))
        })
        .collect()
}
