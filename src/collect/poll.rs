//! The collector's calls to the grid, kept in this one file: which nodes
//! are up (the grid's GraphQL, paged) and asking each of them
//! `zos.perf.get_all` over the relay, a bounded number at once, each
//! answer handed on as it arrives (nothing is held for the round).
//!
//! `fleet` asks nodes the same way; when both share one "call many nodes"
//! library, this file is what changes.

use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};

use crate::grid::graphql::{FarmFilter, GraphQl, NodeFilter};
use crate::rmb::RmbClient;

/// Nodes asked of GraphQL per page.
const PAGE: u64 = 1000;

/// Which nodes to collect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Farm(u32),
    Grid,
}

/// An up node as listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listed {
    pub node: u32,
    pub farm: u32,
}

/// The up nodes of `scope` by id, at most `max` of them (and whether
/// there were more), those of shard `shard` (`(i, n)`: node id mod n == i)
/// only.
pub async fn list(
    graphql: &GraphQl,
    scope: Scope,
    shard: Option<(u32, u32)>,
    max: usize,
) -> anyhow::Result<(Vec<Listed>, bool)> {
    let filter = NodeFilter {
        farm: match scope {
            Scope::Farm(f) => FarmFilter::Only(f),
            Scope::Grid => FarmFilter::Any,
        },
        public: false,
    };
    let mut out: Vec<Listed> = Vec::new();
    let mut offset = 0;
    loop {
        let page = graphql.up_nodes(&filter, Some((PAGE, offset))).await?;
        let got = page.len() as u64;
        out.extend(
            page.into_iter()
                .filter(|n| shard.is_none_or(|(i, m)| n.node_id % m.max(1) == i))
                .map(|n| Listed {
                    node: n.node_id,
                    farm: n.farm_id,
                }),
        );
        offset += got;
        if got < PAGE || out.len() > max {
            break;
        }
    }
    out.sort_unstable_by_key(|l| l.node);
    out.dedup_by_key(|l| l.node);
    let over = out.len() > max;
    out.truncate(max);
    Ok((out, over))
}

/// One node's poll.
#[derive(Debug)]
pub struct Polled {
    pub node: u32,
    pub twin: Option<u32>,
    /// The reply's payload, or why there is none.
    pub answer: Result<Vec<u8>, String>,
    pub took: Duration,
}

/// Asks each of `nodes` `zos.perf.get_all`, at most `concurrency` at once,
/// each given `timeout` in all (its twin's lookup included); the polls
/// come out as they finish.
pub fn ask_all<'a>(
    client: &'a RmbClient,
    nodes: Vec<u32>,
    timeout: Duration,
    concurrency: usize,
) -> impl Stream<Item = Polled> + 'a {
    futures::stream::iter(nodes)
        .map(move |node| async move {
            let start = Instant::now();
            let (twin, answer) = ask(client, node, timeout).await;
            Polled {
                node,
                twin,
                answer,
                took: start.elapsed(),
            }
        })
        .buffer_unordered(concurrency.max(1))
}

/// Node `node`'s twin, then its answer: the lookup and the call share
/// `timeout` (the call's own timeout is what is left, so that a node that
/// does not answer is named by its twin).
async fn ask(
    client: &RmbClient,
    node: u32,
    timeout: Duration,
) -> (Option<u32>, Result<Vec<u8>, String>) {
    let start = Instant::now();
    let twin = match tokio::time::timeout(timeout, client.twins().node_twin(node)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return (None, Err(e.to_string())),
        Err(_) => {
            return (
                None,
                Err(format!(
                    "node {node}: its twin not found within {timeout:?}"
                )),
            )
        }
    };
    let left = timeout
        .saturating_sub(start.elapsed())
        .max(Duration::from_millis(100));
    // The call bounds its wait for the reply; this bounds the rest (the
    // twin's keys read from the chain, sending) too.
    let call = client.call(twin, "zos.perf.get_all", b"", left);
    let answer = match tokio::time::timeout(left + Duration::from_secs(1), call).await {
        Ok(a) => a.map_err(|e| e.to_string()),
        Err(_) => Err(format!("twin {twin}: no answer within {timeout:?}")),
    };
    (Some(twin), answer)
}
