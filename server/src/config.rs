//! Configuration: flags (with `--help`) backed by environment variables, validated before
//! anything starts. Secrets (`KIE_API_KEY`, `KIE_WEBHOOK_HMAC_KEY`) are read from the
//! environment only — never flags, which other users of the machine can see — and are held in
//! [`Secret`], whose `Debug` prints no part of them.

use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use url::Url;

pub use gateway::Secret;

/// Where the KIE key came from (shown in the vault panel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    Environment,
    File,
}

impl KeySource {
    pub fn as_str(self) -> &'static str {
        match self {
            KeySource::Environment => "environment",
            KeySource::File => "file",
        }
    }
}

/// The command line. Every flag also reads an environment variable.
#[derive(Debug, Parser)]
#[command(
    name = "control-room",
    version,
    about = "KIE Control Room: a self-hosted operations console and relay for the KIE.ai generation API",
    after_help = "Secrets come from the environment only: KIE_API_KEY (or KIE_API_KEY_FILE naming a file that holds it) and KIE_WEBHOOK_HMAC_KEY.\nSee README.md and .env.example."
)]
pub struct Cli {
    /// Address to serve the console on.
    #[arg(long, env = "LEPTOS_SITE_ADDR", default_value = "127.0.0.1:3000")]
    pub site_addr: SocketAddr,
    /// Folder with the built browser bundle (`pkg/`), as cargo-leptos writes it.
    #[arg(long, env = "LEPTOS_SITE_ROOT", default_value = "target/site")]
    pub site_root: PathBuf,
    /// KIE's API base URL.
    #[arg(long, env = "KIE_BASE_URL", default_value = "https://api.kie.ai")]
    pub kie_base_url: String,
    /// KIE's upload host (inputs from the Library and the relay's upload calls go there).
    /// Default: https://kieai.redpandaai.co with KIE's own KIE_BASE_URL, else KIE_BASE_URL
    /// itself (a simulator or a proxy serves both).
    #[arg(long, env = "KIE_UPLOAD_BASE_URL")]
    pub kie_upload_base_url: Option<String>,
    /// Largest file the relay's upload calls take, in MiB (a base64 body may be a third larger).
    #[arg(long, env = "UPLOAD_MAX_MB", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=2048))]
    pub upload_max_mb: u64,
    /// What one relay key may upload to KIE through the relay in 24 hours, in GB (10^9 bytes;
    /// decimals allowed); 0: no limit.
    #[arg(long, env = "RELAY_UPLOAD_GB_PER_DAY", default_value = "20")]
    pub relay_upload_gb_per_day: String,
    /// The URL at which KIE (and browsers) reach this console; callbacks go to
    /// PUBLIC_URL/callbacks/kie/<token>.
    #[arg(long, env = "PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Redis for shared state across instances, e.g. redis://127.0.0.1:6379/. Without it the
    /// console runs on an embedded store under DATA_DIR (one instance).
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// Prefix for every Redis key, so several deployments can share one Redis.
    #[arg(long, env = "REDIS_PREFIX", default_value = "cr:")]
    pub redis_prefix: String,
    /// Folder for the embedded store (used when REDIS_URL is not set).
    #[arg(long, env = "DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Run against the bundled KIE simulator (started in process on a free port, with a
    /// generated key) instead of KIE. Every screen then says "Simulator".
    #[arg(long, env = "CONTROL_ROOM_SIMULATE", value_parser = clap::builder::BoolishValueParser::new())]
    pub simulate: bool,
    /// The rate guard's rules, across all instances: `20/10s` (KIE: 20 new tasks per 10 s),
    /// `requests:500/1m`, `concurrent:5`, `tokens:64000/1m`, several separated by commas.
    #[arg(long, env = "RATE_GUARD", default_value = "20/10s")]
    pub rate_guard: String,
    /// The language models' limits, across all instances: concurrent calls, requests and
    /// tokens per window (`unlimited` drops a rule, `none` keeps none).
    #[arg(long, env = "RATE_GUARD_CHAT", default_value = gateway::tasks::rate_guard::CHAT_DEFAULT)]
    pub rate_guard_chat: String,
    /// One language model's own limits besides the shared ones, held apart:
    /// `gemini-3-pro=concurrent:5,requests:60/1m;gemini-3-flash=tokens:100000/1m`.
    #[arg(long, env = "RATE_GUARD_CHAT_MODELS", default_value = "")]
    pub rate_guard_chat_models: String,
    /// A model catalog to use instead of the built-in one (same format; checked at start).
    #[arg(long, env = "CATALOG_FILE")]
    pub catalog_file: Option<PathBuf>,
    /// Safety margin in milliseconds added to every rate window, so that jitter between this
    /// console and KIE cannot overfill KIE's window.
    #[arg(long, env = "RATE_MARGIN_MS", default_value_t = 50, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub rate_margin_ms: u64,
    /// Most tasks one owner (a person, or a relay key) may have waiting to be sent; a create
    /// beyond it is refused with KIE's 429 and nothing is recorded. 0: no limit.
    #[arg(long, env = "QUEUE_MAX_PER_OWNER", default_value_t = gateway::tasks::lifecycle::quota::DEFAULT_QUEUE_MAX_PER_OWNER, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub queue_max_per_owner: u32,
    /// What a task submitted while its intake is paused meets: `queue` (accepted, sent once
    /// resumed) or `refuse` (503 naming who paused it; nothing is recorded).
    #[arg(long, env = "QUEUE_PAUSED_INTAKE", default_value = "queue")]
    pub queue_paused_intake: gateway::tasks::pause::PausedIntake,
    /// Budget alerts (80, 90, 100 % of a cost rule) are POSTed here as JSON.
    #[arg(long, env = "ALERT_WEBHOOK_URL")]
    pub alert_webhook_url: Option<String>,
    /// Private destinations that relay callbacks, webhooks and downloads may reach anyway
    /// (by default only public addresses are): comma-separated host, host:port or CIDR.
    #[arg(long, env = "OUTBOUND_ALLOW", default_value = "")]
    pub outbound_allow: String,
    /// Start on a Redis that keeps nothing on disk (no AOF, no RDB). Without it such a Redis
    /// is refused: it is the system of record (budgets, tasks, holds).
    #[arg(long, env = "REDIS_ALLOW_EPHEMERAL", value_parser = clap::builder::BoolishValueParser::new())]
    pub redis_allow_ephemeral: bool,
    /// A Redis whose configuration cannot be read (a managed Redis refusing CONFIG GET): you
    /// vouch that it keeps what it is given (AOF) and never evicts keys. Without it the console
    /// starts anyway and says what it could not verify.
    #[arg(long, env = "REDIS_ASSUME_PERSISTENT", value_parser = clap::builder::BoolishValueParser::new())]
    pub redis_assume_persistent: bool,
    /// For a rediss:// Redis: a PEM file of the CA to trust instead of the system's roots.
    #[arg(long, env = "REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,
    /// For a rediss:// Redis that asks for client certificates (mutual TLS): this client's
    /// certificate (PEM), with REDIS_CLIENT_KEY_FILE.
    #[arg(long, env = "REDIS_CLIENT_CERT_FILE")]
    pub redis_client_cert_file: Option<PathBuf>,
    /// The key of REDIS_CLIENT_CERT_FILE (PEM).
    #[arg(long, env = "REDIS_CLIENT_KEY_FILE")]
    pub redis_client_key_file: Option<PathBuf>,
    /// Sentinels that name the primary, `host:port,host:port,…` (with REDIS_SENTINEL_SERVICE):
    /// every instance follows a failover. REDIS_URL then gives only the data nodes' user,
    /// password, database and TLS (its host is not used).
    #[arg(long, env = "REDIS_SENTINELS")]
    pub redis_sentinels: Option<String>,
    /// The master's name the Sentinels know it by.
    #[arg(long, env = "REDIS_SENTINEL_SERVICE")]
    pub redis_sentinel_service: Option<String>,
    /// How many replicas must acknowledge a write that decides money or a send (the
    /// write-ahead before a send, a reservation, a settlement, a task's change of state)
    /// before it counts as done. Unset: 1 when the primary reports a replica, else 0.
    #[arg(long, env = "REDIS_MIN_REPLICAS_ACKS", value_parser = clap::value_parser!(u32).range(0..=8))]
    pub redis_min_replicas_acks: Option<u32>,
    /// How long such a write waits for them (milliseconds); past it the write counts as not
    /// done (a create answers 503 rather than risk a double send).
    #[arg(long, env = "REDIS_REPLICA_ACK_TIMEOUT_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=4000))]
    pub redis_replica_ack_timeout_ms: u64,
    /// A task with no result this many minutes after KIE took it ends `expired` (callback
    /// lost, polling gave up).
    #[arg(long, env = "TASK_GIVE_UP_MINUTES", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=10_080))]
    pub give_up_minutes: u64,
    /// Ended tasks are deleted this many days after they ended (0: kept for good).
    #[arg(long, env = "TASK_RETENTION_DAYS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=36_500))]
    pub task_retention_days: u64,
    /// A browser session ends after this many minutes without a request.
    #[arg(long, env = "SESSION_IDLE_MINUTES", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=43_200))]
    pub session_idle_minutes: u64,
    /// A browser session ends this many hours after sign-in, however busy.
    #[arg(long, env = "SESSION_MAX_HOURS", default_value_t = 24, value_parser = clap::value_parser!(u64).range(1..=2_160))]
    pub session_max_hours: u64,
    /// Where results are kept before KIE deletes them: `file:///path` or `s3://bucket/prefix`
    /// (credentials and endpoint from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION,
    /// AWS_ENDPOINT, AWS_ALLOW_HTTP). Default: file://<DATA_DIR>/library. `off`: no Library.
    #[arg(long, env = "LIBRARY_URL")]
    pub library_url: Option<String>,
    /// KIE deletes results this many days after a task ends.
    #[arg(long, env = "RETENTION_DAYS", default_value_t = 14, value_parser = clap::value_parser!(u64).range(1..=365))]
    pub retention_days: u64,
    /// The Library's copy must exist this many days before KIE deletes (the deadline).
    #[arg(long, env = "RETENTION_BUFFER_DAYS", default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=364))]
    pub retention_buffer_days: u64,
    /// A result larger than this (MB) is not archived (the task says so).
    #[arg(long, env = "LIBRARY_MAX_ASSET_MB", default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub library_max_asset_mb: u64,
    /// The Library's quota in GB (10^9 bytes; decimals allowed). Past it nothing more is
    /// archived and panel 07 says so. 0: no quota.
    #[arg(long, env = "LIBRARY_MAX_GB", default_value = "0")]
    pub library_max_gb: String,
    /// Signed Library links are valid this many hours (at least; rounded up to the hour).
    #[arg(long, env = "LIBRARY_LINK_HOURS", default_value_t = 24, value_parser = clap::value_parser!(u64).range(1..=8_760))]
    pub library_link_hours: u64,
    /// The https hosts results are downloaded from (KIE's result hosts; `.suffix` admits
    /// subdomains). KIE_BASE_URL's own host is always admitted (the simulator serves there).
    #[arg(long, env = "LIBRARY_SOURCE_HOSTS", default_value = gateway::library::KIE_RESULT_HOSTS)]
    pub library_source_hosts: String,
    /// Every receipt line, when its task ends, is POSTed here as JSON (at least once, signed
    /// with RECEIPT_SYNC_SECRET, through the outbound policy).
    #[arg(long, env = "RECEIPT_SYNC_URL")]
    pub receipt_sync_url: Option<String>,
    /// Panel 09 warns when KIE's balance lasts fewer days than this at the last 7 days' burn.
    #[arg(long, env = "RUNWAY_ALERT_DAYS", default_value_t = 7, value_parser = clap::value_parser!(u64).range(1..=365))]
    pub runway_alert_days: u64,
    /// The day (UTC, YYYY-MM-DD) prepaid credits expire: warned 14 and 3 days ahead.
    #[arg(long, env = "CREDITS_EXPIRE_ON")]
    pub credits_expire_on: Option<String>,
    /// Single sign-on: the OpenID provider's issuer URL (its discovery document is
    /// ISSUER/.well-known/openid-configuration). Needs PUBLIC_URL, OIDC_CLIENT_ID and
    /// OIDC_CLIENT_SECRET (or OIDC_CLIENT_SECRET_FILE); the redirect URI to register at the
    /// provider is PUBLIC_URL/auth/oidc/callback.
    #[arg(long, env = "OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    #[arg(long, env = "OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,
    /// The name on the sign-in page's button ("Sign in with …").
    #[arg(long, env = "OIDC_PROVIDER_NAME", default_value = "single sign-on")]
    pub oidc_provider_name: String,
    /// Email domains whose people may enter (comma-separated; the `email` claim, verified).
    #[arg(long, env = "OIDC_ALLOWED_DOMAINS", default_value = "")]
    pub oidc_allowed_domains: String,
    /// Groups (the role claim) whose members may enter (comma-separated).
    #[arg(long, env = "OIDC_ALLOWED_GROUPS", default_value = "")]
    pub oidc_allowed_groups: String,
    /// The ID token's claim that lists a person's groups.
    #[arg(long, env = "OIDC_ROLE_CLAIM", default_value = "groups")]
    pub oidc_role_claim: String,
    /// Groups whose members are admins here (comma-separated).
    #[arg(long, env = "OIDC_ADMIN_GROUPS", default_value = "")]
    pub oidc_admin_groups: String,
    /// Groups whose members are producers here; everyone else who may enter is a viewer.
    #[arg(long, env = "OIDC_PRODUCER_GROUPS", default_value = "")]
    pub oidc_producer_groups: String,
    /// Scopes asked for, besides `openid` (space- or comma-separated).
    #[arg(long, env = "OIDC_SCOPES", default_value = "email profile")]
    pub oidc_scopes: String,
    /// `off`: only break-glass admins (`control-room user break-glass EMAIL`) may sign in with
    /// a password; everyone else through single sign-on.
    #[arg(long, env = "PASSWORD_SIGNIN", default_value = "on", value_parser = ["on", "off"])]
    pub password_signin: String,
    /// Most connections served at once; more wait until one closes. 0: half the process's
    /// open-file limit (raised to its hard limit at start), at least 64 and at most 65,536.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub max_connections: u32,
    /// The reverse proxies in front of the console (addresses or CIDRs, comma-separated):
    /// X-Forwarded-For and Forwarded are believed from these only, and the client is the
    /// first address in them that is not one of these. Empty: the peer is the client.
    #[arg(long, env = "TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: String,
    /// Administration commands; without one, the console serves.
    #[command(subcommand)]
    pub command: Option<crate::admin::Command>,
}

