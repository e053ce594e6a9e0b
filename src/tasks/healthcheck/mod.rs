//! `healthcheck`: is this node in a usable state? The power daemon stops
//! reporting uptime while it is not.
//!
//! **Schedule:** `0 */15 * * * *` (every 15 minutes), no jitter, timeout
//! 15 min, not exclusive (it measures nothing another task could distort).
//!
//! **What it checks**, both at once:
//! - `cache`: creates, writes and removes the file `healthcheck` in the cache
//!   directory (default `/var/cache`). Failure: `failed to write to cache:
//!   <reason>` and the flag `readonly-cache`.
//! - `network`, as `[healthcheck] network_check` says (see [`services`]):
//!   - `per-service` (default, zos 2026): each grid service (substrate,
//!     activation, relay, graphql, hub, kyc) passes when one of its
//!     instances accepts a TCP connection (tried in order, 10 s each); one
//!     `all <service> instances are unreachable: ...` per failing service.
//!   - `per-url` (the original): a TCP connection to every grid service URL
//!     of the node's network (both GraphQL URLs, relay, substrate,
//!     activation, the flist hub) or to `healthcheck.services`, all in
//!     parallel with one timeout (5 s); one `<url> is not reachable:
//!     <reason>` per URL.
//!
//!   Name resolution counts against the timeout. Port: the URL's own, else
//!   443 for `https`/`wss`, else 80. Any failure sets the flag
//!   `not-reachable`.
//!
//! **Flags** are empty files in the flags directory (default `/tmp/flags`,
//! created when missing), set after every failing attempt and cleared after
//! a passing one, so the power daemon learns of a failure at once and of a
//! recovery as soon as it is seen. No other name is ever written there.
//!
//! **Retries:** each check retries on its own (see [`retry`]), with zos's
//! randomised cadence: a failing check is tried again after 3 min ± 50 %,
//! then every 30 s ± 50 %, until it passes or 10 min have gone by. So a passing check is not tried again, and its flag
//! is not held back by the other check's retries. The stored result holds
//! each check's last attempt. Shutdown (or the task timeout) interrupts the
//! waits at once; the run then fails and the previous result stays.
//!
//! **Result sample** (an empty list is a passing check):
//! ```json
//! {"cache": [],
//!  "network": ["wss://relay.grid.tf is not reachable: timed out after 5s connecting to 203.0.113.10:443"]}
//! ```
//!
//! **Needs:** write access to the cache and flags directories, outgoing TCP
//! to the grid services and a resolver for their names. A run takes the
//! slowest service's answer when all answer (well under a millisecond on
//! loopback), one connect timeout when some stay silent (see BENCHMARKS.md),
//! and about `backoff_total` plus one timeout when a check keeps failing.

mod cache;
mod config;
mod flags;
pub(crate) mod network;
pub mod services;
pub mod view;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::grid::GridContext;
use crate::tasks::retry::{self, Cancelled, Retried, RetryPolicy};
use crate::tasks::HEALTHCHECK;
use crate::tasks::{RunContext, RunFuture, Task, TaskDefaults};

pub use config::HealthcheckConfig;
pub use flags::{Flag, Flags};

/// The description stored with every result (exact, docs/tasks/healthcheck.md).
pub(crate) const DESCRIPTION: &str = "health check task runs multiple checks to ensure the node is in a usable state and set flags for the power daemon to stop reporting uptime if it is not usable";

/// What the healthcheck looks at and how hard it tries.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub cache_dir: PathBuf,
    pub flags: Flags,
    /// Per service: name resolution plus TCP connection.
    pub connect_timeout: Duration,
    pub backoff: RetryPolicy,
    /// What the network check probes, and how.
    pub network: NetworkTargets,
}

/// The network check's targets, by kind of check.
#[derive(Debug, Clone, PartialEq)]
pub enum NetworkTargets {
    /// Every URL on its own: one error per URL (the original check).
    PerUrl(Vec<String>),
    /// Any instance of each service: one error per service (zos 2026).
    PerService(Vec<services::ServiceGroup>),
}

impl Settings {
    /// The settings of a node in `grid` with the `[healthcheck]` section `hc`.
    pub fn new(hc: &HealthcheckConfig, grid: &GridContext) -> Settings {
        let (network, default_timeout) = match config::network_check(hc) {
            config::NetworkCheck::PerUrl => (
                NetworkTargets::PerUrl(hc.services_of(grid.network)),
                Duration::from_secs(5),
            ),
            config::NetworkCheck::PerService => (
                NetworkTargets::PerService(services::groups(grid.network, &hc.instances)),
                Duration::from_secs(10),
            ),
        };
        Settings {
            cache_dir: hc.cache_dir.clone(),
            flags: Flags::new(hc.flags_dir.clone()),
            connect_timeout: hc.connect_timeout.unwrap_or(default_timeout),
            backoff: RetryPolicy {
                initial: hc.backoff_initial,
                max_interval: hc.backoff_max,
                total: hc.backoff_total,
            },
            network,
        }
    }
}

/// One of the healthcheck's checks. Its label is the key in the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Check {
    Cache,
    Network,
}

impl Check {
    pub const ALL: [Check; 2] = [Check::Cache, Check::Network];

