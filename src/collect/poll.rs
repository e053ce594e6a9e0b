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
use crate::rmb::{RmbClient, RmbError};

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
    pub answer: Result<Vec<u8>, Unanswered>,
    pub took: Duration,
}

/// Why a node's poll brought no answer: which of its two steps failed
/// (finding its twin, asking the twin) and how, or that there was no
/// relay connection to ask it over.
#[derive(Debug, thiserror::Error)]
pub enum Unanswered {
    #[error("no relay connection: {0}")]
    NoConnection(RmbError),
    /// The chain lookup of the node's twin failed.
    #[error(transparent)]
    Twin(RmbError),
    #[error("node {node}: its twin not found within {after:?}")]
    TwinTimeout { node: u32, after: Duration },
    /// The call to the twin failed (the node's error answer included).
    #[error(transparent)]
    Call(RmbError),
    #[error("twin {twin}: no answer within {after:?}")]
    NoAnswer { twin: u32, after: Duration },
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
) -> (Option<u32>, Result<Vec<u8>, Unanswered>) {
    let start = Instant::now();
    let twin = match tokio::time::timeout(timeout, client.twins().node_twin(node)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return (None, Err(Unanswered::Twin(e))),
        Err(_) => {
            return (
                None,
                Err(Unanswered::TwinTimeout {
                    node,
                    after: timeout,
                }),
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
        Ok(a) => a.map_err(Unanswered::Call),
        Err(_) => Err(Unanswered::NoAnswer {
            twin,
            after: timeout,
        }),
    };
    (Some(twin), answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unanswered_poll_names_the_node_or_twin_and_the_wait() {
        let after = Duration::from_secs(10);
        assert_eq!(
            Unanswered::TwinTimeout { node: 12, after }.to_string(),
            "node 12: its twin not found within 10s"
        );
        assert_eq!(
            Unanswered::NoAnswer { twin: 1002, after }.to_string(),
            "twin 1002: no answer within 10s"
        );
        // The RMB errors pass through with their own text.
        let e = RmbError::UnknownNode(12);
        assert_eq!(Unanswered::Twin(e.clone()).to_string(), e.to_string());
    }
}
