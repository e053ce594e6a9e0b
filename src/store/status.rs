//! What operators see of each task: the Redis hash `perf:status`, one JSON
//! field per task. It lives outside the `perf.` key space on purpose, so no
//! reader of results ever mistakes it for one.

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
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TaskStatus {
    pub cron: String,
    /// Seconds.
    pub jitter: u64,
    pub exclusive: bool,
    pub state: State,
    /// Unix seconds when the last attempt started.
    pub last_attempt: Option<i64>,
    /// Seconds the last attempt took.
    pub last_duration: Option<f64>,
    pub last_outcome: Option<Outcome>,
    /// The last attempt's error, if it failed.
    pub last_error: Option<String>,
    /// Unix seconds of the next scheduled fire time.
    pub next_fire: Option<i64>,
    /// Runs since the daemon started, and how many of them failed.
    pub runs: u64,
    pub failures: u64,
    /// Fire times skipped because the previous run was still going.
    pub skipped: u64,
}
