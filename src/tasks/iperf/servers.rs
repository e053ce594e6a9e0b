//! The public iperf3 servers of the `public-servers` mode: the list, read
//! leniently, and the choice of one server that accepts a connection.
//!
//! The list is a JSON array of objects published by a third party; two keys
//! are read: `IP/HOST` (a name or an address) and `PORT` (a string, a number
//! or a range such as `"9201-9240"`, of which the first port is used). A bad
//! entry is logged and skipped on its own: one typo in someone else's list
//! must not stop every node's measurement (zos refuses the whole list).
//!
//! The list is shuffled, so that the grid's nodes spread over the servers,
//! then walked in order: the first server that accepts a TCP connection
//! within `server_connect_timeout` is the one tested. At most
//! `server_tries` servers are tried, so a list full of dead entries costs a
//! bounded time (20 × 5 s by default) instead of the whole list.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context};
use rand::seq::SliceRandom;
use serde_json::Value;
use tokio::net::TcpStream;

/// The most of the list read: it is some tens of kilobytes.
pub(crate) const LIST_MAX_BODY: usize = 4 * 1024 * 1024;

/// The prefix of every error of the server choice (zos's words).
pub(crate) const NO_SERVER_PREFIX: &str = "failed to fetch public iperf3 server";

/// The error when no listed server accepted a connection (zos's words).
pub const NO_SERVER: &str =
    "failed to fetch public iperf3 server: no reachable iperf3 servers found";

/// One usable entry of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// As written in the list, brackets of an IPv6 literal removed.
    pub host: String,
    pub port: u16,
}

/// The server picked: where it was reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picked {
    pub server: Server,
    /// The address that accepted the connection (the host resolved).
    pub addr: SocketAddr,
}

/// Reads the list. Fails only when the text is not a JSON array; entries
/// that cannot be used are logged and left out.
pub(crate) fn parse_list(body: &[u8]) -> anyhow::Result<Vec<Server>> {
    let v: Value = serde_json::from_slice(body).context("the server list is not JSON")?;
    let Value::Array(items) = v else {
        bail!("the server list is not a JSON array");
    };
    let mut servers = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match parse_entry(item) {
            Ok(s) => servers.push(s),
            Err(why) => {
                tracing::debug!(entry = i, %why, "skipping a server list entry")
            }
        }
    }
    Ok(servers)
}

/// Why an entry of the server list is skipped ([`parse_entry`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum EntryError {
    #[error("no IP/HOST string")]
    NoHost,
    #[error("unusable host {0:?}")]
    Host(String),
    #[error("unusable port {0:?}")]
    PortText(String),
    #[error("unusable port {0}")]
    PortNumber(serde_json::Number),
    /// `PORT` missing, or neither a string nor a number.
    #[error("no PORT: {0:?}")]
    NoPort(Option<Value>),
    #[error("port 0")]
    PortZero,
}

/// One entry: `{"IP/HOST": "...", "PORT": "5201" | 5201 | "9201-9240", ...}`.
pub(crate) fn parse_entry(item: &Value) -> Result<Server, EntryError> {
    let host = item
        .get("IP/HOST")
        .and_then(Value::as_str)
        .ok_or(EntryError::NoHost)?
        .trim();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || host.len() > 253 || host.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(EntryError::Host(host.to_string()));
    }
    let port = match item.get("PORT") {
        Some(Value::String(s)) => {
            let first = s.trim().split('-').next().unwrap_or_default().trim();
            first
                .parse::<u16>()
                .map_err(|_| EntryError::PortText(s.clone()))?
        }
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .ok_or_else(|| EntryError::PortNumber(n.clone()))?,
        other => return Err(EntryError::NoPort(other.cloned())),
    };
    if port == 0 {
        return Err(EntryError::PortZero);
    }
    Ok(Server {
        host: host.to_string(),
        port,
    })
}

/// GETs the list at `url`, within `timeout`.
pub(crate) async fn fetch_list(url: &str, timeout: Duration) -> anyhow::Result<Vec<Server>> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("zos-perf/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client of the server list")?;
    let response = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("fetching the iperf3 server list {url}"))?;
    let status = response.status();
    // Exactly 200, as zos: a 203 from a proxy or a 206 is not the list.
    if status != reqwest::StatusCode::OK {
        bail!(
            "fetching the iperf3 server list {url}: unexpected status code: {}",
            status.as_u16()
        );
    }
    let body = crate::util::http::read_capped(response, LIST_MAX_BODY)
        .await
        .map_err(|e| anyhow::anyhow!("fetching the iperf3 server list {url}: {e}"))?;
    parse_list(&body).with_context(|| format!("iperf3 server list {url}"))
}

/// Shuffles the list (every order equally likely).
pub fn shuffle(servers: &mut [Server]) {
    servers.shuffle(&mut rand::rng());
}

/// Walks `servers` in order and returns the first that accepts a TCP
/// connection within `timeout` (name resolution included), trying at most
/// `tries` of them.
pub async fn pick(servers: &[Server], timeout: Duration, tries: u32) -> anyhow::Result<Picked> {
    let mut failures = Vec::new();
    for server in servers.iter().take(tries as usize) {
        match tokio::time::timeout(timeout, connect(server)).await {
            Ok(Ok(addr)) => {
                return Ok(Picked {
                    server: server.clone(),
                    addr,
                })
            }
            Ok(Err(e)) => failures.push(e.to_string()),
            Err(_) => failures.push(format!(
                "{}: no answer within {}",
                endpoint(server),
                humantime::format_duration(timeout)
            )),
        }
        tracing::info!(server = %endpoint(server),
            reason = failures.last().map(String::as_str).unwrap_or_default(), "server not reachable");
    }
    let tried = failures.len();
    let mut msg = format!("{NO_SERVER} ({tried} tried of {} listed)", servers.len());
    if !failures.is_empty() {
        msg.push_str(": ");
        msg.push_str(&failures.join("; "));
    }
    bail!(msg)
}

