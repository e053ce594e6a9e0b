//! The bus: `zos.perf.get` and `zos.perf.get_all` (docs/bus.md), and our
//! extension `zos.perf.history` (docs/observability.md), answered from the
//! result store, never from the tasks.
//!
//! The core knows the protocol and nothing of how messages travel:
//!
//! - [`message`]: the request and reply envelopes.
//! - [`triage`]: what to do with one received message (answer, drop, expire).
//! - [`commands`]: the commands and their payloads.
//! - [`history`]: `zos.perf.history`, an extension of ours.
//! - [`snapshot`]: the store as one batch of requests sees it, read with
//!   [`fetch`] (bounded inside Redis).
//! - [`error`]: the error codes a reply can carry (the table lives there).
//! - [`batch`]: the one entry of a transport: raw requests in, replies out.
//! - [`stats`]: the counters.
//! - [`config`]: the `[bus]` section.
//!
//! A transport moves messages. Today there is one, [`local`]: the RMB peer
//! on the node pushes requests onto `msgbus.zos.perf.get` /
//! `msgbus.zos.perf.get_all`; the local transport pops them, hands them to
//! [`batch`] with a [`snapshot`] of the store, and pushes each reply onto
//! the list the request names in `ret`. Its client stands in for the peer:
//!
//! ```text
//! $ zos-perf call zos.perf.get '{"Name": "cpu-benchmark"}'
//! {
//!   "name": "cpu-benchmark",
//!   "description": "Measures the performance of the node CPU by ...",
//!   "timestamp": 1700000000,
//!   "result": { "single": 1.234, "multi": 5.678, "threads": 4, "workloads": 0 }
//! }
//! $ zos-perf call zos.perf.get '{"Name": "iperf"}'
//! zos-perf: zos.perf.get: error 7 (result not found): result not found
//! ```
//!
//! The second transport, [`relay`], puts the daemon itself on the grid's
//! relay (`[bus.relay] enabled = true`) and answers through the same
//! commands and store snapshot.

pub mod batch;
pub mod commands;
mod config;
pub mod error;
mod history;
pub mod local;
pub mod message;
pub mod relay;
pub mod snapshot;
mod stats;
pub mod triage;

pub use commands::Command;
pub use config::BusConfig;
pub use error::{BusError, ErrorCode};
pub use local::{serve, Bus};
pub use message::{Reply, Request};
pub use stats::{BusStats, StatsSnapshot};
