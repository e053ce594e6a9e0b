//! The result store (docs/redis.md): `perf.<name>` = the task's latest
//! [`TaskResult`] as JSON, plus the operators' `perf:status` hash.
//!
//! The daemon keeps every result it holds in memory and mirrors it to Redis
//! from one sync loop. Memory is the truth, because on a node Redis keeps
//! nothing on disk: if it restarts empty, the loop notices the missing keys
//! within a second and writes them back. If Redis is away, tasks still run
//! and their results wait in memory until it answers.
//!
//! - [`record`]: the stored record of one run ([`TaskResult`]).
//! - [`status`]: the status entry of each task in `perf:status`.
//! - [`fetch`]: stored values read with their size and type checked inside
//!   Redis first, so a huge or wrong-typed value never travels.
//! - [`read`]: the read side the CLI and the bus use.
//! - [`history`]: the last results of every task, in Redis lists outside
//!   the `perf.` prefix, appended to on every [`ResultStore::put`], with
//!   each result's key figures (read by the task's view,
//!   [`crate::tasks::TaskView`]) kept plain beside it.
//!
//! Longer than most files (about 450 lines): the memory-first writes, the
//! sync loop that mirrors them and the repair of what Redis lost or holds
//! wrongly share one lock and one invariant (memory is the truth, Redis a
//! copy written back within [`SYNC_INTERVAL`] passes); split apart, the
//! loop and the writes it mirrors would each read half the story.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use redis::aio::ConnectionLike;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::node_redis::{keys, RedisLink};

pub mod fetch;
pub mod history;
mod read;
mod record;
mod status;

pub use read::{checked, read_all, read_all_raw, read_raw, read_status, result_keys, MAX_STORED};
pub use record::TaskResult;
pub use status::{Outcome, State, TaskStatus, Writer, RUN_FIELDS};

use history::{History, HistoryConfig};

/// How often the sync loop checks that Redis still holds what we hold.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);

struct Entry<T> {
    value: T,
    json: String,
    synced: bool,
}

#[derive(Default)]
struct Held {
    /// Whether the results already in Redis have been read in.
    loaded: bool,
    results: BTreeMap<String, Entry<TaskResult>>,
    status: BTreeMap<String, Entry<TaskStatus>>,
    /// Keys of disabled tasks still to be deleted from Redis.
    deletes: BTreeSet<String>,
}

/// What one sync pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// Values found missing in Redis and written again.
    pub restored: usize,
}

/// The daemon's store: memory first, mirrored to Redis.
pub struct ResultStore {
    link: RedisLink,
    state: Mutex<Held>,
    wake: Notify,
    /// Every result put is also appended here.
    history: History,
    /// The daemon, or a manual run: which fields of `perf:status` it owns.
    writer: Writer,
    /// Sync passes made (tests count them).
    passes: std::sync::atomic::AtomicU64,
}

impl ResultStore {
    pub fn new(link: RedisLink) -> Arc<ResultStore> {
        Self::with_history(link, &HistoryConfig::default())
    }

    pub fn with_history(link: RedisLink, history: &HistoryConfig) -> Arc<ResultStore> {
        Self::build(link, history, Writer::Daemon)
    }

    /// The store of `run-task`: in `perf:status` it writes only the fields
    /// of the last run, leaving a daemon's schedule and counters alone.
    pub fn for_manual_run(link: RedisLink, history: &HistoryConfig) -> Arc<ResultStore> {
        Self::build(link, history, Writer::Manual)
    }

    fn build(link: RedisLink, history: &HistoryConfig, writer: Writer) -> Arc<ResultStore> {
        Arc::new(ResultStore {
            link,
            state: Mutex::new(Held::default()),
            wake: Notify::new(),
            history: History::new(history),
            writer,
            passes: Default::default(),
        })
    }

