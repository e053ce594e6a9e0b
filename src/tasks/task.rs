//! What a task is: the one trait every task implements.
//!
//! A task knows how to measure one thing and nothing else: it does not know
//! about Redis, the bus or its schedule. The monitor decides when it runs,
//! stamps its value into a stored record and hands that to the store.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

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
    /// The task's id: its wire name (`cpu-benchmark`, ...; docs/tasks/).
    fn name(&self) -> &'static str;

    /// The one-line description stored with every result (exact wire text,
    /// docs/tasks/).
    fn description(&self) -> &'static str;

    /// Schedule and limits this task has when configuration says nothing.
    fn defaults(&self) -> TaskDefaults;

    /// Runs the task once.
    fn run<'a>(&'a self, ctx: &'a RunContext) -> RunFuture<'a>;
}

/// A task's schedule and limits when configuration says nothing (see
/// docs/tasks/); configuration may override each.
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
