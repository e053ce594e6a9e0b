//! What operators see of each task: the Redis hash `perf:status`, one JSON
//! field per task. It lives outside the `perf.` key space on purpose, so no
//! reader of results ever mistakes it for one.
//!
//! Two kinds of process write an entry: the daemon, which owns the
//! schedule and the counters, and `zos-perf run-task`, which owns only the
//! fields of the last run ([`RUN_FIELDS`]). Every write goes through one
//! Lua script ([`MERGE`]) that merges, atomically, what the writer owns
//! into the entry Redis holds: a manual run beside a daemon changes the
//! last run's fields and nothing else, and the daemon keeps a newer manual
//! run's fields (by `last_attempt`) when it writes its own.

use serde::{Deserialize, Serialize};

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Finished and stored its result.
    Ok,
    /// Returned an error; the previous result was kept.
    Failed,
    /// Ran past its timeout and was cancelled.
    Timeout,
    /// Panicked; caught, the daemon went on.
    Panicked,
    /// Cancelled by shutdown.
    Cancelled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Timeout => "timeout",
            Outcome::Panicked => "panicked",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// Where a task is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Waiting for its next fire time.
    #[default]
    Idle,
    /// Fired; sleeping its jitter or waiting for another exclusive task.
    Waiting,
    Running,
}

/// One task's field in `perf:status`.
///
/// The daemon writes one for every task it knows, enabled or not, with the
/// settings it runs it with: `zos-perf tasks` shows those, not its own
/// configuration's. Fields added since the first release (`enabled`,
/// `timeout`, `off_reason`, `last_note`) are left out when unset, so older
/// readers and writers still agree on the rest.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TaskStatus {
    /// Whether the daemon runs the task. Unset in entries that only
    /// `run-task` (or an older daemon) wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Why the task is off (configuration, or what this machine lacks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub off_reason: Option<String>,
    pub cron: String,
    /// Seconds.
    pub jitter: u64,
    pub exclusive: bool,
    /// The run timeout in force, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    pub state: State,
    /// Unix seconds when the last attempt started.
    pub last_attempt: Option<i64>,
    /// Seconds the last attempt took.
    pub last_duration: Option<f64>,
    pub last_outcome: Option<Outcome>,
    /// The last attempt's error, if it failed.
    pub last_error: Option<String>,
    /// What the last completed run found wrong (failing health checks,
    /// invalid IPs, unreachable iperf targets): `ok` with problems is not
    /// a clean bill. `None` until a run completes, and after a failed one.
    #[serde(default)]
    pub problems: Option<u64>,
    /// What the last completed run said about its result that the result
    /// does not (public-ip-validation: that a lower node validates).
    /// Absent when there is none (and in entries older writers left).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_note: Option<String>,
    /// Unix seconds of the next scheduled fire time.
    pub next_fire: Option<i64>,
    /// Runs since the daemon started, and how many of them failed.
    pub runs: u64,
    pub failures: u64,
    /// Fire times skipped because the previous run was still going.
    pub skipped: u64,
}

/// The fields of the last run: what a manual run writes.
pub const RUN_FIELDS: [&str; 6] = [
    "last_attempt",
    "last_duration",
    "last_outcome",
    "last_error",
    "problems",
    "last_note",
];

/// Who writes a status entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    /// The daemon: every field, but a newer last run found in Redis is kept.
    Daemon,
    /// `run-task`: the last run's fields only (the whole entry when there
    /// is none yet).
    Manual,
}

impl Writer {
    fn as_str(self) -> &'static str {
        match self {
            Writer::Daemon => "daemon",
            Writer::Manual => "manual",
        }
    }
}

/// `KEYS[1]` = `perf:status`, `ARGV` = field, JSON, writer: merges and
/// `HSET`s. An entry that is not a JSON object is replaced.
pub const MERGE: &str = "local new = cjson.decode(ARGV[2]) \
 local raw = redis.call('HGET', KEYS[1], ARGV[1]) \
 local old = nil \
 if raw then local ok, v = pcall(cjson.decode, raw) \
   if ok and type(v) == 'table' then old = v end end \
 local run = {'last_attempt', 'last_duration', 'last_outcome', 'last_error', 'problems', 'last_note'} \
 local out = new \
 if old then \
   if ARGV[3] == 'manual' then \
     out = old \
     for _, k in ipairs(run) do out[k] = new[k] end \
   else \
     local function at(x) if type(x) == 'number' then return x end return -1 end \
     if at(old.last_attempt) > at(new.last_attempt) then \
       for _, k in ipairs(run) do out[k] = old[k] end \
     end \
   end \
 end \
 redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(out)) \
 return 1";

/// The `EVAL` that writes `json` as the entry of `task` for `writer`.
pub fn merge_cmd(status_key: &str, task: &str, json: &str, writer: Writer) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(MERGE)
        .arg(1)
        .arg(status_key)
        .arg(task)
        .arg(json)
        .arg(writer.as_str());
    cmd
}

impl TaskStatus {
    /// Whether the fields the daemon owns (all but the last run's) agree.
    pub fn same_schedule_and_counters(&self, other: &TaskStatus) -> bool {
        self.enabled == other.enabled
            && self.off_reason == other.off_reason
            && self.timeout == other.timeout
            && self.cron == other.cron
            && self.jitter == other.jitter
            && self.exclusive == other.exclusive
            && self.state == other.state
            && self.next_fire == other.next_fire
            && self.runs == other.runs
            && self.failures == other.failures
            && self.skipped == other.skipped
    }
}
