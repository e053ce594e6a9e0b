//! `public-ip-validation`: proves that each public IP of the farm really
//! works, by using it.
//!
//! **Schedule**: `0 0 */6 * * *` (every 6 hours, UTC), jitter 600 s,
//! timeout 1 h, exclusive (never alongside another measurement).
//!
//! **What it does**: only one node per farm validates, the up node with the
//! lowest id that answers ping (see [`election`]); the others store every IP
//! as skipped. The validating node, inside the test network namespace
//! (`pubtestns`) on its macvlan (`pub`): removes whatever address and route
//! was left there; then for each farm IP not assigned to a contract, adds the
//! IP, brings the link up, adds a default route via the IP's gateway, asks a
//! "what is my IP" service through it, compares the answer with the IP, and
//! removes the address and routes again; at the end sets the link down.
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
//! | the lookup service cannot be reached through the IP (gateway silent, no route, refused, timeout while connecting) | `invalid` | `public ip or gateway data are not valid` |
//! | the lookup answered another address | `invalid` | `public ip does not match farm ip` |
//! | the lookup was reached but gave no usable answer (HTTP error, not an address) | `skipped` | `failed to get real public IP to the node` |
//! | a lower-id node answered ping | `skipped` | `skipped, there is a node with less ID available` |
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

pub mod election;
mod link;
pub mod lookup;
pub mod netns;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::future::BoxFuture;
use rtnetlink::Handle;
use serde::Serialize;

use crate::config::{Config, PublicIpConfig};
use crate::grid::graphql::{GraphQl, Node, PublicIp};
use crate::task::{RunContext, RunFuture, Task, TaskDefaults};
use lookup::Lookup;

pub const NAME: &str = crate::tasks::PUBLIC_IP_VALIDATION;
pub const DESCRIPTION: &str = "Runs on the least NodeID node in a farm to validate all its IPs.";

/// The reasons of SPEC §5, exact.
pub const IPS_NOT_MATCHING: &str = "public ip does not match farm ip";
pub const PUBLIC_IP_DATA_INVALID: &str = "public ip or gateway data are not valid";
pub const IP_IS_USED: &str = "ip is already assigned to a contract";
pub const FETCH_REAL_IP_FAILED: &str = "failed to get real public IP to the node";
/// Stored for every IP when a lower-id node of the farm answers.
pub const SKIPPED_FOR_LOWER_NODE: &str = "skipped, there is a node with less ID available";

/// The outcome for one farm IP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IpReport {
    pub state: State,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
pub type Report = BTreeMap<String, IpReport>;

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
        Box::pin(self.farm_up_nodes(farm))
    }

    fn public_ips(&self, farm: u32) -> BoxFuture<'_, anyhow::Result<Vec<PublicIp>>> {
        Box::pin(self.farm_public_ips(farm))
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
    pub fn from_config(config: &Config) -> Self {
        let source: Arc<dyn FarmSource> = match GraphQl::from_config(config) {
            Ok(client) => Arc::new(client),
            Err(e) => Arc::new(Unavailable(format!("{e:#}"))),
        };
        Self::new(config, source)
    }

    /// The task with its farm data from `source`.
    pub fn new(config: &Config, source: Arc<dyn FarmSource>) -> Self {
        PublicIpValidation {
            settings: config.public_ip.clone(),
            farm_id: config.farm_id,
            node_id: config.node_id,
            source,
        }
    }

    async fn validate(&self, ctx: &RunContext) -> anyhow::Result<Report> {
        netns::check_privileges()?;
        let farm = self.farm_id.context(
            "farm_id is not configured (farm_id in the config, or farmer_id= on the kernel command line)",
        )?;
        let me = self.node_id.context("node_id is not configured")?;
        let nodes = self
            .source
            .up_nodes(farm)
            .await
            .with_context(|| format!("listing the up nodes of farm {farm}"))?;
        let ips = self
            .source
            .public_ips(farm)
            .await
            .with_context(|| format!("listing the public IPs of farm {farm}"))?;
        if let Some(elder) =
            election::lower_node_answering(&nodes, me, self.settings.ping_count).await?
        {
            tracing::warn!(
                task = NAME,
                node = me,
                lower_node = elder.node_id,
                address = %elder.address,
                "{SKIPPED_FOR_LOWER_NODE}: node {} answered on {}",
                elder.node_id,
                elder.address
            );
            return Ok(ips
                .into_iter()
                .map(|ip| (ip.ip, IpReport::new(State::Skipped, SKIPPED_FOR_LOWER_NODE)))
                .collect());
        }
        tracing::info!(
            task = NAME,
            node = me,
            farm,
            ips = ips.len(),
            "validating the farm's public IPs"
        );
        netns::validate_in_namespace(self.settings.clone(), ips, ctx.cancel.clone()).await
    }
}

impl Task for PublicIpValidation {
    fn name(&self) -> &'static str {
        NAME
    }

    fn description(&self) -> &'static str {
        DESCRIPTION
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

/// A farm IP parsed for use: address, prefix length, gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    pub ip: IpAddr,
    pub prefix: u8,
    pub gateway: IpAddr,
}

