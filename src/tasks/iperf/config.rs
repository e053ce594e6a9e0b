//! `[iperf]`: the iperf task's section of the configuration.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;

/// `[iperf]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IperfConfig {
    /// Port the grid's iperf3 servers listen on.
    pub port: u16,
    /// Length of each iperf3 run (`--time`); none = iperf3's own default.
    #[serde(with = "humantime_serde")]
    pub duration: Option<Duration>,
    /// Kill an iperf3 run that takes longer than this.
    #[serde(with = "humantime_serde")]
    pub run_timeout: Duration,
    /// Nodes of other farms tested besides the free farm's.
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
            port: 300,
            duration: None,
            run_timeout: Duration::from_secs(60),
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
    /// Checks what types alone cannot; errors name the field.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.port == 0 {
            bail!("iperf.port: must be a port number from 1 to 65535");
        }
        if self.run_timeout.is_zero() {
            bail!("iperf.run_timeout: must be more than zero");
        }
        if let Some(d) = self.duration {
            // iperf3 reads `--time 0` as "run forever".
            if d.is_zero() {
                bail!("iperf.duration: must be more than zero (leave it unset for iperf3's own)");
            }
            if self.run_timeout <= d {
                bail!("iperf.run_timeout: must be longer than iperf.duration");
            }
        }
        Ok(())
    }
}
