//! The one vetted way out: every request whose address a user, a relay key or an operator's
//! setting can aim (relay callbacks, the alert webhook, result downloads, receipt sync) goes
//! through [`Outbound`]. Only KIE's own client talks to `KIE_BASE_URL` directly.
//!
//! The policy, in order:
//! 1. `http` or `https` only, a host, no user name or password in the URL.
//! 2. The host is resolved here; **every** address it resolves to must be public. Refused:
//!    loopback, RFC 1918 private, link-local, CGNAT (100.64/10), unique-local (fc00::/7),
//!    site-local, multicast, broadcast, unspecified, documentation and benchmark ranges,
//!    and IPv6 forms that carry an IPv4 address (mapped, compatible, NAT64, 6to4), which are
//!    judged by the address they carry. URL forms such as `http://2130706433/` are parsed
//!    to the address they mean (127.0.0.1) before the check.
//! 3. The request connects to the addresses that were vetted, never to a second lookup, so
//!    DNS rebinding between the check and the connection changes nothing.
//! 4. Redirects are never followed (a 3xx is the answer); timeouts bound the connection and
//!    the whole exchange; at most [`OutboundOptions::max_body`] bytes of an answer are read.
//!
//! `OUTBOUND_ALLOW` (comma-separated `host`, `host:port` or CIDR entries) lets chosen private
//! receivers through — an on-premise webhook, or a test's loopback receiver. A `host` or
//! `host:port` entry admits whatever that name resolves to (at that port); a CIDR entry
//! admits the addresses inside it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use url::{Host, Url};

/// Why an outbound request was not sent, or got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    /// The URL is not one the policy lets out; nothing was sent.
    #[error("{0}")]
    Refused(String),
    /// The host name did not resolve; nothing was sent.
    #[error("cannot resolve {0}")]
    Resolve(String),
    /// Nothing came back in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The connection failed or broke.
    #[error("cannot reach it: {0}")]
    Transport(String),
}

impl OutboundError {
    /// The request was refused by the policy (or its host does not exist): sending it again
    /// cannot help.
    pub fn is_refusal(&self) -> bool {
        matches!(self, OutboundError::Refused(_) | OutboundError::Resolve(_))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Allow {
    Host(String),
    HostPort(String, u16),
    Net(IpNet),
}

/// Which private destinations may be reached anyway; see the module doc.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    allow: Vec<Allow>,
}

impl OutboundPolicy {
    /// Nothing private is allowed.
    pub fn strict() -> Self {
        OutboundPolicy::default()
    }

