//! `iperf`: network speed from this node, in one of two modes
//! (`[iperf] mode`).
//!
//! **Schedule** (both modes): `0 0 */6 * * *` (every 6 hours, UTC), jitter
//! 1200 s, timeout 3 h, exclusive (never beside another measurement).
//!
//! **`public-servers`** (the default, as zos does since 2026): one server
//! from the public iperf3 server list, TCP then UDP; see [`public`] and
//! [`servers`]. Description `Test network performance against public iperf3
//! servers with both UDP and TCP`; entries carry `server_host`, `server_ip`,
//! `server_port`. It is the default because nodes running zos today report
//! this, and users compare the two.
//!
//! **`grid-nodes`** (the seed era's): for each target node, 4 iperf3 client
//! runs in reverse mode (the server sends): TCP over IPv4, TCP over IPv6,
//! UDP over IPv4, UDP over IPv6. Targets are every up public node of the
//! free farm (`free_farm_id`, farm 1) plus `other_farm_nodes` (12) up public
//! nodes of other farms, a random window of the grid's list (docs/configuration.md). Not targets:
//! this node (`node_id`), any node whose public address is this node's own
//! (an address on a local interface, or the one GraphQL lists for
//! `node_id`), and any node whose addresses do not parse as usable IPs
//! (logged). It measures node-to-node paths over both address families,
//! which the public servers do not.
//!
//! Each `grid-nodes` run is `iperf3 --client <ip> --port 300 --interval 20
//! --bandwidth 0 -R --json` (UDP adds `--length 16B --udp`; `duration` adds
//! `--time`). A server busy with another client is retried with backoff
//! (5 min, doubling to 20 min, 3 retries). A run that fails (cannot connect,
//! timeout, bad output, still busy) is an entry with the error and zero
//! speeds; the task fails only when GraphQL gives no target list at all,
//! which keeps the previous result. How figures are read from iperf3's
//! report: see [`report`].
//!
//! **`grid-nodes` result** (one entry per run, speeds in bit/s, CPU in percent):
//! ```json
//! [{"upload_speed": 911435467.2, "download_speed": 909732168.4, "node_id": 12,
//!   "node_ip": "185.206.122.29", "test_type": "tcp", "error": "",
//!   "cpu_report": {"host_total": 23.1, "host_user": 1.2, "host_system": 21.9,
//!                  "remote_total": 40.2, "remote_user": 0.8, "remote_system": 39.4}},
//!  {"upload_speed": 0.0, "download_speed": 0.0, "node_id": 31,
//!   "node_ip": "2a02:1802:5e::223", "test_type": "udp",
//!   "error": "unable to connect to server: Connection refused",
//!   "cpu_report": {"host_total": 0.0, "host_user": 0.0, "host_system": 0.0,
//!                  "remote_total": 0.0, "remote_user": 0.0, "remote_system": 0.0}}]
//! ```
//!
//! **`public-servers` result** (always two entries, TCP then UDP):
//! ```json
//! [{"upload_speed": 93412345.0, "download_speed": 93011111.0,
//!   "server_host": "speedtest.example.net", "server_ip": "198.51.100.7",
//!   "server_port": 5201, "test_type": "tcp", "error": "",
//!   "cpu_report": {"host_total": 3.1, "host_user": 0.2, "host_system": 2.9,
//!                  "remote_total": 1.2, "remote_user": 0.1, "remote_system": 1.1}}, ...]
//! ```
//!
//! **Needs**: the `iperf3` program (3.x, `iperf3` setting). `grid-nodes`:
//! IPv4 and IPv6 reach to the grid's public nodes on TCP/UDP port 300
//! (`port`) and the grid's GraphQL over HTTPS; one target takes about 4 ×
//! the iperf3 duration (10 s by default) plus a 1 s pause between runs
//! against the same server ([`SETTLE`]): about 43 s. `public-servers`: HTTPS
//! to the list, TCP/UDP to the chosen server; about 2 × 10 s plus the list
//! and the choice (see BENCHMARKS.md).

mod client;
mod config;
pub(crate) mod public;
pub mod report;
pub mod servers;
pub mod view;

pub use config::{IperfConfig, IperfMode};

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::anyhow;

use crate::grid::graphql::{AddressError, GraphQl, Node, NodeFilter};
use crate::grid::GridContext;
use crate::tasks::{RunContext, RunFuture, Task, TaskDefaults};
use report::{Entry, Protocol};

/// The description stored with `grid-nodes` results (the original's).
pub(crate) const DESCRIPTION: &str =
    "Test public nodes network performance with both UDP and TCP over IPv4 and IPv6";

/// The pause between two runs against the same server after a run that
/// completed. iperf3 3.12's server needs a moment to close a finished test;
/// a client arriving within it is told "busy" (about 1 run in 40 back to
/// back, mostly after UDP), which would cost a whole busy backoff (5 min).
pub(crate) const SETTLE: Duration = Duration::from_secs(1);

