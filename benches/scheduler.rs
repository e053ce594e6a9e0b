//! Scheduler lateness: how long after its due instant a `* * * * * *` task
//! actually starts, over at least 100 fires, with the real clock.
//!
//! The due instant of each fire is the one the monitor fires it for (its
//! `due` debug event, captured by a tracing layer), not the run's start
//! truncated to the second: a run 1.3 s late counts as 1.3 s, and due
//! seconds that never fired are counted as gaps.
//!
//! Run: `cargo bench --bench figures -- scheduler` (takes about 2 minutes).
//! Target: p99 ≤ 20 ms.

use crate::{common, support};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use tracing_subscriber::layer::SubscriberExt;
use zos_perf::config::{Config, TaskSettings};
use zos_perf::monitor::Registered;
use zos_perf::schedule::Schedule;
use zos_perf::store::TaskResult;
use zos_perf::tasks::{RunContext, RunFuture, Task, TaskDefaults};
use zos_perf::Daemon;

const FIRES: usize = 120;

struct Stamp(Arc<Mutex<Vec<DateTime<Utc>>>>);

impl Task for Stamp {
    fn name(&self) -> &'static str {
        "healthcheck"
    }
    fn description(&self) -> &'static str {
        "lateness probe"
    }
    fn defaults(&self) -> TaskDefaults {
        TaskDefaults {
            cron: "* * * * * *",
            jitter: Duration::ZERO,
            timeout: Duration::from_secs(5),
            exclusive: false,
        }
    }
    fn run<'a>(&'a self, _ctx: &'a RunContext) -> RunFuture<'a> {
        let now = Utc::now();
        self.0.lock().expect("stamps").push(now);
        Box::pin(async { Ok(serde_json::Value::Null) })
    }
}

/// Records the `due` field of the monitor's "due" events, in order.
struct Dues(Arc<Mutex<Vec<DateTime<Utc>>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Dues {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Due(Option<String>, bool);
        impl tracing::field::Visit for Due {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                match field.name() {
                    "due" => self.0 = Some(format!("{value:?}")),
                    "message" => self.1 = format!("{value:?}") == "due",
                    _ => {}
                }
            }
        }
        let mut v = Due(None, false);
        event.record(&mut v);
        if let (Some(text), true) = (v.0, v.1) {
            let text = text.trim_end_matches(" UTC");
            if let Ok(t) = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f") {
                self.0.lock().expect("dues").push(t.and_utc());
            }
        }
    }
}

pub fn main() {
    let dues = Arc::new(Mutex::new(Vec::new()));
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(Dues(dues.clone())),
    )
    .expect("tracing subscriber");
    let redis = common::RedisServer::start();
    let stamps = Arc::new(Mutex::new(Vec::new()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        // A stored result, so that the start-up check does not add a run.
        let stored = TaskResult {
            name: "healthcheck".into(),
            description: "d".into(),
            timestamp: Utc::now().timestamp(),
            result: serde_json::Value::Null,
        };
        let _: () = redis::cmd("SET")
            .arg(zos_perf::node_redis::keys::result("healthcheck"))
            .arg(serde_json::to_string(&stored).expect("json"))
            .query(&mut redis.conn())
            .expect("SET");
        let config = Config::from_toml(&format!(
            "redis = {:?}\n[bus]\nenabled = false\n",
            redis.url()
        ))
        .expect("config");
        let settings = TaskSettings {
            enabled: true,
            schedule: Schedule::parse("* * * * * *").expect("cron"),
            jitter: Duration::ZERO,
            timeout: Duration::from_secs(5),
            exclusive: false,
        };
        let reg = Registered::new(Arc::new(Stamp(stamps.clone())), settings);
        let daemon = Daemon::builder(config)
            .registered(vec![reg])
            .load_wait(Duration::from_secs(5))
            .start()
            .await
            .expect("daemon starts");
        while stamps.lock().expect("stamps").len() < FIRES {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        daemon.shutdown().await;
    });
    let stamps = stamps.lock().expect("stamps").clone();
    let dues = dues.lock().expect("dues").clone();
    // Each fire logs its due time, then its run starts: the k-th run is
    // for the k-th due time (runs are instant, so none is skipped).
    let pairs = stamps.len().min(dues.len());
    assert!(
        pairs >= FIRES,
        "{} due events for {} runs",
        dues.len(),
        stamps.len()
    );
    let mut late: Vec<f64> = stamps
        .iter()
        .zip(&dues)
        .map(|(run, due)| (*run - *due).num_microseconds().unwrap_or(0) as f64 / 1000.0)
        .collect();
    // Due seconds with no fire between two fires.
    let gaps: i64 = dues
        .windows(2)
        .map(|w| (w[1] - w[0]).num_seconds() - 1)
        .filter(|g| *g > 0)
        .sum();
    late.sort_by(|a, b| a.total_cmp(b));
    let body = format!(
        "A `* * * * * *` task under the real monitor and clock; lateness = run start − the due \
instant the monitor fired it for; gaps = due seconds between the first and last fire that \
never fired.\n\n\
| fires | p50 | p99 | max | gaps |\n|---|---|---|---|---|\n| {} | {:.2} ms | {:.2} ms | {:.2} ms | {gaps} |\n\nTarget: p99 ≤ 20 ms, no gaps.\n",
        late.len(),
        support::percentile(&late, 50.0),
        support::percentile(&late, 99.0),
        late[late.len() - 1]
    );
    support::write_section("scheduler-lateness", "Scheduler lateness", &body);
}
