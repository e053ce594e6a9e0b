//! The monitor: runs every registered task on its schedule and stores what
//! each run produces.
//!
//! One loop reads the wall clock, fires the tasks that are due, and sleeps
//! until the next due time, never longer than [`SLICE`] at once, so a step
//! of the wall clock or a suspend is noticed within a slice. A task that is
//! due again while its run still goes on is skipped (and logged), a jump of
//! the clock fires a task at most once, and exclusive tasks (the
//! measurements) take turns through one lock.
//!
//! Longer than most files (about 500 lines before its tests) on purpose: the
//! loop, the run of one task and the due-time plan share their invariants
//! (skip-on-overlap, one fire per clock jump, status updates), and reading
//! them apart would hide how they hold together.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::FutureExt;
use serde_json::Value;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::{Config, TaskSettings};
use crate::schedule::{jitter_delay, Schedule, Timekeeper};
use crate::store::{Outcome, ResultStore, State, TaskResult};
use crate::tasks::{view, Progress, RunContext, Task};

/// The longest the loop sleeps before it reads the clock again.
pub const SLICE: Duration = Duration::from_secs(1);

/// A task with its merged settings.
pub struct Registered {
    pub task: Arc<dyn Task>,
    pub settings: TaskSettings,
    /// Why the task cannot run here, when configuration left it to its
    /// default and that default is therefore off.
    pub unavailable: Option<String>,
    running: Arc<AtomicBool>,
}

