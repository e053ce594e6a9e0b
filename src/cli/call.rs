//! `zos-perf call`: a bus command through Redis, the way the RMB peer sends it.

use std::time::Duration;

use zos_perf::bus::local::client;
use zos_perf::config::Config;
use zos_perf::redis;

use super::reader_url;

/// Calls `cmd` with `payload` and prints the result.
pub async fn call(
    config: &Config,
    default_redis: &str,
    cmd: &str,
    payload: Option<String>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let redis = redis::client(&reader_url(config, default_redis).await?)?;
    let payload = payload.unwrap_or_default();
    let reply = client::call(&redis, cmd, payload.as_bytes(), timeout).await?;
    let result = reply.result().map_err(|e| anyhow::anyhow!("{cmd}: {e}"))?;
    println!("{}", client::pretty(&result));
    Ok(())
}
