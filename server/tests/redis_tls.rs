//! Redis over TLS, as a managed Redis is reached: Debian's `redis-server` started TLS-only on
//! loopback with certificates this test makes (rcgen), an ACL user and password in the URL,
//! and `CONFIG` denied to that user as a managed Redis denies it. The console runs on it whole
//! (scripts, publish/subscribe, the relay); a wrong CA is refused with an error that names the
//! certificate problem; mutual TLS needs the client's certificate.

mod support;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};
use serde_json::json;
use server::config::StoreConfig;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::*;

/// A CA and what it signed, as PEM files in a folder.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn pem(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.file(name)).unwrap()
    }
}

/// `ca.pem`; `server.pem`/`server.key` for localhost and 127.0.0.1; `client.pem`/`client.key`;
/// and `other-ca.pem`, a CA that signed none of them.
fn make_pki() -> Pki {
    let dir = testkit::scratch_dir("redis-tls-pki");
    let ca = |name: &str| {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
    };
    let issuer = ca("Control Room test CA");
    std::fs::write(dir.join("ca.pem"), issuer.pem()).unwrap();
    std::fs::write(dir.join("other-ca.pem"), ca("Someone else's CA").pem()).unwrap();
    for (name, names, usage) in [("server", vec!["localhost".to_string(), "127.0.0.1".to_string()], ExtendedKeyUsagePurpose::ServerAuth), ("client", vec!["control-room".to_string()], ExtendedKeyUsagePurpose::ClientAuth)] {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(names).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.extended_key_usages = vec![usage];
        let cert = p.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }
    Pki { dir }
}

/// A TLS-only `redis-server` (AOF on) with an ACL user `studio` that may not run `CONFIG`
/// (the default user is off); stopped when dropped.
struct TlsRedis {
    child: Child,
    port: u16,
}

