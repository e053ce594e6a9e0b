//! `[bus]`: the settings of the bus handler.

use anyhow::bail;
use std::time::Duration;

use serde::Deserialize;

/// `[bus]`: the RMB local protocol handler.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusConfig {
    pub enabled: bool,
    /// Requests handled at the same time, at most (popped and not yet
    /// answered). Half of it is the largest batch: bigger batches cost fewer
    /// round trips (BENCHMARKS.md, section bus).
    pub max_in_flight: usize,
    /// `[bus.relay]`: serve over the grid's relay as well.
    pub relay: super::relay::RelayBusConfig,
    /// How far a sender's clock may be behind ours before its request counts
    /// as expired: grid calls carry deadlines of ~30 s, and a node whose
    /// clock runs ahead would otherwise drop them all.
    #[serde(with = "humantime_serde")]
    pub clock_skew: Duration,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_in_flight: 512,
            relay: Default::default(),
            clock_skew: Duration::from_secs(5 * 60),
        }
    }
}

impl BusConfig {
    /// Checks what types alone cannot; errors name the field.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.max_in_flight == 0 {
            bail!("bus.max_in_flight: must be at least 1");
        }
        Ok(())
    }
}
