//! `[healthcheck]`: the healthcheck task's section of the configuration.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;

use super::network;
use crate::grid::Network;
use crate::tasks::retry::RetryPolicy;

/// The services, in the order they are reported.
pub const SERVICES: [&str; 6] = ["substrate", "activation", "relay", "graphql", "hub", "kyc"];

/// Which network check the healthcheck does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetworkCheck {
    /// Any instance of each service (zos 2026).
    PerService,
    /// Every URL on its own (the seed era's).
    PerUrl,
}

/// `[healthcheck.instances]`: replaces the built-in list of a service.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceInstances {
    pub substrate: Option<Vec<String>>,
    pub activation: Option<Vec<String>>,
    pub relay: Option<Vec<String>>,
    pub graphql: Option<Vec<String>>,
    pub hub: Option<Vec<String>>,
    pub kyc: Option<Vec<String>>,
}

impl ServiceInstances {
    pub(super) fn get(&self, service: &str) -> Option<&Vec<String>> {
        match service {
            "substrate" => self.substrate.as_ref(),
            "activation" => self.activation.as_ref(),
            "relay" => self.relay.as_ref(),
            "graphql" => self.graphql.as_ref(),
            "hub" => self.hub.as_ref(),
            "kyc" => self.kyc.as_ref(),
            _ => None,
        }
    }

    fn is_empty(&self) -> bool {
        SERVICES.iter().all(|s| self.get(s).is_none())
    }
}

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
        validate_network_check(self)?;
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
                network::Target::parse(url)
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

/// The check `hc` asks for: explicit, else `per-url` when a flat
/// `services` list is given (a configuration written for it), else
/// `per-service`.
pub(crate) fn network_check(hc: &HealthcheckConfig) -> NetworkCheck {
    hc.network_check.unwrap_or(if hc.services.is_some() {
        NetworkCheck::PerUrl
    } else {
        NetworkCheck::PerService
    })
}

/// Checks that the settings fit the chosen check.
fn validate_network_check(hc: &HealthcheckConfig) -> anyhow::Result<()> {
    match network_check(hc) {
        NetworkCheck::PerService if hc.services.is_some() => bail!(
            "healthcheck.services: a flat list is for network_check = \"per-url\"; \
             with \"per-service\" use [healthcheck.instances]"
        ),
        NetworkCheck::PerUrl if !hc.instances.is_empty() => bail!(
            "healthcheck.instances: only for network_check = \"per-service\"; \
             with \"per-url\" use healthcheck.services"
        ),
        _ => {
            for service in SERVICES {
                for (i, url) in hc.instances.get(service).into_iter().flatten().enumerate() {
                    network::Target::parse(url).map_err(|e| {
                        anyhow::anyhow!("healthcheck.instances.{service}[{i}]: {url:?}: {e}")
                    })?;
                }
            }
            Ok(())
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

    #[test]
    fn a_flat_list_means_per_url_and_mixing_is_refused() {
        let mut hc = HealthcheckConfig::default();
        assert_eq!(network_check(&hc), NetworkCheck::PerService);
        hc.services = Some(vec!["http://192.0.2.1/".into()]);
        assert_eq!(network_check(&hc), NetworkCheck::PerUrl);
        hc.network_check = Some(NetworkCheck::PerService);
        assert!(validate_network_check(&hc).is_err());
        hc.services = None;
        hc.network_check = Some(NetworkCheck::PerUrl);
        hc.instances.kyc = Some(vec![]);
        assert!(validate_network_check(&hc).is_err());
    }
}
