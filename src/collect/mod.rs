//! `zos-perf collect`: a long-running collector of a farm's or the grid's
//! nodes. Each round it lists the up nodes (GraphQL), asks each for its
//! results over the relay (a bounded number at once, each within a
//! timeout), and keeps the key figures of the latest answer per node; it
//! serves them as Prometheus series (`/metrics`) and as a fleet page (`/`).
//!
//! - [`poll`] makes the calls to the grid (listing, asking), in one file;
//! - [`node`] holds what is kept per node, read from its answer;
//! - [`exposition`] renders `/metrics`;
//! - [`page`] renders `/`.
//!
//! Memory is bounded by construction: at most `max_nodes` nodes are held,
//! each a [`NodeState`] of fixed size plus an error of at most
//! [`node::MAX_ERROR_CHARS`] characters (escaped); a result is read into
//! figures as it arrives and dropped. Nodes that are no longer listed are
//! dropped at the next listing.
//!
//! docs/collect.md says why this is a polling collector rather than a
//! blackbox-style `/probe` exporter.

pub mod exposition;
pub mod node;
pub mod page;
pub mod poll;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::grid::graphql::GraphQl;
use crate::outputs::http::{self, Site};
use crate::outputs::metrics::Format;
use crate::rmb::relay_link::RelayOptions;
use crate::rmb::twin::TwinDb;
use crate::rmb::{Identity, RmbClient, RmbError};
use crate::text::Escaped;
use crate::util::unix_time::unix_now;

pub use node::NodeState;
pub use poll::Scope;

/// How the collector polls.
#[derive(Debug, Clone)]
pub struct Options {
    pub scope: Scope,
    /// `(i, n)`: only nodes whose id mod n is i (several collectors
    /// sharing the grid).
    pub shard: Option<(u32, u32)>,
    /// From the start of one round to the start of the next.
    pub interval: Duration,
    /// Up to this much more, drawn each round.
    pub jitter: Duration,
    /// Per node, its twin's lookup included.
    pub timeout: Duration,
    /// Nodes asked at once.
    pub concurrency: usize,
    /// Nodes held at most (the lowest ids).
    pub max_nodes: usize,
}

/// Where the last rounds stand.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Round {
    /// Rounds done.
    pub rounds: u64,
    /// When the last one ended, Unix seconds.
    pub ended_at: u64,
    /// How long it took, seconds.
    pub duration: f64,
    pub listed: usize,
    pub answered: usize,
    /// The listing had more than `max_nodes`.
    pub over_limit: bool,
    pub listing_failures: u64,
    /// Why the last listing failed, if it did (escaped, cut short).
    pub listing_error: Option<Box<str>>,
}

/// What the collector holds, shared with its listener.
#[derive(Debug)]
pub struct Collected {
    scope: Scope,
    nodes: RwLock<BTreeMap<u32, NodeState>>,
    round: Mutex<Round>,
    /// Changes with every change of `nodes`.
    version: AtomicU64,
    /// The per-node series rendered, per format, with the version of
    /// `nodes` they show.
    rendered: Mutex<[Option<Rendered>; 2]>,
}

/// Series rendered for one format, with the version of `nodes` they show.
type Rendered = (u64, Arc<str>);

impl Collected {
    pub fn new(scope: Scope) -> Arc<Collected> {
        Arc::new(Collected {
            scope,
            nodes: RwLock::default(),
            round: Mutex::default(),
            version: AtomicU64::new(0),
            rendered: Mutex::default(),
        })
    }

    /// `render()`'s text, rendered again only when the nodes changed since.
    fn cached(&self, format: Format, render: impl FnOnce() -> String) -> Arc<str> {
        let slot = usize::from(format == Format::OpenMetrics);
        let version = self.version.load(Ordering::SeqCst);
        let mut rendered = self.rendered.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((v, text)) = &rendered[slot] {
            if *v == version {
                return text.clone();
            }
        }
        let text: Arc<str> = render().into();
        rendered[slot] = Some((version, text.clone()));
        text
    }

