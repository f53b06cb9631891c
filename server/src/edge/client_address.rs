//! Who the client is, for the sign-in throttle and the audit log.
//!
//! Without `TRUSTED_PROXIES` the client is the peer that connected, and `X-Forwarded-For` and
//! `Forwarded` are ignored: anyone can write them. With it, a peer inside one of its networks
//! is a proxy, and the forwarded chain is read from the right (the hop nearest this server)
//! past every trusted proxy: the first address not trusted is the client. An address a
//! client wrote itself sits to the left of the one its proxy saw, so it is never reached.

use axum::http::{HeaderMap, header};
use ipnet::IpNet;
use std::net::IpAddr;

/// `TRUSTED_PROXIES`: the networks whose forwarding headers are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Comma-separated addresses and CIDRs (`10.0.0.0/8, 127.0.0.1`); empty: none.
    pub fn parse(spec: &str) -> Result<TrustedProxies, String> {
        let mut nets = Vec::new();
        for raw in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let net = match raw.parse::<IpNet>() {
                Ok(n) => n,
                Err(_) => IpNet::from(raw.parse::<IpAddr>().map_err(|_| {
                    format!("{raw:?} is not an address or a CIDR (e.g. 10.0.0.0/8)")
                })?),
            };
            nets.push(net);
        }
        Ok(TrustedProxies(nets))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client behind `peer`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = canonical(peer);
        if !self.trusts(client) {
            return client;
        }
        for hop in forwarded_chain(headers).into_iter().rev() {
            // A hop that is not an address, written by a trusted proxy, is a proxy's mistake:
            // the nearest proxy stands for the client then.
            let Some(ip) = hop else { return client };
            client = canonical(ip);
            if !self.trusts(client) {
                return client;
            }
        }
        client
    }
}

/// An IPv4 address written as IPv6 (`::ffff:10.0.0.1`) is the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Most hops read from the forwarding headers (a longer chain is cut at its left end).
const MAX_HOPS: usize = 32;

/// The forwarded chain, leftmost (farthest) first: `Forwarded`'s `for=` values if it is
/// present, else `X-Forwarded-For`'s. `None` for a hop that is not an address (`unknown`,
/// an obfuscated name, garbage).
fn forwarded_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let values = |name: header::HeaderName| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>()
    };
    let forwarded = values(header::FORWARDED);
    let hops: Vec<Option<IpAddr>> = if forwarded.is_empty() {
        values(header::HeaderName::from_static("x-forwarded-for"))
            .into_iter()
            .map(address)
            .collect()
    } else {
        forwarded
            .into_iter()
            .map(|element| {
                element
                    .split(';')
                    .find_map(|pair| {
                        pair.trim()
                            .split_once('=')
                            .filter(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
                            .map(|(_, v)| v.trim())
                    })
                    .and_then(address)
            })
            .collect()
    };
    let skip = hops.len().saturating_sub(MAX_HOPS);
    hops.into_iter().skip(skip).collect()
}

/// An address as forwarding headers write it: `1.2.3.4`, `1.2.3.4:80`, `"[::1]:80"`, `::1`.
fn address(raw: &str) -> Option<IpAddr> {
    let raw = raw.trim().trim_matches('"');
    if let Ok(ip) = raw.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = raw.strip_prefix('[') {
        return rest.split_once(']').and_then(|(ip, _)| ip.parse().ok());
    }
    raw.rsplit_once(':').and_then(|(ip, port)| {
        port.parse::<u16>()
            .ok()
            .and(ip.parse::<std::net::Ipv4Addr>().ok())
            .map(IpAddr::V4)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                header::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client() {
        let none = TrustedProxies::default();
        assert_eq!(
            none.client(
                ip("10.0.0.5"),
                &headers(&[("x-forwarded-for", "203.0.113.9")])
            ),
            ip("10.0.0.5")
        );
    }

    #[test]
    fn a_trusted_proxy_is_believed_and_what_the_client_wrote_is_not() {
        let t = TrustedProxies::parse("10.0.0.0/8, 127.0.0.1").expect("parse");
        // The proxy appended the peer it saw; the client had written a lie to its left.
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 203.0.113.9")]);
        assert_eq!(t.client(ip("10.0.0.5"), &h), ip("203.0.113.9"));
        // Two proxies in a row.
        let h = headers(&[("x-forwarded-for", "198.51.100.7, 10.1.2.3")]);
        assert_eq!(t.client(ip("127.0.0.1"), &h), ip("198.51.100.7"));
        // An untrusted peer's headers are ignored.
        assert_eq!(t.client(ip("192.0.2.1"), &h), ip("192.0.2.1"));
        // `Forwarded` wins over X-Forwarded-For, with quotes, ports and brackets.
        let h = headers(&[
            (
                "forwarded",
                "for=\"[2001:db8::17]:4711\";proto=https, for=10.9.9.9",
            ),
            ("x-forwarded-for", "1.1.1.1"),
        ]);
        assert_eq!(t.client(ip("10.0.0.5"), &h), ip("2001:db8::17"));
        let h = headers(&[("forwarded", "For=192.0.2.60:8080")]);
        assert_eq!(t.client(ip("::ffff:10.0.0.5"), &h), ip("192.0.2.60"));
        // Garbage right after a trusted proxy: the proxy stands for the client.
        let h = headers(&[("x-forwarded-for", "unknown")]);
        assert_eq!(t.client(ip("10.0.0.5"), &h), ip("10.0.0.5"));
        // Every hop trusted: the farthest one.
        let h = headers(&[("x-forwarded-for", "10.2.2.2, 10.3.3.3")]);
        assert_eq!(t.client(ip("10.0.0.5"), &h), ip("10.2.2.2"));
    }

    #[test]
    fn bad_networks_are_named() {
        assert!(
            TrustedProxies::parse("10.0.0.0/40")
                .expect_err("bad")
                .contains("10.0.0.0/40")
        );
        assert!(TrustedProxies::parse("proxy.internal").is_err());
        assert!(TrustedProxies::parse(" ").expect("empty").is_empty());
    }
}
