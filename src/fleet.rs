//! Asking many nodes at once: the up nodes of a farm or of the whole grid,
//! listed from the grid's GraphQL page by page, each called over one relay
//! connection with a bounded number of calls in flight, each answer handed
//! on as soon as it is in.
//!
//! `zos-perf fleet` prints the answers as they come; a collector keeps the
//! latest per node. Nothing here holds an answer: the stream of [`ask`]
//! yields each one once and forgets it, so the memory it takes is the
//! calls in flight (at most `concurrency`, each reply's frame counted
//! against the relay link's read budget until it is opened), not the
//! number of nodes. The node list itself is 8 bytes a node.
//!
//! Answers come in the order the nodes give them, not the nodes' order:
//! a node that does not answer costs its own timeout, never the rows of
//! the others (in order, every row behind a silent node would wait, and be
//! held, for the whole timeout).

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::{Stream, StreamExt};

use crate::grid::graphql::{FarmFilter, GraphQl, NodeFilter, NodeIds};
use crate::rmb::{RmbClient, RmbError};

/// Which nodes: the up nodes of one farm, or every up node of the grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Farm(u32),
    Grid,
}

impl Scope {
    fn filter(self) -> NodeFilter {
        NodeFilter {
            farm: match self {
                Scope::Farm(f) => FarmFilter::Only(f),
                Scope::Grid => FarmFilter::Any,
            },
            public: false,
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Farm(id) => write!(f, "farm {id}"),
            Scope::Grid => f.write_str("the grid"),
        }
    }
}

/// Nodes asked for in one GraphQL page (a page of ids is about 40 bytes
/// a node: 40 KB).
pub const PAGE: u64 = 1000;

/// The most nodes listed: the grid has a few thousand; an indexer that
/// keeps paging past this is not believed.
pub const MAX_NODES: usize = 100_000;

/// Every up node of `scope`, by node id, listed page by page (`page` ids
/// at a time, after the last id of the previous page, until a page comes
/// back empty: a server that cuts pages shorter than asked is still read
/// to the end, and nodes coming or going between pages shift nothing).
pub async fn up_nodes(graphql: &GraphQl, scope: Scope, page: u64) -> anyhow::Result<Vec<NodeIds>> {
    let filter = scope.filter();
    let page = page.max(1);
    let mut nodes: Vec<NodeIds> = Vec::new();
    let mut after: Option<u32> = None;
    loop {
        let got = graphql
            .up_node_ids(&filter, after, page)
            .await
            .with_context(|| format!("listing the up nodes of {scope}"))?;
        let Some(last) = got.iter().map(|n| n.node_id).max() else {
            break;
        };
        if let Some(a) = after.filter(|a| got.iter().any(|n| n.node_id <= *a)) {
            bail!("listing the up nodes of {scope}: the GraphQL answered nodes at or below {a} for the page after node {a}");
        }
        nodes.extend(got);
        if nodes.len() > MAX_NODES {
            bail!("listing the up nodes of {scope}: more than {MAX_NODES} nodes");
        }
        after = Some(last);
    }
    nodes.sort_unstable_by_key(|n| n.node_id);
    nodes.dedup_by_key(|n| n.node_id);
    Ok(nodes)
}

/// What is asked of every node.
#[derive(Debug, Clone)]
pub struct Question {
    pub command: String,
    pub payload: Vec<u8>,
    /// How long each node has to answer.
    pub timeout: Duration,
}

/// One node's answer (or why there is none).
#[derive(Debug)]
pub struct Answer {
    pub node: u32,
    /// The node's twin, when the chain named it.
    pub twin: Option<u32>,
    /// From the start of this node's call to its answer (or failure).
    pub took: Duration,
    /// The reply's payload: its signature checked, decrypted.
    pub reply: Result<Vec<u8>, RmbError>,
}

/// Calls `question` on each of `nodes` over `client`, at most
/// `concurrency` (at least 1) at once, and yields every answer as it comes.
/// The next node is called as soon as one answers or fails, and a node
/// that fails does not stop the others.
pub fn ask<'a>(
    client: &'a RmbClient,
    nodes: impl IntoIterator<Item = u32> + 'a,
    question: &'a Question,
    concurrency: usize,
) -> impl Stream<Item = Answer> + 'a {
    futures::stream::iter(nodes)
        .map(move |node| ask_one(client, node, question))
        .buffer_unordered(concurrency.max(1))
}

async fn ask_one(client: &RmbClient, node: u32, question: &Question) -> Answer {
    let start = Instant::now();
    let twin = match client.twins().node_twin(node).await {
        Ok(t) => t,
        Err(e) => {
            return Answer {
                node,
                twin: None,
                took: start.elapsed(),
                reply: Err(e),
            }
        }
    };
    let reply = client
        .call(twin, &question.command, &question.payload, question.timeout)
        .await;
    Answer {
        node,
        twin: Some(twin),
        took: start.elapsed(),
        reply,
    }
}
