//! What `call`, `fleet` and `identity` share: the RMB flags, how they are
//! merged with the configuration's `[rmb]` section, and connecting.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use zos_perf::config::Config;
use zos_perf::grid::chain::{ChainClient, ChainOptions};
use zos_perf::rmb::relay_link::RelayOptions;
use zos_perf::rmb::twin::TwinDb;
use zos_perf::rmb::{secret, Identity, KeyType, RmbClient, RmbError};

/// The RMB flags (each wins over its `[rmb]` setting).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RmbArgs {
    /// Relay URL, repeatable (default: [rmb] relays, else the network's relay).
    #[arg(long = "relay", value_name = "URL")]
    pub relays: Vec<String>,
    /// Chain RPC URL, repeatable for failover (default: [rmb] chain_urls, else the network's tfchain).
    #[arg(long = "chain", value_name = "URL")]
    pub chains: Vec<String>,
    /// The scheme the twin's account was created with: ed25519 or sr25519 (default: [rmb] key_type, else sr25519).
    #[arg(long, value_name = "TYPE")]
    pub key_type: Option<KeyType>,
    /// File holding the mnemonic or hex seed (else [rmb] mnemonic_file, else ZOS_PERF_MNEMONIC, else a prompt).
    #[arg(long, value_name = "PATH")]
    pub mnemonic_file: Option<PathBuf>,
}

/// The flags merged with the configuration.
pub struct Settings {
    pub relays: Vec<String>,
    pub chains: Vec<String>,
    pub key_type: KeyType,
    pub mnemonic_file: Option<PathBuf>,
    pub timeout: Duration,
    pub cache_ttl: Duration,
    pub chain_timeout: Duration,
    pub concurrency: usize,
}

impl Settings {
    pub fn resolve(config: &Config, args: &RmbArgs) -> Settings {
        let rmb = &config.rmb;
        let or = |flags: &Vec<String>, conf: Vec<String>| {
            if flags.is_empty() {
                conf
            } else {
                flags.clone()
            }
        };
        Settings {
            relays: or(&args.relays, rmb.relays(config.network)),
            chains: or(&args.chains, rmb.chain_urls(config.network)),
            key_type: args.key_type.unwrap_or(rmb.key_type),
            mnemonic_file: args.mnemonic_file.clone().or(rmb.mnemonic_file.clone()),
            timeout: rmb.timeout,
            cache_ttl: rmb.cache_ttl,
            chain_timeout: rmb.chain_timeout,
            concurrency: rmb.concurrency,
        }
    }

    /// Our identity, from the configured secret.
    pub fn identity(&self) -> Result<Arc<Identity>, RmbError> {
        let secret = secret::load(self.mnemonic_file.as_deref())?;
        Identity::from_secret(&secret, self.key_type).map(Arc::new)
    }

    /// The chain's twin/node lookups.
    pub fn twins(&self) -> Result<Arc<TwinDb>, RmbError> {
        let options = ChainOptions {
            call_timeout: self.chain_timeout,
            ..ChainOptions::default()
        };
        let chain = ChainClient::new(self.chains.clone(), options)?;
        Ok(Arc::new(TwinDb::new(Arc::new(chain), self.cache_ttl)))
    }

    /// A client connected to the first relay that accepts us.
    pub async fn connect(&self) -> Result<RmbClient, RmbError> {
        let identity = self.identity()?;
        let twins = self.twins()?;
        RmbClient::connect(identity, twins, &self.relays, &RelayOptions::default()).await
    }
}
