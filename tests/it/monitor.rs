//! The monitor against a real redis-server, with small test-only tasks.

use crate::common;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use common::clock::ManualClock;
use common::{wait_for, RedisServer};
use zos_perf::config::Config;
use zos_perf::config::TaskSettings;
use zos_perf::monitor::Registered;
use zos_perf::node_redis::keys::STATUS as STATUS_KEY;
use zos_perf::schedule::{Schedule, SystemClock, Timekeeper};
use zos_perf::store::ResultStore;
use zos_perf::store::TaskResult;
use zos_perf::store::{Outcome, State, TaskStatus};
use zos_perf::tasks::{RunContext, RunFuture, Task, TaskDefaults};
use zos_perf::Daemon;

/// What a test task does when run.
#[derive(Clone)]
enum Behaviour {
    /// Returns the run count after sleeping this long.
    Count(Duration),
    Fail,
    Panic,
    /// Starts `sleep 1000` and waits for it (to be killed by the timeout).
    SpawnSleep(Arc<AtomicU32>),
    /// Returns `{}` with this remark on the first run, then fails.
    Remark(&'static str),
}

struct TestTask {
    name: &'static str,
    behaviour: Behaviour,
    runs: AtomicUsize,
    running: AtomicUsize,
    max_running: AtomicUsize,
    intervals: Mutex<Vec<(Instant, Instant)>>,
}

impl TestTask {
    fn new(name: &'static str, behaviour: Behaviour) -> Arc<TestTask> {
        Arc::new(TestTask {
            name,
            behaviour,
            runs: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            max_running: AtomicUsize::new(0),
            intervals: Mutex::new(Vec::new()),
        })
    }
    fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }
}

impl Task for TestTask {
    fn name(&self) -> &'static str {
        self.name
    }
    fn description(&self) -> &'static str {
        "a test task"
    }
    fn defaults(&self) -> TaskDefaults {
        TaskDefaults {
            cron: "0 0 0 1 1 *",
            jitter: Duration::ZERO,
            timeout: Duration::from_secs(30),
            exclusive: false,
        }
    }
    fn run<'a>(&'a self, ctx: &'a RunContext) -> RunFuture<'a> {
        Box::pin(async move {
            let n = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_running.fetch_max(now, Ordering::SeqCst);
            let start = Instant::now();
            let out = match &self.behaviour {
                Behaviour::Count(d) => {
                    tokio::time::sleep(*d).await;
                    Ok(json!({ "run": n }))
                }
                Behaviour::Fail => Err(anyhow::anyhow!("the test task fails on purpose")),
                Behaviour::Panic => panic!("the test task panics on purpose"),
                Behaviour::Remark(_) if n > 1 => Err(anyhow::anyhow!("second run fails")),
                Behaviour::Remark(text) => {
                    ctx.remark(*text);
                    Ok(json!({}))
                }
                Behaviour::SpawnSleep(pid) => {
                    let mut child = tokio::process::Command::new("sleep")
                        .arg("1000")
                        .kill_on_drop(true)
                        .spawn()?;
                    pid.store(child.id().unwrap_or(0), Ordering::SeqCst);
                    child.wait().await?;
                    Ok(Value::Null)
                }
            };
            self.intervals
                .lock()
                .expect("intervals")
                .push((start, Instant::now()));
            self.running.fetch_sub(1, Ordering::SeqCst);
            out
        })
    }
}

fn settings(cron: &str, timeout: Duration, exclusive: bool) -> TaskSettings {
    TaskSettings {
        enabled: true,
        schedule: Schedule::parse(cron).expect("cron"),
        jitter: Duration::ZERO,
        timeout,
        exclusive,
    }
}

/// The daemon of a test: its Redis, these tasks, this clock, no bus.
fn daemon(redis: &RedisServer) -> zos_perf::daemon::Builder {
    let config = Config::from_toml(&format!(
        "redis = {:?}\n[bus]\nenabled = false\n",
        redis.url()
    ))
    .expect("config");
    Daemon::builder(config).load_wait(Duration::from_secs(5))
}

/// A daemon running test tasks.
struct Started {
    store: Arc<ResultStore>,
    daemon: Daemon,
}