/// The Library's settings (`LIBRARY_*`, `RETENTION_*`).
#[derive(Debug, Clone)]
pub struct LibrarySettings {
    pub url: Url,
    pub terms: gateway::library::asset::Terms,
    pub max_asset_bytes: u64,
    pub quota_bytes: Option<u64>,
    pub link_ttl: std::time::Duration,
    pub source_hosts: String,
}

impl LibrarySettings {
    /// `LIBRARY_URL` as shown to people: no user, password or query.
    pub fn display(&self) -> String {
        let mut u = self.url.clone();
        let _ = u.set_username("");
        let _ = u.set_password(None);
        u.set_query(None);
        u.to_string()
    }
}

fn library_settings(cli: &Cli) -> Result<Option<LibrarySettings>, ConfigError> {
    let raw = cli.library_url.as_deref().map(str::trim).filter(|u| !u.is_empty());
    if raw == Some("off") {
        return Ok(None);
    }
    let url = match raw {
        Some(u) => Url::parse(u).map_err(|e| ConfigError(format!("LIBRARY_URL is not a valid URL ({u:?}): {e}")))?,
        None => {
            let dir = std::path::absolute(cli.data_dir.join("library")).map_err(|e| ConfigError(format!("DATA_DIR {}: {e}", cli.data_dir.display())))?;
            Url::from_directory_path(&dir).map_err(|_| ConfigError(format!("DATA_DIR {} cannot be written as a file:// URL", dir.display())))?
        }
    };
    if !matches!(url.scheme(), "file" | "s3") {
        return Err(ConfigError(format!("LIBRARY_URL must be file:///path or s3://bucket/prefix (or off), got {}://", url.scheme())));
    }
    if cli.retention_buffer_days >= cli.retention_days {
        return Err(ConfigError(format!("RETENTION_BUFFER_DAYS ({}) must be less than RETENTION_DAYS ({})", cli.retention_buffer_days, cli.retention_days)));
    }
    const DAY: u64 = 24 * 3600 * 1000;
    Ok(Some(LibrarySettings {
        url,
        terms: gateway::library::asset::Terms { retention_ms: cli.retention_days * DAY, buffer_ms: cli.retention_buffer_days * DAY },
        max_asset_bytes: cli.library_max_asset_mb << 20,
        quota_bytes: gigabytes("LIBRARY_MAX_GB", &cli.library_max_gb)?,
        link_ttl: std::time::Duration::from_secs(cli.library_link_hours * 3600),
        source_hosts: cli.library_source_hosts.clone(),
    }))
}

