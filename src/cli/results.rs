//! `zos-perf get` and `zos-perf get-all`: the stored results, as stored.

use zos_perf::config::Config;
use zos_perf::redis;
use zos_perf::store;

use super::{print_json, reader_url, task_name};

/// `get NAME`: one task's stored result.
pub async fn get(config: &Config, default_redis: &str, name: &str) -> anyhow::Result<()> {
    let name = task_name(name)?;
    let mut conn = redis::connect_once(&reader_url(config, default_redis).await?).await?;
    match store::read_raw(&mut conn, name).await? {
        Some(json) => print_json(&json),
        None => anyhow::bail!("{name}: result not found"),
    }
}

/// `get-all`: every stored result as one JSON array.
pub async fn get_all(config: &Config, default_redis: &str) -> anyhow::Result<()> {
    let mut conn = redis::connect_once(&reader_url(config, default_redis).await?).await?;
    let all = store::read_all_raw(&mut conn).await?;
    print_json(&format!("[{}]", all.join(",")))
}
