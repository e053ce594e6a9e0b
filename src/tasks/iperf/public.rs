//! The `public-servers` mode (zos since 2026): one public iperf3 server,
//! TCP then UDP, the client sending.
//!
//! Each run is `iperf3 --client <address> --port <port> --time <duration>
//! --json`, UDP adding `--udp --bandwidth 10M`; `duration` is
//! `[iperf] duration`, 10 s when unset (what zos passes). The address is the
//! one that accepted the connection when the server was picked (see
//! `servers`), so the figures and `server_ip` belong to
//! the same machine even when the name resolves to several.
//!
//! Figures: `upload_speed` = `end.sum_sent`, `download_speed` =
//! `end.sum_received` (bits/s), for UDP as well; `cpu_report` =
//! `end.cpu_utilization_percent`.
//!
//! Retry (zos 2026's policy): a run whose JSON report carries an `error` is
//! retried after a randomised exponential backoff (10 s, ×1.5, ±50 %, at
//! most 90 s apart, at most 3 retries, none starting after 7 min). A run
//! that produced no report (iperf3 missing, killed at `run_timeout`, not
//! JSON) is not retried.
//!
//! Deviation from zos, on purpose: iperf3 `--json` exits 1 on most
//! failures (a busy server included), and zos then stores zero speeds with
//! an empty `error` and never retries. Here iperf3's own error text is kept
//! in `error`, and the retry applies whatever the exit status, so a busy
//! server is retried as zos's policy intends.

use std::net::SocketAddr;
use std::time::Duration;

use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::client::{run_once, Cancelled};
use super::report::{CpuReport, Measure, Protocol, Reading};
use super::servers::{self, Picked};
use super::IperfConfig;
use crate::util::backoff::Backoff;

/// The description stored with `public-servers` results (zos 2026's).
pub(crate) const DESCRIPTION: &str =
    "Test network performance against public iperf3 servers with both UDP and TCP";

/// iperf3's `--time` when `[iperf] duration` is unset: what zos passes.
pub(crate) const DEFAULT_TIME: Duration = Duration::from_secs(10);

/// One element of the `public-servers` result; the field names are zos
/// 2026's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublicEntry {
    /// Bits per second.
    pub upload_speed: f64,
    /// Bits per second.
    pub download_speed: f64,
    /// The server as the list names it.
    pub server_host: String,
    /// The address tested (`server_host` resolved).
    pub server_ip: String,
    pub server_port: u16,
    /// `tcp` or `udp`.
    pub test_type: String,
    /// Empty when the run succeeded.
    pub error: String,
    pub cpu_report: CpuReport,
}

/// The iperf3 arguments of one run against `addr`.
pub fn arguments(config: &IperfConfig, addr: SocketAddr, protocol: Protocol) -> Vec<String> {
    let d = config.duration.unwrap_or(DEFAULT_TIME);
    // iperf3 takes whole seconds; round up so a short setting still runs.
    let secs = (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1);
    let mut args: Vec<String> = vec![
        "--client".into(),
        addr.ip().to_string(),
        "--port".into(),
        addr.port().to_string(),
        "--time".into(),
        secs.to_string(),
        "--json".into(),
    ];
    if protocol == Protocol::Udp {
        args.extend(["--udp".into(), "--bandwidth".into(), "10M".into()]);
    }
    args
}

/// Fetches the list, picks a server, runs TCP then UDP against it. Fails
/// (keeping the previous result) when no server can be had.
pub async fn run(
    config: &IperfConfig,
    cancel: &CancellationToken,
) -> anyhow::Result<Vec<PublicEntry>> {
    let picked = tokio::select! {
        p = choose(config) => p?,
        _ = cancel.cancelled() => anyhow::bail!("iperf: cancelled while picking a server"),
    };
    tracing::info!(server = %servers::endpoint(&picked.server),
        address = %picked.addr, "server picked");
    let mut entries = Vec::with_capacity(2);
    let mut settle = false;
    for protocol in [Protocol::Tcp, Protocol::Udp] {
        if settle {
            tokio::select! {
                _ = tokio::time::sleep(super::SETTLE) => {}
                _ = cancel.cancelled() => anyhow::bail!("iperf: cancelled"),
            }
        }
        let m = measure(config, picked.addr, protocol, cancel)
            .await
            .map_err(|Cancelled| {
                anyhow::anyhow!("iperf: cancelled while testing {}", picked.addr)
            })?;
        if !m.error.is_empty() {
            tracing::warn!(address = %picked.addr,
                protocol = protocol.as_str(), error = %m.error, "run failed");
        }
        settle = m.error.is_empty();
        entries.push(entry(m, &picked, protocol));
    }
    Ok(entries)
}