impl Started {
    async fn start(
        redis: &RedisServer,
        tasks: Vec<(Arc<TestTask>, TaskSettings)>,
        clock: Arc<dyn Timekeeper>,
    ) -> Started {
        let names: Vec<(&'static str, bool)> =
            tasks.iter().map(|(t, s)| (t.name, s.enabled)).collect();
        let regs = tasks
            .into_iter()
            .map(|(t, s)| Registered::new(t as Arc<dyn Task>, s))
            .collect();
        let daemon = daemon(redis)
            .registered(regs)
            .clock(clock)
            .start()
            .await
            .expect("daemon starts");
        assert!(daemon.loaded(), "redis answers");
        let store = daemon.store().clone();
        // The monitor has read the clock once it publishes next fire times:
        // only then may a test move the clock.
        for (name, _) in names.into_iter().filter(|(_, enabled)| *enabled) {
            wait_for(Duration::from_secs(5), "monitor started", || {
                store.status(name).and_then(|s| s.next_fire)
            });
        }
        Started { store, daemon }
    }

    async fn stop(self) {
        assert!(self.daemon.shutdown().await, "the daemon stops in time");
    }
}

fn stored(redis: &RedisServer, name: &str) -> Option<String> {
    redis::cmd("GET")
        .arg(zos_perf::node_redis::keys::result(name))
        .query(&mut redis.conn())
        .expect("GET")
}

fn status(redis: &RedisServer, name: &str) -> Option<TaskStatus> {
    let raw: Option<String> = redis::cmd("HGET")
        .arg(STATUS_KEY)
        .arg(name)
        .query(&mut redis.conn())
        .expect("HGET");
    raw.map(|s| serde_json::from_str(&s).expect("status JSON"))
}

fn put_result(redis: &RedisServer, name: &str, timestamp: i64) -> String {
    let value = format!(
        r#"{{"name": "{name}", "description": "old",  "timestamp": {timestamp}, "result": {{"kept": true}}}}"#
    );
    let _: () = redis::cmd("SET")
        .arg(zos_perf::node_redis::keys::result(name))
        .arg(&value)
        .query(&mut redis.conn())
        .expect("SET");
    value
}

/// A manual clock that a background task moves forward by `step` every
/// `every` of real time.
fn ticking(
    start: chrono::DateTime<Utc>,
    step: chrono::Duration,
    every: Duration,
) -> (ManualClock, CancellationToken) {
    let clock = ManualClock::new(start);
    let stop = CancellationToken::new();
    let (c, s) = (clock.clone(), stop.clone());
    tokio::spawn(async move {
        while !s.is_cancelled() {
            tokio::time::sleep(every).await;
            c.advance(step);
        }
    });
    (clock, stop)
}

fn t0() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 10, 12, 0, 0)
        .single()
        .expect("time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_check_runs_exactly_the_missing_and_stale_once() {
    let redis = RedisServer::start();
    let now = t0();
    put_result(&redis, "cpu-benchmark", now.timestamp() - 3600); // fresh for a 6 h schedule
    put_result(&redis, "iperf", now.timestamp() - 13 * 3600); // older than two periods
    let fresh = TestTask::new("cpu-benchmark", Behaviour::Count(Duration::ZERO));
    let stale = TestTask::new("iperf", Behaviour::Count(Duration::ZERO));
    let missing = TestTask::new("healthcheck", Behaviour::Count(Duration::ZERO));
    let six_h = || settings("0 0 */6 * * *", Duration::from_secs(30), false);
    let clock = Arc::new(ManualClock::new(now));
    let d = Started::start(
        &redis,
        vec![
            (fresh.clone(), six_h()),
            (stale.clone(), six_h()),
            (missing.clone(), six_h()),
        ],
        clock,
    )
    .await;
    wait_for(Duration::from_secs(5), "both runs stored", || {
        (stored(&redis, "iperf").is_some_and(|v| v.contains("\"run\":1"))
            && stored(&redis, "healthcheck").is_some())
        .then_some(())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!((fresh.runs(), stale.runs(), missing.runs()), (0, 1, 1));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_slower_than_its_schedule_never_runs_twice_at_once() {
    let redis = RedisServer::start();
    // Simulated seconds pass every 10 ms; a run takes 150 ms of real time.
    let (clock, stop) = ticking(
        t0(),
        chrono::Duration::seconds(1),
        Duration::from_millis(10),
    );
    let slow = TestTask::new("healthcheck", Behaviour::Count(Duration::from_millis(150)));
    let d = Started::start(
        &redis,
        vec![(
            slow.clone(),
            settings("* * * * * *", Duration::from_secs(30), false),
        )],
        Arc::new(clock),
    )
    .await;
    wait_for(Duration::from_secs(10), "three runs", || {
        (slow.runs() >= 3).then_some(())
    });
    stop.cancel();
    assert_eq!(
        slow.max_running.load(Ordering::SeqCst),
        1,
        "never two runs at once"
    );
    let st = wait_for(Duration::from_secs(5), "skips in status", || {
        status(&redis, "healthcheck").filter(|s| s.skipped > 0)
    });
    assert!(
        st.skipped >= 2,
        "fire times during a run were skipped: {st:?}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_tasks_due_together_run_one_after_the_other() {
    let redis = RedisServer::start();
    let now = t0();
    // All four have fresh results; all are due at 12:00:10.
    for n in [
        "cpu-benchmark",
        "iperf",
        "healthcheck",
        "public-ip-validation",
    ] {
        put_result(&redis, n, now.timestamp());
    }
    let clock = ManualClock::new(now);
    let work = || Behaviour::Count(Duration::from_millis(300));
    let (a, b) = (
        TestTask::new("cpu-benchmark", work()),
        TestTask::new("iperf", work()),
    );
    let (c, e) = (
        TestTask::new("healthcheck", work()),
        TestTask::new("public-ip-validation", work()),
    );
    let cron = "10 0 12 * * *";
    let d = Started::start(
        &redis,
        vec![
            (a.clone(), settings(cron, Duration::from_secs(30), true)),
            (b.clone(), settings(cron, Duration::from_secs(30), true)),
            (c.clone(), settings(cron, Duration::from_secs(30), false)),
            (e.clone(), settings(cron, Duration::from_secs(30), false)),
        ],
        Arc::new(clock.clone()),
    )
    .await;
    clock.advance(chrono::Duration::seconds(10));
    wait_for(Duration::from_secs(5), "all four ran", || {
        [&a, &b, &c, &e]
            .iter()
            .all(|t| t.intervals.lock().expect("lock").len() == 1)
            .then_some(())
    });
    let span = |t: &TestTask| t.intervals.lock().expect("lock")[0];
    let (sa, sb) = (span(&a), span(&b));
    assert!(
        sa.1 <= sb.0 || sb.1 <= sa.0,
        "exclusive runs overlapped: {sa:?} {sb:?}"
    );
    // The non-exclusive pair is free to overlap, and does: the lock is what
    // kept the exclusive pair apart.
    let (sc, se) = (span(&c), span(&e));
    assert!(
        sc.0 < se.1 && se.0 < sc.1,
        "non-exclusive runs did not overlap"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_jumps_cause_one_catch_up_run_and_no_duplicate() {
    let redis = RedisServer::start();
    let now = t0() + chrono::Duration::minutes(1); // 12:01:00
    put_result(&redis, "healthcheck", now.timestamp());
    let clock = ManualClock::new(now);
    let task = TestTask::new("healthcheck", Behaviour::Count(Duration::ZERO));
    let d = Started::start(
        &redis,
        vec![(
            task.clone(),
            settings("0 */15 * * * *", Duration::from_secs(30), false),
        )],
        Arc::new(clock.clone()),
    )
    .await;
    // Two loop turns read the clock with nothing due.
    clock.wait_sleeps(2, Duration::from_secs(5)).await;
    assert_eq!(task.runs(), 0, "fresh result: nothing at start");
    let day = t0() + chrono::Duration::days(1);

    // The machine slept for a day: one catch-up run, not 96.
    clock.advance(chrono::Duration::days(1));
    wait_for(Duration::from_secs(5), "catch-up run", || {
        (task.runs() >= 1).then_some(())
    });
    clock.wait_sleeps(2, Duration::from_secs(5)).await;
    assert_eq!(task.runs(), 1);

    // Normal time to the next quarter hour (12:15 next day): one run.
    clock.set(day + chrono::Duration::minutes(15));
    wait_for(Duration::from_secs(5), "scheduled run", || {
        (task.runs() >= 2).then_some(())
    });
    // NTP steps back 40 s, then time passes 12:15:00 again: no second run.
    clock.set(day + chrono::Duration::minutes(14) + chrono::Duration::seconds(20));
    clock.wait_sleeps(2, Duration::from_secs(5)).await;
    clock.set(day + chrono::Duration::minutes(15) + chrono::Duration::seconds(5));
    clock.wait_sleeps(2, Duration::from_secs(5)).await;
    assert_eq!(task.runs(), 2, "12:15 fired once only");

    // The clock goes back a whole day (more than a period): the schedule
    // starts over from the new time, so the next quarter hour of that day
    // fires, rather than nothing until the old 12:30 comes round again.
    clock.set(t0() + chrono::Duration::minutes(20));
    clock.wait_sleeps(2, Duration::from_secs(5)).await;
    assert_eq!(task.runs(), 2, "nothing due at the step itself");
    clock.set(t0() + chrono::Duration::minutes(30));
    wait_for(
        Duration::from_secs(5),
        "12:30 of the earlier day fires",
        || (task.runs() >= 3).then_some(()),
    );

    // The next due time was a quarter of an hour away all along, yet the
    // loop never asked to sleep longer than its slice: a clock step is seen
    // within one slice.
    assert!(
        clock.longest_sleep() <= zos_perf::monitor::SLICE,
        "the monitor asked to sleep {:?}",
        clock.longest_sleep()
    );
    assert!(clock.longest_sleep() > Duration::ZERO);
    d.stop().await;
}

fn jittered(cron: &str, jitter: Duration) -> TaskSettings {
    TaskSettings {
        jitter,
        ..settings(cron, Duration::from_secs(30), false)
    }
}

/// Thirty days of jitter: a draw within one slice (which the clock below
/// would not hold) has odds of about one in 2.6 million.
const LONG_JITTER: Duration = Duration::from_secs(30 * 24 * 3600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_run_waits_its_jitter_on_the_clock() {
    let redis = RedisServer::start();
    let now = t0(); // 12:00:00
    put_result(&redis, "healthcheck", now.timestamp()); // fresh: no start-up run
    let clock = ManualClock::new(now);
    let scheduled = TestTask::new("healthcheck", Behaviour::Count(Duration::ZERO));
    // Sleeps longer than the loop's slice last until released: the jitter
    // is held while the loop goes on.
    clock.hold_longer_than(zos_perf::monitor::SLICE);
    let d = Started::start(
        &redis,
        vec![(scheduled.clone(), jittered("30 * * * * *", LONG_JITTER))],
        Arc::new(clock.clone()),
    )
    .await;
    clock.wait_sleeps(2, Duration::from_secs(5)).await;
    assert!(clock.longest_sleep() <= zos_perf::monitor::SLICE);

    clock.advance(chrono::Duration::seconds(30)); // 12:00:30 is due
    let st = wait_for(Duration::from_secs(5), "waiting its jitter", || {
        d.store
            .status("healthcheck")
            .filter(|s| s.state == State::Waiting)
    });
    assert_eq!(st.jitter, LONG_JITTER.as_secs(), "{st:?}");
    // The settings the daemon runs it with, for `zos-perf tasks`.
    assert_eq!((st.enabled, st.timeout), (Some(true), Some(30)), "{st:?}");
    // The wait was asked of the clock, within the configured maximum.
    wait_for(
        Duration::from_secs(5),
        "the jitter asked of the clock",
        || (clock.longest_sleep() > zos_perf::monitor::SLICE).then_some(()),
    );
    assert!(clock.longest_sleep() <= LONG_JITTER);
    clock.wait_sleeps(2, Duration::from_secs(5)).await;
    assert_eq!(scheduled.runs(), 0, "no run during the jitter");

    // The jitter ends: the run follows.
    clock.release();
    wait_for(Duration::from_secs(5), "the jittered run", || {
        (scheduled.runs() == 1).then_some(())
    });
    wait_for(Duration::from_secs(5), "idle again", || {
        d.store
            .status("healthcheck")
            .filter(|s| s.state == State::Idle && s.runs == 1)
    });
    d.stop().await;
}

/// zos applies a task's jitter to its start-up run too, so that a fleet
/// restarting together does not reach the public servers at once: the run
/// for a missing result and the one for a stale result both wait it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_runs_for_missing_and_stale_results_wait_their_jitter() {
    let redis = RedisServer::start();
    let now = t0();
    // Older than two periods of its yearly schedule: stale.
    put_result(
        &redis,
        "cpu-benchmark",
        now.timestamp() - 3 * 366 * 24 * 3600,
    );
    let clock = ManualClock::new(now);
    clock.hold_longer_than(zos_perf::monitor::SLICE);
    let missing = TestTask::new("iperf", Behaviour::Count(Duration::ZERO));
    let stale = TestTask::new("cpu-benchmark", Behaviour::Count(Duration::ZERO));
    let yearly = || jittered("0 0 0 1 1 *", LONG_JITTER);
    let d = Started::start(
        &redis,
        vec![(missing.clone(), yearly()), (stale.clone(), yearly())],
        Arc::new(clock.clone()),
    )
    .await;
    for name in ["iperf", "cpu-benchmark"] {
        wait_for(Duration::from_secs(5), "the start-up run waits", || {
            d.store.status(name).filter(|s| s.state == State::Waiting)
        });
    }
    wait_for(
        Duration::from_secs(5),
        "the jitter asked of the clock",
        || (clock.longest_sleep() > zos_perf::monitor::SLICE).then_some(()),
    );
    assert!(clock.longest_sleep() <= LONG_JITTER);
    clock.wait_sleeps(2, Duration::from_secs(5)).await;
    assert_eq!(
        (missing.runs(), stale.runs()),
        (0, 0),
        "no run during the jitter"
    );
    assert!(stored(&redis, "iperf").is_none());

    clock.release();
    wait_for(Duration::from_secs(5), "both start-up runs", || {
        (missing.runs() == 1 && stale.runs() == 1).then_some(())
    });
    wait_for(Duration::from_secs(5), "the result stored", || {
        stored(&redis, "iperf")
    });
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_during_the_jitter_ends_the_wait_without_a_run() {
    let redis = RedisServer::start();
    let old = put_result(&redis, "healthcheck", t0().timestamp());
    let clock = ManualClock::new(t0());
    clock.hold_longer_than(zos_perf::monitor::SLICE);
    let task = TestTask::new("healthcheck", Behaviour::Count(Duration::ZERO));
    let d = Started::start(
        &redis,
        vec![(task.clone(), jittered("30 * * * * *", LONG_JITTER))],
        Arc::new(clock.clone()),
    )
    .await;
    clock.advance(chrono::Duration::seconds(30));
    wait_for(Duration::from_secs(5), "waiting its jitter", || {
        d.store
            .status("healthcheck")
            .filter(|s| s.state == State::Waiting)
    });
    wait_for(
        Duration::from_secs(5),
        "the jitter asked of the clock",
        || (clock.longest_sleep() > zos_perf::monitor::SLICE).then_some(()),
    );
    let store = d.store.clone();
    let t = Instant::now();
    d.stop().await;
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(task.runs(), 0, "the wait ended without a run");
    let st = store.status("healthcheck").expect("status");
    assert_eq!(st.state, State::Idle, "{st:?}");
    assert_eq!(st.runs, 0, "{st:?}");
    assert_eq!(stored(&redis, "healthcheck"), Some(old));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_run_does_not_wait_its_jitter() {
    let redis = RedisServer::start();
    let task = TestTask::new("healthcheck", Behaviour::Count(Duration::ZERO));
    let clock = ManualClock::new(t0());
    clock.hold_longer_than(Duration::ZERO);
    let stop = CancellationToken::new();
    let store = ResultStore::new(
        zos_perf::node_redis::RedisLink::start(&redis.url(), stop.clone()).expect("link"),
    );
    let monitor = zos_perf::monitor::Monitor::new(
        vec![Registered::new(
            task.clone() as Arc<dyn Task>,
            jittered("30 * * * * *", LONG_JITTER),
        )],
        store,
        Arc::new(clock.clone()),
    );
    let result = tokio::time::timeout(
        Duration::from_secs(5),
        monitor.run_now(
            "healthcheck",
            stop.clone(),
            zos_perf::tasks::Progress::default(),
        ),
    )
    .await
    .expect("a manual run does not wait on the held clock")
    .expect("run");
    assert_eq!(result.result, json!({"run": 1}));
    assert_eq!(clock.sleeps(), 0, "no wait was asked of the clock");
    stop.cancel();
}

/// A run's remark (public-ip-validation's reason for `{}`) reaches
/// perf:status as `last_note`, and a failed run after it clears it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_remark_is_the_last_note_in_perf_status() {
    let redis = RedisServer::start();
    let task = TestTask::new(
        "public-ip-validation",
        Behaviour::Remark("a lower node validates"),
    );
    let (clock, stop) = ticking(
        t0(),
        chrono::Duration::seconds(1),
        Duration::from_millis(20),
    );
    let d = Started::start(
        &redis,
        vec![(
            task.clone(),
            settings("0 * * * * *", Duration::from_secs(30), false),
        )],
        Arc::new(clock),
    )
    .await;
    let st = wait_for(Duration::from_secs(5), "the remark in perf:status", || {
        status(&redis, "public-ip-validation").filter(|s| s.last_note.is_some())
    });
    assert_eq!(st.last_note.as_deref(), Some("a lower node validates"));
    assert_eq!(st.last_outcome, Some(Outcome::Ok));
    assert_eq!(
        stored(&redis, "public-ip-validation").map(|v| v.contains("\"result\":{}")),
        Some(true)
    );
    // The next run (a minute later on the ticking clock) fails: no note.
    let st = wait_for(Duration::from_secs(10), "the failed run", || {
        status(&redis, "public-ip-validation").filter(|s| s.last_outcome == Some(Outcome::Failed))
    });
    assert_eq!(st.last_note, None);
    stop.cancel();
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_run_keeps_the_old_value_byte_for_byte() {
    let redis = RedisServer::start();
    let now = t0();
    let old = put_result(&redis, "healthcheck", now.timestamp());
    let clock = ManualClock::new(now);
    let task = TestTask::new("healthcheck", Behaviour::Fail);
    let d = Started::start(
        &redis,
        vec![(
            task.clone(),
            settings("30 * * * * *", Duration::from_secs(30), false),
        )],
        Arc::new(clock.clone()),
    )
    .await;
    clock.advance(chrono::Duration::seconds(30));
    let st = wait_for(Duration::from_secs(5), "failed status", || {
        status(&redis, "healthcheck").filter(|s| s.last_outcome == Some(Outcome::Failed))
    });
    assert!(
        st.last_error
            .as_deref()
            .is_some_and(|e| e.contains("fails on purpose")),
        "{st:?}"
    );
    assert_eq!(stored(&redis, "healthcheck").as_deref(), Some(old.as_str()));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_task_and_a_hanging_one_leave_the_others_running() {
    let redis = RedisServer::start();
    let pid = Arc::new(AtomicU32::new(0));
    let (clock, stop) = ticking(
        t0(),
        chrono::Duration::seconds(1),
        Duration::from_millis(20),
    );
    let panics = TestTask::new("iperf", Behaviour::Panic);
    let hangs = TestTask::new("public-ip-validation", Behaviour::SpawnSleep(pid.clone()));
    let healthy = TestTask::new("healthcheck", Behaviour::Count(Duration::ZERO));
    let d = Started::start(
        &redis,
        vec![
            (
                panics.clone(),
                settings("* * * * * *", Duration::from_secs(30), false),
            ),
            (
                hangs.clone(),
                settings("0 0 0 1 1 *", Duration::from_millis(300), false),
            ),
            (
                healthy.clone(),
                settings("* * * * * *", Duration::from_secs(30), false),
            ),
        ],
        Arc::new(clock),
    )
    .await;
    let st = wait_for(Duration::from_secs(5), "timeout status", || {
        status(&redis, "public-ip-validation").filter(|s| s.last_outcome == Some(Outcome::Timeout))
    });
    assert!(
        st.last_error
            .as_deref()
            .is_some_and(|e| e.contains("timed out")),
        "{st:?}"
    );
    let child = pid.load(Ordering::SeqCst);
    assert!(child > 0);
    wait_for(Duration::from_secs(5), "child killed", || {
        let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
        // Gone, or a zombie waiting to be reaped: either way not running.
        (stat.is_empty() || stat.contains(") Z ")).then_some(())
    });
    let st = wait_for(Duration::from_secs(5), "panic status", || {
        status(&redis, "iperf").filter(|s| s.last_outcome == Some(Outcome::Panicked) && s.runs >= 2)
    });
    assert!(
        st.last_error
            .as_deref()
            .is_some_and(|e| e.contains("panics on purpose")),
        "{st:?}"
    );
    let before = healthy.runs();
    wait_for(Duration::from_secs(5), "healthy task goes on", || {
        (healthy.runs() > before + 2).then_some(())
    });
    stop.cancel();
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_gets_every_result_back_within_6_s() {
    let mut redis = RedisServer::start();
    let fresh = TestTask::new("cpu-benchmark", Behaviour::Count(Duration::ZERO));
    let every_second = TestTask::new("healthcheck", Behaviour::Count(Duration::ZERO));
    let d = Started::start(
        &redis,
        vec![
            (
                fresh.clone(),
                settings("0 0 0 1 1 *", Duration::from_secs(30), false),
            ),
            (
                every_second.clone(),
                settings("* * * * * *", Duration::from_secs(30), false),
            ),
        ],
        Arc::new(SystemClock),
    )
    .await;
    wait_for(Duration::from_secs(5), "first results", || {
        (stored(&redis, "cpu-benchmark").is_some() && stored(&redis, "healthcheck").is_some())
            .then_some(())
    });
    redis.kill();
    let runs_at_kill = every_second.runs();
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        every_second.runs() >= runs_at_kill + 2,
        "scheduling went on while redis was away"
    );
    redis.restart_empty();
    let restarted = Instant::now();
    // docs/daemon.md and docs/redis.md promise 6 s: at most 5 s of reconnect
    // backoff, then one sync pass.
    let (cpu, hc) = wait_for(Duration::from_secs(6), "results written back", || {
        Some((
            stored(&redis, "cpu-benchmark")?,
            stored(&redis, "healthcheck")?,
        ))
    });
    assert!(restarted.elapsed() < Duration::from_secs(6));
    assert_eq!(
        serde_json::from_str::<TaskResult>(&cpu)
            .expect("decode")
            .result,
        json!({"run": 1})
    );
    let hc: TaskResult = serde_json::from_str(&hc).expect("decode");
    assert!(
        hc.result["run"].as_u64().unwrap_or(0) as usize > runs_at_kill,
        "the newest result came back"
    );
    wait_for(Duration::from_secs(5), "status back", || {
        status(&redis, "cpu-benchmark")
    });
    assert_eq!(
        d.store.latest("cpu-benchmark").map(|r| r.result),
        Some(json!({"run": 1}))
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_absent_at_start_gets_the_results_once_it_appears() {
    let mut redis = RedisServer::start();
    redis.kill();
    let task = TestTask::new("healthcheck", Behaviour::Count(Duration::ZERO));
    let regs = vec![Registered::new(
        task.clone() as Arc<dyn Task>,
        settings("0 0 0 1 1 *", Duration::from_secs(30), false),
    )];
    let d = daemon(&redis)
        .load_wait(Duration::from_millis(300))
        .registered(regs)
        .clock(Arc::new(SystemClock))
        .start()
        .await
        .expect("daemon starts");
    assert!(!d.loaded(), "nothing answers yet");
    wait_for(Duration::from_secs(5), "the start-up run", || {
        (task.runs() == 1).then_some(())
    });
    redis.restart_empty();
    wait_for(Duration::from_secs(10), "result published", || {
        stored(&redis, "healthcheck")
    });
    assert!(d.shutdown().await, "stops in time");
}

/// The stale result goes; the status entry stays, saying the task is off
/// and why, with the settings it would run with (for `zos-perf tasks`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_task_has_its_stale_key_removed_and_its_status_says_off() {
    let redis = RedisServer::start();
    put_result(&redis, "iperf", t0().timestamp());
    put_result(&redis, "cpu-benchmark", t0().timestamp());
    // The status a previous daemon left for it, and one for another task.
    for name in ["iperf", "cpu-benchmark"] {
        let _: () = redis::cmd("HSET")
            .arg(STATUS_KEY)
            .arg(name)
            .arg(r#"{"cron": "0 0 */6 * * *"}"#)
            .query(&mut redis.conn())
            .expect("HSET");
    }
    let task = TestTask::new("iperf", Behaviour::Count(Duration::ZERO));
    let mut s = settings("0 0 */6 * * *", Duration::from_secs(30), true);
    s.enabled = false;
    let d = Started::start(
        &redis,
        vec![(task.clone(), s)],
        Arc::new(ManualClock::new(t0())),
    )
    .await;
    let st = wait_for(
        Duration::from_secs(5),
        "key removed and status field replaced",
        || {
            // The entry left before is not a whole status: read it leniently.
            let raw: Option<String> = redis::cmd("HGET")
                .arg(STATUS_KEY)
                .arg("iperf")
                .query(&mut redis.conn())
                .ok()?;
            let st: TaskStatus = serde_json::from_str(&raw?).ok()?;
            (stored(&redis, "iperf").is_none() && st.enabled.is_some()).then_some(st)
        },
    );
    assert_eq!(st.enabled, Some(false), "{st:?}");
    assert_eq!(st.off_reason.as_deref(), Some("disabled by configuration"));
    assert_eq!(
        (st.cron.as_str(), st.timeout, st.exclusive, st.next_fire),
        ("0 0 */6 * * *", Some(30), true, None)
    );
    assert!(
        stored(&redis, "cpu-benchmark").is_some(),
        "other keys untouched"
    );
    let other: Option<String> = redis::cmd("HGET")
        .arg(STATUS_KEY)
        .arg("cpu-benchmark")
        .query(&mut redis.conn())
        .expect("HGET");
    assert!(other.is_some(), "other status fields untouched");
    assert_eq!(task.runs(), 0);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cancels_a_long_run_promptly() {
    let redis = RedisServer::start();
    let task = TestTask::new("iperf", Behaviour::Count(Duration::from_secs(600)));
    let d = Started::start(
        &redis,
        vec![(
            task.clone(),
            settings("0 0 0 1 1 *", Duration::from_secs(900), true),
        )],
        Arc::new(SystemClock),
    )
    .await;
    wait_for(Duration::from_secs(5), "run started", || {
        (task.running.load(Ordering::SeqCst) == 1).then_some(())
    });
    let t = Instant::now();
    d.stop().await;
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "stopped in {:?}",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_while_waiting_for_an_exclusive_turn_is_prompt_and_runs_nothing() {
    let redis = RedisServer::start();
    put_result(&redis, "iperf", t0().timestamp()); // fresh: no start-up run
    let clock = ManualClock::new(t0());
    // The holder starts at once (no stored result) and runs for 10 minutes.
    let holder = TestTask::new("cpu-benchmark", Behaviour::Count(Duration::from_secs(600)));
    let waiter = TestTask::new("iperf", Behaviour::Count(Duration::ZERO));
    let d = Started::start(
        &redis,
        vec![
            (
                holder.clone(),
                settings("0 0 0 1 1 *", Duration::from_secs(900), true),
            ),
            (
                waiter.clone(),
                settings("30 * * * * *", Duration::from_secs(900), true),
            ),
        ],
        Arc::new(clock.clone()),
    )
    .await;
    wait_for(Duration::from_secs(5), "holder running", || {
        (holder.running.load(Ordering::SeqCst) == 1).then_some(())
    });
    clock.advance(chrono::Duration::seconds(30));
    wait_for(Duration::from_secs(5), "waiting for its turn", || {
        d.store
            .status("iperf")
            .filter(|s| s.state == State::Waiting)
    });
    let store = d.store.clone();
    let t = Instant::now();
    d.stop().await;
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(waiter.runs(), 0, "its turn never came");
    let st = store.status("iperf").expect("status");
    assert_eq!((st.state, st.runs), (State::Idle, 0), "{st:?}");
    let st = store.status("cpu-benchmark").expect("status");
    assert_eq!(st.last_outcome, Some(Outcome::Cancelled), "{st:?}");
}

/// The system clock until armed; from then on reading it panics, and so
/// does the monitor, which reads it every slice.
#[derive(Default)]
struct BreakingClock {
    armed: AtomicBool,
    broke: AtomicBool,
}

impl Timekeeper for BreakingClock {
    fn now(&self) -> chrono::DateTime<Utc> {
        if self.armed.load(Ordering::SeqCst) {
            self.broke.store(true, Ordering::SeqCst);
            panic!("the test clock breaks on purpose");
        }
        Utc::now()
    }
    fn sleep(&self, d: Duration) -> futures::future::BoxFuture<'static, ()> {
        SystemClock.sleep(d)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_reports_a_part_that_panicked() {
    let redis = RedisServer::start();
    // A fresh result: no run at start, so only the monitor's loop reads
    // the clock (a run reading it would panic in the run, not the loop).
    put_result(&redis, "healthcheck", Utc::now().timestamp());
    let clock = Arc::new(BreakingClock::default());
    let task = TestTask::new("healthcheck", Behaviour::Count(Duration::ZERO));
    let d = Started::start(
        &redis,
        vec![(
            task.clone(),
            settings("0 0 0 1 1 *", Duration::from_secs(30), false),
        )],
        clock.clone(),
    )
    .await;
    clock.armed.store(true, Ordering::SeqCst);
    tokio::task::block_in_place(|| {
        wait_for(Duration::from_secs(5), "the monitor to panic", || {
            clock.broke.load(Ordering::SeqCst).then_some(())
        })
    });
    assert_eq!(task.runs(), 0);
    let t = Instant::now();
    let clean = d.daemon.shutdown().await;
    assert!(!clean, "a part panicked: shutdown must not call that clean");
    // Not for want of time: the other parts stopped well within the grace.
    assert!(
        t.elapsed() < zos_perf::daemon::SHUTDOWN_GRACE,
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn manual_clock_steps_both_ways() {
    let c = ManualClock::new(t0());
    c.advance(chrono::Duration::days(1));
    assert_eq!(c.now(), t0() + chrono::Duration::days(1));
    c.set(t0() - chrono::Duration::days(1));
    assert_eq!(c.now(), t0() - chrono::Duration::days(1));
}