fn receipt_sync(url: Option<&str>, env: &dyn Env) -> Result<Option<gateway::money::receipt_sync::SyncTarget>, ConfigError> {
    let Some(url) = url.map(str::trim).filter(|u| !u.is_empty()) else { return Ok(None) };
    let url = http_url("RECEIPT_SYNC_URL", url)?;
    let secret = secret_var(env, "RECEIPT_SYNC_SECRET")?
        .ok_or_else(|| ConfigError("RECEIPT_SYNC_URL is set but RECEIPT_SYNC_SECRET is not: receipt lines are always signed (X-Receipt-Signature)".into()))?;
    Ok(Some(gateway::money::receipt_sync::SyncTarget { url: url.to_string(), secret }))
}

/// Where shared state lives.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreConfig {
    /// `options`: certificates for a `rediss://` URL beyond the system's roots, the Sentinels
    /// that name the primary, and the replicas a write that decides money or a send waits for.
    Redis { url: String, prefix: String, options: gateway::store::RedisOptions },
    Embedded { dir: PathBuf },
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub site_addr: SocketAddr,
    pub site_root: PathBuf,
    pub kie_base_url: Url,
    /// `KIE_UPLOAD_BASE_URL` (`None`: the client's default for `kie_base_url`).
    pub kie_upload_base_url: Option<Url>,
    /// `UPLOAD_MAX_MB`, in bytes.
    pub upload_max_bytes: u64,
    /// `RELAY_UPLOAD_GB_PER_DAY`, in bytes (`None`: no limit).
    pub relay_upload_bytes_per_day: Option<u64>,
    /// Without a trailing slash.
    pub public_url: Option<Url>,
    pub store: StoreConfig,
    pub kie_key: Option<(Secret, KeySource)>,
    pub webhook_hmac_key: Option<Secret>,
    /// Use the in-process simulator instead of `kie_base_url` and `kie_key`.
    pub simulate: bool,
    pub rate_guard: Vec<gateway::tasks::rate_guard::LimitRule>,
    /// `RATE_GUARD_CHAT`.
    pub chat_rate_guard: Vec<gateway::tasks::rate_guard::LimitRule>,
    /// `RATE_GUARD_CHAT_MODELS`.
    pub chat_model_rate_guard: Vec<(String, Vec<gateway::tasks::rate_guard::LimitRule>)>,
    /// `CATALOG_FILE` (`None`: the built-in catalog).
    pub catalog_file: Option<PathBuf>,
    pub rate_margin: std::time::Duration,
    /// `QUEUE_MAX_PER_OWNER` (0: no limit).
    pub queue_max_per_owner: u32,
    /// `QUEUE_PAUSED_INTAKE`.
    pub queue_paused_intake: gateway::tasks::pause::PausedIntake,
    pub alert_webhook: Option<Url>,
    /// `OUTBOUND_ALLOW`.
    pub outbound: gateway::outbound::OutboundPolicy,
    /// `REDIS_ALLOW_EPHEMERAL`.
    pub redis_allow_ephemeral: bool,
    /// `REDIS_ASSUME_PERSISTENT`.
    pub redis_assume_persistent: bool,
    pub give_up_after: std::time::Duration,
    /// `TASK_RETENTION_DAYS` (`None`: kept for good).
    pub task_retention: Option<std::time::Duration>,
    pub sessions: gateway::team::sessions::SessionPolicy,
    /// `METRICS_TOKEN`: who may read `/metrics` (and `/readyz`'s details).
    pub metrics: MetricsAccess,
    /// `MAX_CONNECTIONS` (0: from the file limit).
    pub max_connections: u32,
    /// `TRUSTED_PROXIES`.
    pub trusted_proxies: crate::edge::client_address::TrustedProxies,
    /// The Library (`None`: `LIBRARY_URL=off`, nothing is archived).
    pub library: Option<LibrarySettings>,
    /// `RECEIPT_SYNC_URL` with `RECEIPT_SYNC_SECRET`.
    pub receipt_sync: Option<gateway::money::receipt_sync::SyncTarget>,
    /// `RUNWAY_ALERT_DAYS`.
    pub runway_alert_days: u64,
    /// `CREDITS_EXPIRE_ON`, checked to be a day.
    pub credits_expire_on: Option<String>,
    /// `OIDC_*`: single sign-on, when configured.
    pub single_sign_on: Option<SingleSignOnSettings>,
}

