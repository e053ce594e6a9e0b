//! The read side of the store, for the CLI and the bus: plain reads of
//! exactly the keys of the known task names, so their cost never grows with
//! the rest of the keyspace.

use std::collections::BTreeMap;

use anyhow::Context;
use redis::aio::ConnectionLike;

use super::fetch::Fetched;
use super::record::TaskResult;
use super::status::TaskStatus;
use crate::node_redis::keys;
use crate::tasks::NAMES;

/// The keys of every known task's result, in task order.
pub fn result_keys() -> Vec<String> {
    NAMES.iter().map(|n| keys::result(n)).collect()
}

/// The largest stored value read; a result is a few KiB. Its length is
/// read first, so a huge value costs nothing.
pub const MAX_STORED: usize = 4 * 1024 * 1024;

/// The stored JSON of one task's result, as written. A value that is not a
/// string, too large, not UTF-8 or not JSON is an error naming the key.
pub async fn read_raw(
    conn: &mut impl ConnectionLike,
    name: &str,
) -> anyhow::Result<Option<String>> {
    let key = keys::result(name);
    let mut all = read_checked(conn, &[key]).await?;
    all.pop().unwrap_or(Ok(None))
}

/// The stored JSON of every known task's result, in task order, absent ones
/// left out; a value that cannot be served is skipped with a warning naming
/// its key (one bad key must not hide the others). One script reading
/// exactly the known keys: no keyspace walk.
pub async fn read_all_raw(conn: &mut impl ConnectionLike) -> anyhow::Result<Vec<String>> {
    let checked = read_checked(conn, &result_keys()).await?;
    Ok(checked
        .into_iter()
        .filter_map(|r| match r {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %crate::logging::Escaped(&format!("{e:#}")), "skipping a stored result");
                None
            }
        })
        .collect())
}

/// Reads `keys` as bytes, lengths first, and checks each value is JSON.
async fn read_checked(
    conn: &mut impl ConnectionLike,
    keys: &[String],
) -> anyhow::Result<Vec<anyhow::Result<Option<String>>>> {
    let fetched = super::fetch::fetch(conn, keys, MAX_STORED)
        .await
        .with_context(|| format!("reading {}", keys.join(", ")))?;
    Ok(keys
        .iter()
        .zip(fetched)
        .map(|(key, f)| checked(key, f))
        .collect())
}

/// One fetched value, checked: JSON text, or an error naming the key.
pub fn checked(key: &str, fetched: Fetched) -> anyhow::Result<Option<String>> {
    match fetched {
        Fetched::Absent => Ok(None),
        Fetched::TooLarge(n) => {
            anyhow::bail!("{key}: stored value is {n} bytes; the limit is {MAX_STORED}")
        }
        Fetched::WrongType(t) => anyhow::bail!("{key}: holds a {t}, not a stored result"),
        Fetched::Bytes(bytes) => {
            let text = String::from_utf8(bytes)
                .map_err(|e| anyhow::anyhow!("{key}: stored value is not UTF-8 ({e})"))?;
            serde_json::from_str::<serde_json::Value>(&text)
                .map_err(|e| anyhow::anyhow!("{key}: stored value is not JSON ({e})"))?;
            Ok(Some(text))
        }
    }
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
