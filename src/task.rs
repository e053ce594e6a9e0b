//! What a task is, and what one run of it leaves behind.
//!
//! A task knows how to measure one thing and nothing else: it does not know
//! about Redis, the bus or its schedule. The monitor decides when it runs,
//! stamps its value into a [`TaskResult`] and hands that to the store.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// The future a task run returns: a JSON value, or the reason it failed.
pub type RunFuture<'a> = Pin<Box<dyn Future<Output = anyhow::Result<Value>> + Send + 'a>>;

/// One benchmark or health check of the node.
///
/// `run` must give up promptly once `ctx.cancel` fires (shutdown or timeout):
/// the monitor also drops the future, so async work stops at its next await,
/// but work on OS threads has to watch the token itself, and child processes
/// must be spawned with `kill_on_drop(true)` so that dropping kills them.
pub trait Task: Send + Sync + 'static {
    /// The task's id: the wire name of SPEC §2 (`cpu-benchmark`, ...).
    fn name(&self) -> &'static str;

    /// The one-line description stored with every result (SPEC §2, exact).
    fn description(&self) -> &'static str;

    /// Schedule and limits this task has when configuration says nothing.
    fn defaults(&self) -> TaskDefaults;

    /// Why the task cannot run on this node, if so (a program or a file it
    /// needs is not there). Such a task is off unless configuration enables
    /// it explicitly, and the reason is logged and given to `run-task`.
    fn not_available(&self) -> Option<String> {
        None
    }

    /// Runs the task once.
    fn run<'a>(&'a self, ctx: &'a RunContext) -> RunFuture<'a>;
}

/// The defaults of SPEC §2 for one task; configuration may override each.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskDefaults {
    /// 6-field cron expression, seconds first, in UTC.
    pub cron: &'static str,
    /// Upper bound of the random delay before a scheduled run.
    pub jitter: Duration,
    /// A run longer than this is cancelled and counts as failed.
    pub timeout: Duration,
    /// Measurements that would distort each other never run together.
    pub exclusive: bool,
}

/// What a run gets from the monitor.
#[derive(Debug, Clone, Default)]
pub struct RunContext {
    /// Fires on shutdown and when the run's timeout passes.
    pub cancel: CancellationToken,
}

impl RunContext {
    pub fn new(cancel: CancellationToken) -> Self {
        Self { cancel }
    }
}

/// The stored form of one run (SPEC §3): exactly these four fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskResult {
    pub name: String,
    pub description: String,
    /// Unix seconds when the run finished.
    pub timestamp: i64,
    pub result: Value,
}

impl TaskResult {
    /// The Redis key of a task's result: `perf.<name>`.
    pub fn key_of(name: &str) -> String {
        format!("perf.{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_value_has_exactly_the_four_fields_with_an_integer_timestamp() {
        let r = TaskResult {
            name: "cpu-benchmark".into(),
            description: "d".into(),
            timestamp: 1_700_000_000,
            result: serde_json::json!({"single": 1.0}),
        };
        let v: Value = serde_json::to_value(&r).expect("serialize");
        let obj = v.as_object().expect("object");
        let mut keys: Vec<_> = obj.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["description", "name", "result", "timestamp"]);
        assert!(obj["timestamp"].is_i64());
        assert_eq!(TaskResult::key_of("iperf"), "perf.iperf");
    }

    #[test]
    fn a_value_with_an_extra_field_is_refused() {
        let bad = r#"{"name":"x","description":"d","timestamp":1,"result":null,"extra":1}"#;
        assert!(serde_json::from_str::<TaskResult>(bad).is_err());
    }
}