    /// The key in the result object (a wire fact).
    pub fn label(self) -> &'static str {
        match self {
            Check::Cache => "cache",
            Check::Network => "network",
        }
    }

    /// The flag set while this check fails.
    pub fn flag(self) -> Flag {
        match self {
            Check::Cache => Flag::ReadonlyCache,
            Check::Network => Flag::NotReachable,
        }
    }

    /// One attempt: runs the check, then sets or clears its flag.
    pub async fn attempt(self, settings: &Settings) -> Vec<String> {
        let mut errors = match self {
            Check::Cache => cache::check(&settings.cache_dir).await,
            Check::Network => match &settings.network {
                NetworkTargets::PerUrl(urls) => {
                    network::check(urls, settings.connect_timeout).await
                }
                NetworkTargets::PerService(groups) => {
                    services::check(groups, settings.connect_timeout).await
                }
            },
        };
        if let Err(e) = settings.flags.update(self.flag(), !errors.is_empty()).await {
            // The power daemon was not told what this attempt found.
            errors.push(format!(
                "failed to update flag {}: {e:#}",
                self.flag().name()
            ));
        }
        errors
    }

    /// Attempts the check, retrying with backoff while it fails.
    pub async fn run(
        self,
        settings: &Settings,
        cancel: &tokio_util::sync::CancellationToken,
        progress: &crate::tasks::Progress,
    ) -> Result<Retried, Cancelled> {
        retry::retry(settings.backoff, cancel, self.label(), |n| {
            progress.note(|| format!("{} check: attempt {n}", self.label()));
            self.attempt(settings)
        })
        .await
    }
}

/// The `healthcheck` task.
pub struct Healthcheck {
    settings: Settings,
}

impl Healthcheck {
    /// The task as the daemon registers it.
    pub fn new(section: &HealthcheckConfig, grid: &GridContext) -> Healthcheck {
        Healthcheck::with_settings(Settings::new(section, grid))
    }

    /// The task with settings made by hand (tests point it at their own
    /// directories and services).
    pub fn with_settings(settings: Settings) -> Healthcheck {
        Healthcheck { settings }
    }

    /// Both checks at once, each with its own retries; the result maps each
    /// check's label to its last attempt's errors.
    pub async fn check(&self, ctx: &RunContext) -> anyhow::Result<Value> {
        let (cache, network) = tokio::join!(
            Check::Cache.run(&self.settings, &ctx.cancel, &ctx.progress),
            Check::Network.run(&self.settings, &ctx.cancel, &ctx.progress),
        );
        let mut result = Map::new();
        for (check, outcome) in [(Check::Cache, cache), (Check::Network, network)] {
            let retried = outcome.map_err(|Cancelled| {
                anyhow::anyhow!(
                    "{HEALTHCHECK}: cancelled before the {} check ended",
                    check.label()
                )
            })?;
            result.insert(check.label().to_string(), Value::from(retried.errors));
        }
        Ok(Value::Object(result))
    }
}

impl Task for Healthcheck {
    fn name(&self) -> &'static str {
        HEALTHCHECK
    }

    fn description(&self) -> &'static str {
        DESCRIPTION
    }

    fn defaults(&self) -> TaskDefaults {
        TaskDefaults {
            cron: "0 */15 * * * *",
            jitter: Duration::ZERO,
            timeout: Duration::from_secs(15 * 60),
            exclusive: false,
        }
    }

    fn run<'a>(&'a self, ctx: &'a RunContext) -> RunFuture<'a> {
        Box::pin(self.check(ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::{GridConfig, Network};

    fn grid(network: Network) -> GridContext {
        GridContext::new(network, &GridConfig::default())
    }

    #[test]
    fn defaults_and_description_are_the_spec_ones() {
        let t = Healthcheck::new(&HealthcheckConfig::default(), &grid(Network::Main));
        assert_eq!(t.name(), "healthcheck");
        assert_eq!(t.description(), "health check task runs multiple checks to ensure the node is in a usable state and set flags for the power daemon to stop reporting uptime if it is not usable");
        let d = t.defaults();
        assert_eq!(d.cron, "0 */15 * * * *");
        assert_eq!(d.jitter, Duration::ZERO);
        assert_eq!(d.timeout, Duration::from_secs(900));
        assert!(!d.exclusive);
    }

    #[test]
    fn settings_come_from_the_config_and_the_network_table() {
        let s = Settings::new(&HealthcheckConfig::default(), &grid(Network::Test));
        assert_eq!(s.cache_dir, PathBuf::from("/var/cache"));
        assert_eq!(s.flags.dir(), std::path::Path::new("/tmp/flags"));
        assert_eq!(s.connect_timeout, Duration::from_secs(10));
        assert_eq!(
            s.backoff,
            RetryPolicy {
                initial: Duration::from_secs(180),
                max_interval: Duration::from_secs(30),
                total: Duration::from_secs(600)
            }
        );
        assert_eq!(
            s.network,
            NetworkTargets::PerService(services::groups(Network::Test, &Default::default()))
        );
        let c: HealthcheckConfig = toml::from_str("network_check = \"per-url\"\n").expect("config");
        let s = Settings::new(&c, &grid(Network::Test));
        assert_eq!(s.connect_timeout, Duration::from_secs(5));
        assert_eq!(s.network, NetworkTargets::PerUrl(Network::Test.services()));
        let c: HealthcheckConfig = toml::from_str(
            "services = [\"http://192.0.2.1:8080/\"]\nconnect_timeout = \"250ms\"\n",
        )
        .expect("config");
        let s = Settings::new(&c, &grid(Network::Test));
        assert_eq!(
            s.network,
            NetworkTargets::PerUrl(vec!["http://192.0.2.1:8080/".into()])
        );
        assert_eq!(s.connect_timeout, Duration::from_millis(250));
    }

    #[test]
    fn check_labels_and_flags_pair_up() {
        assert_eq!(Check::Cache.label(), "cache");
        assert_eq!(Check::Cache.flag(), Flag::ReadonlyCache);
        assert_eq!(Check::Network.label(), "network");
        assert_eq!(Check::Network.flag(), Flag::NotReachable);
    }
}
