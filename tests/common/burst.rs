//! A burst of `zos.perf.history` requests against the shipped daemon, for
//! the test that bounds its memory and the bench that measures it: a full
//! default history in a real Redis (120 records of every task, iperf
//! records of about 17 KB), requests of many tasks and limits pushed at
//! once as the RMB peer would, every reply taken and checked, and the
//! daemon's peak RSS read from /proc.

use std::collections::HashMap;
use std::process::Child;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use super::RedisServer;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Records per task: the default history depth.
pub const DEPTH: usize = 120;

/// A stored record of task `name`, the `i`-th of its history; an iperf
/// record has 64 entries: about 17 KB, as a mid-size farm gives.
pub fn record(name: &str, ts: i64, i: usize) -> String {
    record_of(name, ts, i, 64)
}

/// [`record`] with `iperf_entries` entries in an iperf record (the idle
/// bench stores 160: a large farm).
pub fn record_of(name: &str, ts: i64, i: usize, iperf_entries: usize) -> String {
    let result = match name {
        "cpu-benchmark" => json!({"single": 1.1 + (i % 7) as f64 * 0.01, "multi": 2.3, "threads": 2, "workloads": 3}),
        "iperf" => Value::Array((0..iperf_entries).map(|n| json!({"upload_speed": 4.1e8 + (n + i) as f64,
            "download_speed": 9.2e8 - (n + i) as f64, "node_id": 1000 + n,
            "node_ip": format!("198.51.100.{}", n % 250), "test_type": if n % 4 < 2 { "tcp" } else { "udp" },
            "error": "", "cpu_report": {"host_total": 12.3, "host_user": 4.5, "host_system": 7.8,
            "remote_total": 10.1, "remote_user": 3.2, "remote_system": 6.9}})).collect()),
        "healthcheck" => json!({"cache": [], "network": []}),
        "public-ip-validation" => Value::Object((0..16).map(|n| (format!("203.0.113.{n}/24"),
            json!({"state": "valid", "reason": ""}))).collect()),
        _ => json!({"pass": true}),
    };
    json!({"name": name, "description": "d", "timestamp": ts, "result": result}).to_string()
}

/// Fills `redis` with a full history of every task, newest first.
pub fn fill(redis: &RedisServer) {
    let mut conn = redis.conn();
    for name in zos_perf::tasks::NAMES {
        let records: Vec<String> = (0..DEPTH)
            .map(|i| record(name, 1_800_000_000 - i as i64 * 3600, i))
            .collect();
        let _: () = redis::cmd("RPUSH")
            .arg(format!("zos-perf:history:{name}"))
            .arg(&records)
            .query(&mut conn)
            .expect("RPUSH");
    }
}

/// `n` requests of many tasks and limits: every other one for iperf (the
/// largest records), each limit different from its neighbours'.
pub fn mix(n: usize) -> Vec<(&'static str, usize)> {
    let names = zos_perf::tasks::NAMES;
    (0..n)
        .map(|k| {
            let name = if k % 2 == 0 {
                "iperf"
            } else {
                names[(k / 2) % names.len()]
            };
            (name, 1 + (k * 7 + k / 120) % DEPTH)
        })
        .collect()
}

/// A `kB` field of /proc/<pid>/status, in KiB.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// Starts the shipped daemon with every task disabled on `redis` and
/// waits until it answers a history request.
pub fn daemon(redis: &RedisServer, dir: &std::path::Path) -> super::KillOnDrop {
    let cfg = super::daemon::write_config(dir, &super::only_task(""));
    let child: Child = super::spawn_quiet_daemon(&cfg, &redis.url());
    let daemon = super::KillOnDrop(child);
    let client = redis::Client::open(redis.url()).expect("client");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let reply = zos_perf::bus::local::client::call(
            &client,
            "zos.perf.history",
            br#"{"Name": "cpu-benchmark", "Limit": 1}"#,
            Duration::from_secs(30),
        )
        .await
        .expect("the daemon answers");
        reply.result().expect("a history");
    });
    daemon
}

/// What a burst did.
pub struct Outcome {
    /// Replies taken, all checked.
    pub replies: usize,
    /// Bytes of replies taken.
    pub bytes: u64,
    pub seconds: f64,
}

/// Pushes `requests` at once (one LPUSH) and takes every reply, checking
/// that each is the newest `min(limit, DEPTH)` records of its task (only
/// their count and the first record's timestamp when `light`).
pub fn run(redis: &RedisServer, requests: &[(&'static str, usize)], light: bool) -> Outcome {
    let ret = format!("msgbus.test.burst{:016x}", rand::random::<u64>());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let messages: Vec<Vec<u8>> = requests
        .iter()
        .enumerate()
        .map(|(k, (name, limit))| {
            let payload = json!({"Name": name, "Limit": limit}).to_string();
            serde_json::to_vec(&json!({"ver": 1, "ref": k.to_string(), "src": "7", "cmd": "zos.perf.history",
                "exp": 600, "dat": B64.encode(payload), "tag": null, "ret": ret, "shm": null, "now": now}))
            .expect("encode")
        })
        .collect();
    let started = std::time::Instant::now();
    let mut conn = redis.conn();
    let _: () = redis::cmd("LPUSH")
        .arg("msgbus.zos.perf.history")
        .arg(&messages)
        .query(&mut conn)
        .expect("LPUSH");
    drop(messages);
    let mut left: HashMap<String, usize> = HashMap::new();
    for (k, (_, limit)) in requests.iter().enumerate() {
        left.insert(k.to_string(), (*limit).min(DEPTH));
    }
    let mut bytes = 0u64;
    let newest = 1_800_000_000i64;
    while !left.is_empty() {
        let got: Option<(String, Vec<u8>)> = redis::cmd("BRPOP")
            .arg(&ret)
            .arg(60)
            .query(&mut conn)
            .expect("BRPOP");
        let (_, raw) = got.unwrap_or_else(|| panic!("{} replies missing after 60 s", left.len()));
        bytes += raw.len() as u64;
        let reply: Value = serde_json::from_slice(&raw).expect("reply JSON");
        assert!(reply["err"].is_null(), "{}", reply["err"]);
        let reference = reply["ref"].as_str().expect("ref").to_string();
        let want = left
            .remove(&reference)
            .unwrap_or_else(|| panic!("reply {reference} unasked for or twice"));
        let dat = B64
            .decode(reply["dat"].as_str().expect("dat"))
            .expect("base64");
        if light {
            let records: Vec<serde::de::IgnoredAny> = serde_json::from_slice(&dat).expect("array");
            assert_eq!(records.len(), want, "reply {reference}");
        } else {
            let records: Vec<Value> = serde_json::from_slice(&dat).expect("array");
            assert_eq!(records.len(), want, "reply {reference}");
            for (i, r) in records.iter().enumerate() {
                assert_eq!(
                    r["timestamp"],
                    newest - i as i64 * 3600,
                    "reply {reference}"
                );
            }
        }
    }
    Outcome {
        replies: requests.len(),
        bytes,
        seconds: started.elapsed().as_secs_f64(),
    }
}