impl Registered {
    pub fn new(task: Arc<dyn Task>, settings: TaskSettings) -> Self {
        Self {
            task,
            settings,
            unavailable: None,
            running: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// Builds each task's settings from the configuration; an invalid override
/// is an error naming the task and field. A task that cannot run here (see
/// [`Task::not_available`]) is off unless configuration enables it.
pub fn register(config: &Config, tasks: Vec<Arc<dyn Task>>) -> anyhow::Result<Vec<Registered>> {
    tasks
        .into_iter()
        .map(|task| {
            let mut settings = config.task_settings(task.name(), &task.defaults())?;
            let explicit = config
                .tasks
                .get(task.name())
                .is_some_and(|o| o.enabled.is_some());
            let unavailable = if explicit { None } else { task.not_available() };
            if unavailable.is_some() {
                settings.enabled = false;
            }
            let mut r = Registered::new(task, settings);
            r.unavailable = unavailable;
            Ok(r)
        })
        .collect()
}

/// The turn-taking of exclusive tasks, with the name of the holder for logs.
#[derive(Default)]
struct Exclusive {
    lock: tokio::sync::Mutex<()>,
    holder: Mutex<Option<&'static str>>,
}

impl Exclusive {
    /// Names the task holding the turn (`None`: nobody), for the logs of
    /// those waiting.
    fn set_holder(&self, name: Option<&'static str>) {
        *self.holder.lock().unwrap_or_else(|p| p.into_inner()) = name;
    }
}

pub struct Monitor {
    tasks: Vec<Arc<Registered>>,
    store: Arc<ResultStore>,
    clock: Arc<dyn Timekeeper>,
    exclusive: Arc<Exclusive>,
}

/// The reason a task that configuration turned off gives.
pub const DISABLED: &str = "disabled by configuration";

/// Writes the settings a task runs with into its status entry.
fn publish_settings(s: &mut crate::store::TaskStatus, settings: &TaskSettings) {
    s.cron = settings.schedule.as_str().to_string();
    s.jitter = settings.jitter.as_secs();
    s.timeout = Some(settings.timeout.as_secs());
    s.exclusive = settings.exclusive;
}

/// Why a fire happened, for the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Startup,
    Schedule,
    Manual,
}

impl Monitor {
    pub fn new(
        tasks: Vec<Registered>,
        store: Arc<ResultStore>,
        clock: Arc<dyn Timekeeper>,
    ) -> Monitor {
        Monitor {
            tasks: tasks.into_iter().map(Arc::new).collect(),
            store,
            clock,
            exclusive: Arc::new(Exclusive::default()),
        }
    }

    /// Runs until `shutdown` fires, then cancels running runs and returns
    /// once they have stopped.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut runs = JoinSet::new();
        let now = self.clock.now();

        for r in &self.tasks {
            let name = r.task.name();
            let off = match &r.unavailable {
                Some(why) => Some(why.clone()),
                None if !r.settings.enabled => Some(DISABLED.to_string()),
                None => None,
            };
            if let Some(why) = off {
                tracing::info!(task = name, "not run: {why}; its stored result is removed");
                self.store.remove(name);
                // What this daemon runs, for `zos-perf tasks`: off, and why.
                self.store.update_status(name, |s| {
                    publish_settings(s, &r.settings);
                    s.enabled = Some(false);
                    s.off_reason = Some(why);
                    s.next_fire = None;
                });
                continue;
            }
            let next = r.settings.schedule.next_after(now);
            self.store.update_status(name, |s| {
                publish_settings(s, &r.settings);
                s.enabled = Some(true);
                s.off_reason = None;
                s.state = State::Idle;
                s.next_fire = next.map(|t| t.timestamp());
            });
            match startup_reason(&self.store.latest(name), &r.settings.schedule, now) {
                Some(reason) => {
                    tracing::info!(
                        task = name,
                        reason,
                        "start-up check: running, after its jitter"
                    );
                    self.fire(r, Trigger::Startup, &shutdown, &mut runs);
                }
                None => tracing::debug!(task = name, "start-up check: stored result is fresh"),
            }
        }

        let enabled: Vec<Arc<Registered>> = self
            .tasks
            .iter()
            .filter(|r| r.settings.enabled)
            .cloned()
            .collect();
        let mut plan = Plan::new(
            enabled
                .iter()
                .map(|r| r.settings.schedule.clone())
                .collect(),
            now,
        );
        loop {
            let now = self.clock.now();
            for (i, due) in plan.due(now) {
                let r = &enabled[i];
                tracing::debug!(task = r.task.name(), due = %due, "due");
                self.fire(r, Trigger::Schedule, &shutdown, &mut runs);
            }
            for (i, r) in enabled.iter().enumerate() {
                if plan.changed(i) {
                    let next = plan.next(i).map(|t| t.timestamp());
                    self.store
                        .update_status(r.task.name(), |s| s.next_fire = next);
                }
            }
            // Reap finished runs so the set does not grow.
            while runs.try_join_next().is_some() {}
            let wait = plan.wait(now).min(SLICE);
            tokio::select! {
                _ = self.clock.sleep(wait) => {}
                _ = shutdown.cancelled() => break,
            }
        }

        tracing::info!(
            running = runs.len(),
            "shutting down: cancelling running tasks"
        );
        while runs.join_next().await.is_some() {}
    }

    /// Runs one task now, outside the schedule, and returns its result;
    /// the run tells its steps to `progress`.
    pub async fn run_now(
        &self,
        name: &str,
        shutdown: CancellationToken,
        progress: Progress,
    ) -> anyhow::Result<TaskResult> {
        self.run_now_by(name, shutdown, progress, None).await
    }

    /// [`Monitor::run_now`], all of it done by `deadline` when one is
    /// given: the waits for its turn (another measurement of this process,
    /// the exclusive lease of another) count, and the run gets what is
    /// left of the task's timeout. Past it the run fails as timed out.
    pub async fn run_now_by(
        &self,
        name: &str,
        shutdown: CancellationToken,
        progress: Progress,
        deadline: Option<tokio::time::Instant>,
    ) -> anyhow::Result<TaskResult> {
        let r = self
            .tasks
            .iter()
            .find(|r| r.task.name() == name)
            .ok_or_else(|| anyhow::anyhow!("unknown task {name:?}"))?;
        if let Some(why) = &r.unavailable {
            anyhow::bail!("{name}: not run: {why}");
        }
        let ctx = Ctx {
            reg: r.clone(),
            store: self.store.clone(),
            clock: self.clock.clone(),
            exclusive: self.exclusive.clone(),
            shutdown,
            progress,
            deadline,
        };
        let value = ctx.execute(Trigger::Manual).await?;
        Ok(value)
    }

    /// Starts a run unless one is already going.
    fn fire(
        &self,
        r: &Arc<Registered>,
        trigger: Trigger,
        shutdown: &CancellationToken,
        runs: &mut JoinSet<()>,
    ) {
        let name = r.task.name();
        if r.running.swap(true, Ordering::SeqCst) {
            tracing::warn!(
                task = name,
                "previous run still going: skipping this fire time"
            );
            self.store.update_status(name, |s| s.skipped += 1);
            return;
        }
        let ctx = Ctx {
            reg: r.clone(),
            store: self.store.clone(),
            clock: self.clock.clone(),
            exclusive: self.exclusive.clone(),
            shutdown: shutdown.clone(),
            progress: Progress::default(),
            deadline: None,
        };
        runs.spawn(async move {
            let _ = ctx.execute(trigger).await;
            ctx.reg.running.store(false, Ordering::SeqCst);
        });
    }
}

/// Everything one run needs, owned, so it can live in a spawned task.
struct Ctx {
    reg: Arc<Registered>,
    store: Arc<ResultStore>,
    clock: Arc<dyn Timekeeper>,
    exclusive: Arc<Exclusive>,
    shutdown: CancellationToken,
    progress: Progress,
    /// When the whole run, waits included, must be over (a manual run
    /// with `--timeout`); `None`: only the run itself is timed.
    deadline: Option<tokio::time::Instant>,
}

impl Ctx {
    async fn execute(&self, trigger: Trigger) -> anyhow::Result<TaskResult> {
        let task = &self.reg.task;
        let name = task.name();
        let settings = &self.reg.settings;

        // Start-up runs wait their jitter too, as zos's do: a fleet that
        // restarts together must not reach the public servers at once.
        // Only a run asked for by hand (`run-task`) starts at once.
        if trigger != Trigger::Manual && !settings.jitter.is_zero() {
            let delay = jitter_delay(settings.jitter);
            tracing::debug!(task = name, ?delay, "jitter");
            self.store.update_status(name, |s| s.state = State::Waiting);
            tokio::select! {
                // Through the injected clock, like every wait of the
                // monitor, so that tests can hold and release it.
                _ = self.clock.sleep(delay) => {}
                _ = self.shutdown.cancelled() => {
                    self.store.update_status(name, |s| s.state = State::Idle);
                    anyhow::bail!("{name}: shut down before the run started");
                }
            }
        }

        let _turn = if settings.exclusive {
            let guard = match self.exclusive.lock.try_lock() {
                Ok(g) => g,
                Err(_) => {
                    let holder = *self
                        .exclusive
                        .holder
                        .lock()
                        .unwrap_or_else(|p| p.into_inner());
                    tracing::info!(
                        task = name,
                        running = holder.unwrap_or("another task"),
                        "waiting for the running measurement to finish"
                    );
                    self.store.update_status(name, |s| s.state = State::Waiting);
                    tokio::select! {
                        g = self.exclusive.lock.lock() => g,
                        _ = self.shutdown.cancelled() => {
                            self.store.update_status(name, |s| s.state = State::Idle);
                            anyhow::bail!("{name}: shut down while waiting for its turn");
                        }
                        _ = until(self.deadline) => {
                            self.store.update_status(name, |s| s.state = State::Idle);
                            return Err(self.timed_out(holder.unwrap_or("another task")));
                        }
                    }
                }
            };
            self.exclusive.set_holder(Some(name));
            Some(guard)
        } else {
            None
        };

        // Other processes on this Redis (another daemon, `run-task`) honour
        // the same rule through a lease in Redis.
        let lease = if settings.exclusive {
            self.store.update_status(name, |s| s.state = State::Waiting);
            use crate::node_redis::lease::{self, Waited};
            let waited = lease::wait_for(
                self.store.link(),
                lease::EXCLUSIVE_KEY,
                name,
                &self.shutdown,
                self.deadline,
            )
            .await;
            match waited {
                Waited::Taken(lease) => lease.map(|held| *held),
                Waited::Cancelled => {
                    self.store.update_status(name, |s| s.state = State::Idle);
                    anyhow::bail!("{name}: shut down while waiting for the exclusive lease");
                }
                Waited::TimedOut(by) => {
                    self.store.update_status(name, |s| s.state = State::Idle);
                    return Err(self.timed_out(&format!("{by}, holding {}", lease::EXCLUSIVE_KEY)));
                }
            }
        } else {
            None
        };

        // A shutdown that came while the turn or the lease was being taken
        // (the holder's run, ended by that same shutdown, handed the turn
        // over) ends this run before it starts: nothing ran, so nothing is
        // counted as a cancelled run.
        if self.shutdown.is_cancelled() {
            if settings.exclusive {
                self.exclusive.set_holder(None);
            }
            if let Some(lease) = lease {
                lease.release().await;
            }
            self.store.update_status(name, |s| s.state = State::Idle);
            anyhow::bail!("{name}: shut down before the run started");
        }

        let started_at = self.clock.now();
        let started = Instant::now();
        self.store.update_status(name, |s| {
            s.state = State::Running;
            s.last_attempt = Some(started_at.timestamp());
        });
        tracing::info!(task = name, trigger = ?trigger, "run started");

        // What is left of the deadline, when the waits took some of it.
        let timeout = match self.deadline {
            Some(d) => settings
                .timeout
                .min(d.saturating_duration_since(tokio::time::Instant::now())),
            None => settings.timeout,
        };
        let cancel = self.shutdown.child_token();
        let ctx = RunContext::new(cancel.clone()).with_progress(self.progress.clone());
        let outcome = {
            // Everything the task logs carries its name from this span; a
            // task never names itself.
            let span = tracing::info_span!("run", task = name);
            let run = AssertUnwindSafe(task.run(&ctx).instrument(span)).catch_unwind();
            tokio::select! {
                r = tokio::time::timeout(timeout, run) => match r {
                    Ok(Ok(Ok(value))) => Ok(value),
                    // The run saw the shutdown (its ctx.cancel is a child of
                    // it) and gave up before this select did: that is a
                    // cancellation, not a failure of the task.
                    Ok(Ok(Err(e))) if self.shutdown.is_cancelled() => {
                        tracing::debug!(task = name, error = %format!("{e:#}"), "run ended by shutdown");
                        Err((Outcome::Cancelled, "cancelled by shutdown".to_string()))
                    }
                    Ok(Ok(Err(e))) => Err((Outcome::Failed, format!("{e:#}"))),
                    Ok(Err(panic)) => Err((Outcome::Panicked, panic_message(&panic))),
                    Err(_) => Err((Outcome::Timeout, format!("timed out after {}", humantime::format_duration(settings.timeout)))),
                },
                _ = self.shutdown.cancelled() => Err((Outcome::Cancelled, "cancelled by shutdown".to_string())),
            }
        };
        // Whatever ended the run, tell work on other threads to stop.
        cancel.cancel();
        if settings.exclusive {
            self.exclusive.set_holder(None);
        }
        let duration = started.elapsed();
        if let Some(lease) = lease {
            lease.release().await;
        }
        drop(_turn);

        let result = match outcome {
            Ok(value) => self.store_result(value),
            Err(e) => Err(e),
        };
        match &result {
            Ok(r) => {
                let problems = view::problem_count(name, &r.result);
                tracing::info!(task = name, duration = ?duration, outcome = "ok", problems, "run finished")
            }
            Err((outcome, reason)) => tracing::warn!(task = name, duration = ?duration,
                outcome = outcome.as_str(), reason = %crate::logging::Escaped(reason),
                "run failed; previous result kept"),
        }
        self.store.update_status(name, |s| {
            s.state = State::Idle;
            s.last_duration = Some((duration.as_secs_f64() * 1000.0).round() / 1000.0);
            s.runs += 1;
            match &result {
                Ok(r) => {
                    s.last_outcome = Some(Outcome::Ok);
                    s.last_error = None;
                    s.problems = Some(view::problem_count(name, &r.result));
                    s.last_note = ctx.remarked();
                }
                Err((outcome, reason)) => {
                    s.problems = None;
                    s.last_note = None;
                    s.failures += 1;
                    s.last_outcome = Some(*outcome);
                    s.last_error = Some(reason.clone());
                }
            }
        });
        result.map_err(|(outcome, reason)| {
            RunFailed {
                task: name,
                outcome,
                reason,
            }
            .into()
        })
    }

