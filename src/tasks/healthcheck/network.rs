//! The `network` check: can the node open a TCP connection to every grid
//! service it depends on?
//!
//! A TCP handshake is enough: it proves the route, the firewall and the
//! far end's listener, without speaking each service's protocol. Every
//! service is tried at once, and name resolution counts against the same
//! timeout, so the check takes about one timeout however many services
//! there are and however slow the resolver is.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use url::{Host, Url};

/// Where a service URL is probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The URL as configured: error messages quote it unchanged.
    pub url: String,
    pub host: Host<String>,
    pub port: u16,
}

impl Target {
    /// Parses a service URL. The error is a reason fit for
    /// `<url> is not reachable: <reason>` and for configuration errors.
    pub fn parse(url: &str) -> Result<Target, String> {
        let parsed = Url::parse(url).map_err(|e| format!("invalid URL: {e}"))?;
        let host = parsed
            .host()
            .map(|h| h.to_owned())
            .ok_or_else(|| "invalid URL: it names no host".to_string())?;
        if matches!(&host, Host::Domain(d) if d.is_empty()) {
            return Err("invalid URL: it names no host".into());
        }
        Ok(Target {
            url: url.to_string(),
            host,
            port: port_of(&parsed),
        })
    }
}

/// The port probed for a URL (docs/tasks/healthcheck.md): the URL's own, else 443 for
/// `https` and `wss`, else 80.
///
/// The `url` crate drops a port equal to its scheme's default (`https://x:443`
/// has no port of its own), which gives the same answer here.
pub(crate) fn port_of(url: &Url) -> u16 {
    url.port().unwrap_or(match url.scheme() {
        "https" | "wss" => 443,
        _ => 80,
    })
}

/// Probes every service at once. Returns one
/// `<url> is not reachable: <reason>` per failing service, in list order.
pub async fn check(services: &[String], timeout: Duration) -> Vec<String> {
    let probes = services.iter().map(|url| async move {
        probe(url, timeout)
            .await
            .err()
            .map(|reason| format!("{url} is not reachable: {reason}"))
    });
    futures::future::join_all(probes)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Resolves the URL's host and connects to its port, all within `timeout`.
/// A host with several addresses is reachable when any of them answers;
/// they are tried at once, so an unreachable IPv6 address does not delay
/// a working IPv4 one.
pub async fn probe(url: &str, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let target = Target::parse(url)?;
    let waited = humantime::format_duration(timeout);

    let addrs: Vec<SocketAddr> = match &target.host {
        Host::Ipv4(ip) => vec![SocketAddr::new((*ip).into(), target.port)],
        Host::Ipv6(ip) => vec![SocketAddr::new((*ip).into(), target.port)],
        Host::Domain(name) => {
            let resolved = tokio::time::timeout_at(
                deadline,
                tokio::net::lookup_host((name.as_str(), target.port)),
            )
            .await
            .map_err(|_| format!("timed out after {waited} resolving {name}"))?
            .map_err(|e| format!("cannot resolve {name}: {e}"))?;
            let mut unique = BTreeSet::new();
            resolved.filter(|a| unique.insert(*a)).collect()
        }
    };
    if addrs.is_empty() {
        return Err(format!("{} resolved to no address", target.host));
    }

    let mut pending: BTreeSet<SocketAddr> = addrs.iter().copied().collect();
    let mut connects: FuturesUnordered<_> = addrs
        .into_iter()
        .map(|addr| async move { (addr, TcpStream::connect(addr).await) })
        .collect();
    let mut failures = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, connects.next()).await {
            Ok(Some((_, Ok(_stream)))) => return Ok(()),
            Ok(Some((addr, Err(e)))) => {
                pending.remove(&addr);
                failures.push(format!("connect to {addr}: {e}"));
            }
            Ok(None) => return Err(failures.join("; ")),
            Err(_) => {
                let waiting: Vec<String> = pending.iter().map(|a| a.to_string()).collect();
                let mut reason = format!(
                    "timed out after {waited} connecting to {}",
                    waiting.join(", ")
                );
                for f in &failures {
                    reason.push_str("; ");
                    reason.push_str(f);
                }
                return Err(reason);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(url: &str) -> u16 {
        Target::parse(url).expect("valid URL").port
    }

    #[test]
    fn ports_follow_the_spec_rules() {
        assert_eq!(port("https://graphql.grid.tf/graphql"), 443);
        assert_eq!(port("wss://relay.grid.tf"), 443);
        assert_eq!(port("wss://tfchain.grid.tf/"), 443);
        assert_eq!(port("http://example.org/"), 80);
        assert_eq!(port("ws://example.org/"), 80);
        assert_eq!(port("redis://hub.threefold.me:9900"), 9900);
        assert_eq!(port("https://example.org:8443/x"), 8443);
        assert_eq!(port("https://example.org:443/x"), 443);
        assert_eq!(port("http://example.org:443/x"), 443);
        // Any other scheme without a port: 80, not the scheme's usual port.
        assert_eq!(port("ftp://example.org/"), 80);
        assert_eq!(port("redis://example.org"), 80);
    }

    #[test]
    fn hosts_are_names_or_addresses() {
        let t = Target::parse("redis://hub.threefold.me:9900").expect("parse");
        assert_eq!(t.host, Host::Domain("hub.threefold.me".to_string()));
        assert_eq!(t.url, "redis://hub.threefold.me:9900");
        let t = Target::parse("http://[2001:db8::1]:8080/").expect("parse");
        assert_eq!(
            t.host,
            Host::<String>::Ipv6("2001:db8::1".parse().expect("ip"))
        );
        let t = Target::parse("https://192.0.2.7/").expect("parse");
        assert_eq!(
            t.host,
            Host::<String>::Ipv4("192.0.2.7".parse().expect("ip"))
        );
    }

    #[test]
    fn urls_without_a_host_are_refused() {
        for bad in [
            "graphql.grid.tf",
            "",
            "unix:///var/run/redis.sock",
            "https://",
        ] {
            let err = Target::parse(bad).expect_err(bad);
            assert!(err.starts_with("invalid URL"), "{bad}: {err}");
        }
    }

    #[tokio::test]
    async fn an_invalid_url_is_reported_with_the_url_as_written() {
        let errors = check(&["graphql.grid.tf".to_string()], Duration::from_millis(100)).await;
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("graphql.grid.tf is not reachable: invalid URL"),
            "{errors:?}"
        );
    }
}