/// `host:port`, an IPv6 literal in brackets.
pub fn endpoint(server: &Server) -> String {
    match server.host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]:{}", server.port),
        _ => format!("{}:{}", server.host, server.port),
    }
}

/// Resolves the host and connects; the first address that accepts wins.
async fn connect(server: &Server) -> std::io::Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = match server.host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, server.port)],
        Err(_) => tokio::net::lookup_host((server.host.as_str(), server.port))
            .await?
            .collect(),
    };
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "resolved to no address");
    for addr in addrs {
        match TcpStream::connect(addr).await {
            // Closed at once: iperf3 sees a connection that sends nothing
            // and drops it.
            Ok(_) => return Ok(addr),
            Err(e) => last = std::io::Error::new(e.kind(), format!("{addr}: {e}")),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn server(host: &str, port: u16) -> Server {
        Server {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn entries_with_ranges_numbers_names_and_v6_are_read() {
        let list = json!([
            {"IP/HOST": "iperf.example.net", "PORT": "5201", "SITE": "x"},
            {"IP/HOST": "198.51.100.7", "PORT": "9201-9240"},
            {"IP/HOST": "2001:db8::7", "PORT": 5202},
            {"IP/HOST": "[2001:db8::8]", "PORT": " 5203 "},
        ]);
        let got = parse_list(list.to_string().as_bytes()).expect("list");
        assert_eq!(
            got,
            [
                server("iperf.example.net", 5201),
                server("198.51.100.7", 9201),
                server("2001:db8::7", 5202),
                server("2001:db8::8", 5203),
            ]
        );
        assert_eq!(endpoint(&got[2]), "[2001:db8::7]:5202");
        assert_eq!(endpoint(&got[1]), "198.51.100.7:9201");
        assert_eq!(endpoint(&got[0]), "iperf.example.net:5201");
    }

    #[test]
    fn a_bad_entry_is_skipped_alone() {
        let list = json!([
            {"IP/HOST": "a.example", "PORT": "abc"},
            {"IP/HOST": "b.example", "PORT": "70000"},
            {"IP/HOST": "c.example", "PORT": ""},
            {"IP/HOST": "d.example", "PORT": "0"},
            {"IP/HOST": "", "PORT": "5201"},
            {"IP/HOST": "e example", "PORT": "5201"},
            {"IP/HOST": 7, "PORT": "5201"},
            {"PORT": "5201"},
            {"IP/HOST": "f.example"},
            {"IP/HOST": "g.example", "PORT": -1},
            {"IP/HOST": "h.example", "PORT": [5201]},
            "not an object",
            null,
            {"IP/HOST": "ok.example", "PORT": "5201-"},
        ]);
        let got = parse_list(list.to_string().as_bytes()).expect("list");
        assert_eq!(got, [server("ok.example", 5201)]);
    }

    #[test]
    fn a_list_that_is_not_an_array_fails_with_a_reason() {
        for (body, want) in [
            (&b"{\"IP/HOST\": \"x\"}"[..], "not a JSON array"),
            (b"<html>", "not JSON"),
            (b"", "not JSON"),
            (b"[{\"IP/HOST\": ", "not JSON"),
        ] {
            let err = parse_list(body).expect_err("bad list");
            assert!(format!("{err:#}").contains(want), "{err:#}");
        }
        assert_eq!(parse_list(b"[]").expect("empty"), []);
    }

    #[tokio::test]
    async fn pick_skips_refusing_servers_and_gives_up_after_the_tries() {
        let open = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let open_port = open.local_addr().expect("addr").port();
        let closed_port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let list = [
            server("127.0.0.1", closed_port),
            server("localhost", open_port),
        ];
        let p = pick(&list, Duration::from_secs(5), 5).await.expect("pick");
        assert_eq!(p.server, list[1]);
        assert!(p.addr.ip().is_loopback() && p.addr.port() == open_port);

        let err = pick(&list, Duration::from_secs(5), 1)
            .await
            .expect_err("one try only");
        let msg = format!("{err:#}");
        assert!(msg.starts_with(NO_SERVER), "{msg}");
        assert!(msg.contains("1 tried of 2 listed"), "{msg}");
        let err = pick(&[], Duration::from_secs(5), 5)
            .await
            .expect_err("empty");
        assert!(
            format!("{err:#}").contains("0 tried of 0 listed"),
            "{err:#}"
        );
    }

    #[test]
    fn a_bad_entry_says_what_is_wrong_with_it() {
        let why = |v: Value| parse_entry(&v).expect_err("a bad entry");
        assert_eq!(why(json!({"PORT": 5201})), EntryError::NoHost);
        assert_eq!(
            why(json!({"IP/HOST": "a b", "PORT": 5201})).to_string(),
            r#"unusable host "a b""#
        );
        assert_eq!(
            why(json!({"IP/HOST": "h", "PORT": "x-y"})).to_string(),
            r#"unusable port "x-y""#
        );
        assert_eq!(
            why(json!({"IP/HOST": "h", "PORT": 70000})).to_string(),
            "unusable port 70000"
        );
        assert_eq!(why(json!({"IP/HOST": "h"})).to_string(), "no PORT: None");
        assert_eq!(
            why(json!({"IP/HOST": "h", "PORT": 0})),
            EntryError::PortZero
        );
    }
}
