//! `[iperf]`: the iperf task's section of the configuration.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;

/// The list zos fetches (2026).
pub(crate) const DEFAULT_LIST_URL: &str =
    "https://export.iperf3serverlist.net/listed_iperf3_servers.json";

/// Which servers the `iperf` task measures against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IperfMode {
    /// One public iperf3 server from a published list, TCP then UDP (zos
    /// since 2026).
    PublicServers,
    /// The grid's own public nodes, TCP and UDP over IPv4 and IPv6 (the
    /// seed era's behaviour).
    GridNodes,
}

/// `[iperf]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IperfConfig {
    /// `public-servers` (zos 2026, the default) or `grid-nodes` (the original).
    pub mode: IperfMode,
    /// `public-servers`: the JSON list of public iperf3 servers.
    pub server_list_url: String,
    /// `public-servers`: bounds fetching the list.
    #[serde(with = "humantime_serde")]
    pub server_list_timeout: Duration,
    /// `public-servers`: TCP connect timeout when picking a server.
    #[serde(with = "humantime_serde")]
    pub server_connect_timeout: Duration,
    /// `public-servers`: servers tried at most before giving up.
    pub server_tries: u32,
    /// `public-servers`: retry of a run whose report carries an error
    /// (first wait, largest wait, time budget, retries).
    #[serde(with = "humantime_serde")]
    pub retry_initial: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_total: Duration,
    pub retries: u32,
    /// `grid-nodes`: port the grid's iperf3 servers listen on.
    pub port: u16,
    /// Length of each iperf3 run (`--time`); none = iperf3's own default.
    #[serde(with = "humantime_serde")]
    pub duration: Option<Duration>,
    /// Kill an iperf3 run that takes longer than this. Unset: 90 s with
    /// `public-servers` (zos 2026), 60 s with `grid-nodes`.
    #[serde(with = "humantime_serde")]
    pub run_timeout: Option<Duration>,
    /// `grid-nodes`: nodes of other farms tested besides the free farm's.
    pub other_farm_nodes: u32,
    /// The free farm whose public nodes are all tested.
    pub free_farm_id: u32,
    /// Backoff when a server answers that it is busy.
    #[serde(with = "humantime_serde")]
    pub busy_backoff_initial: Duration,
    #[serde(with = "humantime_serde")]
    pub busy_backoff_max: Duration,
    pub busy_retries: u32,
    /// The iperf3 program.
    pub iperf3: PathBuf,
}

impl Default for IperfConfig {
    fn default() -> Self {
        Self {
            mode: IperfMode::PublicServers,
            server_list_url: DEFAULT_LIST_URL.into(),
            server_list_timeout: Duration::from_secs(30),
            server_connect_timeout: Duration::from_secs(5),
            server_tries: 20,
            retry_initial: Duration::from_secs(10),
            retry_max: Duration::from_secs(90),
            retry_total: Duration::from_secs(7 * 60),
            retries: 3,
            port: 300,
            duration: None,
            run_timeout: None,
            other_farm_nodes: 12,
            free_farm_id: 1,
            busy_backoff_initial: Duration::from_secs(5 * 60),
            busy_backoff_max: Duration::from_secs(20 * 60),
            busy_retries: 3,
            iperf3: PathBuf::from("iperf3"),
        }
    }
}

impl IperfConfig {
    /// The time limit of one iperf3 run in the configured mode.
    pub fn run_timeout(&self) -> Duration {
        self.run_timeout.unwrap_or(match self.mode {
            IperfMode::PublicServers => Duration::from_secs(90),
            IperfMode::GridNodes => Duration::from_secs(60),
        })
    }

    /// Checks what types alone cannot; errors name the field.
    pub fn validate(&self) -> anyhow::Result<()> {
        validate_public_servers(self)?;
        if self.port == 0 {
            bail!("iperf.port: must be a port number from 1 to 65535");
        }
        if self.run_timeout == Some(Duration::ZERO) {
            bail!("iperf.run_timeout: must be more than zero");
        }
        if let Some(d) = self.duration {
            // iperf3 reads `--time 0` as "run forever".
            if d.is_zero() {
                bail!("iperf.duration: must be more than zero (leave it unset for iperf3's own)");
            }
            if self.run_timeout() <= d {
                bail!("iperf.run_timeout: must be longer than iperf.duration");
            }
        }
        Ok(())
    }
}

/// Checks the `public-servers` settings.
fn validate_public_servers(c: &IperfConfig) -> anyhow::Result<()> {
    let url = url::Url::parse(&c.server_list_url)
        .map_err(|e| anyhow::anyhow!("iperf.server_list_url: {:?}: {e}", c.server_list_url))?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!(
            "iperf.server_list_url: {:?}: must be an http or https URL",
            c.server_list_url
        );
    }
    for (key, d) in [
        ("server_list_timeout", c.server_list_timeout),
        ("server_connect_timeout", c.server_connect_timeout),
        ("retry_initial", c.retry_initial),
    ] {
        if d.is_zero() {
            bail!("iperf.{key}: must be more than zero");
        }
    }
    if c.server_tries == 0 {
        bail!("iperf.server_tries: must be at least 1");
    }
    if c.retry_max < c.retry_initial {
        bail!("iperf.retry_max: must not be shorter than iperf.retry_initial");
    }
    Ok(())
}