    /// Sync passes made so far.
    pub fn sync_passes(&self) -> u64 {
        self.passes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The per-task history of what was put.
    pub fn history(&self) -> &History {
        &self.history
    }

    pub fn link(&self) -> &RedisLink {
        &self.link
    }

    fn state(&self) -> MutexGuard<'_, Held> {
        // A panic elsewhere while holding the lock leaves plain data behind;
        // keep serving it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the results already in Redis, waiting at most `wait` for it to
    /// answer. Returns false if Redis did not answer; the results are then
    /// read in by the sync loop as soon as it does.
    pub async fn load(&self, wait: Duration) -> bool {
        let cancel = CancellationToken::new();
        let conn = tokio::time::timeout(wait, self.link.ready(&cancel))
            .await
            .ok()
            .flatten();
        let Some(mut conn) = conn else { return false };
        match self.adopt(&mut conn).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "reading stored results failed");
                false
            }
        }
    }

    /// Takes into memory the stored results we do not hold yet.
    async fn adopt(&self, conn: &mut impl ConnectionLike) -> anyhow::Result<usize> {
        let stored = read_all(conn).await?;
        let mut st = self.state();
        let mut adopted = 0;
        for r in stored {
            if st.results.contains_key(&r.name) || st.deletes.contains(&keys::result(&r.name)) {
                continue;
            }
            let json = serde_json::to_string(&r)?;
            st.results.insert(
                r.name.clone(),
                Entry {
                    value: r,
                    json,
                    synced: true,
                },
            );
            adopted += 1;
        }
        st.loaded = true;
        Ok(adopted)
    }

    /// Records a new result; it reaches Redis at once if Redis is there.
    pub fn put(&self, result: TaskResult) -> anyhow::Result<()> {
        let json = serde_json::to_string(&result)
            .with_context(|| format!("encoding result of {}", result.name))?;
        self.history.append(&result, &json);
        self.state().results.insert(
            result.name.clone(),
            Entry {
                value: result,
                json,
                synced: false,
            },
        );
        self.wake.notify_one();
        Ok(())
    }

    /// The latest result held for a task.
    pub fn latest(&self, name: &str) -> Option<TaskResult> {
        self.state().results.get(name).map(|e| e.value.clone())
    }

    /// Forgets a task's result here and in Redis (a disabled task).
    pub fn remove(&self, name: &str) {
        let mut st = self.state();
        st.results.remove(name);
        st.status.remove(name);
        st.deletes.insert(keys::result(name));
        drop(st);
        self.wake.notify_one();
    }

    /// The status held for a task.
    pub fn status(&self, name: &str) -> Option<TaskStatus> {
        self.state().status.get(name).map(|e| e.value.clone())
    }

    /// Changes a task's status and publishes it.
    pub fn update_status(&self, name: &str, change: impl FnOnce(&mut TaskStatus)) {
        let mut st = self.state();
        let entry = st.status.entry(name.to_string()).or_insert_with(|| Entry {
            value: TaskStatus::default(),
            json: String::new(),
            synced: false,
        });
        change(&mut entry.value);
        match serde_json::to_string(&entry.value) {
            Ok(json) => {
                entry.json = json;
                entry.synced = false;
            }
            Err(e) => tracing::error!(task = name, error = %e, "cannot encode task status"),
        }
        drop(st);
        self.wake.notify_one();
    }

    /// Mirrors memory to Redis until `shutdown`, then makes a last pass.
    pub async fn sync_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut failing = false;
        // Whether the last pass was an immediate re-check: one in a row at
        // most, so keys that keep vanishing (eviction under maxmemory, a
        // script deleting them) cost two passes per interval, not a spin.
        let mut rechecked = false;
        loop {
            // A pass against a Redis that has gone away can take seconds
            // (the connection's own reconnect attempts); shutdown does not
            // wait for it. Dropping a pass is safe: nothing is marked synced
            // before Redis has answered, and the last pass below redoes it.
            let pass = tokio::select! {
                r = self.sync_once() => r,
                _ = shutdown.cancelled() => break,
            };
            match pass {
                Ok(Some(report)) => {
                    if failing {
                        tracing::info!("redis answers again; results are in sync");
                        failing = false;
                    }
                    if report.restored > 0 {
                        tracing::warn!(
                            restored = report.restored,
                            "redis had lost results (restarted empty?); wrote them back"
                        );
                        // Look again at once: the write-back is confirmed by
                        // the next pass rather than assumed. Once only.
                        if !rechecked {
                            rechecked = true;
                            continue;
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %format!("{e:#}"), "cannot sync results to redis; will retry");
                        failing = true;
                    }
                }
            }
            rechecked = false;
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(SYNC_INTERVAL) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        if let Err(e) = tokio::time::timeout(Duration::from_secs(1), self.sync_once()).await {
            tracing::debug!(error = %e, "last sync before exit did not finish");
        }
    }

    /// One pass: deletes, writes what changed, checks that what was written
    /// is still there. `Ok(None)` when Redis is not connected.
    pub async fn sync_once(&self) -> anyhow::Result<Option<SyncReport>> {
        let Some(mut conn) = self.link.get() else {
            return Ok(None);
        };
        self.passes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut report = SyncReport::default();
        if !self.state().loaded {
            self.adopt(&mut conn).await?;
        }

        // Snapshot under the lock; talk to Redis without it.
        let (deletes, writes, present, status_writes, status_present) = {
            let st = self.state();
            let deletes: Vec<String> = st.deletes.iter().cloned().collect();
            let writes: Vec<(String, String)> = st
                .results
                .iter()
                .filter(|(_, e)| !e.synced)
                .map(|(n, e)| (n.clone(), e.json.clone()))
                .collect();
            let present: Vec<String> = st
                .results
                .iter()
                .filter(|(_, e)| e.synced)
                .map(|(n, _)| n.clone())
                .collect();
            let status_writes: Vec<(String, String)> = st
                .status
                .iter()
                .filter(|(_, e)| !e.synced)
                .map(|(n, e)| (n.clone(), e.json.clone()))
                .collect();
            // With the value checked against: an entry that changes while
            // the pass waits for Redis is compared with what was written,
            // not with its newer value (that would look like a loss).
            let status_present: Vec<(String, TaskStatus, String)> = st
                .status
                .iter()
                .filter(|(_, e)| e.synced)
                .map(|(n, e)| (n.clone(), e.value.clone(), e.json.clone()))
                .collect();
            (deletes, writes, present, status_writes, status_present)
        };

        let mut pipe = redis::pipe();
        for key in &deletes {
            pipe.del(key).ignore();
            if let Some(name) = keys::task_of(key) {
                pipe.hdel(keys::STATUS, name).ignore();
            }
        }
        for (name, json) in &writes {
            pipe.set(keys::result(name), json).ignore();
        }
        for (name, json) in &status_writes {
            pipe.add_command(status::merge_cmd(keys::STATUS, name, json, self.writer))
                .ignore();
        }
        for name in &present {
            // STRLEN, not EXISTS: a key of ours turned into another type
            // fails the pass (and is repaired) instead of passing for present.
            pipe.cmd("STRLEN").arg(keys::result(name));
        }
        for (name, _, _) in &status_present {
            // The entry itself, not HEXISTS: another writer (an old
            // `run-task`) may have overwritten our schedule or counters.
            pipe.hget(keys::STATUS, name);
        }
        if present.is_empty() && status_present.is_empty() {
            // Nothing to check: still make one round trip so that a dead
            // connection is noticed (and re-made) now.
            pipe.cmd("PING").ignore();
        }
        let found: Vec<redis::Value> = match pipe.query_async(&mut conn).await {
            Ok(found) => found,
            Err(e) => {
                if !e.is_io_error() && !e.is_timeout() {
                    // Most likely a key of ours turned into another type:
                    // put it right, so that the next pass goes through.
                    let mut ours: Vec<String> = vec![keys::STATUS.to_string()];
                    ours.extend(writes.iter().map(|(n, _)| keys::result(n)));
                    ours.extend(present.iter().map(|n| keys::result(n)));
                    repair(&mut conn, &ours).await;
                }
                return Err(e)
                    .with_context(|| format!("syncing results to redis at {}", self.link.url()));
            }
        };

        {
            let mut st = self.state();
            for key in &deletes {
                st.deletes.remove(key);
            }
            for (name, json) in &writes {
                if let Some(e) = st.results.get_mut(name) {
                    // Only if no newer result came in meanwhile.
                    if &e.json == json {
                        e.synced = true;
                    }
                }
            }
            for (name, json) in &status_writes {
                if let Some(e) = st.status.get_mut(name) {
                    if &e.json == json {
                        e.synced = true;
                    }
                }
            }
            for (name, there) in present.iter().zip(&found) {
                if !matches!(there, redis::Value::Int(n) if *n > 0) {
                    if let Some(e) = st.results.get_mut(name) {
                        e.synced = false;
                        report.restored += 1;
                    }
                }
            }
            let writer = self.writer;
            for ((name, written, json), there) in status_present.iter().zip(&found[present.len()..])
            {
                if let Some(e) = st.status.get_mut(name) {
                    // Changed meanwhile: the next pass writes it anyway.
                    if &e.json == json && !status_holds(there, written, writer) {
                        e.synced = false;
                        report.restored += 1;
                    }
                }
            }
        }
        // The lock is released before the history's own round trip.
        let history = self.history.sync_once(&mut conn).await?;
        report.restored += history.rewritten;
        Ok(Some(report))
    }
}

