//! `public-ip-validation`: proves that each public IP of the farm really
//! works, by using it.
//!
//! **Schedule**: `0 0 */6 * * *` (every 6 hours, UTC), jitter 600 s,
//! timeout 1 h, exclusive (never alongside another measurement).
//!
//! **What it does**: only one node per farm validates, the up node with the
//! lowest id that answers ping (see [`election`]); the others store an
//! empty object, `{}`, as zos does, and say why in the log and in
//! `perf:status` (`last_note`). The validating node, inside the test network namespace
//! (`pubtestns`) on its macvlan (`pub`): removes whatever address and route
//! was left there; then for each farm IP not assigned to a contract, adds the
//! IP, brings the link up, adds a default route via the IP's gateway, asks
//! who the node is through it, compares the answer with the IP, and removes
//! the address and routes again; at the end sets the link down.
//!
//! **Lookup** (`[public_ip] lookup`): `stun` (the default, as zos since
//! 2025) sends a STUN Binding Request from the IP to the `stun_servers` in
//! order (see [`stun`]); `http` (the original) GETs `lookup_url` (see
//! [`lookup`]). Only the rows marked *http* below differ.
//!
//! **Result sample** (key: the IP as written on the farm):
//! ```json
//! {"185.206.122.29/24": {"state": "valid", "reason": ""},
//!  "185.206.122.30/24": {"state": "invalid", "reason": "public ip does not match farm ip"},
//!  "185.206.122.31/24": {"state": "skipped", "reason": "ip is already assigned to a contract"}}
//! ```
//!
//! **States and reasons**:
//!
//! | what happened | state | reason |
//! |---|---|---|
//! | the lookup answered the farm IP | `valid` | `""` |
//! | the IP has a contract | `skipped` | `ip is already assigned to a contract` |
//! | IP (CIDR) or gateway does not parse, families differ | `invalid` | `public ip or gateway data are not valid` |
//! | the address or the route via the gateway is refused | `invalid` | `public ip or gateway data are not valid` |
//! | the lookup cannot be reached through the IP (gateway silent, no route, refused, timeout); *stun*: no server gives an address | `invalid` | `public ip or gateway data are not valid` |
//! | the lookup answered another address | `invalid` | `public ip does not match farm ip` |
//! | *http*: the service was reached but gave no usable answer (HTTP error, not an address) | `skipped` | `failed to get real public IP to the node` |
//!
//! A wrong gateway shows as an unreachable lookup service, which is why that
//! counts against the IP's data; a lookup service that fails on its own says
//! nothing about the IP, which is therefore skipped, not invalid (as zos did).
//!
//! **Needs from the machine**: CAP_NET_ADMIN and CAP_SYS_ADMIN (checked at
//! the start of each run); the namespace `/var/run/netns/<namespace>` with
//! the macvlan inside (or `public_ip.parent_interface` to create them); the
//! `ping` program; the grid's GraphQL (up nodes and public IPs of the farm);
//! `farm_id` and `node_id` in the configuration. The lookup's name
//! resolution happens inside the namespace, through the IP under test, with
//! the host's `/etc/resolv.conf`.
//!
//! Whatever ends a run (error, timeout, shutdown, panic), the link is left
//! with no address, no route, and down: see [`netns`].

mod config;
pub mod election;
mod link;
pub mod lookup;
pub mod netns;
mod rtnl;
pub mod stun;
mod validate;
pub mod view;

pub use config::PublicIpConfig;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::grid::graphql::{GraphQl, Node, PublicIp};
use crate::grid::GridContext;
use crate::tasks::{RunContext, RunFuture, Task, TaskDefaults};

pub const NAME: &str = crate::tasks::PUBLIC_IP_VALIDATION;
pub(crate) const DESCRIPTION: &str =
    "Runs on the least NodeID node in a farm to validate all its IPs.";

/// The reasons, exact (docs/tasks/public-ip-validation.md).
pub const IPS_NOT_MATCHING: &str = "public ip does not match farm ip";
pub const PUBLIC_IP_DATA_INVALID: &str = "public ip or gateway data are not valid";
pub const IP_IS_USED: &str = "ip is already assigned to a contract";
pub const FETCH_REAL_IP_FAILED: &str = "failed to get real public IP to the node";
/// Logged, and noted in perf:status, when a lower-id node of the farm
/// answers (the result is then `{}`).
pub const SKIPPED_FOR_LOWER_NODE: &str = "skipped, there is a node with less ID available";

/// Why the task cannot run: it validates the IPs of this node's farm.
const NO_FARM: &str = "no farm is known: farm_id is not configured";
const NO_NODE: &str = "no node id is known: node_id is not configured";

/// The outcome for one farm IP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct IpReport {
    pub state: State,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Valid,
    Invalid,
    Skipped,
}

impl IpReport {
    fn new(state: State, reason: &str) -> Self {
        IpReport {
            state,
            reason: reason.to_string(),
        }
    }
}

/// The task's result: farm IP (as written on the farm) to its outcome.
pub(crate) type Report = BTreeMap<String, IpReport>;

/// Where the farm's nodes and IPs come from: the grid's GraphQL on a node,
/// anything else in tests.
pub trait FarmSource: Send + Sync + 'static {
    /// The up nodes of `farm`, with their interfaces.
    fn up_nodes(&self, farm: u32) -> BoxFuture<'_, anyhow::Result<Vec<Node>>>;
    /// The public IPs of `farm`.
    fn public_ips(&self, farm: u32) -> BoxFuture<'_, anyhow::Result<Vec<PublicIp>>>;
}

