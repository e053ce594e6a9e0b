//! The "what is my IP" question, asked through the address under test.
//!
//! Runs on the namespace thread (see `netns`), so the HTTP client, its
//! sockets and its DNS look-ups all live inside the test namespace, where the
//! only way out is the farm IP and its gateway being tested.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::Context;

use crate::util::error::with_causes;

/// What the lookup service said, sorted by whose fault a failure is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The service answered with this address.
    Answer(IpAddr),
    /// The service could not be reached through the address under test (no
    /// route, gateway not answering, connection refused or timed out, name
    /// not resolved): the road out through this IP and gateway is broken.
    Unreachable(String),
    /// The service was reached but gave no usable answer (bad status, body
    /// that is not an address, answer too slow): it says nothing about the IP.
    Failed(String),
}

/// Asks `url` for the caller's address, going out from `source`.
///
/// `timeout` bounds the connection and each wait for the answer; the whole
/// exchange is bounded by twice that. A new client per call, with no pooled
/// connections, so an answer is never given over a connection opened from a
/// previously tested address.
pub async fn public_ip(url: &str, source: IpAddr, timeout: Duration) -> anyhow::Result<Lookup> {
    let client = reqwest::Client::builder()
        .local_address(source)
        .connect_timeout(timeout)
        .read_timeout(timeout)
        .pool_max_idle_per_host(0)
        .no_proxy()
        .user_agent(concat!("zos-perf/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client of the IP lookup")?;
    let ask = async {
        let response = match client.get(url).send().await {
            Ok(r) => r,
            Err(e) if e.is_connect() => return Lookup::Unreachable(with_causes(&e)),
            Err(e) => return Lookup::Failed(with_causes(&e)),
        };
        let status = response.status();
        if !status.is_success() {
            return Lookup::Failed(format!("answered with HTTP status {status}"));
        }
        match crate::util::http::read_capped(response, crate::util::http::LOOKUP_MAX_BODY).await {
            Ok(body) => parse_answer(&String::from_utf8_lossy(&body)),
            Err(e) => Lookup::Failed(e.to_string()),
        }
    };
    Ok(tokio::time::timeout(timeout * 2, ask)
        .await
        .unwrap_or_else(|_| Lookup::Failed(format!("no answer within {:?}", timeout * 2))))
}

/// The answer must be one address, as text (surrounding whitespace allowed).
pub(crate) fn parse_answer(body: &str) -> Lookup {
    let text = body.trim();
    match text.parse::<IpAddr>() {
        Ok(ip) => Lookup::Answer(ip.to_canonical()),
        Err(_) => Lookup::Failed(format!(
            "answer {:?} is not an IP address",
            crate::util::text::clip(text, 60)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_with_a_newline_is_an_answer() {
        assert_eq!(
            parse_answer("203.0.113.7\n"),
            Lookup::Answer("203.0.113.7".parse().expect("ip"))
        );
        assert_eq!(
            parse_answer(" 2001:db8::5 "),
            Lookup::Answer("2001:db8::5".parse().expect("ip"))
        );
    }

    #[test]
    fn a_v4_mapped_answer_compares_as_v4() {
        assert_eq!(
            parse_answer("::ffff:203.0.113.7"),
            Lookup::Answer("203.0.113.7".parse().expect("ip"))
        );
    }

    #[test]
    fn anything_else_is_a_failed_lookup() {
        for body in [
            "",
            "<html>hello</html>",
            "203.0.113.7/24",
            "203.0.113.7 203.0.113.8",
        ] {
            assert!(matches!(parse_answer(body), Lookup::Failed(_)), "{body:?}");
        }
    }
}
