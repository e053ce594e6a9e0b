//! The bus under load, on a private redis-server (unix socket):
//!
//! - drain rate: 100,000 `zos.perf.get` requests loaded into a staging
//!   list, the handler started, and once it waits on the request lists
//!   (blocked in BRPOP, as Redis reports) the clock started and the staging
//!   list renamed onto the request list in one step; the clock stopped when
//!   all 100,000 replies are in the `ret` list; side by side with a minimal Python echo handler of the same
//!   protocol (redis-py) and `redis-benchmark -P 16 -t lpush` on the same Redis;
//! - round-trip latency at a steady 1,000 requests/s from 16 clients (open
//!   loop: each client sends on its own schedule whatever the replies do).
//!
//! Run: `cargo bench --bench figures -- bus`. Writes section `bus` of BENCHMARKS.md.

use crate::{common, support};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use common::{KillOnDrop, RedisServer};
use zos_perf::bus::BusConfig;
use zos_perf::bus::{Bus, Command as BusCommand};

const REQUESTS: usize = 100_000;
const CPU: &str = r#"{"name":"cpu-benchmark","description":"Measures the performance of the node CPU by reporting the timespent of computing a task in seconds.","timestamp":1700000000,"result":{"single":1.234,"multi":5.678,"threads":4,"workloads":0}}"#;

const PYTHON_ECHO: &str = r#"
import json, sys, time
import redis
r = redis.Redis(unix_socket_path=sys.argv[1])
lists = ["msgbus.zos.perf.get", "msgbus.zos.perf.get_all"]
while True:
    item = r.brpop(lists, timeout=1)
    if item is None:
        continue
    req = json.loads(item[1])
    reply = {"ver": 1, "ref": req.get("ref"), "dat": req.get("dat", ""), "dst": req.get("src"),
             "shm": "application/json", "now": int(time.time()), "err": None}
    r.lpush(req["ret"], json.dumps(reply))
"#;

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn request(ret: &str, reference: &str) -> Vec<u8> {
    let dat = base64::engine::general_purpose::STANDARD.encode(br#"{"Name": "cpu-benchmark"}"#);
    serde_json::to_vec(
        &json!({"ver": 1, "ref": reference, "src": "42:abc", "cmd": "zos.perf.get",
        "exp": 600, "dat": dat, "tag": null, "ret": ret, "shm": null, "now": unix_now()}),
    )
    .expect("encode request")
}

/// Where the requests wait until the handler is ready.
const STAGING: &str = "msgbus.bench.staging";

fn load(server: &RedisServer, ret: &str) {
    let mut conn = server.conn();
    redis::cmd("DEL")
        .arg(ret)
        .arg(BusCommand::Get.list())
        .arg(STAGING)
        .query::<()>(&mut conn)
        .expect("DEL");
    for chunk in (0..REQUESTS).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.cmd("LPUSH")
                .arg(STAGING)
                .arg(request(ret, &i.to_string()))
                .ignore();
        }
        pipe.query::<()>(&mut conn).expect("loading requests");
    }
}

/// Starts the handler, waits until it is ready (blocked popping the
/// request lists), then times from handing it every request at once until
/// `ret` holds every reply. Start-up (a process, an interpreter, a
/// connection) is not in the figure, for ours and for Python's alike.
fn time_drain(server: &RedisServer, ret: &str, start: impl FnOnce()) -> Duration {
    let mut conn = server.conn();
    start();
    let ready = Instant::now();
    loop {
        let clients: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query(&mut conn)
            .expect("CLIENT LIST");
        if clients.lines().any(|c| c.contains("cmd=brpop")) {
            break;
        }
        assert!(
            ready.elapsed() < Duration::from_secs(30),
            "the handler never waited on the request lists"
        );
        thread::sleep(Duration::from_millis(1));
    }
    let begun = Instant::now();
    redis::cmd("RENAME")
        .arg(STAGING)
        .arg(BusCommand::Get.list())
        .query::<()>(&mut conn)
        .expect("RENAME");
    loop {
        let n: usize = redis::cmd("LLEN").arg(ret).query(&mut conn).expect("LLEN");
        if n >= REQUESTS {
            return begun.elapsed();
        }
        assert!(
            begun.elapsed() < Duration::from_secs(300),
            "only {n} replies after 5 minutes"
        );
        thread::sleep(Duration::from_micros(500));
    }
}