/// Single sign-on through the team's OpenID provider (`OIDC_*`).
#[derive(Debug, Clone)]
pub struct SingleSignOnSettings {
    pub issuer: Url,
    pub client_id: String,
    pub client_secret: Secret,
    /// PUBLIC_URL/auth/oidc/callback.
    pub redirect: Url,
    pub provider_name: String,
    pub role_claim: String,
    /// Beyond `openid`.
    pub scopes: Vec<String>,
    pub admission: gateway::team::single_sign_on::Admission,
}

/// Who may read `/metrics` and `/readyz`'s details.
#[derive(Debug, Clone)]
pub enum MetricsAccess {
    /// `METRICS_TOKEN` unset: nobody (the start-up log says how to open it).
    Closed,
    /// `METRICS_TOKEN=open`: whoever reaches the listen address.
    Open,
    /// Whoever sends `Authorization: Bearer <token>`.
    Token(Secret),
}

impl MetricsAccess {
    fn from_env(env: &dyn Env) -> Result<MetricsAccess, ConfigError> {
        Ok(match secret_var(env, "METRICS_TOKEN")? {
            None => MetricsAccess::Closed,
            Some(t) if t.expose().eq_ignore_ascii_case("open") => MetricsAccess::Open,
            Some(t) if t.expose().len() < 16 => {
                return Err(ConfigError("METRICS_TOKEN must be at least 16 characters (or `open` to serve /metrics to anyone)".into()));
            }
            Some(t) => MetricsAccess::Token(t),
        })
    }

    /// Whether a request with these headers may read.
    pub fn allows(&self, headers: &axum::http::HeaderMap) -> bool {
        match self {
            MetricsAccess::Closed => false,
            MetricsAccess::Open => true,
            MetricsAccess::Token(token) => {
                let presented = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
                gateway::secret::constant_time_eq(presented.trim().as_bytes(), token.expose().as_bytes())
            }
        }
    }
}

/// A configuration mistake, said in one line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// A setting of GB (10^9 bytes; decimals allowed) in bytes; 0 is `None` (no limit).
fn gigabytes(name: &str, raw: &str) -> Result<Option<u64>, ConfigError> {
    let gb: f64 = raw.trim().parse().ok().filter(|g: &f64| g.is_finite() && *g >= 0.0 && *g <= 1e7).ok_or_else(|| ConfigError(format!("{name} must be a number of GB from 0 (no limit) to 10000000, got {raw:?}")))?;
    Ok((gb > 0.0).then(|| (gb * 1e9).round().max(1.0) as u64))
}

/// The environment variables the configuration reads besides the flags.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

fn http_url(name: &str, raw: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(raw.trim()).map_err(|e| ConfigError(format!("{name} is not a valid URL ({raw:?}): {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ConfigError(format!("{name} must be an http:// or https:// URL with a host, got {raw:?}")));
    }
    Ok(url)
}

/// The certificates `REDIS_CA_FILE`, `REDIS_CLIENT_CERT_FILE` and `REDIS_CLIENT_KEY_FILE`
/// name, read and checked to be PEM (the TLS handshake says the rest).
fn redis_tls(cli: &Cli) -> Result<gateway::store::RedisTls, ConfigError> {
    let pem = |name: &str, path: &Option<PathBuf>| -> Result<Option<Vec<u8>>, ConfigError> {
        let Some(path) = path.as_ref().filter(|p| !p.as_os_str().is_empty()) else { return Ok(None) };
        let bytes = std::fs::read(path).map_err(|e| ConfigError(format!("{name} {}: cannot read it: {}", path.display(), e.kind())))?;
        if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
            return Err(ConfigError(format!("{name} {}: not a PEM file (no -----BEGIN line)", path.display())));
        }
        Ok(Some(bytes))
    };
    let ca = pem("REDIS_CA_FILE", &cli.redis_ca_file)?;
    let client = match (pem("REDIS_CLIENT_CERT_FILE", &cli.redis_client_cert_file)?, pem("REDIS_CLIENT_KEY_FILE", &cli.redis_client_key_file)?) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => return Err(ConfigError("set REDIS_CLIENT_CERT_FILE and REDIS_CLIENT_KEY_FILE together (mutual TLS needs both)".into())),
    };
    Ok(gateway::store::RedisTls { ca, client })
}

