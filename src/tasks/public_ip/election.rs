//! Which node of the farm validates: the lowest-id up node that answers.
//!
//! Every node runs the task; each pings the up nodes of its farm with a lower
//! id on their `zos` interface address. If any answers, that node (or one
//! lower still) does the work and this one stands down. The pings go out
//! from the daemon's own namespace, the node's normal network, where the
//! `zos` addresses of the farm are reachable.

use std::net::IpAddr;
use std::process::Stdio;

use anyhow::Context;
use futures::StreamExt;

use crate::grid::graphql::Node;

/// Pings running at the same time: a farm can have many lower-id nodes, and
/// each silent one costs `count` seconds.
const PARALLEL_PINGS: usize = 8;

/// A lower-id node that answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elder {
    pub node_id: u32,
    pub address: IpAddr,
}

/// The first lower-id node (than `me`) found to answer `count` echo
/// requests, or `None` when none does and this node should validate.
/// Nodes without a usable `zos` address cannot be asked and are passed over.
pub async fn lower_node_answering(
    nodes: &[Node],
    me: u32,
    count: u32,
) -> anyhow::Result<Option<Elder>> {
    let mut lower: Vec<Elder> = Vec::new();
    for node in nodes.iter().filter(|n| n.node_id < me) {
        match node.zos_ip() {
            Some(address) => lower.push(Elder {
                node_id: node.node_id,
                address,
            }),
            None => tracing::debug!(
                node = node.node_id,
                "lower-id node has no parseable zos address; not asked"
            ),
        }
    }
    lower.sort_by_key(|e| e.node_id);
    let mut pings = futures::stream::iter(
        lower
            .into_iter()
            .map(|elder| async move { (elder, ping(elder.address, count).await) }),
    )
    .buffer_unordered(PARALLEL_PINGS);
    while let Some((elder, answered)) = pings.next().await {
        if answered? {
            // Dropping the stream kills the pings still running.
            return Ok(Some(elder));
        }
        tracing::debug!(
            node = elder.node_id,
            address = %elder.address,
            "lower-id node does not answer"
        );
    }
    Ok(None)
}

/// `ping -c <count> -W 1 <address>`: true when at least one reply came back.
/// The address is a parsed IP, passed as one argument: no shell, no name
/// resolution.
pub async fn ping(address: IpAddr, count: u32) -> anyhow::Result<bool> {
    let status = tokio::process::Command::new("ping")
        .arg("-n")
        .arg("-q")
        .arg("-c")
        .arg(count.to_string())
        .arg("-W")
        .arg("1")
        .arg(address.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status()
        .await
        .with_context(|| format!("running ping {address}"))?;
    Ok(status.success())
}