/// Parses `ip` (CIDR, required) and `gateway` (a plain address of the same
/// family).
pub fn parse_farm_ip(ip: &str, gateway: &str) -> Result<Parsed, String> {
    let (addr, prefix) = ip
        .trim()
        .split_once('/')
        .ok_or_else(|| format!("ip {ip:?} is not in CIDR form"))?;
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("ip {ip:?} is not an IP address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= max)
        .ok_or_else(|| format!("ip {ip:?} has no valid prefix length"))?;
    let gw: IpAddr = gateway
        .trim()
        .parse()
        .map_err(|_| format!("gateway {gateway:?} is not an IP address"))?;
    if gw.is_ipv4() != addr.is_ipv4() {
        return Err(format!(
            "ip {ip:?} and gateway {gateway:?} are of different families"
        ));
    }
    Ok(Parsed {
        ip: addr,
        prefix,
        gateway: gw,
    })
}

/// The steps of SPEC §5 on the test link, inside the namespace: clear it,
/// check each IP, clear it again after each. (Setting it down at the end is
/// the namespace thread's guard's job, which runs on every path.)
async fn check_all(
    handle: &Handle,
    index: u32,
    ips: &[PublicIp],
    settings: &PublicIpConfig,
) -> anyhow::Result<Report> {
    link::flush(handle, index)
        .await
        .with_context(|| format!("removing what was left on link {}", settings.link))?;
    let mut report = Report::new();
    for farm_ip in ips {
        let started = Instant::now();
        let outcome = check_one(handle, index, farm_ip, settings).await;
        // Always, even when the check failed half-way.
        let cleared = link::flush(handle, index)
            .await
            .with_context(|| format!("removing {} from link {}", farm_ip.ip, settings.link));
        let outcome = outcome?;
        cleared?;
        tracing::info!(
            task = NAME,
            ip = farm_ip.ip,
            state = ?outcome.state,
            reason = outcome.reason,
            took = ?started.elapsed(),
            "checked"
        );
        report.insert(farm_ip.ip.clone(), outcome);
    }
    Ok(report)
}

/// One farm IP. An `Err` is a failure of the machine, not of the IP, and
/// ends the run.
async fn check_one(
    handle: &Handle,
    index: u32,
    farm_ip: &PublicIp,
    settings: &PublicIpConfig,
) -> anyhow::Result<IpReport> {
    let invalid_data = |why: String| {
        tracing::warn!(
            task = NAME,
            ip = farm_ip.ip,
            gateway = farm_ip.gateway,
            "{why}"
        );
        Ok(IpReport::new(State::Invalid, PUBLIC_IP_DATA_INVALID))
    };
    if farm_ip.contract_id != 0 {
        return Ok(IpReport::new(State::Skipped, IP_IS_USED));
    }
    let p = match parse_farm_ip(&farm_ip.ip, &farm_ip.gateway) {
        Ok(p) => p,
        Err(why) => return invalid_data(why),
    };
    if let Err(e) = link::add_address(handle, index, p.ip, p.prefix).await {
        return invalid_data(format!("{e:#}"));
    }
    link::set_up(handle, index, true).await?;
    if let Err(e) = link::add_default_route(handle, index, p.gateway).await {
        return invalid_data(format!("{e:#}"));
    }
    Ok(
        match lookup::public_ip(&settings.lookup_url, p.ip, settings.lookup_timeout).await? {
            Lookup::Answer(seen) if seen == p.ip => IpReport::new(State::Valid, ""),
            Lookup::Answer(seen) => {
                tracing::warn!(task = NAME, ip = farm_ip.ip, %seen, "the lookup service sees another address");
                IpReport::new(State::Invalid, IPS_NOT_MATCHING)
            }
            Lookup::Unreachable(why) => {
                return invalid_data(format!(
                    "lookup service {} unreachable via gateway {}: {why}",
                    settings.lookup_url, p.gateway
                ))
            }
            Lookup::Failed(why) => {
                tracing::warn!(
                    task = NAME,
                    ip = farm_ip.ip,
                    url = settings.lookup_url,
                    "lookup failed: {why}"
                );
                IpReport::new(State::Skipped, FETCH_REAL_IP_FAILED)
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn farm_ips_parse_in_cidr_form_with_a_gateway_of_the_same_family() {
        let p = parse_farm_ip("185.206.122.29/24", "185.206.122.1").expect("parse");
        assert_eq!(p.ip, "185.206.122.29".parse::<IpAddr>().expect("ip"));
        assert_eq!(p.prefix, 24);
        assert!(parse_farm_ip("2001:db8::5/64", "2001:db8::1").is_ok());
    }

    #[test]
    fn bad_farm_data_is_refused_with_what_is_wrong() {
        for (ip, gw) in [
            ("185.206.122.29", "185.206.122.1"),
            ("185.206.122.300/24", "185.206.122.1"),
            ("185.206.122.29/33", "185.206.122.1"),
            ("185.206.122.29/x", "185.206.122.1"),
            ("185.206.122.29/24", "gateway"),
            ("185.206.122.29/24", ""),
            ("185.206.122.29/24", "2001:db8::1"),
        ] {
            let err = parse_farm_ip(ip, gw).expect_err(ip);
            assert!(err.contains("ip") || err.contains("gateway"), "{err}");
        }
    }

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