/// `REDIS_SENTINELS`, `REDIS_SENTINEL_SERVICE` and the Sentinels' password
/// (`REDIS_SENTINEL_PASSWORD` or `REDIS_SENTINEL_PASSWORD_FILE`), checked together.
fn redis_sentinel(cli: &Cli, env: &dyn Env) -> Result<Option<gateway::store::SentinelSettings>, ConfigError> {
    let list = cli.redis_sentinels.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let service = cli.redis_sentinel_service.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let password = secret_or_file(env, "REDIS_SENTINEL_PASSWORD")?.map(|p| p.expose().to_string());
    match (list, service) {
        (None, None) if password.is_none() => Ok(None),
        (Some(list), Some(service)) => {
            if cli.redis_url.as_deref().is_none_or(|u| u.trim().is_empty()) {
                return Err(ConfigError("REDIS_SENTINELS needs REDIS_URL too (it gives the data nodes' user, password, database and TLS; e.g. redis://:password@primary/0)".into()));
            }
            let sentinels = gateway::store::parse_sentinels(list).map_err(|e| ConfigError(format!("REDIS_SENTINELS: {e}")))?;
            if sentinels.is_empty() {
                return Err(ConfigError("REDIS_SENTINELS names no Sentinel: give host:port,host:port,…".into()));
            }
            Ok(Some(gateway::store::SentinelSettings { sentinels, service: service.to_string(), password }))
        }
        (Some(_), None) => Err(ConfigError("REDIS_SENTINELS is set but REDIS_SENTINEL_SERVICE is not: give the master's name the Sentinels know it by".into())),
        _ => Err(ConfigError("REDIS_SENTINEL_SERVICE and REDIS_SENTINEL_PASSWORD apply with REDIS_SENTINELS only: give the Sentinels' host:port list".into())),
    }
}

/// A secret given as `NAME` or as a file named by `NAME_FILE` (not both).
fn secret_or_file(env: &dyn Env, name: &str) -> Result<Option<Secret>, ConfigError> {
    let file_var = format!("{name}_FILE");
    match (secret_var(env, name)?, env.var(&file_var).filter(|f| !f.trim().is_empty())) {
        (Some(_), Some(_)) => Err(ConfigError(format!("set {name} or {file_var}, not both"))),
        (Some(p), None) => Ok(Some(p)),
        (None, Some(path)) => {
            let raw = std::fs::read_to_string(path.trim()).map_err(|e| ConfigError(format!("{file_var} {path}: cannot read it: {}", e.kind())))?;
            if raw.trim().is_empty() {
                return Err(ConfigError(format!("{file_var} {path} is empty")));
            }
            Ok(Some(Secret::new(raw.trim())))
        }
        (None, None) => Ok(None),
    }
}

/// A comma-separated list, trimmed, empty items dropped.
fn list(raw: &str) -> Vec<String> {
    raw.split([',', ' ']).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// `OIDC_*`, checked together: all or nothing, with PUBLIC_URL and a rule of who may enter.
fn single_sign_on(cli: &Cli, env: &dyn Env, public_url: Option<&Url>) -> Result<Option<SingleSignOnSettings>, ConfigError> {
    let issuer = cli.oidc_issuer.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let client_id = cli.oidc_client_id.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let secret = secret_or_file(env, "OIDC_CLIENT_SECRET")?;
    let (issuer, client_id, client_secret) = match (issuer, client_id, secret) {
        (None, None, None) => return Ok(None),
        (Some(i), Some(c), Some(s)) => (i, c, s),
        _ => return Err(ConfigError("single sign-on needs OIDC_ISSUER, OIDC_CLIENT_ID and OIDC_CLIENT_SECRET (or OIDC_CLIENT_SECRET_FILE) together".into())),
    };
    let issuer = http_url("OIDC_ISSUER", issuer)?;
    if issuer.scheme() != "https" && !issuer.host_str().is_some_and(|h| h == "localhost" || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())) {
        return Err(ConfigError("OIDC_ISSUER must be https:// (http is accepted on loopback only, for tests)".into()));
    }
    let public_url = public_url.ok_or_else(|| ConfigError("single sign-on needs PUBLIC_URL: the provider sends people back to PUBLIC_URL/auth/oidc/callback".into()))?;
    let redirect = Url::parse(&format!("{}/auth/oidc/callback", public_url.as_str().trim_end_matches('/'))).map_err(|e| ConfigError(format!("PUBLIC_URL: {e}")))?;
    let admission = gateway::team::single_sign_on::Admission {
        allowed_domains: list(&cli.oidc_allowed_domains).into_iter().map(|d| d.to_ascii_lowercase()).collect(),
        allowed_groups: list(&cli.oidc_allowed_groups),
        admin_groups: list(&cli.oidc_admin_groups),
        producer_groups: list(&cli.oidc_producer_groups),
    };
    if admission.is_open() {
        return Err(ConfigError("single sign-on needs OIDC_ALLOWED_DOMAINS or OIDC_ALLOWED_GROUPS: an identity provider may vouch for more people than the team".into()));
    }
    let role_claim = cli.oidc_role_claim.trim();
    if role_claim.is_empty() || role_claim.len() > 64 {
        return Err(ConfigError("OIDC_ROLE_CLAIM must be a claim's name (1–64 characters)".into()));
    }
    let name = cli.oidc_provider_name.trim();
    if name.is_empty() || name.chars().count() > 40 || name.chars().any(char::is_control) {
        return Err(ConfigError("OIDC_PROVIDER_NAME must be 1–40 printable characters".into()));
    }
    let scopes = list(&cli.oidc_scopes).into_iter().filter(|s| s != "openid").collect();
    Ok(Some(SingleSignOnSettings { issuer, client_id: client_id.to_string(), client_secret, redirect, provider_name: name.to_string(), role_claim: role_claim.to_string(), scopes, admission }))
}

fn secret_var(env: &dyn Env, name: &str) -> Result<Option<Secret>, ConfigError> {
    match env.var(name) {
        None => Ok(None),
        Some(v) if v.trim().is_empty() => Err(ConfigError(format!("{name} is set but empty; unset it or give it a value"))),
        Some(v) => Ok(Some(Secret::new(v.trim()))),
    }
}