/// Whether the entry Redis holds (`there`, an HGET's answer) is still what
/// `writer` wrote: present, and for the daemon with its own schedule and
/// counters (a manual run changes only the last run's fields).
fn status_holds(there: &redis::Value, ours: &TaskStatus, writer: Writer) -> bool {
    let bytes = match there {
        redis::Value::BulkString(b) => b,
        _ => return false,
    };
    match writer {
        Writer::Manual => true,
        Writer::Daemon => serde_json::from_slice::<TaskStatus>(bytes)
            .is_ok_and(|held| held.same_schedule_and_counters(ours)),
    }
}

/// Deletes those of `ours` (perf:status, result keys) that hold another
/// type than the store writes there, logging each: they are ours, and as
/// they are, every sync would fail. The next pass writes them afresh.
async fn repair(conn: &mut impl ConnectionLike, ours: &[String]) {
    for key in ours {
        let want = if key == keys::STATUS {
            "hash"
        } else {
            "string"
        };
        let kind: redis::RedisResult<String> = redis::cmd("TYPE").arg(key).query_async(conn).await;
        match kind {
            Ok(kind) if kind != want && kind != "none" => {
                let deleted: redis::RedisResult<i64> =
                    redis::cmd("DEL").arg(key).query_async(conn).await;
                tracing::warn!(key = %key, held = %kind, expected = want, deleted = deleted.is_ok(),
                    "a key of ours held another type; replaced");
            }
            _ => {}
        }
    }
}