/// The iperf task, built from the configuration.
pub struct Iperf {
    config: IperfConfig,
    grid: GridContext,
}

impl Iperf {
    pub fn new(section: &IperfConfig, grid: &GridContext) -> Iperf {
        Iperf {
            config: section.clone(),
            grid: grid.clone(),
        }
    }

    /// The description stored with this mode's results.
    pub(crate) fn description_of(mode: IperfMode) -> &'static str {
        match mode {
            IperfMode::PublicServers => public::DESCRIPTION,
            IperfMode::GridNodes => DESCRIPTION,
        }
    }

    async fn run_all(&self, ctx: &RunContext) -> anyhow::Result<Vec<Entry>> {
        let gql = self.grid.graphql()?;
        let targets = tokio::select! {
            t = self.targets(&gql) => t?,
            _ = ctx.cancel.cancelled() => anyhow::bail!("iperf: cancelled while listing targets"),
        };
        tracing::info!(targets = targets.len(), "targets chosen");
        let mut entries = Vec::with_capacity(targets.len() * 4);
        for t in &targets {
            let started = Instant::now();
            let mut settle = false;
            for (protocol, ip) in [
                (Protocol::Tcp, t.ipv4),
                (Protocol::Tcp, t.ipv6),
                (Protocol::Udp, t.ipv4),
                (Protocol::Udp, t.ipv6),
            ] {
                if settle {
                    tokio::select! {
                        _ = tokio::time::sleep(SETTLE) => {}
                        _ = ctx.cancel.cancelled() => anyhow::bail!("iperf: cancelled"),
                    }
                }
                ctx.progress
                    .note(|| format!("node {}: {} to {ip}", t.node_id, protocol.as_str()));
                let m = client::measure(&self.config, ip, protocol, &ctx.cancel)
                    .await
                    .map_err(|_| anyhow!("iperf: cancelled while testing node {}", t.node_id))?;
                if !m.error.is_empty() {
                    tracing::warn!(node = t.node_id, %ip,
                        protocol = protocol.as_str(), error = %m.error, "run failed");
                }
                settle = m.error.is_empty();
                entries.push(m.into_entry(t.node_id, ip.to_string(), protocol));
            }
            tracing::debug!(node = t.node_id, duration = ?started.elapsed(), "node tested");
        }
        Ok(entries)
    }

    /// The free farm's up public nodes, then the random others, filtered.
    /// Fails only when neither list could be had.
    async fn targets(&self, gql: &GraphQl) -> anyhow::Result<Vec<Target>> {
        let free = self.config.free_farm_id;
        let free_nodes = gql.up_nodes(&NodeFilter::public_in_farm(free), None).await;
        let other_nodes = gql
            .random_up_nodes(
                &NodeFilter::public_outside_farm(free),
                u64::from(self.config.other_farm_nodes),
            )
            .await;
        let nodes = match (free_nodes, other_nodes) {
            (Ok(mut a), Ok(b)) => {
                a.extend(b);
                a
            }
            (Ok(a), Err(e)) | (Err(e), Ok(a)) => {
                tracing::warn!(error = %format!("{e:#}"),
                    "one node list failed; testing the other");
                a
            }
            (Err(a), Err(b)) => {
                return Err(anyhow!(
                    "iperf: no target list from GraphQL: {a:#}; and {b:#}"
                ))
            }
        };
        let mut own = local_addresses();
        Ok(select_targets(nodes, self.grid.node_id, &mut own))
    }
}

impl Task for Iperf {
    fn name(&self) -> &'static str {
        crate::tasks::IPERF
    }

    fn description(&self) -> &'static str {
        Self::description_of(self.config.mode)
    }

    fn defaults(&self) -> TaskDefaults {
        TaskDefaults {
            cron: "0 0 */6 * * *",
            jitter: Duration::from_secs(1200),
            timeout: Duration::from_secs(3 * 3600),
            exclusive: true,
        }
    }

    fn run<'a>(&'a self, ctx: &'a RunContext) -> RunFuture<'a> {
        Box::pin(async move {
            // As zos: without the program the run fails (and the previous
            // result stays) rather than storing an error entry per test.
            crate::tasks::provisiontest::find_program(&self.config.iperf3)
                .map_err(|e| anyhow!("iperf not found: {e}"))?;
            match self.config.mode {
                IperfMode::PublicServers => {
                    let entries = public::run(&self.config, &ctx.cancel).await?;
                    Ok(serde_json::to_value(entries)?)
                }
                IperfMode::GridNodes => {
                    let entries = self.run_all(ctx).await?;
                    Ok(serde_json::to_value(entries)?)
                }
            }
        })
    }
}

/// A node to test, with addresses already parsed and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub node_id: u32,
    pub ipv4: IpAddr,
    pub ipv6: IpAddr,
}