impl FarmSource for GraphQl {
    fn up_nodes(&self, farm: u32) -> BoxFuture<'_, anyhow::Result<Vec<Node>>> {
        Box::pin(async move { Ok(self.farm_up_nodes(farm).await?) })
    }

    fn public_ips(&self, farm: u32) -> BoxFuture<'_, anyhow::Result<Vec<PublicIp>>> {
        Box::pin(async move { Ok(self.farm_public_ips(farm).await?) })
    }
}

/// Stands in for a GraphQL client that could not be built, so that the
/// failure shows in every run of this task and no other task is affected.
struct Unavailable(String);

impl FarmSource for Unavailable {
    fn up_nodes(&self, _farm: u32) -> BoxFuture<'_, anyhow::Result<Vec<Node>>> {
        Box::pin(async move { Err(anyhow::anyhow!("{}", self.0)) })
    }

    fn public_ips(&self, _farm: u32) -> BoxFuture<'_, anyhow::Result<Vec<PublicIp>>> {
        Box::pin(async move { Err(anyhow::anyhow!("{}", self.0)) })
    }
}

/// The task.
pub struct PublicIpValidation {
    settings: PublicIpConfig,
    farm_id: Option<u32>,
    node_id: Option<u32>,
    source: Arc<dyn FarmSource>,
}

impl PublicIpValidation {
    /// The task as the daemon registers it: farm data from the grid's GraphQL.
    pub fn new(section: &PublicIpConfig, grid: &GridContext) -> Self {
        let source: Arc<dyn FarmSource> = match grid.graphql() {
            Ok(client) => Arc::new(client),
            Err(e) => Arc::new(Unavailable(format!("{e:#}"))),
        };
        Self::with_source(section, grid, source)
    }

    /// The task with its farm data from `source`.
    pub fn with_source(
        section: &PublicIpConfig,
        grid: &GridContext,
        source: Arc<dyn FarmSource>,
    ) -> Self {
        PublicIpValidation {
            settings: section.clone(),
            farm_id: grid.farm_id,
            node_id: grid.node_id,
            source,
        }
    }

    async fn validate(&self, ctx: &RunContext) -> anyhow::Result<Report> {
        netns::check_privileges()?;
        // Reached only when configuration enables the task explicitly.
        let farm = self.farm_id.context(NO_FARM)?;
        let me = self.node_id.context(NO_NODE)?;
        let nodes = self
            .source
            .up_nodes(farm)
            .await
            .with_context(|| format!("listing the up nodes of farm {farm}"))?;
        if let Some(elder) =
            election::lower_node_answering(&nodes, me, self.settings.ping_count).await?
        {
            // zos stores an empty object then (its skip error marshals to
            // `{}`); the reason goes to the log and to perf:status.
            let why = format!(
                "{SKIPPED_FOR_LOWER_NODE}: node {} answered on {}",
                elder.node_id, elder.address
            );
            tracing::warn!(node = me, lower_node = elder.node_id, address = %elder.address, "{why}");
            ctx.remark(why);
            return Ok(Report::new());
        }
        let ips = self
            .source
            .public_ips(farm)
            .await
            .with_context(|| format!("listing the public IPs of farm {farm}"))?;
        tracing::info!(
            node = me,
            farm,
            ips = ips.len(),
            "validating the farm's public IPs"
        );
        netns::validate_in_namespace(
            self.settings.clone(),
            ips,
            ctx.cancel.clone(),
            ctx.progress.clone(),
        )
        .await
    }
}

impl Task for PublicIpValidation {
    fn name(&self) -> &'static str {
        NAME
    }

    fn description(&self) -> &'static str {
        DESCRIPTION
    }

    /// Off where no farm (or node) is known: not a zos node. Every run
    /// would fail there, every six hours, for a reason no run can change.
    fn not_available(&self) -> Option<String> {
        if self.farm_id.is_none() {
            return Some(format!(
                "{NO_FARM} (farm_id in the config, or farmer_id= on the kernel command line)"
            ));
        }
        if self.node_id.is_none() {
            return Some(format!("{NO_NODE} (node_id in the config, or --node-id)"));
        }
        None
    }

    fn defaults(&self) -> TaskDefaults {
        TaskDefaults {
            cron: "0 0 */6 * * *",
            jitter: Duration::from_secs(600),
            timeout: Duration::from_secs(60 * 60),
            exclusive: true,
        }
    }

    fn run<'a>(&'a self, ctx: &'a RunContext) -> RunFuture<'a> {
        Box::pin(async move {
            let work = self.validate(ctx);
            let report = tokio::select! {
                r = work => r,
                _ = ctx.cancel.cancelled() => Err(anyhow::anyhow!("cancelled")),
            }
            .context(NAME)?;
            Ok(serde_json::to_value(report)?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_result_serialises_as_spec_says() {
        let mut r = Report::new();
        r.insert("185.206.122.29/24".into(), IpReport::new(State::Valid, ""));
        r.insert(
            "185.206.122.31/24".into(),
            IpReport::new(State::Skipped, IP_IS_USED),
        );
        let v = serde_json::to_value(&r).expect("json");
        assert_eq!(
            v,
            serde_json::json!({
                "185.206.122.29/24": {"state": "valid", "reason": ""},
                "185.206.122.31/24": {"state": "skipped", "reason": "ip is already assigned to a contract"},
            })
        );
    }
}
