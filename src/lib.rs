//! zos-perf: the performance monitor of a ThreeFold zos node.
//!
//! ```text
//! config ──> Daemon ──> Monitor ──(on schedule)──> tasks: cpu-benchmark | healthcheck | iperf | public-ip-validation
//!                          │                                 run(ctx) -> JSON value
//!                          ▼
//!                     ResultStore  (Redis: perf.<name> = {name, description, timestamp, result}; perf:status)
//!                          ▲
//!                     bus core <── transport (local: Redis lists msgbus.zos.perf.get / .get_all)
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
//! - [`schedule`]: cron schedules, jitter and the clock the monitor reads.
//! - [`tasks`]: the task trait, the registry and one folder per task.
//! - [`store`]: the results and statuses held in memory and mirrored to Redis.
//! - [`redis`]: the Redis connection, the private redis-server, every key name.
//! - [`bus`]: the RMB protocol core and its transports (today: local Redis lists).
//! - [`grid`]: the grid networks, their GraphQL, and the context tasks share.
//! - [`logging`]: a log sink that never blocks or panics, escaping, rate limits.
//! - `util`: backoff, text clipping, the clock in Unix seconds, capped HTTP bodies.
//!
//! The binary (`src/main.rs`, `src/cli/`) parses the command line and
//! calls into these.

pub mod bus;
pub mod config;
pub mod daemon;
pub mod grid;
pub mod logging;
pub mod monitor;
pub mod redis;
pub mod schedule;
pub mod store;
pub mod tasks;
mod util;

pub use config::Config;
pub use daemon::Daemon;