impl TlsRedis {
    fn start(pki: &Pki, client_certificates: bool) -> TlsRedis {
        let port = testkit::free_port();
        let dir = testkit::scratch_dir(&format!("redis-tls-{port}"));
        let path = |p: PathBuf| p.to_string_lossy().into_owned();
        let mut child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"])
            .arg("--dir")
            .arg(&dir)
            .args(["--tls-cert-file", &path(pki.file("server.pem")), "--tls-key-file", &path(pki.file("server.key")), "--tls-ca-cert-file", &path(pki.file("ca.pem"))])
            .args(["--tls-auth-clients", if client_certificates { "yes" } else { "no" }])
            .args(["--user", "default", "off"])
            .args(["--user", "studio", "on", ">s3cret-pass", "~*", "&*", "+@all", "-config"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(child.try_wait().unwrap().is_none(), "redis-server with TLS exited at start (is it built with TLS?)");
            assert!(std::time::Instant::now() < deadline, "redis-server with TLS did not listen within 10 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        TlsRedis { child, port }
    }

    fn url(&self) -> String {
        format!("rediss://studio:s3cret-pass@localhost:{}/", self.port)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn store_config(redis: &TlsRedis, ca: Option<Vec<u8>>, client: Option<(Vec<u8>, Vec<u8>)>) -> StoreConfig {
    StoreConfig::Redis { url: redis.url(), prefix: format!("{}:", testkit::unique("tls")), options: gateway::store::RedisOptions { tls: gateway::store::RedisTls { ca, client }, ..Default::default() } }
}

async fn refusal(cfg: &StoreConfig) -> String {
    match server::open_store(cfg).await {
        Ok(_) => panic!("the store opened"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_console_runs_on_a_tls_only_managed_redis_and_a_wrong_ca_is_refused_by_name() {
    let pki = make_pki();
    let redis = TlsRedis::start(&pki, false);

    // Not the CA that signed the server's certificate, or none (the system's roots): refused,
    // and the error says it is the certificate.
    for ca in [Some(pki.pem("other-ca.pem")), None] {
        let why = refusal(&store_config(&redis, ca.clone(), None)).await;
        assert!(why.contains("certificate") && why.contains("UnknownIssuer"), "{why}");
        assert!(!why.contains("s3cret-pass"), "the password is never shown: {why}");
    }

    // The right CA: the whole console runs on it — relay, scripts, the live events' channel.
    let cfg = store_config(&redis, Some(pki.pem("ca.pem")), None);
    let (sim_base, _sim) = start_sim_with(kie_sim::Settings { schedule: kie_sim::Schedule { waiting_ms: 100, queuing_ms: 100, generating_ms: 200 }, ..Default::default() }, KEY, 1_000.0, None).await;
    let (listener, base) = bind().await;
    let mut console = config(cfg.clone(), Some(KEY));
    console.kie_base_url = sim_base.parse().unwrap();
    let s = start_on(listener, console).await;
    let (status, ready) = get_anon(&format!("{base}/readyz")).await;
    assert_eq!(status, 200, "{ready}");
    let StoreConfig::Redis { url, prefix, options } = &cfg else { unreachable!() };
    let redis_store = gateway::RedisStore::connect_opts(url, prefix, options).await.unwrap();
    assert_eq!(redis_store.persistence().await, None, "CONFIG is denied to this user, as a managed Redis denies it: the console started anyway");
    let store = server::open_store(&cfg).await.unwrap();
    let key = gateway::team::relay_keys::create(store.as_ref(), &gateway::team::accounts::Actor::cli(), "trailer", "over tls").await.unwrap();
    let created = post_kie(&format!("{base}/kie/api/v1/jobs/createTask"), key.text.expose(), &json!({"model": "google/imagen4-fast", "input": {"prompt": "a lighthouse"}})).await;
    let id = created["data"]["taskId"].as_str().expect("a task id").to_string();
    assert!(store.task_get(&id).await.unwrap().is_some(), "recorded in the TLS Redis");
    // The dispatcher sends it, and its end comes back through the store (scripts, events).
    wait_until("the task ends success", 30, || async { store.task_get(&id).await.unwrap().is_some_and(|t| t.state == gateway::TaskState::Success) }).await;
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mutual_tls_needs_the_clients_certificate() {
    let pki = make_pki();
    let redis = TlsRedis::start(&pki, true);
    let why = refusal(&store_config(&redis, Some(pki.pem("ca.pem")), None)).await;
    assert!(why.starts_with("cannot use Redis at rediss://localhost"), "{why}");
    let store = server::open_store(&store_config(&redis, Some(pki.pem("ca.pem")), Some((pki.pem("client.pem"), pki.pem("client.key"))))).await.expect("with its certificate");
    store.kv_set("tls:check", b"ok", None).await.unwrap();
    assert_eq!(store.kv_get("tls:check").await.unwrap().as_deref(), Some(&b"ok"[..]));
}

/// The vetted outbound client (callbacks, downloads into the Library) checks a server's
/// certificate against the roots it reads once for every request: a certificate no trusted
/// root signed (this test's CA, as a TLS `redis-server` presents it) is refused, and the error
/// names the certificate problem — for the first client built and for the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbound_client_refuses_a_certificate_no_trusted_root_signed_by_name() {
    use gateway::outbound::{Outbound, OutboundOptions, OutboundPolicy};
    let pki = make_pki();
    let redis = TlsRedis::start(&pki, false);
    let url = format!("https://localhost:{}/", redis.port);
    let out = Outbound::new(OutboundPolicy::strict().also_allowing(&url.parse().unwrap()), OutboundOptions::default());
    for _ in 0..2 {
        let e = out.post_json(&url, b"{}", &[]).await.expect_err("refused");
        assert!(!e.is_refusal(), "allowed by the policy: refused by TLS ({e})");
        assert!(e.to_string().contains("invalid peer certificate: UnknownIssuer"), "{e}");
    }
}