    /// The nodes held, by id.
    pub fn nodes(&self) -> RwLockReadGuard<'_, BTreeMap<u32, NodeState>> {
        self.nodes.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn round(&self) -> Round {
        self.round.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// "farm 5" or "the grid".
    pub fn scope_text(&self) -> String {
        match self.scope {
            Scope::Farm(f) => format!("farm {f}"),
            Scope::Grid => "the grid".into(),
        }
    }

    /// Holds exactly the `listed` nodes: new ones added, gone ones dropped.
    fn keep_only(&self, listed: &[poll::Listed]) {
        let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        let mut next = BTreeMap::new();
        for l in listed {
            let mut n = nodes
                .remove(&l.node)
                .unwrap_or_else(|| NodeState::new(l.node, l.farm));
            n.farm = l.farm;
            next.insert(l.node, n);
        }
        *nodes = next;
        self.version.fetch_add(1, Ordering::SeqCst);
    }

    fn finish(&self, start: Instant, answered: usize) {
        let mut r = self.round.lock().unwrap_or_else(|p| p.into_inner());
        r.rounds += 1;
        r.answered = answered;
        r.duration = start.elapsed().as_secs_f64();
        r.ended_at = unix_now();
    }

    fn update(&self, p: poll::Polled, at: u64) -> bool {
        let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        let Some(n) = nodes.get_mut(&p.node) else {
            return false;
        };
        if p.twin.is_some() {
            n.twin = p.twin;
        }
        self.version.fetch_add(1, Ordering::SeqCst);
        let took = p.took.as_secs_f64();
        match p.answer {
            Ok(bytes) => n.answered(&bytes, took, at),
            Err(e) => n.failed(&e.to_string(), took, at),
        }
        n.answered
    }
}

/// The collector's listener: `/metrics` and `/` of what it holds.
pub struct Served(pub Arc<Collected>);

impl Site for Served {
    fn get(&self, path: &str, _query: Option<&str>, accept: &str) -> Response<Full<Bytes>> {
        match path {
            "/metrics" => {
                let format = http::negotiate(accept);
                let body = exposition::render(&self.0, format);
                http::metrics_response(format, body)
            }
            "/" => {
                let mut r = http::response(
                    StatusCode::OK,
                    "text/html; charset=utf-8",
                    page::render(&self.0),
                );
                if let Ok(csp) = HeaderValue::from_str(&page::CSP) {
                    r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, csp);
                }
                r
            }
            _ => http::plain(StatusCode::NOT_FOUND, "not found: try /metrics or /"),
        }
    }
}

/// Who the collector calls as, and its relay connection (made anew when
/// lost).
pub struct Caller {
    pub identity: Arc<Identity>,
    pub twins: Arc<TwinDb>,
    pub relays: Vec<String>,
    client: Option<RmbClient>,
}

impl Caller {
    pub fn new(identity: Arc<Identity>, twins: Arc<TwinDb>, relays: Vec<String>) -> Caller {
        Caller {
            identity,
            twins,
            relays,
            client: None,
        }
    }

    async fn client(&mut self) -> Result<&RmbClient, RmbError> {
        if self.client.as_ref().is_none_or(RmbClient::is_closed) {
            self.client = None;
            let c = RmbClient::connect(
                self.identity.clone(),
                self.twins.clone(),
                &self.relays,
                &RelayOptions::default(),
            )
            .await?;
            self.client = Some(c);
        }
        self.client
            .as_ref()
            .ok_or_else(|| RmbError::Other("no relay connection".into()))
    }
}

/// Polls round after round into [`Collected`].
pub struct Collector {
    pub state: Arc<Collected>,
    graphql: GraphQl,
    caller: Caller,
    options: Options,
}

impl Collector {
    pub fn new(graphql: GraphQl, caller: Caller, options: Options) -> Collector {
        Collector {
            state: Collected::new(options.scope),
            graphql,
            caller,
            options,
        }
    }

