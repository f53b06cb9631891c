//! Test support shared by the workspace's integration tests.
//!
//! - [`redis_url`] — a real Redis: `TEST_REDIS_URL` if set, else a private `redis-server`
//!   started once per test binary on a free loopback port (and stopped when the binary exits).
//! - [`RedisServer`] — a private `redis-server` a test owns (and can stop, crash and
//!   restart) by itself. Every `redis-server` started here runs with the append-only file
//!   on, as production must.
//! - [`sse::SseClient`] — a reader of the console's live event stream over HTTP.
//! - [`S3Server`] — moto's S3-compatible server on a free port; [`result_host`] — a loopback
//!   stand-in for KIE's result host.
//! - [`unique`] — a process-unique name, for key prefixes and temporary records, so tests
//!   share one Redis without seeing each other.

pub mod sse;

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A free loopback port (bound then released; the OS does not hand it out again at once).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot find a free loopback port: {e}"))
}

/// The URL of a Redis server for tests.
pub fn redis_url() -> String {
    if let Ok(url) = std::env::var("TEST_REDIS_URL") {
        return url;
    }
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(spawn_private_redis).clone()
}

/// Starts `redis-server` from a thread that lives as long as the test binary: the child is
/// told (PR_SET_PDEATHSIG) to exit when that thread, and so the binary, goes away.
fn spawn_private_redis() -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let started = (|| {
            // A port can be taken between the check and the server's bind (another run on
            // this machine): then this redis-server exits, and another port is tried.
            for _ in 0..5 {
                let port = free_port();
                let dir = scratch_dir(&format!("redis-{port}"));
                let mut cmd = redis_command(port, &dir);
                // SAFETY: prctl is async-signal-safe and touches only the child's own state.
                unsafe {
                    use std::os::unix::process::CommandExt;
                    cmd.pre_exec(|| {
                        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                        Ok(())
                    });
                }
                let mut child = cmd.spawn().map_err(|e| e.to_string())?;
                if listening(&mut child, port, Duration::from_secs(10)) {
                    return Ok((child, port));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
            Err("redis-server did not start on any of 5 free ports".to_string())
        })();
        match started {
            Ok((_child, port)) => {
                let _ = tx.send(Ok(port));
                loop {
                    std::thread::park();
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        }
    });
    let port = match rx.recv() {
        Ok(Ok(port)) => port,
        Ok(Err(e)) => panic!("cannot start redis-server ({e}); install it (apt-get install redis-server) or set TEST_REDIS_URL"),
        Err(e) => panic!("redis-server starter thread died: {e}"),
    };
    format!("redis://127.0.0.1:{port}/")
}

/// Waits (`within` at most) until `child` listens on `port`; `false` if it exited first (the
/// port was taken) or never listened. What answers must be this child: it is checked alive
/// after the port answers.
fn listening(child: &mut std::process::Child, port: u16, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return false;
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            std::thread::sleep(Duration::from_millis(50));
            return matches!(child.try_wait(), Ok(None));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A name unique within this machine's test runs: process id, time and a counter.
pub fn unique(label: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{label}-{}-{nanos}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// A fresh folder under the system's temporary folder, for one test's files.
pub fn scratch_dir(label: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique(&format!("cr-{label}")));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// `redis-server` as production should run it: the append-only file on (every write logged
/// before it is answered; fsync every second), no RDB snapshots, in `dir`, on loopback.
fn redis_command(port: u16, dir: &std::path::Path) -> Command {
    redis_command_with(port, dir, true)
}

fn redis_command_with(port: u16, dir: &std::path::Path, aof: bool) -> Command {
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", if aof { "yes" } else { "no" }, "--appendfsync", "everysec"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// A `redis-server` owned by one test (AOF on, its own folder): stopped when dropped (or by
/// [`RedisServer::stop`]); [`RedisServer::kill`] and [`RedisServer::restart`] crash it and
/// bring it back on the same port from its append-only file.
pub struct RedisServer {
    child: std::process::Child,
    pub port: u16,
    dir: std::path::PathBuf,
    aof: bool,
    /// Further arguments, kept for a restart (`--replicaof`).
    extra: Vec<String>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_with(true)
    }

    /// One that keeps nothing on disk, as a misconfigured production Redis would (to test
    /// that the console refuses it).
    pub fn start_ephemeral() -> RedisServer {
        Self::start_with(false)
    }

    /// A replica of the server on `primary_port` (AOF on too), as a Sentinel deployment runs.
    pub fn start_replica_of(primary_port: u16) -> RedisServer {
        Self::start_full(true, vec!["--replicaof".into(), "127.0.0.1".into(), primary_port.to_string()])
    }

    fn start_with(aof: bool) -> RedisServer {
        Self::start_full(aof, Vec::new())
    }

    fn start_full(aof: bool, extra: Vec<String>) -> RedisServer {
        // A free port can be taken before the server binds it (another run on this machine).
        for _ in 0..5 {
            let port = free_port();
            let dir = scratch_dir(&format!("redis-{port}"));
            if let Some(child) = Self::try_spawn(port, &dir, aof, &extra) {
                return RedisServer { child, port, dir, aof, extra };
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    fn try_spawn(port: u16, dir: &std::path::Path, aof: bool, extra: &[String]) -> Option<std::process::Child> {
        let mut child = redis_command_with(port, dir, aof)
            .args(extra)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server ({e}); install it (apt-get install redis-server)"));
        if listening(&mut child, port, Duration::from_secs(10)) {
            Some(child)
        } else {
            let _ = child.kill();
            let _ = child.wait();
            None
        }
    }

    fn spawn(port: u16, dir: &std::path::Path, aof: bool, extra: &[String]) -> std::process::Child {
        Self::try_spawn(port, dir, aof, extra).unwrap_or_else(|| panic!("redis-server did not come back on port {port} within 10 s (is the port taken?)"))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// SIGKILL: the server dies at once, as in a crash (what it answered is in its AOF).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port and folder, from its append-only file.
    pub fn restart(&mut self) {
        self.kill();
        self.child = Self::spawn(self.port, &self.dir, self.aof, &self.extra);
    }

    pub fn stop(&mut self) {
        self.kill();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Sentinel (`redis-server --sentinel`, Debian's) on loopback watching the primary on
/// `primary_port` as `service`, with a quorum of `quorum`: it calls the primary down after
/// `down_ms` without an answer. Stopped when dropped.
pub struct SentinelServer {
    child: std::process::Child,
    pub port: u16,
    dir: std::path::PathBuf,
}

impl SentinelServer {
    pub fn start(service: &str, primary_port: u16, quorum: u32, down_ms: u64) -> SentinelServer {
        for _ in 0..5 {
            let port = free_port();
            let dir = scratch_dir(&format!("sentinel-{port}"));
            // Sentinel rewrites its file as it learns the replicas and the other Sentinels.
            let conf = dir.join("sentinel.conf");
            let text = format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor {service} 127.0.0.1 {primary_port} {quorum}\nsentinel down-after-milliseconds {service} {down_ms}\nsentinel failover-timeout {service} {}\nsentinel parallel-syncs {service} 1\n",
                dir.display(),
                (down_ms * 3).max(3000)
            );
            std::fs::write(&conf, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", conf.display()));
            let mut child = Command::new("redis-server")
                .arg(&conf)
                .arg("--sentinel")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start redis-server --sentinel ({e}); install redis-server (it carries Sentinel)"));
            if listening(&mut child, port, Duration::from_secs(10)) {
                return SentinelServer { child, port, dir };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-server --sentinel did not start on any of 5 free ports");
    }
}

impl Drop for SentinelServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A loopback stand-in for KIE's result host, for the Library's tests and benchmark:
/// `/bytes/<n>` answers `n` bytes at once, `/slow/<n>` sends them a kilobyte every 20 ms (a
/// download that can be cut off), `/redirect` answers 302 to the cloud metadata address,
/// `/png` a few bytes that begin like a PNG, `/big` 3 MiB. Returns its base URL.
pub async fn result_host() -> String {
    use axum::extract::Path;
    use axum::routing::get;
    use futures::StreamExt;
    async fn slow(Path(n): Path<usize>) -> axum::response::Response {
        let chunks = futures::stream::iter(0..n.div_ceil(1000)).then(|_| async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![7u8; 1000]))
        });
        axum::response::Response::new(axum::body::Body::from_stream(chunks))
    }
    let app = axum::Router::new()
        .route("/slow/{n}", get(slow))
        .route("/bytes/{n}", get(|Path(n): Path<usize>| async move { vec![7u8; n] }))
        .route("/redirect", get(|| async { (axum::http::StatusCode::FOUND, [("location", "http://169.254.169.254/latest/meta-data/")]) }))
        .route("/png", get(|| async { b"\x89PNG\r\n\x1a\n-not-really-a-png".to_vec() }))
        .route("/big", get(|| async { vec![1u8; 3 << 20] }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

/// An S3-compatible server owned by one test: moto's server mode (PyPI `moto[server]`,
/// installed by `scripts/setup.sh test` into `tools/venv`) on a free loopback port; stopped
/// when dropped. It keeps objects in memory, which is all a test needs; it speaks S3's HTTP
/// API (SigV4, multipart uploads, ranges, copies), so the client under test is the real one.
pub struct S3Server {
    child: std::process::Child,
    pub endpoint: String,
}

impl S3Server {
    pub fn start() -> S3Server {
        let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/venv/bin/moto_server");
        assert!(bin.exists(), "{} is missing: run scripts/setup.sh test (it installs moto[server], pinned in tools/requirements-test.txt)", bin.display());
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            if listening(&mut child, port, Duration::from_secs(30)) {
                return S3Server { child, endpoint: format!("http://127.0.0.1:{port}") };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("moto_server did not start on any of 5 free ports");
    }

    /// Creates a bucket (moto accepts any credentials) and returns its name.
    pub async fn bucket(&self, label: &str) -> String {
        let name = unique(label).to_lowercase().replace(|c: char| !c.is_ascii_alphanumeric(), "-");
        let r = reqwest::Client::new().put(format!("{}/{name}", self.endpoint)).send().await.expect("create bucket");
        assert!(r.status().is_success(), "creating bucket {name}: {}", r.status());
        name
    }

    /// The `AWS_*` settings that point an S3 client at this server.
    pub fn aws(&self) -> [(&'static str, &str); 5] {
        [("AWS_ENDPOINT", self.endpoint.as_str()), ("AWS_ALLOW_HTTP", "true"), ("AWS_REGION", "us-east-1"), ("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test")]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Raises this process's open-file limit to its hard limit (benchmarks hold thousands of
/// loopback connections, both ends in one process). Returns the new soft limit.
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
    lim.rlim_cur
}
