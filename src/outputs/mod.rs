//! What the daemon shows besides the bus: Prometheus metrics, a textfile
//! for node_exporter, and a dashboard page, all read from the store.
//!
//! - [`metrics`]: the metric families, rendered at scrape time.
//! - [`http`]: the small HTTP server of `[metrics] listen` (`/metrics`, `/`).
//! - [`textfile`]: the `.prom` file for node_exporter's textfile collector.
//! - [`dashboard`]: the HTML page with its SVG trend charts.
//! - [`process`]: the `process_*` figures from `/proc`.
//! - [`terminal`]: the `zos-perf history` table and sparkline.

pub(crate) mod dashboard;
pub(crate) mod http;
pub mod metrics;
pub mod process;
pub mod terminal;
pub(crate) mod textfile;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// `[metrics]`.
///
/// `listen` is empty (off) by default: the daemon runs as root on every
/// node and its results and bus must never fail to start because another
/// program holds a port, and a zos node has no local scraper that would
/// read it. A farmer who wants it names the address (loopback, or the
/// node's address for a remote Prometheus); then a port that is taken is a
/// start-up error that names it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// `host:port` of the metrics and dashboard listener; empty = off.
    pub listen: String,
    /// Directory of node_exporter's textfile collector; unset = off. Must
    /// be owned by this user and writable by no one else.
    pub textfile_dir: Option<PathBuf>,
    /// How often the textfile is rewritten.
    #[serde(with = "humantime_serde")]
    pub textfile_interval: Duration,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: String::new(),
            textfile_dir: None,
            textfile_interval: Duration::from_secs(30),
        }
    }
}

impl MetricsConfig {
    /// The listen address, `None` when off.
    pub(crate) fn listen_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        let text = self.listen.trim();
        if text.is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).map_err(|_| {
            anyhow::anyhow!(
                "metrics.listen: {text:?} is not an address and port (e.g. \"127.0.0.1:9108\" or \"[::1]:9108\")"
            )
        })
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        self.listen_addr()?;
        if let Some(dir) = &self.textfile_dir {
            if !dir.is_absolute() {
                anyhow::bail!(
                    "metrics.textfile_dir: {} is not an absolute path",
                    dir.display()
                );
            }
        }
        let i = self.textfile_interval;
        if i < Duration::from_secs(1) || i > Duration::from_secs(3600) {
            anyhow::bail!("metrics.textfile_interval: must be from 1s to 1h");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_is_off_when_empty_and_named_when_wrong() {
        let mut c = MetricsConfig::default();
        assert_eq!(c.listen_addr().expect("empty"), None);
        c.listen = "[::1]:9108".into();
        assert!(c.listen_addr().expect("v6").is_some());
        c.listen = "localhost".into();
        let e = c.validate().expect_err("no port");
        assert!(e.to_string().contains("metrics.listen"), "{e}");
        let c = MetricsConfig {
            textfile_dir: Some("relative".into()),
            ..Default::default()
        };
        assert!(c
            .validate()
            .expect_err("relative")
            .to_string()
            .contains("textfile_dir"));
    }
}