/// Keeps the nodes worth testing, in order, each once: not this node, not
/// one sharing this node's addresses (`own`, to which the addresses GraphQL
/// lists for `node_id` are added), and only with usable public addresses.
pub(crate) fn select_targets(
    nodes: Vec<Node>,
    node_id: Option<u32>,
    own: &mut HashSet<IpAddr>,
) -> Vec<Target> {
    if let Some(me) = node_id {
        for n in nodes.iter().filter(|n| n.node_id == me) {
            own.extend(n.public_ipv4().ok().map(IpAddr::V4));
            own.extend(n.public_ipv6().ok().map(IpAddr::V6));
        }
    }
    let mut seen = HashSet::new();
    let mut targets = Vec::new();
    for n in nodes {
        if Some(n.node_id) == node_id || !seen.insert(n.node_id) {
            continue;
        }
        let addresses = n
            .public_ipv4()
            .map(IpAddr::V4)
            .and_then(|v4| Ok((v4, IpAddr::V6(n.public_ipv6()?))))
            .and_then(|(v4, v6)| {
                usable(v4)?;
                usable(v6)?;
                Ok((v4, v6))
            });
        let (ipv4, ipv6) = match addresses {
            Ok(a) => a,
            Err(reason) => {
                tracing::warn!(node = n.node_id, public_config = ?n.public_config,
                    %reason, "skipping node: its public addresses are not usable");
                continue;
            }
        };
        if own.contains(&ipv4) || own.contains(&ipv6) {
            tracing::info!(node = n.node_id, %ipv4, %ipv6,
                "skipping node: it has this node's own public address");
            continue;
        }
        targets.push(Target {
            node_id: n.node_id,
            ipv4,
            ipv6,
        });
    }
    targets
}

/// A public address worth sending traffic to: not unspecified, loopback,
/// multicast or broadcast.
fn usable(ip: IpAddr) -> Result<(), AddressError> {
    let bad = ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    if bad {
        Err(AddressError::NotUnicast(ip))
    } else {
        Ok(())
    }
}

/// Addresses on this node's interfaces (in its network namespace).
fn local_addresses() -> HashSet<IpAddr> {
    match nix::ifaddrs::getifaddrs() {
        Ok(addrs) => addrs
            .filter_map(|a| a.address)
            .filter_map(|s| {
                s.as_sockaddr_in()
                    .map(|v4| IpAddr::V4(v4.ip()))
                    .or_else(|| s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
            })
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list local addresses");
            HashSet::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u32, v4: &str, v6: &str) -> Node {
        serde_json::from_value(serde_json::json!({
            "nodeID": id, "farmID": 1, "publicConfig": {"ipv4": v4, "ipv6": v6}
        }))
        .expect("node")
    }

    #[test]
    fn defaults_and_description_follow_the_spec() {
        let grid = GridContext::new(crate::grid::Network::Main, &Default::default());
        let t = Iperf::new(&IperfConfig::default(), &grid);
        assert_eq!(t.name(), "iperf");
        assert_eq!(
            t.description(),
            "Test network performance against public iperf3 servers with both UDP and TCP"
        );
        let grid_nodes = IperfConfig {
            mode: IperfMode::GridNodes,
            ..IperfConfig::default()
        };
        assert_eq!(
            Iperf::new(&grid_nodes, &grid).description(),
            "Test public nodes network performance with both UDP and TCP over IPv4 and IPv6"
        );
        let d = t.defaults();
        assert_eq!(d.cron, "0 0 */6 * * *");
        assert_eq!(d.jitter, Duration::from_secs(1200));
        assert_eq!(d.timeout, Duration::from_secs(10800));
        assert!(d.exclusive);
    }

    #[test]
    fn targets_skip_self_own_address_duplicates_and_bad_addresses() {
        let nodes = vec![
            node(1, "198.51.100.1/24", "2001:db8::1/64"),
            node(2, "198.51.100.2/24", "2001:db8::2/64"),
            node(3, "not-an-ip", "2001:db8::3/64"),
            node(4, "198.51.100.4/24", "198.51.100.44/24"),
            node(5, "0.0.0.0/0", "2001:db8::5/64"),
            node(6, "198.51.100.6/24", "2001:db8::1/64"),
            node(7, "203.0.113.7/24", "2001:db8::7/64"),
            node(2, "198.51.100.2/24", "2001:db8::2/64"),
            node(8, "192.0.2.8/24", "2001:db8::8/64"),
        ];
        let mut own: HashSet<IpAddr> = ["192.0.2.8".parse().expect("ip")].into();
        let t = select_targets(nodes, Some(1), &mut own);
        let ids: Vec<u32> = t.iter().map(|t| t.node_id).collect();
        // 1 is this node; 3, 4, 5 have bad addresses; 6 shares node 1's
        // IPv6; the second 2 is a duplicate; 8 has a local address.
        assert_eq!(ids, [2, 7]);
        assert_eq!(t[0].ipv4, "198.51.100.2".parse::<IpAddr>().expect("ip"));
        assert_eq!(t[0].ipv6, "2001:db8::2".parse::<IpAddr>().expect("ip"));
    }
}
