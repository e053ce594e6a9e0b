//! The four grid networks and the URLs of their services (docs/configuration.md).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A ThreeFold grid network. `prod` on the kernel command line is `main`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    Main,
    Test,
    Qa,
    Dev,
}

/// The flist hub is a service of every network.
pub(crate) const FLIST_HUB: &str = "redis://hub.threefold.me:9900";

impl Network {
    pub const ALL: [Network; 4] = [Network::Main, Network::Test, Network::Qa, Network::Dev];

    /// The name used in configuration (`main`, `test`, `qa`, `dev`).
    pub fn as_str(self) -> &'static str {
        match self {
            Network::Main => "main",
            Network::Test => "test",
            Network::Qa => "qa",
            Network::Dev => "dev",
        }
    }

    /// Reads the network from a kernel command line (`runmode=prod|test|qa|dev`).
    pub(crate) fn from_kernel_cmdline(cmdline: &str) -> Option<Network> {
        cmdline
            .split_whitespace()
            .find_map(|arg| arg.strip_prefix("runmode="))
            .and_then(|mode| mode.parse().ok())
    }

    /// The GraphQL endpoints, tried in this order until one answers.
    pub fn graphql_urls(self) -> [&'static str; 2] {
        match self {
            Network::Main => [
                "https://graphql.grid.tf/graphql",
                "https://graphql.02.grid.tf/graphql",
            ],
            Network::Test => [
                "https://graphql.test.grid.tf/graphql",
                "https://graphql.02.test.grid.tf/graphql",
            ],
            Network::Qa => [
                "https://graphql.qa.grid.tf/graphql",
                "https://graphql.02.qa.grid.tf/graphql",
            ],
            Network::Dev => [
                "https://graphql.dev.grid.tf/graphql",
                "https://graphql.02.dev.grid.tf/graphql",
            ],
        }
    }

    pub fn relay_url(self) -> &'static str {
        match self {
            Network::Main => "wss://relay.grid.tf",
            Network::Test => "wss://relay.test.grid.tf",
            Network::Qa => "wss://relay.qa.grid.tf",
            Network::Dev => "wss://relay.dev.grid.tf",
        }
    }

    pub(crate) fn substrate_url(self) -> &'static str {
        match self {
            Network::Main => "wss://tfchain.grid.tf/",
            Network::Test => "wss://tfchain.test.grid.tf/",
            Network::Qa => "wss://tfchain.qa.grid.tf/",
            Network::Dev => "wss://tfchain.dev.grid.tf/",
        }
    }

    pub(crate) fn activation_url(self) -> &'static str {
        match self {
            Network::Main => "https://activation.grid.tf/activation/activate",
            Network::Test => "https://activation.test.grid.tf/activation/activate",
            Network::Qa => "https://activation.qa.grid.tf/activation/activate",
            Network::Dev => "https://activation.dev.grid.tf/activation/activate",
        }
    }

    /// Every grid service of this network, as the healthcheck probes them:
    /// GraphQL, relay, substrate, activation and the flist hub.
    pub fn services(self) -> Vec<String> {
        let mut all: Vec<String> = self.graphql_urls().iter().map(|u| u.to_string()).collect();
        all.push(self.relay_url().to_string());
        all.push(self.substrate_url().to_string());
        all.push(self.activation_url().to_string());
        all.push(FLIST_HUB.to_string());
        all
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Network {
    type Err = String;

    /// Accepts the configuration names and the kernel's `prod`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "main" | "prod" => Ok(Network::Main),
            "test" => Ok(Network::Test),
            "qa" => Ok(Network::Qa),
            "dev" => Ok(Network::Dev),
            other => Err(format!(
                "unknown network {other:?}: expected main, test, qa or dev"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runmode_prod_is_main_and_others_map_by_name() {
        let cmdline = "BOOT_IMAGE=/vmlinuz farmer_id=1 runmode=prod quiet";
        assert_eq!(Network::from_kernel_cmdline(cmdline), Some(Network::Main));
        assert_eq!(
            Network::from_kernel_cmdline("runmode=qa"),
            Some(Network::Qa)
        );
        assert_eq!(Network::from_kernel_cmdline("quiet"), None);
        assert_eq!(Network::from_kernel_cmdline("runmode=moon"), None);
    }

    /// The services of each network, written out: the order is the order
    /// probed and reported.
    const SERVICES: [(Network, [&str; 6]); 4] = [
        (
            Network::Main,
            [
                "https://graphql.grid.tf/graphql",
                "https://graphql.02.grid.tf/graphql",
                "wss://relay.grid.tf",
                "wss://tfchain.grid.tf/",
                "https://activation.grid.tf/activation/activate",
                "redis://hub.threefold.me:9900",
            ],
        ),
        (
            Network::Test,
            [
                "https://graphql.test.grid.tf/graphql",
                "https://graphql.02.test.grid.tf/graphql",
                "wss://relay.test.grid.tf",
                "wss://tfchain.test.grid.tf/",
                "https://activation.test.grid.tf/activation/activate",
                "redis://hub.threefold.me:9900",
            ],
        ),
        (
            Network::Qa,
            [
                "https://graphql.qa.grid.tf/graphql",
                "https://graphql.02.qa.grid.tf/graphql",
                "wss://relay.qa.grid.tf",
                "wss://tfchain.qa.grid.tf/",
                "https://activation.qa.grid.tf/activation/activate",
                "redis://hub.threefold.me:9900",
            ],
        ),
        (
            Network::Dev,
            [
                "https://graphql.dev.grid.tf/graphql",
                "https://graphql.02.dev.grid.tf/graphql",
                "wss://relay.dev.grid.tf",
                "wss://tfchain.dev.grid.tf/",
                "https://activation.dev.grid.tf/activation/activate",
                "redis://hub.threefold.me:9900",
            ],
        ),
    ];

    #[test]
    fn every_network_probes_exactly_the_services_of_its_table() {
        for (net, want) in SERVICES {
            assert_eq!(net.services(), want, "{net}");
        }
    }
}
