//! `[public_ip]`: the public-ip-validation task's section of the configuration.

use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;

use super::stun;

/// zos's servers, in zos's order.
pub(crate) const DEFAULT_SERVERS: [&str; 5] = [
    "stun1.l.google.com:19302",
    "stun2.l.google.com:19302",
    "stun3.l.google.com:19302",
    "stun4.l.google.com:19302",
    "stun.l.google.com:19302",
];

/// How the public-ip task learns the node's public address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LookupKind {
    /// STUN Binding over UDP (zos since 2025).
    Stun,
    /// An HTTP GET of `lookup_url` (the seed era's).
    Http,
}

/// `[public_ip]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PublicIpConfig {
    /// The test network namespace.
    pub namespace: String,
    /// The macvlan link inside it.
    pub link: String,
    /// How the node's public address is found: `stun` (zos 2026, the
    /// default) or `http` (`lookup_url`, the original).
    pub lookup: LookupKind,
    /// `stun`: servers (`host:port`) asked in order until one answers.
    pub stun_servers: Vec<String>,
    /// `stun`: how long one server is given, retransmissions included.
    #[serde(with = "humantime_serde")]
    pub stun_timeout: Duration,
    /// `http`: a service that answers an HTTP GET with the caller's address as text.
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
            lookup: LookupKind::Stun,
            stun_servers: DEFAULT_SERVERS.iter().map(|s| s.to_string()).collect(),
            stun_timeout: Duration::from_secs(10),
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
        validate_stun(self)?;
        if self.ping_count == 0 {
            bail!("public_ip.ping_count: must be at least 1");
        }
        Ok(())
    }
}

/// Checks the STUN settings.
fn validate_stun(c: &PublicIpConfig) -> anyhow::Result<()> {
    if c.lookup == LookupKind::Stun && c.stun_servers.is_empty() {
        bail!("public_ip.stun_servers: must name at least one server when lookup = \"stun\"");
    }
    for (i, s) in c.stun_servers.iter().enumerate() {
        stun::split_host_port(s)
            .map_err(|e| anyhow::anyhow!("public_ip.stun_servers[{i}]: {s:?}: {e}"))?;
    }
    if c.stun_timeout.is_zero() {
        bail!("public_ip.stun_timeout: must be more than zero");
    }
    Ok(())
}