    /// One round: list, drop the nodes gone, ask every node held. Fails
    /// only when there is nothing to ask (no listing ever, or no relay).
    pub async fn round(&mut self) -> anyhow::Result<()> {
        let start = Instant::now();
        let o = &self.options;
        let listing = poll::list(&self.graphql, o.scope, o.shard, o.max_nodes).await;
        let (listed_ok, over) = match listing {
            Ok((listed, over)) => {
                self.state.keep_only(&listed);
                (None, over)
            }
            Err(e) => (Some(format!("{e:#}")), self.state.round().over_limit),
        };
        let ids: Vec<u32> = self.state.nodes().keys().copied().collect();
        {
            let mut r = self.state.round.lock().unwrap_or_else(|p| p.into_inner());
            r.over_limit = over;
            r.listed = ids.len();
            r.listing_error = listed_ok.as_deref().map(node::short_error);
            if listed_ok.is_some() {
                r.listing_failures += 1;
            }
        }
        if let Some(e) = &listed_ok {
            tracing::warn!(error = %Escaped(e), "collect: listing the up nodes failed; asking the nodes of the last listing");
        }
        if ids.is_empty() {
            self.state.finish(start, 0);
            anyhow::bail!(
                "{}: no node to ask{}",
                self.state.scope_text(),
                listed_ok.map_or(" (none is up)".into(), |e| format!(": {e}"))
            );
        }
        let (timeout, concurrency) = (o.timeout, o.concurrency);
        let client = match self.caller.client().await {
            Ok(c) => c,
            Err(e) => {
                let at = unix_now();
                for id in &ids {
                    let failed = poll::Polled {
                        node: *id,
                        twin: None,
                        answer: Err(poll::Unanswered::NoConnection(e.clone())),
                        took: Duration::ZERO,
                    };
                    self.state.update(failed, at);
                }
                self.state.finish(start, 0);
                return Err(e.into());
            }
        };
        let mut answered = 0;
        let mut polls = std::pin::pin!(poll::ask_all(client, ids, timeout, concurrency));
        while let Some(p) = polls.next().await {
            if self.state.update(p, unix_now()) {
                answered += 1;
            }
        }
        self.state.finish(start, answered);
        Ok(())
    }

    /// Rounds until `shutdown`: the next one `interval` after the start of
    /// the last, plus a random part of `jitter` (collectors started
    /// together drift apart).
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            let start = Instant::now();
            if let Err(e) = self.round().await {
                tracing::warn!(error = %Escaped(&format!("{e:#}")), "collect: round failed");
            } else {
                let r = self.state.round();
                tracing::info!(
                    nodes = r.listed,
                    answered = r.answered,
                    seconds = r.duration,
                    "collect: round done"
                );
            }
            let jitter_ms = u64::try_from(self.options.jitter.as_millis()).unwrap_or(u64::MAX);
            let extra = Duration::from_millis(rand::random::<u64>() % jitter_ms.saturating_add(1));
            let wait = self.options.interval.saturating_sub(start.elapsed()) + extra;
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

/// Listens on `listen`, then collects round after round, serving what it
/// holds through the daemon's listener (its limits included), until
/// `shutdown`. A taken port fails at once, naming it.
pub async fn serve(
    collector: Collector,
    listen: SocketAddr,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("--listen: cannot listen on {listen}"))?;
    let served = Arc::new(Served(collector.state.clone()));
    let server = tokio::spawn(http::serve(listener, served, shutdown.clone()));
    collector.run(shutdown).await;
    let _ = server.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_drops_the_nodes_gone_and_keeps_the_figures_of_the_others() {
        let c = Collected::new(Scope::Farm(1));
        let l = |node| poll::Listed { node, farm: 1 };
        c.keep_only(&[l(1), l(2), l(3)]);
        let answer = br#"[{"name": "cpu-benchmark", "timestamp": 5, "result": {"single": 2.0}}]"#;
        for node in [1, 2] {
            let p = poll::Polled {
                node,
                twin: Some(node + 100),
                answer: Ok(answer.to_vec()),
                took: Duration::from_millis(5),
            };
            assert!(c.update(p, 10));
        }
        c.keep_only(&[l(2), l(3), l(4)]);
        let nodes = c.nodes();
        assert_eq!(nodes.keys().copied().collect::<Vec<_>>(), [2, 3, 4]);
        assert_eq!(nodes[&2].cpu_single, Some(2.0));
        assert_eq!(nodes[&2].twin, Some(102));
        assert_eq!(nodes[&4].polled_at, 0);
        drop(nodes);
        // A poll of a node no longer held is dropped.
        let late = poll::Polled {
            node: 1,
            twin: None,
            answer: Err(poll::Unanswered::NoAnswer {
                twin: 101,
                after: Duration::from_secs(1),
            }),
            took: Duration::ZERO,
        };
        assert!(!c.update(late, 11));
        assert!(!c.nodes().contains_key(&1));
    }
}
