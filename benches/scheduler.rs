//! Scheduler lateness: how long after its due instant a `* * * * * *` task
//! actually starts, over at least 100 fires, with the real clock.
//!
//! Run: `cargo bench --bench scheduler` (takes about 2 minutes).
//! Target: p99 ≤ 20 ms.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, DurationRound, Utc};
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

fn main() {
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
            .arg(zos_perf::redis::keys::result("healthcheck"))
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
    let mut late: Vec<f64> = stamps
        .iter()
        .map(|t| {
            let due = t
                .duration_trunc(chrono::Duration::seconds(1))
                .expect("trunc");
            (*t - due).num_microseconds().unwrap_or(0) as f64 / 1000.0
        })
        .collect();
    late.sort_by(|a, b| a.total_cmp(b));
    let body = format!(
        "A `* * * * * *` task under the real monitor and clock; lateness = run start − due second.\n\n\
| fires | p50 | p99 | max |\n|---|---|---|---|\n| {} | {:.2} ms | {:.2} ms | {:.2} ms |\n\nTarget: p99 ≤ 20 ms.\n",
        late.len(),
        support::percentile(&late, 50.0),
        support::percentile(&late, 99.0),
        late[late.len() - 1]
    );
    support::write_section("scheduler-lateness", "Scheduler lateness", &body);
}