    /// Parses `OUTBOUND_ALLOW`: `host`, `host:port`, `[v6]:port` or CIDR (`10.0.0.0/8`, an
    /// address alone is a /32 or /128), comma-separated.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut allow = Vec::new();
        for raw in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if let Ok(net) = raw.parse::<IpNet>() {
                allow.push(Allow::Net(net));
            } else if let Ok(ip) = raw.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
                allow.push(Allow::Net(IpNet::from(ip)));
            } else if let Ok(sa) = raw.parse::<SocketAddr>() {
                allow.push(Allow::HostPort(sa.ip().to_string(), sa.port()));
            } else {
                let (host, port) = match raw.rsplit_once(':') {
                    Some((h, p)) => (h, Some(p.parse::<u16>().map_err(|_| format!("OUTBOUND_ALLOW entry {raw:?}: the port must be a number 1–65535"))?)),
                    None => (raw, None),
                };
                let host = host.to_ascii_lowercase();
                if host.is_empty() || host.len() > 253 || !host.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)) {
                    return Err(format!("OUTBOUND_ALLOW entry {raw:?} is not a host, host:port or CIDR"));
                }
                allow.push(match port {
                    Some(0) => return Err(format!("OUTBOUND_ALLOW entry {raw:?}: the port must be a number 1–65535")),
                    Some(p) => Allow::HostPort(host, p),
                    None => Allow::Host(host),
                });
            }
        }
        Ok(OutboundPolicy { allow })
    }

    /// This policy plus one `host:port` (for downloads from `KIE_BASE_URL`'s own host).
    pub fn also_allowing(mut self, url: &Url) -> Self {
        if let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) {
            let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
            self.allow.push(Allow::HostPort(host, port));
        }
        self
    }

    /// Whether nothing private is allowed.
    pub fn is_strict(&self) -> bool {
        self.allow.is_empty()
    }

    fn name_allowed(&self, host: &str, port: u16) -> bool {
        self.allow.iter().any(|a| match a {
            Allow::Host(h) => h == host,
            Allow::HostPort(h, p) => h == host && *p == port,
            Allow::Net(_) => false,
        })
    }

    fn address_allowed(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|a| matches!(a, Allow::Net(n) if n.contains(&ip)))
    }

    /// Checks `url` and resolves its host: the addresses a request to it may connect to.
    pub async fn vet(&self, url: &Url) -> Result<Vetted, OutboundError> {
        let refused = |why: String| Err(OutboundError::Refused(why));
        if !matches!(url.scheme(), "http" | "https") {
            return refused(format!("only http and https URLs are allowed, not {}:", url.scheme()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return refused("a URL must not carry a user name or password".into());
        }
        let Some(port) = url.port_or_known_default() else { return refused("the URL has no port".into()) };
        let (name, addrs): (String, Vec<IpAddr>) = match url.host() {
            None => return refused("the URL has no host".into()),
            Some(Host::Ipv4(ip)) => (ip.to_string(), vec![IpAddr::V4(ip)]),
            Some(Host::Ipv6(ip)) => (ip.to_string(), vec![IpAddr::V6(ip)]),
            Some(Host::Domain(d)) => {
                let d = d.trim_end_matches('.').to_ascii_lowercase();
                if d.is_empty() {
                    return refused("the URL has no host".into());
                }
                let found = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((d.as_str(), port)))
                    .await
                    .map_err(|_| OutboundError::Resolve(format!("{d} (no answer within {RESOLVE_TIMEOUT:?})")))?
                    .map_err(|_| OutboundError::Resolve(d.clone()))?;
                let mut ips: Vec<IpAddr> = found.map(|sa| sa.ip()).collect();
                ips.dedup();
                if ips.is_empty() {
                    return Err(OutboundError::Resolve(d));
                }
                (d, ips)
            }
        };
        let by_name = self.name_allowed(&name, port);
        for ip in &addrs {
            if let Some(why) = not_public(*ip)
                && !by_name
                && !self.address_allowed(*ip)
            {
                let shown = if name == ip.to_string() { name.clone() } else { format!("{name} ({ip})") };
                return refused(format!("{shown} is a {why} address; only public addresses may be reached (OUTBOUND_ALLOW lists exceptions)"));
            }
        }
        Ok(Vetted { url: url.clone(), host: name, addrs: addrs.into_iter().map(|ip| SocketAddr::new(ip, port)).collect() })
    }
}

/// How long a host name may take to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// A URL whose addresses passed the policy.
#[derive(Debug, Clone)]
pub struct Vetted {
    url: Url,
    host: String,
    addrs: Vec<SocketAddr>,
}

impl Vetted {
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }
}

/// Why an address is not public (`None`: it is).
pub fn not_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => not_public_v4(v4),
        IpAddr::V6(v6) => not_public_v6(v6),
    }
}

fn not_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, ..) => "unspecified (0.0.0.0/8)",
        (127, ..) => "loopback",
        (10, ..) | (172, 16..=31, _) | (192, 168, _) => "private (RFC 1918)",
        (169, 254, _) => "link-local",
        (100, 64..=127, _) => "shared CGNAT (100.64.0.0/10)",
        (192, 0, 0) => "IETF protocol (192.0.0.0/24)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, 18..=19, _) => "benchmarking (198.18.0.0/15)",
        (224..=239, ..) => "multicast",
        (240..=255, ..) => "reserved or broadcast",
        _ => return None,
    })
}

