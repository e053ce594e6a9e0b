//! `[public_ip]`: the public-ip-validation task's section of the configuration.

use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;

/// `[public_ip]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PublicIpConfig {
    /// The test network namespace.
    pub namespace: String,
    /// The macvlan link inside it.
    pub link: String,
    /// A service that answers an HTTP GET with the caller's address as text.
    pub lookup_url: String,
    #[serde(with = "humantime_serde")]
    pub lookup_timeout: Duration,
    /// When set and the namespace or macvlan is missing, create them with a
    /// macvlan over this interface. When unset, a missing one is an error.
    pub parent_interface: Option<String>,
    /// Echo requests sent to each lower-id node during the election.
    pub ping_count: u32,
}

impl Default for PublicIpConfig {
    fn default() -> Self {
        Self {
            namespace: "pubtestns".into(),
            link: "pub".into(),
            lookup_url: "https://api.ipify.org".into(),
            lookup_timeout: Duration::from_secs(30),
            parent_interface: None,
            ping_count: 3,
        }
    }
}

impl PublicIpConfig {
    /// Checks what types alone cannot; errors name the field.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.namespace.is_empty() {
            bail!("public_ip.namespace: must not be empty");
        }
        if self.link.is_empty() || self.link.len() > 15 {
            bail!("public_ip.link: must be an interface name of 1 to 15 characters");
        }
        if self.ping_count == 0 {
            bail!("public_ip.ping_count: must be at least 1");
        }
        Ok(())
    }
}