fn drain_ours(
    server: &RedisServer,
    rt: &tokio::runtime::Runtime,
    max_in_flight: usize,
) -> Duration {
    let ret = "msgbus.bench.ours";
    load(server, ret);
    let client = redis::Client::open(server.url()).expect("client");
    let shutdown = CancellationToken::new();
    let config = BusConfig {
        enabled: true,
        max_in_flight,
        ..BusConfig::default()
    };
    let mut handle = None;
    let took = time_drain(server, ret, || {
        handle = Some(rt.spawn(Bus::new(client, config).serve(shutdown.clone())));
    });
    shutdown.cancel();
    if let Some(h) = handle {
        let _ = rt.block_on(h);
    }
    took
}

fn python() -> Option<String> {
    ["python3", "/usr/bin/python3"].into_iter().find_map(|p| {
        let ok = Command::new(p)
            .args(["-c", "import redis"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| p.to_string())
    })
}

fn drain_python(server: &RedisServer, python: &str) -> (Duration, String) {
    let ret = "msgbus.bench.python";
    load(server, ret);
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("echo.py");
    std::fs::write(&script, PYTHON_ECHO).expect("write echo.py");
    let version = Command::new(python)
        .args([
            "-c",
            "import redis, sys; print(sys.version.split()[0], redis.__version__)",
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mut child = None;
    let took = time_drain(server, ret, || {
        child = Some(KillOnDrop(
            Command::new(python)
                .arg(&script)
                .arg(server.socket())
                .spawn()
                .expect("start python echo"),
        ));
    });
    drop(child);
    (took, version)
}

/// Requests per second of `redis-benchmark -P 16 -t lpush -n 100000`.
fn redis_benchmark(server: &RedisServer) -> Option<f64> {
    let out = Command::new("redis-benchmark")
        .arg("-s")
        .arg(server.socket())
        .args(["-P", "16", "-t", "lpush", "-n", "100000", "--csv"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.starts_with("\"LPUSH"))
        .and_then(|l| l.split(',').nth(1))
        .and_then(|v| v.trim_matches('"').parse().ok())
}

struct Latency {
    samples: Vec<Duration>,
    lateness: Vec<Duration>,
}

/// `clients` clients (a connection and a `ret` list each) together sending
/// `rate` requests/s for `secs` on a fixed schedule, whatever the replies do
/// (open loop); returns each round trip, from the push of a request to the
/// pop of its reply, and how late each send was on its schedule.
///
/// The generator is kept light so that it is not what is measured: one
/// thread sends (requests made up front; only the send time is patched into
/// `ref`), one thread receives (one BRPOP over every client's list).
fn latency(server: &RedisServer, clients: usize, rate: u64, secs: u64) -> Latency {
    const STAMP: &[u8] = b"00000000000000000000";
    let total = (rate * secs) as usize;
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    let rets: Vec<String> = (0..clients)
        .map(|c| format!("msgbus.bench.lat.{c}"))
        .collect();
    let epoch = Instant::now() + Duration::from_millis(200);

    let receiver = {
        let (url, rets) = (server.url(), rets.clone());
        thread::spawn(move || {
            let mut conn = redis::Client::open(url)
                .and_then(|c| c.get_connection())
                .expect("receiver connection");
            let mut samples = Vec::with_capacity(total);
            while samples.len() < total {
                let popped: Option<(String, Vec<u8>)> = redis::cmd("BRPOP")
                    .arg(&rets)
                    .arg(10)
                    .query(&mut conn)
                    .expect("BRPOP");
                let Some((_, raw)) = popped else { break };
                let at = Instant::now();
                let reply: serde_json::Value = serde_json::from_slice(&raw).expect("reply");
                let sent: u64 = reply["ref"]
                    .as_str()
                    .and_then(|r| r.parse().ok())
                    .expect("ref");
                samples.push(at.saturating_duration_since(epoch + Duration::from_nanos(sent)));
            }
            samples
        })
    };
    let sender = {
        let url = server.url();
        thread::spawn(move || {
            let client = redis::Client::open(url).expect("client");
            let mut conns: Vec<redis::Connection> = (0..clients)
                .map(|_| client.get_connection().expect("sender connection"))
                .collect();
            let mut templates: Vec<(Vec<u8>, usize)> = rets
                .iter()
                .map(|ret| {
                    let req = request(ret, std::str::from_utf8(STAMP).expect("ascii"));
                    let at = req
                        .windows(STAMP.len())
                        .position(|w| w == STAMP)
                        .expect("stamp in request");
                    (req, at)
                })
                .collect();
            let mut late = Vec::with_capacity(total);
            for i in 0..total {
                let c = i % clients;
                let due = epoch + interval * i as u32;
                let now = Instant::now();
                if due > now {
                    thread::sleep(due - now);
                }
                let sent = Instant::now();
                late.push(sent.saturating_duration_since(due));
                // The ref carries the send time: the receiver needs no shared state.
                let stamp = format!("{:020}", sent.saturating_duration_since(epoch).as_nanos());
                let (req, at) = &mut templates[c];
                req[*at..*at + STAMP.len()].copy_from_slice(stamp.as_bytes());
                redis::cmd("LPUSH")
                    .arg(BusCommand::Get.list())
                    .arg(&req[..])
                    .query::<()>(&mut conns[c])
                    .expect("LPUSH");
            }
            late
        })
    };
    let mut lateness = sender.join().expect("sender thread");
    let mut samples = receiver.join().expect("receiver thread");
    lateness.sort();
    samples.sort();
    Latency { samples, lateness }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

pub fn main() {
    let server = RedisServer::start();
    redis::cmd("SET")
        .arg("perf.cpu-benchmark")
        .arg(CPU)
        .query::<()>(&mut server.conn())
        .expect("SET");
    let redis_version = Command::new("redis-server")
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .nth(2)
                .unwrap_or("")
                .trim_start_matches("v=")
                .to_string()
        })
        .unwrap_or_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    let default = BusConfig::default().max_in_flight;
    let mut ours = Vec::new();
    for _ in 0..3 {
        ours.push(drain_ours(&server, &rt, default));
    }
    ours.sort();
    let ours_best = ours[0];
    let ours_median = ours[1];
    let mut by_bound = Vec::new();
    for m in [64, 256, 2048] {
        by_bound.push((m, drain_ours(&server, &rt, m)));
    }
    let python = python();
    let py = python.as_deref().map(|p| drain_python(&server, p));
    // Median of 3: one run takes well under 0.1 s, so it is easily disturbed.
    let mut lpush: Vec<f64> = (0..3).filter_map(|_| redis_benchmark(&server)).collect();
    lpush.sort_by(f64::total_cmp);
    let lpush = lpush.get(lpush.len() / 2).copied();

    let rate = |d: Duration| REQUESTS as f64 / d.as_secs_f64();
    let ours_rate = rate(ours_median);
    let mut body = String::new();
    body += &format!(
        "Drain: {REQUESTS} `zos.perf.get` requests (all for the stored cpu-benchmark result, \
         one `ret` list) loaded into a staging list; the handler started, and once Redis shows \
         it blocked popping the request lists, the clock started and the staging list was \
         renamed onto `msgbus.zos.perf.get` in one step; time until every reply is in the \
         `ret` list (handler start-up is not counted, for either handler). Redis {redis_version} on a \
         unix socket, handler in-process (on its own thread, as in the daemon).\n\n"
    );
    body += "| server | time | requests/s | ratio |\n|---|---:|---:|---:|\n";
    body += &format!(
        "| zos-perf bus, max_in_flight {default} (median of 3; best {}) | {:.3} s | {:.0} | 1 |\n",
        ms(ours_best),
        ours_median.as_secs_f64(),
        ours_rate
    );
    for (m, d) in &by_bound {
        body += &format!(
            "| zos-perf bus, max_in_flight {m} | {:.3} s | {:.0} | {:.2} |\n",
            d.as_secs_f64(),
            rate(*d),
            rate(*d) / ours_rate
        );
    }
    let mut verdicts = Vec::new();
    match &py {
        Some((d, version)) => {
            body += &format!(
                "| Python echo (Python/redis-py {version}: BRPOP one, LPUSH one, no work) | {:.3} s | {:.0} | {:.3} |\n",
                d.as_secs_f64(),
                rate(*d),
                rate(*d) / ours_rate
            );
            let x = ours_rate / rate(*d);
            verdicts.push(format!(
                "bus / Python echo = **{x:.1}×** (target ≥ 20×: {})",
                if x >= 20.0 { "met" } else { "NOT met" }
            ));
        }
        None => body += "| Python echo | not run: no python3 with redis-py (apt-get install python3-redis) | | |\n",
    }
    match lpush {
        Some(r) => {
            body += &format!(
                "| `redis-benchmark -P 16 -t lpush -n 100000` (same Redis, median of 3) | | {r:.0} | {:.3} |\n",
                r / ours_rate
            );
            let x = ours_rate / r;
            verdicts.push(format!(
                "bus / pipelined LPUSH = **{x:.2}×** (target ≥ 0.3×: {})",
                if x >= 0.3 { "met" } else { "NOT met" }
            ));
        }
        None => body += "| redis-benchmark | not run (redis-tools missing?) | | |\n",
    }
    body += &format!("\n{}.\n", verdicts.join("; "));

    // Latency: the handler with its default bound, on its own runtime.
    let shutdown = CancellationToken::new();
    let client = redis::Client::open(server.url()).expect("client");
    rt.spawn(Bus::new(client, BusConfig::default()).serve(shutdown.clone()));
    let _warm = latency(&server, 16, 1000, 1);
    let lat = latency(&server, 16, 1000, 10);
    shutdown.cancel();
    let p = |v: &[Duration], q: f64| ms(support::percentile(v, q));
    body += &format!(
        "\nRound trip at a steady 1,000 requests/s from 16 clients (open loop, 10 s after 1 s of \
         warm-up, {} samples; from the LPUSH of a request to the BRPOP of its reply; 16 \
         connections and `ret` lists, one sender thread on a fixed schedule, one receiver \
         thread):\n\n\
         | p50 | p90 | p99 | p99.9 | max |\n|---:|---:|---:|---:|---:|\n| {} | {} | {} | {} | {} |\n\n\
         p99 target ≤ 1 ms: {}. The load generator keeps its schedule: sends were late by p50 {}, p99 {}.\n",
        lat.samples.len(),
        p(&lat.samples, 50.0),
        p(&lat.samples, 90.0),
        p(&lat.samples, 99.0),
        p(&lat.samples, 99.9),
        p(&lat.samples, 100.0),
        if support::percentile(&lat.samples, 99.0) <= Duration::from_millis(1) {
            "met"
        } else {
            "NOT met"
        },
        p(&lat.lateness, 50.0),
        p(&lat.lateness, 99.0),
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    body += &format!(
        "\nLoad average at the end: {} (the machine was shared with other builds: figures may be disturbed).\n",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    support::write_section("bus", "Bus (RMB local protocol)", &body);
}
