//! The per-task history: its cap and order in Redis and memory, its return
//! after Redis restarts empty, the `zos.perf.history` bus command with its
//! errors, and the `zos-perf history` command.

use crate::common;

use std::process::Command;
use std::time::Duration;

use common::observe::BIN;
use common::RedisServer;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use zos_perf::bus::{self, Bus, BusConfig};
use zos_perf::node_redis::RedisLink;
use zos_perf::store::history::{self, HistoryConfig};
use zos_perf::store::{ResultStore, TaskResult};

fn cpu(ts: i64, single: f64) -> TaskResult {
    TaskResult {
        name: "cpu-benchmark".into(),
        description: "d".into(),
        timestamp: ts,
        result: json!({"single": single, "multi": single * 2.0, "threads": 2, "workloads": 0}),
    }
}

fn list(redis: &RedisServer, name: &str) -> Vec<TaskResult> {
    let raw: Vec<String> = redis::cmd("LRANGE")
        .arg(history::key_of(name))
        .arg(0)
        .arg(-1)
        .query(&mut redis.conn())
        .expect("LRANGE");
    raw.iter()
        .map(|r| serde_json::from_str(r).expect("a record"))
        .collect()
}

fn push_raw(redis: &RedisServer, name: &str, records: &[String]) {
    // RPUSH keeps the given order: newest first, as the daemon writes.
    let _: () = redis::cmd("RPUSH")
        .arg(history::key_of(name))
        .arg(records)
        .query(&mut redis.conn())
        .expect("RPUSH");
}

#[tokio::test]
async fn history_is_capped_newest_first_and_survives_an_empty_redis_restart() {
    let mut redis = RedisServer::start();
    let shutdown = CancellationToken::new();
    let link = RedisLink::start(&redis.url(), shutdown.clone()).expect("link");
    let store = ResultStore::with_history(link, &HistoryConfig { depth: 3 });
    assert!(store.load(Duration::from_secs(5)).await, "redis answers");
    for ts in 1..=5 {
        store.put(cpu(1_700_000_000 + ts, ts as f64)).expect("put");
    }
    store.sync_once().await.expect("sync").expect("connected");
    let got: Vec<i64> = list(&redis, "cpu-benchmark")
        .iter()
        .map(|r| r.timestamp)
        .collect();
    assert_eq!(got, [1_700_000_005, 1_700_000_004, 1_700_000_003]);
    // Outside the perf. prefix: a reader of perf.* results never sees it.
    assert!(!history::key_of("cpu-benchmark").starts_with("perf."));

    // One more: still three, the oldest gone.
    store.put(cpu(1_700_000_006, 6.0)).expect("put");
    store.sync_once().await.expect("sync").expect("connected");
    let got: Vec<i64> = list(&redis, "cpu-benchmark")
        .iter()
        .map(|r| r.timestamp)
        .collect();
    assert_eq!(got, [1_700_000_006, 1_700_000_005, 1_700_000_004]);

    redis.restart_empty();
    let before = store.history().recent("cpu-benchmark", 10);
    // Each pass checks the list; the one after the loss writes it back.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while list(&redis, "cpu-benchmark").len() != 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "history not written back"
        );
        let _ = store.sync_once().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let back: Vec<String> = list(&redis, "cpu-benchmark")
        .iter()
        .map(|r| serde_json::to_string(r).expect("encode"))
        .collect();
    assert_eq!(back, before, "the same records, in the same order");
    shutdown.cancel();
}

#[tokio::test]
async fn stored_history_is_adopted_at_start_below_the_new_records() {
    let redis = RedisServer::start();
    let old: Vec<String> = (1..=2)
        .rev()
        .map(|ts| serde_json::to_string(&cpu(ts, ts as f64)).expect("encode"))
        .collect();
    push_raw(&redis, "cpu-benchmark", &old);
    // A stranger's value in the list is not taken in.
    push_raw(&redis, "cpu-benchmark", &["not a result".to_string()]);
    let shutdown = CancellationToken::new();
    let link = RedisLink::start(&redis.url(), shutdown.clone()).expect("link");
    let store = ResultStore::with_history(link, &HistoryConfig::default());
    store.put(cpu(3, 3.0)).expect("put");
    assert!(store.load(Duration::from_secs(5)).await, "redis answers");
    store.sync_once().await.expect("sync").expect("connected");
    store.sync_once().await.expect("sync").expect("connected");
    let got: Vec<i64> = list(&redis, "cpu-benchmark")
        .iter()
        .map(|r| r.timestamp)
        .collect();
    assert_eq!(got, [3, 2, 1]);
    shutdown.cancel();
}