/// The list fetched, shuffled, and the first reachable server.
pub(crate) async fn choose(config: &IperfConfig) -> anyhow::Result<Picked> {
    let mut list = servers::fetch_list(&config.server_list_url, config.server_list_timeout)
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e:#}", servers::NO_SERVER_PREFIX))?;
    servers::shuffle(&mut list);
    servers::pick(&list, config.server_connect_timeout, config.server_tries).await
}

/// The entry of one run.
pub fn entry(m: Measure, picked: &Picked, protocol: Protocol) -> PublicEntry {
    PublicEntry {
        upload_speed: m.upload,
        download_speed: m.download,
        server_host: picked.server.host.clone(),
        server_ip: picked.addr.ip().to_string(),
        server_port: picked.server.port,
        test_type: protocol.as_str().to_string(),
        error: m.error,
        cpu_report: m.cpu,
    }
}

/// One run with zos 2026's retry (see the module documentation).
pub async fn measure(
    config: &IperfConfig,
    addr: SocketAddr,
    protocol: Protocol,
    cancel: &CancellationToken,
) -> Result<Measure, Cancelled> {
    let args = arguments(config, addr, protocol);
    let started = Instant::now();
    let mut backoff = Backoff::new(config.retry_initial, config.retry_max).with_factor(1.5);
    let mut retries = 0;
    loop {
        let attempt = run_once(config, &args, Reading::Sums(protocol), cancel).await?;
        let retryable = attempt.reported && !attempt.measure.error.is_empty();
        if !retryable || retries >= config.retries {
            return Ok(attempt.measure);
        }
        let wait = randomized(backoff.advance(), &mut rand::rng());
        if started.elapsed() + wait > config.retry_total {
            return Ok(attempt.measure);
        }
        retries += 1;
        tracing::info!(%addr, protocol = protocol.as_str(), retry = retries,
            wait = %humantime::format_duration(wait), error = %attempt.measure.error, "retrying");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = cancel.cancelled() => return Err(Cancelled),
        }
    }
}

/// `interval` ±50 %, uniformly (the usual exponential backoff jitter).
pub(crate) fn randomized(interval: Duration, rng: &mut impl Rng) -> Duration {
    interval.mul_f64(rng.random_range(0.5..=1.5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_zos_2026_ones() {
        let mut c = IperfConfig::default();
        let v4: SocketAddr = "198.51.100.2:5201".parse().expect("addr");
        assert_eq!(
            arguments(&c, v4, Protocol::Tcp).join(" "),
            "--client 198.51.100.2 --port 5201 --time 10 --json"
        );
        c.duration = Some(Duration::from_millis(2500));
        let v6: SocketAddr = "[2001:db8::2]:9201".parse().expect("addr");
        assert_eq!(
            arguments(&c, v6, Protocol::Udp).join(" "),
            "--client 2001:db8::2 --port 9201 --time 3 --json --udp --bandwidth 10M"
        );
    }

    #[test]
    fn backoff_jitter_stays_within_half_either_way() {
        let mut rng = rand::rng();
        for _ in 0..1000 {
            let d = randomized(Duration::from_secs(10), &mut rng);
            assert!(
                d >= Duration::from_secs(5) && d <= Duration::from_secs(15),
                "{d:?}"
            );
        }
    }

    #[test]
    fn defaults_are_zos_2026_ones() {
        let c = IperfConfig::default();
        assert_eq!(c.mode, crate::tasks::iperf::IperfMode::PublicServers);
        assert_eq!(
            c.server_list_url,
            crate::tasks::iperf::config::DEFAULT_LIST_URL
        );
        assert_eq!(c.run_timeout(), Duration::from_secs(90));
        assert_eq!(
            (c.retry_initial, c.retry_max, c.retry_total, c.retries),
            (
                Duration::from_secs(10),
                Duration::from_secs(90),
                Duration::from_secs(420),
                3
            )
        );
        assert_eq!(c.server_connect_timeout, Duration::from_secs(5));
    }
}
