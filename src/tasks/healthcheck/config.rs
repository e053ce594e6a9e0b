//! `[healthcheck]`: the healthcheck task's section of the configuration.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;

use super::services::{NetworkCheck, ServiceInstances};
use crate::grid::Network;
use crate::tasks::retry::RetryPolicy;

/// `[healthcheck]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthcheckConfig {
    pub cache_dir: PathBuf,
    pub flags_dir: PathBuf,
    /// `per-service` (zos 2026) or `per-url` (the original). Unset:
    /// `per-url` when `services` is set, else `per-service`.
    pub network_check: Option<NetworkCheck>,
    /// Timeout of each TCP connection of the network check. Unset: 10 s
    /// per service, 5 s per URL (what each behaviour has always used).
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Option<Duration>,
    /// The interval of the first wait before a failing check is retried
    /// (randomised ±50 %, then ×1.5 each time; see `tasks::retry`).
    #[serde(with = "humantime_serde")]
    pub backoff_initial: Duration,
    /// The longest interval between retries (zos: 30 s, below the first).
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// No retry once this much time has passed since the first attempt.
    #[serde(with = "humantime_serde")]
    pub backoff_total: Duration,
    /// Replaces the network's service list (`per-url` check).
    pub services: Option<Vec<String>>,
    /// Replaces some services' instance lists (`per-service` check).
    pub instances: ServiceInstances,
}

impl Default for HealthcheckConfig {
    fn default() -> Self {
        Self {
            cache_dir: PathBuf::from("/var/cache"),
            flags_dir: PathBuf::from("/tmp/flags"),
            network_check: None,
            connect_timeout: None,
            backoff_initial: RetryPolicy::default().initial,
            backoff_max: RetryPolicy::default().max_interval,
            backoff_total: RetryPolicy::default().total,
            services: None,
            instances: ServiceInstances::default(),
        }
    }
}

impl HealthcheckConfig {
    /// Checks what types alone cannot; errors name the field.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.connect_timeout == Some(Duration::ZERO) {
            bail!("healthcheck.connect_timeout: must be more than zero");
        }
        super::services::validate(self)?;
        if self.backoff_initial.is_zero() && !self.backoff_total.is_zero() {
            bail!("healthcheck.backoff_initial: must be more than zero");
        }
        if self.backoff_max.is_zero() && !self.backoff_total.is_zero() {
            bail!("healthcheck.backoff_max: must be more than zero");
        }
        if let Some(services) = &self.services {
            if services.is_empty() {
                bail!("healthcheck.services: must name at least one URL");
            }
            for (i, url) in services.iter().enumerate() {
                super::network::Target::parse(url)
                    .map_err(|e| anyhow::anyhow!("healthcheck.services[{i}]: {url:?}: {e}"))?;
            }
        }
        Ok(())
    }

    /// The services probed: the configured list, else the network's.
    pub fn services_of(&self, network: Network) -> Vec<String> {
        match &self.services {
            Some(s) => s.clone(),
            None => network.services(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<HealthcheckConfig> {
        let c: HealthcheckConfig = toml::from_str(text)?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn configured_services_must_be_urls_with_a_host() {
        let err = parse("services = [\"https://ok.example/\", \"relay.grid.tf\"]\n")
            .expect_err("a bare host name is not a URL");
        let msg = format!("{err:#}");
        assert!(
            msg.starts_with("healthcheck.services[1]: \"relay.grid.tf\": invalid URL"),
            "{msg}"
        );
        let err = parse("services = []\n").expect_err("empty list");
        assert!(
            format!("{err:#}").starts_with("healthcheck.services"),
            "{err:#}"
        );
    }
}