async fn call(client: &redis::Client, payload: &str) -> Result<Value, bus::BusError> {
    let reply = bus::local::client::call(
        client,
        "zos.perf.history",
        payload.as_bytes(),
        Duration::from_secs(5),
    )
    .await
    .expect("a reply");
    match reply.result() {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).expect("JSON")),
        Err(bus::message::ReplyProblem::Error(e)) => Err(e),
        Err(other) => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_history_answers_newest_first_with_a_limit_and_the_errors_of_get() {
    let redis = RedisServer::start();
    let records: Vec<String> = (1..=4)
        .rev()
        .map(|ts| serde_json::to_string(&cpu(ts, ts as f64)).expect("encode"))
        .collect();
    push_raw(&redis, "cpu-benchmark", &records);
    push_raw(&redis, "healthcheck", &["not json".to_string()]);
    let client = redis::Client::open(redis.url()).expect("client");
    let shutdown = CancellationToken::new();
    let bus = Bus::new(client.clone(), BusConfig::default());
    let stats = bus.stats();
    let handle = tokio::spawn(bus.serve(shutdown.clone()));

    let all = call(&client, r#"{"Name": "cpu-benchmark"}"#)
        .await
        .expect("answer");
    let ts: Vec<i64> = all
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r["timestamp"].as_i64().expect("timestamp"))
        .collect();
    assert_eq!(ts, [4, 3, 2, 1]);
    assert_eq!(
        all[0],
        serde_json::from_str::<Value>(&records[0]).expect("json")
    );
    let two = call(&client, r#"{"name": "cpu-benchmark", "Limit": 2}"#)
        .await
        .expect("answer");
    assert_eq!(two.as_array().map(Vec::len), Some(2));
    assert_eq!(two[0]["timestamp"], 4);

    for (payload, code) in [
        (r#"{"Name": "iperf"}"#, 7),
        (r#"{"Name": "healthcheck"}"#, 8),
        (r#"{"Name": "bogus"}"#, 6),
        (r#"{"Name": "iperf", "Limit": 0}"#, 5),
        (r#"{"Name": "iperf", "Limit": "3"}"#, 5),
        ("nope", 5),
    ] {
        let e = call(&client, payload).await.expect_err(payload);
        assert_eq!(e.code, code, "{payload}: {e:?}");
    }
    let by_cmd = stats.by_command();
    assert_eq!(by_cmd[2].1, 8, "{by_cmd:?}");
    shutdown.cancel();
    handle.await.expect("bus stopped");
}

fn zos_perf(redis: &RedisServer, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(["--redis", &redis.url()])
        .args(args)
        .env_remove("ZOS_PERF_REDIS")
        .env_remove("ZOS_PERF_CONFIG")
        .output()
        .expect("run zos-perf")
}

#[test]
fn history_command_prints_a_table_a_trend_and_json() {
    let redis = RedisServer::start();
    let records: Vec<String> = [
        (1_700_000_300, 1.5),
        (1_700_000_200, 1.2),
        (1_700_000_100, 1.0),
    ]
    .iter()
    .map(|(ts, v)| serde_json::to_string(&cpu(*ts, *v)).expect("encode"))
    .collect();
    push_raw(&redis, "cpu-benchmark", &records);

    let out = zos_perf(&redis, &["history", "cpu-benchmark"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].contains("SINGLE") && lines[0].contains("MULTI"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("2023-11-14 22:18:20") && lines[1].contains("1.500 s"),
        "{text}"
    );
    assert!(lines[3].contains("1.000 s"), "{text}");
    let trend = lines
        .iter()
        .find(|l| l.starts_with("single"))
        .expect("a trend line");
    assert!(trend.contains("▁▄█"), "{text}");

    let out = zos_perf(
        &redis,
        &["history", "cpu-benchmark", "--json", "--limit", "2"],
    );
    assert!(out.status.success());
    let got: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let want: Vec<Value> = records[..2]
        .iter()
        .map(|r| serde_json::from_str(r).expect("json"))
        .collect();
    assert_eq!(got, Value::Array(want));

    let out = zos_perf(&redis, &["history", "iperf"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("zos-perf:history:iperf"));
    let out = zos_perf(&redis, &["history", "bogus"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown task"));
    let out = zos_perf(&redis, &["history", "iperf", "--limit", "0"]);
    assert!(!out.status.success());
}

/// A burst of history requests of every task and many limits over a full
/// history of big records: the daemon's peak RSS stays bounded by bytes,
/// not by the number of requests (160 of them took over 1.5 GB when each
/// distinct query held its own copy of the list, its base64 and its reply
/// for the whole batch), and every reply is right.
#[test]
fn a_burst_of_history_requests_keeps_the_daemon_under_64_mib() {
    use common::burst;
    let redis = RedisServer::start();
    burst::fill(&redis);
    let dir = tempfile::tempdir().expect("temp dir");
    let daemon = burst::daemon(&redis, dir.path());
    let requests = burst::mix(160);
    let out = burst::run(&redis, &requests, false);
    assert_eq!(out.replies, 160);
    let peak_kib = burst::status_kib(daemon.0.id(), "VmHWM");
    assert!(
        peak_kib <= 64 * 1024,
        "peak RSS {peak_kib} KiB over 64 MiB after {} MB of replies",
        out.bytes / 1_000_000
    );
}