fn not_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    // Forms that carry an IPv4 address are judged by it: mapped (::ffff:a.b.c.d), compatible
    // (::a.b.c.d), NAT64 (64:ff9b::/96) and 6to4 (2002:AABB:CCDD::/48).
    let embedded = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return not_public_v4(v4);
    }
    if s[..6] == [0; 6] {
        return Some("IPv4-compatible (deprecated)");
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return not_public_v4(embedded(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return not_public_v4(embedded(s[1], s[2]));
    }
    Some(match s[0] {
        0xfc00..=0xfdff => "unique-local (fc00::/7)",
        0xfe80..=0xfebf => "link-local",
        0xfec0..=0xfeff => "site-local",
        0xff00..=0xffff => "multicast",
        0x2001 if s[1] == 0x0db8 => "documentation",
        0x0100 if s[1..4] == [0, 0, 0] => "discard-only (100::/64)",
        _ => return None,
    })
}

/// Limits of one outbound request.
#[derive(Debug, Clone)]
pub struct OutboundOptions {
    pub connect_timeout: Duration,
    /// The whole exchange, answer included.
    pub timeout: Duration,
    /// Most bytes of an answer read; the rest is dropped.
    pub max_body: usize,
}

impl Default for OutboundOptions {
    fn default() -> Self {
        OutboundOptions { connect_timeout: Duration::from_secs(5), timeout: Duration::from_secs(15), max_body: 64 * 1024 }
    }
}

/// An answer: its status and at most `max_body` bytes of its body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// `Location` of a 3xx, which is never followed.
    pub location: Option<String>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// The vetted outbound client; cheap to clone.
#[derive(Debug, Clone)]
pub struct Outbound {
    policy: std::sync::Arc<OutboundPolicy>,
    opts: OutboundOptions,
}

impl Outbound {
    pub fn new(policy: OutboundPolicy, opts: OutboundOptions) -> Self {
        Outbound { policy: std::sync::Arc::new(policy), opts }
    }

    pub fn policy(&self) -> &OutboundPolicy {
        &self.policy
    }

    /// Checks a URL as [`OutboundPolicy::vet`] does (for a check at submission).
    pub async fn check(&self, url: &str) -> Result<Vetted, OutboundError> {
        let url = Url::parse(url).map_err(|_| OutboundError::Refused("not an absolute URL".into()))?;
        self.policy.vet(&url).await
    }

    /// POSTs `body` as JSON with `headers` to `url`, after vetting it.
    pub async fn post_json(&self, url: &str, body: &[u8], headers: &[(&str, String)]) -> Result<Answer, OutboundError> {
        let vetted = self.check(url).await?;
        let client = self.client_for(&vetted)?;
        let mut req = client.post(vetted.url.clone()).header(reqwest::header::CONTENT_TYPE, "application/json").body(body.to_vec());
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        self.exchange(req).await
    }

    /// GETs `url` after vetting it; the body is read by the caller as it arrives (downloads
    /// into the Library). A 3xx is answered as it is, never followed.
    pub async fn get_streamed(&self, url: &str) -> Result<Streamed, OutboundError> {
        let vetted = self.check(url).await?;
        let client = self.client_for(&vetted)?;
        let timeout = self.opts.timeout;
        let resp = client.get(vetted.url.clone()).send().await.map_err(|e| transport(e, timeout))?;
        let location = resp.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()).map(|s| s.chars().take(512).collect());
        Ok(Streamed { status: resp.status().as_u16(), location, timeout, resp })
    }

    /// A client that connects only to the vetted addresses and follows no redirect. One is
    /// built for each request (it is bound to that request's vetted addresses); the TLS
    /// settings it uses are built once ([`tls`]).
    fn client_for(&self, vetted: &Vetted) -> Result<reqwest::Client, OutboundError> {
        let mut b = reqwest::Client::builder();
        if let Some(tls) = tls() {
            b = b.use_preconfigured_tls(tls.clone());
        }
        let mut b = b
            .user_agent(concat!("kie-control-room/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(self.opts.connect_timeout)
            .timeout(self.opts.timeout)
            .pool_max_idle_per_host(0);
        if vetted.url.host_str().is_some_and(|h| h.parse::<IpAddr>().is_err() && !h.starts_with('[')) {
            b = b.resolve_to_addrs(&vetted.host, &vetted.addrs);
        }
        b.build().map_err(|e| OutboundError::Transport(format!("cannot build the HTTP client: {e}")))
    }

    async fn exchange(&self, req: reqwest::RequestBuilder) -> Result<Answer, OutboundError> {
        let timeout = self.opts.timeout;
        let map = move |e: reqwest::Error| transport(e, timeout);
        let mut resp = req.send().await.map_err(map)?;
        let status = resp.status().as_u16();
        let location = resp.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()).map(|s| s.chars().take(512).collect());
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(map)? {
            let room = self.opts.max_body.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= self.opts.max_body {
                break;
            }
        }
        Ok(Answer { status, location, body })
    }
}

/// The TLS settings every vetted client shares: the roots reqwest itself would trust (Mozilla's
/// and the system's), read once. Left to reqwest, each client built reads and parses the
/// system's certificate files again: ~20 ms of CPU a request in a debug build, more than the
/// request itself. `None` (reqwest's own settings then) only if ring could not be set up.
fn tls() -> Option<&'static rustls::ClientConfig> {
    static TLS: std::sync::OnceLock<Option<rustls::ClientConfig>> = std::sync::OnceLock::new();
    TLS.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let native = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(native.certs);
        tracing::debug!(added, "outbound TLS: the system's roots read once");
        let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .ok()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        // As reqwest offers it without HTTP/2.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Some(config)
    })
    .as_ref()
}

