//! zos-perf: the performance monitor of a ThreeFold zos node.
//!
//! ```text
//! config ──> Monitor ──(runs on schedule)──> tasks: cpu-benchmark | healthcheck | iperf | public-ip-validation
//!               │                                     run(ctx) -> JSON value
//!               ▼
//!            ResultStore  (Redis: perf.<name> = {name, description, timestamp, result}; perf:status)
//!               ▲
//!            bus handler  (RMB local protocol: msgbus.zos.perf.get / .get_all)
//! ```
//!
//! Data takes one road: a task run produces a value, the [`monitor`] stamps it
//! into a [`task::TaskResult`], the [`store`] writes it, the bus reads it. No
//! task knows about Redis or the bus; the bus knows nothing of tasks beyond
//! their names.

pub mod bus;
pub mod child;
pub mod config;
pub mod embedded;
pub mod grid;
pub mod http;
pub mod lease;
pub mod logging;
pub mod monitor;
pub mod redis_link;
pub mod schedule;
pub mod status;
pub mod store;
pub mod task;
pub mod tasks;
