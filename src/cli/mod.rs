//! The implementations of the commands of `zos-perf`, one file per group:
//! [`run`] (the daemon, one task now), [`tasks`] (the task table),
//! [`results`] (stored results), [`call`] (the bus, as the RMB peer calls it).

pub mod call;
pub mod results;
pub mod run;
pub mod tasks;

use anyhow::Context;
use zos_perf::config::Config;
use zos_perf::redis::server;
use zos_perf::tasks::{canonical, NAMES};

/// The canonical spelling of a task name given on the command line.
pub fn task_name(name: &str) -> anyhow::Result<&'static str> {
    canonical(name)
        .ok_or_else(|| anyhow::anyhow!("unknown task {name:?} (known: {})", NAMES.join(", ")))
}

/// Prints stored JSON, pretty.
pub fn print_json(raw: &str) -> anyhow::Result<()> {
    let value: serde_json::Value = serde_json::from_str(raw).context("stored value is not JSON")?;
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

/// The Redis the read-only commands talk to.
pub async fn reader_url(config: &Config, default_redis: &str) -> anyhow::Result<String> {
    server::reader_url(config.redis.as_deref(), default_redis).await
}
