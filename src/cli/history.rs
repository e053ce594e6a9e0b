//! `zos-perf history NAME`: a task's stored history, as a table of key
//! figures with their trend, or as the stored records (`--json`).

use zos_perf::config::Config;
use zos_perf::node_redis;
use zos_perf::outputs::terminal;
use zos_perf::store::{history, TaskResult};

use super::{reader_url, task_name};

/// `history NAME [--limit N] [--json]`.
pub async fn show(
    config: &Config,
    default_redis: &str,
    name: &str,
    limit: usize,
    json: bool,
) -> anyhow::Result<()> {
    let name = task_name(name)?;
    let mut conn = node_redis::connect_once(&reader_url(config, default_redis).await?).await?;
    let key = history::key_of(name);
    let records = history::read(&mut conn, name, limit).await?;
    if records.is_empty() {
        return Err(super::error::CliError::msg(
            super::error::Exit::NotFound,
            format!("{name}: no history stored ({key})"),
        )
        .into());
    }
    let mut values = Vec::new();
    for (i, raw) in records.iter().enumerate() {
        match serde_json::from_str::<serde_json::Value>(raw) {
            Ok(v) => values.push(v),
            Err(e) => errln!("zos-perf: {key}[{i}] is not JSON, skipped: {e}"),
        }
    }
    if json {
        outln!("{}", super::json(&values)?);
        return Ok(());
    }
    let results: Vec<TaskResult> = values
        .into_iter()
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect();
    out!("{}", terminal::history_table(name, &results));
    Ok(())
}