    /// The run's deadline passed while it waited for its turn, taken by
    /// `by`: it never started, so nothing of its status but the state is
    /// changed.
    fn timed_out(&self, by: &str) -> anyhow::Error {
        let name = self.reg.task.name();
        let reason = format!(
            "timed out after {} waiting for its turn (taken by {}); not run",
            humantime::format_duration(self.reg.settings.timeout),
            crate::logging::Escaped(by)
        );
        tracing::warn!(task = name, reason = %reason, "run not started");
        RunFailed {
            task: name,
            outcome: Outcome::Timeout,
            reason,
        }
        .into()
    }

    fn store_result(&self, value: Value) -> Result<TaskResult, (Outcome, String)> {
        let task = &self.reg.task;
        let result = TaskResult {
            name: task.name().to_string(),
            description: task.description().to_string(),
            timestamp: self.clock.now().timestamp(),
            result: value,
        };
        self.store
            .put(result.clone())
            .map_err(|e| (Outcome::Failed, format!("{e:#}")))?;
        Ok(result)
    }
}

/// How a run that stored no result ended: typed, so that callers (the
/// exit code of `zos-perf run-task`) tell a timeout from a failure.
#[derive(Debug, thiserror::Error)]
#[error("{task}: {}: {reason}", outcome.as_str())]
pub struct RunFailed {
    pub task: &'static str,
    pub outcome: Outcome,
    pub reason: String,
}

/// Fires at `deadline`; never without one.
async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    let msg = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string());
    format!("panicked: {msg}")
}

