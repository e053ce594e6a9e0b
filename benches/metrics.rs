//! The cost of the observability outputs:
//! - scrape latency (`/metrics`, and the dashboard `/`) of the shipped
//!   daemon holding a full history (120 results of every task, iperf
//!   results of 160 entries each, as a big farm gives);
//! - the daemon's RSS and CPU over 60 s with the listener on and that
//!   history held, scraped every 15 s as Prometheus does by default;
//! - the cost of a history append (deflating one record in memory), and
//!   of a put plus the sync pass that pushes it to Redis;
//! - scrapes answered while one source floods the listener with dripping
//!   connections (section "Under hostile input: metrics scrapes ...").
//!
//! Run: `cargo bench --bench figures -- metrics` (about 2 min); the flood alone:
//! `cargo bench --bench figures -- metrics flood`.
//! Targets: RSS ≤ 10 MiB, CPU ≤ 0.1 %.

use crate::{common, support};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const DEPTH: i64 = 120;
const SECONDS: u64 = 60;

fn iperf_result(k: f64) -> Value {
    let entries: Vec<Value> = (0u32..160)
        .map(|i| {
            let ip = if i.is_multiple_of(2) {
                format!("198.51.100.{}", i % 250)
            } else {
                format!("2001:db8::{i:x}")
            };
            json!({"upload_speed": 4.1e8 * k + i as f64, "download_speed": 9.2e8 * k - i as f64,
                   "node_id": 1000 + i, "node_ip": ip, "test_type": if i % 4 < 2 { "tcp" } else { "udp" },
                   "error": "", "cpu_report": {"host_total": 12.3, "host_user": 4.5, "host_system": 7.8,
                   "remote_total": 10.1, "remote_user": 3.2, "remote_system": 6.9}})
        })
        .collect();
    Value::Array(entries)
}

fn result_of(name: &str, i: i64) -> Value {
    match name {
        "cpu-benchmark" => {
            json!({"single": 1.1 + (i % 7) as f64 * 0.01, "multi": 2.3, "threads": 2, "workloads": 3})
        }
        "iperf" => iperf_result(1.0 + (i % 5) as f64 * 0.01),
        "healthcheck" => json!({"cache": [], "network": []}),
        _ => {
            let ips: serde_json::Map<String, Value> = (0..16)
                .map(|n| {
                    (
                        format!("203.0.113.{n}/24"),
                        json!({"state": "valid", "reason": ""}),
                    )
                })
                .collect();
            Value::Object(ips)
        }
    }
}

fn record(name: &str, ts: i64, i: i64) -> String {
    json!({"name": name, "description": "d", "timestamp": ts, "result": result_of(name, i)})
        .to_string()
}

fn get(addr: SocketAddr, path: &str) -> usize {
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).expect("read");
    assert!(
        buf.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..buf.len().min(200)])
    );
    buf.len()
}

fn latencies(addr: SocketAddr, path: &str, n: usize) -> (Duration, Duration, usize) {
    let mut t = Vec::with_capacity(n);
    let mut size = 0;
    for _ in 0..n {
        let start = Instant::now();
        size = get(addr, path);
        t.push(start.elapsed());
    }
    t.sort();
    (
        support::percentile(&t, 50.0),
        support::percentile(&t, 99.0),
        size,
    )
}

