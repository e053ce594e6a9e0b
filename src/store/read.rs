//! The read side of the store, for the CLI and the bus: plain reads of
//! exactly the keys of the known task names, so their cost never grows with
//! the rest of the keyspace.

use std::collections::BTreeMap;

use anyhow::Context;
use redis::aio::ConnectionLike;

use super::record::TaskResult;
use super::status::TaskStatus;
use crate::redis::keys;
use crate::tasks::NAMES;

/// The keys of every known task's result, in task order.
pub fn result_keys() -> Vec<String> {
    NAMES.iter().map(|n| keys::result(n)).collect()
}

/// The stored JSON of one task's result, as written.
pub async fn read_raw(
    conn: &mut impl ConnectionLike,
    name: &str,
) -> anyhow::Result<Option<String>> {
    let key = keys::result(name);
    redis::cmd("GET")
        .arg(&key)
        .query_async(conn)
        .await
        .with_context(|| format!("reading {key}"))
}

/// The stored JSON of every known task's result, in task order, absent ones
/// left out. One MGET of the known keys: no keyspace walk.
pub async fn read_all_raw(conn: &mut impl ConnectionLike) -> anyhow::Result<Vec<String>> {
    let keys: Vec<String> = NAMES.iter().map(|n| keys::result(n)).collect();
    let values: Vec<Option<String>> = redis::cmd("MGET")
        .arg(&keys)
        .query_async(conn)
        .await
        .context("reading perf.* results")?;
    Ok(values.into_iter().flatten().collect())
}

/// Every stored result, decoded. A value that does not decode is skipped
/// and logged: one bad key must not hide the others.
pub async fn read_all(conn: &mut impl ConnectionLike) -> anyhow::Result<Vec<TaskResult>> {
    let raw = read_all_raw(conn).await?;
    Ok(raw
        .iter()
        .filter_map(|json| match serde_json::from_str::<TaskResult>(json) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(error = %e, "skipping a stored result that does not decode");
                None
            }
        })
        .collect())
}

/// Every task's status from `perf:status`.
pub async fn read_status(
    conn: &mut impl ConnectionLike,
) -> anyhow::Result<BTreeMap<String, TaskStatus>> {
    let raw: BTreeMap<String, String> = redis::cmd("HGETALL")
        .arg(keys::STATUS)
        .query_async(conn)
        .await
        .with_context(|| format!("reading {}", keys::STATUS))?;
    Ok(raw
        .into_iter()
        .filter_map(|(k, v)| serde_json::from_str(&v).ok().map(|s| (k, s)))
        .collect())
}
