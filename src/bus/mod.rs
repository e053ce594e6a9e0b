//! The bus: `zos.perf.get` and `zos.perf.get_all` (SPEC §4) over the RMB
//! local protocol (`RMB-LOCAL.md`).
//!
//! The RMB peer on the node pushes requests onto `msgbus.zos.perf.get` and
//! `msgbus.zos.perf.get_all`; [`serve`] pops them, answers each from the
//! result store (never from the tasks) and pushes one reply onto the list
//! each request names in `ret`.
//!
//! An operator checks it on a node with the local client, which stands in
//! for the peer:
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
//! - [`message`]: the request and reply types of the protocol.
//! - [`triage`]: what to do with one popped message (answer, drop, expire).
//! - [`commands`]: the two commands and the per-batch store snapshot.
//! - [`handler`]: the serve loop (batching, bounded work, reconnects).
//! - [`client`]: the local client behind `zos-perf call`.
//! - [`error`]: the error codes a reply can carry (the table lives there).

pub mod client;
pub mod commands;
pub mod error;
pub mod fetch;
pub mod handler;
pub mod message;
pub mod triage;

pub use commands::Command;
pub use error::{BusError, ErrorCode};
pub use handler::{serve, Bus, BusStats, StatsSnapshot};
pub use message::{Reply, Request};
