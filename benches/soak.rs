//! Soak: the shipped daemon (`zos-perf run`) under a steady bus load for a
//! long time, to show that its memory does not grow and its answers stay
//! fast and exact.
//!
//! - Redis: a private redis-server on a unix socket, with a result stored
//!   for each of the four tasks. The tasks are scheduled once a year, so
//!   their stored (fresh) results stand and they never run; the healthcheck
//!   runs every 10 s against a loopback listener, so the scheduler and the
//!   store's sync loop work too.
//! - Load: open loop at `--rate` requests/s (default 2,000), whatever the
//!   replies do: `zos.perf.get` and `zos.perf.get_all`, valid and invalid
//!   mixed (unknown task, payload not JSON, dat not base64, wrong version,
//!   expired, not JSON at all, no `ret`); see [`Kind`]. One thread sends,
//!   one collects the replies from the `ret` list; a round trip is from the
//!   LPUSH of a request to the BRPOP of its reply.
//! - Warm-up burst: at 15 s, 1,024 `zos.perf.get_all` requests at once
//!   (twice the default `bus.max_in_flight`, each with the largest reply),
//!   as when the RMB peer flushes a queue. The bus holds at most
//!   `max_in_flight` requests and their replies at a time, so this is the
//!   most memory a burst can make it take; glibc keeps what it took (RSS
//!   does not come back down), and without the warm-up the first backlog
//!   after the first minute (a stall of the machine is enough) shows as a
//!   step of RSS that is not a leak. Its replies are counted, but not in
//!   the latency figures.
//! - Every 10 s: the daemon's RSS (VmRSS) and CPU time; the RSS trend after
//!   the first minute (least squares) is reported too, as a leak would show
//!   there first.
//! - Pass: RSS at the end within 10 % of RSS after the first minute (after
//!   half the run for runs shorter than 2 minutes), and every request that
//!   has someone to answer answered exactly once, rightly.
//!
//! Run: `cargo bench --bench figures -- soak [--seconds N] [--rate R]` (default
//! 600 s at 2,000/s). Writes section `soak` of BENCHMARKS.md; exits
//! non-zero on failure.

use crate::{common, support};
use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde_json::{json, Value};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// The warm-up burst: when, and how many `get_all` requests at once.
const BURST_AT: Duration = Duration::from_secs(15);
const BURST: u64 = 1024;
const NAMES: [&str; 4] = [
    "cpu-benchmark",
    "healthcheck",
    "iperf",
    "public-ip-validation",
];

struct Args {
    seconds: u64,
    rate: u64,
}

fn args() -> Args {
    let mut a = Args {
        seconds: 600,
        rate: 2000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| -> u64 {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} needs a positive number"))
        };
        match arg.as_str() {
            "--seconds" => a.seconds = value("--seconds").max(10),
            "--rate" => a.rate = value("--rate").max(1),
            // `cargo bench` adds --bench; anything else is ignored too.
            _ => {}
        }
    }
    a
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What request number `seq` is, by `seq % 100`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// 45 %: `zos.perf.get` of a stored task, `{"Name": ...}`.
    Get,
    /// 5 %: the same with a lower-case key, `{"name": ...}`.
    GetLower,
    /// 18 %: `zos.perf.get_all`.
    GetAll,
    /// 8 %: an unknown task name: error reply.
    Unknown,
    /// 6 %: a payload that is not JSON: error reply.
    BadPayload,
    /// 4 %: `dat` that is not base64: error reply.
    BadBase64,
    /// 3 %: protocol version 2: error reply.
    BadVersion,
    /// 6 %: sent two minutes ago with a minute to live: dropped unanswered.
    Expired,
    /// 4 %: not JSON at all, or JSON with no `ret`: dropped unanswered.
    Garbage,
}

impl Kind {
    fn of(seq: u64) -> Kind {
        match seq % 100 {
            0..45 => Kind::Get,
            45..50 => Kind::GetLower,
            50..68 => Kind::GetAll,
            68..76 => Kind::Unknown,
            76..82 => Kind::BadPayload,
            82..86 => Kind::BadBase64,
            86..89 => Kind::BadVersion,
            89..95 => Kind::Expired,
            _ => Kind::Garbage,
        }
    }

