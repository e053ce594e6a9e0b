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
    pub fn parse(url: &str) -> Result<Target, ProbeError> {
        let parsed = Url::parse(url).map_err(ProbeError::Invalid)?;
        let host = parsed
            .host()
            .map(|h| h.to_owned())
            .ok_or(ProbeError::NoHost)?;
        if matches!(&host, Host::Domain(d) if d.is_empty()) {
            return Err(ProbeError::NoHost);
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

/// Why a service was not reached: the reason after
/// `<url> is not reachable: ` in the check's errors.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("invalid URL: {0}")]
    Invalid(url::ParseError),
    #[error("invalid URL: it names no host")]
    NoHost,
    #[error("timed out after {} resolving {name}", humantime::format_duration(*.waited))]
    ResolveTimeout { name: String, waited: Duration },
    #[error("cannot resolve {name}: {error}")]
    Resolve { name: String, error: std::io::Error },
    #[error("{0} resolved to no address")]
    NoAddress(Host<String>),
    /// Every address refused or failed, each with its error.
    #[error("{}", join(.0))]
    Refused(Vec<ConnectFailure>),
    /// The time ran out with addresses still connecting (`waiting`); those
    /// that failed before are listed after them.
    #[error("timed out after {} connecting to {}{}", humantime::format_duration(*.waited),
        addresses(.waiting), after_each(.failures))]
    ConnectTimeout {
        waited: Duration,
        waiting: Vec<SocketAddr>,
        failures: Vec<ConnectFailure>,
    },
}

/// One address that did not accept the connection.
#[derive(Debug, thiserror::Error)]
#[error("connect to {addr}: {error}")]
pub struct ConnectFailure {
    pub addr: SocketAddr,
    pub error: std::io::Error,
}

fn addresses(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `; <failure>` for each failure.
fn after_each(failures: &[ConnectFailure]) -> String {
    failures.iter().map(|f| format!("; {f}")).collect()
}

fn join(failures: &[ConnectFailure]) -> String {
    failures
        .iter()
        .map(|f| f.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Resolves the URL's host and connects to its port, all within `timeout`.
/// A host with several addresses is reachable when any of them answers;
/// they are tried at once, so an unreachable IPv6 address does not delay
/// a working IPv4 one.
pub async fn probe(url: &str, timeout: Duration) -> Result<(), ProbeError> {
    let deadline = Instant::now() + timeout;
    let target = Target::parse(url)?;

    let addrs: Vec<SocketAddr> = match &target.host {
        Host::Ipv4(ip) => vec![SocketAddr::new((*ip).into(), target.port)],
        Host::Ipv6(ip) => vec![SocketAddr::new((*ip).into(), target.port)],
        Host::Domain(name) => {
            let resolved = tokio::time::timeout_at(
                deadline,
                tokio::net::lookup_host((name.as_str(), target.port)),
            )
            .await
            .map_err(|_| ProbeError::ResolveTimeout {
                name: name.clone(),
                waited: timeout,
            })?
            .map_err(|error| ProbeError::Resolve {
                name: name.clone(),
                error,
            })?;
            let mut unique = BTreeSet::new();
            resolved.filter(|a| unique.insert(*a)).collect()
        }
    };
    if addrs.is_empty() {
        return Err(ProbeError::NoAddress(target.host));
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
            Ok(Some((addr, Err(error)))) => {
                pending.remove(&addr);
                failures.push(ConnectFailure { addr, error });
            }
            Ok(None) => return Err(ProbeError::Refused(failures)),
            Err(_) => {
                return Err(ProbeError::ConnectTimeout {
                    waited: timeout,
                    waiting: pending.into_iter().collect(),
                    failures,
                })
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
            assert!(
                matches!(err, ProbeError::Invalid(_) | ProbeError::NoHost),
                "{bad}: {err:?}"
            );
            assert!(err.to_string().starts_with("invalid URL"), "{bad}: {err}");
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
