//! The grid around the node: which network it belongs to and that network's
//! services (SPEC §6), and its GraphQL.

pub mod chain;
pub mod graphql;
pub mod network;

pub use network::Network;