    fn answered(self) -> bool {
        !matches!(self, Kind::Expired | Kind::Garbage)
    }

    fn ok(self) -> bool {
        matches!(self, Kind::Get | Kind::GetLower | Kind::GetAll)
    }
}

/// The list and the message of request `seq`, its ref carrying its number
/// and its send time (µs since `t0`).
fn request(seq: u64, sent_us: u64, ret: &str) -> (&'static str, String) {
    const GET: &str = "msgbus.zos.perf.get";
    const GET_ALL: &str = "msgbus.zos.perf.get_all";
    let kind = Kind::of(seq);
    let reference = format!("{seq}:{sent_us}");
    let name = NAMES[(seq / 100) as usize % NAMES.len()];
    let now = unix_now();
    let envelope = |ver: u64, now: u64, dat: String| {
        json!({"ver": ver, "ref": reference, "src": "42:soak", "cmd": "zos.perf.get",
            "exp": 60, "dat": dat, "tag": null, "ret": ret, "shm": null, "now": now})
        .to_string()
    };
    let b64 = |v: &str| B64.encode(v);
    match kind {
        Kind::Get => (
            GET,
            envelope(1, now, b64(&json!({"Name": name}).to_string())),
        ),
        Kind::GetLower => (
            GET,
            envelope(1, now, b64(&json!({"name": name}).to_string())),
        ),
        Kind::GetAll => (GET_ALL, envelope(1, now, String::new())),
        Kind::Unknown => (GET, envelope(1, now, b64(r#"{"Name": "gpu-benchmark"}"#))),
        Kind::BadPayload => (GET, envelope(1, now, b64("{Name: cpu"))),
        Kind::BadBase64 => (GET, envelope(1, now, "@@not base64@@".into())),
        Kind::BadVersion => (GET, envelope(2, now, b64(r#"{"Name": "iperf"}"#))),
        Kind::Expired => (
            GET,
            envelope(1, now.saturating_sub(120), b64(r#"{"Name": "iperf"}"#)),
        ),
        Kind::Garbage if seq.is_multiple_of(2) => (GET, format!("garbage {reference}")),
        Kind::Garbage => (GET_ALL, json!({"ver": 1, "ref": reference}).to_string()),
    }
}

/// What the receiver saw.
#[derive(Default)]
struct Received {
    /// Round trips in µs, per 10 s window of arrival.
    windows: Vec<Vec<u32>>,
    replies: u64,
    duplicates: u64,
    /// Replies of the wrong kind (error for a good request or the reverse)
    /// or to a request that should get none.
    wrong: u64,
    seen: Vec<bool>,
    /// Replies to the warm-up burst, and the slowest of them (µs).
    burst_replies: u64,
    burst_slowest: u64,
}

fn connect(url: &str) -> redis::Connection {
    let conn = redis::Client::open(url)
        .expect("client")
        .get_connection()
        .expect("connect to redis");
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    conn
}

fn receive(url: String, ret: String, t0: Instant, stop: Arc<AtomicBool>) -> Received {
    let mut conn = connect(&url);
    let mut got = Received::default();
    let handle = |raw: &[u8], got: &mut Received| {
        let now_us = t0.elapsed().as_micros() as u64;
        let reply: Value = serde_json::from_slice(raw).expect("reply is JSON");
        let reference = reply["ref"].as_str().expect("reply ref");
        let (seq, sent) = reference.split_once(':').expect("ref format");
        if let Some(_burst) = seq.strip_prefix('b') {
            let sent: u64 = sent.parse().expect("send time");
            got.burst_replies += 1;
            got.burst_slowest = got.burst_slowest.max(now_us.saturating_sub(sent));
            if !reply["err"].is_null() {
                got.wrong += 1;
            }
            return;
        }
        let seq: u64 = seq.parse().expect("seq");
        let sent: u64 = sent.parse().expect("send time");
        let window = (now_us / SAMPLE_EVERY.as_micros() as u64) as usize;
        if got.windows.len() <= window {
            got.windows.resize_with(window + 1, Vec::new);
        }
        got.windows[window].push(now_us.saturating_sub(sent).min(u32::MAX as u64) as u32);
        got.replies += 1;
        if got.seen.len() <= seq as usize {
            got.seen.resize(seq as usize + 1, false);
        }
        if std::mem::replace(&mut got.seen[seq as usize], true) {
            got.duplicates += 1;
        }
        let kind = Kind::of(seq);
        if !kind.answered() || kind.ok() != reply["err"].is_null() {
            got.wrong += 1;
        }
    };
    while !stop.load(Ordering::SeqCst) {
        let first: Option<(String, Vec<u8>)> = redis::cmd("BRPOP")
            .arg(&ret)
            .arg(0.2)
            .query(&mut conn)
            .expect("BRPOP replies");
        let Some((_, raw)) = first else { continue };
        handle(&raw, &mut got);
        let more: Option<Vec<Vec<u8>>> = redis::cmd("RPOP")
            .arg(&ret)
            .arg(1000)
            .query(&mut conn)
            .expect("RPOP replies");
        for raw in more.unwrap_or_default() {
            handle(&raw, &mut got);
        }
    }
    got
}

/// Sends `total` requests at `rate`/s from `t0` on; returns how far behind
/// its schedule it ever was.
fn send(
    url: String,
    ret: String,
    t0: Instant,
    rate: u64,
    total: u64,
    mut burst: bool,
    stop: Arc<AtomicBool>,
) -> Duration {
    let mut conn = connect(&url);
    let mut seq = 0u64;
    let mut lag = Duration::ZERO;
    while seq < total && !stop.load(Ordering::SeqCst) {
        let elapsed = t0.elapsed();
        if burst && elapsed >= BURST_AT {
            burst = false;
            let sent_us = elapsed.as_micros() as u64;
            let mut pipe = redis::pipe();
            for i in 0..BURST {
                let request = json!({"ver": 1, "ref": format!("b{i}:{sent_us}"), "src": "42:soak",
                    "cmd": "zos.perf.get_all", "exp": 60, "dat": "", "tag": null, "ret": ret,
                    "shm": null, "now": unix_now()});
                pipe.cmd("LPUSH")
                    .arg("msgbus.zos.perf.get_all")
                    .arg(request.to_string())
                    .ignore();
            }
            pipe.query::<()>(&mut conn).expect("LPUSH burst");
        }
        let due = ((elapsed.as_secs_f64() * rate as f64) as u64).min(total);
        if due > seq {
            let behind = elapsed.saturating_sub(Duration::from_secs_f64(seq as f64 / rate as f64));
            lag = lag.max(behind);
            let mut pipe = redis::pipe();
            let sent_us = t0.elapsed().as_micros() as u64;
            while seq < due {
                let (list, message) = request(seq, sent_us, &ret);
                pipe.cmd("LPUSH").arg(list).arg(message).ignore();
                seq += 1;
            }
            pipe.query::<()>(&mut conn).expect("LPUSH requests");
        }
        thread::sleep(Duration::from_micros(500));
    }
    lag
}

fn proc_stat_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn ms(us: u32) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

pub fn main() {
    // Everything (redis-server, the daemon's directory) is dropped inside
    // `soak`, before the exit status is set.
    if !soak(args()) {
        std::process::exit(1);
    }
}

/// Runs the soak and writes its section; true when it passed.
fn soak(args: Args) -> bool {
    let redis = common::RedisServer::start();
    let url = redis.url();
    let dir = tempfile::tempdir().expect("tempdir");

    // A result for every task, as if each had just run.
    let mut conn = redis.conn();
    let results = [
        json!({"single": 1.234, "multi": 5.678, "threads": 4, "workloads": 3}),
        json!({"cache": [], "network": []}),
        json!((0..16)
            .map(|i| json!({"upload_speed": 9.1e8, "download_speed": 9.0e8,
            "node_id": 100 + i / 4, "node_ip": format!("198.51.100.{}", i / 4),
            "test_type": if i % 4 < 2 { "tcp" } else { "udp" }, "error": "",
            "cpu_report": {"host_total": 23.1, "host_user": 1.2, "host_system": 21.9,
                "remote_total": 40.2, "remote_user": 0.8, "remote_system": 39.4}}))
            .collect::<Vec<_>>()),
        json!({"203.0.113.10/24": {"state": "valid", "reason": ""},
               "203.0.113.11/24": {"state": "skipped", "reason": "ip is already assigned to a contract"}}),
    ];
    for (name, result) in NAMES.iter().zip(results) {
        let value = json!({"name": name, "description": "stored by the soak bench",
            "timestamp": unix_now(), "result": result});
        redis::cmd("SET")
            .arg(format!("perf.{name}"))
            .arg(value.to_string())
            .query::<()>(&mut conn)
            .expect("SET result");
    }

    // The healthcheck's service: accepts and closes.
    let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
    let service = format!("http://{}", listener.local_addr().expect("address"));
    thread::spawn(move || {
        for conn in listener.incoming() {
            drop(conn);
        }
    });
    let yearly = "cron = \"0 0 0 1 1 *\"";
    let config = format!(
        "node_id = 1\nfarm_id = 1\n[grid]\ngraphql_urls = [\"http://127.0.0.1:1/graphql\"]\n\
         [tasks.cpu-benchmark]\n{yearly}\n[tasks.iperf]\n{yearly}\n\
         [tasks.public-ip-validation]\n{yearly}\n\
         [tasks.healthcheck]\ncron = \"*/10 * * * * *\"\n\
         [iperf]\nmode = \"grid-nodes\"\n\
         [public_ip]\nnamespace = \"zos-perf-soak-none\"\n\
         [healthcheck]\ncache_dir = {:?}\nflags_dir = {:?}\nconnect_timeout = \"1s\"\n\
         backoff_total = \"0s\"\nservices = [{service:?}]\n",
        dir.path().display().to_string(),
        dir.path().join("flags").display().to_string(),
    );
    let cfg = dir.path().join("soak.toml");
    std::fs::write(&cfg, config).expect("config");
    let log_path = dir.path().join("daemon.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_zos-perf"))
        .arg("--config")
        .arg(&cfg)
        .args(["--redis", &url, "--log", "warn", "run"])
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start zos-perf run");
    let pid = daemon.id();
    // Started: its first status is written.
    let started = Instant::now();
    loop {
        let n: u64 = redis::cmd("HLEN")
            .arg("perf:status")
            .query(&mut conn)
            .expect("HLEN");
        if n > 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "daemon did not start"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let load_start = load_average();

    let ret = "msgbus.soak.replies".to_string();
    let total = args.seconds * args.rate;
    let t0 = Instant::now();
    let stop_send = Arc::new(AtomicBool::new(false));
    let stop_receive = Arc::new(AtomicBool::new(false));
    let receiver = {
        let (url, ret, stop) = (url.clone(), ret.clone(), stop_receive.clone());
        thread::spawn(move || receive(url, ret, t0, stop))
    };
    let sender = {
        let (url, ret, stop) = (url.clone(), ret.clone(), stop_send.clone());
        let rate = args.rate;
        let burst = args.seconds >= 30;
        thread::spawn(move || send(url, ret, t0, rate, total, burst, stop))
    };

    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    // (seconds, RSS KiB, CPU ticks) every 10 s.
    let mut samples: Vec<(u64, u64, u64)> = vec![(
        0,
        rss_kib(pid).unwrap_or(0),
        proc_stat_ticks(pid).unwrap_or(0),
    )];
    let mut died = false;
    for k in 1..=args.seconds / SAMPLE_EVERY.as_secs() {
        let at = t0 + SAMPLE_EVERY * k as u32;
        thread::sleep(at.saturating_duration_since(Instant::now()));
        match (rss_kib(pid), proc_stat_ticks(pid)) {
            (Some(rss), Some(ticks)) => samples.push((k * SAMPLE_EVERY.as_secs(), rss, ticks)),
            _ => {
                died = true;
                stop_send.store(true, Ordering::SeqCst);
                break;
            }
        }
        let &(t, rss, _) = samples.last().expect("sample");
        eprintln!("soak: {t:>4} s  RSS {:.1} MiB", rss as f64 / 1024.0);
    }
    let lag = sender.join().expect("sender");
    // Let the last replies come in (expired ones never do).
    let answerable = (0..total).filter(|s| Kind::of(*s).answered()).count() as u64;
    let deadline = Instant::now() + Duration::from_secs(10);
    let backlog = || -> u64 {
        let mut c = redis.conn();
        let a: u64 = redis::cmd("LLEN")
            .arg("msgbus.zos.perf.get")
            .query(&mut c)
            .unwrap_or(0);
        let b: u64 = redis::cmd("LLEN")
            .arg("msgbus.zos.perf.get_all")
            .query(&mut c)
            .unwrap_or(0);
        a + b
    };
    while backlog() > 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    thread::sleep(Duration::from_millis(500));
    stop_receive.store(true, Ordering::SeqCst);
    let got = receiver.join().expect("receiver");

    let health: Option<String> = redis::cmd("HGET")
        .arg("perf:status")
        .arg("healthcheck")
        .query(&mut conn)
        .unwrap_or(None);
    let health_runs = health
        .and_then(|s| serde_json::from_str::<Value>(&s).ok())
        .and_then(|s| s["runs"].as_u64())
        .unwrap_or(0);

    let stopping = Instant::now();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let status = daemon.wait().expect("daemon exit");
    let stop_took = stopping.elapsed();
    let load_end = load_average();
    let mut log_text = String::new();
    let _ = std::fs::File::open(&log_path).and_then(|mut f| f.read_to_string(&mut log_text));
    let log_lines = log_text.lines().count();
    let dropped_lines = log_text
        .lines()
        .filter(|l| l.contains("dropping a message with nobody to answer"))
        .count();
    let other_lines: Vec<&str> = log_text
        .lines()
        .filter(|l| !l.contains("dropping a message with nobody to answer"))
        .take(5)
        .collect();

    // Figures.
    let mut all: Vec<u32> = got.windows.iter().flatten().copied().collect();
    all.sort_unstable();
    let pct = |v: &[u32], p: f64| {
        if v.is_empty() {
            "-".to_string()
        } else {
            ms(support::percentile(v, p))
        }
    };
    let reference_at = (args.seconds / 2).clamp(SAMPLE_EVERY.as_secs(), 60);
    let reference_at = reference_at / SAMPLE_EVERY.as_secs() * SAMPLE_EVERY.as_secs();
    let rss_ref = samples
        .iter()
        .find(|s| s.0 == reference_at)
        .map(|s| s.1)
        .unwrap_or(0);
    let rss_end = samples.last().map(|s| s.1).unwrap_or(0);
    let change = (rss_end as f64 - rss_ref as f64) / rss_ref.max(1) as f64 * 100.0;
    let rss_ok = !died && rss_ref > 0 && change.abs() <= 10.0;
    let answered = got.seen.iter().filter(|s| **s).count() as u64;
    let burst_sent = if args.seconds >= 30 { BURST } else { 0 };
    let replies_ok = got.duplicates == 0
        && got.wrong == 0
        && answered == answerable
        && got.burst_replies == burst_sent;
    // RSS trend after the reference: least squares, KiB per minute.
    let after: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.0 >= reference_at)
        .map(|s| (s.0 as f64 / 60.0, s.1 as f64))
        .collect();
    let slope = {
        let n = after.len() as f64;
        let (mx, my) = (
            after.iter().map(|p| p.0).sum::<f64>() / n.max(1.0),
            after.iter().map(|p| p.1).sum::<f64>() / n.max(1.0),
        );
        let sxx: f64 = after.iter().map(|p| (p.0 - mx).powi(2)).sum();
        let sxy: f64 = after.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        if sxx > 0.0 {
            sxy / sxx
        } else {
            0.0
        }
    };
    let rss_at = |t: u64| {
        samples
            .iter()
            .find(|s| s.0 == t)
            .map(|s| format!("{:.1} MiB", s.1 as f64 / 1024.0))
            .unwrap_or_else(|| "-".into())
    };
    let burst_line = if burst_sent > 0 {
        format!(
            "Warm-up burst at {} s: {burst_sent} `get_all` requests at once, {} answered, the last after {} ms; \
RSS {} at 10 s, {} at 20 s.\n\n",
            BURST_AT.as_secs(),
            got.burst_replies,
            got.burst_slowest / 1000,
            rss_at(10),
            rss_at(20),
        )
    } else {
        String::new()
    };
    let pass = rss_ok && replies_ok && status.success();

    let mut table = String::from(
        "| t (s) | RSS (MiB) | daemon CPU (%) | replies in the 10 s before | p50 (ms) | p99 (ms) |\n\
         |---:|---:|---:|---:|---:|---:|\n",
    );
    for w in samples.windows(2) {
        let (t, rss, ticks) = w[1];
        let cpu = (ticks - w[0].2) as f64 / hz / SAMPLE_EVERY.as_secs_f64() * 100.0;
        let window = (t / SAMPLE_EVERY.as_secs()) as usize - 1;
        let mut lat = got.windows.get(window).cloned().unwrap_or_default();
        lat.sort_unstable();
        table.push_str(&format!(
            "| {t} | {:.1} | {cpu:.1} | {} | {} | {} |\n",
            rss as f64 / 1024.0,
            lat.len(),
            pct(&lat, 50.0),
            pct(&lat, 99.0),
        ));
    }
    let cpu_total = (samples.last().map(|s| s.2).unwrap_or(0) - samples[0].2) as f64 / hz;
    let body = format!(
        "`cargo bench --bench figures -- soak --seconds {secs} --rate {rate}`: `zos-perf run` (the shipped binary) \
against a private redis-server on a unix socket, a stored result for each task (tasks scheduled \
yearly, so none runs; the healthcheck runs every 10 s against a loopback listener). \
Open-loop load of {rate} requests/s for {secs} s from one sender (LPUSH, pipelined every 0.5 ms) \
and one reply collector (BRPOP/RPOP): 68 % valid `get`/`get_all`, 21 % invalid but answerable \
(unknown task, payload not JSON, dat not base64, version 2), 6 % expired, 4 % with nobody to \
answer (not JSON, no `ret`), plus a warm-up burst in the first minute (below). \
Round trip = LPUSH of the request to BRPOP of its reply.\n\n\
Load average (1, 5, 15 min): {load_start} at start, {load_end} at end, on {cpus} CPUs \
(other work on the machine shows in the latency tail).\n\n\
{table}\n\
| requests sent | answerable | answered | answered twice | wrong answers | round trip p50 | p99 | p99.9 | max | sender lag max |\n\
|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n\
| {total} | {answerable} | {answered} | {dups} | {wrong} | {p50} ms | {p99} ms | {p999} ms | {max} ms | {lag:.1} ms |\n\n\
Daemon CPU time {cpu_total:.1} s over the run ({cpu_share:.1} % of one core on average); \
healthcheck runs meanwhile: {health_runs}; \
{log_lines} log lines at warn ({dropped_lines} of them for messages dropped with nobody to answer); \
SIGTERM at the end: {status} after {stop_ms} ms.\n\n\
{burst_line}\
RSS after {reference_at} s: {ref_mib:.1} MiB; at the end: {end_mib:.1} MiB ({change:+.1} %); \
trend from {reference_at} s to the end: {slope:+.1} KiB/min. \
Criterion: within 10 % of the first, and every answerable request answered once with the right kind of reply: \
**{verdict}**.\n",
        secs = args.seconds,
        cpus = thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        rate = args.rate,
        dups = got.duplicates,
        wrong = got.wrong,
        p50 = pct(&all, 50.0),
        p99 = pct(&all, 99.0),
        p999 = pct(&all, 99.9),
        max = all.last().map(|m| ms(*m)).unwrap_or_else(|| "-".into()),
        lag = lag.as_secs_f64() * 1000.0,
        cpu_share = cpu_total / (samples.last().map(|s| s.0).unwrap_or(1).max(1) as f64) * 100.0,
        stop_ms = stop_took.as_millis(),
        ref_mib = rss_ref as f64 / 1024.0,
        end_mib = rss_end as f64 / 1024.0,
        verdict = if pass { "PASS" } else { "FAIL" },
    );
    support::write_section("soak", "Soak: the daemon under a steady bus load", &body);
    if !other_lines.is_empty() {
        eprintln!("other daemon log lines (first 5):");
        for l in other_lines {
            eprintln!("  {l}");
        }
    }
    if !pass {
        eprintln!("soak FAILED: rss_ok={rss_ok} replies_ok={replies_ok} exit={status} died={died}");
    }
    pass
}