/// A request that failed, in words with its causes ("error sending request: client error
/// (Connect): invalid peer certificate: UnknownIssuer"), never its URL.
fn transport(e: reqwest::Error, timeout: Duration) -> OutboundError {
    if e.is_timeout() {
        return OutboundError::Timeout(timeout);
    }
    let e = e.without_url();
    let mut words = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        words.push_str(": ");
        words.push_str(&c.to_string());
        cause = c.source();
    }
    OutboundError::Transport(words)
}

/// An answer whose body is read piece by piece ([`Outbound::get_streamed`]).
pub struct Streamed {
    pub status: u16,
    /// `Location` of a 3xx, which is never followed.
    pub location: Option<String>,
    timeout: Duration,
    resp: reqwest::Response,
}

impl Streamed {
    /// The next piece of the body; `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<bytes::Bytes>, OutboundError> {
        self.resp.chunk().await.map_err(|e| transport(e, self.timeout))
    }

    /// The length the answer announced, if any.
    pub fn content_length(&self) -> Option<u64> {
        self.resp.content_length()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn every_non_public_range_is_named() {
        for (addr, kind) in [
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("10.1.2.3", "RFC 1918"),
            ("172.16.0.1", "RFC 1918"),
            ("172.31.255.255", "RFC 1918"),
            ("192.168.1.1", "RFC 1918"),
            ("169.254.169.254", "link-local"),
            ("100.64.0.1", "CGNAT"),
            ("100.127.255.255", "CGNAT"),
            ("0.0.0.0", "unspecified"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "RFC 1918"),
            ("::127.0.0.1", "compatible"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("2002:7f00:1::", "loopback"),
            ("fc00::1", "unique-local"),
            ("fd12:3456::1", "unique-local"),
            ("fe80::1", "link-local"),
            ("ff02::1", "multicast"),
        ] {
            let why = not_public(ip(addr)).unwrap_or_else(|| panic!("{addr} passed as public"));
            assert!(why.contains(kind), "{addr}: {why}");
        }
        for public in ["93.184.216.34", "8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"] {
            assert_eq!(not_public(ip(public)), None, "{public}");
        }
    }

    #[tokio::test]
    async fn url_forms_of_loopback_are_refused() {
        let p = OutboundPolicy::strict();
        for url in [
            "http://127.0.0.1:6379/",
            "http://2130706433:6379/",
            "http://0x7f.0.0.1/",
            "http://0177.0.0.1/",
            "http://[::1]:8080/",
            "http://[::ffff:127.0.0.1]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://localhost:3000/",
            "http://LOCALHOST./",
            "ftp://example.com/",
            "http://user:pw@example.com/",
        ] {
            let err = p.vet(&Url::parse(url).unwrap()).await.expect_err(url);
            assert!(err.is_refusal(), "{url}: {err}");
        }
    }

    #[tokio::test]
    async fn allow_entries_admit_exactly_what_they_name() {
        let p = OutboundPolicy::parse("127.0.0.1:9000, 10.0.0.0/8, localhost, fd00::/8").unwrap();
        assert!(p.vet(&Url::parse("http://127.0.0.1:9000/x").unwrap()).await.is_ok());
        assert!(p.vet(&Url::parse("http://127.0.0.1:9001/x").unwrap()).await.is_err(), "other port");
        assert!(p.vet(&Url::parse("http://10.9.8.7/").unwrap()).await.is_ok());
        assert!(p.vet(&Url::parse("http://192.168.0.1/").unwrap()).await.is_err());
        assert!(p.vet(&Url::parse("http://localhost:1234/").unwrap()).await.is_ok(), "a name entry admits any port");
        assert!(p.vet(&Url::parse("http://[fd00::5]/").unwrap()).await.is_ok());
        for bad in ["10.0.0.0/33", "host:0", "host:x", "a b", "http://x"] {
            assert!(OutboundPolicy::parse(bad).is_err(), "{bad}");
        }
        let kie = OutboundPolicy::strict().also_allowing(&Url::parse("http://127.0.0.1:7777").unwrap());
        assert!(kie.vet(&Url::parse("http://127.0.0.1:7777/media/1.png").unwrap()).await.is_ok());
        assert!(kie.vet(&Url::parse("http://127.0.0.1:7778/").unwrap()).await.is_err());
    }
}
