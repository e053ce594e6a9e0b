//! The grid around the node: which network it belongs to and that
//! network's services, the grid's GraphQL, and the [`GridContext`] every
//! task is built with.

pub mod chain;
mod config;
pub mod graphql;
pub(crate) mod network;

use std::time::Duration;

pub use config::GridConfig;
pub use graphql::GraphQl;
pub use network::Network;

/// What a task may know of the node's place in the grid: shared by every
/// task, next to its own configuration section.
#[derive(Debug, Clone, PartialEq)]
pub struct GridContext {
    pub network: Network,
    /// This node's farm.
    pub farm_id: Option<u32>,
    /// This node's id.
    pub node_id: Option<u32>,
    /// The GraphQL URLs to try, in order.
    pub graphql_urls: Vec<String>,
    /// Per-request timeout of the GraphQL.
    pub graphql_timeout: Duration,
}

impl GridContext {
    /// The context of a node of `network`, with its `[grid]` section.
    pub fn new(network: Network, grid: &GridConfig) -> GridContext {
        let graphql_urls = match &grid.graphql_urls {
            Some(urls) => urls.clone(),
            None => network
                .graphql_urls()
                .iter()
                .map(|u| u.to_string())
                .collect(),
        };
        GridContext {
            network,
            farm_id: None,
            node_id: None,
            graphql_urls,
            graphql_timeout: grid.graphql_timeout,
        }
    }

    /// A GraphQL client of this context's URLs.
    pub fn graphql(&self) -> Result<GraphQl, graphql::GraphQlError> {
        GraphQl::new(self.graphql_urls.clone(), self.graphql_timeout)
    }
}
