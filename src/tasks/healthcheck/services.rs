//! The `per-service` network check (zos since 2025): each grid service has
//! a list of instances; a service passes when any one of them accepts a TCP
//! connection, tried in order, and a failing service gives one error that
//! lists why each instance failed:
//!
//! `all <service> instances are unreachable: <url> is not reachable: failed
//! to connect: <reason>; <url> ...`
//!
//! (`invalid URL <url>: missing hostname in URL` for an instance without a
//! host, `no instances provided for service <service>` for an empty list.)
//! Services are checked at once, in the order of [`SERVICES`], and errors
//! come in that order. Each connect has `connect_timeout` (10 s by
//! default, as zos), name resolution included.
//!
//! The instance lists are zos's built-in ones for each network
//! ([`instances`]); `[healthcheck.instances]` replaces any of them.

use super::config::ServiceInstances;
pub use super::config::SERVICES;
use super::network;
use crate::grid::network::FLIST_HUB;
use crate::grid::Network;

/// One service and its instances, in the order they are tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceGroup {
    pub service: String,
    pub instances: Vec<String>,
}

/// zos's built-in instance list of `service` on `network`.
pub fn instances(network: Network, service: &str) -> Vec<String> {
    let n = network.as_str();
    let list: Vec<String> = match (network, service) {
        (Network::Main, "substrate") => [
            "wss://tfchain.grid.tf/",
            "wss://tfchain.02.grid.tf",
            "wss://02.tfchain.grid.tf/",
            "wss://03.tfchain.grid.tf/",
            "wss://04.tfchain.grid.tf/",
        ]
        .map(String::from)
        .to_vec(),
        (Network::Main, "activation") => [
            "https://activation.grid.threefold.me/activation/activate",
            "https://activation.grid.tf/activation/activate",
            "https://activation.02.grid.tf/activation/activate",
            "https://activation.grid.threefold.me/activation/activate",
        ]
        .map(String::from)
        .to_vec(),
        (Network::Main, "relay") => vec!["wss://relay.grid.tf".into()],
        (Network::Main, "graphql") => [
            "https://graphql.grid.threefold.me/graphql",
            "https://graphql.grid.tf/graphql",
            "https://graphql.02.grid.tf/graphql",
            "https://graphql.grid.threefold.me/graphql",
        ]
        .map(String::from)
        .to_vec(),
        (Network::Main, "kyc") => vec!["https://kyc.threefold.me".into()],
        (_, "substrate") => {
            // Only qa's second URL ends in a slash, as zos has it.
            let slash = if network == Network::Qa { "/" } else { "" };
            vec![
                format!("wss://tfchain.{n}.grid.tf/"),
                format!("wss://tfchain.02.{n}.grid.tf{slash}"),
            ]
        }
        (_, "activation") => vec![
            format!("https://activation.{n}.grid.tf/activation/activate"),
            format!("https://activation.02.{n}.grid.tf/activation/activate"),
        ],
        (_, "relay") => vec![format!("wss://relay.{n}.grid.tf")],
        (_, "graphql") => vec![
            format!("https://graphql.{n}.grid.tf/graphql"),
            format!("https://graphql.02.{n}.grid.tf/graphql"),
        ],
        (_, "kyc") => vec![format!("https://kyc.{n}.grid.tf")],
        (_, "hub") => vec![FLIST_HUB.to_string()],
        _ => Vec::new(),
    };
    list
}

/// Every service of `network` with its instances, `overrides` applied.
pub fn groups(network: Network, overrides: &ServiceInstances) -> Vec<ServiceGroup> {
    SERVICES
        .iter()
        .map(|service| ServiceGroup {
            service: service.to_string(),
            instances: overrides
                .get(service)
                .cloned()
                .unwrap_or_else(|| instances(network, service)),
        })
        .collect()
}

/// Checks every service at once; one error per failing service, in order.
pub async fn check(groups: &[ServiceGroup], timeout: std::time::Duration) -> Vec<String> {
    let checks = groups.iter().map(|g| check_one(g, timeout));
    futures::future::join_all(checks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// One service: its instances in order until one answers.
async fn check_one(group: &ServiceGroup, timeout: std::time::Duration) -> Option<String> {
    if group.instances.is_empty() {
        return Some(format!(
            "no instances provided for service {}",
            group.service
        ));
    }
    let mut parts = Vec::with_capacity(group.instances.len());
    for url in &group.instances {
        if let Err(why) = parse_as_zos(url) {
            parts.push(format!("invalid URL {url}: {why}"));
            continue;
        }
        match network::probe(url, timeout).await {
            Ok(()) => return None,
            Err(reason) => parts.push(format!(
                "{url} is not reachable: failed to connect: {reason}"
            )),
        }
    }
    Some(format!(
        "all {} instances are unreachable: {}",
        group.service,
        parts.join("; ")
    ))
}

/// The reason zos gives for an instance URL it cannot use: anything
/// without `scheme://host` has no hostname (Go's parser takes the rest as a
/// path), other errors fail to parse.
fn parse_as_zos(url: &str) -> Result<(), ZosUrlError> {
    match url::Url::parse(url) {
        Err(url::ParseError::EmptyHost | url::ParseError::RelativeUrlWithoutBase) => {
            Err(ZosUrlError::NoHostname)
        }
        Err(e) => Err(ZosUrlError::Parse(e)),
        Ok(_) => network::Target::parse(url)
            .map(|_| ())
            .map_err(|_| ZosUrlError::NoHostname),
    }
}

/// An instance URL zos cannot use, in zos's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum ZosUrlError {
    #[error("missing hostname in URL")]
    NoHostname,
    #[error("failed to parse URL: {0}")]
    Parse(url::ParseError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_override_replaces_one_service_only() {
        let o = ServiceInstances {
            kyc: Some(vec!["https://kyc.example/".into()]),
            ..Default::default()
        };
        let g = groups(Network::Test, &o);
        assert_eq!(
            g.iter().map(|g| g.service.as_str()).collect::<Vec<_>>(),
            SERVICES
        );
        assert_eq!(g[5].instances, ["https://kyc.example/"]);
        assert_eq!(g[2].instances, ["wss://relay.test.grid.tf"]);
    }
}
