//! `[healthcheck]`: the healthcheck task's section of the configuration.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;

use crate::grid::Network;

/// `[healthcheck]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthcheckConfig {
    pub cache_dir: PathBuf,
    pub flags_dir: PathBuf,
    /// Timeout of each TCP connection of the network check.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// First wait before retrying a failing check; doubles each time.
    #[serde(with = "humantime_serde")]
    pub backoff_initial: Duration,
    /// Give up retrying after this much time in total.
    #[serde(with = "humantime_serde")]
    pub backoff_total: Duration,
    /// Replaces the network's service list.
    pub services: Option<Vec<String>>,
}

impl Default for HealthcheckConfig {
    fn default() -> Self {
        Self {
            cache_dir: PathBuf::from("/var/cache"),
            flags_dir: PathBuf::from("/tmp/flags"),
            connect_timeout: Duration::from_secs(5),
            backoff_initial: Duration::from_secs(3 * 60),
            backoff_total: Duration::from_secs(10 * 60),
            services: None,
        }
    }
}

impl HealthcheckConfig {
    /// Checks what types alone cannot; errors name the field.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.connect_timeout.is_zero() {
            bail!("healthcheck.connect_timeout: must be more than zero");
        }
        if self.backoff_initial.is_zero() && !self.backoff_total.is_zero() {
            bail!("healthcheck.backoff_initial: must be more than zero");
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
