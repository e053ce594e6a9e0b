//! What a task is: the one trait every task implements.
//!
//! A task knows how to measure one thing and nothing else: it does not know
//! about Redis, the bus or its schedule. The monitor decides when it runs,
//! stamps its value into a stored record and hands that to the store.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
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

    /// Why the task cannot run on this node, if so (a program or a file it
    /// needs is not there). Such a task is off unless configuration enables
    /// it explicitly, and the reason is logged and given to `run-task`.
    fn not_available(&self) -> Option<String> {
        None
    }

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
    /// Where a run says what it is doing now (`zos-perf run-task` shows it
    /// on a terminal); nowhere under the daemon.
    pub progress: Progress,
    /// What the run says about its result that the result itself does not
    /// (see [`RunContext::remark`]).
    remark: Remark,
}

/// A run's remark, shared with the monitor that reads it afterwards.
#[derive(Debug, Clone, Default)]
struct Remark(Arc<std::sync::Mutex<Option<String>>>);

impl RunContext {
    pub fn new(cancel: CancellationToken) -> Self {
        Self {
            cancel,
            progress: Progress::default(),
            remark: Remark::default(),
        }
    }

    /// Says why the result is what it is when the result cannot say it
    /// (public-ip-validation stores `{}` when another node validates, as
    /// zos does): operators find it in `perf:status` (`last_note`). The
    /// last remark of a run wins.
    pub fn remark(&self, text: impl Into<String>) {
        *self.remark.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(text.into());
    }

    /// The run's remark, if it made one.
    pub fn remarked(&self) -> Option<String> {
        self.remark
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The same context, telling its steps to `progress`.
    pub(crate) fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = progress;
        self
    }
}

/// A sink for one-line notes of a run's steps (each attempt of a retrying
/// check, each iperf target, each IP): so a long run never looks hung. The
/// default goes nowhere and costs nothing; the note is only formatted when
/// someone listens.
#[derive(Clone, Default)]
pub struct Progress(Option<Arc<NoteSink>>);

/// What receives each note.
type NoteSink = dyn Fn(&str) + Send + Sync;

impl Progress {
    pub fn new(sink: impl Fn(&str) + Send + Sync + 'static) -> Progress {
        Progress(Some(Arc::new(sink)))
    }

    /// Tells `note()` to the listener, if there is one.
    pub fn note(&self, note: impl FnOnce() -> String) {
        if let Some(sink) = &self.0 {
            sink(&note());
        }
    }
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Progress(on)"
        } else {
            "Progress(off)"
        })
    }
}