/// Why a task must run at start-up, if it must: no stored result, one
/// older than two periods of its schedule, or one stamped in the future
/// (written while a clock was ahead: its age cannot be known, and taking it
/// as fresh would keep it for good).
pub fn startup_reason(
    stored: &Option<TaskResult>,
    schedule: &Schedule,
    now: DateTime<Utc>,
) -> Option<&'static str> {
    let Some(stored) = stored else {
        return Some("no stored result");
    };
    if stored.timestamp > now.timestamp() {
        return Some("stored result is stamped in the future");
    }
    let period = schedule.period_near(now)?;
    let age = now.timestamp().saturating_sub(stored.timestamp);
    let limit = i64::try_from(period.as_secs().saturating_mul(2)).unwrap_or(i64::MAX);
    (age > limit).then_some("stored result is older than two periods")
}

/// The due times of every task, and how they move with the clock.
///
/// Pure: it is given `now` and says what is due, so it can be tested with
/// any sequence of clock readings.
pub struct Plan {
    schedules: Vec<Schedule>,
    next: Vec<Option<DateTime<Utc>>>,
    last_fired: Vec<Option<DateTime<Utc>>>,
    changed: Vec<bool>,
    last_now: DateTime<Utc>,
}

impl Plan {
    pub fn new(schedules: Vec<Schedule>, now: DateTime<Utc>) -> Plan {
        let next = schedules.iter().map(|s| s.next_after(now)).collect();
        let n = schedules.len();
        Plan {
            schedules,
            next,
            last_fired: vec![None; n],
            changed: vec![false; n],
            last_now: now,
        }
    }