fn proc_field(pid: u32, what: &str) -> u64 {
    if what == "rss" {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        return status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS");
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let f: Vec<&str> = stat[stat.rfind(')').expect("stat") + 2..]
        .split_whitespace()
        .collect();
    f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
}

/// Scrapes of `addr` (each on a new connection, 10 s timeout, from
/// 127.0.0.1) alone, then while one source (127.0.0.2) holds 16 dripping
/// connections and reopens each the moment it is closed: how many are
/// answered, and how long they take.
fn flooded(addr: SocketAddr, build: &str) -> String {
    const ALONE: usize = 100;
    const FLOODED: usize = 200;
    let every = Duration::from_millis(100);
    let row = |what: &str, s: &common::flood::Scrapes| {
        let mut t = s.took.clone();
        t.sort();
        format!(
            "| {what} | {} of {} ({:.1} %) | {:.2} ms | {:.2} ms |\n",
            s.answered,
            t.len(),
            s.answered as f64 * 100.0 / t.len() as f64,
            support::percentile(&t, 50.0).as_secs_f64() * 1e3,
            support::percentile(&t, 99.0).as_secs_f64() * 1e3,
        )
    };
    let alone = common::flood::scrape(addr, ALONE, every);
    let drip = common::flood::Drip::start(addr, [127, 0, 0, 2].into(), 16);
    let deadline = Instant::now() + Duration::from_secs(10);
    while drip.opened() < 16 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(1));
    let opened_before = drip.opened();
    let started = Instant::now();
    let under = common::flood::scrape(addr, FLOODED, every);
    let reopened = drip.opened() - opened_before;
    let secs = started.elapsed().as_secs_f64();
    drop(drip);
    format!(
        "The daemon ({build}) of the section \"Metrics, dashboard and history\" (full history), `[metrics] listen` on \
127.0.0.1. A scraper on 127.0.0.1 (reqwest, a new connection per scrape, Prometheus's default 10 s timeout, one scrape \
every {} ms); the flood from 127.0.0.2: 16 connections each sending a request head one byte a second, reopened the \
moment the daemon closes one ({reopened} reopened in {secs:.0} s: the {} over the per-source limit of 4 are closed at \
accept). Run alone: `cargo bench --bench figures -- metrics flood`.\n\n\
| scrapes | answered | p50 | p99 |\n|---|---|---|---|\n{}{}\n\
Before the per-source limit (16 connections in all, any source): 3 of 40 scrapes answered under the same flood \
(issue 25), 1 of 40 in `tests/it/metrics.rs` against that listener. Target: at least 95 % answered.\n",
        every.as_millis(),
        16 - 4,
        row("alone", &alone),
        row("one source flooding", &under),
    )
}

fn append_cost() -> (Duration, Duration, usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let redis = common::RedisServer::start();
    rt.block_on(async {
        let shutdown = tokio_util::sync::CancellationToken::new();
        let link =
            zos_perf::node_redis::RedisLink::start(&redis.url(), shutdown.clone()).expect("link");
        let store = zos_perf::store::ResultStore::with_history(
            link,
            &zos_perf::store::history::HistoryConfig::default(),
        );
        assert!(store.load(Duration::from_secs(5)).await);
        let json = record("iperf", 1_700_000_000, 0);
        let n = 2000;
        // The append alone: deflate into memory.
        let h = zos_perf::store::history::History::new(
            &zos_perf::store::history::HistoryConfig::default(),
        );
        let result: zos_perf::store::TaskResult = serde_json::from_str(&json).expect("result");
        let t = Instant::now();
        for _ in 0..n {
            h.append(&result, &json);
        }
        let append = t.elapsed() / n;
        // A put and the sync pass that pushes it (LPUSH + LTRIM + LLEN).
        let m = 300;
        let t = Instant::now();
        for _ in 0..m {
            store.put(result.clone()).expect("put");
            store.sync_once().await.expect("sync").expect("connected");
        }
        let put_sync = t.elapsed() / m;
        shutdown.cancel();
        (append, put_sync, json.len())
    })
}