fn kie_key(env: &dyn Env) -> Result<Option<(Secret, KeySource)>, ConfigError> {
    let direct = secret_var(env, "KIE_API_KEY")?;
    let file = env.var("KIE_API_KEY_FILE").filter(|f| !f.trim().is_empty());
    match (direct, file) {
        (Some(_), Some(_)) => Err(ConfigError("set KIE_API_KEY or KIE_API_KEY_FILE, not both".into())),
        (Some(k), None) => Ok(Some((k, KeySource::Environment))),
        (None, Some(path)) => {
            let raw = std::fs::read_to_string(&path)
                .map_err(|e| ConfigError(format!("KIE_API_KEY_FILE {path}: cannot read it: {}", e.kind())))?;
            let key = raw.trim();
            if key.is_empty() {
                return Err(ConfigError(format!("KIE_API_KEY_FILE {path} is empty")));
            }
            Ok(Some((Secret::new(key), KeySource::File)))
        }
        (None, None) => Ok(None),
    }
}

/// Checks that `dir` exists (creating it) and that this process can write in it.
fn writable_dir(dir: &std::path::Path) -> Result<(), ConfigError> {
    let fail = |e: std::io::Error| ConfigError(format!("DATA_DIR {} is not writable: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(fail)?;
    let probe = dir.join(".write-probe");
    std::fs::write(&probe, b"ok").map_err(fail)?;
    std::fs::remove_file(&probe).map_err(fail)
}

/// A Redis URL for messages: scheme, host and port only (no password).
pub fn redis_display(url: &str) -> String {
    match Url::parse(url) {
        Ok(u) => format!("{}://{}:{}", u.scheme(), u.host_str().unwrap_or("?"), u.port().unwrap_or(6379)),
        Err(_) => "(malformed REDIS_URL)".to_string(),
    }
}

impl Config {
    /// Validates the command line and the environment.
    pub fn from_cli(cli: Cli, env: &dyn Env) -> Result<Config, ConfigError> {
        let kie_base_url = http_url("KIE_BASE_URL", &cli.kie_base_url)?;
        let kie_upload_base_url = cli.kie_upload_base_url.as_deref().map(|u| http_url("KIE_UPLOAD_BASE_URL", u)).transpose()?;
        let library = library_settings(&cli)?;
        // Read before any of `cli` is moved out.
        let tls = redis_tls(&cli)?;
        let sentinel = redis_sentinel(&cli, env)?;
        let acks = gateway::store::ReplicaAcks { min: cli.redis_min_replicas_acks, timeout: std::time::Duration::from_millis(cli.redis_replica_ack_timeout_ms) };
        let public_url = cli
            .public_url
            .as_deref()
            .filter(|u| !u.trim().is_empty())
            .map(|u| http_url("PUBLIC_URL", u.trim().trim_end_matches('/')))
            .transpose()?;
        let single_sign_on = single_sign_on(&cli, env, public_url.as_ref())?;
        let passwords = if cli.password_signin == "off" {
            if single_sign_on.is_none() {
                return Err(ConfigError("PASSWORD_SIGNIN=off needs single sign-on (OIDC_ISSUER …): otherwise only break-glass admins could sign in".into()));
            }
            gateway::team::sessions::PasswordSignIn::BreakGlassOnly
        } else {
            gateway::team::sessions::PasswordSignIn::Everyone
        };
        let store = match cli.redis_url.filter(|u| !u.trim().is_empty()) {
            Some(url) => {
                let parsed = Url::parse(url.trim()).map_err(|e| ConfigError(format!("REDIS_URL is not a valid URL: {e}")))?;
                if !matches!(parsed.scheme(), "redis" | "rediss" | "redis+unix" | "unix") {
                    return Err(ConfigError(format!("REDIS_URL must start with redis:// or rediss://, got {}://", parsed.scheme())));
                }
                if tls != gateway::store::RedisTls::default() && parsed.scheme() != "rediss" {
                    return Err(ConfigError("REDIS_CA_FILE and REDIS_CLIENT_CERT_FILE are for TLS: REDIS_URL must start with rediss://".into()));
                }
                StoreConfig::Redis { url: url.trim().to_string(), prefix: cli.redis_prefix, options: gateway::store::RedisOptions { tls, sentinel, acks } }
            }
            None => {
                writable_dir(&cli.data_dir)?;
                StoreConfig::Embedded { dir: cli.data_dir }
            }
        };
        Ok(Config {
            site_addr: cli.site_addr,
            site_root: cli.site_root,
            kie_base_url,
            kie_upload_base_url,
            upload_max_bytes: cli.upload_max_mb << 20,
            relay_upload_bytes_per_day: gigabytes("RELAY_UPLOAD_GB_PER_DAY", &cli.relay_upload_gb_per_day)?,
            public_url,
            store,
            kie_key: kie_key(env)?,
            webhook_hmac_key: secret_var(env, "KIE_WEBHOOK_HMAC_KEY")?,
            simulate: cli.simulate,
            rate_guard: gateway::tasks::rate_guard::parse_rules(&cli.rate_guard).map_err(|e| ConfigError(format!("RATE_GUARD: {e}")))?,
            chat_rate_guard: gateway::tasks::rate_guard::parse_chat_rules(&cli.rate_guard_chat).map_err(|e| ConfigError(format!("RATE_GUARD_CHAT: {e}")))?,
            chat_model_rate_guard: gateway::tasks::rate_guard::parse_chat_model_rules(&cli.rate_guard_chat_models).map_err(|e| ConfigError(format!("RATE_GUARD_CHAT_MODELS: {e}")))?,
            catalog_file: cli.catalog_file.filter(|p| !p.as_os_str().is_empty()),
            rate_margin: std::time::Duration::from_millis(cli.rate_margin_ms),
            queue_max_per_owner: cli.queue_max_per_owner,
            queue_paused_intake: cli.queue_paused_intake,
            alert_webhook: cli.alert_webhook_url.filter(|u| !u.trim().is_empty()).map(|u| http_url("ALERT_WEBHOOK_URL", &u)).transpose()?,
            outbound: gateway::outbound::OutboundPolicy::parse(&cli.outbound_allow).map_err(ConfigError)?,
            redis_allow_ephemeral: cli.redis_allow_ephemeral,
            redis_assume_persistent: cli.redis_assume_persistent,
            give_up_after: std::time::Duration::from_secs(cli.give_up_minutes * 60),
            task_retention: (cli.task_retention_days > 0).then(|| std::time::Duration::from_secs(cli.task_retention_days * 24 * 3600)),
            sessions: gateway::team::sessions::SessionPolicy {
                idle: std::time::Duration::from_secs(cli.session_idle_minutes * 60),
                absolute: std::time::Duration::from_secs(cli.session_max_hours * 3600),
                passwords,
            },
            metrics: MetricsAccess::from_env(env)?,
            max_connections: cli.max_connections,
            trusted_proxies: crate::edge::client_address::TrustedProxies::parse(&cli.trusted_proxies).map_err(|e| ConfigError(format!("TRUSTED_PROXIES: {e}")))?,
            library,
            receipt_sync: receipt_sync(cli.receipt_sync_url.as_deref(), env)?,
            runway_alert_days: cli.runway_alert_days,
            credits_expire_on: match cli.credits_expire_on.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
                Some(d) if gateway::money::receipts::parse_day(d).is_some() => Some(d.to_string()),
                Some(d) => return Err(ConfigError(format!("CREDITS_EXPIRE_ON must be a day YYYY-MM-DD, got {d:?}"))),
                None => None,
            },
            single_sign_on,
        })
    }

    /// Whether browsers reach the console over https (session cookies are then `Secure`).
    pub fn https(&self) -> bool {
        self.public_url.as_ref().is_some_and(|u| u.scheme() == "https")
    }

    /// The public URL as a string without a trailing slash.
    pub fn public_base(&self) -> Option<String> {
        self.public_url.as_ref().map(|u| u.as_str().trim_end_matches('/').to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Vars(HashMap<&'static str, String>);
    impl Env for Vars {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).cloned()
        }
    }

    fn cli(args: &[&str]) -> Cli {
        let mut all = vec!["control-room"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).expect("flags parse")
    }

    fn tmp_cli(extra: &[&str]) -> (tempfile::TempDir, Cli) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut args = vec!["--data-dir", dir.path().to_str().expect("utf-8 path")];
        args.extend_from_slice(extra);
        let c = cli(&args);
        (dir, c)
    }

    #[test]
    fn defaults_give_an_embedded_store_and_no_key() {
        let (_d, c) = tmp_cli(&[]);
        let cfg = Config::from_cli(c, &Vars(HashMap::new())).expect("valid");
        assert!(matches!(cfg.store, StoreConfig::Embedded { .. }));
        assert_eq!(cfg.kie_base_url.as_str(), "https://api.kie.ai/");
        assert!(cfg.kie_key.is_none());
    }

    #[test]
    fn malformed_urls_are_refused_with_the_variable_named() {
        let (_d, c) = tmp_cli(&["--kie-base-url", "api.kie.ai"]);
        let e = Config::from_cli(c, &Vars(HashMap::new())).expect_err("no scheme");
        assert!(e.0.contains("KIE_BASE_URL"), "{e}");
        let (_d, c) = tmp_cli(&["--public-url", "ftp://x"]);
        assert!(Config::from_cli(c, &Vars(HashMap::new())).expect_err("ftp").0.contains("PUBLIC_URL"));
        let (_d, c) = tmp_cli(&["--redis-url", "http://localhost"]);
        assert!(Config::from_cli(c, &Vars(HashMap::new())).expect_err("http redis").0.contains("REDIS_URL"));
    }

    #[test]
    fn sentinels_are_parsed_checked_together_and_their_password_never_printed() {
        let err = |args: &[&str], vars: &[(&'static str, &str)]| {
            let (_d, c) = tmp_cli(args);
            Config::from_cli(c, &Vars(vars.iter().map(|(k, v)| (*k, v.to_string())).collect())).expect_err("refused").0
        };
        let (_d, c) = tmp_cli(&["--redis-url", "redis://:pw@ignored/2", "--redis-sentinels", "10.0.0.1:26379, [::1]:26380", "--redis-sentinel-service", "studio", "--redis-min-replicas-acks", "1"]);
        let cfg = Config::from_cli(c, &Vars(HashMap::from([("REDIS_SENTINEL_PASSWORD", "sentinel-s3cret".to_string())]))).expect("valid");
        let StoreConfig::Redis { options, .. } = &cfg.store else { panic!("redis") };
        let sentinel = options.sentinel.as_ref().expect("sentinels");
        assert_eq!(sentinel.sentinels, vec![("10.0.0.1".to_string(), 26379), ("::1".to_string(), 26380)]);
        assert_eq!((sentinel.service.as_str(), sentinel.password.as_deref()), ("studio", Some("sentinel-s3cret")));
        assert_eq!(options.acks.min, Some(1));
        assert!(!format!("{cfg:?}").contains("sentinel-s3cret"), "Debug must not print the Sentinels' password");

        assert!(err(&["--redis-url", "redis://x/", "--redis-sentinels", "10.0.0.1:26379"], &[]).contains("REDIS_SENTINEL_SERVICE"));
        assert!(err(&["--redis-url", "redis://x/", "--redis-sentinel-service", "studio"], &[]).contains("REDIS_SENTINELS"));
        assert!(err(&["--redis-sentinels", "10.0.0.1:26379", "--redis-sentinel-service", "studio"], &[]).contains("REDIS_URL"));
        assert!(err(&["--redis-url", "redis://x/", "--redis-sentinels", "10.0.0.1", "--redis-sentinel-service", "s"], &[]).contains("not host:port"));
        assert!(err(&["--redis-url", "redis://x/", "--redis-sentinels", "h:99999", "--redis-sentinel-service", "s"], &[]).contains("port"));
        assert!(err(&["--redis-url", "redis://x/", "--redis-sentinels", " , ", "--redis-sentinel-service", "s"], &[]).contains("names no Sentinel"));
        assert!(err(&["--redis-url", "redis://x/"], &[("REDIS_SENTINEL_PASSWORD", "p")]).contains("REDIS_SENTINELS"));
        assert!(Cli::try_parse_from(["control-room", "--redis-replica-ack-timeout-ms", "9000"]).is_err(), "a wait longer than a call's own timeout");
        assert!(Cli::try_parse_from(["control-room", "--redis-min-replicas-acks", "-1"]).is_err());
    }

    #[test]
    fn single_sign_on_is_all_or_nothing_needs_a_rule_of_who_enters_and_hides_its_secret() {
        let run = |args: &[&str], vars: &[(&'static str, &str)]| {
            let (_d, c) = tmp_cli(args);
            Config::from_cli(c, &Vars(vars.iter().map(|(k, v)| (*k, v.to_string())).collect()))
        };
        let full = ["--public-url", "https://cr.studio.test", "--oidc-issuer", "https://id.studio.test/realms/s", "--oidc-client-id", "cr", "--oidc-allowed-domains", "Studio.test, other.test", "--oidc-admin-groups", "a,b"];
        let cfg = run(&full, &[("OIDC_CLIENT_SECRET", "oidc-s3cret")]).expect("valid");
        let sso = cfg.single_sign_on.as_ref().expect("configured");
        assert_eq!(sso.redirect.as_str(), "https://cr.studio.test/auth/oidc/callback");
        assert_eq!(sso.admission.allowed_domains, vec!["studio.test", "other.test"]);
        assert_eq!(sso.admission.admin_groups, vec!["a", "b"]);
        assert_eq!(sso.scopes, vec!["email", "profile"]);
        assert!(!format!("{cfg:?}").contains("oidc-s3cret"), "Debug must not print the client secret");

        let err = |args: &[&str], vars: &[(&'static str, &str)]| run(args, vars).expect_err("refused").0;
        assert!(err(&full, &[]).contains("OIDC_CLIENT_SECRET"), "all or nothing");
        assert!(err(&full[2..], &[("OIDC_CLIENT_SECRET", "s")]).contains("PUBLIC_URL"));
        assert!(err(&full[..6], &[("OIDC_CLIENT_SECRET", "s")]).contains("OIDC_ALLOWED_DOMAINS or OIDC_ALLOWED_GROUPS"), "nobody-may-enter rule missing");
        let plain = ["--public-url", "https://cr.studio.test", "--oidc-issuer", "http://id.studio.test", "--oidc-client-id", "cr", "--oidc-allowed-domains", "studio.test"];
        assert!(err(&plain, &[("OIDC_CLIENT_SECRET", "s")]).contains("https"), "http only on loopback");
        assert!(err(&["--password-signin", "off"], &[]).contains("PASSWORD_SIGNIN=off needs single sign-on"));
        assert!(Cli::try_parse_from(["control-room", "--password-signin", "maybe"]).is_err());
        assert_eq!(run(&["--password-signin", "on"], &[]).expect("on").sessions.passwords, gateway::team::sessions::PasswordSignIn::Everyone);
    }

    #[test]
    fn rate_guard_rules_are_parsed_and_bad_ones_named() {
        let (_d, c) = tmp_cli(&["--rate-guard", "20/10s,concurrent:3"]);
        let cfg = Config::from_cli(c, &Vars(HashMap::new())).expect("valid");
        assert_eq!(cfg.rate_guard.len(), 2);
        let (_d, c) = tmp_cli(&["--rate-guard", "20 per 10s"]);
        assert!(Config::from_cli(c, &Vars(HashMap::new())).expect_err("bad rule").0.starts_with("RATE_GUARD"));
        let (_d, c) = tmp_cli(&["--outbound-allow", "10.0.0.0/40"]);
        assert!(Config::from_cli(c, &Vars(HashMap::new())).expect_err("bad allow").0.contains("OUTBOUND_ALLOW"));
        let (_d, c) = tmp_cli(&["--alert-webhook-url", "not a url"]);
        assert!(Config::from_cli(c, &Vars(HashMap::new())).expect_err("bad url").0.contains("ALERT_WEBHOOK_URL"));
    }

    #[test]
    fn unwritable_data_dir_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").expect("write");
        let c = cli(&["--data-dir", file.to_str().expect("utf-8")]);
        let e = Config::from_cli(c, &Vars(HashMap::new())).expect_err("a file is not a dir");
        assert!(e.0.starts_with("DATA_DIR"), "{e}");
    }

    #[test]
    fn key_from_env_or_file_never_both_and_never_printed() {
        let (_d, c) = tmp_cli(&[]);
        let vars = Vars(HashMap::from([("KIE_API_KEY", "sk-very-secret-123".to_string())]));
        let cfg = Config::from_cli(c, &vars).expect("valid");
        let (key, source) = cfg.kie_key.clone().expect("key");
        assert_eq!((key.expose(), source), ("sk-very-secret-123", KeySource::Environment));
        assert!(!format!("{cfg:?}").contains("very-secret"), "Debug must not print the key");
        assert_eq!(key.fingerprint().len(), 8);

        let (d, c) = tmp_cli(&[]);
        let path = d.path().join("key");
        std::fs::write(&path, "  from-file-key\n").expect("write");
        let vars = Vars(HashMap::from([("KIE_API_KEY_FILE", path.display().to_string())]));
        let (key, source) = Config::from_cli(c, &vars).expect("valid").kie_key.expect("key");
        assert_eq!((key.expose(), source), ("from-file-key", KeySource::File));

        let (_d, c) = tmp_cli(&[]);
        let vars = Vars(HashMap::from([("KIE_API_KEY", "a".to_string()), ("KIE_API_KEY_FILE", "/x".to_string())]));
        assert!(Config::from_cli(c, &vars).is_err());
        let (_d, c) = tmp_cli(&[]);
        let vars = Vars(HashMap::from([("KIE_API_KEY", "  ".to_string())]));
        assert!(Config::from_cli(c, &vars).expect_err("empty").0.contains("empty"));
    }

    #[test]
    fn redis_certificates_are_read_checked_and_only_for_tls() {
        let (d, _) = tmp_cli(&[]);
        let pem = d.path().join("ca.pem");
        std::fs::write(&pem, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").unwrap();
        let not_pem = d.path().join("ca.der");
        std::fs::write(&not_pem, [0x30, 0x82, 0x01]).unwrap();
        let (pem, not_pem) = (pem.to_str().unwrap(), not_pem.to_str().unwrap());
        let err = |args: &[&str]| Config::from_cli(tmp_cli(args).1, &Vars(HashMap::new())).expect_err("refused").0;
        let ok = Config::from_cli(tmp_cli(&["--redis-url", "rediss://u:p@cache:6380/", "--redis-ca-file", pem]).1, &Vars(HashMap::new())).expect("valid");
        assert!(matches!(&ok.store, StoreConfig::Redis { options: gateway::store::RedisOptions { tls, .. }, .. } if tls.ca.as_deref().is_some_and(|c| c.starts_with(b"-----BEGIN")) && tls.client.is_none()));
        assert!(err(&["--redis-url", "redis://cache:6379/", "--redis-ca-file", pem]).contains("rediss://"), "a CA for a plain connection");
        assert!(err(&["--redis-url", "rediss://cache:6380/", "--redis-ca-file", not_pem]).contains("not a PEM file"));
        assert!(err(&["--redis-url", "rediss://cache:6380/", "--redis-ca-file", "/nonexistent/ca.pem"]).contains("REDIS_CA_FILE /nonexistent/ca.pem: cannot read it"));
        assert!(err(&["--redis-url", "rediss://cache:6380/", "--redis-client-cert-file", pem]).contains("together"), "a certificate without its key");
    }

    #[test]
    fn redis_display_hides_the_password() {
        assert_eq!(redis_display("redis://:hunter2@cache.internal:6380/0"), "redis://cache.internal:6380");
    }
}
