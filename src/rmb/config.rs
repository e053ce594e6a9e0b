//! `[rmb]`: how this host reaches the grid's relay and chain, and which
//! identity it uses there. One identity serves and calls.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::identity::KeyType;
use crate::grid::Network;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RmbConfig {
    /// Relay URLs (`wss://host` or bare hostnames), tried in order;
    /// default: the network's relay.
    pub relays: Option<Vec<String>>,
    /// Chain RPC URLs (`wss://...`), tried in order; default: the
    /// network's tfchain.
    pub chain_urls: Option<Vec<String>>,
    /// The scheme the twin's account was created with.
    pub key_type: KeyType,
    /// A file holding the mnemonic or hex seed (else `ZOS_PERF_MNEMONIC`,
    /// else a prompt).
    pub mnemonic_file: Option<PathBuf>,
    /// How long a call waits for its reply.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// How long one chain call may take on one chain URL.
    #[serde(with = "humantime_serde")]
    pub chain_timeout: Duration,
    /// Chain lookups (twins, nodes) are trusted this long.
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// Nodes asked at the same time by `fleet`.
    pub concurrency: usize,
}

impl Default for RmbConfig {
    fn default() -> Self {
        Self {
            relays: None,
            chain_urls: None,
            // Accounts made by the grid's dashboard and SDKs are sr25519.
            key_type: KeyType::Sr25519,
            mnemonic_file: None,
            timeout: Duration::from_secs(30),
            chain_timeout: Duration::from_secs(10),
            cache_ttl: Duration::from_secs(5 * 60),
            // As many callers as the grid-proxy indexer runs over the grid.
            concurrency: 100,
        }
    }
}

impl RmbConfig {
    /// The relays to use on `network`.
    pub fn relays(&self, network: Network) -> Vec<String> {
        self.relays
            .clone()
            .unwrap_or_else(|| vec![network.relay_url().to_string()])
    }

    /// The chain URLs to use on `network`.
    pub fn chain_urls(&self, network: Network) -> Vec<String> {
        self.chain_urls
            .clone()
            .unwrap_or_else(|| vec![network.substrate_url().to_string()])
    }

    /// Checks the values types cannot; errors name the field.
    pub fn validate(&self) -> Result<(), RmbConfigError> {
        for (field, list) in [
            ("rmb.relays", &self.relays),
            ("rmb.chain_urls", &self.chain_urls),
        ] {
            let Some(list) = list else { continue };
            if list.is_empty() {
                return Err(RmbConfigError::EmptyList(field));
            }
            for (index, u) in list.iter().enumerate() {
                let full = super::relay_link::relay_url(u);
                let text = || u.clone();
                match url::Url::parse(&full) {
                    Ok(parsed) if matches!(parsed.scheme(), "ws" | "wss") => {}
                    Ok(_) => {
                        return Err(RmbConfigError::NotWebSocket {
                            field,
                            index,
                            url: text(),
                        })
                    }
                    Err(reason) => {
                        return Err(RmbConfigError::NotAUrl {
                            field,
                            index,
                            url: text(),
                            reason,
                        })
                    }
                }
            }
        }
        if self.timeout.is_zero() {
            return Err(RmbConfigError::Zero("rmb.timeout"));
        }
        if self.chain_timeout.is_zero() {
            return Err(RmbConfigError::Zero("rmb.chain_timeout"));
        }
        if !(1..=256).contains(&self.concurrency) {
            return Err(RmbConfigError::Concurrency(self.concurrency));
        }
        Ok(())
    }
}

/// A value of `[rmb]` that types alone cannot refuse; the text starts with
/// the field, as every configuration error does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RmbConfigError {
    #[error("{0}: empty list (leave it out for the network's default)")]
    EmptyList(&'static str),
    #[error("{field}[{index}]: {url:?} must be a ws:// or wss:// URL")]
    NotWebSocket {
        field: &'static str,
        index: usize,
        url: String,
    },
    #[error("{field}[{index}]: {url:?} is not a URL: {reason}")]
    NotAUrl {
        field: &'static str,
        index: usize,
        url: String,
        reason: url::ParseError,
    },
    /// A duration that must be above zero.
    #[error("{0}: must be above zero")]
    Zero(&'static str),
    #[error("rmb.concurrency: {0} is not within 1..=256")]
    Concurrency(usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_network_and_errors_name_the_field() {
        let c = RmbConfig::default();
        assert_eq!(c.relays(Network::Test), vec!["wss://relay.test.grid.tf"]);
        assert_eq!(c.chain_urls(Network::Main), vec!["wss://tfchain.grid.tf/"]);
        assert!(c.validate().is_ok());
        let bad: RmbConfig = toml::from_str("chain_urls = [\"https://x\"]").unwrap();
        let e = bad.validate().unwrap_err();
        assert!(
            matches!(
                e,
                RmbConfigError::NotWebSocket {
                    field: "rmb.chain_urls",
                    index: 0,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().starts_with("rmb.chain_urls[0]"), "{e}");
        let bare: RmbConfig =
            toml::from_str("relays = [\"relay.grid.tf\"]\nkey_type = \"ed25519\"").unwrap();
        assert!(bare.validate().is_ok());
        assert_eq!(bare.key_type, KeyType::Ed25519);
        assert!(toml::from_str::<RmbConfig>("relay = []").is_err());
    }
}
