//! zos-perf: the performance monitor of a ThreeFold zos node.
//!
//! ```text
//! config ──> Daemon ──> Monitor ──(on schedule)──> tasks: cpu-benchmark | healthcheck | iperf
//!                          │                              | public-ip-validation | provisiontest
//!                          │                              run(ctx) -> JSON value
//!                          ▼
//!                     ResultStore  (Redis: perf.<name> = {name, description, timestamp, result}; perf:status)
//!                          ▲
//!                     bus core <── transports: local (Redis lists msgbus.zos.perf.get / .get_all / .history)
//!                          ▲                   and relay (the grid's RMB relay over WebSocket, [bus.relay])
//!                     outputs  (Prometheus /metrics, node_exporter textfile, dashboard /)
//! ```
//!
//! Data takes one road: a task run produces a value, the [`monitor`] stamps
//! it into a [`store::TaskResult`], the [`store`] writes it, the bus reads
//! it. No task knows about Redis or the bus; the bus knows nothing of tasks
//! beyond their names. docs/architecture.md walks the flow and says where a
//! new task, transport or output goes.
//!
//! # Crate map
//!
//! - [`daemon`]: starts every part and stops them in order (`zos-perf run`).
//! - [`config`]: the configuration file, environment and flags, composed of sections.
//! - [`monitor`]: the scheduler: fires tasks, times them out, records outcomes.
//! - [`schedule`]: cron schedules, jitter and the `Timekeeper` (wall time, waiting) the monitor reads.
//! - [`tasks`]: the task trait, the registry and one folder per task.
//! - [`clock_check`]: the clock check beside the monitor: the node's clock against tfchain and HTTP time.
//! - [`store`]: the results, statuses and per-task history held in memory and mirrored to Redis.
//! - [`node_redis`]: the node's Redis: the connection, the private redis-server, every key name.
//! - [`bus`]: the RMB protocol core and its two transports: local Redis lists, and the relay.
//! - [`outputs`]: Prometheus metrics, the node_exporter textfile, the dashboard page.
//! - [`collect`]: `zos-perf collect`, the collector of a farm's or the grid's nodes (`/metrics`, a fleet page).
//! - [`grid`]: the grid networks, their GraphQL, the chain's JSON-RPC, and the context tasks share.
//! - [`fleet`]: the up nodes of a farm or the grid, asked over the relay with bounded concurrency, answers streamed.
//! - [`rmb`]: RMB over the relay: identity, envelope, signature, JWT, encryption, twin lookups, relay client.
//! - [`logging`]: a log sink that never blocks or panics, escaping, rate limits.
//! - `util`: backoff, text clipping, Unix time (`unix_time`), capped HTTP bodies.
//!
//! The binary (`src/main.rs`, `src/cli/`) parses the command line and
//! calls into these.

pub mod bus;
pub mod clock_check;
pub mod collect;
pub mod config;
pub mod daemon;
pub mod fleet;
pub mod grid;
pub mod logging;
pub mod monitor;
pub mod node_redis;
pub mod outputs;
pub mod rmb;
pub mod schedule;
pub mod service;
pub mod store;
pub mod tasks;
mod util;

/// Keeping the idle daemon small (the binary calls it at start and once
/// started).
pub use util::memory;
/// Escaping text from outside before it reaches a terminal or a log line
/// (the CLI prints remote answers and stored values).
pub use util::text;
/// The wall clock in Unix seconds, read in one place (the CLI and the tests
/// stamp requests with it too).
pub use util::unix_time;

pub use config::Config;
pub use daemon::Daemon;