    /// The tasks due at `now`, each at most once, with the due time they
    /// fire for. After a forward jump a task fires once and its next due
    /// time is taken from `now`, so missed fire times never pile up. After a
    /// backward jump no fire time that already fired fires again, unless the
    /// clock went back more than a whole period (then the schedule starts
    /// over from the new time rather than waiting that long).
    pub fn due(&mut self, now: DateTime<Utc>) -> Vec<(usize, DateTime<Utc>)> {
        let went_back = now < self.last_now;
        self.last_now = now;
        let mut fired = Vec::new();
        for i in 0..self.schedules.len() {
            if went_back {
                self.rewind(i, now);
            }
            let Some(due) = self.next[i] else { continue };
            if now >= due {
                fired.push((i, due));
                self.last_fired[i] = Some(due);
                self.next[i] = self.schedules[i].next_after(now);
                self.changed[i] = true;
            }
        }
        fired
    }

    fn rewind(&mut self, i: usize, now: DateTime<Utc>) {
        let schedule = &self.schedules[i];
        let from = match self.last_fired[i] {
            Some(last) if last > now => {
                let period = schedule
                    .period_near(now)
                    .and_then(|p| chrono::Duration::from_std(p).ok())
                    .unwrap_or_else(chrono::Duration::zero);
                if last - now <= period {
                    last
                } else {
                    now
                }
            }
            _ => now,
        };
        let next = schedule.next_after(from);
        if next != self.next[i] {
            self.next[i] = next;
            self.changed[i] = true;
        }
    }

    /// Whether task `i`'s next due time moved since this was last asked.
    pub fn changed(&mut self, i: usize) -> bool {
        std::mem::take(&mut self.changed[i])
    }

    pub fn next(&self, i: usize) -> Option<DateTime<Utc>> {
        self.next[i]
    }

    /// How long until the earliest due time (zero if one is past).
    pub fn wait(&self, now: DateTime<Utc>) -> Duration {
        self.next
            .iter()
            .flatten()
            .map(|t| (*t - now).to_std().unwrap_or(Duration::ZERO))
            .min()
            .unwrap_or(SLICE)
    }
}

/// The settings of every registered task, by name, for the CLI.
pub fn describe(tasks: &[Registered]) -> BTreeMap<&'static str, &TaskSettings> {
    tasks.iter().map(|r| (r.task.name(), &r.settings)).collect()
}

#[cfg(test)]
mod tests;
