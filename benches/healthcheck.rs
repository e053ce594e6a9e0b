//! How long one healthcheck run takes, with the default 5 s connect timeout
//! and the six services of a network (2 GraphQL, relay, substrate,
//! activation, flist hub), when all of them answer and when none does.
//!
//! Everything happens inside network namespaces made here (root needed):
//! "answering" services are listeners on loopback addresses, "silent" ones
//! are addresses routed to a gateway whose MAC nobody has, so packets are
//! dropped without an answer and never leave the namespace. Retries are off
//! (backoff_total 0): this measures one attempt, which is what every run
//! costs when the checks pass.
//!
//! Run: `cargo bench --bench figures -- healthcheck`.

use crate::{common, support};
use std::time::{Duration, Instant};

use common::{dropping_ns, in_netns, NetNs};
use serde_json::Value;
use tokio::net::TcpListener;
use zos_perf::tasks::healthcheck::{Flags, Healthcheck, NetworkTargets, Settings};
use zos_perf::tasks::retry::RetryPolicy;
use zos_perf::tasks::{RunContext, Task};

/// The six services of a network, with `a`..`f` standing for their hosts.
fn services(hosts: [&str; 6]) -> Vec<String> {
    vec![
        format!("https://{}/graphql", hosts[0]),
        format!("https://{}/graphql", hosts[1]),
        format!("wss://{}", hosts[2]),
        format!("wss://{}/", hosts[3]),
        format!("https://{}/activation/activate", hosts[4]),
        format!("redis://{}:9900", hosts[5]),
    ]
}

fn task(dir: &std::path::Path, services: Vec<String>) -> Healthcheck {
    std::fs::create_dir_all(dir.join("cache")).expect("cache dir");
    Healthcheck::with_settings(Settings {
        cache_dir: dir.join("cache"),
        flags: Flags::new(dir.join("flags")),
        connect_timeout: Duration::from_secs(5),
        backoff: RetryPolicy {
            initial: Duration::from_secs(180),
            max_interval: Duration::from_secs(30),
            total: Duration::ZERO,
        },
        network: NetworkTargets::PerUrl(services),
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn main() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();

    // All answer: listeners on 127.0.0.1-6, ports 443 and 9900.
    let up = NetNs::new("hcbup");
    let d = dir.join("up");
    let answering: Vec<f64> = in_netns(&up.name, move || async move {
        // Accept and drop, as a real server would: a listener that never
        // accepts fills its backlog, and then SYNs go unanswered.
        for port in [443, 9900] {
            let l = TcpListener::bind(("0.0.0.0", port)).await.expect("bind");
            tokio::spawn(async move {
                while let Ok((conn, _)) = l.accept().await {
                    drop(conn);
                }
            });
        }
        let hosts = [
            "127.0.0.1",
            "127.0.0.2",
            "127.0.0.3",
            "127.0.0.4",
            "127.0.0.5",
            "127.0.0.6",
        ];
        let t = task(&d, services(hosts));
        let ctx = RunContext::default();
        let mut samples = Vec::new();
        for _ in 0..200 {
            let start = Instant::now();
            let v = t.run(&ctx).await.expect("run");
            samples.push(ms(start.elapsed()));
            assert_eq!(v, serde_json::json!({"cache": [], "network": []}));
        }
        samples
    });

    // None answers: six addresses whose packets are dropped.
    let down = dropping_ns("hcbdown");
    let d = dir.join("down");
    let silent: Vec<f64> = in_netns(&down.name, move || async move {
        let hosts = [
            "203.0.113.1",
            "203.0.113.2",
            "203.0.113.3",
            "203.0.113.4",
            "203.0.113.5",
            "203.0.113.6",
        ];
        let t = task(&d, services(hosts));
        let ctx = RunContext::default();
        let mut samples = Vec::new();
        for _ in 0..3 {
            let start = Instant::now();
            let v = t.run(&ctx).await.expect("run");
            samples.push(ms(start.elapsed()));
            let errors = v["network"].as_array().map(Vec::len);
            assert_eq!(errors, Some(6), "{v}");
            assert_eq!(v["cache"], Value::Array(vec![]));
        }
        samples
    });

    let mut a = answering;
    a.sort_by(f64::total_cmp);
    let mut s = silent;
    s.sort_by(f64::total_cmp);

    // A network that stays silent, under the default retry policy: the
    // task's own retry loop on a paused clock, each attempt lasting the
    // median silent attempt measured above.
    let policy = Settings::new(
        &zos_perf::tasks::healthcheck::HealthcheckConfig::default(),
        &zos_perf::Config::from_toml("")
            .expect("config")
            .grid_context(),
    )
    .backoff;
    let attempt = Duration::from_secs_f64(support::percentile(&s, 50.0) / 1000.0);
    let (retried, took, starts) = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("paused runtime")
        .block_on(async move {
            let t0 = tokio::time::Instant::now();
            let starts = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let log = starts.clone();
            let retried = zos_perf::tasks::retry::retry(
                policy,
                &tokio_util::sync::CancellationToken::new(),
                "network",
                move |_| {
                    log.lock().expect("starts").push(t0.elapsed());
                    async move {
                        tokio::time::sleep(attempt).await;
                        vec!["silent".to_string()]
                    }
                },
            )
            .await
            .expect("not cancelled");
            let starts = starts.lock().expect("starts").clone();
            (retried, t0.elapsed(), starts)
        });
    let mmss = |d: Duration| format!("{} min {:.0} s", d.as_secs() / 60, d.as_secs_f64() % 60.0);
    let starts: Vec<String> = starts.iter().map(|d| mmss(*d)).collect();
    let body = format!(
        "One healthcheck run (cache check + network check of the 6 services of a network, \
connect timeout 5 s, no retry), inside test network namespaces.\n\n\
| case | runs | p50 | p99 | max |\n|---|---|---|---|---|\n\
| all 6 services answer (loopback listeners) | {} | {:.2} ms | {:.2} ms | {:.2} ms |\n\
| no service answers (packets dropped) | {} | {:.0} ms | {:.0} ms | {:.0} ms |\n\n\
A network that stays silent, under the default retry policy (first wait {}, doubling, \
{} in total), replayed through the task's retry loop on a paused clock with each attempt \
taking the median above: {} attempts, starting at {}; the run ends after {}. A passing run \
costs one attempt.\n",
        a.len(),
        support::percentile(&a, 50.0),
        support::percentile(&a, 99.0),
        a[a.len() - 1],
        s.len(),
        support::percentile(&s, 50.0),
        support::percentile(&s, 99.0),
        s[s.len() - 1],
        mmss(policy.initial),
        mmss(policy.total),
        retried.attempts,
        starts.join(", "),
        mmss(took),
    );
    support::write_section("healthcheck", "healthcheck: one run", &body);
}
