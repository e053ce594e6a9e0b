//! History: the last `depth` results of every task, newest first, so a
//! farmer sees how a figure moves over days rather than one value.
//!
//! Each stored result is also pushed onto the Redis list
//! `zos-perf:history:<name>` (newest at the head, trimmed to `depth`). The
//! key lives outside the `perf.` prefix on purpose: readers that scan
//! `perf.*` for results never see it.
//!
//! Like the results, memory is the truth: Redis on a node keeps nothing on
//! disk. The store's sync pass calls [`History::sync_once`], which pushes
//! what is new and checks each list's length; a list shorter or longer than
//! what memory holds (Redis restarted empty, someone trimmed it) is written
//! back whole on the next pass. Records are kept in memory deflated: an
//! iperf result of a big farm is tens of KiB of very repetitive JSON, and
//! 120 of them must not cost the daemon megabytes. Beside each record its
//! key figures are kept plain, so the dashboard charts the history without
//! inflating or parsing anything.

use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use anyhow::Context;
use redis::aio::ConnectionLike;
use serde::Deserialize;

use super::TaskResult;
use crate::node_redis::keys;
use crate::tasks::view::{key_figures, Figure};
use crate::tasks::NAMES;

/// Results kept per task when configuration says nothing: a month of the
/// six-hourly measurements, a day and a quarter of the healthcheck.
pub const DEFAULT_DEPTH: usize = 120;
/// The most a configuration may ask for.
pub const MAX_DEPTH: usize = 10_000;
/// Records read per round trip at start-up. One: a big iperf result
/// parsed is a few hundred KiB for a moment, and the allocator keeps what
/// a larger peak took (BENCHMARKS.md, section metrics); a few hundred
/// round trips on the local socket once at start cost less.
const ADOPT_CHUNK: usize = 1;
/// Lists with nothing to push are checked every this many passes.
const CHECK_EVERY: u64 = 5;

/// The Redis key of a task's history (spelled in [`keys::history`]).
pub fn key_of(name: &str) -> String {
    keys::history(name)
}

/// `[history]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    /// Results kept per task; 0 keeps none (and writes no list).
    pub depth: usize,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            depth: DEFAULT_DEPTH,
        }
    }
}

impl HistoryConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.depth > MAX_DEPTH {
            anyhow::bail!(
                "history.depth: {} is more than the limit of {MAX_DEPTH}",
                self.depth
            );
        }
        Ok(())
    }
}

/// A record's time and key figures, what the dashboard draws.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub timestamp: i64,
    pub figures: Vec<Figure>,
}

impl Summary {
    fn of(result: &TaskResult) -> Summary {
        Summary {
            timestamp: result.timestamp,
            figures: key_figures(&result.name, &result.result),
        }
    }
}

struct Record {
    deflated: Vec<u8>,
    summary: Summary,
}

/// One task's history in memory, newest first.
#[derive(Default)]
struct Track {
    records: VecDeque<Record>,
    /// How many of the newest records Redis has not been given yet.
    pending: usize,
    /// Redis's list no longer matches: write it back whole.
    rewrite: bool,
}

#[derive(Default)]
struct State {
    loaded: bool,
    tracks: BTreeMap<String, Track>,
}

/// What one sync pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HistoryReport {
    pub pushed: usize,
    pub rewritten: usize,
    pub adopted: usize,
}

/// The daemon's history of every task.
pub struct History {
    depth: usize,
    state: Mutex<State>,
    passes: AtomicU64,
}

fn deflate(json: &str) -> Vec<u8> {
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = e.write_all(json.as_bytes());
    let mut bytes = e.finish().unwrap_or_default();
    // The encoder grows its Vec by doubling; 120 records per task would
    // otherwise keep up to twice their size.
    bytes.shrink_to_fit();
    bytes
}

fn inflate(bytes: &[u8]) -> String {
    let mut out = String::new();
    if let Err(e) = flate2::read::DeflateDecoder::new(bytes).read_to_string(&mut out) {
        // Only this module deflates these bytes; say so rather than panic.
        tracing::error!(error = %e, "history record in memory does not inflate");
    }
    out
}

/// `json` as a result of task `name`, if it is one: Redis is open to
/// anyone on the node, and a stranger's value must not end up in the
/// history.
fn result_of(name: &str, json: &str) -> Option<TaskResult> {
    serde_json::from_str::<TaskResult>(json)
        .ok()
        .filter(|r| r.name == name)
}

impl History {
    pub fn new(config: &HistoryConfig) -> History {
        History {
            depth: config.depth.min(MAX_DEPTH),
            state: Mutex::default(),
            passes: AtomicU64::new(0),
        }
    }