pub fn main() {
    let redis = common::RedisServer::start();
    let mut conn = redis.conn();
    let now = chrono::Utc::now().timestamp();
    let mut bytes = 0usize;
    for name in zos_perf::tasks::NAMES {
        let records: Vec<String> = (0..DEPTH)
            .rev()
            .map(|i| record(name, now - (DEPTH - i) * 3600, i))
            .collect();
        bytes += records.iter().map(String::len).sum::<usize>();
        support::store_history(&mut conn, name, &records);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("metrics.toml");
    let tasks: String = zos_perf::tasks::NAMES
        .iter()
        .map(|t| format!("[tasks.{t}]\ncron = \"0 0 0 1 1 *\"\njitter = 0\n"))
        .collect();
    std::fs::write(
        &cfg,
        format!("{tasks}[metrics]\nlisten = \"127.0.0.1:0\"\n"),
    )
    .expect("config");
    // The build measured: the `release` build the tests use, or another
    // (the shipped `dist` build) when ZOS_PERF_BENCH_BIN names it.
    let (build, bin) = match std::env::var_os("ZOS_PERF_BENCH_BIN") {
        Some(bin) => (format!("`{}`", bin.to_string_lossy()), bin),
        None => (
            "the `release` build".to_string(),
            env!("CARGO_BIN_EXE_zos-perf").into(),
        ),
    };
    let mut child = Command::new(&bin)
        .arg("--config")
        .arg(&cfg)
        .args(["--redis", &redis.url(), "--log", "info", "run"])
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start daemon");
    let pid = child.id();
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let addr: SocketAddr = loop {
        let line = lines.next().expect("daemon log").expect("line");
        let plain: String = line
            .split('\u{1b}')
            .map(|p| p.split_once('m').map_or(p, |(_, r)| r))
            .collect();
        if let Some(a) = plain.split("addr=").nth(1) {
            break a
                .split_whitespace()
                .next()
                .expect("addr")
                .parse()
                .expect("addr");
        }
    };
    std::thread::spawn(move || for _ in lines {});
    std::thread::sleep(Duration::from_secs(3));

    let flood = flooded(addr, &build);
    support::write_section(
        "hostile-metrics",
        "Under hostile input: metrics scrapes while one source floods",
        &flood,
    );
    if std::env::args().any(|a| a == "flood") {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = child.wait();
        return;
    }

    let (m50, m99, msize) = latencies(addr, "/metrics", 500);
    let (d50, d99, dsize) = latencies(addr, "/", 100);

    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    std::thread::sleep(Duration::from_secs(5));
    let t0 = Instant::now();
    let c0 = proc_field(pid, "cpu");
    let mut rss_max = 0;
    let mut next_scrape = Instant::now();
    while t0.elapsed() < Duration::from_secs(SECONDS) {
        if Instant::now() >= next_scrape {
            get(addr, "/metrics");
            next_scrape += Duration::from_secs(15);
        }
        std::thread::sleep(Duration::from_secs(1));
        rss_max = rss_max.max(proc_field(pid, "rss"));
    }
    let cpu_s = (proc_field(pid, "cpu") - c0) as f64 / hz;
    let wall = t0.elapsed().as_secs_f64();
    let rss_end = proc_field(pid, "rss");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();

    let (append, put_sync, record_len) = append_cost();
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
    let us = |d: Duration| format!("{:.0} µs", d.as_secs_f64() * 1e6);
    let body = format!(
        "The daemon ({build}) with `[metrics] listen` on, holding a full history: {DEPTH} results of each of the {} tasks \
({:.1} MiB of JSON in Redis; iperf results of 160 entries, {} KiB each), every task scheduled away so nothing runs. \
Requests one at a time over loopback, a new connection each.\n\n\
| request | p50 | p99 | answer size |\n|---|---|---|---|\n\
| `GET /metrics` (500×) | {} | {} | {:.1} KiB |\n| `GET /` dashboard (100×) | {} | {} | {:.1} KiB |\n\n\
Idle with the listener on and the full history in memory, scraped every 15 s, sampled for {wall:.0} s:\n\n\
| RSS at end | RSS max | CPU time | CPU share |\n|---|---|---|---|\n| {:.1} MiB | {:.1} MiB | {:.3} s | {:.3} % |\n\n\
History append (one {} KiB iperf record deflated into memory with its key figures, 2,000×): {} each. A put plus the sync pass that \
pushes it to Redis (LPUSH, LTRIM, LLEN in one pipeline beside the result's own), 300×: {} each.\n\n\
Targets: RSS ≤ 10 MiB, CPU ≤ 0.1 %.\n",
        zos_perf::tasks::NAMES.len(),
        bytes as f64 / (1024.0 * 1024.0),
        record_len / 1024,
        ms(m50), ms(m99), msize as f64 / 1024.0,
        ms(d50), ms(d99), dsize as f64 / 1024.0,
        rss_end as f64 / 1024.0,
        rss_max as f64 / 1024.0,
        cpu_s,
        cpu_s / wall * 100.0,
        record_len / 1024,
        us(append),
        us(put_sync),
    );
    support::write_section("metrics", "Metrics, dashboard and history", &body);
}