    pub fn depth(&self) -> usize {
        self.depth
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a stored result and its JSON as written to `perf.<name>`.
    pub fn append(&self, result: &TaskResult, json: &str) {
        if self.depth == 0 {
            return;
        }
        let record = Record {
            deflated: deflate(json),
            summary: Summary::of(result),
        };
        let mut st = self.state();
        let track = st.tracks.entry(result.name.clone()).or_default();
        track.records.push_front(record);
        track.records.truncate(self.depth);
        track.pending = (track.pending + 1).min(self.depth);
    }

    /// The newest `limit` records of a task, newest first, as JSON.
    pub fn recent(&self, name: &str, limit: usize) -> Vec<String> {
        let st = self.state();
        st.tracks
            .get(name)
            .map(|t| {
                t.records
                    .iter()
                    .take(limit)
                    .map(|r| inflate(&r.deflated))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The time and key figures of every record of a task, newest first.
    pub fn summaries(&self, name: &str) -> Vec<Summary> {
        let st = self.state();
        st.tracks
            .get(name)
            .map(|t| t.records.iter().map(|r| r.summary.clone()).collect())
            .unwrap_or_default()
    }

    /// Records held for a task.
    pub fn len(&self, name: &str) -> usize {
        self.state().tracks.get(name).map_or(0, |t| t.records.len())
    }

    /// Reads the lists already in Redis into memory, once, below what this
    /// run has recorded meanwhile (those are newer).
    async fn adopt(&self, conn: &mut impl ConnectionLike) -> anyhow::Result<usize> {
        let mut read: Vec<(&str, Vec<Record>, usize)> = Vec::new();
        for name in NAMES {
            let key = key_of(name);
            let (mut good, mut seen) = (Vec::new(), 0);
            while seen < self.depth {
                let want = ADOPT_CHUNK.min(self.depth - seen);
                let chunk: Vec<String> = redis::cmd("LRANGE")
                    .arg(&key)
                    .arg(seen)
                    .arg(seen + want - 1)
                    .query_async(conn)
                    .await
                    .with_context(|| format!("reading {key}"))?;
                seen += chunk.len();
                good.extend(chunk.iter().filter_map(|json| {
                    result_of(name, json).map(|r| Record {
                        deflated: deflate(json),
                        summary: Summary::of(&r),
                    })
                }));
                if chunk.len() < want {
                    break;
                }
            }
            read.push((name, good, seen));
        }
        let mut st = self.state();
        let mut adopted = 0;
        for (name, good, seen) in read {
            let track = st.tracks.entry(name.to_string()).or_default();
            if good.len() != seen {
                tracing::warn!(key = %key_of(name), dropped = seen - good.len(),
                    "history list holds values that are not results of this task; rewriting it");
                track.rewrite = true;
            }
            adopted += good.len();
            track.records.extend(good);
            track.records.truncate(self.depth);
        }
        st.loaded = true;
        Ok(adopted)
    }

    /// One pass: adopt (first time), push new records, write back lists
    /// that do not match, and check every list's length.
    pub async fn sync_once(&self, conn: &mut impl ConnectionLike) -> anyhow::Result<HistoryReport> {
        let mut report = HistoryReport::default();
        if self.depth == 0 {
            return Ok(report);
        }
        if !self.state().loaded {
            report.adopted = self.adopt(conn).await?;
        }
        // With nothing to write, the lengths are checked every few passes
        // only: a lost list still comes back within seconds.
        let pass = self.passes.fetch_add(1, Ordering::Relaxed);
        let work = self
            .state()
            .tracks
            .values()
            .any(|t| t.pending > 0 || t.rewrite);
        if !work && !pass.is_multiple_of(CHECK_EVERY) {
            return Ok(report);
        }
        enum Op {
            Rewrite(Vec<String>),
            Push(Vec<String>),
            Check,
        }
        // Snapshot under the lock; talk to Redis without it.
        let plan: Vec<(String, Op, usize, usize)> = {
            let st = self.state();
            st.tracks
                .iter()
                .filter(|(_, t)| !t.records.is_empty() || t.rewrite)
                .map(|(name, t)| {
                    let op = if t.rewrite {
                        Op::Rewrite(t.records.iter().map(|r| inflate(&r.deflated)).collect())
                    } else if t.pending > 0 {
                        Op::Push(
                            t.records
                                .iter()
                                .take(t.pending)
                                .map(|r| inflate(&r.deflated))
                                .collect(),
                        )
                    } else {
                        Op::Check
                    };
                    (name.clone(), op, t.pending, t.records.len())
                })
                .collect()
        };
        if plan.is_empty() {
            return Ok(report);
        }
        let mut pipe = redis::pipe();
        for (name, op, _, _) in &plan {
            let key = key_of(name);
            match op {
                Op::Rewrite(all) => {
                    pipe.del(&key).ignore();
                    if !all.is_empty() {
                        pipe.rpush(&key, all).ignore();
                    }
                }
                Op::Push(new) => {
                    // LPUSH puts its last argument at the head: oldest first.
                    let oldest_first: Vec<&String> = new.iter().rev().collect();
                    pipe.lpush(&key, oldest_first).ignore();
                    pipe.ltrim(&key, 0, self.depth as isize - 1).ignore();
                }
                Op::Check => {}
            }
            pipe.llen(&key);
        }
        let lengths: Vec<usize> = pipe
            .query_async(conn)
            .await
            .context("syncing the history lists")?;

        let mut st = self.state();
        for ((name, op, pending, expected), len) in plan.iter().zip(lengths) {
            let Some(t) = st.tracks.get_mut(name) else {
                continue;
            };
            match op {
                Op::Rewrite(_) => {
                    t.rewrite = false;
                    t.pending = t.pending.saturating_sub(*pending);
                    report.rewritten += 1;
                }
                Op::Push(new) => {
                    t.pending = t.pending.saturating_sub(*pending);
                    report.pushed += new.len();
                }
                Op::Check => {}
            }
            if len != *expected {
                if !matches!(op, Op::Rewrite(_)) {
                    tracing::warn!(key = %key_of(name), found = len, expected,
                        "history list does not match memory (redis restarted empty?); writing it back");
                }
                t.rewrite = true;
            }
        }
        Ok(report)
    }
}

/// The newest `limit` records of a task's history in Redis, newest first.
pub async fn read(
    conn: &mut impl ConnectionLike,
    name: &str,
    limit: usize,
) -> anyhow::Result<Vec<String>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let key = key_of(name);
    redis::cmd("LRANGE")
        .arg(&key)
        .arg(0)
        .arg(limit.min(MAX_DEPTH) as i64 - 1)
        .query_async(conn)
        .await
        .with_context(|| format!("reading {key}"))
}

#[cfg(test)]
mod tests;
